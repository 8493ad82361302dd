//! `--deny-mounts`: while a filesystem is frozen, BPF LSM programs refuse new mounts of it (its
//! device, a bind mount from it, fsmount + move_mount) and let every other mount through. These
//! tests need the BPF LSM, which this project's host refuses: they run in the QEMU guests
//! (`cargo xtask vm-test`). On a host without it, the refusal is what is tested.
use std::path::PathBuf;

use freezewatch_tests::{
    Capabilities, DmStack, ExtraMounts, Frozen, FsType, LoopFs, MountResult, Recorder, Trace, bind_mount,
    dmsetup, freezewatch, fsmount_move, guest_feature_available, kernel_available, kernel_version,
    mount_device, unmount,
};

/// Mount targets for one test, and the guard that unmounts them (after thawing `fs`).
struct Targets {
    dev: PathBuf,
    bind: PathBuf,
    api: PathBuf,
    other: PathBuf,
    _cleanup: ExtraMounts,
    _dir: tempfile::TempDir,
}

impl Targets {
    fn new(fs: &LoopFs) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let [dev, bind, api, other] = ["dev", "bind", "api", "other"].map(|n| dir.path().join(n));
        for d in [&dev, &bind, &api, &other] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::create_dir_all(fs.mountpoint.join("sub")).expect("mkdir sub");
        let cleanup = ExtraMounts {
            thaw: fs.mountpoint.clone(),
            paths: vec![dev.clone(), bind.clone(), api.clone(), other.clone()],
        };
        Targets { dev, bind, api, other, _cleanup: cleanup, _dir: dir }
    }

    /// The three ways to expose `fs` again: mount(2) of its device, a bind mount from inside
    /// it, fsmount + move_mount.
    fn expose(&self, fs: &LoopFs) -> [MountResult; 3] {
        [
            mount_device("ext4", &fs.loopdev, &self.dev),
            bind_mount(&fs.mountpoint.join("sub"), &self.bind),
            fsmount_move("ext4", &fs.loopdev, &self.api),
        ]
    }

    fn unmount_exposed(&self) {
        for p in [&self.dev, &self.bind, &self.api] {
            unmount(p);
        }
    }
}

const EPERM: MountResult = Err(libc::EPERM);

fn denials(trace: &Trace) -> Vec<&serde_json::Value> {
    trace.events().into_iter().filter(|e| e["kind"] == "mount_denied").collect()
}

#[test]
fn enforce_denies_mounts_of_the_frozen_filesystem_and_nothing_else() {
    if !guest_feature_available("enforce_denies_mounts_of_the_frozen_filesystem_and_nothing_else", "lsm") {
        return;
    }
    let a = LoopFs::new(FsType::Ext4).expect("fs A");
    let b = LoopFs::new(FsType::Ext4).expect("fs B");
    let t = Targets::new(&a);
    // Before attaching: mounting A again works.
    assert_eq!(t.expose(&a), [Ok(()); 3], "before freezewatch");
    t.unmount_exposed();

    let rec = Recorder::start(&["--deny-mounts"]).expect("recorder");
    {
        let _frozen = Frozen::new(&a).expect("freeze A");
        assert_eq!(t.expose(&a), [EPERM; 3], "A frozen: every way to mount it again is refused");
        assert_eq!(mount_device("ext4", &b.loopdev, &t.other), Ok(()), "B is not frozen");
    }
    assert_eq!(t.expose(&a), [Ok(()); 3], "after the thaw");
    t.unmount_exposed();
    let trace = rec.finish().expect("trace");

    let header = &trace.of_type("header")[0];
    assert_eq!(header["deny_mounts"], serde_json::json!({"mode": "enforce", "active": true}));
    let denied = denials(&trace);
    let hooks: Vec<&str> = denied.iter().filter_map(|e| e["denial"]["lsm_hook"].as_str()).collect();
    // The new mount API is refused at fsconfig(FSCONFIG_CMD_CREATE), before fsmount: the
    // superblock is known there already.
    assert_eq!(hooks, ["sb_kern_mount", "sb_mount", "sb_kern_mount"], "{denied:#?}");
    let a_dev = a.mountinfo_dev_number().expect("A's dev");
    for e in &denied {
        assert_eq!(e["denial"]["mode"], "enforce", "{e}");
        assert_eq!((e["ret"].as_i64(), e["error"].as_str()), (Some(-1), Some("EPERM")), "{e}");
        assert_eq!((e["level_before"].as_u64(), e["sb"]["dev"].as_str()), (Some(4), Some(a_dev.as_str())));
        assert_eq!(e["hook"], "lsm:mount");
    }
    let findings = trace.findings("mount-denied");
    let messages: Vec<&str> = findings.iter().filter_map(|f| f["message"].as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let sub = a.mountpoint.join("sub");
    for (m, what) in messages.iter().zip([
        format!("mount of {} on {}", a.loopdev, t.dev.display()),
        format!("bind mount of {} on {}", sub.display(), t.bind.display()),
        format!("fsconfig create of {}", a.loopdev),
    ]) {
        assert!(m.starts_with(&what) && m.contains("was denied (EPERM)"), "{m}");
    }
    assert!(trace.findings("mount-while-frozen").is_empty(), "nothing landed");
    let summary = trace.of_type("summary").into_iter().find(|s| s["sb"]["dev"] == a_dev.as_str()).cloned();
    assert_eq!(summary.map(|s| s["denied_mounts"].clone()), Some(3.into()));
}

#[test]
fn audit_lets_mounts_through_and_records_that_they_would_be_denied() {
    if !guest_feature_available("audit_lets_mounts_through_and_records_that_they_would_be_denied", "lsm") {
        return;
    }
    let a = LoopFs::new(FsType::Ext4).expect("fs A");
    let t = Targets::new(&a);
    let rec = Recorder::start(&["--deny-mounts=audit"]).expect("recorder");
    {
        let _frozen = Frozen::new(&a).expect("freeze A");
        assert_eq!(t.expose(&a), [Ok(()); 3], "audit mode refuses nothing");
        t.unmount_exposed();
    }
    let trace = rec.finish().expect("trace");
    let denied = denials(&trace);
    let hooks: Vec<&str> = denied.iter().filter_map(|e| e["denial"]["lsm_hook"].as_str()).collect();
    // Nothing stops the new mount API at fsconfig in audit mode, so move_mount is judged too.
    assert_eq!(hooks, ["sb_kern_mount", "sb_mount", "sb_kern_mount", "move_mount"], "{denied:#?}");
    for e in &denied {
        assert_eq!((e["denial"]["mode"].as_str(), e["ret"].as_i64()), (Some("audit"), Some(0)), "{e}");
    }
    let would = trace.findings("mount-denied");
    assert_eq!(would.len(), 3, "one verdict per mount: {would:#?}");
    assert!(
        would.iter().all(|f| f["message"].as_str().is_some_and(|m| m.contains("would have been denied")))
    );
    assert_eq!(trace.findings("mount-while-frozen").len(), 3, "each mount did land mid-snapshot");
    let a_dev = a.mountinfo_dev_number().expect("A's dev");
    let summary = trace.of_type("summary").into_iter().find(|s| s["sb"]["dev"] == a_dev.as_str()).cloned();
    let summary = summary.expect("A has a summary");
    assert_eq!(
        (summary["would_deny_mounts"].as_u64(), summary["denied_mounts"].as_u64()),
        (Some(3), Some(0))
    );
}

#[test]
fn no_denial_remains_once_freezewatch_is_killed() {
    if !guest_feature_available("no_denial_remains_once_freezewatch_is_killed", "lsm") {
        return;
    }
    let a = LoopFs::new(FsType::Ext4).expect("fs A");
    let t = Targets::new(&a);
    let mut rec = Recorder::start(&["--deny-mounts"]).expect("recorder");
    let _frozen = Frozen::new(&a).expect("freeze A");
    assert_eq!(mount_device("ext4", &a.loopdev, &t.dev), EPERM, "denied while freezewatch runs");
    let status = rec.stop_with(libc::SIGKILL).expect("killed");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    // The LSM links were file descriptors of the dead process: closing them detached the programs.
    assert_eq!(mount_device("ext4", &a.loopdev, &t.dev), Ok(()), "A is still frozen, and mountable");
}

#[test]
fn without_the_bpf_lsm_enforce_will_not_start_and_audit_says_it_is_inactive() {
    if !kernel_available("without_the_bpf_lsm_enforce_will_not_start_and_audit_says_it_is_inactive") {
        return;
    }
    if Capabilities::probe().lsm {
        eprintln!("SKIPPED: the BPF LSM works here; the tests above run instead");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("t.ndjson");
    let out_s = out.to_str().expect("utf8");
    let limit = freezewatch_tests::limit(60);
    let enforce =
        freezewatch(&["record", "--deny-mounts", "--out", out_s, "--", "true"], limit).expect("runs");
    assert_eq!(enforce.code, Some(3), "{}", enforce.stderr);
    assert!(enforce.stderr.contains("--deny-mounts=enforce cannot deny mounts here"), "{}", enforce.stderr);
    assert!(enforce.stderr.contains("Use --deny-mounts=audit"), "{}", enforce.stderr);

    let audit =
        freezewatch(&["record", "--deny-mounts=audit", "--out", out_s, "--", "true"], limit).expect("runs");
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    assert!(audit.stderr.contains("WARNING: --deny-mounts=audit is not active"), "{}", audit.stderr);
    let trace = Trace::parse(&std::fs::read_to_string(&out).expect("trace")).expect("parses");
    let header = &trace.of_type("header")[0];
    assert_eq!(header["deny_mounts"], serde_json::json!({"mode": "audit", "active": false}));
    let hook = header["hooks"].as_array().and_then(|h| h.iter().find(|h| h["feature"] == "mount-denial"));
    assert_eq!(hook.map(|h| h["hook"].clone()), Some(serde_json::Value::Null), "{header}");
}

#[test]
fn nested_holders_keep_the_gate_closed_until_the_last_thaw() {
    let name = "nested_holders_keep_the_gate_closed_until_the_last_thaw";
    if !guest_feature_available(name, "lsm") {
        return;
    }
    if kernel_version() < (6, 6) {
        // Before 6.6 a block-device freeze of a filesystem frozen by FIFREEZE fails (EBUSY):
        // there is no second holder to test.
        eprintln!("SKIPPED {name}: freeze holders nest from Linux 6.6 on");
        return;
    }
    // ext4 on a dm-linear device over a loop device: `dmsetup suspend` freezes it as a second
    // holder (bdev_freeze) beside FIFREEZE.
    let name = format!("fwtest{}", std::process::id());
    let stack = DmStack::linear_ext4(&name, 64, 0).expect("ext4 on device-mapper");
    let fs = stack.fs();
    let dir = tempfile::tempdir().expect("tmp");
    let target = dir.path().join("again");
    std::fs::create_dir(&target).expect("mkdir");
    let _cleanup = ExtraMounts { thaw: fs.mountpoint.clone(), paths: vec![target.clone()] };
    let rec = Recorder::start(&["--deny-mounts"]).expect("recorder");
    let fsfreeze = |flag: &str| std::process::Command::new("fsfreeze").arg(flag).arg(&fs.mountpoint).status();
    assert!(fsfreeze("-f").expect("fsfreeze runs").success(), "first holder: FIFREEZE");
    dmsetup(&["suspend", &name]).expect("second holder: device-mapper suspend");
    assert_eq!(mount_device("ext4", &fs.dev, &target), EPERM, "two holders");
    dmsetup(&["resume", &name]).expect("the device-mapper holder lets go");
    assert_eq!(mount_device("ext4", &fs.dev, &target), EPERM, "one holder left: still frozen");
    assert!(fsfreeze("-u").expect("fsfreeze runs").success(), "the last holder lets go");
    assert_eq!(mount_device("ext4", &fs.dev, &target), Ok(()), "thawed");
    unmount(&target);
    let trace = rec.finish().expect("trace");
    // Both holders went through freeze_super (fentry sees the device-mapper freeze too).
    let ends: Vec<(String, Option<u64>)> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "freeze_end" || e["kind"] == "thaw_end")
        .map(|e| (e["kind"].as_str().unwrap_or("").to_owned(), e["level_after"].as_u64()))
        .collect();
    let expected: Vec<(String, Option<u64>)> =
        [("freeze_end", 4), ("freeze_end", 4), ("thaw_end", 4), ("thaw_end", 0)]
            .map(|(k, l)| (k.to_owned(), Some(l)))
            .into();
    assert_eq!(ends, expected, "levels after each freeze and thaw");
    assert_eq!(denials(&trace).len(), 2);
}
