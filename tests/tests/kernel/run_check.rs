//! `freezewatch run` wraps a command and asserts on the freeze gate; `check` re-evaluates the
//! saved trace with the same verdicts. Exit codes: 0 hold, 1 failed, 2 bad input, CMD's with
//! --propagate-exit.

use freezewatch_tests::{FsType, LoopFs, Run, freezewatch, kernel_available, limit};
use serde_json::Value;

fn run(args: &[&str]) -> Run {
    freezewatch(args, limit(60)).expect("freezewatch runs")
}

fn freeze_thaw(fs: &LoopFs) -> String {
    format!("fsfreeze -f {m}; fsfreeze -u {m}", m = fs.mnt())
}

#[test]
fn a_clean_snapshot_passes_and_check_agrees() {
    if !kernel_available("a_clean_snapshot_passes_and_check_agrees") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("tmp");
    let (trace, junit) = (dir.path().join("t.ndjson"), dir.path().join("junit.xml"));
    let (trace_s, junit_s) = (trace.to_str().expect("utf8"), junit.to_str().expect("utf8"));
    let frozen = format!("frozen @{}", fs.mnt());
    let script = freeze_thaw(&fs);
    let r = run(&[
        "run", "--assert", &frozen, "--assert", "no-slips", "--json", "--out", trace_s, "--junit", junit_s,
        "--", "sh", "-c", &script,
    ]);
    assert_eq!(r.code, Some(0), "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let verdicts: Value = serde_json::from_str(&r.stdout).expect("--json prints JSON");
    assert_eq!(verdicts["passed"], true);
    assert_eq!(verdicts["command_exit"], 0);
    assert_eq!(verdicts["verdicts"].as_array().map(Vec::len), Some(2));
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    assert!(xml.contains("tests=\"2\" failures=\"0\""), "{xml}");

    // The saved trace, judged again without root privileges needed: the same verdicts.
    let c = run(&["check", trace_s, "--assert", &frozen, "--assert", "no-slips", "--json"]);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    let again: Value = serde_json::from_str(&c.stdout).expect("JSON");
    assert_eq!(again["verdicts"], verdicts["verdicts"]);
}

#[test]
fn an_unmet_bound_fails_with_the_reason() {
    if !kernel_available("an_unmet_bound_fails_with_the_reason") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let bound = format!("freezes @{} >= 2", fs.mnt());
    let script = freeze_thaw(&fs);
    let r = run(&["run", "--assert", &bound, "--", "sh", "-c", &script]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.contains(&format!("FAIL  {bound}  freezes is 1 (expected >= 2)")), "{}", r.stdout);
    assert!(r.stdout.contains("0 of 1 assertions hold"), "{}", r.stdout);
}

#[test]
fn a_direct_device_write_fails_no_slips_and_names_the_writer() {
    if !kernel_available("a_direct_device_write_fails_no_slips_and_names_the_writer") {
        return;
    }
    let fs = LoopFs::new(FsType::Xfs).expect("fs");
    let dir = tempfile::tempdir().expect("tmp");
    let (trace, junit, pid) = (dir.path().join("t.ndjson"), dir.path().join("j.xml"), dir.path().join("pid"));
    let script = format!(
        "fsfreeze -f {m} || exit 1; dd if=/dev/zero of={dev} bs=4096 count=1 seek={seek} oflag=direct conv=notrunc \
         status=none & echo $! > {pid}; wait $!; fsfreeze -u {m}",
        m = fs.mnt(),
        dev = fs.loopdev,
        seek = fs.blocks_4k() - 2,
        pid = pid.display()
    );
    let (trace_s, junit_s) = (trace.to_str().expect("utf8"), junit.to_str().expect("utf8"));
    let r = run(&[
        "run", "--assert", "no-slips", "--out", trace_s, "--junit", junit_s, "--", "sh", "-c", &script,
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let dd_pid = std::fs::read_to_string(&pid).expect("pid").trim().to_owned();
    assert!(r.stdout.contains("FAIL  no-slips  slips is 1 (expected == 0)"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("- dd[{dd_pid}] wrote 4096 bytes")), "{}", r.stdout);
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains(&format!("dd[{dd_pid}] wrote 4096 bytes")), "{xml}");
    assert!(xml.contains("<failure message=\"slips is 1 (expected == 0)\""), "{xml}");
    // check on the saved trace: the same verdict, the same exit code.
    let c = run(&["check", trace_s, "--assert", "no-slips"]);
    assert_eq!(c.code, Some(1));
    assert_eq!(c.stdout, r.stdout, "check and run print the same verdicts");
}

#[test]
fn the_commands_exit_status_is_reported_and_propagated_on_request() {
    if !kernel_available("the_commands_exit_status_is_reported_and_propagated_on_request") {
        return;
    }
    let r = run(&["run", "--assert", "no-slips", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(0), "assertions hold: {}", r.stderr);
    assert!(r.stdout.contains("note: the traced command exited with status 7"), "{}", r.stdout);
    let r = run(&["run", "--propagate-exit", "--assert", "no-slips", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(7));
}

#[test]
fn bad_assertions_stop_before_anything_runs() {
    // No kernel needed: the expression is rejected before attaching.
    let dir = tempfile::tempdir().expect("tmp");
    let marker = dir.path().join("ran");
    let cmd = format!("touch {}", marker.display());
    let r = run(&["run", "--assert", "slips = 0", "--", "sh", "-c", &cmd]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("column 7: `=` is not an operator; did you mean `==`?"), "{}", r.stderr);
    assert!(!marker.exists(), "the command must not run");
    let file = dir.path().join("asserts");
    std::fs::write(&file, "# nightly backup\nno-slips\nmax_frozen < 2 s\n").expect("write");
    let r = run(&["check", "/dev/null", "--assertions", file.to_str().expect("utf8")]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("line 3: column 14: max_frozen is a duration"), "{}", r.stderr);
}

#[test]
fn a_malformed_trace_is_an_input_error_naming_the_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.ndjson");
    std::fs::write(&path, "{\"v\":1,\"type\":\"footer\"}\nnot json\n").expect("write");
    let r = run(&["check", path.to_str().expect("utf8"), "--assert", "no-slips"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("line 1: missing field"), "{}", r.stderr);
}
