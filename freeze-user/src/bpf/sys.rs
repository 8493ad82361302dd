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

/// Takes ownership of a file descriptor `bpf` just returned.
pub fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}
