//! Finding filesystems that are already frozen when `watch` starts, without freezing anything:
//! every mount point is opened (a directory; nothing is read or written), then the level probe
//! reports the freeze level of each one's filesystem as a `level_probe` event. Where tracing
//! programs load, one read of a `task_file` BPF iterator does it for every directory this process
//! holds open, with no syscall hook; elsewhere an FIGETBSZ ioctl on each (it only reads the block
//! size) is seen by the ioctl hook, for this process only.
use std::{fs::File, io::Read as _, os::fd::AsRawFd as _};

use crate::{bpf::LevelProbe, host::mountinfo};

/// Probes every filesystem mounted from a block device (once per device); returns how many.
/// Network and FUSE filesystems are left out: opening them can hang when their server does.
pub fn probe_all(probe: LevelProbe) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = Vec::new();
    let mut open = Vec::new();
    for m in mountinfo::parse(&text) {
        if !m.source.starts_with("/dev/") || seen.contains(&m.dev) {
            continue;
        }
        seen.push(m.dev);
        open.extend(open_dir(&m.mountpoint));
    }
    match probe {
        LevelProbe::Iterator(mut iterator) => {
            // The program writes nothing to the file: reading it to its end is what runs it, once
            // for each open file of each task, while `open` holds the mount points.
            let mut sink = Vec::new();
            match iterator.read_to_end(&mut sink) {
                Ok(_) => open.len(),
                Err(e) => {
                    log::warn!("reading the level probe's iterator: {e}");
                    0
                }
            }
        }
        LevelProbe::Ioctl(_) => open.iter().filter(|dir| figetbsz(dir)).count(),
    }
}

/// `mountpoint`, opened as a directory without following anything else.
fn open_dir(mountpoint: &str) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(mountpoint)
        .ok()
}

/// One FIGETBSZ on `dir`; false when it could not be asked.
fn figetbsz(dir: &File) -> bool {
    let mut block_size: libc::c_int = 0;
    // SAFETY: FIGETBSZ writes one int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FIGETBSZ as _, &raw mut block_size) };
    rc == 0
}
