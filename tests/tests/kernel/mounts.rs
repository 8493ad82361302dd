//! Mounts that land on a frozen filesystem: mount(2) of its device, a bind mount out of it, and
//! fsmount + move_mount of it are all flagged; a mount of an unrelated filesystem is not.
use freezewatch_tests::{ExtraMounts, FsType, LoopFs, fsmount_bin, kernel_available, record_script};

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
        fsmount = fsmount_bin(env!("CARGO_BIN_EXE_fw-fsmount")),
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
    // The unrelated ext4 mount was recorded, and not flagged.
    let ends: Vec<_> = trace.events().into_iter().filter(|e| e["kind"] == "mount_end").collect();
    assert!(
        ends.iter().any(|e| e["mount"]["target"] == other_mnt.to_str().expect("utf8") && e["ret"] == 0),
        "{ends:?}"
    );
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
