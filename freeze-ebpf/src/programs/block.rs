//! Modifying bios (writes, discards, secure erases, write-zeroes) queued to a frozen filesystem's
//! storage (`block:block_bio_queue`): its own block device, a btrfs member, or a lower layer's
//! range that holds it (a partition's disk, a device-mapper target's device).
use crate::{
    emit::{Emit, emit, stack_of},
    maps::{BDEV_ALIAS, LOWER_EXTENTS, WATCHED_DEVS, bump, hit, offsets_valid},
    read::{frozen_sb_of, read_u32, read_u64},
};
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::tp::block_bio_queue as bio;
use freeze_common::{EXTENTS_PER_DEV, ExtentKey, counter, hook, io_op, kind};

#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn fw_block_bio_queue(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BLOCK_BIO_QUEUE);
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
    on_bio(&ctx, hook::TP_BLOCK_BIO_QUEUE, op, dev, sector, sectors);
    0
}

/// `block_bio_queue(struct bio *bio)`: the fields the tracepoint's record holds, read from the
/// bio itself (`bio_dev()`, `bi_iter.bi_sector`, `bio_sectors()`, the op of `bi_opf`).
#[raw_tracepoint(tracepoint = "block_bio_queue")]
pub fn fw_raw_block_bio_queue(ctx: RawTracePointContext) -> u32 {
    hit(hook::RAW_TP_BLOCK_BIO_QUEUE);
    if !offsets_valid() {
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
    on_bio(&ctx, hook::RAW_TP_BLOCK_BIO_QUEUE, op, dev, sector, bytes >> 9);
    0
}

/// A modifying bio of `sectors` at `sector` of `dev`: emitted when that is a frozen
/// filesystem's storage.
#[inline(always)]
fn on_bio<C: StackIdContext>(ctx: &C, hook: u32, op: u32, dev: u32, sector: u64, sectors: u32) {
    let Some(sb) = own_device(dev).or_else(|| lower_extent(dev, sector, sectors)) else {
        bump(counter::FILTERED);
        return;
    };
    // Writes while the freeze is still syncing (levels 1-3) are the freeze's own writeback.
    let Some(mut e) = Emit::if_frozen(kind::BLOCK_WRITE, hook, sb) else { return };
    e.arg = sector;
    e.flags = sectors.saturating_mul(512);
    e.bdev = dev;
    e.io_op = op;
    e.stack_id = stack_of(ctx);
    emit(&e);
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
