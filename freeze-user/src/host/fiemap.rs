//! Where a file's bytes lie on its filesystem's device: the FIEMAP ioctl (Documentation/
//! filesystems/fiemap.rst). Read without FIEMAP_FLAG_SYNC, so it never writes anything back and
//! never waits at a freeze gate.
use std::{io, os::fd::AsRawFd as _};

/// One extent as the filesystem reports it, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset on the filesystem's device (for btrfs: its own logical address space).
    pub physical: u64,
    pub len: u64,
    /// `FIEMAP_EXTENT_*`.
    pub flags: u32,
}

/// The flags of `struct fiemap_extent` (uapi linux/fiemap.h) this crate reads.
pub mod flag {
    pub const LAST: u32 = 0x0001;
    /// Where the data is, is not known (yet).
    pub const UNKNOWN: u32 = 0x0002;
    /// Delayed allocation: no block yet.
    pub const DELALLOC: u32 = 0x0004;
    /// Compressed or otherwise encoded: not the file's bytes, one for one.
    pub const ENCODED: u32 = 0x0008;
    /// Data inline in metadata: not in a block of its own.
    pub const DATA_INLINE: u32 = 0x0200;
    /// Several files' tails packed into one block.
    pub const DATA_TAIL: u32 = 0x0400;
    /// Allocated, not written yet (reads as zeros): placed all the same.
    pub const UNWRITTEN: u32 = 0x0800;
}

impl FileExtent {
    /// Whether `physical` is where the bytes are, one for one, on the device.
    pub fn is_placed(&self) -> bool {
        use flag::*;
        self.flags & (UNKNOWN | DELALLOC | ENCODED | DATA_INLINE | DATA_TAIL) == 0
    }
}

/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
/// `struct fiemap` before its extents; each `struct fiemap_extent` after it.
const HEADER_BYTES: usize = 32;
const EXTENT_BYTES: usize = 56;
/// Extents asked for per call.
const BATCH: usize = 128;
/// A file in more pieces than this is cut there (the maps could not hold them anyway).
pub const MAX_EXTENTS: usize = 16_384;

/// Every extent of the file at `path`, in file order (at most [`MAX_EXTENTS`]).
pub fn extents(path: &str) -> io::Result<Vec<FileExtent>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    // u64 words: the ioctl's structures are 8-byte aligned.
    let mut buf = vec![0u64; (HEADER_BYTES + BATCH * EXTENT_BYTES) / 8];
    let mut start = 0u64;
    loop {
        buf.fill(0);
        buf[0] = start;
        buf[1] = u64::MAX - start;
        // Little-endian words: fm_flags is the low half of buf[2], fm_mapped_extents its high
        // half; fm_extent_count the low half of buf[3].
        buf[3] = BATCH as u64;
        // SAFETY: the fd is open; buf is a `struct fiemap` followed by room for BATCH extents,
        // which is what fm_extent_count says, and outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mapped = (buf[2] >> 32) as usize;
        let got: Vec<FileExtent> = (0..mapped.min(BATCH))
            .map(|i| {
                let w = (HEADER_BYTES + i * EXTENT_BYTES) / 8;
                FileExtent {
                    logical: buf[w],
                    physical: buf[w + 1],
                    len: buf[w + 2],
                    flags: buf[w + 5] as u32,
                }
            })
            .collect();
        let Some(last) = got.last().copied() else { break };
        out.extend(got);
        if last.flags & flag::LAST != 0 || out.len() >= MAX_EXTENTS || last.len == 0 {
            break;
        }
        start = last.logical.saturating_add(last.len);
    }
    out.truncate(MAX_EXTENTS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_has_placed_extents_covering_its_bytes_and_a_sparse_one_has_none() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let sparse = dir.path().join("sparse");
        std::fs::File::create(&sparse).expect("create").set_len(1 << 20).expect("len");
        let written = dir.path().join("written");
        let mut f = std::fs::File::create(&written).expect("create");
        f.write_all(&[7u8; 64 << 10]).expect("write");
        f.sync_all().expect("sync");
        let Ok(sparse_extents) = extents(sparse.to_str().expect("utf-8")) else {
            // tmpfs (the guests' /tmp) has no FIEMAP: nothing to check there.
            return;
        };
        assert!(sparse_extents.is_empty(), "{sparse_extents:?}");
        let got = extents(written.to_str().expect("utf-8")).expect("fiemap");
        let placed: u64 = got.iter().filter(|e| e.is_placed()).map(|e| e.len).sum();
        assert!(placed >= 64 << 10, "{got:?}");
        assert!(got.last().is_some_and(|e| e.flags & flag::LAST != 0), "{got:?}");
    }
}
