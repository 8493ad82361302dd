//! Mount calls: mount(2), move_mount, fsopen/fsconfig/fsmount, begin and end; where fentry
//! works, at their syscall functions (only those calls pay), with the mounts the kernel attaches
//! itself at `finish_automount`; else from the syscall dispatcher or the syscall tracepoints.
use super::{lsm::source_dev, syscalls::reg_args};
use crate::{
    emit::{Emit, emit_mount, on_end},
    maps::{
        FROZEN_SBS, HELD_MOUNTS, HeldMount, PENDING, Pending, any_watched, bump, deny_mode, hit,
        judged_by_relevance,
    },
    read::{SysArgs, read_level, read_u32, read_u64, sb_from_fd, sys_exit_ret, untyped_arg},
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user_str_bytes},
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use freeze_common::mount_flags::{MS_BIND, MS_MOVE};
use freeze_common::tp::sys;
use freeze_common::{counter, deny, hook, kind, level, mount_api};

/// Starts a pending MOUNT operation for this thread and emits its begin record, or holds it back
/// (`HELD_MOUNTS`) when the call cannot matter yet: nothing is freezing or frozen, or its
/// function's relevance programs will tell. With `--deny-mounts` nothing is held back: a
/// denial names the call its begin record describes.
#[inline(always)]
pub(crate) fn on_mount_begin(
    hook: u32,
    api: u32,
    sb: u64,
    flags: u64,
    source: u64,
    target: u64,
    fstype: u64,
) {
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let level = read_level(sb);
    let pending = Pending {
        sb,
        begin_ts_ns: ts,
        level_before: level,
        begin_kind: kind::MOUNT_BEGIN,
        holder: 0,
        hook,
        flags: 0,
        _pad: 0,
    };
    if PENDING.insert(tid, pending, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    if deny_mode() == deny::OFF && (judged_by_relevance(hook, api) || !any_watched()) {
        let held = HeldMount { source, target, fstype, flags, api, matters: 0 };
        if HELD_MOUNTS.insert(tid, held, 0).is_err() {
            bump(counter::PENDING_FULL);
        }
        return;
    }
    // A record held back for an earlier call whose end was lost must not be sent with this one.
    let _ = HELD_MOUNTS.remove(tid);
    let mut e = Emit::new(kind::MOUNT_BEGIN, hook, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = api;
    e.arg = flags;
    emit_mount(&e, source, target, fstype);
}

/// The held-back call of this thread matters (see `HELD_MOUNTS`).
#[inline(always)]
fn held_call_matters() {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(held) = HELD_MOUNTS.get_ptr_mut(tid) {
        // SAFETY: the pointer comes from the map lookup and points at this thread's entry,
        // which only this thread writes.
        unsafe { (*held).matters = 1 };
    }
}

/// Whether a mount that reaches `sb` can be a mount while frozen: it is not unfrozen (freezing,
/// frozen, thawing, or unreadable).
#[inline(always)]
fn not_unfrozen(sb: u64) -> bool {
    read_level(sb) != level::UNFROZEN
}

/// The superblock a `struct path` lies on, 0 when unreadable.
#[inline(always)]
fn path_sb(path: u64) -> u64 {
    read_u64(path + off!(path_mnt)).and_then(|mnt| read_u64(mnt + off!(vfsmount_mnt_sb))).unwrap_or(0)
}

/// `security_sb_kern_mount(sb)`: mount(2) of a new mount (or fsconfig's create) reaches the
/// superblock it will attach.
#[fentry(function = "security_sb_kern_mount")]
pub fn fw_mount_reaches_sb(ctx: FEntryContext) -> u32 {
    if not_unfrozen(untyped_arg(&ctx, 0)) {
        held_call_matters();
    }
    0
}

/// `security_sb_mount(dev_name, path, type, flags, data)`: every mount(2), before it does
/// anything. It matters when its target lies on a superblock that is not unfrozen (a remount or
/// a propagation change there), or when it binds or moves a source that does or cannot be placed
/// (a path matched against the mount points, as mount denial does).
#[fentry(function = "security_sb_mount")]
pub fn fw_mount_reaches_path(ctx: FEntryContext) -> u32 {
    let (dev_name, path, flags) = (untyped_arg(&ctx, 0), untyped_arg(&ctx, 1), untyped_arg(&ctx, 3));
    let matters = not_unfrozen(path_sb(path))
        || (flags & (MS_BIND | MS_MOVE) != 0
            // SAFETY: the value is only tested for presence.
            && source_dev(dev_name).is_none_or(|dev| unsafe { FROZEN_SBS.get(dev) }.is_some()));
    if matters {
        held_call_matters();
    }
    0
}

/// `security_move_mount(from_path, to_path)`: move_mount(2) attaches `from_path`'s mount.
#[fentry(function = "security_move_mount")]
pub fn fw_move_mount_reaches(ctx: FEntryContext) -> u32 {
    if not_unfrozen(path_sb(untyped_arg(&ctx, 0))) || not_unfrozen(path_sb(untyped_arg(&ctx, 1))) {
        held_call_matters();
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mount")]
pub fn fw_mount_enter(ctx: TracePointContext) -> u32 {
    mount_enter(&ctx, hook::TP_SYS_MOUNT);
    0
}

/// mount(2) entered (`hook` says which program saw it).
#[inline(always)]
pub(crate) fn mount_enter(args: &impl SysArgs, hook: u32) {
    hit(hook);
    if off!(valid) == 0 {
        return;
    }
    let (source, target, fstype, flags) = (
        args.arg(sys::MOUNT_DEV_NAME),
        args.arg(sys::MOUNT_DIR_NAME),
        args.arg(sys::MOUNT_TYPE),
        args.arg(sys::MOUNT_FLAGS),
    );
    on_mount_begin(hook, mount_api::MOUNT, 0, flags, source, target, fstype);
}

#[tracepoint(category = "syscalls", name = "sys_enter_move_mount")]
pub fn fw_move_mount_enter(ctx: TracePointContext) -> u32 {
    move_mount_enter(&ctx, hook::TP_SYS_MOUNT);
    0
}

#[inline(always)]
pub(crate) fn move_mount_enter(args: &impl SysArgs, hook: u32) {
    hit(hook);
    if off!(valid) == 0 {
        return;
    }
    let (from_dfd, from_path, to_path, flags) = (
        args.arg(sys::MOVE_MOUNT_FROM_DFD),
        args.arg(sys::MOVE_MOUNT_FROM_PATHNAME),
        args.arg(sys::MOVE_MOUNT_TO_PATHNAME),
        args.arg(sys::MOVE_MOUNT_FLAGS),
    );
    // With an empty from_pathname (MOVE_MOUNT_F_EMPTY_PATH, how fsmount results are attached)
    // from_dfd is the mount itself: its file's superblock is the one being attached.
    let mut first = [0u8; 2];
    // SAFETY: a bounded copy from user memory.
    let empty = from_path == 0
        || unsafe { bpf_probe_read_user_str_bytes(from_path as *const u8, &mut first) }
            .map_or(true, |s| s.is_empty());
    let sb = if empty { sb_from_fd(from_dfd as u32).unwrap_or(0) } else { 0 };
    on_mount_begin(hook, mount_api::MOVE_MOUNT, sb, flags, from_path, to_path, 0);
}

// Field offsets: freeze_common::tp::sys. Their exits share on_end with mount(2).
#[tracepoint(category = "syscalls", name = "sys_enter_fsopen")]
pub fn fw_fsopen_enter(ctx: TracePointContext) -> u32 {
    fsopen_enter(&ctx, hook::TP_SYS_MOUNT);
    0
}

#[inline(always)]
pub(crate) fn fsopen_enter(args: &impl SysArgs, hook: u32) {
    if off!(valid) == 0 {
        return;
    }
    hit(hook);
    on_mount_begin(hook, mount_api::FSOPEN, 0, 0, 0, 0, args.arg(sys::FSOPEN_FS_NAME));
}

pub(crate) const FSCONFIG_SET_STRING: u64 = 1;

#[tracepoint(category = "syscalls", name = "sys_enter_fsconfig")]
pub fn fw_fsconfig_enter(ctx: TracePointContext) -> u32 {
    fsconfig_enter(&ctx, hook::TP_SYS_MOUNT);
    0
}

#[inline(always)]
pub(crate) fn fsconfig_enter(args: &impl SysArgs, hook: u32) {
    if off!(valid) == 0 {
        return;
    }
    hit(hook);
    let (cmd, key, value) =
        (args.arg(sys::FSCONFIG_CMD), args.arg(sys::FSCONFIG_KEY), args.arg(sys::FSCONFIG_VALUE));
    // Only string settings have a readable value; other commands keep the key alone.
    let value = if cmd == FSCONFIG_SET_STRING { value } else { 0 };
    on_mount_begin(hook, mount_api::FSCONFIG, 0, cmd, key, value, 0);
}

#[tracepoint(category = "syscalls", name = "sys_enter_fsmount")]
pub fn fw_fsmount_enter(ctx: TracePointContext) -> u32 {
    fsmount_enter(&ctx, hook::TP_SYS_MOUNT);
    0
}

#[inline(always)]
pub(crate) fn fsmount_enter(args: &impl SysArgs, hook: u32) {
    if off!(valid) == 0 {
        return;
    }
    hit(hook);
    on_mount_begin(hook, mount_api::FSMOUNT, 0, args.arg(sys::FSMOUNT_FLAGS), 0, 0, 0);
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsopen")]
pub fn fw_fsopen_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsconfig")]
pub fn fw_fsconfig_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsmount")]
pub fn fw_fsmount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

/// The exit of any mount-family call: ends the thread's pending MOUNT operation.
#[inline(always)]
pub(crate) fn mount_call_exit(ctx: &TracePointContext) -> u32 {
    let ret = sys_exit_ret(ctx).unwrap_or(0);
    on_end(hook::TP_SYS_MOUNT, ret);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mount")]
pub fn fw_mount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_move_mount")]
pub fn fw_move_mount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

/// fentry/fexit on a mount call's syscall function, `long __x64_sys_NAME(const struct pt_regs *)`:
/// the same handler as the dispatcher's, on the same registers; the return value follows the
/// argument.
macro_rules! mount_syscall {
    ($entry:ident, $exit:ident, $func:literal, $handler:ident) => {
        #[fentry(function = $func)]
        pub fn $entry(ctx: FEntryContext) -> u32 {
            let regs: *const u8 = ctx.arg(0);
            if !regs.is_null() {
                $handler(&reg_args(regs), hook::FENTRY_SYS_MOUNT);
            }
            0
        }

        #[fexit(function = $func)]
        pub fn $exit(ctx: FExitContext) -> u32 {
            on_end(hook::FENTRY_SYS_MOUNT, untyped_arg(&ctx, 1) as i64);
            0
        }
    };
}

mount_syscall!(fw_sys_mount_entry, fw_sys_mount_exit, "__x64_sys_mount", mount_enter);
mount_syscall!(fw_sys_move_mount_entry, fw_sys_move_mount_exit, "__x64_sys_move_mount", move_mount_enter);
mount_syscall!(fw_sys_fsopen_entry, fw_sys_fsopen_exit, "__x64_sys_fsopen", fsopen_enter);
mount_syscall!(fw_sys_fsconfig_entry, fw_sys_fsconfig_exit, "__x64_sys_fsconfig", fsconfig_enter);
mount_syscall!(fw_sys_fsmount_entry, fw_sys_fsmount_exit, "__x64_sys_fsmount", fsmount_enter);

/// `int finish_automount(struct vfsmount *m, const struct path *path)`: a mount the kernel made
/// for a path walk (an automount) joins the tree. Inside a mount call (a pending operation of
/// this thread) that call's own events tell what it mounts; outside one, a MOUNT_BEGIN of API
/// `automount` for the mount's superblock, `arg` its mount id (`m` is the `mnt` inside its
/// `struct mount`).
#[fentry(function = "finish_automount")]
pub fn fw_automount_entry(ctx: FEntryContext) -> u32 {
    hit(hook::FENTRY_AUTOMOUNT);
    if off!(valid) == 0 || off!(mount_mnt_id) == 0 {
        return 0;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { PENDING.get(tid) }.is_some() {
        return 0;
    }
    let mnt = untyped_arg(&ctx, 0);
    let Ok(sb) = read_u64(mnt + off!(vfsmount_mnt_sb)) else {
        bump(counter::READ_FAILED);
        return 0;
    };
    let id = read_u32(mnt.wrapping_sub(off!(mount_mnt)) + off!(mount_mnt_id)).unwrap_or(0);
    on_mount_begin(hook::FENTRY_AUTOMOUNT, mount_api::AUTOMOUNT, sb, u64::from(id), 0, 0, 0);
    0
}

/// Its int return value follows its two arguments; `on_end` ends only the operation its entry
/// began.
#[fexit(function = "finish_automount")]
pub fn fw_automount_exit(ctx: FExitContext) -> u32 {
    on_end(hook::FENTRY_AUTOMOUNT, untyped_arg(&ctx, 2) as i32 as i64);
    0
}
