//! The freeze chain's first choice, fentry/fexit on freeze_super/thaw_super, reports what the
//! FIFREEZE/FITHAW ioctl fallback (the syscall dispatcher) reports, field for field. Needs fentry, which this
//! project's host refuses: runs in the QEMU guests (`cargo xtask vm-test`), where both paths
//! exist and FREEZEWATCH_NO_FENTRY=1 forces the fallback.
use freezewatch_tests::{
    FsType, LoopFs, Trace, expected_fifreeze_holder, guest_feature_available, hook_available, kernel_version,
    record_script_with,
};
use serde_json::Value;

/// The btrfs transaction chain's first choice: fexit on the module's functions.
const BTRFS_FEXIT: &str = "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit";

/// The freeze/thaw events of a trace, without what differs between two runs (times, task ids and
/// the parent's, the hook) — and the holder, which is compared separately.
fn freeze_thaw(trace: &Trace) -> Vec<Value> {
    trace
        .events()
        .into_iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("freeze_") || k.starts_with("thaw_")))
        .map(|e| {
            let mut e = e.clone();
            for volatile in ["ts_ns", "begin_ts_ns", "pid", "tid", "hook", "holder"] {
                e.as_object_mut().expect("event object").remove(volatile);
            }
            if let Some(parent) = e.get_mut("parent").and_then(Value::as_object_mut) {
                parent.remove("pid");
            }
            e
        })
        .collect()
}

fn freeze_hook(trace: &Trace) -> String {
    let header = &trace.of_type("header")[0];
    let hooks = header["hooks"].as_array().expect("hooks");
    let freeze = hooks.iter().find(|h| h["feature"] == "freeze").expect("freeze feature");
    freeze["hook"].as_str().unwrap_or_default().to_owned()
}

fn matches_the_tracepoint_path(fstype: FsType) {
    let name = format!("fentry_matches_the_tracepoint_path({})", fstype.name());
    if !guest_feature_available(&name, "fentry") {
        return;
    }
    let fs = LoopFs::new(fstype).expect("loop fs");
    // Freeze, a second freeze that fails with EBUSY, thaw.
    let script = format!("fsfreeze -f {m}; fsfreeze -f {m}; fsfreeze -u {m}", m = fs.mnt());
    let fentry = record_script_with(&script, &[]).expect("fentry recording");
    let tracepoint = record_script_with(&script, &[("FREEZEWATCH_NO_FENTRY", "1")]).expect("tp recording");
    assert_eq!(freeze_hook(&fentry), "fentry:freeze_super");
    assert_eq!(freeze_hook(&tracepoint), "tp_btf:raw_syscalls:ioctl");

    let (a, b) = (freeze_thaw(&fentry), freeze_thaw(&tracepoint));
    let kinds: Vec<&str> = a.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["freeze_begin", "freeze_end", "freeze_begin", "freeze_end", "thaw_begin", "thaw_end"]);
    assert_eq!(a, b, "fentry and tracepoint events differ");
    assert_eq!(a[3]["error"], "EBUSY");
    assert_eq!(a[0]["sb"]["mountpoint"], fs.mnt());
    // The holder: the ioctl path knows FIFREEZE is userspace; fentry reads freeze_super's
    // `who`, which exists from 6.6 on (6.1's freeze_super(sb) has no holder).
    let is_freeze_thaw =
        |e: &&Value| e["kind"].as_str().is_some_and(|k| k.starts_with("freeze_") || k.starts_with("thaw_"));
    let tp_holders: Vec<&Value> =
        tracepoint.events().into_iter().filter(is_freeze_thaw).map(|e| &e["holder"]).collect();
    assert_eq!(tp_holders.len(), 6);
    assert!(tp_holders.iter().all(|h| *h == "userspace"), "{tp_holders:?}");
    let fentry_freeze_end = fentry.events().into_iter().find(|e| e["kind"] == "freeze_end").cloned();
    let fentry_freeze_end = fentry_freeze_end.expect("a freeze_end");
    assert_eq!(
        fentry_freeze_end["holder"],
        expected_fifreeze_holder(&fentry_freeze_end),
        "{kernel:?}",
        kernel = kernel_version()
    );
}

#[test]
fn ext4_fentry_matches_the_tracepoint_path() {
    matches_the_tracepoint_path(FsType::Ext4);
}

#[test]
fn xfs_fentry_matches_the_tracepoint_path() {
    matches_the_tracepoint_path(FsType::Xfs);
}

/// btrfs transaction handles come from fexit on btrfs's own functions (a module in the guests,
/// which aya cannot attach to: `module_fexit` loads them). Dirty data written back while the
/// freeze drains makes btrfs join transactions at levels 1-3: each is on this filesystem, seen
/// by the fexit hook, and exempt (the gate had not closed), never a slip.
#[test]
fn btrfs_transactions_come_from_fexit_on_the_module() {
    let name = "btrfs_transactions_come_from_fexit_on_the_module";
    if !guest_feature_available(name, "fentry") || !hook_available(name, "txn-btrfs", Some(BTRFS_FEXIT)) {
        return;
    }
    let fs = LoopFs::new(FsType::Btrfs).expect("loop fs");
    let script = format!(
        "dd if=/dev/urandom of={m}/dirty bs=64k count=32 status=none; fsfreeze -f {m}; fsfreeze -u {m}",
        m = fs.mnt()
    );
    let trace = record_script_with(&script, &[]).expect("recording");
    let header = &trace.of_type("header")[0];
    let hooks = header["hooks"].as_array().expect("hooks");
    let btrfs = hooks.iter().find(|h| h["feature"] == "txn-btrfs").expect("txn-btrfs feature");
    assert_eq!(btrfs["hook"], BTRFS_FEXIT, "{btrfs}");

    let dev = fs.mountinfo_dev_number().expect("btrfs s_dev");
    let txns: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "txn_start" && e["hook"] == "fexit:btrfs_transaction")
        .collect();
    assert!(
        !txns.is_empty(),
        "no btrfs transaction from fexit while the freeze drained dirty data:\n{}",
        trace.stderr
    );
    for t in &txns {
        assert_eq!(t["sb"]["dev"], dev.as_str(), "{t}");
        assert_eq!(t["sb"]["fstype"], "btrfs", "{t}");
        let level = t["level_after"].as_u64().expect("a level");
        assert!((1..=3).contains(&level), "a transaction got past a closed gate: {t}");
    }
    assert!(trace.findings("slip").is_empty(), "{:?}", trace.findings("slip"));
    let exempt = trace.findings("exempt");
    assert!(
        exempt.iter().any(|f| f["message"].as_str().is_some_and(|m| m.starts_with("btrfs transaction by"))),
        "{exempt:?}"
    );
}
