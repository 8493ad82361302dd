//! The wire layout both sides rely on: sizes and offsets that must not change silently.
use core::mem::{align_of, offset_of, size_of};

use freeze_common::*;

#[test]
fn raw_event_layout_is_stable() {
    // The trace decoder and the eBPF side both rely on these exact numbers.
    assert_eq!(size_of::<SbIdent>(), 80);
    assert_eq!(size_of::<RawEvent>(), 200);
    assert_eq!(align_of::<RawEvent>(), 8);
    assert_eq!(offset_of!(RawEvent, kind), 0);
    assert_eq!(offset_of!(RawEvent, ts_ns), 8);
    assert_eq!(offset_of!(RawEvent, begin_ts_ns), 16);
    assert_eq!(offset_of!(RawEvent, pid), 24);
    assert_eq!(offset_of!(RawEvent, comm), 32);
    assert_eq!(offset_of!(RawEvent, level_before), 48);
    assert_eq!(offset_of!(RawEvent, ret), 64);
    assert_eq!(offset_of!(RawEvent, arg), 72);
    assert_eq!(offset_of!(RawEvent, bdev), 80);
    assert_eq!(offset_of!(RawEvent, sb), 88);
    // Attribution came later, after the superblock: the fields before it kept their offsets.
    assert_eq!(offset_of!(RawEvent, cgroup_id), 168);
    assert_eq!(offset_of!(RawEvent, ppid), 176);
    assert_eq!(offset_of!(RawEvent, pcomm), 180);
    // The storage op took the padding word at the end.
    assert_eq!(offset_of!(RawEvent, io_op), 196);
    assert_eq!(offset_of!(SbIdent, fstype), 16);
    assert_eq!(offset_of!(SbIdent, s_id), 32);
    assert_eq!(offset_of!(SbIdent, uuid), 64);
}

#[test]
fn raw_mount_is_an_event_then_strings() {
    assert_eq!(offset_of!(RawMount, event), 0);
    assert_eq!(offset_of!(RawMount, source), 200);
    assert_eq!(offset_of!(RawMount, target), 264);
    assert_eq!(offset_of!(RawMount, fstype), 392);
    assert_eq!(size_of::<RawMount>(), 408);
}

#[test]
fn kernel_offsets_has_no_implicit_padding() {
    // 56 u32 fields, nothing else.
    assert_eq!(size_of::<KernelOffsets>(), 56 * 4);
}

#[test]
fn storage_map_types_have_no_implicit_padding() {
    assert_eq!(size_of::<Extent>(), 24);
    assert_eq!(size_of::<ExtentKey>(), 8);
    assert_eq!(size_of::<InodeKey>(), 16);
    assert_eq!(offset_of!(InodeKey, ino), 8);
}

#[test]
fn rwbs_ops_follow_blk_fill_rwbs() {
    let op = |s: &[u8], n: u32| {
        let mut rwbs = [0u8; 8];
        rwbs[..s.len()].copy_from_slice(s);
        io_op::from_rwbs(&rwbs, n)
    };
    // Seen on 6.18 for pwrite O_DIRECT|O_SYNC, blkdiscard, blkdiscard -z and an fsync.
    assert_eq!(op(b"WFS", 8), Some(io_op::WRITE));
    assert_eq!(op(b"WS", 8), Some(io_op::WRITE));
    assert_eq!(op(b"WM", 8), Some(io_op::WRITE));
    assert_eq!(op(b"FWS", 8), Some(io_op::WRITE));
    assert_eq!(op(b"DS", 2048), Some(io_op::DISCARD));
    assert_eq!(op(b"DE", 2048), Some(io_op::SECURE_ERASE));
    assert_eq!(op(b"NS", 2048), Some(io_op::WRITE_ZEROES));
    // An empty preflush, a flush op, reads and readahead change nothing.
    assert_eq!(op(b"FWS", 0), None);
    assert_eq!(op(b"F", 0), None);
    assert_eq!(op(b"FS", 8), None);
    assert_eq!(op(b"R", 8), None);
    assert_eq!(op(b"RA", 8), None);
    assert_eq!(op(b"RM", 8), None);
}

#[test]
fn ioctl_numbers_match_the_uapi_encoding() {
    // _IOWR(type, nr, size) = (3 << 30) | (size << 16) | (type << 8) | nr
    let iowr = |nr: u32| (3u32 << 30) | (4 << 16) | ((b'X' as u32) << 8) | nr;
    assert_eq!(FIFREEZE, iowr(119));
    assert_eq!(FITHAW, iowr(120));
}
