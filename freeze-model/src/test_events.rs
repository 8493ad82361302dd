//! Event builders the model's unit tests share (correlate, watch, holds, chrome_trace): a
//! superblock, its freezes and thaws, writes, transactions, mount calls and denials.
use crate::{
    correlate::{Analysis, FindingKind},
    event::{BlockIo, Event, EventKind, Hook, LsmHook, MountApi, SharedSuperblock, Superblock},
};

pub(crate) fn sb(id: &str) -> SharedSuperblock {
    SharedSuperblock::new(Superblock {
        id: id.into(),
        dev: "7:0".into(),
        fstype: "ext4".into(),
        s_id: "loop0".into(),
        uuid: "u".into(),
        mountpoint: Some("/mnt".into()),
    })
}

pub(crate) fn ev(kind: EventKind, ts: u64, before: u32, after: u32, ret: Option<i64>) -> Event {
    Event {
        sb: Some(sb("0xa")),
        level_before: Some(before),
        level_after: Some(after),
        holder: Some("userspace".into()),
        ret,
        error: ret.filter(|r| *r < 0).map(|r| crate::decode::errno_name(-r)),
        ..Event::new(kind, Hook::TracepointIoctl, ts, 10, 10, "fsfreeze".into())
    }
}

pub(crate) fn freeze(ts: u64) -> [Event; 2] {
    [ev(EventKind::FreezeBegin, ts, 0, 0, None), ev(EventKind::FreezeEnd, ts + 10, 0, 4, Some(0))]
}

pub(crate) fn thaw(ts: u64, after: u32) -> [Event; 2] {
    [ev(EventKind::ThawBegin, ts, 4, 4, None), ev(EventKind::ThawEnd, ts + 10, 4, after, Some(0))]
}

pub(crate) fn block_write(ts: u64, level: u32) -> Event {
    let mut e = ev(EventKind::BlockWrite, ts, level, level, None);
    e.hook = Hook::TracepointBlockBioQueue;
    e.comm = "dd".into();
    e.pid = 77;
    e.block = Some(Box::new(BlockIo::new("7:0", 8, 4096, crate::event::IoOp::Write)));
    e
}

pub(crate) fn kinds(a: &Analysis) -> Vec<FindingKind> {
    a.findings.iter().map(|f| f.kind).collect()
}

pub(crate) fn txn(ts: u64, level: u32, hook: Hook, flags: u32, caller: &str) -> Event {
    let mut e = ev(EventKind::TxnStart, ts, level, level, None);
    e.hook = hook;
    e.comm = "kworker/0:1".into();
    e.tid = 300;
    e.txn = Some(crate::event::Txn { flags, caller: Some(caller.into()) });
    e.stack = Some(["xfs_trans_alloc+0x10".into(), "xfs_create+0x99".into()].into());
    e
}

pub(crate) fn mount_end(ts: u64, api: &str, sb_id: &str, mounted_dev: Option<&str>, ret: i64) -> Event {
    let mut e = ev(EventKind::MountEnd, ts, 0, 0, Some(ret));
    e.hook = Hook::TracepointSysMount;
    e.comm = "mount".into();
    // mount(2) names no superblock ("0x0" here); move_mount of an fsmount fd does.
    e.sb = (sb_id != "0x0").then(|| sb(sb_id));
    e.mount = Some(Box::new(crate::event::MountCall {
        api: MountApi::from_name(api).expect("a mount API"),
        source: "/dev/loop0".into(),
        target: "/mnt2".into(),
        fstype: "ext4".into(),
        flags: 0,
        mounted_dev: mounted_dev.map(Into::into),
        source_dev: None,
        mount_id: None,
    }));
    e
}

pub(crate) fn mount_begin(ts: u64, tid: u32, api: &str, source: &str, target: &str, flags: u64) -> Event {
    let mut e = ev(EventKind::MountBegin, ts, 0, 0, None);
    e.hook = Hook::TracepointSysMount;
    e.sb = None;
    e.tid = tid;
    e.mount = Some(Box::new(crate::event::MountCall {
        api: MountApi::from_name(api).expect("a mount API"),
        source: source.into(),
        target: target.into(),
        fstype: String::new(),
        flags,
        mounted_dev: None,
        source_dev: None,
        mount_id: None,
    }));
    e
}

pub(crate) fn denied(ts: u64, tid: u32, mode: crate::deny::DenyMode, lsm_hook: &str) -> Event {
    let ret = if mode == crate::deny::DenyMode::Enforce { -1 } else { 0 };
    let mut e = ev(EventKind::MountDenied, ts, 4, 4, Some(ret));
    e.hook = Hook::LsmMount;
    e.tid = tid;
    e.denial =
        Some(crate::event::Denial { mode, lsm_hook: LsmHook::from_name(lsm_hook).expect("an LSM hook") });
    e
}

/// mount(2) of the device, a bind mount, and the new mount API (fsconfig source + create,
/// then, when not refused at create, move_mount), each on its own thread.
pub(crate) fn gated_mounts(mode: crate::deny::DenyMode) -> Vec<Event> {
    let mut events: Vec<Event> = freeze(100).into();
    events.push(mount_begin(200, 1, "mount", "/dev/loop0", "/m1", 0));
    events.push(denied(201, 1, mode, "sb_kern_mount"));
    events.push(mount_begin(210, 2, "mount", "/mnt/sub", "/m2", 4096));
    events.push(denied(211, 2, mode, "sb_mount"));
    events.push(mount_begin(220, 3, "fsconfig", "source", "/dev/loop0", 1));
    events.push(mount_begin(221, 3, "fsconfig", "", "", 6));
    events.push(denied(222, 3, mode, "sb_kern_mount"));
    if mode == crate::deny::DenyMode::Audit {
        events.push(mount_begin(230, 3, "move_mount", "", "/m3", 4));
        events.push(denied(231, 3, mode, "move_mount"));
    }
    events.extend(thaw(900, 0));
    events
}
