//! The one `bpf(2)` wrapper, for what aya does not do: programs on module functions
//! (`module_fexit`) and `doctor`'s program-type probes. The attribute is aya-obj's `bpf_attr`.
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

pub use aya_obj::generated::{bpf_attr, bpf_cmd};

/// An all-zero `bpf_attr`: the kernel checks that every field a command does not use is zero.
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integer fields; all-zero is its defined "unset" value.
    unsafe { std::mem::zeroed() }
}

/// `bpf(cmd, attr, sizeof attr)`: the kernel's return value, or the errno.
pub fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr of the size passed; the kernel reads
    // and writes only within it, and pointers inside it point to live buffers of the caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(ret) }
}

/// Lifts this process's locked-memory limit, as far as it may: before 5.11 the kernel charges
/// every BPF map and program to it, per user, so a second freezewatch (`doctor` beside a running
/// `watch`) would be refused its smallest program under a limit the first one used up. From 5.11
/// on memory cgroups account BPF memory and the limit no longer matters. A failure is only said:
/// the load that needs the memory then fails with its own error.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct, which lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        log::debug!("raising RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

/// Takes ownership of a file descriptor `bpf` just returned.
pub fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}
