//! fallocate and truncate of the backing file of a loop device that holds a frozen filesystem:
//! punching a hole, zeroing, collapsing or inserting a range, or truncating, changes the bytes
//! the loop device reads without a single bio on it. First choice fentry/fexit on the functions
//! that do it (`vfs_fallocate`; `do_truncate`, which ftruncate(2), truncate(2) by path and
//! `O_TRUNC` opens all reach), else fallocate(2) and ftruncate(2) at their syscalls.
use super::write::{Target, backing_modified, remember, take_writing, write_target};
use crate::{
    maps::{Writing, any_watched, hit},
    read::{SysArgs, inode_from_fd, read_u64, sys_exit_ret, untyped_arg},
};
use aya_ebpf::{
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::{hook, io_op, tp::sys};

/// fallocate(2) mode bits (uapi linux/falloc.h) that change a file's bytes; allocating space
/// (mode 0, KEEP_SIZE) changes nothing a reader sees.
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
const FALLOC_FL_INSERT_RANGE: u64 = 0x20;

/// The frozen filesystem and backing-file range behind the inode `inode` gives, when it is such
/// a backing file (the inode is only looked for while something is watched).
#[inline(always)]
fn backing_of(inode: impl FnOnce() -> Option<u64>) -> Option<(u64, freeze_common::Extent)> {
    if !any_watched() {
        return None;
    }
    match write_target(inode()?)? {
        Target::Backing(sb, extent) => Some((sb, extent)),
        Target::Own(_) => None,
    }
}

/// The inode of the file the syscall's fd names.
#[inline(always)]
fn fd_inode(args: &impl SysArgs) -> impl FnOnce() -> Option<u64> + '_ {
    || inode_from_fd(args.arg(sys::FD) as u32).ok()
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
    let (mode, pos, len) =
        (args.arg(sys::FALLOCATE_MODE), args.arg(sys::FALLOCATE_OFFSET), args.arg(sys::FALLOCATE_LEN));
    fallocate_begin(mode, pos, len, fd_inode(args));
}

/// A fallocate of `len` bytes at `pos` in mode `mode` begins on the file whose inode `inode`
/// gives: remembered for its end when it changes a frozen filesystem's backing file's bytes.
#[inline(always)]
fn fallocate_begin(mode: u64, pos: u64, len: u64, inode: impl FnOnce() -> Option<u64>) {
    let op = if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        io_op::FILE_PUNCH_HOLE
    } else if mode & FALLOC_FL_ZERO_RANGE != 0 {
        io_op::FILE_ZERO_RANGE
    } else if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0 {
        io_op::FILE_SHIFT_RANGE
    } else {
        return;
    };
    let Some((sb, extent)) = backing_of(inode) else { return };
    // Everything after the offset moves.
    let len = if op == io_op::FILE_SHIFT_RANGE { 0 } else { len };
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
    truncate_begin(args.arg(sys::FTRUNCATE_LENGTH), fd_inode(args));
}

/// A truncate to `length` bytes begins on the file whose inode `inode` gives.
#[inline(always)]
fn truncate_begin(length: u64, inode: impl FnOnce() -> Option<u64>) {
    let Some((sb, extent)) = backing_of(inode) else { return };
    remember(&Writing::backing(sb, &extent, length, 0, io_op::FILE_TRUNCATE));
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

/// `int vfs_fallocate(struct file *file, int mode, loff_t offset, loff_t len)`: the same
/// arguments in every kernel freezewatch supports (the chain's needs check them in BTF).
#[fentry(function = "vfs_fallocate")]
pub fn fw_vfs_fallocate_entry(ctx: FEntryContext) -> u32 {
    hit(hook::FENTRY_VFS_FALLOCATE);
    let file = untyped_arg(&ctx, 0);
    // `mode` is an int: its upper half is not the argument's.
    let mode = untyped_arg(&ctx, 1) & 0xffff_ffff;
    let (pos, len) = (untyped_arg(&ctx, 2), untyped_arg(&ctx, 3));
    fallocate_begin(mode, pos, len, || read_u64(file + off!(file_f_inode)).ok());
    0
}

#[fexit(function = "vfs_fallocate")]
pub fn fw_vfs_fallocate_exit(ctx: FExitContext) -> u32 {
    // The int it returned follows its four arguments.
    backing_exit(&ctx, hook::FENTRY_VFS_FALLOCATE, untyped_arg(&ctx, 4) as i32 as i64);
    0
}

/// `do_truncate([idmap,] dentry, length, time_attrs, filp)`: where `dentry` is, and how many
/// arguments there are, come from BTF (`OFFSETS`); 0 arguments: a kernel whose do_truncate
/// freezewatch does not know, where the chain's needs keep these programs from attaching.
#[fentry(function = "do_truncate")]
pub fn fw_do_truncate_entry(ctx: FEntryContext) -> u32 {
    hit(hook::FENTRY_DO_TRUNCATE);
    let (dentry, length) = match (off!(do_truncate_nargs), off!(do_truncate_dentry_arg)) {
        (4, 0) => (untyped_arg(&ctx, 0), untyped_arg(&ctx, 1)),
        (5, 1) => (untyped_arg(&ctx, 1), untyped_arg(&ctx, 2)),
        _ => return 0,
    };
    truncate_begin(length, || read_u64(dentry + off!(dentry_d_inode)).ok());
    0
}

#[fexit(function = "do_truncate")]
pub fn fw_do_truncate_exit(ctx: FExitContext) -> u32 {
    // The int it returned follows its arguments.
    let ret = match off!(do_truncate_nargs) {
        4 => untyped_arg(&ctx, 4),
        5 => untyped_arg(&ctx, 5),
        _ => return 0,
    };
    backing_exit(&ctx, hook::FENTRY_DO_TRUNCATE, ret as i32 as i64);
    0
}
