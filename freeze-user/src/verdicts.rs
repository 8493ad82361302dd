//! `freezewatch check` and `run`: evaluate assertions on a trace and say so, for people, for
//! tools (JSON) and for CI systems (JUnit XML).
use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    assertions::{self, Assertion, Verdict},
    correlate, report,
    trace::Contents,
};

#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub passed: bool,
    pub verdicts: &'a [Verdict],
    pub lost_events: Option<u64>,
    pub complete: bool,
    /// Exit code of the traced command, when the trace has one.
    pub command_exit: Option<i32>,
}

/// Evaluates every assertion on the trace.
pub fn evaluate(
    contents: &Contents,
    list: &[Assertion],
    opts: &correlate::Options,
) -> (Vec<Verdict>, report::Report) {
    let rep = report::build(contents, opts);
    let verdicts = list.iter().map(|a| assertions::evaluate(a, &rep)).collect();
    (verdicts, rep)
}

pub fn human(verdicts: &[Verdict], command_exit: Option<i32>) -> String {
    let mut s = String::new();
    let held = verdicts.iter().filter(|v| v.passed).count();
    let width = verdicts.iter().map(|v| v.assertion.text.len()).max().unwrap_or(0);
    for v in verdicts {
        let tag = if v.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(s, "{tag}  {:<width$}  {}", v.assertion.text, v.message);
        if !v.passed {
            for f in &v.findings {
                let _ = writeln!(s, "      - {}", f.message);
                if let Some(frames) = &f.stack {
                    for frame in frames.iter().take(8) {
                        let _ = writeln!(s, "          {frame}");
                    }
                }
            }
        }
    }
    let _ = writeln!(s, "{held} of {} assertions hold", verdicts.len());
    if let Some(code) = command_exit.filter(|c| *c != 0) {
        let _ = writeln!(s, "note: the traced command exited with status {code}");
    }
    s
}

/// Writes the JUnit report; the suite is named after the trace or command.
pub fn write_junit(
    path: &std::path::Path,
    verdicts: &[Verdict],
    suite: &str,
    seconds: f64,
) -> std::io::Result<()> {
    std::fs::write(path, assertions::junit(verdicts, suite, seconds))
}
