//! The correlator's behaviour, one finding kind at a time, through `analyze` (sort, push, finish);
//! `streaming` below pushes one event at a time, out of order, and ticks.
use super::*;
use crate::event::{BlockIo, EventKind, Hook};
use crate::test_events::*;

#[test]
fn a_clean_freeze_has_no_findings_and_is_summarised() {
    let events: Vec<Event> = freeze(100).into_iter().chain(thaw(1_000_110, 0)).collect();
    let a = analyze(&events, &Options::default(), None);
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    let s = &a.summaries["0xa"];
    assert_eq!((s.freezes, s.thaws, s.failed_freezes, s.slips, s.left_frozen), (1, 1, 0, 0, false));
    // Frozen from the freeze's return (110) to the thaw's return (1_000_120).
    assert_eq!(s.total_frozen_ns, 1_000_010);
    assert_eq!(s.max_frozen_ns, 1_000_010);
}

#[test]
fn a_block_write_while_frozen_is_a_slip_naming_the_writer() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(block_write(500, 4));
    events.extend(thaw(900, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip]);
    let f = &a.findings[0];
    assert_eq!((f.severity, f.pid, f.comm.as_str(), f.level), (Severity::Error, 77, "dd", Some(4)));
    assert_eq!(f.hook, "tracepoint:block:block_bio_queue");
    assert!(f.message.contains("dd[77] wrote 4096 bytes at sector 8 of block device 7:0"), "{}", f.message);
    assert_eq!(a.summaries["0xa"].slips, 1);
}

#[test]
fn the_thawing_tasks_own_write_is_exempt_but_another_tasks_is_a_slip() {
    let mut events: Vec<Event> = freeze(100).into();
    let [tb, te] = thaw(900, 0);
    let mut own = block_write(905, 4);
    own.tid = tb.tid;
    own.comm = "fsfreeze".into();
    let other = block_write(906, 4); // dd, another tid
    events.extend([tb, own, other, te]);
    let mut other_tid = events.clone();
    other_tid.iter_mut().filter(|e| e.comm == "dd").for_each(|e| e.tid = 99);
    let a = analyze(&other_tid, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Exempt, FindingKind::Slip]);
    assert!(a.findings[0].message.contains("during its own thaw"), "{}", a.findings[0].message);
    assert_eq!(a.summaries["0xa"].slips, 1);
}

/// A bio on 7:5, under the filesystem on 7:0 (a dm-linear target's device), mapped there.
fn lower_write(ts: u64, comm: &str, parent_pid: u32) -> Event {
    let mut e = block_write(ts, 4);
    e.comm = comm.into();
    e.tid = 500;
    e.parent = Some(
        crate::attribution::Parent { pid: parent_pid, comm: "x".into(), reaper: false, exiting: false }
            .into(),
    );
    let mut io = BlockIo::new("7:5", 2048 + 800, 4096, crate::event::IoOp::Discard);
    io.mapping = Some(Box::new(crate::storage::Mapping {
        layer: crate::storage::Layer::DmLinear,
        dev: "7:5".into(),
        name: Some("loop5".into()),
        file: None,
        via: None,
        target: Some("linear".into()),
        first: 2048,
        len: Some(10_000),
        fs_sector: Some(0),
        through: vec!["253:0".into()],
        under_whole: false,
    }));
    e.block = Some(Box::new(io));
    e
}

#[test]
fn a_kernel_worker_passing_the_thaw_write_down_is_exempt_but_a_user_writer_below_is_a_slip() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(lower_write(500, "dd", 4242));
    let [tb, te] = thaw(900, 0);
    events.extend([tb, lower_write(905, "kworker/u8:1", 2), lower_write(906, "dd", 4242), te]);
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip, FindingKind::Exempt, FindingKind::Slip]);
    assert_eq!(
        a.findings[0].message,
        "dd[77] discarded 4096 bytes at sector 2848 of block device 7:5 (loop5), which holds ext4 7:0 (/mnt) \
         from its sector 800 on, while it was frozen: a discard below the filesystem \
         (dm-linear through 253:0) that bypassed the freeze gate"
    );
    assert!(
        a.findings[1].message.contains("(on 7:5 below it): written during its own thaw"),
        "{}",
        a.findings[1].message
    );
    assert_eq!(
        a.findings[0].block.as_ref().and_then(|b| b.mapping.as_ref()).map(|m| m.layer),
        Some(crate::storage::Layer::DmLinear)
    );
}

/// md's resync thread writing a member of the array the filesystem is on (watched whole): the
/// layer's own I/O, a warning of its own kind. `dd` writing the same member: a slip. A kernel
/// thread on a sector-for-sector layer stays a slip: there it changes the filesystem's bytes,
/// unless a layer above is watched whole (a snapshot's held origin write on origin-real's disk).
#[test]
fn a_kernel_thread_on_a_whole_device_layer_is_layer_io_and_a_user_task_there_is_a_slip() {
    let member = |ts: u64, comm: &str, parent_pid: u32| {
        let mut e = lower_write(ts, comm, parent_pid);
        let io = e.block.as_mut().expect("a bio");
        io.op = crate::event::IoOp::Write.into();
        let m = io.mapping.as_mut().expect("mapped");
        (m.layer, m.target, m.first, m.len, m.fs_sector) =
            (crate::storage::Layer::MemberWhole, None, 0, None, None);
        m.through = vec!["9:0".into()];
        e
    };
    let under_whole = |ts: u64, comm: &str, parent_pid: u32| {
        let mut e = lower_write(ts, comm, parent_pid);
        let m = e.block.as_mut().and_then(|io| io.mapping.as_mut()).expect("mapped");
        (m.fs_sector, m.under_whole) = (None, true);
        e
    };
    let mut events: Vec<Event> = freeze(100).into();
    events.extend([
        member(500, "md0_resync", 2),
        member(600, "dd", 4242),
        lower_write(700, "kworker/u8:1", 2),
        under_whole(800, "kworker/0:9", 2),
        under_whole(810, "dd", 4242),
    ]);
    events.extend(thaw(900, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(
        kinds(&a),
        [FindingKind::LayerIo, FindingKind::Slip, FindingKind::Slip, FindingKind::LayerIo, FindingKind::Slip]
    );
    assert_eq!(a.findings[0].severity, crate::correlate::Severity::Warning);
    assert_eq!(
        a.findings[0].message,
        "md0_resync[77], a kernel thread, wrote 4096 bytes at sector 2848 of block device 7:5 (loop5), \
         which holds part of ext4 7:0 (/mnt), while it was frozen: the layer's own I/O \
         (member-whole-device through 9:0; md resync or recovery, a snapshot's copy-out, kcopyd), \
         which leaves what the filesystem reads as it was. A user task's write there would be a slip"
    );
    assert!(a.findings[1].message.starts_with("dd[77] wrote 4096 bytes"), "{}", a.findings[1].message);
    assert!(a.findings[2].message.starts_with("kworker/u8:1[77] discarded"), "{}", a.findings[2].message);
    assert!(
        a.findings[3].message.contains("(dm-linear through 253:0, under a device watched whole; "),
        "{}",
        a.findings[3].message
    );
    assert!(a.findings[4].message.starts_with("dd[77] discarded"), "{}", a.findings[4].message);
    assert_eq!(a.summaries["0xa"].slips, 3);
}

#[test]
fn transaction_starts_are_slips_unless_exempt() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(txn(150, 4, Hook::TracepointXfsTransAlloc, 0x04, "xfs_create+0x40"));
    events.push(txn(160, 4, Hook::TracepointXfsTransAlloc, 0x40, "xfs_log_quiesce+0x1"));
    events.push(txn(170, 4, Hook::TracepointXfsTransAlloc, 0, "xfs_trans_alloc_empty+0x20"));
    events.push(txn(180, 4, Hook::TracepointBtrfsCommit, 0, ""));
    events.extend(thaw(900, 0));
    events.insert(1, txn(105, 2, Hook::TracepointExt4JournalStart, 1, "ext4_dirty_inode+0x3"));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(
        kinds(&a),
        [FindingKind::Exempt, FindingKind::Slip, FindingKind::Exempt, FindingKind::Exempt, FindingKind::Slip]
    );
    assert!(
        a.findings[0].message.contains("started at level 2 while freeze_super"),
        "{}",
        a.findings[0].message
    );
    let slip = &a.findings[1];
    assert!(
        slip.message.starts_with("xfs transaction started by kworker/0:1[10] from xfs_create+0x40"),
        "{}",
        slip.message
    );
    let stack = ["xfs_trans_alloc+0x10".to_owned(), "xfs_create+0x99".to_owned()];
    assert_eq!(slip.stack.as_deref(), Some(&stack[..]));
    assert!(a.findings[2].message.contains("NO_WRITECOUNT"));
    assert!(a.findings[3].message.contains("empty transaction"));
    assert!(a.findings[4].message.starts_with("btrfs transaction commit"));
    assert_eq!(a.summaries["0xa"].slips, 2);
}

/// A raw tracepoint sees what the tracepoint of the same name sees: the same findings, word for
/// word, whichever of the two hooks the recorder attached.
#[test]
fn raw_tracepoint_transaction_hooks_read_like_their_tracepoints() {
    let pairs = [
        (Hook::TracepointXfsTransAlloc, Hook::RawTpXfsTransAlloc),
        (Hook::TracepointBtrfsCommit, Hook::RawTpBtrfsCommit),
        (Hook::TracepointBtrfsTxnReserve, Hook::RawTpBtrfsTxnReserve),
        (Hook::TracepointExt4JournalStart, Hook::RawTpExt4JournalStart),
    ];
    let with = |hook: Hook| -> Vec<(FindingKind, String)> {
        let mut events: Vec<Event> = freeze(100).into();
        for (i, (flags, caller)) in
            [(0x04, "f+0x1"), (0x40, "g+0x1"), (0, "xfs_trans_alloc_empty+0x2")].iter().enumerate()
        {
            events.push(txn(150 + i as u64, 4, hook, *flags, caller));
        }
        events.extend(thaw(900, 0));
        analyze(&events, &Options::default(), None)
            .findings
            .iter()
            .map(|f| (f.kind, f.message.clone()))
            .collect()
    };
    for (tracepoint, raw) in pairs {
        let (a, b) = (with(tracepoint), with(raw));
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(a, b, "{tracepoint:?} vs {raw:?}");
    }
}

#[test]
fn a_mount_of_a_frozen_filesystem_is_flagged_by_device_or_superblock() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(mount_end(200, "mount", "0x0", Some("7:0"), 0)); // mount(2) of its device
    events.push(mount_end(210, "move_mount", "0xa", None, 0)); // fsmount + move_mount
    events.push(mount_end(220, "mount", "0x0", Some("8:1"), 0)); // another filesystem
    events.push(mount_end(230, "mount", "0x0", Some("7:0"), -1)); // failed: nothing landed
    let mut gone = mount_end(240, "mount", "0x0", None, 0); // unmounted before it was looked up
    gone.mount.as_mut().expect("call").source_dev = Some("7:0".into());
    events.push(gone);
    events.extend(thaw(900, 0));
    events.push(mount_end(1_000, "mount", "0x0", Some("7:0"), 0)); // after the thaw: fine
    events.push(mount_end(250, "fsconfig", "0x0", Some("7:0"), 0)); // prepares, attaches nothing
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::MountWhileFrozen; 3]);
    assert!(
        a.findings[0].message.starts_with("mount of /dev/loop0 on /mnt2 by mount[10] landed while ext4 7:0")
    );
    assert!(a.findings[1].message.starts_with("move_mount to /mnt2"));
    assert_eq!(a.summaries["0xa"].mounts_while_frozen, 3);
    assert!(!a.summaries.contains_key("0x0"), "mount(2) events create no phantom superblock");
}

#[test]
fn enforced_denials_are_one_finding_per_mount_naming_it() {
    let a = analyze(&gated_mounts(crate::deny::DenyMode::Enforce), &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::MountDenied; 3]);
    let m: Vec<&str> = a.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(m[0].starts_with("mount of /dev/loop0 on /m1 by fsfreeze[10] was denied (EPERM)"), "{}", m[0]);
    assert!(m[1].starts_with("bind mount of /mnt/sub on /m2"), "{}", m[1]);
    assert!(m[2].starts_with("fsconfig create of /dev/loop0"), "{}", m[2]);
    assert!(m.iter().all(|m| m.ends_with("ext4 7:0 (/mnt) is frozen")), "{m:?}");
    assert_eq!(a.findings[0].severity, Severity::Info);
    let s = &a.summaries["0xa"];
    assert_eq!((s.denied_mounts, s.would_deny_mounts, s.freezes), (3, 0, 1));
}

#[test]
fn audit_denials_judge_the_new_mount_api_once() {
    let a = analyze(&gated_mounts(crate::deny::DenyMode::Audit), &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::MountDenied; 3], "fsconfig create and its move_mount are one mount");
    assert!(a.findings.iter().all(|f| f.message.contains("would have been denied (audit mode")));
    let s = &a.summaries["0xa"];
    assert_eq!((s.denied_mounts, s.would_deny_mounts), (0, 3));
}

#[test]
fn a_denial_without_its_mount_call_still_names_the_hook() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(denied(300, 9, crate::deny::DenyMode::Enforce, "move_mount"));
    let a = analyze(&events, &Options::default(), None);
    assert!(a.findings.iter().any(|f| f.message.starts_with("a mount (move_mount) by")), "{:?}", a.findings);
}

/// A page or the inode of a file turning dirty while frozen is a slip; what the thawing task
/// dirties during its own thaw is the thaw's.
#[test]
fn a_file_dirtied_while_frozen_is_a_slip_and_during_its_own_thaw_exempt() {
    let dirtied = |ts: u64, tid: u32, offset: Option<u64>| {
        let mut e = ev(EventKind::Dirtied, ts, 4, 4, None);
        (e.hook, e.comm, e.tid) = (Hook::TpBtfWriteback, "mmapper".into(), tid);
        e.dirtied = Some(Box::new(crate::event::Dirtied {
            ino: 12,
            offset,
            bytes: offset.map(|_| 4096),
            inode_flags: offset.is_none().then_some(1),
        }));
        e
    };
    let mut events: Vec<Event> = freeze(100).into();
    events.push(dirtied(500, 10, Some(8192)));
    events.push(dirtied(600, 10, None));
    let [tb, te] = thaw(900, 0);
    events.push(tb);
    events.push(dirtied(905, 10, Some(0)));
    events.push(te);
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip, FindingKind::Slip, FindingKind::Exempt]);
    assert_eq!(
        a.findings[0].message,
        "mmapper[10] dirtied the page at byte 8192 (4096 bytes) of inode 12 on ext4 7:0 (/mnt) while it was \
         frozen: the file was modified past the gate"
    );
    assert!(a.findings[1].message.contains("dirtied the metadata of inode 12"), "{}", a.findings[1].message);
    assert!(a.findings[2].message.contains("during its own thaw"), "{}", a.findings[2].message);
    assert_eq!(a.summaries["0xa"].slips, 2);
}

/// A loop device's worker (a kernel thread) writing the backing file carries out a bio queued to
/// the loop device, judged there: exempt. A user task writing it is a slip.
#[test]
fn a_loop_worker_writing_the_backing_file_is_exempt_and_a_task_is_not() {
    let backing = |ts: u64, comm: &str, parent_pid: u32| {
        let mut e = block_write(ts, 4);
        (e.comm, e.hook) = (comm.into(), Hook::TpBtfWriteback);
        e.parent = Some(
            crate::attribution::Parent { pid: parent_pid, comm: "x".into(), reaper: false, exiting: false }
                .into(),
        );
        let mut io = BlockIo::new("7:0", 0, 4096, crate::event::IoOp::FileWrite);
        io.file_offset = Some(1024);
        e.block = Some(Box::new(io));
        e
    };
    let mut events: Vec<Event> = freeze(100).into();
    events.push(backing(500, "kworker/u8:4", 2));
    events.push(backing(600, "dd", 77));
    events.extend(thaw(900, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Exempt, FindingKind::Slip]);
    assert!(a.findings[0].message.contains("the loop device's worker"), "{}", a.findings[0].message);
    assert_eq!(a.summaries["0xa"].slips, 1);
}

#[test]
fn a_write_that_completes_while_frozen_is_a_slip() {
    let mut events: Vec<Event> = freeze(100).into();
    let mut w = ev(EventKind::WriteDone, 500, 4, 4, Some(4096));
    w.hook = Hook::TracepointSysWrite;
    w.comm = "writer".into();
    events.push(w);
    events.extend(thaw(900, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip]);
    assert!(
        a.findings[0].message.starts_with("writer[10] completed a 4096-byte write"),
        "{}",
        a.findings[0].message
    );
    assert_eq!(a.findings[0].hook, "tracepoint:syscalls:write");
}

#[test]
fn lost_events_do_not_derail_the_state_machine() {
    // The freeze's end was lost: the kernel's level on the next events still says frozen.
    let events = vec![
        ev(EventKind::FreezeBegin, 100, 0, 0, None),
        block_write(500, 4),
        // The thaw's begin was lost too; its end (level 0) closes the window.
        ev(EventKind::ThawEnd, 900, 4, 0, Some(0)),
    ];
    let a = analyze(&events, &Options::default(), Some(1_000));
    assert_eq!(kinds(&a), [FindingKind::Slip], "the slip is still seen, nothing is left frozen");
    let s = &a.summaries["0xa"];
    assert_eq!((s.state, s.freezes, s.thaws), (SbState::Unfrozen, 0, 1));
    // Only ends, no begins at all: the freeze is counted and the window closed.
    let ends = vec![ev(EventKind::FreezeEnd, 100, 0, 4, Some(0)), ev(EventKind::ThawEnd, 300, 4, 0, Some(0))];
    let a = analyze(&ends, &Options::default(), Some(1_000));
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    assert_eq!((a.summaries["0xa"].freezes, a.summaries["0xa"].total_frozen_ns), (1, 200));
    // A writer whose wait began before the recording (its start was never seen).
    let mut u = ev(EventKind::WriterUnblocked, 400, 0, 0, Some(0));
    u.begin_ts_ns = Some(50);
    let a = analyze(&[u], &Options::default(), None);
    assert_eq!(a.findings[0].duration_ns, Some(350), "the kernel's begin time is used");
}

#[test]
fn a_write_during_freezing_is_not_a_slip() {
    let events = vec![ev(EventKind::FreezeBegin, 100, 0, 0, None), block_write(105, 2)];
    let a = analyze(&events, &Options::default(), Some(200));
    assert_eq!(a.count(FindingKind::Slip), 0);
}

#[test]
fn out_of_order_events_are_sorted_before_the_state_machine_runs() {
    let mut events: Vec<Event> = thaw(900, 0).into();
    events.push(block_write(500, 4));
    events.extend(freeze(100));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip]);
    assert_eq!(a.summaries["0xa"].freezes, 1);
    assert!(!a.summaries["0xa"].left_frozen);
}

#[test]
fn a_failed_freeze_of_a_frozen_fs_keeps_it_frozen() {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(ev(EventKind::FreezeBegin, 200, 4, 4, None));
    events.push(ev(EventKind::FreezeEnd, 210, 4, 4, Some(-16)));
    events.push(block_write(300, 4));
    events.extend(thaw(400, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::FreezeFailed, FindingKind::Slip]);
    assert!(a.findings[0].message.contains("EBUSY (it was already frozen)"), "{}", a.findings[0].message);
    assert_eq!(a.summaries["0xa"].failed_freezes, 1);
}

#[test]
fn nested_holders_keep_the_gate_closed_until_the_kernel_says_unfrozen() {
    // Two holders (kernel + userspace): the first thaw leaves level 4.
    let mut events: Vec<Event> = freeze(100).into();
    events.extend(freeze(200));
    events.extend(thaw(300, 4));
    events.push(block_write(350, 4));
    events.extend(thaw(400, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::Slip]);
    let s = &a.summaries["0xa"];
    assert_eq!((s.freezes, s.thaws), (2, 2));
    assert_eq!(s.total_frozen_ns, 410 - 110, "one window, from the first freeze to the last thaw");
}

#[test]
fn a_thaw_of_an_unfrozen_fs_is_flagged() {
    let events = vec![ev(EventKind::ThawBegin, 10, 0, 0, None), ev(EventKind::ThawEnd, 20, 0, 0, Some(-22))];
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(kinds(&a), [FindingKind::ThawWithoutFreeze]);
    assert!(a.findings[0].message.contains("EINVAL"));
}

#[test]
fn a_freeze_still_held_at_the_end_is_left_frozen() {
    let a = analyze(&freeze(100), &Options::default(), Some(5_000));
    assert_eq!(kinds(&a), [FindingKind::LeftFrozen]);
    let s = &a.summaries["0xa"];
    assert_eq!((s.state, s.level, s.frozen_since_ns), (SbState::Frozen, 4, Some(110)));
    let begun = analyze(&freeze(100)[..1], &Options::default(), Some(5_000));
    assert_eq!(begun.summaries["0xa"].state, SbState::Freezing);
    assert_eq!(a.findings[0].duration_ns, Some(5_000 - 110));
    assert!(a.summaries["0xa"].left_frozen);
}

#[test]
fn a_long_freeze_is_flagged_over_the_threshold_only() {
    let events: Vec<Event> = freeze(0).into_iter().chain(thaw(2_000, 0)).collect();
    let short = analyze(&events, &Options { long_freeze_ns: 10_000, ..Options::default() }, None);
    assert!(short.findings.is_empty());
    let long = analyze(&events, &Options { long_freeze_ns: 1_000, ..Options::default() }, None);
    assert_eq!(kinds(&long), [FindingKind::LongFreeze]);
    assert_eq!(long.findings[0].duration_ns, Some(2_000));
}

#[test]
fn blocked_writers_are_reported_with_their_wait() {
    let mut events: Vec<Event> = freeze(100).into();
    let mut b = ev(EventKind::WriterBlocked, 200, 4, 4, None);
    b.comm = "sh".into();
    b.tid = 55;
    b.gate_level = Some(1);
    let mut u = b.clone();
    u.kind = EventKind::WriterUnblocked;
    u.ts_ns = 2_200;
    u.ret = Some(0);
    // A second writer that never unblocks before the end.
    let mut still = b.clone();
    still.tid = 56;
    still.ts_ns = 300;
    events.extend([b, still, u]);
    let a = analyze(&events, &Options::default(), Some(10_000));
    // Sorted by start: frozen since 110, waits from 200 and 300.
    assert_eq!(kinds(&a), [FindingKind::LeftFrozen, FindingKind::BlockedWriter, FindingKind::BlockedWriter]);
    let done =
        a.findings.iter().find(|f| f.kind == FindingKind::BlockedWriter && f.ts_ns == 200).expect("w1");
    assert_eq!(done.duration_ns, Some(2_000));
    assert!(done.message.contains("sh[10] waited 0.0 ms at the write gate"), "{}", done.message);
    let open = a.findings.iter().find(|f| f.ts_ns == 300).expect("w2");
    assert_eq!(open.duration_ns, Some(9_700));
    assert!(open.message.contains("still waiting"));
    assert_eq!(a.summaries["0xa"].blocked_writers, 2);
    assert_eq!(a.count(FindingKind::Slip), 0);
}

#[test]
fn superblocks_are_tracked_independently() {
    let mut events: Vec<Event> = freeze(100).into();
    let mut other = block_write(500, 4);
    other.sb = Some(sb("0xb"));
    other.level_after = Some(0);
    events.push(other);
    events.extend(thaw(900, 0));
    let a = analyze(&events, &Options::default(), None);
    assert_eq!(a.count(FindingKind::Slip), 0, "a write to an unfrozen superblock is no slip");
    assert_eq!(a.summaries.len(), 2);
}
