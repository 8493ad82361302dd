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
    // 27 u32 fields, nothing else.
    assert_eq!(size_of::<KernelOffsets>(), 27 * 4);
}

#[test]
fn ioctl_numbers_match_the_uapi_encoding() {
    // _IOWR(type, nr, size) = (3 << 30) | (size << 16) | (type << 8) | nr
    let iowr = |nr: u32| (3u32 << 30) | (4 << 16) | ((b'X' as u32) << 8) | nr;
    assert_eq!(FIFREEZE, iowr(119));
    assert_eq!(FITHAW, iowr(120));
}
