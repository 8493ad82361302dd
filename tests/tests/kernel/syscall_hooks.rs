//! The syscall dispatcher (one `tp_btf` program on `sys_enter` and one on `sys_exit`, for the
//! freeze ioctls, the mount calls and fallocate/ftruncate) and the `tp_btf` lock-contention
//! programs, against the `syscalls:*` and `lock:*` tracepoints they are first choice before: one
//! script recorded both ways gives the same events and the same findings.
use freezewatch_tests::{FsType, LoopFs, Trace, hook_available, record_script_with, sh_wait_until_blocked};
use serde_json::Value;

/// Each feature's first choice and its tracepoint fallback (what `FREEZEWATCH_SKIP_HOOKS` picks).
const CHAINS: &[(&str, &str, &str)] = &[
    ("freeze", "tp_btf:raw_syscalls:ioctl", "tracepoint:syscalls:ioctl"),
    ("mounts", "tp_btf:raw_syscalls:mount", "tracepoint:syscalls:mount"),
    ("backing-files", "tp_btf:raw_syscalls:fallocate+ftruncate", "tracepoint:syscalls:fallocate+ftruncate"),
    ("blocked-writers", "tp_btf:lock:contention", "tracepoint:lock:contention"),
];

/// The events and findings of `trace` that these hooks make, without what differs between two
/// runs (times, ids, hook names: compared on their own).
fn seen(trace: &Trace, fs: &LoopFs, target: &str) -> (Vec<String>, Vec<String>) {
    let kinds = ["freeze_begin", "freeze_end", "thaw_begin", "thaw_end", "mount_begin", "mount_end"];
    let events = trace
        .events()
        .into_iter()
        .filter(|e| e["sb"]["mountpoint"] == fs.mnt() || e["mount"]["target"] == *target)
        .filter_map(|e| {
            let kind = e["kind"].as_str()?;
            let what = match kind {
                k if kinds.contains(&k) => format!("{k} ret {} mount {}", e["ret"], e["mount"]),
                "writer_blocked" | "writer_unblocked" => format!("{kind} {}", e["comm"]),
                "block_write" if e["block"]["op"] == "punch-hole" => {
                    format!("{kind} {} {}", e["block"]["file_offset"], e["block"]["bytes"])
                }
                _ => return None,
            };
            Some(what)
        })
        .collect();
    let findings = trace
        .of_type("finding")
        .into_iter()
        .filter(|f| f["kind"] != "exempt")
        .map(|f| format!("{} {} {}", f["kind"], f["severity"], f["comm"]))
        .collect();
    (events, findings)
}

#[test]
fn the_syscall_dispatcher_and_the_tracepoints_see_the_same_freeze_mount_punch_and_blocked_writer() {
    let name =
        "the_syscall_dispatcher_and_the_tracepoints_see_the_same_freeze_mount_punch_and_blocked_writer";
    if !hook_available(name, "blocked-writers", Some(CHAINS[3].1)) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("tmp");
    let again = dir.path().join("again");
    std::fs::create_dir(&again).expect("mount point");
    // While frozen: a hole punched in the backing file (its second-to-last block, free space), a
    // second mount of the frozen device, a writer held at the gate until the thaw.
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m} 2>/dev/null' EXIT\n\
         fallocate -p -o {off} -l 4096 {img}\n\
         mount -t ext4 {dev} {again}; umount {again}\n\
         (echo data > {m}/file) & w=$!; {wait}\n\
         fsfreeze -u {m}; trap - EXIT; wait",
        m = fs.mnt(),
        off = (fs.blocks_4k() - 2) * 4096,
        img = fs.image.display(),
        dev = fs.loopdev,
        again = again.display(),
        wait = sh_wait_until_blocked("w"),
    );
    let skip_all: Vec<&str> = CHAINS.iter().map(|(_, first, _)| *first).collect();
    let skip_all = skip_all.join(",");
    // Where fentry loads (the guests), freezes would be seen at freeze_super: passed over.
    let no_fentry = ("FREEZEWATCH_NO_FENTRY", "1");
    let first = record_script_with(&script, &[no_fentry]).expect("recording with the dispatcher");
    let fallback =
        record_script_with(&script, &[no_fentry, ("FREEZEWATCH_SKIP_HOOKS", &skip_all)]).expect("recording");
    for (feature, best, tracepoint) in CHAINS {
        assert_eq!(first.feature_hook(feature), *best, "{feature}");
        assert_eq!(fallback.feature_hook(feature), *tracepoint, "{feature}");
    }
    for (trace, how) in [(&first, "dispatcher"), (&fallback, "tracepoints")] {
        let target = again.display().to_string();
        let hook_of = |kind: &str| -> Vec<String> {
            trace
                .events()
                .into_iter()
                .filter(|e| e["kind"] == kind)
                .filter(|e| e["sb"]["mountpoint"] == fs.mnt() || e["mount"]["target"] == *target)
                .map(|e| e["hook"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        let (ioctl, mount, fallocate, lock) = match how {
            "dispatcher" => (
                "tp_btf:raw_syscalls:ioctl",
                "tp_btf:raw_syscalls:mount",
                "tp_btf:raw_syscalls:fallocate",
                "tp_btf:lock:contention",
            ),
            _ => (
                "tracepoint:syscalls:ioctl",
                "tracepoint:syscalls:mount",
                "tracepoint:syscalls:fallocate",
                "tracepoint:lock:contention",
            ),
        };
        assert_eq!(hook_of("freeze_end"), [ioctl], "{how}");
        assert_eq!(hook_of("thaw_end"), [ioctl], "{how}");
        assert_eq!(hook_of("mount_end"), [mount], "{how}");
        assert_eq!(hook_of("writer_blocked"), [lock], "{how}");
        let punches: Vec<&Value> = trace
            .events()
            .into_iter()
            .filter(|e| e["kind"] == "block_write" && e["block"]["op"] == "punch-hole")
            .collect();
        assert_eq!(punches.len(), 1, "{how}: {punches:?}");
        assert_eq!(punches[0]["hook"], fallocate, "{how}");
        let kinds: Vec<&str> = trace
            .of_type("finding")
            .into_iter()
            .filter_map(|f| f["kind"].as_str())
            .filter(|k| *k != "exempt")
            .collect();
        for want in ["slip", "mount-while-frozen", "blocked-writer"] {
            assert_eq!(kinds.iter().filter(|k| **k == want).count(), 1, "{how}: {want} in {kinds:?}");
        }
    }
    let target = again.display().to_string();
    let (events, findings) = seen(&first, &fs, &target);
    // Freeze, punch, mount, block and unblock, thaw: begin and end where they have both.
    assert_eq!(events.len(), 9, "{events:#?}");
    assert_eq!(findings.len(), 3, "{findings:#?}");
    // As sets: the writer's unblocking and the thaw's end race (two tasks), in either recording.
    let sorted = |(mut events, mut findings): (Vec<String>, Vec<String>)| {
        events.sort();
        findings.sort();
        (events, findings)
    };
    assert_eq!(
        sorted((events, findings)),
        sorted(seen(&fallback, &fs, &target)),
        "the two recordings differ"
    );
}
