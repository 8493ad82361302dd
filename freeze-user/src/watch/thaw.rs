//! What the watchdog needs from the system: FITHAW.
use std::os::fd::AsRawFd as _;

/// Thaws the filesystem mounted at `mountpoint` (FITHAW on a descriptor of it).
pub fn thaw(mountpoint: &str) -> Result<(), String> {
    let dir = std::fs::File::open(mountpoint).map_err(|e| format!("opening {mountpoint}: {e}"))?;
    // SAFETY: FITHAW takes no argument; the descriptor is open for the duration of the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FITHAW as _, 0) };
    if rc == 0 { Ok(()) } else { Err(format!("FITHAW on {mountpoint}: {}", std::io::Error::last_os_error())) }
}
