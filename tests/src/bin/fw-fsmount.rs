//! Mounts with the new mount API: fsopen, fsconfig, fsmount, move_mount.
//! Usage: fw-fsmount FSTYPE SOURCE TARGET. Exit 0 when mounted; the error is printed otherwise.
use std::ffi::CString;

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn check(what: &str, rc: libc::c_long) -> Result<libc::c_long, String> {
    if rc < 0 { Err(format!("{what}: {}", std::io::Error::last_os_error())) } else { Ok(rc) }
}

fn run(fstype: &str, source: &str, target: &str) -> Result<(), String> {
    let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let (fstype, key, source, target, empty) = (c(fstype)?, c("source")?, c(source)?, c(target)?, c("")?);
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the calls; the fds
    // passed along are the ones the previous calls returned.
    unsafe {
        let fs = check("fsopen", libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), 0))? as libc::c_int;
        check(
            "fsconfig source",
            libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_STRING, key.as_ptr(), source.as_ptr(), 0),
        )?;
        check(
            "fsconfig create",
            libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            ),
        )?;
        let mnt = check("fsmount", libc::syscall(libc::SYS_fsmount, fs, 0, 0))? as libc::c_int;
        check(
            "move_mount",
            libc::syscall(
                libc::SYS_move_mount,
                mnt,
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ),
        )?;
        libc::close(mnt);
        libc::close(fs);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fstype, source, target] = args.as_slice() else {
        eprintln!("usage: fw-fsmount FSTYPE SOURCE TARGET");
        return std::process::ExitCode::from(2);
    };
    match run(fstype, source, target) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fw-fsmount: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
