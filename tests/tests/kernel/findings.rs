//! Every finding kind from a real kernel, not only from synthetic events: left-frozen,
//! thaw-without-freeze, freeze-failed and long-freeze (slips, blocked writers, mounts and denials
//! have their own files). Each also shows the hook was live in the same recording.
use std::time::Duration;

use freezewatch_tests::{
    Frozen, FsType, LoopFs, Recorder, Trace, freezewatch, kernel_available, limit, record_script, time_scale,
};
use serde_json::Value;

fn summary<'a>(trace: &'a Trace, fs: &LoopFs) -> &'a Value {
    let all = trace.of_type("summary");
    all.into_iter().find(|s| s["sb"]["mountpoint"] == fs.mnt()).expect("a summary of our filesystem")
}

#[test]
fn a_filesystem_still_frozen_when_recording_ends_is_left_frozen() {
    if !kernel_available("a_filesystem_still_frozen_when_recording_ends_is_left_frozen") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let rec = Recorder::start(&[]).expect("recorder");
    let frozen = Frozen::new(&fs).expect("freeze");
    std::thread::sleep(Duration::from_millis(200));
    // Recording stops while the filesystem is frozen; the thaw comes after.
    let trace = rec.finish().expect("trace");
    drop(frozen);
    let left = trace.findings_on("left-frozen", fs.mnt());
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["severity"], "error");
    assert!(left[0]["duration_ns"].as_u64().is_some_and(|d| d >= 200_000_000), "{}", left[0]);
    let s = summary(&trace, &fs);
    assert_eq!(
        (s["left_frozen"].as_bool(), s["freezes"].as_u64(), s["thaws"].as_u64()),
        (Some(true), Some(1), Some(0))
    );
}

#[test]
fn thawing_an_unfrozen_filesystem_is_flagged() {
    if !kernel_available("thawing_an_unfrozen_filesystem_is_flagged") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let trace = record_script(&format!("fsfreeze -u {} || true", fs.mnt())).expect("recording");
    let thaws: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "thaw_end" && e["sb"]["mountpoint"] == fs.mnt())
        .collect();
    assert_eq!(thaws.len(), 1, "the freeze hook saw the thaw: {thaws:#?}");
    let f = trace.findings_on("thaw-without-freeze", fs.mnt());
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["severity"], "warning");
    assert!(
        f[0]["message"].as_str().is_some_and(|m| m.contains("which was not frozen (EINVAL)")),
        "{}",
        f[0]
    );
}

#[test]
fn freezing_a_frozen_filesystem_is_a_failed_freeze_finding() {
    if !kernel_available("freezing_a_frozen_filesystem_is_a_failed_freeze_finding") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let script = format!("fsfreeze -f {m}; fsfreeze -f {m} || true; fsfreeze -u {m}", m = fs.mnt());
    let trace = record_script(&script).expect("recording");
    let f = trace.findings_on("freeze-failed", fs.mnt());
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0]["message"].as_str().is_some_and(|m| m.ends_with("EBUSY (it was already frozen)")),
        "{}",
        f[0]
    );
    let s = summary(&trace, &fs);
    assert_eq!(
        (s["freezes"].as_u64(), s["failed_freezes"].as_u64(), s["thaws"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert!(trace.findings_on("left-frozen", fs.mnt()).is_empty());
}

#[test]
fn a_freeze_longer_than_the_threshold_is_a_long_freeze() {
    if !kernel_available("a_freeze_longer_than_the_threshold_is_a_long_freeze") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.ndjson");
    let out = path.to_str().expect("utf8");
    // Frozen for 0.6 s (scaled: the live finding needs a tick of the recorder while frozen).
    let secs = 0.6 * f64::from(time_scale());
    let script = format!("fsfreeze -f {m}; sleep {secs}; fsfreeze -u {m}", m = fs.mnt());
    let run = freezewatch(
        &["record", "--long-freeze", "200ms", "--out", out, "--", "sh", "-c", &script],
        limit(120),
    )
    .expect("record");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Raised while frozen, in the trace: how long it had been frozen then.
    let trace = Trace::parse(&std::fs::read_to_string(&path).expect("trace")).expect("parses");
    let live = trace.findings_on("long-freeze", fs.mnt());
    assert_eq!(live.len(), 1, "{live:#?}");
    assert!(live[0]["message"].as_str().is_some_and(|m| m.ends_with("and still is")), "{}", live[0]);
    // The report of the finished trace: the whole window, once.
    let report =
        freezewatch(&["report", "--json", "--long-freeze", "200ms", out], limit(60)).expect("report");
    let report: Value = serde_json::from_str(&report.stdout).expect("JSON");
    let long: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "long-freeze" && f["sb"]["mountpoint"] == fs.mnt())
        .collect();
    assert_eq!(long.len(), 1, "{long:#?}");
    assert!(long[0]["duration_ns"].as_u64().is_some_and(|d| d >= 600_000_000), "{}", long[0]);
    assert!(long[0]["message"].as_str().is_some_and(|m| m.contains("stayed frozen for")), "{}", long[0]);
    // Under the threshold (far above the freeze, however the guests scale it): none.
    let quiet = freezewatch(&["report", "--json", "--long-freeze", "1h", out], limit(60)).expect("report");
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert!(!quiet.stdout.contains("long-freeze"), "{}", quiet.stdout);
}
