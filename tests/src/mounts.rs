//! Mount calls a test makes itself (mount(2), bind, the new mount API), answering with the
//! errno.
use std::path::Path;

/// The errno a mount call failed with, or Ok.
pub type MountResult = std::result::Result<(), i32>;

fn c_path(p: &str) -> std::ffi::CString {
    std::ffi::CString::new(p).expect("no NUL in paths")
}

fn errno_result(rc: libc::c_long) -> std::result::Result<libc::c_long, i32> {
    if rc < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(rc) }
}

/// umount(2); errors are ignored (cleanup).
pub fn unmount(target: &Path) {
    let t = c_path(target.to_str().expect("UTF-8"));
    // SAFETY: a valid NUL-terminated path that outlives the call.
    unsafe { libc::umount2(t.as_ptr(), 0) };
}

/// Unmounts a test's own mount point when dropped (also when an assertion fails): lazily and with
/// whatever is mounted below it.
pub struct Unmount<'a>(pub &'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-R").arg("-l").arg(self.0).status();
    }
}

/// mount(2) of a block device (a new mount of whatever superblock is on it).
pub fn mount_device(fstype: &str, dev: &str, target: &Path) -> MountResult {
    let (src, dst, ty) = (c_path(dev), c_path(target.to_str().expect("UTF-8")), c_path(fstype));
    // SAFETY: valid NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    errno_result(rc.into()).map(drop)
}

/// mount(2) with MS_BIND.
pub fn bind_mount(source: &Path, target: &Path) -> MountResult {
    let (src, dst) = (c_path(source.to_str().expect("UTF-8")), c_path(target.to_str().expect("UTF-8")));
    // SAFETY: as for mount_device.
    let rc =
        unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    errno_result(rc.into()).map(drop)
}

/// fsopen + fsconfig(source) + fsconfig(CREATE) + fsmount + move_mount: the new mount API.
/// The first call that fails gives the errno.
pub fn fsmount_move(fstype: &str, dev: &str, target: &Path) -> MountResult {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let (ty, key, src) = (c_path(fstype), c_path("source"), c_path(dev));
    let (dst, empty) = (c_path(target.to_str().expect("UTF-8")), c_path(""));
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the calls; the fds
    // passed along are the ones the previous calls returned, and both are closed at the end.
    unsafe {
        let fs = errno_result(libc::syscall(libc::SYS_fsopen, ty.as_ptr(), 0))? as libc::c_int;
        let result = (|| {
            errno_result(libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                src.as_ptr(),
                0,
            ))?;
            let null = std::ptr::null::<u8>();
            errno_result(libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, null, null, 0))?;
            let mnt = errno_result(libc::syscall(libc::SYS_fsmount, fs, 0, 0))? as libc::c_int;
            let moved = errno_result(libc::syscall(
                libc::SYS_move_mount,
                mnt,
                empty.as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ));
            libc::close(mnt);
            moved.map(drop)
        })();
        libc::close(fs);
        result
    }
}
