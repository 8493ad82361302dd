//! Where fentry works (the guests), the mounts chain's first choice: fentry/fexit on the mount
//! calls' syscall functions sees what the syscall dispatcher (`FREEZEWATCH_NO_FENTRY=1`) sees,
//! event for event and finding for finding, and `finish_automount` sees the mounts the kernel
//! attaches itself (an automount), which no syscall shows. With freeze, backing files and the
//! level probe on fentry and an iterator too, a recorder there holds no program on a syscall
//! tracepoint: every task's syscalls keep their fast path.
use freezewatch_tests::{
    ExtraMounts, Frozen, FsType, LoopFs, Recorder, Trace, Unmount, bpf_program_infos_of,
    guest_feature_available, mount_device, raw_tracepoints_of, record_script_with,
};
use serde_json::Value;

/// The mounts chain's first choice, where fentry loads.
const FENTRY: &str = "fentry:sys_mount+finish_automount";

/// The mount events of `trace` at or under `dir`, without what differs between two runs (times,
/// task ids, the hook: compared on their own).
fn mounts_under(trace: &Trace, dir: &str) -> Vec<String> {
    trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "mount_begin" || e["kind"] == "mount_end")
        .filter(|e| e["mount"]["target"].as_str().is_some_and(|t| t.starts_with(dir)))
        .map(|e| {
            format!("{} {} ret {} sb {}", e["kind"], e["comm"], e["ret"], e["sb"]["dev"])
                + &e["mount"].to_string()
        })
        .collect()
}

/// What the recorder said of its hooks (the fallbacks, and why), for a failure's message.
fn hooks_of(trace: &Trace) -> String {
    trace
        .stderr
        .lines()
        .filter(|l| l.contains("mounts") || l.contains("not used"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A second mount of a frozen filesystem's device and a bind mount of its mount point, while it
/// is frozen: the same mount events and the same two `mount-while-frozen` findings both ways.
#[test]
fn the_mount_calls_at_their_functions_and_the_syscall_dispatcher_see_the_same_mounts() {
    let name = "the_mount_calls_at_their_functions_and_the_syscall_dispatcher_see_the_same_mounts";
    if !guest_feature_available(name, "fentry") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let (again, bound) = (dir.path().join("again"), dir.path().join("bound"));
    for d in [&again, &bound] {
        std::fs::create_dir(d).expect("mount point");
    }
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n\
         mount -t ext4 {dev} {again}; umount {again}\n\
         mount --bind {m} {bound}; umount {bound}\n\
         fsfreeze -u {m}; trap - EXIT",
        m = fs.mnt(),
        dev = fs.loopdev,
        again = again.display(),
        bound = bound.display(),
    );
    let fentry = record_script_with(&script, &[]).expect("recording with fentry");
    let dispatcher = record_script_with(&script, &[("FREEZEWATCH_NO_FENTRY", "1")]).expect("recording");
    assert_eq!(fentry.feature_hook("mounts"), FENTRY, "{}", hooks_of(&fentry));
    assert_eq!(dispatcher.feature_hook("mounts"), "tp_btf:raw_syscalls:mount");
    let under = dir.path().display().to_string();
    let (a, b) = (mounts_under(&fentry, &under), mounts_under(&dispatcher, &under));
    assert!(a.len() >= 4, "a begin and an end of each mount at least: {a:#?}");
    assert_eq!(a, b, "the two recordings' mount events differ");
    let hooks: Vec<&str> = fentry
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "mount_end")
        .filter(|e| e["mount"]["target"].as_str().is_some_and(|t| t.starts_with(&under)))
        .filter_map(|e| e["hook"].as_str())
        .collect();
    assert!(!hooks.is_empty() && hooks.iter().all(|h| *h == "fentry:sys_mount"), "{hooks:?}");
    let findings = |trace: &Trace| -> Vec<String> {
        trace
            .findings_on("mount-while-frozen", fs.mnt())
            .iter()
            .map(|f| {
                let message = f["message"].as_str().unwrap_or_default();
                format!("{} {}", f["comm"], message.split_once("] ").map_or(message, |(_, rest)| rest))
            })
            .collect()
    };
    assert_eq!(findings(&fentry).len(), 2, "{:#?}", findings(&fentry));
    assert_eq!(findings(&fentry), findings(&dispatcher));
}

/// debugfs mounts tracefs on its `tracing` directory when it is first walked into: a mount the
/// kernel attaches itself, inside no mount call, here while another filesystem is frozen. It is a mount event of API `automount`, by the task
/// whose walk set it off, naming the mount point and the filesystem from mountinfo.
#[test]
fn an_automount_is_seen_where_the_kernel_attaches_it() {
    if !guest_feature_available("an_automount_is_seen_where_the_kernel_attaches_it", "fentry") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let debugfs = dir.path().join("debug");
    std::fs::create_dir(&debugfs).expect("mount point");
    let status = std::process::Command::new("mount")
        .args(["-t", "debugfs", "none"])
        .arg(&debugfs)
        .status()
        .expect("mount debugfs");
    assert!(status.success(), "mounting debugfs");
    let _unmount = Unmount(&debugfs);
    let tracing = debugfs.join("tracing");
    // Mounts are recorded while something is frozen (between freezes none can matter): the walk
    // happens while a filesystem of the test's own is.
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let _thaw = ExtraMounts { thaw: fs.mountpoint.clone(), paths: vec![] };
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\nls {t} > /dev/null",
        m = fs.mnt(),
        t = tracing.display()
    );
    let trace = record_script_with(&script, &[]).expect("recording");
    assert_eq!(trace.feature_hook("mounts"), FENTRY, "{}", hooks_of(&trace));
    let target = tracing.display().to_string();
    let ends: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "mount_end" && e["mount"]["target"] == target.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{:#?}", trace.events());
    let e = ends[0];
    assert_eq!(
        (e["hook"].as_str(), e["mount"]["api"].as_str(), e["mount"]["fstype"].as_str(), e["ret"].as_i64()),
        (Some("fentry:finish_automount"), Some("automount"), Some("tracefs"), Some(0)),
        "{e}"
    );
    assert_eq!(e["comm"], "ls", "{e}");
    assert!(e["mount"]["mount_id"].as_u64().is_some_and(|id| id > 0), "{e}");
}

/// A recorder on a kernel with fentry: the kernel lists no raw tracepoint link of it on
/// `sys_enter`/`sys_exit` (the dispatcher) and no perf-event tracepoint program of a syscall;
/// and the same recorder saw a freeze, a mount and a backing file's truncate, at their fentry
/// hooks.
#[test]
fn where_fentry_works_no_program_is_attached_to_a_syscall_tracepoint() {
    let name = "where_fentry_works_no_program_is_attached_to_a_syscall_tracepoint";
    if !guest_feature_available(name, "fentry") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let again = dir.path().join("again");
    std::fs::create_dir(&again).expect("mount point");
    let rec = Recorder::start(&[]).expect("recorder");
    let raw = raw_tracepoints_of(rec.pid());
    let programs = bpf_program_infos_of(rec.pid());
    let (mounted, truncated) = {
        let _frozen = Frozen::new(&fs).expect("freeze");
        let mounted = mount_device("ext4", &fs.loopdev, &again);
        let truncated = std::process::Command::new("truncate").args(["-s", "63M"]).arg(&fs.image).status();
        (mounted, truncated)
    };
    let _unmount = Unmount(&again);
    assert!(mounted.is_ok() && truncated.as_ref().is_ok_and(|s| s.success()), "{mounted:?} {truncated:?}");
    let trace = rec.finish().expect("trace");

    assert!(raw.iter().any(|t| t == "sched_process_exit"), "the links are read: {raw:?}");
    assert!(!raw.iter().any(|t| t == "sys_enter" || t == "sys_exit"), "the syscall dispatcher: {raw:?}");
    const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
    let perf: Vec<&str> = programs
        .iter()
        .filter(|(kind, _)| *kind == BPF_PROG_TYPE_TRACEPOINT)
        .map(|(_, name)| name.as_str())
        .collect();
    // Tracepoint fallbacks of other categories stay where a kernel lacks their better hook (5.10:
    // block, xfs, btrfs); none is a syscall's.
    const NOT_SYSCALLS: &[&str] =
        &["fw_block_", "fw_xfs_", "fw_btrfs_", "fw_ext4_", "fw_contention_", "fw_process_"];
    assert!(
        perf.iter().all(|n| NOT_SYSCALLS.iter().any(|p| n.starts_with(p))),
        "perf-event tracepoint programs: {perf:?}"
    );
    assert!(programs.len() > 10, "the recorder's programs are read: {programs:?}");
    // The truncate's block_write (the thaw's own superblock write is one too, exempt).
    let hook_of = |kind: &str, op: Option<&str>| -> Vec<String> {
        trace
            .events_on(kind, fs.mnt())
            .iter()
            .filter(|e| op.is_none_or(|op| e["block"]["op"] == op))
            .filter_map(|e| e["hook"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(hook_of("freeze_end", None), ["fentry:freeze_super"]);
    assert_eq!(hook_of("block_write", Some("truncate")), ["fentry:do_truncate"]);
    let mount_hooks: Vec<&str> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "mount_end" && e["mount"]["target"] == again.display().to_string().as_str())
        .filter_map(|e| e["hook"].as_str())
        .collect();
    assert_eq!(mount_hooks, ["fentry:sys_mount"]);
}
