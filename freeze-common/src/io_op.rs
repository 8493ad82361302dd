/// Not a block-layer modification (events of other kinds).
pub const NONE: u32 = 0;
pub const WRITE: u32 = 1;
pub const DISCARD: u32 = 2;
pub const SECURE_ERASE: u32 = 3;
/// `N` in rwbs: REQ_OP_WRITE_ZEROES (BLKZEROOUT), or a zone operation on a zoned device.
pub const WRITE_ZEROES: u32 = 4;
/// A write to a loop device's backing file (write syscalls, `vfs_write`, or a page of it
/// turning dirty).
pub const FILE_WRITE: u32 = 5;
/// fallocate(2) FALLOC_FL_PUNCH_HOLE on a loop device's backing file.
pub const FILE_PUNCH_HOLE: u32 = 6;
/// ftruncate(2) of a loop device's backing file (everything from the new size on).
pub const FILE_TRUNCATE: u32 = 7;
/// fallocate(2) FALLOC_FL_ZERO_RANGE on a loop device's backing file.
pub const FILE_ZERO_RANGE: u32 = 8;
/// fallocate(2) FALLOC_FL_COLLAPSE_RANGE or INSERT_RANGE: everything after the offset moves.
pub const FILE_SHIFT_RANGE: u32 = 9;

/// The op of a bio from its `bi_opf` (what `blk_fill_rwbs()` turns into the letters
/// `from_rwbs` reads: the same answer for the same bio); `None` for reads, flushes and empty
/// bios.
pub const fn from_opf(opf: u32, bytes: u32) -> Option<u32> {
    if bytes >> 9 == 0 {
        return None;
    }
    use super::req_op as op;
    match opf & op::MASK {
        op::READ | op::FLUSH => None,
        op::WRITE => Some(WRITE),
        op::DISCARD => Some(DISCARD),
        op::SECURE_ERASE => Some(SECURE_ERASE),
        // `N`: write-zeroes, and the zone operations.
        _ => Some(WRITE_ZEROES),
    }
}

/// The op of a bio from its `rwbs` letters; `None` for reads, flushes and empty bios (they
/// change no data).
pub const fn from_rwbs(rwbs: &[u8; 8], sectors: u32) -> Option<u32> {
    if sectors == 0 {
        return None;
    }
    // A leading F is a preflush when an op letter follows it; alone it is the flush op.
    let i = if rwbs[0] == b'F' && matches!(rwbs[1], b'W' | b'D' | b'N' | b'R' | b'F') { 1 } else { 0 };
    match rwbs[i] {
        b'W' => Some(WRITE),
        b'D' if rwbs[i + 1] == b'E' => Some(SECURE_ERASE),
        b'D' => Some(DISCARD),
        b'N' => Some(WRITE_ZEROES),
        _ => None,
    }
}
