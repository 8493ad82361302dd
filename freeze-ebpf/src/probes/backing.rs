//! fallocate(2) and ftruncate(2) on the backing file of a loop device that holds a frozen
//! filesystem: punching a hole, zeroing, collapsing or inserting a range, or truncating, changes
//! the bytes the loop device reads without a single bio on it.
use super::write::{Target, backing_modified, remember, take_writing, write_target};
use crate::{emit::*, maps::*, read::*};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use freeze_common::{hook, io_op, tp::sys};

/// fallocate(2) mode bits (uapi linux/falloc.h) that change a file's bytes; allocating space
/// (mode 0, KEEP_SIZE) changes nothing a reader sees.
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
const FALLOC_FL_INSERT_RANGE: u64 = 0x20;

/// The frozen filesystem and backing-file range behind `fd`, when it is such a backing file.
#[inline(always)]
fn backing_of(ctx: &TracePointContext) -> Option<(u64, freeze_common::Extent)> {
    if !any_watched() {
        return None;
    }
    // SAFETY: the offset is inside the tracepoint's record (checked by user space).
    let fd = unsafe { ctx.read_at::<u64>(sys::FD.offset) }.unwrap_or(u64::MAX) as u32;
    match inode_from_fd(fd).ok().and_then(write_target)? {
        Target::Backing(sb, extent) => Some((sb, extent)),
        Target::Own(_) => None,
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_fallocate")]
pub fn fw_fallocate_enter(ctx: TracePointContext) -> u32 {
    hit(hook::TP_SYS_FALLOCATE);
    // SAFETY: the offsets are inside the tracepoint's record (checked by user space).
    let mode = unsafe { ctx.read_at::<u64>(sys::FALLOCATE_MODE.offset) }.unwrap_or(0);
    let op = if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        io_op::FILE_PUNCH_HOLE
    } else if mode & FALLOC_FL_ZERO_RANGE != 0 {
        io_op::FILE_ZERO_RANGE
    } else if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0 {
        io_op::FILE_SHIFT_RANGE
    } else {
        return 0;
    };
    let Some((sb, extent)) = backing_of(&ctx) else { return 0 };
    // SAFETY: as above.
    let pos = unsafe { ctx.read_at::<u64>(sys::FALLOCATE_OFFSET.offset) }.unwrap_or(0);
    // SAFETY: as above.
    let mut len = unsafe { ctx.read_at::<u64>(sys::FALLOCATE_LEN.offset) }.unwrap_or(0);
    if op == io_op::FILE_SHIFT_RANGE {
        // Everything after the offset moves.
        len = 0;
    }
    remember(&Writing::backing(sb, &extent, pos, len, op));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_ftruncate")]
pub fn fw_ftruncate_enter(ctx: TracePointContext) -> u32 {
    hit(hook::TP_SYS_FTRUNCATE);
    let Some((sb, extent)) = backing_of(&ctx) else { return 0 };
    // SAFETY: the offset is inside the tracepoint's record (checked by user space).
    let pos = unsafe { ctx.read_at::<u64>(sys::FTRUNCATE_LENGTH.offset) }.unwrap_or(0);
    remember(&Writing::backing(sb, &extent, pos, 0, io_op::FILE_TRUNCATE));
    0
}

/// Both calls return 0 on success.
#[inline(always)]
fn on_exit(ctx: &TracePointContext, hook: u32) -> u32 {
    let Some(w) = take_writing() else { return 0 };
    // SAFETY: the offset is inside the tracepoint's record.
    let ret = unsafe { ctx.read_at::<i64>(sys::RET.offset) }.unwrap_or(-1);
    if ret == 0 && w.via_dev != 0 {
        backing_modified(ctx, hook, &w);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fallocate")]
pub fn fw_fallocate_exit(ctx: TracePointContext) -> u32 {
    on_exit(&ctx, hook::TP_SYS_FALLOCATE)
}

#[tracepoint(category = "syscalls", name = "sys_exit_ftruncate")]
pub fn fw_ftruncate_exit(ctx: TracePointContext) -> u32 {
    on_exit(&ctx, hook::TP_SYS_FTRUNCATE)
}
