//! The freezewatch command line as a user meets it: doctor, errors, the trace envelope.
use std::{process::Command, time::Duration};

use freezewatch_tests::{
    Frozen, FsType, LoopFs, Trace, freezewatch, freezewatch_bin, freezewatch_cmd, kernel_available, limit,
};

#[test]
fn doctor_reports_the_hook_it_really_attached() {
    if !kernel_available("doctor_reports_the_hook_it_really_attached") {
        return;
    }
    let run = freezewatch(&["doctor", "--json"], limit(60)).expect("doctor runs");
    assert_eq!(run.code, Some(0), "doctor must pass where record works: {}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("doctor --json is JSON");
    let status = |ty: &str| {
        report["program_types"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["program_type"] == ty))
            .map(|p| p["status"].as_str().unwrap_or("").to_owned())
            .expect("probed")
    };
    assert_eq!(status("tracepoint"), "ok");
    let freeze = report["features"]["Ok"]
        .as_array()
        .and_then(|f| f.iter().find(|h| h["feature"] == "freeze"))
        .expect("freeze feature reported");
    // The chain: fentry where the kernel accepts it, the syscall dispatcher's ioctls otherwise.
    let expected = if status("fentry") == "ok" { "fentry:freeze_super" } else { "tp_btf:raw_syscalls:ioctl" };
    assert_eq!(freeze["hook"], expected, "{freeze}");
    if expected != "fentry:freeze_super" {
        assert!(freeze["fallbacks"][0].as_str().is_some_and(|f| f.contains("fentry")), "{freeze}");
    }
    assert_eq!(report["can_record"], true);
}

#[test]
fn record_without_privileges_names_what_is_missing() {
    if !kernel_available("record_without_privileges_names_what_is_missing") {
        return;
    }
    // Drop to nobody with no capabilities.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(freezewatch_bin())
        .args(["record", "--duration", "1s"]);
    let run = freezewatch_cmd(&mut cmd, Duration::from_secs(30)).expect("runs");
    assert_eq!(run.code, Some(3), "tracer-could-not-run exit code; stderr: {}", run.stderr);
    assert!(run.stderr.contains("needs root (or CAP_BPF + CAP_PERFMON)"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no partial trace on stdout: {}", run.stdout);
}

#[test]
fn duration_bounds_a_recording_and_a_frozen_fs_does_not_block_it() {
    if !kernel_available("duration_bounds_a_recording_and_a_frozen_fs_does_not_block_it") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("loop fs");
    let frozen = Frozen::new(&fs).expect("freeze");
    let run = freezewatch(&["record", "--duration", "300ms"], Duration::from_secs(30)).expect("record runs");
    drop(frozen);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let trace = Trace::parse(&run.stdout).expect("stdout is an NDJSON trace");
    assert_eq!(trace.records.first().map(|r| r["type"].clone()), Some("header".into()));
    assert!(trace.records.iter().all(|r| r["v"] == 1), "every line carries the schema version");
    assert_eq!(trace.events().len(), 0, "nothing froze during the window");
    assert_eq!(trace.footer()["ended_by"], "duration");
    assert!(trace.footer()["duration_ms"].as_u64().is_some_and(|ms| ms >= 300));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let run = freezewatch(&["record", "--duration", "5 parsecs"], Duration::from_secs(30)).expect("runs");
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("unknown unit"), "{}", run.stderr);
}
