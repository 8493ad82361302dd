//! The raw tracepoints (block bios, ext4, xfs and btrfs transaction starts: the tracepoints'
//! arguments, read without a perf event) against the tracepoints of the same names, their
//! fallbacks: one script recorded both ways gives the same slip and transaction starts from each.
use freezewatch_tests::{FsType, LoopFs, Trace, hook_available, known_quirk, record_script_with};
use serde_json::Value;

/// The btrfs chain's first choice (fexit, where the kernel allows it): passed over in both
/// recordings, so that its raw tracepoints run in the guests too.
const BTRFS_FEXIT: &str = "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit";

/// The raw-tracepoint attempt of `feature` (ext4 has two, one per kernel generation, by one name).
fn raw_hook(feature: &str) -> &'static str {
    match feature {
        "block-writes" => "raw_tracepoint:block:block_bio_queue",
        "txn-ext4" => "raw_tracepoint:ext4:ext4_journal_start",
        "txn-xfs" => "raw_tracepoint:xfs:xfs_trans_alloc",
        _ => "raw_tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
    }
}

/// The slips on `fs` (comm, op, sector and bytes of each) and the hooks its transaction starts
/// came from.
fn seen(trace: &Trace, fs: &LoopFs) -> (Vec<String>, Vec<String>) {
    let slips = trace
        .findings("slip")
        .into_iter()
        .map(|f| {
            format!("{} {} {} {}", f["comm"], f["block"]["op"], f["block"]["sector"], f["block"]["bytes"])
        })
        .collect();
    let mut txn_hooks: Vec<String> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "txn_start" && e["sb"]["mountpoint"] == fs.mnt())
        .filter_map(|e| e["hook"].as_str().map(str::to_owned))
        .collect();
    txn_hooks.sort();
    txn_hooks.dedup();
    (slips, txn_hooks)
}

fn raw_tracepoints_see_what_the_tracepoints_see(fstype: FsType) {
    let name = format!("raw_tracepoints_see_what_the_tracepoints_see({})", fstype.name());
    if !hook_available(&name, "block-writes", Some(raw_hook("block-writes"))) {
        return;
    }
    let quirk = "btrfs-reservations-show-no-starts";
    if fstype == FsType::Btrfs && known_quirk(quirk) {
        eprintln!("SKIPPED {name}: quirk {quirk} (this kernel's btrfs reports no transaction reservation)");
        return;
    }
    let fs = LoopFs::new(fstype).expect("fs");
    // Dirty data the freeze writes back (transaction starts at levels 1-3; a file of its own for
    // each recording: rewriting one ext4 already allocated starts none), then one direct
    // write to the frozen device's second-to-last block (free space): a slip.
    let script = format!(
        "dd if=/dev/urandom of={m}/data.$$ bs=1M count=8 status=none; \
         fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT; \
         dd if=/dev/zero of={dev} bs=4096 count=1 seek={seek} oflag=direct conv=notrunc status=none; \
         fsfreeze -u {m}; trap - EXIT",
        m = fs.mnt(),
        dev = fs.loopdev,
        seek = fs.blocks_4k() - 2,
    );
    let txn = format!("txn-{}", fstype.name());
    let features = ["block-writes", txn.as_str()];
    let fallbacks = format!("{BTRFS_FEXIT},{},{}", raw_hook(features[0]), raw_hook(features[1]));
    let raw = record_script_with(&script, &[("FREEZEWATCH_SKIP_HOOKS", BTRFS_FEXIT)]).expect("recording");
    let tracepoints =
        record_script_with(&script, &[("FREEZEWATCH_SKIP_HOOKS", &fallbacks)]).expect("recording");
    for feature in features {
        assert_eq!(raw.feature_hook(feature), raw_hook(feature), "{feature}");
        let fallback = raw_hook(feature).replacen("raw_tracepoint:", "tracepoint:", 1);
        assert_eq!(tracepoints.feature_hook(feature), fallback, "{feature}");
    }
    for (trace, prefix) in [(&raw, "raw_tracepoint:"), (&tracepoints, "tracepoint:")] {
        let slips = trace.findings("slip");
        assert_eq!(slips.len(), 1, "{prefix} {slips:#?}");
        assert_eq!(slips[0]["comm"], "dd");
        assert_eq!(slips[0]["hook"], format!("{prefix}block:block_bio_queue"));
        let (_, hooks) = seen(trace, &fs);
        assert!(
            !hooks.is_empty(),
            "{prefix}: no transaction start while freezing; hook hits {}",
            trace.footer()["counters"]["hook_hits"]
        );
        assert!(hooks.iter().all(|h| h.starts_with(prefix)), "{prefix}: {hooks:?}");
        let draining = trace
            .events()
            .into_iter()
            .filter(|e| e["kind"] == "txn_start" && e["sb"]["mountpoint"] == fs.mnt())
            .any(|e: &Value| e["level_after"].as_u64().is_some_and(|l| (1..=3).contains(&l)));
        assert!(draining, "{prefix}: no transaction start while freeze_super drained");
    }
    let strip = |(slips, hooks): (Vec<String>, Vec<String>)| {
        let hooks: Vec<String> =
            hooks.iter().map(|h| h.split_once(':').map_or("", |s| s.1).to_owned()).collect();
        (slips, hooks)
    };
    assert_eq!(strip(seen(&raw, &fs)), strip(seen(&tracepoints, &fs)), "the two recordings differ");
}

#[test]
fn ext4_raw_tracepoints_see_what_the_tracepoints_see() {
    raw_tracepoints_see_what_the_tracepoints_see(FsType::Ext4);
}

#[test]
fn xfs_raw_tracepoints_see_what_the_tracepoints_see() {
    raw_tracepoints_see_what_the_tracepoints_see(FsType::Xfs);
}

#[test]
fn btrfs_raw_tracepoints_see_what_the_tracepoints_see() {
    raw_tracepoints_see_what_the_tracepoints_see(FsType::Btrfs);
}
