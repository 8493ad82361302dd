//! Facts about the running system that need no BPF: kernel release, tracefs, securityfs, privileges.
use std::path::Path;

pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const SECURITYFS: &str = "/sys/kernel/security";

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` (and so every event) uses.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write into; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The page size (what the kernel's page cache counts pages of); 4096 where it cannot be read.
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096)
}

/// `uname -r`.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Whether `dir` is a mount point of `fstype` according to /proc/self/mounts.
fn is_mounted(dir: &str, fstype: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.nth(1) == Some(dir) && f.next() == Some(fstype)
            })
        })
        .unwrap_or(false)
}

fn mount_pseudo(fstype: &str, dir: &str) -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let (src, target, ty) = (c("nodev")?, c(dir)?, c(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data is NULL.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Makes sure tracefs is mounted (aya finds tracepoint ids there). Returns whether it mounted it.
pub fn ensure_tracefs() -> std::io::Result<bool> {
    if is_mounted(TRACEFS, "tracefs") || Path::new(TRACEFS).join("events").is_dir() {
        return Ok(false);
    }
    mount_pseudo("tracefs", TRACEFS)?;
    Ok(true)
}

/// The active LSMs (`/sys/kernel/security/lsm`), mounting securityfs if needed.
pub fn active_lsms() -> std::io::Result<Vec<String>> {
    let file = Path::new(SECURITYFS).join("lsm");
    if !file.exists() && !is_mounted(SECURITYFS, "securityfs") {
        mount_pseudo("securityfs", SECURITYFS)?;
    }
    Ok(std::fs::read_to_string(file)?.trim().split(',').map(str::to_owned).collect())
}

/// Capabilities that loading and attaching need, checked from /proc/self/status.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Privileges {
    pub euid: u32,
    pub cap_sys_admin: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
}

impl Privileges {
    pub fn current() -> Self {
        let caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let has = |bit: u32| caps & (1u64 << bit) != 0;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Privileges { euid, cap_sys_admin: has(21), cap_bpf: has(39), cap_perfmon: has(38) }
    }

    /// What is missing to load and attach tracing programs, or None when enough is there.
    pub fn missing(&self) -> Option<String> {
        if self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon) {
            return None;
        }
        Some(format!(
            "freezewatch needs root (or CAP_BPF + CAP_PERFMON) to load eBPF programs; running as uid {} \
             without them. Try: sudo freezewatch …",
            self.euid
        ))
    }
}
