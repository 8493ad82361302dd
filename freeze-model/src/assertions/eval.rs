//! Evaluating an assertion against a report: the value, the verdict, the findings behind it.
use serde::Serialize;

use super::{Assertion, Metric, Scope};
use crate::{
    correlate::{Finding, Summary},
    report::Report,
    units::fmt_secs,
};

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub assertion: Assertion,
    pub passed: bool,
    /// The measured value (count, or nanoseconds for duration metrics).
    pub value: u64,
    /// Superblocks the scope selected.
    pub matched: usize,
    /// One line for people: what was measured against what.
    pub message: String,
    /// The findings behind the value (for failures: what went wrong).
    pub findings: Vec<Finding>,
}

fn scope_matches(scope: &Scope, summary: &Summary) -> bool {
    let Some(sb) = &summary.sb else { return false };
    match scope {
        Scope::All => true,
        Scope::Mountpoint(m) => {
            sb.mountpoint.as_deref().map(|p| p.trim_end_matches('/')) == Some(m.as_str())
                || (m == "/" && sb.mountpoint.as_deref() == Some("/"))
        }
        Scope::Fs(t) => &sb.fstype == t,
        Scope::Dev(d) => &sb.dev == d,
    }
}

fn show(metric: Metric, v: u64) -> String {
    if metric.is_duration() { fmt_secs(v) } else { v.to_string() }
}

/// Evaluates one assertion against a report.
pub fn evaluate(a: &Assertion, report: &Report) -> Verdict {
    let selected: Vec<(&String, &Summary)> =
        report.analysis.summaries.iter().filter(|(_, s)| scope_matches(&a.scope, s)).collect();
    let sum = |f: fn(&Summary) -> u64| selected.iter().map(|(_, s)| f(s)).sum::<u64>();
    let value = match a.metric {
        Metric::Freezes => sum(|s| s.freezes),
        Metric::Thaws => sum(|s| s.thaws),
        Metric::FailedFreezes => sum(|s| s.failed_freezes),
        Metric::Slips => sum(|s| s.slips),
        Metric::BlockedWriters => sum(|s| s.blocked_writers),
        Metric::MountsWhileFrozen => sum(|s| s.mounts_while_frozen),
        Metric::DeniedMounts => sum(|s| s.denied_mounts),
        Metric::WouldDenyMounts => sum(|s| s.would_deny_mounts),
        Metric::LostEvents => report.lost_events.unwrap_or(0),
        Metric::LeftFrozen => selected.iter().filter(|(_, s)| s.left_frozen).count() as u64,
        Metric::MaxFrozen => selected.iter().map(|(_, s)| s.max_frozen_ns).max().unwrap_or(0),
        Metric::TotalFrozen => sum(|s| s.total_frozen_ns),
    };
    let ids: Vec<&String> = selected.iter().map(|(id, _)| *id).collect();
    let kinds = a.metric.finding_kinds();
    let findings: Vec<Finding> = report
        .analysis
        .findings
        .iter()
        .filter(|f| kinds.contains(&f.kind) && (a.scope == Scope::All || ids.contains(&&f.sb.id)))
        .cloned()
        .collect();
    let passed = a.op.holds(value, a.bound);
    let mut message = format!(
        "{} is {} (expected {} {})",
        a.metric.as_str(),
        show(a.metric, value),
        a.op.as_str(),
        show(a.metric, a.bound)
    );
    if selected.is_empty() && a.scope != Scope::All && a.metric != Metric::LostEvents {
        message.push_str("; no filesystem in the trace matches the scope");
    }
    if a.metric == Metric::LostEvents && !report.complete {
        message.push_str("; the trace has no footer, so losses are unknown");
    }
    Verdict {
        assertion: a.clone(),
        passed: passed && (report.complete || a.metric != Metric::LostEvents),
        value,
        matched: selected.len(),
        message,
        findings,
    }
}
