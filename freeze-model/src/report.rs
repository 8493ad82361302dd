//! `freezewatch report`: the correlation of a trace, for people (text) and tools (JSON).
use std::{fmt::Write as _, io::BufRead};

use serde::Serialize;

use crate::{
    correlate::{self, Analysis, Correlator, Finding, FindingKind, KindSet, Severity},
    coverage::Coverage,
    trace::{Contents, Footer, Header, Record, TraceError, end_ns, records},
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
    /// Which features the recording had (from the header). In JSON, `missing_hooks`: the
    /// features that did not attach, with why (absent when none is missing).
    #[serde(
        rename = "missing_hooks",
        serialize_with = "missing_hooks",
        skip_serializing_if = "nothing_missing"
    )]
    pub coverage: Coverage,
}

fn nothing_missing(c: &Coverage) -> bool {
    c.missing.is_empty()
}

fn missing_hooks<S: serde::Serializer>(c: &Coverage, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(c.gaps_missing())
}

pub fn build(contents: &Contents, opts: &correlate::Options) -> Report {
    let analysis = correlate::analyze(&contents.events, opts, contents.end_ns());
    assemble(analysis, contents.header.as_ref(), contents.footer.as_ref())
}

fn assemble(analysis: Analysis, header: Option<&Header>, footer: Option<&Footer>) -> Report {
    Report {
        analysis,
        lost_events: footer.map(|f| f.counters.lost()),
        complete: footer.is_some(),
        coverage: Coverage::of(header),
    }
}

/// How far out of order a trace's events may be for `stream`: the recorder writes them in the
/// order the ring buffer delivered them, microseconds apart at most.
const STREAM_WINDOW_NS: u64 = 1_000_000_000;

/// A trace read and correlated in one pass.
pub struct Streamed {
    pub header: Option<Header>,
    pub footer: Option<Footer>,
    pub report: Report,
}

/// Correlates a trace as it is read, holding no events, with the same result as `build`. None
/// when an event came more than a second out of order (a file edited or merged by hand): sort
/// it with `build` instead.
pub fn stream(input: impl BufRead, opts: &correlate::Options) -> Result<Option<Streamed>, TraceError> {
    stream_keeping(input, opts, KindSet::ALL)
}

/// `stream`, building only the findings of `kinds` (the summaries count everything): what a
/// check of a few metrics needs from a long trace.
pub fn stream_keeping(
    input: impl BufRead,
    opts: &correlate::Options,
    kinds: KindSet,
) -> Result<Option<Streamed>, TraceError> {
    let mut correlator =
        Correlator::new(correlate::Options { reorder_window_ns: STREAM_WINDOW_NS, kinds, ..opts.clone() });
    let (mut header, mut footer, mut findings) = (None, None, Vec::new());
    for record in records(input) {
        match record? {
            Record::Header(h) => header = Some(h),
            Record::Event(e) => findings.extend(correlator.push(e)),
            Record::Footer(f) => footer = Some(f),
            // Findings and summaries are recomputed from the events.
            Record::Finding(_) | Record::Summary(_) => {}
        }
        if correlator.late_events() > 0 {
            return Ok(None);
        }
    }
    let mut analysis =
        correlate::in_time_order(findings, correlator.finish(end_ns(header.as_ref(), footer.as_ref())));
    analysis.findings.retain(|f| kinds.contains(f.kind));
    let report = assemble(analysis, header.as_ref(), footer.as_ref());
    Ok(Some(Streamed { header, footer, report }))
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
    for gap in report.coverage.gaps_missing() {
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
        let left = if sum.left_frozen { ", LEFT FROZEN" } else { "" };
        let _ = writeln!(s, "  {name}: {}{left}", sum.counts());
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
        // Who, beyond the pid the sentence names: when the recorder knew the parent or cgroup.
        if f.parent.is_some() || f.cgroup.as_ref().is_some_and(|c| c.path.is_some()) {
            let _ = writeln!(s, "  {:<38}by {}", "", f.who());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::read_trace;

    const FIXTURE: &str = include_str!("../../tests/fixtures/cycles-ext4-xfs.ndjson");

    fn json(r: &Report) -> String {
        serde_json::to_string(r).expect("serialises")
    }

    #[test]
    fn streaming_gives_what_sorting_all_events_gives() {
        let opts = correlate::Options::default();
        let batch = build(&Contents::from_records(read_trace(FIXTURE.as_bytes()).expect("reads")), &opts);
        let streamed = stream(FIXTURE.as_bytes(), &opts).expect("reads").expect("in order");
        assert_eq!(json(&streamed.report), json(&batch));
        assert!(streamed.header.is_some() && streamed.footer.is_some());
        assert!(batch.analysis.findings.len() > 30, "a real recording with findings");
    }

    /// The fixture's events again, `shift_ns` later (the same superblocks, later cycles).
    fn shifted(shift_ns: u64) -> Vec<String> {
        FIXTURE
            .lines()
            .filter(|l| l.contains(r#""type":"event""#))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                let mut v = v;
                for key in ["ts_ns", "begin_ts_ns"] {
                    if let Some(ts) = v[key].as_u64() {
                        v[key] = (ts + shift_ns).into();
                    }
                }
                v.to_string()
            })
            .collect()
    }

    #[test]
    fn out_of_order_events_are_reordered_or_left_to_the_sorting_path() {
        let opts = correlate::Options::default();
        let head: Vec<&str> = FIXTURE.lines().take_while(|l| !l.contains(r#""type":"event""#)).collect();
        let first = shifted(0).into_iter().next().expect("an event");
        // Two copies 3 s apart, then the first event again: 3 s late, long after its time passed.
        let late: Vec<String> = head
            .iter()
            .map(|l| (*l).to_owned())
            .chain(shifted(0))
            .chain(shifted(3_000_000_000))
            .chain([first.clone()])
            .collect();
        assert!(stream(late.join("\n").as_bytes(), &opts).expect("reads").is_none(), "left to sorting");
        // Within the window: reordered in the stream, the same report as sorting all events.
        let mut near: Vec<String> = head.iter().map(|l| (*l).to_owned()).chain(shifted(0)).collect();
        let moved = near.remove(head.len());
        near.push(moved);
        let text = near.join("\n");
        let streamed = stream(text.as_bytes(), &opts).expect("reads").expect("absorbed by the window");
        let sorted = build(&Contents::from_records(read_trace(text.as_bytes()).expect("reads")), &opts);
        assert_eq!(json(&streamed.report), json(&sorted));
    }
}
