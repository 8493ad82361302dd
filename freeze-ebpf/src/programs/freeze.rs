//! Freeze and thaw: FIFREEZE/FITHAW ioctls (the handlers the syscall dispatcher calls, and their
//! tracepoints, the fallback that loads everywhere) and fentry/fexit on `freeze_super`/`thaw_super`
//! (every freeze path), with the block-device freeze and thaw around them (device-mapper).
use super::write::{S_IFDIR, S_IFMT};
use crate::{
    emit::{Emit, emit, on_begin, on_end, watch},
    maps::{BDEV_CALLS, bdev_call, bump, freeze_completed, hit},
    read::{SysArgs, inode_mode, read_level, read_u32, read_u64, sb_from_fd, sys_exit_ret, untyped_arg},
};
use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_get_func_arg,
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use freeze_common::tp::sys;
use freeze_common::{FIFREEZE, FIGETBSZ, FITHAW, counter, holder, hook, kind, level};

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn fw_ioctl_enter(ctx: TracePointContext) -> u32 {
    ioctl_enter(&ctx, &ctx, hook::TP_IOCTL);
    0
}

/// An ioctl entered (`hook` says which program saw it): FIFREEZE and FITHAW begin a freeze or
/// thaw of the filesystem behind the fd.
#[inline(always)]
pub(crate) fn ioctl_enter<C: EbpfContext>(ctx: &C, args: &impl SysArgs, hook: u32) {
    if off!(valid) == 0 {
        return;
    }
    let begin_kind = match args.arg(sys::IOCTL_CMD) as u32 {
        FIFREEZE => kind::FREEZE_BEGIN,
        FITHAW => kind::THAW_BEGIN,
        _ => return,
    };
    bump(counter::IOCTL_SEEN);
    hit(hook);
    let fd = args.arg(sys::FD) as u32;
    let sb = match sb_from_fd(fd) {
        Ok(sb) => sb,
        Err(_) => {
            bump(counter::READ_FAILED);
            aya_log_ebpf::warn!(ctx, "freezewatch: no superblock for ioctl fd {}", fd);
            0
        }
    };
    on_begin(begin_kind, hook, sb, holder::USERSPACE);
}

/// The level probe: an FIGETBSZ ioctl made by freezewatch itself (`watch`, at start) reports the
/// freeze level of the filesystem behind the fd, so that one already frozen is found without
/// freezing anything. Any other task's ioctls cost one comparison.
#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn fw_level_probe(ctx: TracePointContext) -> u32 {
    level_probe(&ctx, hook::TP_IOCTL);
    0
}

/// freezewatch's own thread group id, once the loader has set it (0 before).
#[inline(always)]
fn probe_tgid() -> u32 {
    // SAFETY: a read-only global the loader set before load.
    unsafe { core::ptr::read_volatile(&raw const crate::maps::PROBE_TGID) }
}

#[inline(always)]
pub(crate) fn level_probe(args: &impl SysArgs, hook: u32) {
    let ours = probe_tgid();
    if off!(valid) == 0 || ours == 0 || (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32 != ours {
        return;
    }
    if args.arg(sys::IOCTL_CMD) as u32 != FIGETBSZ {
        return;
    }
    let Ok(sb) = sb_from_fd(args.arg(sys::FD) as u32) else {
        bump(counter::READ_FAILED);
        return;
    };
    emit_level(sb, hook);
}

/// The level probe where tracing programs load: a `task_file` iterator, which user space reads
/// once (`watch`, at start, holding every mount point it probes open). For each open file of each
/// task, `struct bpf_iter__task_file { meta, task, fd, file }`: freezewatch's own directories
/// report their superblock's freeze level. No syscall hook; it costs nothing until it is read.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn fw_level_iter(ctx: *mut core::ffi::c_void) -> i32 {
    let field = |n: usize| -> u64 {
        // SAFETY: the context is the iterator's record of four u64-sized fields; n is below four;
        // bpf_probe_read_kernel fails instead of faulting anyway.
        unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((ctx as *const u64).wrapping_add(n)) }.unwrap_or(0)
    };
    let (task, file) = (field(1), field(3));
    let ours = probe_tgid();
    if off!(valid) == 0 || ours == 0 || task == 0 || file == 0 {
        return 0;
    }
    if read_u32(task + off!(task_tgid)) != Ok(ours) {
        return 0;
    }
    hit(hook::ITER_TASK_FILE);
    let Ok(inode) = read_u64(file + off!(file_f_inode)) else { return 0 };
    if inode_mode(inode) & S_IFMT != S_IFDIR {
        return 0;
    }
    match read_u64(inode + off!(inode_i_sb)) {
        Ok(sb) if sb != 0 => emit_level(sb, hook::ITER_TASK_FILE),
        _ => bump(counter::READ_FAILED),
    }
    0
}

/// A LEVEL_PROBE record: `sb`'s freeze level now. A superblock found freezing or frozen is
/// watched from here on, as if its freeze had been seen: what reaches it (writes, mounts) is
/// judged, and its thaw ends that.
#[inline(always)]
fn emit_level(sb: u64, hook: u32) {
    let level = read_level(sb);
    if level != level::UNFROZEN && level != level::UNKNOWN {
        watch(sb);
    }
    if level == level::COMPLETE {
        freeze_completed();
    }
    // SAFETY: the helper has no preconditions.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::LEVEL_PROBE, hook, now, sb);
    e.level_before = level;
    e.level_after = level;
    emit(&e);
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn fw_ioctl_exit(ctx: TracePointContext) -> u32 {
    let ret = sys_exit_ret(&ctx).unwrap_or(0);
    on_end(hook::TP_IOCTL, ret);
    0
}

/// The holder (`enum freeze_holder who`, argument 1) exists from 6.6 on; before that it is unknown.
#[inline(always)]
pub(crate) fn holder_arg(ctx: *mut core::ffi::c_void) -> u32 {
    if off!(freeze_super_nargs) < 2 {
        return holder::UNKNOWN;
    }
    let mut who: u64 = 0;
    // SAFETY: bpf_get_func_arg checks the index against the traced function's arity.
    if unsafe { bpf_get_func_arg(ctx, 1, &raw mut who) } != 0 {
        return holder::UNKNOWN;
    }
    who as u32
}

#[fentry(function = "freeze_super")]
pub fn fw_freeze_super_entry(ctx: FEntryContext) -> u32 {
    if off!(valid) == 0 || inside_holder_op() {
        return 0;
    }
    bump(counter::FENTRY_SEEN);
    hit(hook::FENTRY_FREEZE);
    let sb: u64 = ctx.arg(0);
    on_begin(kind::FREEZE_BEGIN, hook::FENTRY_FREEZE, sb, holder_arg(ctx.as_ptr()));
    0
}

#[fexit(function = "freeze_super")]
pub fn fw_freeze_super_exit(ctx: FExitContext) -> u32 {
    if inside_holder_op() {
        return 0;
    }
    on_end(hook::FENTRY_FREEZE, super_call_ret(&ctx));
    0
}

#[fentry(function = "thaw_super")]
pub fn fw_thaw_super_entry(ctx: FEntryContext) -> u32 {
    if off!(valid) == 0 || inside_holder_op() {
        return 0;
    }
    bump(counter::FENTRY_SEEN);
    hit(hook::FENTRY_FREEZE);
    let sb: u64 = ctx.arg(0);
    on_begin(kind::THAW_BEGIN, hook::FENTRY_FREEZE, sb, holder_arg(ctx.as_ptr()));
    0
}

#[fexit(function = "thaw_super")]
pub fn fw_thaw_super_exit(ctx: FExitContext) -> u32 {
    if inside_holder_op() {
        return 0;
    }
    on_end(hook::FENTRY_FREEZE, super_call_ret(&ctx));
    0
}

/// What `freeze_super` or `thaw_super` returned (an int): an fexit program's context holds the
/// arguments, then the return value. Read at a constant index per arity rather than with
/// `bpf_get_func_ret`, which arrived in 5.17; the two functions have had the same arguments in
/// every version (`sb`; `who` from 6.6; the freeze owner since).
#[inline(always)]
fn super_call_ret(ctx: &FExitContext) -> i64 {
    let ret = match off!(freeze_super_nargs) {
        1 => untyped_arg(ctx, 1),
        2 => untyped_arg(ctx, 2),
        _ => untyped_arg(ctx, 3),
    };
    ret as i32 as i64
}

/// The block-device freeze and thaw (`bdev_freeze`/`bdev_thaw`, loaded on `freeze_bdev`/
/// `thaw_bdev` before 6.8): device-mapper's suspend and resume. They only mark the thread for
/// the `freeze_super`/`thaw_super` they call, which says `VIA_BLOCK_DEVICE`.
#[fentry(function = "bdev_freeze")]
pub fn fw_bdev_freeze_entry(_ctx: FEntryContext) -> u32 {
    bdev_call_begins();
    0
}

#[fexit(function = "bdev_freeze")]
pub fn fw_bdev_freeze_exit(_ctx: FExitContext) -> u32 {
    bdev_call_ends();
    0
}

#[fentry(function = "bdev_thaw")]
pub fn fw_bdev_thaw_entry(_ctx: FEntryContext) -> u32 {
    bdev_call_begins();
    0
}

#[fexit(function = "bdev_thaw")]
pub fn fw_bdev_thaw_exit(_ctx: FExitContext) -> u32 {
    bdev_call_ends();
    0
}

#[inline(always)]
fn bdev_call_begins() {
    mark_bdev_call(bdev_call::MARKS);
}

#[inline(always)]
fn mark_bdev_call(how: u32) {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    if BDEV_CALLS.insert(tid, how, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
}

/// Whether this thread is inside `fs_bdev_freeze`/`fs_bdev_thaw`, whose programs report the
/// freeze or thaw: `freeze_super`/`thaw_super` then report nothing.
#[inline(always)]
fn inside_holder_op() -> bool {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    unsafe { BDEV_CALLS.get(tid) }.is_some_and(|how| *how == bdev_call::REPORTS)
}

/// The filesystem's holder operations on its block device (6.8 on): what a block-device freeze
/// (device-mapper suspend) runs, called through `fs_holder_ops`, so never inlined, whatever the
/// compiler made of the `freeze_super`/`thaw_super` inside (7.3's Debian build inlines the thaw
/// and calls a split-off part of the freeze). Their superblock is the block device's holder.
#[fentry(function = "fs_bdev_freeze")]
pub fn fw_fs_bdev_freeze_entry(ctx: FEntryContext) -> u32 {
    holder_op_begins(&ctx, kind::FREEZE_BEGIN);
    0
}

#[fexit(function = "fs_bdev_freeze")]
pub fn fw_fs_bdev_freeze_exit(ctx: FExitContext) -> u32 {
    holder_op_ends(&ctx);
    0
}

#[fentry(function = "fs_bdev_thaw")]
pub fn fw_fs_bdev_thaw_entry(ctx: FEntryContext) -> u32 {
    holder_op_begins(&ctx, kind::THAW_BEGIN);
    0
}

#[fexit(function = "fs_bdev_thaw")]
pub fn fw_fs_bdev_thaw_exit(ctx: FExitContext) -> u32 {
    holder_op_ends(&ctx);
    0
}

#[inline(always)]
fn holder_op_begins(ctx: &FEntryContext, begin_kind: u32) {
    if off!(valid) == 0 {
        return;
    }
    bump(counter::FENTRY_SEEN);
    hit(hook::FENTRY_FREEZE);
    let bdev = untyped_arg(ctx, 0);
    let sb = read_u64(bdev + off!(bdev_bd_holder)).unwrap_or(0);
    // Marked before the begin, which reads the mark (the freeze is made through the device).
    mark_bdev_call(bdev_call::REPORTS);
    // `fs_bdev_freeze`/`fs_bdev_thaw` pass these to freeze_super/thaw_super.
    on_begin(begin_kind, hook::FENTRY_FREEZE, sb, holder::USERSPACE | holder::MAY_NEST);
}

#[inline(always)]
fn holder_op_ends(ctx: &FExitContext) {
    // fs_bdev_freeze(bdev) and fs_bdev_thaw(bdev): the return value follows the one argument.
    on_end(hook::FENTRY_FREEZE, untyped_arg(ctx, 1) as i32 as i64);
    // Back to the block-device call around it, which still marks what else it calls.
    mark_bdev_call(bdev_call::MARKS);
}

#[inline(always)]
fn bdev_call_ends() {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    let _ = BDEV_CALLS.remove(tid);
}
