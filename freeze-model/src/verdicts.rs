//! `freezewatch check` and `run`: evaluate assertions on a trace and say so, for people, for
//! tools (JSON) and for CI systems (JUnit XML).

use serde::Serialize;

use crate::{
    assertions::{self, Assertion, Status, Verdict},
    report,
};

#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Every assertion passed.
    pub passed: bool,
    /// Assertions a missing hook left unproven.
    pub unproven: usize,
    pub verdicts: &'a [Verdict<'a>],
    pub lost_events: Option<u64>,
    pub complete: bool,
    /// Exit code of the traced command, when the trace has one.
    pub command_exit: Option<i32>,
}

/// Evaluates every assertion on a trace's report.
pub fn evaluate<'r>(report: &'r report::Report, list: &[Assertion]) -> Vec<Verdict<'r>> {
    list.iter().map(|a| assertions::evaluate(a, report)).collect()
}

/// The verdicts for people, written as they are made: a failure cites every finding behind it,
/// and a long trace can have tens of thousands.
pub fn human(
    out: &mut impl std::io::Write,
    verdicts: &[Verdict],
    command_exit: Option<i32>,
) -> std::io::Result<()> {
    let held = verdicts.iter().filter(|v| v.passed).count();
    let unproven = verdicts.iter().filter(|v| v.status == Status::Unproven).count();
    let width = verdicts.iter().map(|v| v.assertion.text.len()).max().unwrap_or(0);
    let tag_width = if unproven > 0 { "UNPROVEN".len() } else { "PASS".len() };
    for v in verdicts {
        let tag = match v.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Unproven => "UNPROVEN",
        };
        writeln!(out, "{tag:<tag_width$}  {:<width$}  {}", v.assertion.text, v.message)?;
        for gap in &v.unproven {
            writeln!(out, "      - needs {gap}")?;
        }
        if v.status == Status::Fail {
            for f in &v.findings {
                writeln!(out, "      - {}", f.message)?;
                if let Some(frames) = &f.stack {
                    for frame in frames.iter().take(8) {
                        writeln!(out, "          {frame}")?;
                    }
                }
            }
        }
    }
    if unproven > 0 {
        writeln!(out, "{held} of {} assertions hold, {unproven} unproven", verdicts.len())?;
    } else {
        writeln!(out, "{held} of {} assertions hold", verdicts.len())?;
    }
    if let Some(code) = command_exit.filter(|c| *c != 0) {
        writeln!(out, "note: the traced command exited with status {code}")?;
    }
    Ok(())
}

/// Writes the JUnit report; the suite is named after the trace or command.
pub fn write_junit(
    path: &std::path::Path,
    verdicts: &[Verdict],
    suite: &str,
    seconds: f64,
) -> std::io::Result<()> {
    std::fs::write(path, junit(verdicts, suite, seconds))
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
    let failures = verdicts.iter().filter(|v| v.status == Status::Fail).count();
    // An unproven assertion is an error (the check could not be made), never a pass.
    let errors = verdicts.iter().filter(|v| v.status == Status::Unproven).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"freezewatch\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">\n",
        verdicts.len()
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{seconds:.3}\">\n",
        xml_escape(suite),
        verdicts.len()
    ));
    for v in verdicts {
        x.push_str(&format!(
            "    <testcase classname=\"freezewatch.assertions\" name=\"{}\" time=\"0\"",
            xml_escape(&v.assertion.text)
        ));
        if v.status == Status::Pass {
            x.push_str(&format!(
                ">\n      <system-out>{}</system-out>\n    </testcase>\n",
                xml_escape(&v.message)
            ));
        } else if v.status == Status::Unproven {
            let needs: Vec<String> = v.unproven.iter().map(|g| format!("needs {g}")).collect();
            x.push_str(&format!(
                ">\n      <error message=\"{}\" type=\"Unproven\">{}</error>\n    </testcase>\n",
                xml_escape(&v.message),
                xml_escape(&needs.join("\n"))
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
    use crate::{assertions::parse, trace::read_trace};

    fn human_text(verdicts: &[Verdict<'_>], command_exit: Option<i32>) -> String {
        let mut out = Vec::new();
        human(&mut out, verdicts, command_exit).expect("writes");
        String::from_utf8(out).expect("UTF-8")
    }
    use crate::{correlate, trace::Contents};

    /// A hand-written trace: /mnt/a (ext4 7:0) frozen for 2 s with a dd write while frozen, and
    /// /mnt/b (xfs 7:1) frozen and never thawed. The footer says one event was lost.
    const TRACE: &str = r#"{"v":1,"type":"header","tool":"freezewatch","tool_version":"0","kernel":"6.18","started_unix_ms":0,"started_monotonic_ns":1000000000,"hooks":[{"feature":"freeze","hook":"tracepoint:syscalls:ioctl"},{"feature":"block-writes","hook":"tracepoint:block:block_bio_queue"},{"feature":"blocked-writers","hook":"tracepoint:lock:contention"},{"feature":"txn-ext4","hook":"tracepoint:ext4:ext4_journal_start"},{"feature":"txn-xfs","hook":"tracepoint:xfs:xfs_trans_alloc"},{"feature":"txn-btrfs","hook":"tracepoint:btrfs:btrfs_transaction_commit"},{"feature":"mounts","hook":"tracepoint:syscalls:mount"},{"feature":"completed-writes","hook":"tracepoint:syscalls:write"},{"feature":"backing-files","hook":"tracepoint:syscalls:fallocate+ftruncate"}]}
{"v":1,"type":"event","kind":"freeze_end","hook":"tracepoint:syscalls:ioctl","ts_ns":1000000000,"pid":1,"tid":1,"comm":"fsfreeze","sb":{"id":"0xa","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u","mountpoint":"/mnt/a"},"level_before":0,"level_after":4,"ret":0}
{"v":1,"type":"event","kind":"block_write","hook":"tracepoint:block:block_bio_queue","ts_ns":1500000000,"pid":9,"tid":9,"comm":"dd","sb":{"id":"0xa","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u","mountpoint":"/mnt/a"},"level_before":4,"level_after":4,"block":{"dev":"7:0","sector":8,"bytes":4096}}
{"v":1,"type":"event","kind":"thaw_end","hook":"tracepoint:syscalls:ioctl","ts_ns":3000000000,"pid":2,"tid":2,"comm":"fsfreeze","sb":{"id":"0xa","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u","mountpoint":"/mnt/a"},"level_before":4,"level_after":0,"ret":0}
{"v":1,"type":"event","kind":"freeze_end","hook":"tracepoint:syscalls:ioctl","ts_ns":3500000000,"pid":3,"tid":3,"comm":"xfs_freeze","sb":{"id":"0xb","dev":"7:1","fstype":"xfs","s_id":"loop1","uuid":"v","mountpoint":"/mnt/b"},"level_before":0,"level_after":4,"ret":0}
{"v":1,"type":"footer","events":4,"ended_by":"command","duration_ms":4000,"command_exit":0,"counters":{"lost_ringbuf_full":1,"lost_undecodable":0,"read_failed":0,"pending_full":0,"ioctl_seen":3,"fentry_seen":0}}
"#;

    #[test]
    fn assertions_on_a_hand_written_trace() {
        let contents = Contents::from_records(read_trace(TRACE.as_bytes()).expect("parses"));
        let cases = [
            ("frozen @/mnt/a", true, 1),
            ("frozen @/mnt/c", false, 0),
            ("no-slips @/mnt/a", false, 1),
            ("no-slips @fs=xfs", true, 0),
            ("slips @dev=7:0 == 1", true, 1),
            ("max_frozen @/mnt/a <= 2s", true, 2_000_000_000),
            // /mnt/b: frozen from 3.5 s until the recording ended at 5 s.
            ("max_frozen @/mnt/b == 1500ms", true, 1_500_000_000),
            ("total_frozen == 3500ms", true, 3_500_000_000),
            ("not-left-frozen @/mnt/a", true, 0),
            ("left_frozen == 1", true, 1),
            ("no-lost-events", false, 1),
            ("thaws @fs=xfs == 0", true, 0),
        ];
        let list: Vec<_> = cases.iter().map(|(t, _, _)| parse(t).expect(t)).collect();
        let report = report::build(&contents, &correlate::Options::default());
        let verdicts = evaluate(&report, &list);
        for ((text, passed, value), v) in cases.iter().zip(&verdicts) {
            assert_eq!((v.passed, v.value), (*passed, *value), "{text}: {}", v.message);
        }
        let slip = &verdicts[2];
        assert_eq!(slip.findings.len(), 1);
        assert_eq!(slip.findings[0].comm, "dd");
        let text = human_text(&verdicts, Some(3));
        assert!(text.contains("FAIL  no-slips @/mnt/a"), "{text}");
        assert!(text.contains("      - dd[9] wrote 4096 bytes"), "{text}");
        assert!(text.contains("9 of 12 assertions hold"), "{text}");
        assert!(text.ends_with("note: the traced command exited with status 3\n"), "{text}");
    }

    /// The same trace recorded where the xfs transaction hook could not attach.
    fn without_txn_xfs() -> Contents {
        let partial = TRACE.replacen(
            r#"{"feature":"txn-xfs","hook":"tracepoint:xfs:xfs_trans_alloc"}"#,
            r#"{"feature":"txn-xfs","hook":null,"fallbacks":["tracepoint:xfs:xfs_trans_alloc: xfs is not loaded"]}"#,
            1,
        );
        assert_ne!(partial, TRACE);
        Contents::from_records(read_trace(partial.as_bytes()).expect("parses"))
    }

    #[test]
    fn an_assertion_a_missing_hook_could_change_is_unproven_not_passed() {
        let cases = [
            // Nothing seen on xfs, but its transaction starts were not watched.
            ("no-slips @fs=xfs", Status::Unproven),
            ("slips @/mnt/b <= 3", Status::Unproven),
            // ext4 does not need the xfs hook.
            ("no-slips @fs=ext4", Status::Fail),
            ("slips @fs=ext4 == 1", Status::Pass),
            // Missing hooks only hide events: a bound already exceeded fails, one met passes.
            ("slips <= 0", Status::Fail),
            ("slips >= 1", Status::Pass),
            ("slips == 1", Status::Unproven),
            // Freezes and losses do not depend on the xfs hook.
            ("frozen @/mnt/b", Status::Pass),
            ("no-lost-events", Status::Fail),
            // Not asked for: nothing can be said about denials.
            ("denied_mounts == 0", Status::Unproven),
        ];
        let list: Vec<_> = cases.iter().map(|(t, _)| parse(t).expect(t)).collect();
        let rep = report::build(&without_txn_xfs(), &correlate::Options::default());
        let verdicts = evaluate(&rep, &list);
        for ((text, status), v) in cases.iter().zip(&verdicts) {
            assert_eq!(v.status, *status, "{text}: {}", v.message);
            assert_eq!(v.passed, *status == Status::Pass, "{text}");
        }
        let xfs = &verdicts[0];
        assert_eq!(xfs.unproven.len(), 1);
        assert!(
            xfs.unproven[0].to_string().starts_with("txn-xfs: no hook attached (tracepoint:xfs"),
            "{:?}",
            xfs.unproven
        );
        assert_eq!(rep.coverage.gaps_missing().count(), 1);
        let json = serde_json::to_value(&rep).expect("serialises");
        assert_eq!(json["missing_hooks"][0]["feature"], "txn-xfs", "{}", json["missing_hooks"]);
        let text = human_text(&verdicts, None);
        assert!(text.contains("UNPROVEN  no-slips @fs=xfs"), "{text}");
        assert!(text.contains("PASS      frozen @/mnt/b"), "{text}");
        assert!(text.contains("      - needs txn-xfs: no hook attached"), "{text}");
        assert!(text.contains("3 of 10 assertions hold, 4 unproven"), "{text}");
        let xml = junit(&verdicts, "s", 1.0);
        assert!(xml.contains(r#"failures="3" errors="4""#), "{xml}");
        assert!(xml.contains(r#"<error message="slips is 0"#), "{xml}");
        let report = crate::report::human(&rep, None, false);
        assert!(report.contains("PARTIAL COVERAGE: txn-xfs: no hook attached"), "{report}");
    }
}
