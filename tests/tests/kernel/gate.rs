//! What reaches a frozen filesystem: writes straight to its block device (a real hole: slips),
//! and writers held at the gate (expected: reported with their wait, never slips).
use std::time::Duration;

use freezewatch_tests::{
    FsType, LoopFs, Trace, freezewatch, hook_available, kernel_available, record_script,
    sh_wait_until_blocked,
};

fn read_pid(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path).expect("pid file").trim().parse().expect("pid")
}

/// `dd oflag=direct` to the loop device while its filesystem is frozen: one slip naming dd, the
/// device and the superblock; `freezewatch report` on the saved trace agrees.
fn direct_device_write_while_frozen_is_a_slip(fstype: FsType) {
    if !kernel_available(&format!("direct_device_write_while_frozen_is_a_slip({})", fstype.name())) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("loop fs");
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = dir.path().join("dd.pid");
    // Write the second-to-last 4 KiB block: free space on all three filesystems.
    let script = format!(
        "fsfreeze -f {m} || exit 1; \
         dd if=/dev/zero of={dev} bs=4096 count=1 seek={seek} oflag=direct conv=notrunc status=none & \
         echo $! > {pid}; wait $!; fsfreeze -u {m}",
        m = fs.mnt(),
        dev = fs.loopdev,
        seek = fs.blocks_4k() - 2,
        pid = pid_file.display()
    );
    let trace = record_script(&script).expect("recording");
    let dd_pid = read_pid(&pid_file);
    let slips = trace.findings("slip");
    assert_eq!(slips.len(), 1, "exactly the dd write: {slips:?}");
    let slip = slips[0];
    assert_eq!(slip["comm"], "dd", "{slip}");
    assert_eq!(slip["pid"], dd_pid, "{slip}");
    assert_eq!(slip["severity"], "error");
    assert_eq!(slip["hook"], trace.feature_hook("block-writes"));
    assert_eq!(slip["level"], 4);
    assert_eq!(slip["sb"]["fstype"], fstype.name());
    assert_eq!(slip["sb"]["mountpoint"], fs.mnt());
    let loop_dev = fs.loop_dev_number().expect("loop dev");
    let msg = slip["message"].as_str().expect("message");
    assert!(msg.contains(&format!("of block device {loop_dev} ")), "{msg}");
    assert!(msg.contains(&format!("sector {}", (fs.blocks_4k() - 2) * 8)), "{msg}");
    let freeze_sb = &trace.events().iter().find(|e| e["kind"] == "freeze_end").expect("freeze")["sb"]["id"];
    assert_eq!(&slip["sb"]["id"], freeze_sb, "the slip is on the frozen superblock");
    // The raw event behind it.
    let writes: Vec<_> = trace.events().into_iter().filter(|e| e["kind"] == "block_write").collect();
    assert!(writes.iter().any(|w| w["pid"] == dd_pid && w["block"]["bytes"] == 4096), "{writes:?}");
    let summary = &trace.of_type("summary")[0];
    assert_eq!(summary["slips"], 1);

    // `report` recomputes the same findings from the events alone.
    let path = dir.path().join("t.ndjson");
    let text: Vec<String> = trace.records.iter().map(|r| r.to_string()).collect();
    std::fs::write(&path, text.join("\n")).expect("write trace");
    let run = freezewatch(&["report", "--json", path.to_str().expect("utf8")], Duration::from_secs(30))
        .expect("report");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let rep: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let report_slips: Vec<_> =
        rep["findings"].as_array().expect("findings").iter().filter(|f| f["kind"] == "slip").collect();
    assert_eq!(report_slips.len(), 1);
    assert_eq!(report_slips[0]["pid"], dd_pid);
    assert_eq!(rep["lost_events"], 0);
    assert_eq!(rep["complete"], true);
}

#[test]
fn ext4_direct_device_write_while_frozen_is_a_slip() {
    direct_device_write_while_frozen_is_a_slip(FsType::Ext4);
}

#[test]
fn xfs_direct_device_write_while_frozen_is_a_slip() {
    direct_device_write_while_frozen_is_a_slip(FsType::Xfs);
}

#[test]
fn btrfs_direct_device_write_while_frozen_is_a_slip() {
    direct_device_write_while_frozen_is_a_slip(FsType::Btrfs);
}

/// A writer that opens a file on the frozen filesystem waits at the write gate until the thaw;
/// it is reported with its wait and is not a slip. The thaw's own superblock write is exempt.
fn blocked_writer_is_reported_not_slipped(fstype: FsType) {
    if !hook_available(
        &format!("blocked_writer_is_reported_not_slipped({})", fstype.name()),
        "blocked-writers",
        None,
    ) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("loop fs");
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = dir.path().join("writer.pid");
    // The writer blocks in D state; the script thaws unconditionally before waiting for it.
    let script = format!(
        "fsfreeze -f {m} || exit 1; (echo data > {m}/file) & w=$!; echo $w > {pid}; {wait}; fsfreeze -u {m}; wait",
        m = fs.mnt(),
        pid = pid_file.display(),
        wait = sh_wait_until_blocked("w"),
    );
    let trace: Trace = record_script(&script).expect("recording");
    let writer_pid = read_pid(&pid_file);
    assert_eq!(trace.findings("slip").len(), 0, "{:?}", trace.findings("slip"));
    let blocked = trace.findings("blocked-writer");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let b = blocked[0];
    assert_eq!(b["pid"], writer_pid, "{b}");
    assert_eq!(b["hook"], trace.feature_hook("blocked-writers"));
    // Held from after the freeze completed until the thaw let it through.
    let ts_of = |kind: &str| {
        trace.events().iter().find(|e| e["kind"] == kind).and_then(|e| e["ts_ns"].as_u64()).expect(kind)
    };
    let start = b["ts_ns"].as_u64().expect("start");
    let end = start + b["duration_ns"].as_u64().expect("duration");
    assert!(start >= ts_of("freeze_end"), "blocked only once frozen: {b}");
    assert!(end >= ts_of("thaw_begin"), "released by the thaw, not before: {b}");
    assert!(b["message"].as_str().is_some_and(|m| m.contains("at the write gate")), "{b}");
    let events = trace.events();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"writer_blocked") && kinds.contains(&"writer_unblocked"), "{kinds:?}");
    assert_eq!(std::fs::read_to_string(fs.mountpoint.join("file")).expect("written after thaw"), "data\n");
    assert_eq!(trace.of_type("summary")[0]["blocked_writers"], 1);
}

#[test]
fn ext4_blocked_writer_is_reported_not_slipped() {
    blocked_writer_is_reported_not_slipped(FsType::Ext4);
}

#[test]
fn xfs_blocked_writer_is_reported_not_slipped() {
    blocked_writer_is_reported_not_slipped(FsType::Xfs);
}

#[test]
fn btrfs_blocked_writer_is_reported_not_slipped() {
    blocked_writer_is_reported_not_slipped(FsType::Btrfs);
}
