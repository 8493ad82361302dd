//! Files of a frozen filesystem turning dirty, and the backing files of loop devices under one:
//! the writeback tracepoints, as `tp_btf` (raw tracepoints typed by BTF: no perf event, so their
//! detach waits for nothing). A freeze writes back and cleans every page and inode of the
//! filesystem, so whatever modifies one of its files while it is frozen (a write, an mmap store,
//! io_uring, splice, a kernel writer) turns a clean page or inode dirty and passes here; a steady
//! write load, whose pages are already dirty, almost never does. Nothing runs per write syscall.
use super::write::{Target, backing_modified, write_target};
use crate::{
    emit::{Emit, emit, stack_of},
    maps::{Writing, any_watched, hit},
    read::{read_u64, untyped_arg},
};
use aya_ebpf::{
    macros::btf_tracepoint,
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use freeze_common::{hook, io_op, kind};

/// `I_DIRTY_PAGES`: an inode whose pages turned dirty (each page is reported on its own).
const I_DIRTY_PAGES: u32 = 1 << 2;

/// `writeback_dirty_folio(struct folio *, struct address_space *)`: a clean folio turned dirty.
#[btf_tracepoint(function = "writeback_dirty_folio")]
pub fn fw_dirty_folio(ctx: BtfTracePointContext) -> u32 {
    cache_dirtied(&ctx)
}

/// `writeback_dirty_page(struct page *, struct address_space *)`: its name before folios (5.17).
#[btf_tracepoint(function = "writeback_dirty_page")]
pub fn fw_dirty_page(ctx: BtfTracePointContext) -> u32 {
    cache_dirtied(&ctx)
}

/// A clean folio or page (argument 0; `folio_index` is where either keeps its index) of the
/// file whose pages `mapping` (argument 1) holds turned dirty.
#[inline(always)]
fn cache_dirtied(ctx: &BtfTracePointContext) -> u32 {
    if off!(valid) == 0 || !any_watched() {
        return 0;
    }
    hit(hook::TP_BTF_WRITEBACK);
    let (folio, mapping) = (untyped_arg(ctx, 0), untyped_arg(ctx, 1));
    let Ok(inode) = read_u64(mapping + off!(mapping_host)) else { return 0 };
    let Ok(index) = read_u64(folio + off!(folio_index)) else { return 0 };
    let (pos, page) = (index << off!(page_shift), 1u64 << off!(page_shift));
    match write_target(inode) {
        Some(Target::Own(sb)) => dirtied(ctx, sb, inode, pos as i64, page as u32),
        Some(Target::Backing(sb, extent)) => backing_modified(
            ctx,
            hook::TP_BTF_WRITEBACK,
            &Writing::backing(sb, &extent, pos, page, io_op::FILE_WRITE),
        ),
        None => {}
    }
    0
}

/// `writeback_mark_inode_dirty(struct inode *, int flags)`: an inode's metadata turned dirty
/// (its pages come through `fw_dirty_folio`/`fw_dirty_page`).
#[btf_tracepoint(function = "writeback_mark_inode_dirty")]
pub fn fw_mark_inode_dirty(ctx: BtfTracePointContext) -> u32 {
    if off!(valid) == 0 || !any_watched() {
        return 0;
    }
    hit(hook::TP_BTF_WRITEBACK);
    let (inode, flags) = (untyped_arg(&ctx, 0), untyped_arg(&ctx, 1) as u32);
    if flags & !I_DIRTY_PAGES == 0 {
        return 0;
    }
    if let Some(Target::Own(sb)) = write_target(inode) {
        dirtied(&ctx, sb, inode, -1, flags);
    }
    0
}

/// A page at byte `pos` (`size` bytes) or, with `pos` -1, the inode itself (`size`: its dirty
/// flags) of a file on watched `sb` turned dirty: a slip if `sb` is frozen.
#[inline(always)]
fn dirtied<C: StackIdContext>(ctx: &C, sb: u64, inode: u64, pos: i64, size: u32) {
    let Some(mut e) = Emit::if_frozen(kind::DIRTIED, hook::TP_BTF_WRITEBACK, sb) else { return };
    e.arg = read_u64(inode + off!(inode_i_ino)).unwrap_or(0);
    e.ret = pos;
    e.flags = size;
    e.stack_id = stack_of(ctx);
    emit(&e);
}
