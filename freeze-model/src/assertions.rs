//! The assertion language of `freezewatch run` and `check`: `METRIC [@SCOPE] OP VALUE`.
//!
//! Pure: parsing and evaluation need no kernel. Grammar (documented in README):
//! - METRIC: freezes, thaws, failed_freezes, slips, blocked_writers, mounts_while_frozen,
//!   denied_mounts, would_deny_mounts, lost_events, left_frozen (counts); max_frozen, total_frozen (durations).
//! - SCOPE: `@/mount/point`, `@fs=TYPE`, `@dev=MAJOR:MINOR`; none means every superblock.
//! - OP: `==`, `!=`, `<`, `<=`, `>`, `>=`. VALUE: an integer, or a duration with unit (`500ms`).
//! - Shorthands: `no-slips` (`slips == 0`), `frozen @SCOPE` (`freezes @SCOPE >= 1`),
//!   `no-mounts-while-frozen`, `no-lost-events`, `not-left-frozen`.
use std::fmt;

use serde::Serialize;

use crate::{
    correlate::{Finding, FindingKind, Summary},
    report::Report,
    units::{fmt_secs, parse_duration},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Freezes,
    Thaws,
    FailedFreezes,
    Slips,
    BlockedWriters,
    MountsWhileFrozen,
    DeniedMounts,
    WouldDenyMounts,
    LostEvents,
    LeftFrozen,
    MaxFrozen,
    TotalFrozen,
}

const METRICS: &[(&str, Metric)] = &[
    ("freezes", Metric::Freezes),
    ("thaws", Metric::Thaws),
    ("failed_freezes", Metric::FailedFreezes),
    ("slips", Metric::Slips),
    ("blocked_writers", Metric::BlockedWriters),
    ("mounts_while_frozen", Metric::MountsWhileFrozen),
    ("denied_mounts", Metric::DeniedMounts),
    ("would_deny_mounts", Metric::WouldDenyMounts),
    ("lost_events", Metric::LostEvents),
    ("left_frozen", Metric::LeftFrozen),
    ("max_frozen", Metric::MaxFrozen),
    ("total_frozen", Metric::TotalFrozen),
];

impl Metric {
    fn is_duration(self) -> bool {
        matches!(self, Metric::MaxFrozen | Metric::TotalFrozen)
    }

    fn name(self) -> &'static str {
        METRICS.iter().find(|(_, m)| *m == self).map_or("?", |(n, _)| n)
    }

    /// The findings that explain a value of this metric.
    fn finding_kinds(self) -> &'static [FindingKind] {
        match self {
            Metric::Slips => &[FindingKind::Slip],
            Metric::FailedFreezes => &[FindingKind::FreezeFailed],
            Metric::BlockedWriters => &[FindingKind::BlockedWriter],
            Metric::MountsWhileFrozen => &[FindingKind::MountWhileFrozen],
            Metric::DeniedMounts | Metric::WouldDenyMounts => &[FindingKind::MountDenied],
            Metric::LeftFrozen => &[FindingKind::LeftFrozen],
            Metric::MaxFrozen | Metric::TotalFrozen => &[FindingKind::LongFreeze, FindingKind::LeftFrozen],
            Metric::Freezes | Metric::Thaws | Metric::LostEvents => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum Scope {
    All,
    Mountpoint(String),
    Fs(String),
    Dev(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, value: u64, bound: u64) -> bool {
        match self {
            Op::Eq => value == bound,
            Op::Ne => value != bound,
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assertion {
    /// As the user wrote it.
    pub text: String,
    pub metric: Metric,
    pub scope: Scope,
    pub op: Op,
    /// A count, or nanoseconds for duration metrics.
    pub bound: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub text: String,
    /// 1-based column of the problem.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: {}\n  {}\n  {}^",
            self.column,
            self.message,
            self.text,
            " ".repeat(self.column - 1)
        )
    }
}

/// Splits on whitespace, keeping each token's 1-based column.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out.into_iter().map(|(i, t)| (text[..i].chars().count() + 1, t)).collect()
}

fn err(text: &str, column: usize, message: impl Into<String>) -> ParseError {
    ParseError { text: text.to_owned(), column, message: message.into() }
}

fn parse_scope(text: &str, column: usize, token: &str) -> Result<Scope, ParseError> {
    let body = &token[1..];
    if body.is_empty() {
        return Err(err(text, column, "empty scope: write @/mount/point, @fs=TYPE or @dev=MAJOR:MINOR"));
    }
    if let Some(fs) = body.strip_prefix("fs=") {
        if fs.is_empty() {
            return Err(err(text, column + 4, "@fs= needs a filesystem type, e.g. @fs=xfs"));
        }
        return Ok(Scope::Fs(fs.to_owned()));
    }
    if let Some(dev) = body.strip_prefix("dev=") {
        let ok =
            dev.split_once(':').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
        if !ok {
            return Err(err(text, column + 5, format!("`{dev}` is not MAJOR:MINOR, e.g. @dev=7:0")));
        }
        return Ok(Scope::Dev(dev.to_owned()));
    }
    if body.starts_with('/') {
        let trimmed = body.trim_end_matches('/');
        return Ok(Scope::Mountpoint(if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() }));
    }
    Err(err(
        text,
        column,
        format!("unknown scope `{token}`: write @/mount/point, @fs=TYPE or @dev=MAJOR:MINOR"),
    ))
}

/// Parses one assertion.
pub fn parse(text: &str) -> Result<Assertion, ParseError> {
    let toks = tokens(text);
    let Some(&(col0, first)) = toks.first() else {
        return Err(err(text, 1, "empty assertion"));
    };
    let scope_at = |i: usize| -> Result<Scope, ParseError> {
        match toks.get(i) {
            Some(&(c, t)) if t.starts_with('@') => parse_scope(text, c, t),
            Some(&(c, t)) => Err(err(text, c, format!("expected a scope (@...) here, found `{t}`"))),
            None => Ok(Scope::All),
        }
    };
    let shorthand = |metric: Metric, op: Op, bound: u64, scope: Scope| Assertion {
        text: text.trim().to_owned(),
        metric,
        scope,
        op,
        bound,
    };
    let rest_must_end = |after: usize| -> Result<(), ParseError> {
        match toks.get(after) {
            Some(&(c, t)) => Err(err(text, c, format!("unexpected `{t}` after the assertion"))),
            None => Ok(()),
        }
    };
    match first {
        "no-slips" | "no-mounts-while-frozen" | "no-lost-events" | "not-left-frozen" | "frozen" => {
            let scope = scope_at(1)?;
            rest_must_end(if scope == Scope::All { 1 } else { 2 })?;
            let (metric, op, bound) = match first {
                "no-slips" => (Metric::Slips, Op::Eq, 0),
                "no-mounts-while-frozen" => (Metric::MountsWhileFrozen, Op::Eq, 0),
                "no-lost-events" => (Metric::LostEvents, Op::Eq, 0),
                "not-left-frozen" => (Metric::LeftFrozen, Op::Eq, 0),
                _ => (Metric::Freezes, Op::Ge, 1),
            };
            if metric == Metric::LostEvents && scope != Scope::All {
                return Err(err(
                    text,
                    toks[1].0,
                    "lost_events counts the whole recording; it takes no scope",
                ));
            }
            return Ok(shorthand(metric, op, bound, scope));
        }
        _ => {}
    }
    let metric = METRICS.iter().find(|(n, _)| *n == first).map(|(_, m)| *m).ok_or_else(|| {
        let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
        err(text, col0, format!("unknown metric `{first}`; metrics: {}", names.join(", ")))
    })?;
    let mut i = 1;
    let scope = match toks.get(1) {
        Some(&(_, t)) if t.starts_with('@') => {
            i = 2;
            scope_at(1)?
        }
        _ => Scope::All,
    };
    if metric == Metric::LostEvents && scope != Scope::All {
        return Err(err(text, toks[1].0, "lost_events counts the whole recording; it takes no scope"));
    }
    let &(op_col, op_tok) = toks
        .get(i)
        .ok_or_else(|| err(text, text.chars().count() + 1, "missing operator (one of == != < <= > >=)"))?;
    let op = match op_tok {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "=" => return Err(err(text, op_col, "`=` is not an operator; did you mean `==`?")),
        other => {
            return Err(err(text, op_col, format!("`{other}` is not an operator (one of == != < <= > >=)")));
        }
    };
    let &(val_col, val_tok) = toks
        .get(i + 1)
        .ok_or_else(|| err(text, text.chars().count() + 1, "missing value after the operator"))?;
    let bound = if metric.is_duration() {
        let d = parse_duration(val_tok)
            .map_err(|e| err(text, val_col, format!("{} is a duration: {e}", metric.name())))?;
        u64::try_from(d.as_nanos()).map_err(|_| err(text, val_col, "duration too large"))?
    } else {
        val_tok.parse::<u64>().map_err(|_| {
            err(text, val_col, format!("{} is a count: `{val_tok}` is not a whole number", metric.name()))
        })?
    };
    rest_must_end(i + 2)?;
    Ok(Assertion { text: text.trim().to_owned(), metric, scope, op, bound })
}

/// Parses an assertions file: one per line, `#` starts a comment, blank lines are skipped.
/// Errors name the line.
pub fn parse_file(content: &str) -> Result<Vec<Assertion>, String> {
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        out.push(parse(code).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

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
        a.metric.name(),
        show(a.metric, value),
        a.op.symbol(),
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

fn xml_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => format!("&#{};", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one test case per assertion; failures carry the message and the findings.
pub fn junit(verdicts: &[Verdict], suite: &str, seconds: f64) -> String {
    let failures = verdicts.iter().filter(|v| !v.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"freezewatch\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{seconds:.3}\">\n",
        verdicts.len()
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{seconds:.3}\">\n",
        xml_escape(suite),
        verdicts.len()
    ));
    for v in verdicts {
        x.push_str(&format!(
            "    <testcase classname=\"freezewatch.assertions\" name=\"{}\" time=\"0\"",
            xml_escape(&v.assertion.text)
        ));
        if v.passed {
            x.push_str(&format!(
                ">\n      <system-out>{}</system-out>\n    </testcase>\n",
                xml_escape(&v.message)
            ));
        } else {
            let body: Vec<String> = v
                .findings
                .iter()
                .map(|f| {
                    let stack =
                        f.stack.as_ref().map(|s| format!("\n    {}", s.join("\n    "))).unwrap_or_default();
                    format!("{}{stack}", f.message)
                })
                .collect();
            x.push_str(&format!(
                ">\n      <failure message=\"{}\" type=\"AssertionFailed\">{}</failure>\n    </testcase>\n",
                xml_escape(&v.message),
                xml_escape(&body.join("\n"))
            ));
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::{Analysis, Severity},
        event::Superblock,
    };

    fn ok(text: &str) -> Assertion {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn bad(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    #[test]
    fn every_operator_metric_and_unit_parses() {
        for (sym, op) in
            [("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), ("<=", Op::Le), (">", Op::Gt), (">=", Op::Ge)]
        {
            assert_eq!(ok(&format!("slips {sym} 3")).op, op);
        }
        for (name, metric) in METRICS {
            let value = if metric.is_duration() { "2s" } else { "1" };
            let a = ok(&format!("{name} >= {value}"));
            assert_eq!(a.metric, *metric);
        }
        assert_eq!(ok("max_frozen < 500ms").bound, 500_000_000);
        assert_eq!(ok("total_frozen <= 1.5s").bound, 1_500_000_000);
        assert_eq!(ok("max_frozen < 2m").bound, 120_000_000_000);
    }

    #[test]
    fn scopes_and_shorthands() {
        assert_eq!(ok("freezes @/mnt/data/ >= 2").scope, Scope::Mountpoint("/mnt/data".into()));
        assert_eq!(ok("slips @fs=xfs == 0").scope, Scope::Fs("xfs".into()));
        assert_eq!(ok("slips @dev=7:0 == 0").scope, Scope::Dev("7:0".into()));
        let a = ok("no-slips");
        assert_eq!((a.metric, a.op, a.bound, a.scope), (Metric::Slips, Op::Eq, 0, Scope::All));
        let a = ok("frozen @/mnt/data");
        assert_eq!((a.metric, a.op, a.bound), (Metric::Freezes, Op::Ge, 1));
        assert_eq!(a.scope, Scope::Mountpoint("/mnt/data".into()));
        assert_eq!(ok("no-slips @fs=ext4").scope, Scope::Fs("ext4".into()));
        assert_eq!(ok("not-left-frozen").metric, Metric::LeftFrozen);
        assert_eq!(ok("no-mounts-while-frozen").metric, Metric::MountsWhileFrozen);
        assert_eq!(ok("no-lost-events").metric, Metric::LostEvents);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty assertion"),
            ("slipz == 0", 1, "unknown metric `slipz`"),
            ("slips = 0", 7, "did you mean `==`"),
            ("slips =< 0", 7, "`=<` is not an operator"),
            ("slips ==", 9, "missing value"),
            ("slips", 6, "missing operator"),
            ("slips == many", 10, "not a whole number"),
            ("slips == 1s", 10, "not a whole number"),
            ("max_frozen < 500", 14, "has no unit"),
            ("max_frozen < 5 parsecs", 14, "duration"),
            ("slips @mnt == 0", 7, "unknown scope"),
            ("slips @dev=7 == 0", 12, "not MAJOR:MINOR"),
            ("slips @fs= == 0", 11, "needs a filesystem type"),
            ("slips == 0 extra", 12, "unexpected `extra`"),
            ("no-slips now", 10, "expected a scope"),
            ("lost_events @/m == 0", 13, "takes no scope"),
            ("frozen @/a @/b", 12, "unexpected"),
        ];
        for (text, column, needle) in cases {
            let e = bad(text);
            assert_eq!(e.column, *column, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        let shown = bad("slips = 0").to_string();
        assert_eq!(shown, "column 7: `=` is not an operator; did you mean `==`?\n  slips = 0\n        ^");
    }

    #[test]
    fn files_take_comments_and_name_bad_lines() {
        let good = "# backup job\nno-slips\n\nfrozen @/mnt/data   # at least once\nmax_frozen < 2s\n";
        let parsed = parse_file(good).expect("parses");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].text, "frozen @/mnt/data");
        let e = parse_file("no-slips\nslips >> 1\n").expect_err("bad line");
        assert!(e.starts_with("line 2: column 7: `>>` is not an operator"), "{e}");
    }

    fn sb(mp: &str, fstype: &str, dev: &str) -> Superblock {
        Superblock {
            id: format!("0x{dev}"),
            dev: dev.into(),
            fstype: fstype.into(),
            s_id: "loop0".into(),
            uuid: "u".into(),
            mountpoint: Some(mp.into()),
        }
    }

    fn report() -> Report {
        let data = sb("/mnt/data", "xfs", "7:0");
        let logs = sb("/mnt/logs", "ext4", "7:1");
        let summaries = [
            (
                data.id.clone(),
                Summary {
                    sb: Some(data.clone()),
                    freezes: 2,
                    thaws: 2,
                    slips: 1,
                    max_frozen_ns: 3_000_000_000,
                    total_frozen_ns: 4_000_000_000,
                    denied_mounts: 2,
                    ..Default::default()
                },
            ),
            (
                logs.id.clone(),
                Summary {
                    sb: Some(logs.clone()),
                    freezes: 1,
                    thaws: 0,
                    left_frozen: true,
                    max_frozen_ns: 1_000_000_000,
                    total_frozen_ns: 1_000_000_000,
                    would_deny_mounts: 1,
                    ..Default::default()
                },
            ),
        ]
        .into_iter()
        .collect();
        let slip = Finding {
            kind: FindingKind::Slip,
            severity: Severity::Error,
            ts_ns: 5,
            sb: data,
            pid: 77,
            comm: "dd".into(),
            hook: "tracepoint:block:block_bio_queue".into(),
            level: Some(4),
            duration_ns: None,
            message: "dd[77] wrote 4096 bytes".into(),
            stack: Some(vec!["submit_bio+0x1".into()]),
            exempt_reason: None,
        };
        Report {
            analysis: Analysis { findings: vec![slip], summaries },
            lost_events: Some(0),
            complete: true,
        }
    }

    #[test]
    fn evaluation_sums_over_the_scope_and_explains_failures() {
        let r = report();
        let v = evaluate(&ok("freezes >= 3"), &r);
        assert!(v.passed && v.value == 3 && v.matched == 2, "{v:?}");
        let v = evaluate(&ok("freezes @/mnt/data >= 3"), &r);
        assert!(!v.passed);
        assert_eq!(v.message, "freezes is 2 (expected >= 3)");
        let v = evaluate(&ok("no-slips @fs=xfs"), &r);
        assert!(!v.passed);
        assert_eq!(v.findings.len(), 1);
        assert_eq!(v.findings[0].comm, "dd");
        assert!(evaluate(&ok("no-slips @dev=7:1"), &r).passed);
        assert!(evaluate(&ok("not-left-frozen @/mnt/data"), &r).passed);
        assert!(!evaluate(&ok("not-left-frozen"), &r).passed);
    }

    #[test]
    fn mount_denials_are_counted_per_mode() {
        let r = report();
        assert_eq!(evaluate(&ok("denied_mounts == 2"), &r).value, 2);
        assert!(evaluate(&ok("denied_mounts @/mnt/logs == 0"), &r).passed);
        assert_eq!(evaluate(&ok("would_deny_mounts >= 1"), &r).value, 1);
        assert!(!evaluate(&ok("would_deny_mounts == 0"), &r).passed);
    }

    #[test]
    fn durations_counts_and_empty_scopes() {
        let r = report();
        let v = evaluate(&ok("max_frozen < 2s"), &r);
        assert!(!v.passed);
        assert_eq!(v.message, "max_frozen is 3.000s (expected < 2.000s)");
        assert!(evaluate(&ok("total_frozen == 5s"), &r).passed);
        assert_eq!(evaluate(&ok("left_frozen == 1"), &r).value, 1);
        assert!(evaluate(&ok("no-lost-events"), &r).passed);
        let v = evaluate(&ok("frozen @/nowhere"), &r);
        assert!(!v.passed);
        assert!(v.message.ends_with("no filesystem in the trace matches the scope"), "{}", v.message);
        let mut cut = report();
        cut.complete = false;
        cut.lost_events = None;
        let v = evaluate(&ok("no-lost-events"), &cut);
        assert!(!v.passed, "unknown losses are not zero losses");
    }

    #[test]
    fn junit_has_the_required_structure_and_escapes() {
        let r = report();
        let verdicts: Vec<Verdict> =
            ["no-slips", "freezes >= 1", "max_frozen < 1s"].iter().map(|t| evaluate(&ok(t), &r)).collect();
        let xml = junit(&verdicts, "backup <nightly> & co", 1.5);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(xml.contains("<testsuites name=\"freezewatch\" tests=\"3\" failures=\"2\""));
        assert!(xml.contains("<testsuite name=\"backup &lt;nightly&gt; &amp; co\" tests=\"3\" failures=\"2\" errors=\"0\" skipped=\"0\""));
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert!(xml.contains("<failure message=\"slips is 1 (expected == 0)\" type=\"AssertionFailed\">dd[77] wrote 4096 bytes\n    submit_bio+0x1</failure>"));
        assert!(xml.contains("name=\"max_frozen &lt; 1s\""));
        assert!(xml.trim_end().ends_with("</testsuites>"));
        // Every opened element is closed.
        for tag in ["testsuites", "testsuite", "testcase"] {
            assert_eq!(
                xml.matches(&format!("<{tag} ")).count(),
                xml.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }
}
