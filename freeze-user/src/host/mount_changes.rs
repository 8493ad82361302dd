//! Changes to the mount table as the kernel announces them: `/proc/self/mountinfo` polls with
//! `POLLPRI` (and `POLLERR`) once after each mount, unmount or move in this mount namespace
//! (proc(5)). The recorder refreshes its mounts and storage maps on them instead of reading them
//! every second: between changes it costs nothing.
use std::{fs::File, io, os::fd::AsRawFd};

/// The open mountinfo file whose priority readiness says "the mount table changed".
pub struct MountChanges {
    file: File,
}

impl MountChanges {
    pub fn open() -> io::Result<Self> {
        Ok(Self { file: File::open("/proc/self/mountinfo")? })
    }
}

impl AsRawFd for MountChanges {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file opens and polls without a change pending: a poll right after opening reports no
    /// priority event (the kernel reports a change only once it happens).
    #[test]
    fn a_fresh_open_has_no_change_pending() {
        let changes = MountChanges::open().expect("/proc/self/mountinfo");
        let mut fds = [libc::pollfd { fd: changes.as_raw_fd(), events: libc::POLLPRI, revents: 0 }];
        // SAFETY: one valid pollfd, for its length; no wait.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        assert_eq!(n, 0, "revents {:#x}", fds[0].revents);
    }
}
