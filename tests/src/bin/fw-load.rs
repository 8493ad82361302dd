//! The loads `cargo xtask bench --guest` runs that fio does not: for SECONDS, as fast as one
//! thread can, then prints the operations per second. Usage:
//!   fw-load getppid SECONDS            a syscall that does nothing (every syscall hook's cost)
//!   fw-load create-unlink DIR SECONDS  create, write 1 KiB, close and unlink a file in DIR
//!   fw-load mount-umount DIR SECONDS   mount a tmpfs on DIR and unmount it
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::Path,
    time::{Duration, Instant},
};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [load, seconds] if load == "getppid" => seconds.parse().ok().map(|s| (load.as_str(), None, s)),
        [load, dir, seconds] if load == "create-unlink" || load == "mount-umount" => {
            seconds.parse().ok().map(|s| (load.as_str(), Some(Path::new(dir)), s))
        }
        _ => None,
    };
    let Some((load, dir, seconds)) = parsed else {
        eprintln!("usage: fw-load getppid SECONDS | create-unlink DIR SECONDS | mount-umount DIR SECONDS");
        return std::process::ExitCode::from(2);
    };
    let run: Box<dyn FnMut() -> std::io::Result<()>> = match (load, dir) {
        ("getppid", _) => Box::new(|| {
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() };
            Ok(())
        }),
        ("create-unlink", Some(dir)) => {
            let file = dir.join(format!("fw-load-{}", std::process::id()));
            Box::new(move || {
                std::fs::write(&file, [0u8; 1024])?;
                std::fs::remove_file(&file)
            })
        }
        (_, Some(dir)) => {
            let target = CString::new(dir.as_os_str().as_bytes()).expect("no NUL in a path");
            Box::new(move || {
                // SAFETY: NUL-terminated strings that outlive the calls.
                let rc = unsafe {
                    libc::mount(c"none".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null())
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: as above.
                if unsafe { libc::umount(target.as_ptr()) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
        _ => unreachable!("parsed above"),
    };
    let mut run = run;
    let (start, limit) = (Instant::now(), Duration::from_secs_f64(seconds));
    let mut ops: u64 = 0;
    while start.elapsed() < limit {
        // A thousand between clock reads: the clock is not what is measured.
        for _ in 0..if load == "getppid" { 1000 } else { 1 } {
            if let Err(e) = run() {
                eprintln!("fw-load {load}: {e}");
                return std::process::ExitCode::FAILURE;
            }
            ops += 1;
        }
    }
    println!("{:.0}", ops as f64 / start.elapsed().as_secs_f64());
    std::process::ExitCode::SUCCESS
}
