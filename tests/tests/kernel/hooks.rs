//! Every hook family produces real events on this kernel, whichever hook of its chain attached:
//! transaction starts (ext4 journal handles, xfs transactions, btrfs) while freeze_super drains
//! dirty data, and the completed-writes hook running on every write and filtering the writes to
//! filesystems that are not frozen. No test here passes on zero events.
use freezewatch_tests::{FsType, LoopFs, kernel_available, record_script};
use serde_json::Value;

fn transactions_while_freezing_are_seen_and_exempt(fstype: FsType) {
    let name = format!("transactions_while_freezing_are_seen_and_exempt({})", fstype.name());
    if !kernel_available(&name) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("fs");
    // Dirty data the freeze must write back: its allocation starts transactions at levels 1-3.
    let script = format!(
        "dd if=/dev/urandom of={m}/data bs=1M count=8 status=none; fsfreeze -f {m}; fsfreeze -u {m}",
        m = fs.mnt()
    );
    let trace = record_script(&script).expect("recording");
    let feature = format!("txn-{}", fstype.name());
    let hook = trace.feature_hook(&feature);
    let txns: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "txn_start" && e["sb"]["mountpoint"] == fs.mnt())
        .collect();
    assert!(!txns.is_empty(), "{name}: no transaction start from {hook} while freezing");
    let draining = |t: &&&Value| t["level_after"].as_u64().is_some_and(|l| (1..=3).contains(&l));
    assert!(txns.iter().any(|t| draining(&t)), "none at levels 1-3, while freeze_super drained: {txns:#?}");
    for t in &txns {
        // The event comes from the feature's hook (a chain of two names for btrfs).
        let event_hook = t["hook"].as_str().expect("hook");
        let first = event_hook.split(':').take(2).collect::<Vec<_>>().join(":");
        assert!(hook.contains(&first), "{event_hook} is not from {hook}");
        assert_eq!(t["sb"]["fstype"], fstype.name());
    }
    let exempt: Vec<&Value> =
        trace.findings("exempt").into_iter().filter(|f| f["sb"]["mountpoint"] == fs.mnt()).collect();
    assert!(
        exempt.iter().any(|f| f["message"]
            .as_str()
            .is_some_and(|m| m.contains("while freeze_super was still draining"))),
        "{exempt:#?}"
    );
    assert!(trace.findings("slip").is_empty(), "{:#?}", trace.findings("slip"));
}

#[test]
fn ext4_transactions_while_freezing_are_seen_and_exempt() {
    transactions_while_freezing_are_seen_and_exempt(FsType::Ext4);
}

#[test]
fn xfs_transactions_while_freezing_are_seen_and_exempt() {
    transactions_while_freezing_are_seen_and_exempt(FsType::Xfs);
}

#[test]
fn btrfs_transactions_while_freezing_are_seen_and_exempt() {
    transactions_while_freezing_are_seen_and_exempt(FsType::Btrfs);
}

/// A write that completes on a frozen filesystem cannot be caused on purpose (the gate blocks it),
/// so the completed-writes hook (pages turning dirty here; the write syscalls where that cannot
/// attach) is shown live by its hit counter over writes this test makes to another filesystem
/// while one is frozen, with no `dirtied` or `write_done` for them. After the thaw nothing is
/// frozen and the hook checks nothing (one array lookup each): those writes add no hits.
#[test]
fn the_completed_writes_hook_runs_on_every_write_while_a_filesystem_is_frozen_only() {
    if !kernel_available("the_completed_writes_hook_runs_on_every_write_while_a_filesystem_is_frozen_only") {
        return;
    }
    // Other tasks write too while the filesystem is frozen (a few hundred a second here), and
    // one `echo > file` can run the writeback hook several times (the page, then the inode's
    // size and times: six times each in the 6.1 guest): the writes after the thaw outnumber
    // everything the frozen window can hold.
    const WRITES: u64 = 100;
    const AFTER: u64 = 3000;
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let other = LoopFs::new(FsType::Ext4).expect("another fs");
    let writes = |n: u64, file: &str| {
        format!("i=0; while [ $i -lt {n} ]; do echo $i > {o}/{file}; i=$((i+1)); done", o = other.mnt())
    };
    let script = format!(
        "fsfreeze -f {m}; {}; fsfreeze -u {m}; {}; fsfreeze -f {m}; fsfreeze -u {m}",
        writes(WRITES, "during"),
        writes(AFTER, "after"),
        m = fs.mnt()
    );
    let trace = record_script(&script).expect("recording");
    let hook = trace.feature_hook("completed-writes");
    let hits = trace.hook_hits(&hook);
    assert!(hits >= WRITES, "{hook} ran {hits} times for {WRITES} writes while frozen: {}", trace.footer());
    assert!(
        hits < AFTER,
        "{hook} ran {hits} times: it kept checking the {AFTER} writes after the thaw: {}",
        trace.footer()
    );
    let done: Vec<&Value> =
        trace.events().into_iter().filter(|e| e["kind"] == "write_done" || e["kind"] == "dirtied").collect();
    assert!(done.is_empty(), "writes to a filesystem that is not frozen are not reported: {done:#?}");
    assert!(trace.footer()["counters"]["filtered"].as_u64().unwrap_or(0) > 0, "{}", trace.footer());
    let freezes = trace.events().into_iter().filter(|e| e["kind"] == "freeze_end").count();
    assert_eq!(freezes, 2, "the second freeze was watched again");
}
