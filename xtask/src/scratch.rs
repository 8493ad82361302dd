//! Scratch storage and processes for `soak` and `bench`, each undone in Drop: a tmpfs, a loop
//! filesystem (thawed, unmounted, detached, its image removed), a child (killed and reaped).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

/// Root, or an error saying that `what` needs it.
pub fn need_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} freezes loop filesystems of its own and attaches eBPF programs: run it as root");
    }
    Ok(())
}

/// A tmpfs mounted on a new temp dir (memory-backed storage: the benchmarks measure CPU, not a
/// disk); unmounted and removed in Drop.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn new(tag: &str, mb: u64) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("freezewatch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let size = format!("size={mb}m");
        ensure!(
            Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&dir).status()?.success(),
            "mounting a tmpfs on {}",
            dir.display()
        );
        Ok(Self { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A filesystem of `fstype` on a loop device over an image in `dir`.
pub struct LoopFs {
    pub dev: String,
    pub mnt: PathBuf,
    image: PathBuf,
}

impl LoopFs {
    pub fn new(fstype: &str, mb: u64, dir: &Path, name: &str) -> Result<Self> {
        let image = dir.join(format!("{name}.img"));
        std::fs::File::create(&image)?.set_len(mb << 20)?;
        let out = Command::new("losetup").args(["--find", "--show"]).arg(&image).output()?;
        ensure!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mnt = dir.join(name);
        std::fs::create_dir_all(&mnt)?;
        let fs = LoopFs { dev, mnt, image };
        let force = if fstype == "xfs" { "-f" } else { "-F" };
        let mkfs = format!("mkfs.{fstype}");
        ensure!(Command::new(&mkfs).args(["-q", force, &fs.dev]).status()?.success(), "{mkfs} failed");
        ensure!(Command::new("mount").arg(&fs.dev).arg(&fs.mnt).status()?.success(), "mount failed");
        Ok(fs)
    }

    pub fn fsfreeze(&self, flag: &str) -> Result<()> {
        let ok = Command::new("fsfreeze").arg(flag).arg(&self.mnt).status().context("fsfreeze")?.success();
        ensure!(ok, "fsfreeze {flag} {} failed", self.mnt.display());
        Ok(())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mnt).stderr(Stdio::null()).status();
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

/// A child killed (and reaped) in Drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
