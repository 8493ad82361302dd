//! Kernel reads: struct fields at the offsets user space resolved from BTF, and the superblock
//! behind a file descriptor.
use crate::maps::{FROZEN_SBS, bump};
use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes,
    generated::bpf_get_current_task,
};
use aya_ebpf::programs::TracePointContext;
use freeze_common::tp::{TpField, sys};
use freeze_common::{SIGNAL_UNKILLABLE, SbIdent, counter, level};

/// A syscall's arguments, wherever the program that saw the syscall found them: the record of a
/// `syscalls:sys_enter_*` tracepoint, or the registers the syscall dispatcher read.
pub(crate) trait SysArgs {
    /// The argument a `sys_enter_*` record holds in `field` (0 where it cannot be read).
    fn arg(&self, field: TpField) -> u64;
}

impl SysArgs for TracePointContext {
    #[inline(always)]
    fn arg(&self, field: TpField) -> u64 {
        // SAFETY: the offset is inside the tracepoint's record (user space checked it against the
        // format file before attaching); the read fails instead of faulting anyway.
        unsafe { self.read_at::<u64>(field.offset) }.unwrap_or(0)
    }
}

/// The return value in a `syscalls:sys_exit_*` record.
#[inline(always)]
pub(crate) fn sys_exit_ret(ctx: &TracePointContext) -> Option<i64> {
    // SAFETY: the offset is inside every sys_exit record (user space checked it against the
    // format file before attaching); the read fails instead of faulting anyway.
    unsafe { ctx.read_at::<i64>(sys::RET.offset) }.ok()
}

/// The six arguments of a syscall, as the dispatcher read them from its registers.
pub(crate) struct RegArgs(pub [u64; 6]);

impl SysArgs for RegArgs {
    #[inline(always)]
    fn arg(&self, field: TpField) -> u64 {
        self.0.get(sys::arg_index(field)).copied().unwrap_or(0)
    }
}

/// Argument `n` of a BTF-typed program (tp_btf) as a plain number. Loaded directly, the verifier
/// types it as a kernel pointer that may be null and refuses the arithmetic that reading a field
/// at an offset from `OFFSETS` takes; copied out through the helper, it is a value like any other.
#[inline(always)]
pub(crate) fn untyped_arg<C: aya_ebpf::EbpfContext>(ctx: &C, n: usize) -> u64 {
    let args = ctx.as_ptr() as *const u64;
    // SAFETY: a tp_btf program's context is its tracepoint's arguments, one u64 each; n is below
    // their number; bpf_probe_read_kernel fails instead of faulting anyway.
    unsafe { bpf_probe_read_kernel(args.wrapping_add(n)) }.unwrap_or(0)
}

#[inline(always)]
pub(crate) fn read_u64(addr: u64) -> Result<u64, i32> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }
}

/// `inode->i_mode` (umode_t), 0 where it cannot be read.
#[inline(always)]
pub(crate) fn inode_mode(inode: u64) -> u16 {
    let addr = inode + off!(inode_i_mode);
    // SAFETY: as read_u64.
    unsafe { bpf_probe_read_kernel(addr as *const u16) }.unwrap_or(0)
}

#[inline(always)]
pub(crate) fn read_u32(addr: u64) -> Result<u32, i32> {
    // SAFETY: as read_u64.
    unsafe { bpf_probe_read_kernel(addr as *const u32) }
}

/// `current->files->fdt->fd[fd]->f_inode`, or an error if any step fails.
#[inline(always)]
pub(crate) fn inode_from_fd(fd: u32) -> Result<u64, i32> {
    read_u64(file_from_fd(fd)? + off!(file_f_inode))
}

/// `current->files->fdt->fd[fd]` (a `struct file *`), or an error if any step fails.
#[inline(always)]
pub(crate) fn file_from_fd(fd: u32) -> Result<u64, i32> {
    // SAFETY: the helper has no preconditions; it returns the current task's address.
    let task = unsafe { bpf_get_current_task() };
    let files = read_u64(task + off!(task_files))?;
    let fdt = read_u64(files + off!(files_fdt))?;
    let max_fds = read_u32(fdt + off!(fdtable_max_fds))?;
    if fd >= max_fds {
        return Err(-9); // EBADF: the ioctl itself will fail the same way.
    }
    let fd_array = read_u64(fdt + off!(fdtable_fd))?;
    let file = read_u64(fd_array + (fd as u64) * 8)?;
    if file == 0 { Err(-9) } else { Ok(file) }
}

/// The superblock of the file behind `fd`.
#[inline(always)]
pub(crate) fn sb_from_fd(fd: u32) -> Result<u64, i32> {
    let sb = read_u64(inode_from_fd(fd)? + off!(inode_i_sb))?;
    if sb == 0 { Err(-2) } else { Ok(sb) }
}

/// `sb->s_writers.frozen`, whose width changed from int to unsigned short in 6.6.
#[inline(always)]
pub(crate) fn read_level(sb: u64) -> u32 {
    if sb == 0 {
        return level::UNKNOWN;
    }
    let addr = sb + off!(sb_frozen);
    let value = if off!(sb_frozen_size) == 2 {
        // SAFETY: as read_u64.
        unsafe { bpf_probe_read_kernel(addr as *const u16) }.map(u32::from)
    } else {
        read_u32(addr)
    };
    value.unwrap_or_else(|_| {
        bump(counter::READ_FAILED);
        level::UNKNOWN
    })
}

#[inline(always)]
pub(crate) fn fill_ident(sb: u64, out: &mut SbIdent) {
    out.sb = sb;
    if sb == 0 {
        return;
    }
    let mut ok = true;
    match read_u32(sb + off!(sb_s_dev)) {
        Ok(dev) => out.dev = dev,
        Err(_) => ok = false,
    }
    match read_u64(sb + off!(sb_s_type)).and_then(|t| read_u64(t + off!(fstype_name))) {
        Ok(name) => {
            // SAFETY: the helper bounds the copy by the destination length.
            ok &= unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut out.fstype) }.is_ok();
        }
        Err(_) => ok = false,
    }
    let (id_addr, uuid_addr) = (sb + off!(sb_s_id), sb + off!(sb_s_uuid));
    // SAFETY: fixed-size copies into arrays of exactly that size.
    ok &= unsafe { bpf_probe_read_kernel_buf(id_addr as *const u8, &mut out.s_id) }.is_ok();
    // SAFETY: as above.
    ok &= unsafe { bpf_probe_read_kernel_buf(uuid_addr as *const u8, &mut out.uuid) }.is_ok();
    if !ok {
        bump(counter::READ_FAILED);
    }
}

/// When the process of `task` started: its thread group leader's `start_time`.
#[inline(always)]
pub(crate) fn process_start(task: u64) -> Option<u64> {
    let leader = read_u64(task + off!(task_group_leader)).ok()?;
    read_u64(leader + off!(task_start_time)).ok()
}

/// `task->signal`: what its thread group shares.
#[inline(always)]
pub(crate) fn signal_of(task: u64) -> Option<u64> {
    read_u64(task + off!(task_signal)).ok().filter(|s| *s != 0)
}

/// Whether the last thread of the group of `signal` has begun exiting (`signal->live` is 0).
#[inline(always)]
pub(crate) fn group_exiting(signal: u64) -> bool {
    read_u32(signal + off!(signal_live)) == Ok(0)
}

/// Whether the group of `signal` is the init of a PID namespace or a child subreaper.
#[inline(always)]
pub(crate) fn is_reaper(signal: u64) -> bool {
    if read_u32(signal + off!(signal_flags)).is_ok_and(|f| f & SIGNAL_UNKILLABLE != 0) {
        return true;
    }
    let bit = off!(signal_subreaper_bit);
    // SAFETY: as read_u64.
    let byte = unsafe { bpf_probe_read_kernel((signal + bit / 8) as *const u8) };
    byte.is_ok_and(|b| b & (1 << (bit % 8)) != 0)
}

/// The block device behind a superblock: `s_bdev->bd_dev`, or `s_dev` without a block device.
#[inline(always)]
pub(crate) fn sb_bdev(sb: u64) -> u32 {
    match read_u64(sb + off!(sb_s_bdev)) {
        Ok(bdev) if bdev != 0 => read_u32(bdev + off!(bdev_bd_dev)).unwrap_or(0),
        _ => read_u32(sb + off!(sb_s_dev)).unwrap_or(0),
    }
}

/// The superblock of the filesystem with `s_dev` `fs_dev` when it is frozen (level COMPLETE):
/// lower layers and backing files name their filesystem by `s_dev`.
#[inline(always)]
pub(crate) fn frozen_sb_of(fs_dev: u32) -> Option<u64> {
    // SAFETY: the value is copied out at once.
    let sb = unsafe { FROZEN_SBS.get(fs_dev) }.copied()?;
    is_frozen(sb).then_some(sb)
}

/// Whether `sb` is frozen all the way (level COMPLETE).
#[inline(always)]
pub(crate) fn is_frozen(sb: u64) -> bool {
    read_level(sb) == level::COMPLETE
}

#[inline(always)]
pub(crate) fn gate_lock_addr(sb: u64, index: u64) -> u64 {
    sb + off!(sb_rw_sem) + index * off!(rw_sem_size)
}

#[inline(always)]
pub(crate) fn sb_uuid(sb: u64) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    let addr = sb + off!(sb_s_uuid);
    // SAFETY: a fixed-size copy into an array of that size.
    let _ = unsafe { bpf_probe_read_kernel_buf(addr as *const u8, &mut uuid) };
    uuid
}
