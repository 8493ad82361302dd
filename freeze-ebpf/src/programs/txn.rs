//! Transaction starts: ext4 journal handles, xfs transactions, btrfs (tracepoints, and fexit on
//! the module's functions).
use crate::{
    emit::{Emit, emit, stack_of},
    maps::{FROZEN_SBS, WATCHED_DEVS, WATCHED_UUIDS, bump, hit, offsets_valid},
    read::{read_level, read_u32, read_u64},
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_buf},
    macros::{fexit, raw_tracepoint, tracepoint},
    programs::{FExitContext, RawTracePointContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::tp::{TpField, btrfs, ext4, xfs};
use freeze_common::{counter, hook, kind, level};

/// A transaction start on `sb` (looked up by the caller): emitted while freezing or frozen only.
#[inline(always)]
pub(crate) fn on_txn<C: StackIdContext>(ctx: &C, hook: u32, sb: u64, caller: u64, flags: u32) {
    let level = read_level(sb);
    if level == level::UNFROZEN || level == level::UNKNOWN {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::TXN_START, hook, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.arg = caller;
    e.flags = flags;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

#[inline(always)]
pub(crate) fn watched_dev(dev: u32) -> Option<u64> {
    // SAFETY: the value is copied out at once.
    let sb = unsafe { WATCHED_DEVS.get(dev) }.copied();
    if sb.is_none() {
        bump(counter::FILTERED);
    }
    sb
}

/// A transaction-start tracepoint whose record names the device: the fields' offsets are given
/// (`flags_at` None when the record has no flags), and user space checked them against the
/// format file before attaching.
#[inline(always)]
pub(crate) fn dev_txn(
    ctx: &TracePointContext,
    hook: u32,
    dev: TpField,
    ip: TpField,
    flags: Option<TpField>,
) -> u32 {
    hit(hook);
    // SAFETY: the offsets are inside the tracepoint's record.
    let dev = unsafe { ctx.read_at::<u32>(dev.offset) }.unwrap_or(0);
    if let Some(sb) = watched_dev(dev) {
        // SAFETY: as above.
        let ip = unsafe { ctx.read_at::<u64>(ip.offset) }.unwrap_or(0);
        // SAFETY: as above.
        let flags = flags.map_or(0, |f| unsafe { ctx.read_at::<u32>(f.offset) }.unwrap_or(0));
        on_txn(ctx, hook, sb, ip, flags);
    }
    0
}

#[tracepoint(category = "ext4", name = "ext4_journal_start_sb")]
pub fn fw_ext4_journal_start_sb(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, ext4::SB_DEV, ext4::SB_IP, Some(ext4::SB_TYPE))
}

#[tracepoint(category = "ext4", name = "ext4_journal_start_inode")]
pub fn fw_ext4_journal_start_inode(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, ext4::INODE_DEV, ext4::INODE_IP, Some(ext4::INODE_TYPE))
}

// ext4:ext4_journal_start (up to 6.4, before the _sb/_inode split): no handle type.
#[tracepoint(category = "ext4", name = "ext4_journal_start")]
pub fn fw_ext4_journal_start(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, ext4::START_DEV, ext4::START_IP, None)
}

#[tracepoint(category = "xfs", name = "xfs_trans_alloc")]
pub fn fw_xfs_trans_alloc(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_XFS_TRANS_ALLOC, xfs::DEV, xfs::CALLER_IP, Some(xfs::FLAGS))
}

/// The superblock `sb` when it is freezing or frozen (the raw tracepoints hand over a pointer to
/// it or to something that leads to it, where the tracepoints' records name the device).
#[inline(always)]
fn watched_sb(sb: u64) -> Option<u64> {
    let dev = read_u32(sb + off!(sb_s_dev)).ok()?;
    // SAFETY: the value is copied out at once.
    let watched = unsafe { FROZEN_SBS.get(dev) }.copied();
    if watched != Some(sb) || sb == 0 {
        bump(counter::FILTERED);
        return None;
    }
    watched
}

/// A transaction start on `sb` seen by a raw tracepoint (`hook`).
#[inline(always)]
fn sb_txn(ctx: &RawTracePointContext, hook: u32, sb: u64, ip: u64, flags: u32) -> u32 {
    if let Some(sb) = watched_sb(sb) {
        on_txn(ctx, hook, sb, ip, flags);
    }
    0
}

/// `ext4_journal_start_sb(struct super_block *sb, int blocks, int rsv_blocks, int revoke_creds,
/// int type, unsigned long IP)`.
#[raw_tracepoint(tracepoint = "ext4_journal_start_sb")]
pub fn fw_raw_ext4_journal_start_sb(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_EXT4_JOURNAL_START);
    if !offsets_valid() {
        return 0;
    }
    let (sb, ty, ip): (u64, u64, u64) = (ctx.arg(0), ctx.arg(4), ctx.arg(5));
    sb_txn(&ctx, hook::RAW_TP_EXT4_JOURNAL_START, sb, ip, ty as u32)
}

/// `ext4_journal_start_inode(struct inode *inode, int blocks, int rsv_blocks, int revoke_creds,
/// int type, unsigned long IP)`.
#[raw_tracepoint(tracepoint = "ext4_journal_start_inode")]
pub fn fw_raw_ext4_journal_start_inode(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_EXT4_JOURNAL_START);
    if !offsets_valid() {
        return 0;
    }
    let (inode, ty, ip): (u64, u64, u64) = (ctx.arg(0), ctx.arg(4), ctx.arg(5));
    let sb = read_u64(inode + off!(inode_i_sb)).unwrap_or(0);
    sb_txn(&ctx, hook::RAW_TP_EXT4_JOURNAL_START, sb, ip, ty as u32)
}

/// Up to 6.4: `ext4_journal_start(struct super_block *sb, int blocks, int rsv_blocks,
/// int revoke_creds, unsigned long IP)`, without the handle type.
#[raw_tracepoint(tracepoint = "ext4_journal_start")]
pub fn fw_raw_ext4_journal_start(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_EXT4_JOURNAL_START);
    if !offsets_valid() {
        return 0;
    }
    let (sb, ip): (u64, u64) = (ctx.arg(0), ctx.arg(4));
    sb_txn(&ctx, hook::RAW_TP_EXT4_JOURNAL_START, sb, ip, 0)
}

/// `xfs_trans_alloc(struct xfs_trans *tp, unsigned long caller_ip)`: the superblock is
/// `tp->t_mountp->m_super`.
#[raw_tracepoint(tracepoint = "xfs_trans_alloc")]
pub fn fw_raw_xfs_trans_alloc(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_XFS_TRANS_ALLOC);
    if !offsets_valid() || off!(xfs_mount_m_super) == 0 {
        return 0;
    }
    let (tp, ip): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let sb = read_u64(tp + off!(xfs_trans_t_mountp))
        .and_then(|mp| read_u64(mp + off!(xfs_mount_m_super)))
        .unwrap_or(0);
    let flags = read_u32(tp + off!(xfs_trans_t_flags)).unwrap_or(0);
    sb_txn(&ctx, hook::RAW_TP_XFS_TRANS_ALLOC, sb, ip, flags)
}

/// `fs_info->sb`, or 0.
#[inline(always)]
fn btrfs_sb(fs_info: u64) -> u64 {
    if off!(valid) == 0 || off!(btrfs_fs_info_sb) == 0 {
        return 0;
    }
    read_u64(fs_info + off!(btrfs_fs_info_sb)).unwrap_or(0)
}

/// `btrfs_transaction_commit(const struct btrfs_fs_info *fs_info)`.
#[raw_tracepoint(tracepoint = "btrfs_transaction_commit")]
pub fn fw_raw_btrfs_transaction_commit(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_BTRFS_COMMIT);
    let sb = btrfs_sb(ctx.arg(0));
    sb_txn(&ctx, hook::RAW_TP_BTRFS_COMMIT, sb, 0, 0)
}

/// `btrfs_space_reservation(const struct btrfs_fs_info *fs_info, const char *type, u64 val,
/// u64 bytes, int reserve)`: as the tracepoint, reservations of type "transaction" only.
#[raw_tracepoint(tracepoint = "btrfs_space_reservation")]
pub fn fw_raw_btrfs_space_reservation(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_BTRFS_TXN_RESERVE);
    let (fs_info, ty, bytes, reserve): (u64, u64, u64, u64) =
        (ctx.arg(0), ctx.arg(1), ctx.arg(3), ctx.arg(4));
    if reserve as i32 == 0 {
        return 0;
    }
    let Some(sb) = watched_sb(btrfs_sb(fs_info)) else { return 0 };
    let mut name = [0u8; 12];
    // SAFETY: a bounded copy from kernel memory; it fails instead of faulting.
    if unsafe { bpf_probe_read_kernel_buf(ty as *const u8, &mut name) }.is_err() || &name != b"transaction\0"
    {
        return 0;
    }
    on_txn(&ctx, hook::RAW_TP_BTRFS_TXN_RESERVE, sb, 0, bytes.min(u64::from(u32::MAX)) as u32);
    0
}

// btrfs:btrfs_space_reservation: only reservations of type "transaction" are transaction starts.
#[tracepoint(category = "btrfs", name = "btrfs_space_reservation")]
pub fn fw_btrfs_space_reservation(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BTRFS_TXN_RESERVE);
    // SAFETY: the offsets are inside the tracepoint's record (checked by user space).
    let (fsid, loc, reserve) = unsafe {
        (
            ctx.read_at::<[u8; 16]>(btrfs::FSID.offset).unwrap_or([0; 16]),
            ctx.read_at::<u32>(btrfs::RSV_TYPE.offset).unwrap_or(0),
            ctx.read_at::<i32>(btrfs::RSV_RESERVE.offset).unwrap_or(0),
        )
    };
    if reserve == 0 {
        return 0;
    }
    // SAFETY: the value is copied out at once.
    let Some(sb) = unsafe { WATCHED_UUIDS.get(fsid) }.copied() else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: the data_loc offset points inside the record; the read is bounded to 12 bytes.
    let ty = unsafe { ctx.read_at::<[u8; 12]>((loc & 0xffff) as usize) }.unwrap_or([0; 12]);
    if &ty != b"transaction\0" {
        return 0;
    }
    // SAFETY: as above.
    let bytes = unsafe { ctx.read_at::<u64>(btrfs::RSV_BYTES.offset) }.unwrap_or(0);
    on_txn(&ctx, hook::TP_BTRFS_TXN_RESERVE, sb, 0, bytes.min(u64::from(u32::MAX)) as u32);
    0
}

#[tracepoint(category = "btrfs", name = "btrfs_transaction_commit")]
pub fn fw_btrfs_transaction_commit(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BTRFS_COMMIT);
    // SAFETY: as above.
    let fsid = unsafe { ctx.read_at::<[u8; 16]>(btrfs::FSID.offset) }.unwrap_or([0; 16]);
    // SAFETY: the value is copied out at once.
    match unsafe { WATCHED_UUIDS.get(fsid) }.copied() {
        Some(sb) => on_txn(&ctx, hook::TP_BTRFS_COMMIT, sb, 0, 0),
        None => bump(counter::FILTERED),
    }
    0
}

/// A btrfs transaction handle returned to its caller (fexit; `nargs` is the function's parameter
/// count, the slot after the parameters holds the return value). The start functions reserve
/// space and only then wait at the freeze gate (`sb_start_intwrite`), so the exit is where a
/// start is known to have got past it: a caller still waiting returns only after the thaw.
#[inline(always)]
pub(crate) fn btrfs_txn_exit(ctx: &FExitContext, nargs: usize) -> u32 {
    if off!(valid) == 0 || off!(btrfs_fs_info_sb) == 0 {
        return 0;
    }
    hit(hook::FEXIT_BTRFS_TXN);
    let handle: u64 = ctx.arg(nargs);
    // NULL or ERR_PTR(-errno): no transaction was started.
    if handle == 0 || handle >= (-4095i64) as u64 {
        return 0;
    }
    let root: u64 = ctx.arg(0);
    let sb =
        match read_u64(root + off!(btrfs_root_fs_info)).and_then(|f| read_u64(f + off!(btrfs_fs_info_sb))) {
            Ok(sb) if sb != 0 => sb,
            _ => {
                bump(counter::READ_FAILED);
                return 0;
            }
        };
    // Only superblocks seen freezing while we run, like every other transaction hook.
    let dev = read_u32(sb + off!(sb_s_dev)).unwrap_or(0);
    // SAFETY: the value is only tested for presence.
    if unsafe { FROZEN_SBS.get(dev) }.is_none() {
        bump(counter::FILTERED);
        return 0;
    }
    let items: u64 = if nargs > 1 { ctx.arg(1) } else { 0 };
    on_txn(ctx, hook::FEXIT_BTRFS_TXN, sb, 0, items as u32);
    0
}

// These three are module functions when btrfs is a module: aya attaches fexit to vmlinux BTF
// only, so user space loads them itself (`module_fexit`) with the module's BTF object.
#[fexit(function = "btrfs_start_transaction")]
pub fn fw_btrfs_start_transaction_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 2)
}

#[fexit(function = "btrfs_start_transaction_fallback_global_rsv")]
pub fn fw_btrfs_start_transaction_rsv_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 2)
}

#[fexit(function = "btrfs_join_transaction")]
pub fn fw_btrfs_join_transaction_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 1)
}
