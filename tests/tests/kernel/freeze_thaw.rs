//! Freeze and thaw of real ext4, xfs and btrfs filesystems on loop devices, recorded end to end
//! through the `freezewatch record` binary.
use freezewatch_tests::{FsType, LoopFs, Trace, expected_fifreeze_holder, kernel_available, record_script};
use serde_json::Value;

/// `fsfreeze -f M; fsfreeze -u M`, writing each fsfreeze pid to `pids` so the test knows them.
fn freeze_thaw_script(fs: &LoopFs, pids: &std::path::Path) -> String {
    let (m, p) = (fs.mnt(), pids.display());
    format!("fsfreeze -f {m} & echo $! >> {p}; wait $! || exit 1; fsfreeze -u {m} & echo $! >> {p}; wait $!")
}

fn is_freeze_or_thaw(e: &Value) -> bool {
    e["kind"].as_str().is_some_and(|k| k.starts_with("freeze_") || k.starts_with("thaw_"))
}

/// Kinds of the freeze/thaw events (other hooks, e.g. the thaw's own superblock write on ext4,
/// are checked separately).
fn kinds(trace: &Trace) -> Vec<String> {
    freeze_thaw_events(trace).iter().map(|e| e["kind"].as_str().unwrap_or("?").to_owned()).collect()
}

fn freeze_thaw_events(trace: &Trace) -> Vec<&Value> {
    trace.events().into_iter().filter(|e| is_freeze_or_thaw(e)).collect()
}

/// A clean freeze and thaw: no slips; any write seen while frozen is the thawing task's own (or
/// its loop device's worker carrying it on) and is labelled exempt.
fn assert_no_slips(trace: &Trace) {
    // The block hook was live (the freeze's own writeback passed through it): its silence about
    // slips means something.
    assert!(trace.hook_hits(&trace.feature_hook("block-writes")) > 0, "{}", trace.footer());
    assert!(trace.findings("slip").is_empty(), "{:?}", trace.findings("slip"));
    for w in trace.events().into_iter().filter(|e| e["kind"] == "block_write") {
        // The thaw's superblock write, and the loop device's worker (a kernel thread) carrying
        // it on into the backing file, which the writeback hook sees as a page turning dirty,
        // and on to the file's blocks on the device below (a flush fsyncs the file).
        let own = w["comm"] == "fsfreeze";
        let below = w["block"]["op"] == "file-write" || !w["block"]["mapping"]["via"].is_null();
        let carried = w["parent"]["pid"] == 2 && below;
        assert!(own || carried, "only the thaw itself writes: {w}");
    }
    let writes = trace.events().into_iter().filter(|e| e["kind"] == "block_write").count();
    let exempt_writes = trace
        .findings("exempt")
        .into_iter()
        .filter(|f| {
            f["message"].as_str().is_some_and(|m| {
                m.contains("during its own thaw")
                    || m.contains("the loop device's worker")
                    || m.contains("carrying a write of the backing file down")
            })
        })
        .count();
    assert_eq!(exempt_writes, writes, "every such write is labelled exempt");
}

fn assert_sb(ev: &Value, fs: &LoopFs, expected_dev: &str) {
    let sb = &ev["sb"];
    assert_eq!(sb["fstype"], fs.fstype.name(), "{ev}");
    assert_eq!(sb["dev"], expected_dev, "{ev}");
    assert_eq!(sb["mountpoint"], fs.mnt(), "{ev}");
    // A kernel address: the upper half, 0xffff… with 4-level paging, 0xff… with 5-level (LA57).
    let kernel_address = |id: &str| id.len() == 18 && id.starts_with("0xff");
    assert!(sb["id"].as_str().is_some_and(kernel_address), "kernel address: {ev}");
}

fn freeze_and_thaw_are_recorded(fstype: FsType) {
    let test = format!("freeze_and_thaw_are_recorded({})", fstype.name());
    if !kernel_available(&test) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("loop filesystem");
    let dir = tempfile::tempdir().expect("temp dir");
    let pids_file = dir.path().join("pids");
    let trace = record_script(&freeze_thaw_script(&fs, &pids_file)).expect("recording");
    let pids: Vec<u64> = std::fs::read_to_string(&pids_file)
        .expect("pids written")
        .lines()
        .map(|l| l.trim().parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2);

    // Exactly one freeze and one thaw, nothing else, in order.
    assert_eq!(kinds(&trace), ["freeze_begin", "freeze_end", "thaw_begin", "thaw_end"]);
    assert_no_slips(&trace);
    let ev = freeze_thaw_events(&trace);
    // btrfs puts an anonymous device in s_dev (0:NN, the one mountinfo shows, and not the st_dev
    // of the subvolume root); the others the loop device.
    let expected_dev = match fstype {
        FsType::Btrfs => fs.mountinfo_dev_number().expect("mountinfo"),
        _ => fs.loop_dev_number().expect("loop rdev"),
    };
    if fstype == FsType::Btrfs {
        assert!(expected_dev.starts_with("0:"), "btrfs uses an anonymous device: {expected_dev}");
        assert_ne!(Some(&expected_dev), fs.st_dev_number().ok().as_ref(), "btrfs s_dev differs from st_dev");
    } else {
        assert_eq!(fs.mountinfo_dev_number().ok(), Some(expected_dev.clone()));
    }
    for e in &ev {
        assert_sb(e, &fs, &expected_dev);
        assert_eq!(e["comm"], "fsfreeze", "{e}");
        assert_eq!(e["holder"], expected_fifreeze_holder(e), "{e}");
        assert_eq!(e["sb"]["id"], ev[0]["sb"]["id"], "one superblock throughout");
    }
    let (freeze_end, thaw_end) = (ev[1], ev[3]);
    assert_eq!(ev[0]["pid"], pids[0]);
    assert_eq!(freeze_end["pid"], pids[0]);
    assert_eq!(ev[2]["pid"], pids[1]);
    assert_eq!(thaw_end["pid"], pids[1]);
    // Levels: 0 (unfrozen) -> 4 (complete) -> 0.
    assert_eq!((freeze_end["level_before"].as_u64(), freeze_end["level_after"].as_u64()), (Some(0), Some(4)));
    assert_eq!((thaw_end["level_before"].as_u64(), thaw_end["level_after"].as_u64()), (Some(4), Some(0)));
    assert_eq!(freeze_end["ret"], 0);
    assert_eq!(thaw_end["ret"], 0);
    assert_eq!(freeze_end["begin_ts_ns"], ev[0]["ts_ns"]);
    assert!(freeze_end["ts_ns"].as_u64() >= ev[0]["ts_ns"].as_u64());
    let footer = trace.footer();
    assert_eq!(footer["events"].as_u64(), Some(trace.events().len() as u64));
    assert_eq!(footer["command_exit"], 0);
    assert_eq!(footer["counters"]["lost_ringbuf_full"], 0);
    assert_eq!(footer["counters"]["lost_undecodable"], 0);
    assert_eq!(footer["counters"]["read_failed"], 0);
}

#[test]
fn ext4_freeze_and_thaw_are_recorded() {
    freeze_and_thaw_are_recorded(FsType::Ext4);
}

#[test]
fn xfs_freeze_and_thaw_are_recorded() {
    freeze_and_thaw_are_recorded(FsType::Xfs);
}

#[test]
fn btrfs_freeze_and_thaw_are_recorded() {
    freeze_and_thaw_are_recorded(FsType::Btrfs);
}

/// Freezing an already frozen filesystem fails with EBUSY; the failure is recorded with its error
/// and the level stays at 4.
fn failed_freeze_is_recorded(fstype: FsType) {
    let test = format!("failed_freeze_is_recorded({})", fstype.name());
    if !kernel_available(&test) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("loop filesystem");
    let m = fs.mnt();
    // The second fsfreeze fails (exit 1); the script still thaws, and exits 0.
    let trace =
        record_script(&format!("fsfreeze -f {m}; fsfreeze -f {m}; fsfreeze -u {m}")).expect("recording");
    assert_eq!(
        kinds(&trace),
        ["freeze_begin", "freeze_end", "freeze_begin", "freeze_end", "thaw_begin", "thaw_end"]
    );
    assert_no_slips(&trace);
    let ev = freeze_thaw_events(&trace);
    let failed = ev[3];
    assert_eq!(failed["ret"], -16, "{failed}");
    assert_eq!(failed["error"], "EBUSY", "{failed}");
    assert_eq!((failed["level_before"].as_u64(), failed["level_after"].as_u64()), (Some(4), Some(4)));
    assert_eq!(ev[1]["ret"], 0);
    assert!(ev[1].get("error").is_none(), "a successful freeze has no error: {}", ev[1]);
    assert_eq!(ev[5]["level_after"], 0);
}

#[test]
fn ext4_failed_freeze_is_recorded() {
    failed_freeze_is_recorded(FsType::Ext4);
}

#[test]
fn xfs_failed_freeze_is_recorded() {
    failed_freeze_is_recorded(FsType::Xfs);
}

#[test]
fn btrfs_failed_freeze_is_recorded() {
    failed_freeze_is_recorded(FsType::Btrfs);
}
