//! Findings reach the trace while recording runs, not when it ends: a slip and a long freeze show
//! up as `finding` lines while the filesystem is still frozen (what `tail -f | jq` alerts on).
use std::{
    process::Command,
    time::{Duration, Instant},
};

use freezewatch_tests::{Frozen, FsType, LoopFs, Recorder, kernel_available};
use serde_json::Value;

/// The finding lines of `kind` written so far.
fn findings_so_far(rec: &Recorder, kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(&rec.trace_path).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(r#""type":"finding""#))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// Polls the trace for up to `limit` for a finding of `kind`.
fn wait_for_finding(rec: &Recorder, kind: &str, limit: Duration) -> Option<Value> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(f) = findings_so_far(rec, kind).into_iter().next() {
            return Some(f);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_slip_and_a_long_freeze_are_in_the_trace_while_still_frozen() {
    if !kernel_available("a_slip_and_a_long_freeze_are_in_the_trace_while_still_frozen") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("loop fs");
    let rec = Recorder::start(&["--long-freeze", "300ms"]).expect("recorder");
    let frozen = Frozen::new(&fs).expect("freeze");
    let sector = (fs.blocks_4k() - 16) * 8;
    let dd = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", fs.loopdev), "bs=4k", "count=1"])
        .args([&format!("seek={}", sector / 8), "oflag=direct", "conv=notrunc", "status=none"])
        .status()
        .expect("runs dd");
    assert!(dd.success());
    // Both arrive while the filesystem is frozen and the recorder runs (slow guests included).
    let slip = wait_for_finding(&rec, "slip", Duration::from_secs(10));
    let long = wait_for_finding(&rec, "long-freeze", Duration::from_secs(10));
    let still_frozen = std::fs::read_to_string(format!("/proc/{}/status", rec.pid())).is_ok();
    drop(frozen);
    let slip = slip.unwrap_or_else(|| panic!("no slip finding while frozen: {}", rec.stderr()));
    assert_eq!(slip["sb"]["mountpoint"], fs.mnt(), "{slip}");
    assert!(slip["message"].as_str().is_some_and(|m| m.contains(&format!("at sector {sector}"))), "{slip}");
    let long = long.unwrap_or_else(|| panic!("no long-freeze finding while frozen: {}", rec.stderr()));
    assert_eq!(long["sb"]["mountpoint"], fs.mnt(), "{long}");
    assert!(long["message"].as_str().is_some_and(|m| m.ends_with("and still is")), "{long}");
    assert!(long["duration_ns"].as_u64().is_some_and(|d| d > 300_000_000), "{long}");
    assert!(still_frozen, "the recorder was still running");
    // One long-freeze for the window: the thaw does not raise a second one.
    let trace = rec.finish().expect("trace");
    let ours: Vec<&Value> =
        trace.findings("long-freeze").into_iter().filter(|f| f["sb"]["mountpoint"] == fs.mnt()).collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
}
