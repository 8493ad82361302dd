//! Mounts that land on a frozen filesystem: mount(2) of its device, a bind mount out of it, and
//! fsmount + move_mount of it are all flagged; a mount of an unrelated filesystem is not, and one
//! between freezes is not even recorded.
use freezewatch_tests::{ExtraMounts, FsType, LoopFs, Trace, helper_bin, kernel_available, record_script};

/// The mounts hook where fentry works: the mount calls at their functions, which also tell
/// whether a call reached a frozen superblock.
const MOUNT_FUNCTIONS: &str = "fentry:sys_mount+finish_automount";

fn mounts_while_frozen_are_flagged(fstype: FsType) {
    if !kernel_available(&format!("mounts_while_frozen_are_flagged({})", fstype.name())) {
        return;
    }
    let fs = LoopFs::new(fstype).expect("frozen-to-be fs");
    let other = LoopFs::new(FsType::Ext4).expect("unrelated fs");
    let dir = tempfile::tempdir().expect("tmp");
    let (dev_mnt, bind_mnt, new_api_mnt, other_mnt) = (
        dir.path().join("dev"),
        dir.path().join("bind"),
        dir.path().join("fsmount"),
        dir.path().join("other"),
    );
    for d in [&dev_mnt, &bind_mnt, &new_api_mnt, &other_mnt] {
        std::fs::create_dir(d).expect("mkdir");
    }
    std::fs::create_dir(fs.mountpoint.join("sub")).expect("mkdir sub");
    // Whatever happens, thaw and unmount what the script mounted (dropped before `fs`).
    let _cleanup = ExtraMounts {
        thaw: fs.mountpoint.clone(),
        paths: vec![dev_mnt.clone(), bind_mnt.clone(), new_api_mnt.clone(), other_mnt.clone()],
    };
    let script = format!(
        "set -e; \
         fsfreeze -f {m}; \
         mount -t {t} {dev} {d}; \
         mount --bind {m}/sub {b}; \
         {fsmount} {t} {dev} {n}; \
         umount {o_src}; mount {o_dev} {o}; \
         fsfreeze -u {m}",
        m = fs.mnt(),
        t = fstype.name(),
        dev = fs.loopdev,
        d = dev_mnt.display(),
        b = bind_mnt.display(),
        n = new_api_mnt.display(),
        o = other_mnt.display(),
        o_src = other.mnt(),
        o_dev = other.loopdev,
        fsmount = helper_bin("fw-fsmount", env!("CARGO_BIN_EXE_fw-fsmount")),
    );
    let trace = record_script(&script).expect("recording");
    assert_eq!(
        trace.footer()["counters"]["lost_ringbuf_full"],
        0,
        "events were lost: the checks below would be wrong"
    );
    let flagged = trace.findings("mount-while-frozen");
    let messages: Vec<&str> = flagged.iter().filter_map(|f| f["message"].as_str()).collect();
    let calls: Vec<String> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "mount_end")
        .map(|e| format!("{} ret {} sb {} level {}", e["mount"], e["ret"], e["sb"]["id"], e["level_after"]))
        .collect();
    assert_eq!(
        flagged.len(),
        3,
        "{messages:#?}\nmount calls:\n{}\nstderr:\n{}",
        calls.join("\n"),
        trace.stderr
    );
    assert!(
        messages[0].starts_with(&format!("mount of {} on {}", fs.loopdev, dev_mnt.display())),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].starts_with(&format!("bind mount of {}/sub on {}", fs.mnt(), bind_mnt.display())),
        "{}",
        messages[1]
    );
    assert!(messages[2].starts_with(&format!("move_mount to {}", new_api_mnt.display())), "{}", messages[2]);
    for f in &flagged {
        assert_eq!(f["severity"], "error");
        assert_eq!(f["sb"]["fstype"], fstype.name(), "{f}");
        assert_eq!(f["sb"]["mountpoint"], fs.mnt(), "{f}");
    }
    // Every call of the new mount API was recorded with its result; only move_mount attached.
    let ends: Vec<_> = trace.events().into_iter().filter(|e| e["kind"] == "mount_end").collect();
    let api = |name: &str| ends.iter().filter(|e| e["mount"]["api"] == name).collect::<Vec<_>>();
    assert_eq!(api("fsopen").len(), 1, "{ends:?}");
    assert_eq!(api("fsopen")[0]["mount"]["fstype"], fstype.name());
    assert!(api("fsopen")[0]["ret"].as_i64().is_some_and(|fd| fd >= 0), "fsopen returns an fd");
    let source =
        api("fsconfig").into_iter().find(|e| e["mount"]["source"] == "source").expect("fsconfig source");
    assert_eq!(
        (source["mount"]["target"].as_str(), source["ret"].as_i64()),
        (Some(fs.loopdev.as_str()), Some(0))
    );
    assert_eq!(api("fsmount").len(), 1);
    assert_eq!(api("move_mount").len(), 1);
    // The unrelated ext4 mount was not flagged. It is recorded (something is frozen at the time)
    // unless the mount calls are watched at their functions, which tell that it reached no
    // frozen superblock.
    let ends: Vec<_> = trace.events().into_iter().filter(|e| e["kind"] == "mount_end").collect();
    let other_seen =
        ends.iter().any(|e| e["mount"]["target"] == other_mnt.to_str().expect("utf8") && e["ret"] == 0);
    assert_eq!(other_seen, trace.feature_hook("mounts") != MOUNT_FUNCTIONS, "{ends:?}");
    assert_eq!(
        trace.of_type("summary").iter().map(|s| s["mounts_while_frozen"].as_u64().unwrap_or(0)).sum::<u64>(),
        3
    );
    // The `other` fixture's mountpoint was unmounted by the script: put it back for a clean Drop.
    let _ = std::process::Command::new("mount").args([&other.loopdev, other.mnt()]).status();
}

#[test]
fn ext4_mounts_while_frozen_are_flagged() {
    mounts_while_frozen_are_flagged(FsType::Ext4);
}

#[test]
fn xfs_mounts_while_frozen_are_flagged() {
    mounts_while_frozen_are_flagged(FsType::Xfs);
}

/// btrfs names its superblock by an anonymous device (`0:NN`), not the loop device: a mount of
/// the member device is matched through the member → filesystem alias.
#[test]
fn btrfs_mounts_while_frozen_are_flagged() {
    mounts_while_frozen_are_flagged(FsType::Btrfs);
}

/// The mount(2) calls of `trace` that landed on `target`.
fn mounts_on(trace: &Trace, target: &std::path::Path) -> usize {
    let target = target.to_str().expect("UTF-8 path");
    trace.events().into_iter().filter(|e| e["kind"] == "mount_end" && e["mount"]["target"] == target).count()
}

/// Between freezes a mount call costs no record: nothing can land on a frozen filesystem then.
/// While one is frozen, a second mount of its device is recorded and flagged (the hook was live
/// all along); an unrelated tmpfs mount then is recorded only where the mount calls are not seen
/// at their functions (these tell it reached no frozen superblock).
#[test]
fn a_mount_between_freezes_costs_no_record() {
    if !kernel_available("a_mount_between_freezes_costs_no_record") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("tmp");
    let (before, during, again, after) = (
        dir.path().join("before"),
        dir.path().join("during"),
        dir.path().join("again"),
        dir.path().join("after"),
    );
    for d in [&before, &during, &again, &after] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let _cleanup = ExtraMounts {
        thaw: fs.mountpoint.clone(),
        paths: vec![before.clone(), during.clone(), again.clone(), after.clone()],
    };
    let script = format!(
        "set -e; \
         mount -t tmpfs none {before}; umount {before}; \
         fsfreeze -f {m}; \
         mount -t tmpfs none {during}; umount {during}; \
         mount -t ext4 {dev} {again}; umount {again}; \
         fsfreeze -u {m}; \
         mount -t tmpfs none {after}; umount {after}",
        m = fs.mnt(),
        dev = fs.loopdev,
        before = before.display(),
        during = during.display(),
        again = again.display(),
        after = after.display(),
    );
    let trace = record_script(&script).expect("recording");
    assert_eq!(mounts_on(&trace, &again), 1, "the mount of the frozen device: {:#?}", trace.events());
    assert_eq!(trace.findings_on("mount-while-frozen", fs.mnt()).len(), 1);
    assert_eq!((mounts_on(&trace, &before), mounts_on(&trace, &after)), (0, 0), "{:#?}", trace.events());
    let judged_at_functions = trace.feature_hook("mounts") == MOUNT_FUNCTIONS;
    assert_eq!(mounts_on(&trace, &during), usize::from(!judged_at_functions), "{:#?}", trace.events());
}
