//! Runs storage steps one right after the other in one process, with no fork or exec between
//! them: no tool that watches the kernel's device or mount events can have read what one step
//! set up before the next runs. What a step sets up is undone when the helper exits, in reverse
//! order, also when a later step fails: a freeze is thawed, a mount unmounted, a loop device
//! detached.
//!
//! Steps:
//! - `bind IMAGE`: binds a free loop device to IMAGE and prints its path (flushed at once, so
//!   that a test can detach it should this helper die); later steps call it `@bound`;
//! - `mount DEV TARGET FSTYPE`;
//! - `freeze MOUNTPOINT` (FIFREEZE);
//! - `rewrite DEV OFFSET BYTES`: reads BYTES at byte OFFSET of DEV and writes them back, both with
//!   O_DIRECT (a bio that changes nothing but is a write all the same);
//! - `mark PATH`: creates the file PATH (a script waiting for the steps before it sees them done);
//! - `sleep MS`.
//!
//! Exits 0 when every step succeeded, 1 (with the error) otherwise, 2 on bad usage.
use std::{
    alloc::Layout,
    ffi::CString,
    fs::{File, OpenOptions},
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    time::Duration,
};

/// include/uapi/linux/loop.h.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const FIFREEZE: libc::c_ulong = freeze_common::FIFREEZE as libc::c_ulong;
const FITHAW: libc::c_ulong = freeze_common::FITHAW as libc::c_ulong;

/// The largest rewrite, and its buffer's alignment (O_DIRECT).
const MAX_BYTES: usize = 1 << 20;
const ALIGN: usize = 4096;

/// What a step set up, undone on drop.
enum Undo {
    Detach(File),
    Unmount(CString),
    Thaw(File),
}

impl Drop for Undo {
    fn drop(&mut self) {
        // SAFETY: ioctls without a pointer argument on descriptors this value owns, and umount2
        // with a NUL-terminated path it owns.
        unsafe {
            match self {
                Undo::Detach(dev) => libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD),
                Undo::Unmount(target) => libc::umount2(target.as_ptr(), 0),
                Undo::Thaw(dir) => libc::ioctl(dir.as_raw_fd(), FITHAW, 0),
            };
        }
    }
}

/// A buffer aligned for O_DIRECT.
struct Aligned(*mut u8);

impl Aligned {
    fn layout() -> Layout {
        Layout::from_size_align(MAX_BYTES, ALIGN).expect("a valid layout")
    }

    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        assert!(!p.is_null(), "out of memory");
        Self(p)
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.0, Self::layout()) };
    }
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s}: a NUL in the argument"))
}

/// Binds a free loop device to `image`; returns its path and its undo.
fn bind(image: &str) -> Result<(String, Undo), String> {
    let control = File::open("/dev/loop-control").map_err(|e| format!("/dev/loop-control: {e}"))?;
    // SAFETY: an ioctl without argument; it returns a free loop device's number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(os_error("LOOP_CTL_GET_FREE"));
    }
    let path = format!("/dev/loop{n}");
    let backing =
        OpenOptions::new().read(true).write(true).open(image).map_err(|e| format!("{image}: {e}"))?;
    let dev = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: LOOP_SET_FD takes the backing file's descriptor as its argument; both are open.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) } < 0 {
        return Err(os_error("LOOP_SET_FD"));
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{path}").and_then(|()| out.flush());
    Ok((path, Undo::Detach(dev)))
}

fn mount(dev: &str, target: &str, fstype: &str) -> Result<Undo, String> {
    let (d, t, f) = (c_string(dev)?, c_string(target)?, c_string(fstype)?);
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    if unsafe { libc::mount(d.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } < 0 {
        return Err(os_error(&format!("mounting {dev} at {target}")));
    }
    Ok(Undo::Unmount(t))
}

fn freeze(mountpoint: &str) -> Result<Undo, String> {
    let dir = File::open(mountpoint).map_err(|e| format!("{mountpoint}: {e}"))?;
    // SAFETY: FIFREEZE takes no pointer; the descriptor is open.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) } < 0 {
        return Err(os_error(&format!("freezing {mountpoint}")));
    }
    Ok(Undo::Thaw(dir))
}

fn rewrite(dev: &str, offset: u64, bytes: usize, buf: &Aligned) -> Result<(), String> {
    if bytes == 0 || bytes > MAX_BYTES {
        return Err(format!("rewrite: BYTES must be 1 to {MAX_BYTES}"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| format!("{dev}: {e}"))?;
    let at = libc::off_t::try_from(offset).map_err(|_| "OFFSET too large".to_owned())?;
    let fd = file.as_raw_fd();
    // SAFETY: the buffer holds MAX_BYTES >= bytes, aligned for O_DIRECT, alive for both calls.
    if unsafe { libc::pread(fd, buf.0.cast(), bytes, at) } != bytes as isize {
        return Err(os_error(&format!("reading {dev}")));
    }
    // SAFETY: as above.
    if unsafe { libc::pwrite(fd, buf.0.cast(), bytes, at) } != bytes as isize {
        return Err(os_error(&format!("writing {dev}")));
    }
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{s}: not a number"))
}

/// Runs `steps`; what they set up is in `undo`, for the caller to drop (in reverse).
fn run(steps: &[String], undo: &mut Vec<Undo>) -> Result<(), String> {
    let buf = Aligned::new();
    let mut bound = String::new();
    let dev = |arg: &str, bound: &str| if arg == "@bound" { bound.to_owned() } else { arg.to_owned() };
    let mut rest = steps;
    while let Some((step, args)) = rest.split_first() {
        rest = match (step.as_str(), args) {
            ("bind", [image, rest @ ..]) => {
                let (path, u) = bind(image)?;
                undo.push(u);
                bound = path;
                rest
            }
            ("mount", [d, target, fstype, rest @ ..]) => {
                undo.push(mount(&dev(d, &bound), target, fstype)?);
                rest
            }
            ("freeze", [mountpoint, rest @ ..]) => {
                undo.push(freeze(mountpoint)?);
                rest
            }
            ("rewrite", [d, offset, bytes, rest @ ..]) => {
                rewrite(&dev(d, &bound), number(offset)?, number(bytes)?, &buf)?;
                rest
            }
            ("mark", [path, rest @ ..]) => {
                File::create(path).map_err(|e| format!("{path}: {e}"))?;
                rest
            }
            ("sleep", [ms, rest @ ..]) => {
                std::thread::sleep(Duration::from_millis(number(ms)?));
                rest
            }
            (other, _) => {
                return Err(format!(
                    "{other}: not a step, or too few arguments (bind, mount, freeze, rewrite, mark, sleep)"
                ));
            }
        };
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let steps: Vec<String> = std::env::args().skip(1).collect();
    if steps.is_empty() {
        eprintln!("usage: fw-at-once STEP ARGS... [STEP ARGS...]  (steps: see the source's header)");
        return std::process::ExitCode::from(2);
    }
    let mut undo = Vec::new();
    let result = run(&steps, &mut undo);
    while let Some(u) = undo.pop() {
        drop(u);
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fw-at-once: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
