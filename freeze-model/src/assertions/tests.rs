//! The assertion language: parsing, evaluation and the JUnit report.
use super::*;
use crate::{
    correlate::{Analysis, Finding, Severity, Summary},
    coverage::Coverage,
    event::{SharedSuperblock, Superblock},
    report::Report,
    verdicts::junit,
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
    for (name, metric) in Metric::NAMES.iter().zip(Metric::ALL) {
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

fn sb(mp: &str, fstype: &str, dev: &str) -> SharedSuperblock {
    SharedSuperblock::new(Superblock {
        id: format!("0x{dev}"),
        dev: dev.into(),
        fstype: fstype.into(),
        s_id: "loop0".into(),
        uuid: "u".into(),
        mountpoint: Some(mp.into()),
    })
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
        stack: Some(["submit_bio+0x1".into()].into()),
        exempt_reason: None,
        block: None,
        cgroup: Some(crate::attribution::Cgroup::at(9, "/system.slice/backup.service/worker".into()).into()),
        parent: Some(
            crate::attribution::Parent { pid: 70, comm: "backup.sh".into(), reaper: false, exiting: false }
                .into(),
        ),
    };
    Report {
        analysis: Analysis { findings: vec![slip], summaries },
        lost_events: Some(0),
        complete: true,
        // Every hook attached, --deny-mounts included.
        coverage: Coverage {
            missing: Default::default(),
            deny_requested: true,
            known: true,
            cgroup_paths: true,
        },
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
fn task_scopes_count_the_findings_of_their_tasks() {
    let r = report();
    assert_eq!(evaluate(&ok("slips @unit=backup.service == 1"), &r).value, 1);
    assert!(evaluate(&ok("no-slips @unit=other.service"), &r).passed);
    assert_eq!(evaluate(&ok("slips @cgroup=/system.slice == 1"), &r).value, 1, "a cgroup and those below it");
    assert_eq!(evaluate(&ok("slips @cgroup=/system.slice/backup.service/worker/ == 1"), &r).value, 1);
    assert_eq!(evaluate(&ok("slips @cgroup=/system == 0"), &r).value, 0, "path components, not characters");
    assert_eq!(evaluate(&ok("slips @cgroup=/ == 1"), &r).value, 1);
    assert_eq!(evaluate(&ok("slips @comm=dd == 1"), &r).value, 1);
    let v = evaluate(&ok("no-slips @comm=cp"), &r);
    assert!(v.passed && v.findings.is_empty(), "{v:?}");
    let v = evaluate(&ok("no-slips @unit=backup.service"), &r);
    assert_eq!((v.passed, v.findings.len()), (false, 1), "the failure cites the finding");
    // Without cgroup paths, a unit or cgroup scope cannot tell: unproven, not passed.
    let mut blind = report();
    blind.coverage.cgroup_paths = false;
    let v = evaluate(&ok("no-slips @unit=other.service"), &blind);
    assert_eq!(v.status, Status::Unproven, "{v:?}");
    assert_eq!(v.unproven[0].feature.as_str(), "cgroup-paths");
    assert_eq!(evaluate(&ok("no-slips @comm=cp"), &blind).status, Status::Pass, "comm needs no paths");
    assert_eq!(
        evaluate(&ok("no-slips @unit=backup.service"), &blind).status,
        Status::Fail,
        "a slip seen is a slip"
    );
}

#[test]
fn task_scopes_parse_only_where_they_can_count() {
    assert_eq!(ok("slips @unit=backup.service == 0").scope, Scope::Unit("backup.service".into()));
    assert_eq!(ok("blocked_writers @cgroup=/kubepods/ >= 1").scope, Scope::Cgroup("/kubepods".into()));
    assert_eq!(ok("no-mounts-while-frozen @comm=mount").scope, Scope::Comm("mount".into()));
    let e = bad("freezes @unit=backup.service >= 1");
    assert!(e.message.contains("cannot be scoped by task"), "{e}");
    assert_eq!(e.column, 9);
    let e = bad("frozen @comm=fsfreeze");
    assert!(e.message.contains("freezes cannot be scoped by task"), "{e}");
    assert!(bad("slips @cgroup=system.slice == 0").message.contains("path below the cgroup2 root"));
    assert!(bad("slips @unit= == 0").message.contains("needs a value"));
    assert!(bad("slips @who=me == 0").message.contains("@unit=NAME"));
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
