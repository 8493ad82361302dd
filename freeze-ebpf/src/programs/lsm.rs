//! Mount denial (BPF LSM), loaded only with --deny-mounts.
use crate::{
    emit::{Emit, emit},
    maps::{FROZEN_SBS, MOUNT_PATHS, PATH_SCRATCH, deny_mode, hit},
    read::{read_level, read_u64},
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes},
    macros::lsm,
    programs::LsmContext,
};
use freeze_common::{
    PATH_KEY_BYTES,
    mount_flags::{MS_BIND, MS_REMOUNT},
};
use freeze_common::{deny, hook, kind, level, lsm_hook};

// ---- Mount denial (BPF LSM) -------------------------------------------------------------------
//
// Loaded only with --deny-mounts. Each program finds the superblock a mount would expose and
// reads that superblock's own freeze level: the gate is closed exactly while the kernel says it is
// freezing or frozen (nested holders included), and nothing is counted here. Every error allows
// the mount (fail open), and a verdict already given by an earlier LSM is passed on untouched.

pub(crate) const EPERM: i32 = 1;

#[inline(always)]
pub(crate) fn mount_gate(lsm: u64, sb: u64) -> i32 {
    let mode = deny_mode();
    if mode == deny::OFF || sb == 0 || off!(valid) == 0 {
        return 0;
    }
    let level = read_level(sb);
    if level == level::UNFROZEN || level == level::UNKNOWN {
        return 0;
    }
    let verdict = if mode == deny::ENFORCE { -EPERM } else { 0 };
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::MOUNT_DENIED, hook::LSM_MOUNT, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = mode;
    e.arg = lsm;
    e.ret = verdict as i64;
    emit(&e);
    verdict
}

/// mount(2) of a filesystem's device (a new mount of an existing superblock) reaches here with
/// the superblock, before the mount is attached.
#[lsm(hook = "sb_kern_mount")]
pub fn fw_lsm_sb_kern_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    mount_gate(lsm_hook::SB_KERN_MOUNT, ctx.arg(0))
}

/// move_mount(2) attaches a detached mount (fsmount, open_tree): its superblock is
/// `from_path->mnt->mnt_sb`.
#[lsm(hook = "move_mount")]
pub fn fw_lsm_move_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(2);
    if retval != 0 {
        return retval;
    }
    let from_path: u64 = ctx.arg(0);
    let sb = read_u64(from_path + off!(path_mnt)).and_then(|mnt| read_u64(mnt + off!(vfsmount_mnt_sb)));
    mount_gate(lsm_hook::MOVE_MOUNT, sb.unwrap_or(0))
}

/// A bind mount: the LSM sees only the source path string (the kernel resolves it afterwards),
/// so the filesystem it lies on is found by longest-prefix match against the mount points.
#[lsm(hook = "sb_mount")]
pub fn fw_lsm_sb_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(5);
    if retval != 0 {
        return retval;
    }
    let flags: u64 = ctx.arg(3);
    if flags & MS_BIND == 0 || flags & MS_REMOUNT != 0 {
        return 0;
    }
    mount_gate(lsm_hook::SB_MOUNT_BIND, bind_source_sb(ctx.arg(0)).unwrap_or(0))
}

/// The superblock (seen freezing while we run) that the absolute path `dev_name` lies on.
#[inline(always)]
pub(crate) fn bind_source_sb(dev_name: u64) -> Option<u64> {
    let dev = source_dev(dev_name)?;
    // SAFETY: the key is a plain u32 and the value is copied out at once.
    unsafe { FROZEN_SBS.get(dev) }.copied()
}

/// The device of the mount point that the absolute path `dev_name` (a kernel string) lies
/// under, by longest prefix; None when it cannot be placed (relative, too long, unreadable).
#[inline(always)]
pub(crate) fn source_dev(dev_name: u64) -> Option<u32> {
    let key = PATH_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the pointer comes from the map lookup and is this CPU's slot; nothing else on this
    // CPU uses it while the program runs.
    let key = unsafe { &mut *key };
    // SAFETY: the helper bounds the copy by the destination and fails instead of faulting.
    let len = unsafe { bpf_probe_read_kernel_str_bytes(dev_name as *const u8, &mut key.data) }.ok()?.len();
    if len == 0 || key.data[0] != b'/' {
        return None; // relative source: not matched (fail open)
    }
    // Mount points are stored with a trailing '/', so "/mnt/a" matches "/mnt/a/..." only.
    let mut bytes = len;
    if key.data[(len - 1) & (PATH_KEY_BYTES - 1)] != b'/' {
        if len >= PATH_KEY_BYTES {
            return None;
        }
        key.data[len & (PATH_KEY_BYTES - 1)] = b'/';
        bytes = len + 1;
    }
    key.prefix_len = (bytes * 8) as u32;
    MOUNT_PATHS.get(&*key).copied()
}
