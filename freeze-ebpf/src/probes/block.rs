//! Writes queued to a frozen superblock's block device (`block:block_bio_queue`).
use crate::{emit::*, maps::*, read::*};
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use freeze_common::tp::block_bio_queue as bio;
use freeze_common::{counter, hook, kind, level};

#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn fw_block_bio_queue(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BLOCK_BIO_QUEUE);
    // SAFETY: the offsets are inside the tracepoint's record.
    let dev = unsafe { ctx.read_at::<u32>(bio::DEV.offset) }.unwrap_or(0);
    // SAFETY: the key is a plain u32 and the value is copied out at once.
    let watched = unsafe { WATCHED_DEVS.get(&dev) }.copied().or_else(|| {
        // SAFETY: as above.
        let fs_dev = unsafe { BDEV_ALIAS.get(&dev) }.copied()?;
        // SAFETY: as above.
        unsafe { WATCHED_DEVS.get(&fs_dev) }.copied()
    });
    let Some(sb) = watched else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: as above.
    let rwbs = unsafe { ctx.read_at::<[u8; 8]>(bio::RWBS.offset) }.unwrap_or([0; 8]);
    if !rwbs.contains(&b'W') {
        return 0;
    }
    // Writes while the freeze is still syncing (levels 1-3) are the freeze's own writeback.
    let level = read_level(sb);
    if level != level::COMPLETE {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::BLOCK_WRITE, hook::TP_BLOCK_BIO_QUEUE, ts, sb);
    e.level_before = level;
    e.level_after = level;
    // SAFETY: the offsets are inside the tracepoint's record.
    e.arg = unsafe { ctx.read_at::<u64>(bio::SECTOR.offset) }.unwrap_or(0);
    // SAFETY: as above.
    e.flags = unsafe { ctx.read_at::<u32>(bio::NR_SECTOR.offset) }.unwrap_or(0).saturating_mul(512);
    e.bdev = dev;
    e.stack_id = stack_of(&ctx);
    emit(&e);
    0
}
