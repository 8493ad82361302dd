//! Every syscall freezewatch watches, from one pair of programs on the raw syscall tracepoints
//! (`tp_btf` on `sys_enter` / `sys_exit`) that dispatch on the syscall number to the handlers the
//! `syscalls:sys_*` tracepoint programs share. Each of those tracepoints attaches through a perf
//! event whose detach waits for RCU grace periods under a kernel-wide mutex (35 ms apiece on
//! the 6.18 machines of docs/benchmarks.md, "start and stop": sixteen of them were 0.6 s of every
//! exit); a raw tracepoint link detaches at once. Either way
//! every task's syscalls take the kernel's traced slow path while attached; with the dispatcher
//! each one also runs this program to its number's comparisons.
use super::{backing, freeze, mount};
use crate::{emit::on_end, maps::SYSCALL_FEATURES, read::RegArgs};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use freeze_common::{hook, pt_regs, syscall_feature as feature, syscall_nr as nr};

/// A register of the syscall's `struct pt_regs`.
#[inline(always)]
fn reg(regs: *const u8, offset: usize) -> u64 {
    // SAFETY: `regs` is the tracepoint's BTF-typed `struct pt_regs *`: the verifier checks a load
    // at a constant offset against the type and turns a fault into zero.
    unsafe { core::ptr::read_volatile(regs.wrapping_add(offset) as *const u64) }
}

/// A syscall's six arguments, from its BTF-typed `struct pt_regs *` (the dispatcher's, or the
/// argument of an `__x64_sys_*` function under fentry).
#[inline(always)]
pub(crate) fn reg_args(regs: *const u8) -> RegArgs {
    RegArgs(pt_regs::ARGS.map(|offset| reg(regs, offset)))
}

/// The features user space pointed here (`freeze_common::syscall_feature`).
#[inline(always)]
fn features() -> u32 {
    SYSCALL_FEATURES.get(0).copied().unwrap_or(0)
}

/// Whether freezewatch watches syscall `id` at all: every other syscall ends here.
#[inline(always)]
fn watched(id: u64) -> bool {
    matches!(
        id,
        nr::IOCTL
            | nr::MOUNT
            | nr::MOVE_MOUNT
            | nr::FSOPEN
            | nr::FSCONFIG
            | nr::FSMOUNT
            | nr::FALLOCATE
            | nr::FTRUNCATE
    )
}

/// Whether `regs` are a 64-bit task's syscall's: ia32 syscalls have numbers of their own.
#[inline(always)]
fn native(regs: *const u8) -> bool {
    !regs.is_null() && reg(regs, pt_regs::CS) & 0xffff == pt_regs::USER_CS
}

/// `sys_enter(struct pt_regs *regs, long id)`.
#[btf_tracepoint(function = "sys_enter")]
pub fn fw_sys_enter(ctx: BtfTracePointContext) -> u32 {
    let id: u64 = ctx.arg(1);
    if !watched(id) {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    if !native(regs) {
        return 0;
    }
    let on = features();
    let args = reg_args(regs);
    match id {
        nr::IOCTL => {
            if on & feature::FREEZE != 0 {
                freeze::ioctl_enter(&ctx, &args, hook::TP_BTF_SYS_IOCTL);
            }
            if on & feature::LEVEL_PROBE != 0 {
                freeze::level_probe(&args, hook::TP_BTF_SYS_IOCTL);
            }
        }
        nr::MOUNT if on & feature::MOUNTS != 0 => mount::mount_enter(&args, hook::TP_BTF_SYS_MOUNT),
        nr::MOVE_MOUNT if on & feature::MOUNTS != 0 => mount::move_mount_enter(&args, hook::TP_BTF_SYS_MOUNT),
        nr::FSOPEN if on & feature::MOUNTS != 0 => mount::fsopen_enter(&args, hook::TP_BTF_SYS_MOUNT),
        nr::FSCONFIG if on & feature::MOUNTS != 0 => mount::fsconfig_enter(&args, hook::TP_BTF_SYS_MOUNT),
        nr::FSMOUNT if on & feature::MOUNTS != 0 => mount::fsmount_enter(&args, hook::TP_BTF_SYS_MOUNT),
        nr::FALLOCATE if on & feature::BACKING != 0 => {
            backing::fallocate_enter(&args, hook::TP_BTF_SYS_FALLOCATE)
        }
        nr::FTRUNCATE if on & feature::BACKING != 0 => {
            backing::ftruncate_enter(&args, hook::TP_BTF_SYS_FTRUNCATE)
        }
        _ => {}
    }
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`: the number is the registers' `orig_ax`.
#[btf_tracepoint(function = "sys_exit")]
pub fn fw_sys_exit(ctx: BtfTracePointContext) -> u32 {
    let regs: *const u8 = ctx.arg(0);
    if regs.is_null() {
        return 0;
    }
    let id = reg(regs, pt_regs::ORIG_AX);
    if !watched(id) || !native(regs) {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    let on = features();
    match id {
        nr::IOCTL if on & feature::FREEZE != 0 => on_end(hook::TP_BTF_SYS_IOCTL, ret),
        nr::MOUNT | nr::MOVE_MOUNT | nr::FSOPEN | nr::FSCONFIG | nr::FSMOUNT if on & feature::MOUNTS != 0 => {
            on_end(hook::TP_BTF_SYS_MOUNT, ret)
        }
        nr::FALLOCATE if on & feature::BACKING != 0 => {
            backing::backing_exit(&ctx, hook::TP_BTF_SYS_FALLOCATE, ret)
        }
        nr::FTRUNCATE if on & feature::BACKING != 0 => {
            backing::backing_exit(&ctx, hook::TP_BTF_SYS_FTRUNCATE, ret)
        }
        _ => {}
    }
    0
}
