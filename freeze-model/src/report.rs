//! `freezewatch report`: the correlation of a trace, for people (text) and tools (JSON).
use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    correlate::{self, Analysis, Finding, FindingKind, Severity},
    coverage::{Coverage, Gap},
    trace::{Contents, Header},
    units::fmt_secs,
};

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub analysis: Analysis,
    /// Events that never reached the trace (from the footer); null when the trace has no footer.
    pub lost_events: Option<u64>,
    /// Whether the trace ends with a footer (a recorder that was killed leaves none).
    pub complete: bool,
    /// Which features the recording had (from the header); listed in JSON only when some are
    /// missing, as `missing_hooks`.
    #[serde(skip)]
    pub coverage: Coverage,
    /// Features that did not attach, with why (absent when coverage is complete).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_hooks: Vec<Gap>,
}

pub fn build(contents: &Contents, opts: &correlate::Options) -> Report {
    let analysis = correlate::analyze(&contents.events, opts, contents.end_ns());
    let coverage = Coverage::of(contents.header.as_ref());
    let missing_hooks =
        coverage.missing.iter().map(|(feature, why)| Gap { feature: *feature, why: why.clone() }).collect();
    Report {
        analysis,
        lost_events: contents.footer.as_ref().map(|f| f.counters.lost()),
        complete: contents.footer.is_some(),
        coverage,
        missing_hooks,
    }
}

pub fn human(report: &Report, header: Option<&Header>, all: bool) -> String {
    let mut s = String::new();
    if let Some(h) = header {
        let hooks: Vec<String> = h
            .hooks
            .iter()
            .map(|k| format!("{}={}", k.feature, k.hook.as_deref().unwrap_or("none")))
            .collect();
        let _ = writeln!(s, "kernel {}; hooks: {}", h.kernel, hooks.join(", "));
    }
    if !report.coverage.known {
        let _ = writeln!(s, "COVERAGE UNKNOWN: the trace has no header; which hooks ran cannot be told");
    }
    for gap in &report.missing_hooks {
        let _ = writeln!(s, "PARTIAL COVERAGE: {gap}: what it would see is not in this trace");
    }
    let start = header.map(|h| h.started_monotonic_ns).unwrap_or(0);
    let _ = writeln!(s, "\nsuperblocks ({}):", report.analysis.summaries.len());
    for (id, sum) in &report.analysis.summaries {
        let name = sum
            .sb
            .as_ref()
            .map(|b| format!("{} {} {}", b.fstype, b.dev, b.mountpoint.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| id.clone());
        let _ = writeln!(
            s,
            "  {name}: {} freezes ({} failed), {} thaws, frozen {} in total (longest {}), {} slips, \
             {} blocked writers{}",
            sum.freezes,
            sum.failed_freezes,
            sum.thaws,
            fmt_secs(sum.total_frozen_ns),
            fmt_secs(sum.max_frozen_ns),
            sum.slips,
            sum.blocked_writers,
            if sum.left_frozen { ", LEFT FROZEN" } else { "" }
        );
    }
    let (exempt, shown): (Vec<&Finding>, Vec<&Finding>) =
        report.analysis.findings.iter().partition(|f| f.kind == FindingKind::Exempt && !all);
    let _ = writeln!(s, "\nfindings ({}):", shown.len());
    for f in shown {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
            Severity::Info => "info ",
        };
        let kind = f.kind.as_str();
        let _ =
            writeln!(s, "  {sev} {kind:<20} +{:<9} {}", fmt_secs(f.ts_ns.saturating_sub(start)), f.message);
    }
    if !exempt.is_empty() {
        let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &exempt {
            let reason = f.exempt_reason.as_deref().unwrap_or(f.message.as_str());
            *reasons.entry(reason).or_default() += 1;
        }
        let _ = writeln!(s, "\nexempt, not slips ({}; --all lists them):", exempt.len());
        for (reason, n) in reasons {
            let _ = writeln!(s, "  {n:>6} × {reason}");
        }
    }
    match (report.complete, report.lost_events) {
        (true, Some(0)) => _ = writeln!(s, "\nno events lost"),
        (true, Some(n)) => _ = writeln!(s, "\nWARNING: {n} events were lost; findings may be missing"),
        _ => _ = writeln!(s, "\nWARNING: the trace has no footer (recording was cut short); losses unknown"),
    }
    s
}
