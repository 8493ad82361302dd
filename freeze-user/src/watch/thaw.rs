//! What the watchdog needs from the system: whether a process still runs, and FITHAW.
use std::os::fd::AsRawFd as _;

/// Whether `pid` is a running process (a zombie has exited: its parent just has not reaped it).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold anything.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Thaws the filesystem mounted at `mountpoint` (FITHAW on a descriptor of it).
pub fn thaw(mountpoint: &str) -> Result<(), String> {
    let dir = std::fs::File::open(mountpoint).map_err(|e| format!("opening {mountpoint}: {e}"))?;
    // SAFETY: FITHAW takes no argument; the descriptor is open for the duration of the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FITHAW as _, 0) };
    if rc == 0 { Ok(()) } else { Err(format!("FITHAW on {mountpoint}: {}", std::io::Error::last_os_error())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie, which counts as gone.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!alive(pid), "a zombie is gone");
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
