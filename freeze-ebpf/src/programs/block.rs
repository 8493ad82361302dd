//! Modifying bios (writes, discards, secure erases, write-zeroes) queued to a frozen filesystem's
//! storage (`block:block_bio_queue`): its own block device, a btrfs member, a lower layer's
//! range that holds it (a partition's disk, a device-mapper target's device, the blocks of its
//! backing file on the device below), or any loop device over its backing file. A bio no map
//! judges while the maps may be older than the storage goes to user space to be judged there.
use super::write::writing_a_backing_file;
use crate::{
    emit::{Emit, emit, stack_of},
    maps::{
        BACKING_FILES, BDEV_ALIAS, LOOPS_MAPPED, LOWER_EXTENTS, WATCHED_DEVS, any_watched, bump, hit,
        maps_behind, offsets_valid,
    },
    read::{frozen_sb_of, is_frozen, read_u32, read_u64},
};
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::tp::block_bio_queue as bio;
use freeze_common::{EXTENTS_PER_DEV, ExtentKey, InodeKey, counter, hook, io_op, kdev, kind};

#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn fw_block_bio_queue(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BLOCK_BIO_QUEUE);
    // Nothing freezing or frozen: no bio can matter.
    if !any_watched() {
        return 0;
    }
    // SAFETY: the offsets are inside the tracepoint's record.
    let rwbs = unsafe { ctx.read_at::<[u8; 8]>(bio::RWBS.offset) }.unwrap_or([0; 8]);
    // SAFETY: as above.
    let sectors = unsafe { ctx.read_at::<u32>(bio::NR_SECTOR.offset) }.unwrap_or(0);
    // Reads, flushes and empty bios change nothing: they cost one read of the record.
    let Some(op) = io_op::from_rwbs(&rwbs, sectors) else { return 0 };
    // SAFETY: as above.
    let dev = unsafe { ctx.read_at::<u32>(bio::DEV.offset) }.unwrap_or(0);
    // SAFETY: as above.
    let sector = unsafe { ctx.read_at::<u64>(bio::SECTOR.offset) }.unwrap_or(0);
    on_bio(&ctx, hook::TP_BLOCK_BIO_QUEUE, op, Bio { dev, bdev: 0, sector, sectors });
    0
}

/// `block_bio_queue(struct bio *bio)`: the fields the tracepoint's record holds, read from the
/// bio itself (`bio_dev()`, `bi_iter.bi_sector`, `bio_sectors()`, the op of `bi_opf`).
#[raw_tracepoint(tracepoint = "block_bio_queue")]
pub fn fw_raw_block_bio_queue(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_BLOCK_BIO_QUEUE);
    if !offsets_valid() || !any_watched() {
        return 0;
    }
    let bio: u64 = ctx.arg(0);
    let (Ok(opf), Ok(bytes)) = (read_u32(bio + off!(bio_bi_opf)), read_u32(bio + off!(bio_bi_size))) else {
        return 0;
    };
    let Some(op) = io_op::from_opf(opf, bytes) else { return 0 };
    let Ok(bdev) = read_u64(bio + off!(bio_bi_bdev)) else { return 0 };
    let dev = read_u32(bdev + off!(bdev_bd_dev)).unwrap_or(0);
    let sector = read_u64(bio + off!(bio_bi_sector)).unwrap_or(0);
    on_bio(&ctx, hook::RAW_TP_BLOCK_BIO_QUEUE, op, Bio { dev, bdev, sector, sectors: bytes >> 9 });
    0
}

/// A modifying bio of `sectors` at `sector` of `dev`.
#[derive(Clone, Copy)]
struct Bio {
    dev: u32,
    /// Its `struct block_device`; 0 where the hook does not give it (the tracepoint's record).
    bdev: u64,
    sector: u64,
    sectors: u32,
}

/// `LOOP_MAJOR` (include/uapi/linux/major.h): every loop device's major number.
const LOOP_MAJOR: u32 = 7;

/// A modifying bio: emitted when it lands on a frozen filesystem's storage.
#[inline(always)]
fn on_bio<C: StackIdContext>(ctx: &C, hook: u32, op: u32, bio: Bio) {
    let Bio { dev, bdev, sector, sectors } = bio;
    // A device can be one filesystem's own and, below it, hold another's storage (the blocks of
    // a loop device's backing file): a frozen one of either decides.
    // 0 for "none": an Option kept across the branches below makes LLVM copy its payload
    // uninitialised when it is None, which the verifier refuses.
    let own = own_device(dev).unwrap_or(0);
    let sb = if own != 0 && is_frozen(own) {
        own
    } else {
        let below =
            lower_extent(dev, sector, sectors).or_else(|| over_a_backing_file(bdev, dev, sector, sectors));
        match below {
            Some(sb) if !writing_a_backing_file() => sb,
            _ => own,
        }
    };
    if sb == 0 {
        if own == 0 && unmapped(dev, bdev) && !writing_a_backing_file() {
            // SAFETY: the helper has no preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            send(ctx, Emit::new(kind::UNMAPPED_BIO, hook, now, 0), op, bio);
        } else {
            bump(counter::FILTERED);
        }
        return;
    }
    // Writes while the freeze is still syncing (levels 1-3) are the freeze's own writeback.
    if let Some(e) = Emit::if_frozen(kind::BLOCK_WRITE, hook, sb) {
        send(ctx, e, op, bio);
    }
}

/// Sends `e` with the bio's fields (`kind::BLOCK_WRITE`, `kind::UNMAPPED_BIO`).
#[inline(always)]
fn send<C: StackIdContext>(ctx: &C, mut e: Emit, op: u32, bio: Bio) {
    e.arg = bio.sector;
    e.flags = bio.sectors.saturating_mul(512);
    e.bdev = bio.dev;
    e.io_op = op;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

/// Whether a bio no map judged may still be a slip: the maps are older than the newest freeze
/// (a layer set up just before it may be missing), or `dev` is a loop device bound since they
/// were read where the kernel cannot judge loop devices itself (no `bdev`, or no loop BTF).
/// Only while something is freezing or frozen (`on_bio`'s callers), and only until user space
/// has read the storage layers again.
#[inline(always)]
fn unmapped(dev: u32, bdev: u64) -> bool {
    if maps_behind() {
        return true;
    }
    let judged_here = bdev != 0 && off!(loop_lo_backing_file) != 0;
    // SAFETY: the value is only tested for presence.
    kdev::split(dev).0 == LOOP_MAJOR && !judged_here && unsafe { LOOPS_MAPPED.get(dev) }.is_none()
}

/// The watched superblock whose own device (or btrfs member) `dev` is.
#[inline(always)]
fn own_device(dev: u32) -> Option<u64> {
    // SAFETY: the key is a plain u32 and the value is copied out at once.
    unsafe { WATCHED_DEVS.get(dev) }.copied().or_else(|| {
        // SAFETY: as above.
        let fs_dev = unsafe { BDEV_ALIAS.get(dev) }.copied()?;
        // SAFETY: as above.
        unsafe { WATCHED_DEVS.get(fs_dev) }.copied()
    })
}

/// The frozen superblock one of whose lower extents on `dev` the bio overlaps.
#[inline(always)]
fn lower_extent(dev: u32, sector: u64, sectors: u32) -> Option<u64> {
    let end = sector.saturating_add(u64::from(sectors));
    let mut slot = 0;
    while slot < EXTENTS_PER_DEV {
        // SAFETY: the value is copied out at once.
        let extent = unsafe { LOWER_EXTENTS.get(ExtentKey { dev, slot }) }.copied()?;
        if sector < extent.end
            && extent.first < end
            && let Some(sb) = frozen_sb_of(extent.fs_dev)
        {
            return Some(sb);
        }
        slot += 1;
    }
    None
}

/// The frozen superblock whose backing file the loop device `bdev` reads, where the bio's bytes
/// of that file are the part the filesystem's own loop device maps: any loop device over it,
/// however and whenever it was set up, judged here, before user space has mapped it. Needs the
/// loop driver's BTF (`loop_device` offsets 0 otherwise: the storage maps alone judge then).
#[inline(always)]
fn over_a_backing_file(bdev: u64, dev: u32, sector: u64, sectors: u32) -> Option<u64> {
    if bdev == 0 || kdev::split(dev).0 != LOOP_MAJOR || off!(loop_lo_backing_file) == 0 {
        return None;
    }
    let disk = read_u64(bdev + off!(bdev_bd_disk)).ok()?;
    let lo = read_u64(disk + off!(gendisk_private_data)).ok()?;
    let file = read_u64(lo + off!(loop_lo_backing_file)).ok().filter(|f| *f != 0)?;
    let lo_offset = read_u64(lo + off!(loop_lo_offset)).ok()?;
    let inode = read_u64(file + off!(file_f_inode)).ok()?;
    let sb = read_u64(inode + off!(inode_i_sb)).ok()?;
    let key = InodeKey {
        dev: read_u32(sb + off!(sb_s_dev)).ok()?,
        _pad: 0,
        ino: read_u64(inode + off!(inode_i_ino)).ok()?,
    };
    // SAFETY: the value is copied out at once.
    let extent = unsafe { BACKING_FILES.get(key) }.copied()?;
    let first = lo_offset.saturating_add(sector.saturating_mul(512));
    let end = first.saturating_add(u64::from(sectors) * 512);
    if first < extent.end && extent.first < end { frozen_sb_of(extent.fs_dev) } else { None }
}
