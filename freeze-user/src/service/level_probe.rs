//! Finding filesystems that are already frozen when `watch` starts, without freezing anything:
//! an FIGETBSZ ioctl (it only reads the block size) on each mount point makes the level probe
//! (an eBPF program on the ioctl tracepoint, for this process only) report that filesystem's
//! freeze level as a `level_probe` event.
use std::os::fd::AsRawFd as _;

use crate::host::mountinfo;

/// Probes every filesystem mounted from a block device (once per device); returns how many.
/// Network and FUSE filesystems are left out: opening them can hang when their server does.
pub fn probe_all() -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = Vec::new();
    let mut probed = 0;
    for m in mountinfo::parse(&text) {
        if !m.source.starts_with("/dev/") || seen.contains(&m.dev) {
            continue;
        }
        seen.push(m.dev);
        if probe(&m.mountpoint) {
            probed += 1;
        }
    }
    probed
}

/// One FIGETBSZ on `mountpoint`; false when it could not be opened or asked.
fn probe(mountpoint: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(dir) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(mountpoint)
    else {
        return false;
    };
    let mut block_size: libc::c_int = 0;
    // SAFETY: FIGETBSZ writes one int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FIGETBSZ as _, &raw mut block_size) };
    rc == 0
}
