//! The kernel's device events (uevents, netlink `NETLINK_KOBJECT_UEVENT`): a loop device set up
//! or torn down, a device-mapper device created, resumed or removed, a disk added. The recorder
//! refreshes the storage maps on them, so a layer set up just before a freeze is known when the
//! freeze comes, not up to a second later.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// The kernel's multicast group of uevents (udev listens on another, its own).
const KERNEL_GROUP: u32 = 1;

/// A non-blocking socket that receives the kernel's uevents.
pub struct Uevents {
    fd: OwnedFd,
}

impl Uevents {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = KERNEL_GROUP;
        // SAFETY: the address is a sockaddr_nl of the size given, alive for the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Reads every event waiting; whether one of them was a block device's.
    pub fn drain_block_changes(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut block = false;
        loop {
            // SAFETY: the buffer is valid for its length for the call.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            block |= is_block_event(&buf[..n]);
        }
        block
    }
}

impl std::os::fd::AsRawFd for Uevents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// A uevent is `ACTION@DEVPATH` then `KEY=value` strings, each NUL-terminated.
fn is_block_event(msg: &[u8]) -> bool {
    msg.split(|b| *b == 0).any(|field| field == b"SUBSYSTEM=block")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_events_are_told_by_their_subsystem() {
        let loop_change = b"change@/devices/virtual/block/loop3\0ACTION=change\0DEVPATH=/devices/virtual/block/loop3\0SUBSYSTEM=block\0MAJOR=7\0MINOR=3\0";
        assert!(is_block_event(loop_change));
        let net = b"add@/devices/virtual/net/veth0\0ACTION=add\0SUBSYSTEM=net\0";
        assert!(!is_block_event(net));
        assert!(!is_block_event(b"SUBSYSTEM=blockish\0"));
    }
}
