//! Completed writes to regular files on a frozen superblock: fexit on `vfs_write`, or the write
//! syscalls' tracepoints.
use crate::{emit::*, maps::*, read::*};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::tp::sys;
use freeze_common::{counter, hook, kind, level};

pub(crate) const S_IFMT: u16 = 0o170000;
pub(crate) const S_IFREG: u16 = 0o100000;

/// The superblock of `inode` when it is a regular file on a watched (freezing or frozen)
/// superblock: writes to anything else cannot slip past a freeze.
#[inline(always)]
pub(crate) fn watched_regular_file(inode: u64) -> Option<u64> {
    let mode_addr = inode + off!(inode_i_mode);
    // SAFETY: as read_u64.
    let mode = unsafe { bpf_probe_read_kernel(mode_addr as *const u16) }.unwrap_or(0);
    if mode & S_IFMT != S_IFREG {
        return None;
    }
    let sb = read_u64(inode + off!(inode_i_sb)).ok()?;
    // Watched: its block device maps back to this very superblock.
    // SAFETY: the value is copied out at once.
    if unsafe { WATCHED_DEVS.get(&sb_bdev(sb)) }.copied() != Some(sb) {
        bump(counter::FILTERED);
        return None;
    }
    Some(sb)
}

/// A write syscall's fd: remembered when it is a regular file on a watched superblock.
#[inline(always)]
pub(crate) fn on_write_enter(ctx: &TracePointContext) -> u32 {
    if ANY_FREEZE.get(0).copied().unwrap_or(0) == 0 {
        return 0;
    }
    hit(hook::TP_SYS_WRITE);
    // SAFETY: the offset is inside the tracepoint's record (checked by user space).
    let fd = unsafe { ctx.read_at::<u64>(sys::FD.offset) }.unwrap_or(u64::MAX) as u32;
    let Some(sb) = inode_from_fd(fd).ok().and_then(watched_regular_file) else { return 0 };
    let tid = bpf_get_current_pid_tgid() as u32;
    if WRITING.insert(&tid, &sb, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    0
}

#[inline(always)]
pub(crate) fn on_write_exit(ctx: &TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(sb) = unsafe { WRITING.get(&tid) }.copied() else { return 0 };
    let _ = WRITING.remove(&tid);
    // SAFETY: the offset is inside the tracepoint's record.
    let ret = unsafe { ctx.read_at::<i64>(sys::RET.offset) }.unwrap_or(0);
    if ret > 0 {
        write_done(ctx, hook::TP_SYS_WRITE, sb, ret);
    }
    0
}

/// A write of `ret` bytes to a regular file on watched `sb` returned: it went past the gate if
/// the superblock is still at level COMPLETE.
#[inline(always)]
pub(crate) fn write_done<C: StackIdContext>(ctx: &C, hook: u32, sb: u64, ret: i64) {
    let level = read_level(sb);
    if level != level::COMPLETE {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::WRITE_DONE, hook, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.arg = ret as u64;
    e.ret = ret;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

/// fexit on `vfs_write(file, buf, count, pos)`: the first choice for completed writes, since it
/// also sees writes that come through no write syscall (io_uring, aio, kernel writers).
#[fexit(function = "vfs_write")]
pub fn fw_vfs_write_exit(ctx: FExitContext) -> u32 {
    if off!(valid) == 0 || ANY_FREEZE.get(0).copied().unwrap_or(0) == 0 {
        return 0;
    }
    hit(hook::FEXIT_VFS_WRITE);
    let ret = ctx.ret::<i64>().unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    let Some(sb) = read_u64(file + off!(file_f_inode)).ok().and_then(watched_regular_file) else { return 0 };
    write_done(&ctx, hook::FEXIT_VFS_WRITE, sb, ret);
    0
}

macro_rules! write_syscall {
    ($enter:ident, $exit:ident, $tp_enter:literal, $tp_exit:literal) => {
        #[tracepoint(category = "syscalls", name = $tp_enter)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_write_enter(&ctx)
        }

        #[tracepoint(category = "syscalls", name = $tp_exit)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_write_exit(&ctx)
        }
    };
}

write_syscall!(fw_write_enter, fw_write_exit, "sys_enter_write", "sys_exit_write");
write_syscall!(fw_pwrite64_enter, fw_pwrite64_exit, "sys_enter_pwrite64", "sys_exit_pwrite64");
write_syscall!(fw_writev_enter, fw_writev_exit, "sys_enter_writev", "sys_exit_writev");
write_syscall!(fw_pwritev_enter, fw_pwritev_exit, "sys_enter_pwritev", "sys_exit_pwritev");
write_syscall!(fw_pwritev2_enter, fw_pwritev2_exit, "sys_enter_pwritev2", "sys_exit_pwritev2");
