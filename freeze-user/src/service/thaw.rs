//! What the watchdog needs from the system: FITHAW, and the names of device-mapper devices.
use std::os::fd::AsRawFd as _;

/// Thaws the filesystem mounted at `mountpoint` (FITHAW on a descriptor of it).
pub fn thaw(mountpoint: &str) -> Result<(), String> {
    let dir = std::fs::File::open(mountpoint).map_err(|e| format!("opening {mountpoint}: {e}"))?;
    // SAFETY: FITHAW takes no argument; the descriptor is open for the duration of the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FITHAW as _, 0) };
    if rc == 0 { Ok(()) } else { Err(format!("FITHAW on {mountpoint}: {}", std::io::Error::last_os_error())) }
}

/// The device-mapper name of block device `dev` (`major:minor`), from sysfs: what `dmsetup
/// resume` takes. None for other devices (sysfs is never frozen: reading it cannot block).
pub fn dm_name(dev: &str) -> Option<String> {
    let name = std::fs::read_to_string(format!("/sys/dev/block/{dev}/dm/name")).ok()?;
    Some(name.trim_end().to_owned()).filter(|n| !n.is_empty())
}
