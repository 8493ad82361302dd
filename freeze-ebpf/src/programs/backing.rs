//! fallocate(2) and ftruncate(2) on the backing file of a loop device that holds a frozen
//! filesystem: punching a hole, zeroing, collapsing or inserting a range, or truncating, changes
//! the bytes the loop device reads without a single bio on it.
use super::write::{Target, backing_modified, remember, take_writing, write_target};
use crate::{
    maps::{Writing, any_watched, hit},
    read::{SysArgs, inode_from_fd, sys_exit_ret},
};
use aya_ebpf::{
    macros::tracepoint,
    programs::{TracePointContext, tracing::StackIdContext},
};
use freeze_common::{hook, io_op, tp::sys};

/// fallocate(2) mode bits (uapi linux/falloc.h) that change a file's bytes; allocating space
/// (mode 0, KEEP_SIZE) changes nothing a reader sees.
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
const FALLOC_FL_INSERT_RANGE: u64 = 0x20;

/// The frozen filesystem and backing-file range behind `fd`, when it is such a backing file.
#[inline(always)]
fn backing_of(args: &impl SysArgs) -> Option<(u64, freeze_common::Extent)> {
    if !any_watched() {
        return None;
    }
    match inode_from_fd(args.arg(sys::FD) as u32).ok().and_then(write_target)? {
        Target::Backing(sb, extent) => Some((sb, extent)),
        Target::Own(_) => None,
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_fallocate")]
pub fn fw_fallocate_enter(ctx: TracePointContext) -> u32 {
    fallocate_enter(&ctx, hook::TP_SYS_FALLOCATE);
    0
}

/// fallocate(2) entered (`hook` says which program saw it).
#[inline(always)]
pub(crate) fn fallocate_enter(args: &impl SysArgs, hook: u32) {
    hit(hook);
    let mode = args.arg(sys::FALLOCATE_MODE);
    let op = if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        io_op::FILE_PUNCH_HOLE
    } else if mode & FALLOC_FL_ZERO_RANGE != 0 {
        io_op::FILE_ZERO_RANGE
    } else if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0 {
        io_op::FILE_SHIFT_RANGE
    } else {
        return;
    };
    let Some((sb, extent)) = backing_of(args) else { return };
    let pos = args.arg(sys::FALLOCATE_OFFSET);
    // Everything after the offset moves.
    let len = if op == io_op::FILE_SHIFT_RANGE { 0 } else { args.arg(sys::FALLOCATE_LEN) };
    remember(&Writing::backing(sb, &extent, pos, len, op));
}

#[tracepoint(category = "syscalls", name = "sys_enter_ftruncate")]
pub fn fw_ftruncate_enter(ctx: TracePointContext) -> u32 {
    ftruncate_enter(&ctx, hook::TP_SYS_FTRUNCATE);
    0
}

#[inline(always)]
pub(crate) fn ftruncate_enter(args: &impl SysArgs, hook: u32) {
    hit(hook);
    let Some((sb, extent)) = backing_of(args) else { return };
    let pos = args.arg(sys::FTRUNCATE_LENGTH);
    remember(&Writing::backing(sb, &extent, pos, 0, io_op::FILE_TRUNCATE));
}

/// fallocate or ftruncate returned `ret` (both return 0 on success).
#[inline(always)]
pub(crate) fn backing_exit<C: StackIdContext>(ctx: &C, hook: u32, ret: i64) {
    let Some(w) = take_writing() else { return };
    if ret == 0 && w.via_dev != 0 {
        backing_modified(ctx, hook, &w);
    }
}

#[inline(always)]
fn tp_exit(ctx: &TracePointContext, hook: u32) -> u32 {
    let ret = sys_exit_ret(ctx).unwrap_or(-1);
    backing_exit(ctx, hook, ret);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fallocate")]
pub fn fw_fallocate_exit(ctx: TracePointContext) -> u32 {
    tp_exit(&ctx, hook::TP_SYS_FALLOCATE)
}

#[tracepoint(category = "syscalls", name = "sys_exit_ftruncate")]
pub fn fw_ftruncate_exit(ctx: TracePointContext) -> u32 {
    tp_exit(&ctx, hook::TP_SYS_FTRUNCATE)
}
