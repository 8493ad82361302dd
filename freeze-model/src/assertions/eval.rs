//! Evaluating an assertion against a report: the value, the verdict, the findings behind it.
use serde::Serialize;

use super::{Assertion, Metric, Op, Scope};
use crate::{
    correlate::{Finding, Summary},
    coverage::{Gap, Needed},
    names::named_enum,
    report::Report,
    units::fmt_secs,
};

named_enum! {
    /// What a verdict says.
    pub enum Status {
        Pass = "pass",
        Fail = "fail",
        /// A hook the assertion needs did not attach, and what it might have seen could change
        /// the verdict: the recording cannot prove it either way.
        Unproven = "unproven",
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict<'r> {
    pub assertion: Assertion,
    pub status: Status,
    /// `status` is `pass`.
    pub passed: bool,
    /// The measured value (count, or nanoseconds for duration metrics).
    pub value: u64,
    /// Superblocks the scope selected.
    pub matched: usize,
    /// One line for people: what was measured against what.
    pub message: String,
    /// The findings behind the value (for failures: what went wrong), in the report.
    pub findings: Vec<&'r Finding>,
    /// For `unproven`: the features it needed that did not attach, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unproven: Vec<Gap>,
}

/// The verdict when hooks were missing. They can only have hidden events, so the true value is
/// at least the one observed: an upper bound already exceeded is a certain failure, a lower bound
/// already met a certain pass; anything else is unproven.
fn verdict_with_gaps(op: Op, value: u64, bound: u64, holds: bool) -> Status {
    match op {
        Op::Eq | Op::Le | Op::Lt if !holds => Status::Fail,
        Op::Ge | Op::Gt if holds => Status::Pass,
        Op::Ne if value > bound => Status::Pass,
        _ => Status::Unproven,
    }
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
        // Task scopes select findings, not filesystems: every filesystem takes part.
        Scope::Unit(_) | Scope::Cgroup(_) | Scope::Comm(_) => true,
    }
}

/// Whether a finding's task is the one a task scope names.
fn task_matches(scope: &Scope, f: &Finding) -> bool {
    let cgroup = f.cgroup.as_ref();
    match scope {
        Scope::Unit(unit) => cgroup.and_then(|c| c.unit.as_deref()) == Some(unit.as_str()),
        Scope::Cgroup(prefix) => cgroup.and_then(|c| c.path.as_deref()).is_some_and(|path| {
            prefix == "/"
                || path == prefix
                || path.strip_prefix(prefix.as_str()).is_some_and(|r| r.starts_with('/'))
        }),
        Scope::Comm(comm) => &f.comm == comm,
        Scope::All | Scope::Mountpoint(_) | Scope::Fs(_) | Scope::Dev(_) => true,
    }
}

fn show(metric: Metric, v: u64) -> String {
    if metric.is_duration() { fmt_secs(v) } else { v.to_string() }
}

/// Evaluates one assertion against a report.
pub fn evaluate<'r>(a: &Assertion, report: &'r Report) -> Verdict<'r> {
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
    let findings: Vec<&Finding> = report
        .analysis
        .findings
        .iter()
        .filter(|f| kinds.contains(&f.kind) && (a.scope == Scope::All || ids.contains(&&f.sb.id)))
        .filter(|f| task_matches(&a.scope, f))
        .collect();
    // A task scope counts the findings of its tasks (the parser allows it only for metrics that
    // are counts of findings).
    let value = match a.metric.counted_finding() {
        Some(kind) if a.scope.is_task() => findings.iter().filter(|f| f.kind == kind).count() as u64,
        _ => value,
    };
    let holds = a.op.holds(value, a.bound) && (report.complete || a.metric != Metric::LostEvents);
    let mut fstypes: Vec<&str> =
        selected.iter().filter_map(|(_, s)| s.sb.as_ref().map(|sb| sb.fstype.as_str())).collect();
    if let Scope::Fs(t) = &a.scope {
        fstypes.push(t);
    }
    let mut gaps = report.coverage.gaps(a.metric, &fstypes);
    if matches!(a.scope, Scope::Unit(_) | Scope::Cgroup(_)) && !report.coverage.cgroup_paths {
        let why = "the recording has no cgroup paths (no cgroup2 hierarchy was mounted, or the \
                   recorder predates attribution)";
        gaps.push(Gap { feature: Needed::CgroupPaths, why: why.into() });
    }
    let status = match (gaps.is_empty(), holds) {
        (true, true) => Status::Pass,
        (true, false) => Status::Fail,
        (false, _) => verdict_with_gaps(a.op, value, a.bound, holds),
    };
    let unproven = if status == Status::Unproven { gaps } else { Vec::new() };
    let mut message = format!(
        "{} is {} (expected {} {})",
        a.metric.as_str(),
        show(a.metric, value),
        a.op.as_str(),
        show(a.metric, a.bound)
    );
    if selected.is_empty() && a.scope != Scope::All && !a.scope.is_task() && a.metric != Metric::LostEvents {
        message.push_str("; no filesystem in the trace matches the scope");
    }
    if a.metric == Metric::LostEvents && !report.complete {
        message.push_str("; the trace has no footer, so losses are unknown");
    }
    if status == Status::Unproven {
        message.push_str("; unproven: a hook it needs did not attach");
    }
    Verdict {
        assertion: a.clone(),
        status,
        passed: status == Status::Pass,
        value,
        matched: selected.len(),
        message,
        findings,
        unproven,
    }
}
