//! The watch model's judgement, event by event (no kernel).
use super::*;
use crate::attribution::Parent;
use crate::{
    event::FreezeVia,
    test_events::{ev, freeze, thaw},
};

const S: u64 = 1_000_000_000;

fn opts() -> WatchOptions {
    WatchOptions {
        alert_stalled_ns: 2 * S,
        alert_frozen_ns: 10 * S,
        alert_every_ns: 30 * S,
        thaw_orphans: Some(ThawMode::Enforce),
        orphan_grace_ns: 5 * S,
        thaw_after_ns: None,
    }
}

/// fsfreeze[10], started by backup.sh[9]; its call returns at `at + 10`.
fn frozen_by_script(w: &mut Watch, at: u64) {
    for mut e in freeze(at) {
        e.parent = Some(Parent { pid: 9, comm: "backup.sh".into(), reaper: false, exiting: false }.into());
        w.push(&e);
    }
}

/// Process `pid` (named `comm`) exits at `at` with exit code `code` (wait(2) encoding).
fn exit(w: &mut Watch, pid: u32, comm: &str, at: u64, code: u32) -> Vec<Finding> {
    let mut e =
        Event::new(EventKind::ProcessExit, crate::event::Hook::TpBtfProcessExit, at, pid, pid, comm.into());
    e.exit = Some(ProcessExit::from_code(code));
    w.push(&e).findings
}

const SIGKILL: u32 = 9;

/// Two holders (6.6+ nesting), each its own owner: qemu-ga[10] froze at 0, agent[20] at 1 s.
fn held_twice(w: &mut Watch) {
    for mut e in freeze(0) {
        e.comm = "qemu-ga".into();
        w.push(&e);
    }
    for mut e in freeze(S) {
        e.pid = 20;
        e.comm = "agent".into();
        w.push(&e);
    }
}

fn kinds(f: &[Finding]) -> Vec<FindingKind> {
    f.iter().map(|f| f.kind).collect()
}

#[test]
fn frozen_too_long_comes_at_the_threshold_and_again_at_the_cadence() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    assert!(w.tick(9 * S).0.is_empty());
    let (f, _) = w.tick(10 * S + 20);
    assert_eq!(kinds(&f), [FindingKind::FrozenTooLong]);
    assert!(f[0].message.contains("frozen by fsfreeze[10] ← backup.sh[9]"), "{}", f[0].message);
    assert_eq!((f[0].pid, f[0].comm.as_str()), (10, "fsfreeze"));
    assert!(w.tick(20 * S).0.is_empty(), "not again before the cadence");
    assert_eq!(kinds(&w.tick(41 * S).0), [FindingKind::FrozenTooLong]);
    for e in thaw(42 * S, 0) {
        w.push(&e);
    }
    assert!(w.tick(100 * S).0.is_empty(), "thawed: nothing more");
}

#[test]
fn a_freezer_whose_script_still_runs_is_not_gone() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    // fsfreeze exits at once (as it does); the script around it still runs.
    assert!(exit(&mut w, 10, "fsfreeze", S / 100, 0).is_empty());
    assert!(exit(&mut w, 4242, "unrelated", S, SIGKILL).is_empty(), "another process's exit");
    let (f, orders) = w.tick(8 * S);
    assert!(f.is_empty() && orders.is_empty());
    assert_eq!(w.frozen().filter(|f| f.gone).count(), 0);
}

#[test]
fn a_killed_script_is_gone_and_the_watchdog_thaws_after_the_grace() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    assert!(exit(&mut w, 10, "fsfreeze", S / 100, 0).is_empty());
    let f = exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL);
    assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
    assert_eq!(
        f[0].message,
        "backup.sh[9] was killed by SIGKILL; it had run fsfreeze[10], which froze ext4 7:0 (/mnt) and \
         exited with status 0 0.010s later; nothing holds the freeze of ext4 7:0 (/mnt) now, frozen for 2.000s"
    );
    assert_eq!(w.frozen().filter(|f| f.gone).count(), 1);
    assert!(w.tick(6 * S).1.is_empty(), "not before the grace period");
    let (_, orders) = w.tick(7 * S);
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].mountpoint, "/mnt");
    assert!(orders[0].reason.contains("gone for 5.000s"), "{}", orders[0].reason);
    assert!(w.tick(8 * S).1.is_empty(), "once");
    let done = w.thawed(&orders[0], 8 * S, Ok(()));
    assert_eq!(done.kind, FindingKind::ThawedByWatchdog);
    assert!(done.message.contains("frozen for 8.000s by fsfreeze[10] ← backup.sh[9]"), "{}", done.message);
}

#[test]
fn a_long_lived_freezer_owns_its_freeze_and_is_gone_when_killed() {
    let mut w = Watch::new(opts());
    // qemu-ga[10], a daemon whose parent is init.
    for mut e in freeze(0) {
        e.comm = "qemu-ga".into();
        e.parent = Some(Parent { pid: 1, comm: "systemd".into(), reaper: true, exiting: false }.into());
        w.push(&e);
    }
    assert!(w.tick(3 * S).0.is_empty(), "still running: it holds it");
    let f = exit(&mut w, 10, "qemu-ga", 3 * S + 10, SIGKILL);
    assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
    assert_eq!(
        f[0].message,
        "qemu-ga[10] was killed by SIGKILL 3.000s after freezing ext4 7:0 (/mnt); nothing holds the \
         freeze of ext4 7:0 (/mnt) now, frozen for 3.000s"
    );
    assert_eq!((f[0].pid, f[0].comm.as_str()), (10, "qemu-ga"));
    assert_eq!(w.tick(8 * S + 10).1.len(), 1, "thawed after the grace");
}

#[test]
fn a_prompt_freezer_whose_parent_is_a_reaper_leaves_its_freeze_unowned() {
    let mut w = Watch::new(opts());
    // `setsid fsfreeze -f`: its parent is init by the time it runs.
    for mut e in freeze(0) {
        e.parent = Some(Parent { pid: 1, comm: "init".into(), reaper: true, exiting: false }.into());
        w.push(&e);
    }
    let f = exit(&mut w, 10, "fsfreeze", S / 2, 0);
    assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
    assert!(
        f[0].message.starts_with(
            "fsfreeze[10], which froze ext4 7:0 (/mnt) and exited with status 0 0.500s later, was started \
             by init[1], an init or subreaper, which holds nothing"
        ),
        "{}",
        f[0].message
    );
    // A prompt freezer with a parent that is not a reaper: the parent holds it.
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    assert!(exit(&mut w, 10, "fsfreeze", S / 2, 0).is_empty());
    // The same, ending later than the settle time: it held it itself.
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    let f = exit(&mut w, 10, "fsfreeze", 2 * S, 256);
    assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
    assert!(
        f[0].message.starts_with("fsfreeze[10] exited with status 1 2.000s after freezing"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_thaw_before_the_exit_leaves_nothing_to_say_and_a_second_holder_keeps_it_held() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    for e in thaw(S, 0) {
        w.push(&e);
    }
    assert!(exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL).is_empty(), "thawed before it died");
    // Two holders: one gone is not enough.
    let mut w = Watch::new(opts());
    held_twice(&mut w);
    assert!(exit(&mut w, 10, "qemu-ga", 3 * S, SIGKILL).is_empty(), "agent[20] still holds it");
    assert_eq!(kinds(&exit(&mut w, 20, "agent", 4 * S, SIGKILL)), [FindingKind::FreezerGone]);
}

#[test]
fn audit_only_says_and_kernel_freezes_are_never_touched() {
    let mut w = Watch::new(WatchOptions { thaw_orphans: Some(ThawMode::Audit), ..opts() });
    frozen_by_script(&mut w, 0);
    exit(&mut w, 10, "fsfreeze", S / 100, 0);
    assert_eq!(kinds(&exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL)), [FindingKind::FreezerGone]);
    let (f, orders) = w.tick(7 * S);
    assert!(orders.is_empty());
    assert_eq!(kinds(&f), [FindingKind::WatchdogWouldThaw]);
    assert!(f[0].message.contains("audit mode"), "{}", f[0].message);

    let mut k = Watch::new(WatchOptions { thaw_after_ns: Some(S), ..opts() });
    for mut e in freeze(0) {
        e.holder = Some("kernel".into());
        k.push(&e);
    }
    assert!(exit(&mut k, 10, "fsfreeze", 3 * S, SIGKILL).is_empty(), "no freezer-gone for the kernel's");
    let (f, orders) = k.tick(20 * S);
    assert!(orders.is_empty(), "a kernel-held freeze is the kernel's to end");
    assert_eq!(kinds(&f), [FindingKind::FrozenTooLong]);
    assert!(f[0].message.contains("the kernel holds it"));
}

#[test]
fn thaw_after_acts_whoever_holds_it_and_a_thaw_ends_the_watch() {
    let mut w = Watch::new(WatchOptions { thaw_orphans: None, thaw_after_ns: Some(3 * S), ..opts() });
    frozen_by_script(&mut w, 0);
    assert!(w.tick(2 * S).1.is_empty());
    let (_, orders) = w.tick(3 * S + 10);
    assert_eq!(orders.len(), 1, "an owner still running does not protect it from --thaw-after");
    let [tb, te] = thaw(4 * S, 0);
    w.push(&tb);
    assert_eq!(w.push(&te).freeze_ended_after_ns, Some(4 * S), "from the freeze's return to the thaw's");
    assert_eq!(w.frozen().count(), 0);
    // A thaw of something never seen frozen changes nothing.
    assert_eq!(w.push(&ev(EventKind::ThawEnd, 5 * S, 4, 0, Some(0))).freeze_ended_after_ns, None);
}

#[test]
fn a_filesystem_frozen_before_watch_is_reported_alerted_on_and_never_thawed() {
    let mut w = Watch::new(WatchOptions { thaw_after_ns: Some(S), ..opts() });
    let mut probe = ev(EventKind::LevelProbe, 0, 4, 4, None);
    probe.holder = None;
    probe.hook = crate::event::Hook::IterTaskFile;
    let found = w.push(&probe).findings;
    assert_eq!(kinds(&found), [FindingKind::FrozenAtStart]);
    assert_eq!(found[0].hook, "iter:task_file", "the probe's hook says how it was told");
    assert!(
        found[0].message.contains("was already frozen (level 4) when watch started"),
        "{}",
        found[0].message
    );
    assert!(w.push(&probe).findings.is_empty(), "once");
    let (alerts, orders) = w.tick(11 * S);
    assert!(orders.is_empty(), "an unknown holder may be the kernel: the watchdog leaves it");
    assert_eq!(kinds(&alerts), [FindingKind::FrozenTooLong], "no freezer-gone: nobody is known to have gone");
    assert!(alerts[0].message.contains("an unknown holder"), "{}", alerts[0].message);
    let [_, te] = thaw(12 * S, 0);
    assert_eq!(w.push(&te).freeze_ended_after_ns, Some(12 * S + 10), "its thaw ends it");
    let unfrozen = ev(EventKind::LevelProbe, 13 * S, 0, 0, None);
    assert!(w.push(&unfrozen).findings.is_empty(), "an unfrozen filesystem is no news");
}

#[test]
fn a_freeze_that_does_not_return_is_stalled_with_its_level_and_waiters() {
    let mut w = Watch::new(opts());
    let [begin, end] = freeze(0);
    w.push(&begin);
    let mut writer = ev(EventKind::WriterBlocked, S, 1, 1, None);
    writer.pid = 77;
    writer.comm = "dd".into();
    w.push(&writer);
    assert!(w.tick(S).0.is_empty(), "not before --alert-stalled");
    let (found, _) = w.tick(2 * S);
    assert_eq!(kinds(&found), [FindingKind::FreezeStalled]);
    let m = &found[0].message;
    assert!(m.contains("by fsfreeze[10] has not returned after 2.000s"), "{m}");
    assert!(m.contains("at level 1 (write)") && m.contains("1 writers wait at its gate: dd[77]"), "{m}");
    assert!(w.tick(3 * S).0.is_empty(), "once");
    w.push(&end);
    let [b2, _] = freeze(10 * S);
    w.push(&b2);
    let [_, e2] = freeze(10 * S);
    w.push(&e2);
    assert!(
        w.tick(20 * S).0.iter().all(|f| f.kind != FindingKind::FreezeStalled),
        "a freeze that returned is not stalled"
    );
}

#[test]
fn a_freezer_waiting_at_its_own_gate_is_thaw_blocked() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    let mut other = ev(EventKind::WriterBlocked, S, 4, 4, None);
    other.pid = 77;
    other.gate_level = Some(1);
    assert!(w.push(&other).findings.is_empty(), "another writer waiting is the gate working");
    let mut script = other.clone();
    script.pid = 9;
    script.comm = "backup.sh".into();
    let found = w.push(&script).findings;
    assert_eq!(kinds(&found), [FindingKind::ThawBlocked]);
    assert_eq!(found[0].severity, crate::correlate::Severity::Error);
    assert!(
        found[0].message.contains("backup.sh[9] waits at the gate of ext4 7:0 (/mnt), which it froze"),
        "{}",
        found[0].message
    );
}
/// `dmsetup[10]`, run by lvm.sh[9], suspends the device under ext4 7:0 (/mnt) at `at`.
fn suspended_by_script(w: &mut Watch, at: u64) {
    for mut e in freeze(at) {
        e.comm = "dmsetup".into();
        e.via = Some(FreezeVia::BlockDevice);
        e.holder = Some("userspace+may_nest".into());
        e.parent = Some(Parent { pid: 9, comm: "lvm.sh".into(), reaper: false, exiting: false }.into());
        w.push(&e);
    }
}

#[test]
fn a_suspend_whose_owner_is_gone_is_an_error_naming_the_resume_and_is_never_thawed() {
    let opts = WatchOptions { thaw_after_ns: Some(2 * S), ..opts() };
    let names: DeviceNames = Box::new(|dev| (dev == "7:0").then(|| "vg-data".to_owned()));
    let mut w = Watch::new(opts.clone()).with_device_names(names);
    suspended_by_script(&mut w, 0);
    assert!(exit(&mut w, 10, "dmsetup", S / 100, 0).is_empty(), "lvm.sh still runs");
    let f = exit(&mut w, 9, "lvm.sh", 2 * S, SIGKILL);
    assert_eq!(kinds(&f), [FindingKind::SuspendOrphaned]);
    assert_eq!(f[0].severity, crate::correlate::Severity::Error);
    assert_eq!(
        f[0].message,
        "lvm.sh[9] was killed by SIGKILL; it had run dmsetup[10], which froze ext4 7:0 (/mnt) and exited \
         with status 0 0.010s later; ext4 7:0 (/mnt) stays frozen under its suspended block device, \
         frozen for 2.000s, and the watchdog never thaws a block-device freeze: only `dmsetup resume \
         vg-data` ends it"
    );
    let now: Vec<(bool, bool)> = w.frozen().map(|f| (f.gone, f.suspend_orphaned)).collect();
    assert_eq!(now, [(true, true)], "the gauges say its owner is gone, from a suspend");
    // Past the grace and past --thaw-after: still no order, in enforce mode.
    for t in [8 * S, 11 * S, 400 * S] {
        let (said, orders) = w.tick(t);
        assert!(orders.is_empty(), "at {t}: {orders:?}");
        assert!(said.iter().all(|f| f.kind == FindingKind::FrozenTooLong), "{said:?}");
    }
    let (said, _) = w.tick(800 * S);
    assert!(said[0].message.contains("which the watchdog never thaws"), "{}", said[0].message);
    // `dmsetup resume` ends it.
    for mut e in thaw(900 * S, 0) {
        e.via = Some(FreezeVia::BlockDevice);
        w.push(&e);
    }
    assert_eq!(w.frozen().count(), 0);

    // Unnamed (no sysfs name): the block device is named instead.
    let mut w = Watch::new(opts);
    suspended_by_script(&mut w, 0);
    exit(&mut w, 10, "dmsetup", S / 100, 0);
    let f = exit(&mut w, 9, "lvm.sh", 2 * S, SIGKILL);
    assert!(f[0].message.ends_with("only resuming its block device loop0 (7:0) ends it (`dmsetup resume`, or the thaw of the block device by whatever froze it)"), "{}", f[0].message);
}

#[test]
fn a_resume_ends_the_block_device_hold_and_leaves_a_fifreeze_hold() {
    let mut w = Watch::new(opts());
    frozen_by_script(&mut w, 0);
    suspended_by_script(&mut w, S);
    for mut e in thaw(2 * S, 4) {
        e.via = Some(FreezeVia::BlockDevice);
        w.push(&e);
    }
    // Only the FIFREEZE hold is left (fsfreeze[10] has run past the settle time: it owns
    // it): its exit is a plain freezer-gone, and the watchdog thaws after the grace.
    assert_eq!(kinds(&exit(&mut w, 10, "fsfreeze", 3 * S, SIGKILL)), [FindingKind::FreezerGone]);
    assert_eq!(w.tick(9 * S).1.len(), 1);
}

#[test]
fn a_failed_thaw_is_said_and_tried_again_less_and_less_often() {
    let mut w = Watch::new(WatchOptions { thaw_orphans: None, thaw_after_ns: Some(S), ..opts() });
    frozen_by_script(&mut w, 0);
    let (_, orders) = w.tick(S + 10);
    assert_eq!(orders[0].attempt, 1);
    let failed = w.thawed(&orders[0], 2 * S, Err("FITHAW on /mnt: Invalid argument".into()));
    assert_eq!(
        (failed.kind, failed.severity),
        (FindingKind::WatchdogFailed, crate::correlate::Severity::Error)
    );
    assert!(
        failed.message.ends_with("try 1): FITHAW on /mnt: Invalid argument; it tries again in 1.000s"),
        "{}",
        failed.message
    );
    assert!(w.tick(2 * S + S / 2).1.is_empty(), "not before its time");
    let (_, again) = w.tick(3 * S);
    assert_eq!((again.len(), again[0].attempt), (1, 2));
    let failed = w.thawed(&again[0], 3 * S, Err("EIO".into()));
    assert!(failed.message.ends_with("it tries again in 2.000s"), "{}", failed.message);
    assert!(w.tick(4 * S).1.is_empty());
    let (_, third) = w.tick(5 * S);
    assert_eq!(third[0].attempt, 3);
    assert_eq!(w.thawed(&third[0], 5 * S, Ok(())).kind, FindingKind::ThawedByWatchdog);
    assert!(w.tick(100 * S).1.is_empty(), "done");
}

#[test]
fn a_thaw_that_leaves_only_holds_whose_owners_exited_is_freezer_gone_at_the_thaw() {
    let mut w = Watch::new(opts());
    held_twice(&mut w);
    assert!(exit(&mut w, 10, "qemu-ga", 3 * S, SIGKILL).is_empty(), "agent[20] still holds it");
    // agent[20] thaws its own hold: what is left is qemu-ga's, whose owner is gone.
    let [tb, mut te] = thaw(4 * S, 4);
    te.pid = 20;
    w.push(&tb);
    let found = w.push(&te).findings;
    assert_eq!(kinds(&found), [FindingKind::FreezerGone]);
    assert!(found[0].message.starts_with("qemu-ga[10] was killed by SIGKILL"), "{}", found[0].message);
    assert_eq!(w.tick(9 * S + 20).1.len(), 1, "thawed after the grace from the exit");
}
