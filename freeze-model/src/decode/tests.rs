//! Decoding ring-buffer records: each field, the hook table, mount strings, errors.
use super::*;

/// The hook ids (freeze-common's `hook::`, with `COUNT` kept by hand), the model's `Hook` and
/// this decoding are one table: every id from 1 to `COUNT - 1` decodes, each to its own
/// variant, every variant has an id, and nothing else decodes.
#[test]
fn hook_ids_and_the_hook_enum_are_one_table() {
    let decoded: Vec<Hook> = (1..hook::COUNT).filter_map(Hook::from_raw).collect();
    assert_eq!(decoded.len() as u32, hook::COUNT - 1, "every id below COUNT decodes");
    let mut distinct = decoded.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), decoded.len(), "each id to its own variant");
    assert_eq!(distinct.len(), Hook::ALL.len(), "every variant has an id");
    assert_eq!(Hook::from_raw(0), None);
    assert_eq!(Hook::from_raw(hook::COUNT), None, "COUNT is one past the last id");
}

fn raw_freeze_end() -> RawEvent {
    let mut r = RawEvent::zeroed();
    r.kind = kind::FREEZE_END;
    r.hook = hook::TP_IOCTL;
    r.ts_ns = 2_000;
    r.begin_ts_ns = 1_000;
    r.pid = 42;
    r.tid = 43;
    r.comm[..8].copy_from_slice(b"fsfreeze");
    r.level_before = 0;
    r.level_after = 4;
    r.holder = holder::USERSPACE;
    r.ret = -16;
    r.sb.sb = 0xffff_8880_0000_1000;
    r.sb.dev = (7 << 20) | 3;
    r.cgroup_id = 4242;
    r.ppid = 40;
    r.pcomm[..9].copy_from_slice(b"backup.sh");
    r.sb.fstype[..4].copy_from_slice(b"ext4");
    r.sb.s_id[..5].copy_from_slice(b"loop3");
    r.sb.uuid = [0x11; 16];
    r
}

#[test]
fn decodes_every_field_from_bytes() {
    let raw = raw_freeze_end();
    // SAFETY: RawEvent is plain old data; viewing it as bytes is sound.
    let bytes =
        unsafe { std::slice::from_raw_parts((&raw as *const RawEvent).cast::<u8>(), size_of::<RawEvent>()) };
    let ev = Event::decode(bytes, Some("/mnt/a")).expect("decodes");
    assert_eq!(ev.kind, EventKind::FreezeEnd);
    assert_eq!(ev.hook, Hook::TracepointIoctl);
    assert_eq!((ev.ts_ns, ev.begin_ts_ns), (2_000, Some(1_000)));
    assert_eq!((ev.pid, ev.tid, ev.comm.as_str()), (42, 43, "fsfreeze"));
    assert_eq!((ev.level_before, ev.level_after), (Some(0), Some(4)));
    assert_eq!(ev.holder.as_deref(), Some("userspace"));
    assert_eq!((ev.ret, ev.error.as_deref()), (Some(-16), Some("EBUSY")));
    let sb = ev.sb.as_ref().expect("a superblock");
    assert_eq!(sb.id, "0xffff888000001000");
    assert_eq!((sb.dev.as_str(), sb.fstype.as_str(), sb.s_id.as_str()), ("7:3", "ext4", "loop3"));
    assert_eq!(sb.uuid, "11111111-1111-1111-1111-111111111111");
    assert_eq!(sb.mountpoint.as_deref(), Some("/mnt/a"));
    assert_eq!(
        ev.cgroup.as_ref().map(|c| (c.id, c.path.is_none())),
        Some((4242, true)),
        "the recorder adds the path"
    );
    assert_eq!(ev.parent.as_ref().map(|p| (p.pid, p.comm.as_str())), Some((40, "backup.sh")));
}

#[test]
fn json_round_trip_is_lossless() {
    let ev = Event::from_raw(&raw_freeze_end(), Some("/m")).expect("decodes");
    let json = serde_json::to_string(&ev).expect("serialises");
    assert!(json.contains(r#""kind":"freeze_end""#), "{json}");
    assert!(json.contains(r#""hook":"tracepoint:syscalls:ioctl""#), "{json}");
    let back: Event = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, ev);
}

#[test]
fn begin_events_carry_no_return_and_unknown_levels_are_null() {
    let mut raw = raw_freeze_end();
    raw.kind = kind::FREEZE_BEGIN;
    raw.begin_ts_ns = 0;
    raw.level_after = level::UNKNOWN;
    raw.holder = holder::KERNEL | holder::MAY_NEST;
    let ev = Event::from_raw(&raw, None).expect("decodes");
    assert_eq!((ev.ret, ev.error, ev.begin_ts_ns, ev.level_after), (None, None, None, None));
    assert_eq!(ev.holder.as_deref(), Some("kernel+may_nest"));
}

#[test]
fn block_writes_and_gate_waits_carry_their_details() {
    let mut raw = raw_freeze_end();
    raw.kind = kind::BLOCK_WRITE;
    raw.hook = hook::TP_BLOCK_BIO_QUEUE;
    raw.arg = 2048;
    raw.flags = 4096;
    raw.bdev = (7 << 20) | 1;
    raw.io_op = freeze_common::io_op::DISCARD;
    let ev = Event::from_raw(&raw, None).expect("decodes");
    assert_eq!(ev.block.as_deref(), Some(&BlockIo::new("7:1", 2048, 4096, IoOp::Discard)));
    // A backing-file op: the position is a byte offset of the file, not a sector.
    raw.io_op = freeze_common::io_op::FILE_PUNCH_HOLE;
    raw.arg = 1 << 20;
    let block = Event::from_raw(&raw, None).expect("decodes").block.expect("block");
    assert_eq!((block.op, block.sector, block.file_offset), (Some(IoOp::PunchHole), 0, Some(1 << 20)));
    // A recorder from before ops were told apart wrote 0: read as a write.
    raw.io_op = 0;
    let block = Event::from_raw(&raw, None).expect("decodes").block.expect("block");
    assert_eq!((block.op, block.op()), (None, IoOp::Write));
    assert_eq!((ev.ret, ev.gate_level), (None, None));

    raw.kind = kind::WRITER_UNBLOCKED;
    raw.hook = hook::TP_LOCK_CONTENTION;
    raw.flags = 1;
    raw.ret = 0;
    let ev = Event::from_raw(&raw, None).expect("decodes");
    assert_eq!((ev.gate_level, ev.ret, ev.block), (Some(1), Some(0), None));
}

#[test]
fn transaction_starts_carry_flags_and_caller() {
    let mut raw = raw_freeze_end();
    raw.kind = kind::TXN_START;
    raw.hook = hook::TP_XFS_TRANS_ALLOC;
    raw.flags = freeze_common::XFS_TRANS_NO_WRITECOUNT;
    raw.arg = 0xffff_ffff_8120_0010;
    let ev = Event::from_raw(&raw, None).expect("decodes");
    assert_eq!(ev.hook, Hook::TracepointXfsTransAlloc);
    assert_eq!(ev.txn, Some(Txn { flags: 0x40, caller: Some("0xffffffff81200010".into()) }));
    assert_eq!((ev.ret, ev.stack), (None, None));
}

#[test]
fn mount_records_carry_their_strings() {
    let mut m = freeze_common::RawMount {
        event: raw_freeze_end(),
        source: [0; 64],
        target: [0; 128],
        fstype: [0; 16],
    };
    m.event.kind = kind::MOUNT_BEGIN;
    m.event.hook = hook::TP_SYS_MOUNT;
    m.event.flags = freeze_common::mount_api::MOUNT;
    m.event.arg = freeze_common::mount_flags::MS_BIND;
    m.source[..10].copy_from_slice(b"/dev/loop0");
    m.target[..4].copy_from_slice(b"/mnt");
    m.fstype[..4].copy_from_slice(b"ext4");
    // SAFETY: RawMount is plain old data; viewing it as bytes is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&m as *const freeze_common::RawMount).cast::<u8>(),
            size_of::<freeze_common::RawMount>(),
        )
    };
    let ev = Event::decode(bytes, None).expect("decodes");
    let call = ev.mount.expect("mount call");
    assert_eq!(
        (call.api, call.source.as_str(), call.target.as_str()),
        (MountApi::Mount, "/dev/loop0", "/mnt")
    );
    assert_eq!((call.fstype.as_str(), call.flags, call.mounted_dev), ("ext4", 4096, None));
    assert_eq!(ev.ret, None);
}

#[test]
fn a_decoder_shares_what_records_repeat_until_it_changes() {
    let mut d = Decoder::default();
    let raw = raw_freeze_end();
    let (a, b) = (d.event(&raw, Some("/m")).expect("decodes"), d.event(&raw, Some("/m")).expect("decodes"));
    let ptr = |e: &Event| e.sb.as_ref().map(Arc::as_ptr);
    assert_eq!(ptr(&a), ptr(&b), "one superblock");
    assert!(Arc::ptr_eq(a.parent.as_ref().expect("parent"), b.parent.as_ref().expect("parent")));
    assert!(Arc::ptr_eq(a.cgroup.as_ref().expect("cgroup"), b.cgroup.as_ref().expect("cgroup")));
    // Mounted elsewhere, or another superblock at the same address: a new copy.
    let moved = d.event(&raw, Some("/n")).expect("decodes");
    assert_eq!(moved.sb.as_ref().and_then(|s| s.mountpoint.as_deref()), Some("/n"));
    let mut other = raw;
    other.sb.s_id[..5].copy_from_slice(b"loop9");
    let reused = d.event(&other, Some("/n")).expect("decodes");
    assert_eq!(reused.sb.as_ref().map(|s| s.s_id.as_str()), Some("loop9"));
    assert_eq!(a, Event::from_raw(&raw, Some("/m")).expect("decodes"), "the same as decoding it alone");
}

#[test]
fn bad_records_are_errors() {
    assert_eq!(Event::decode(&[0u8; 10], None), Err(DecodeError::Size(10, 200)));
    let mut raw = raw_freeze_end();
    raw.kind = 999;
    assert_eq!(Event::from_raw(&raw, None), Err(DecodeError::Kind(999)));
    raw.kind = kind::THAW_BEGIN;
    raw.hook = 77;
    assert_eq!(Event::from_raw(&raw, None), Err(DecodeError::Hook(77)));
}
