//! Completed writes to regular files on a frozen superblock, and to the backing files of loop
//! devices that hold a frozen filesystem, at the write syscalls' tracepoints: the fallback of
//! `dirty` (pages and inodes turning dirty), and where a file's target is told.
use crate::{
    emit::{Emit, emit, stack_of},
    maps::{BACKING_FILES, WATCHED_DEVS, WRITING, Writing, any_watched, bump, hit},
    read::{file_from_fd, frozen_sb_of, inode_mode, read_u32, read_u64, sb_bdev, sys_exit_ret},
};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::tracepoint,
    programs::{TracePointContext, tracing::StackIdContext},
};
use freeze_common::tp::sys;
use freeze_common::{Extent, InodeKey, counter, hook, io_op, kind};

pub(crate) const S_IFMT: u16 = 0o170000;
pub(crate) const S_IFREG: u16 = 0o100000;
pub(crate) const S_IFDIR: u16 = 0o040000;

/// Where a write to a regular file lands, when it can slip past a freeze.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// A file of this watched (freezing or frozen) superblock.
    Own(u64),
    /// The backing file of a loop device (`extent.via_dev`) that holds this frozen superblock.
    Backing(u64, Extent),
}

/// Where a write to `inode` lands: nowhere that matters unless it is a regular file on a watched
/// superblock or the backing file of a frozen filesystem's loop device.
#[inline(always)]
pub(crate) fn write_target(inode: u64) -> Option<Target> {
    if inode_mode(inode) & S_IFMT != S_IFREG {
        return None;
    }
    let sb = read_u64(inode + off!(inode_i_sb)).ok()?;
    // Watched: its block device maps back to this very superblock.
    // SAFETY: the value is copied out at once.
    if unsafe { WATCHED_DEVS.get(sb_bdev(sb)) }.copied() == Some(sb) {
        return Some(Target::Own(sb));
    }
    let key = InodeKey {
        dev: read_u32(sb + off!(sb_s_dev)).ok()?,
        _pad: 0,
        ino: read_u64(inode + off!(inode_i_ino)).ok()?,
    };
    // SAFETY: the value is copied out at once.
    let Some(extent) = (unsafe { BACKING_FILES.get(key) }).copied() else {
        bump(counter::FILTERED);
        return None;
    };
    frozen_sb_of(extent.fs_dev).map(|top| Target::Backing(top, extent))
}

/// A write syscall's fd: remembered when it lands somewhere that matters. `pos_field` is the
/// syscall's position argument (pwrite*); without it the file's own position is used.
#[inline(always)]
pub(crate) fn on_write_enter(ctx: &TracePointContext, pos_field: Option<usize>) -> u32 {
    if !any_watched() {
        return 0;
    }
    hit(hook::TP_SYS_WRITE);
    // SAFETY: the offset is inside the tracepoint's record (checked by user space).
    let fd = unsafe { ctx.read_at::<u64>(sys::FD.offset) }.unwrap_or(u64::MAX) as u32;
    let Ok(file) = file_from_fd(fd) else { return 0 };
    let Some(target) = read_u64(file + off!(file_f_inode)).ok().and_then(write_target) else { return 0 };
    let writing = match target {
        Target::Own(sb) => Writing { sb, pos: 0, len: 0, first: 0, end: 0, via_dev: 0, io_op: io_op::NONE },
        Target::Backing(sb, extent) => {
            // SAFETY: as above; pwritev2 takes -1 for "the file position".
            let arg = pos_field.map(|off| unsafe { ctx.read_at::<i64>(off) }.unwrap_or(-1)).unwrap_or(-1);
            let pos = if arg >= 0 { arg as u64 } else { read_u64(file + off!(file_f_pos)).unwrap_or(0) };
            Writing::backing(sb, &extent, pos, 0, io_op::FILE_WRITE)
        }
    };
    remember(&writing);
    0
}

#[inline(always)]
pub(crate) fn remember(writing: &Writing) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if WRITING.insert(tid, writing, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
}

/// The write (or fallocate, ftruncate) this thread began, taken out of `WRITING`.
#[inline(always)]
pub(crate) fn take_writing() -> Option<Writing> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let writing = unsafe { WRITING.get(tid) }.copied()?;
    let _ = WRITING.remove(tid);
    Some(writing)
}

/// Whether this thread is inside a write (fallocate, ftruncate) of a frozen filesystem's backing
/// file: the bios it submits meanwhile (O_DIRECT, its own writeback) are that write, which is
/// judged when the syscall returns.
#[inline(always)]
pub(crate) fn writing_a_backing_file() -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is only tested.
    unsafe { WRITING.get(tid) }.is_some_and(|w| w.via_dev != 0)
}

#[inline(always)]
pub(crate) fn on_write_exit(ctx: &TracePointContext) -> u32 {
    let Some(w) = take_writing() else { return 0 };
    let ret = sys_exit_ret(ctx).unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    if w.via_dev == 0 {
        write_done(ctx, hook::TP_SYS_WRITE, w.sb, ret);
    } else {
        backing_modified(ctx, hook::TP_SYS_WRITE, &Writing { len: ret as u64, ..w });
    }
    0
}

/// A write of `ret` bytes to a regular file on watched `sb` returned: it went past the gate if
/// the superblock is still at level COMPLETE.
#[inline(always)]
pub(crate) fn write_done<C: StackIdContext>(ctx: &C, hook: u32, sb: u64, ret: i64) {
    let Some(mut e) = Emit::if_frozen(kind::WRITE_DONE, hook, sb) else { return };
    e.arg = ret as u64;
    e.ret = ret;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

/// `w.len` bytes at `w.pos` of a loop device's backing file were modified while the filesystem
/// on it was frozen: a BLOCK_WRITE of the frozen superblock when the range overlaps the part of
/// the file the loop device maps (`len` 0: everything from `pos` on, as a truncate).
#[inline(always)]
pub(crate) fn backing_modified<C: StackIdContext>(ctx: &C, hook: u32, w: &Writing) {
    let end = if w.len == 0 { u64::MAX } else { w.pos.saturating_add(w.len) };
    if w.pos >= w.end || end <= w.first {
        return;
    }
    let Some(mut e) = Emit::if_frozen(kind::BLOCK_WRITE, hook, w.sb) else { return };
    e.arg = w.pos;
    e.flags = if w.len > u64::from(u32::MAX) { u32::MAX } else { w.len as u32 };
    e.bdev = w.via_dev;
    e.io_op = w.io_op;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

macro_rules! write_syscall {
    ($enter:ident, $exit:ident, $tp_enter:literal, $tp_exit:literal, $pos:expr) => {
        #[tracepoint(category = "syscalls", name = $tp_enter)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_write_enter(&ctx, $pos)
        }

        #[tracepoint(category = "syscalls", name = $tp_exit)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_write_exit(&ctx)
        }
    };
}

write_syscall!(fw_write_enter, fw_write_exit, "sys_enter_write", "sys_exit_write", None);
write_syscall!(
    fw_pwrite64_enter,
    fw_pwrite64_exit,
    "sys_enter_pwrite64",
    "sys_exit_pwrite64",
    Some(sys::PWRITE_POS.offset)
);
write_syscall!(fw_writev_enter, fw_writev_exit, "sys_enter_writev", "sys_exit_writev", None);
write_syscall!(
    fw_pwritev_enter,
    fw_pwritev_exit,
    "sys_enter_pwritev",
    "sys_exit_pwritev",
    Some(sys::PWRITEV_POS.offset)
);
write_syscall!(
    fw_pwritev2_enter,
    fw_pwritev2_exit,
    "sys_enter_pwritev2",
    "sys_exit_pwritev2",
    Some(sys::PWRITEV_POS.offset)
);
