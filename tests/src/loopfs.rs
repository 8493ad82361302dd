//! Loop-image filesystems that clean up after themselves, extra mounts, and freezes taken by
//! a test: each thaws (and unmounts, detaches) in `Drop`, so also when the test fails.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

pub(crate) fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
        }
    }

    /// mkfs.xfs refuses images under 300 MB; btrfs wants about 114 MB.
    fn image_mb(self) -> u64 {
        match self {
            FsType::Ext4 => 64,
            FsType::Xfs => 320,
            FsType::Btrfs => 128,
        }
    }

    fn mkfs(self, dev: &str) -> Command {
        let mut c = match self {
            FsType::Ext4 => Command::new("mkfs.ext4"),
            FsType::Xfs => Command::new("mkfs.xfs"),
            FsType::Btrfs => Command::new("mkfs.btrfs"),
        };
        match self {
            FsType::Ext4 => c.args(["-q", "-F", dev]),
            FsType::Xfs => c.args(["-q", "-f", dev]),
            FsType::Btrfs => c.args(["-q", "-f", dev]),
        };
        c
    }
}

/// A filesystem on a loop device over a sparse image in a temp dir, mounted at `mountpoint`.
/// Dropping it thaws (in case a test left it frozen), unmounts and detaches the loop device.
pub struct LoopFs {
    pub fstype: FsType,
    pub loopdev: String,
    /// The loop device's backing file.
    pub image: PathBuf,
    pub mountpoint: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    pub fn new(fstype: FsType) -> Result<Self> {
        Self::with_image_in(fstype, None)
    }

    /// A filesystem whose image file lies in `dir` (e.g. on another test filesystem: a stack).
    /// Declare it after the filesystem holding its image, so that it is dropped first.
    pub fn new_in(fstype: FsType, dir: &std::path::Path) -> Result<Self> {
        Self::with_image_in(fstype, Some(dir))
    }

    fn with_image_in(fstype: FsType, image_dir: Option<&std::path::Path>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("freezewatch-test-").tempdir()?;
        let image = image_dir.unwrap_or(dir.path()).join(format!("fs-{}.img", std::process::id()));
        std::fs::File::create(&image)?.set_len(fstype.image_mb() << 20)?;
        let loopdev = sh(Command::new("losetup").args(["--find", "--show"]).arg(&image))?;
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)?;
        let mut fs = LoopFs { fstype, loopdev, image, mountpoint, mounted: false, _dir: dir };
        // From here on, Drop cleans up whatever the next steps managed to do.
        sh(&mut fstype.mkfs(&fs.loopdev))?;
        sh(Command::new("mount").args(["-t", fstype.name(), &fs.loopdev]).arg(&fs.mountpoint))?;
        fs.mounted = true;
        Ok(fs)
    }

    /// Writes one 4 KiB block straight to the loop device, near its end (`dd oflag=direct`): past
    /// the freeze gate, a slip when the filesystem is frozen.
    pub fn write_device(&self) -> Result<()> {
        let seek = self.blocks_4k() - 8;
        sh(Command::new("dd")
            .args([
                "if=/dev/zero",
                &format!("of={}", self.loopdev),
                "bs=4096",
                "count=1",
                &format!("seek={seek}"),
            ])
            .args(["oflag=direct", "conv=notrunc", "status=none"]))?;
        Ok(())
    }

    /// Whether the backing file lies on a tmpfs (the guests' /tmp). Its pages turn dirty without
    /// the writeback tracepoints (shmem does not account dirty pages), so the writeback hook does
    /// not see writes to it.
    pub fn image_on_tmpfs(&self) -> bool {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let Some(path) = self.image.to_str().and_then(|p| std::ffi::CString::new(p).ok()) else {
            return false;
        };
        // SAFETY: an all-zero statfs is a valid value for statfs(2) to overwrite.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid statfs to write into.
        let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
        rc == 0 && st.f_type as i64 == TMPFS_MAGIC
    }

    /// Size of the loop device in 4 KiB blocks.
    pub fn blocks_4k(&self) -> u64 {
        self.fstype.image_mb() * 256
    }

    pub fn mnt(&self) -> &str {
        self.mountpoint.to_str().expect("temp paths are UTF-8")
    }

    /// major:minor of the loop device.
    pub fn loop_dev_number(&self) -> Result<String> {
        dev_number_of(&self.loopdev, true)
    }

    /// major:minor of the mounted filesystem's root (st_dev). On btrfs this is the subvolume's
    /// anonymous device, which is *not* the superblock's `s_dev`.
    pub fn st_dev_number(&self) -> Result<String> {
        dev_number_of(self.mnt(), false)
    }

    /// major:minor that /proc/self/mountinfo gives for the mount: the superblock's `s_dev`.
    pub fn mountinfo_dev_number(&self) -> Result<String> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(4) == Some(&self.mnt())).then(|| f[2].to_owned())
            })
            .with_context(|| format!("{} is not in mountinfo", self.mnt()))
    }
}

/// major:minor of a block device node (a loop device a test's script set up).
pub fn block_dev_number(node: &str) -> Result<String> {
    dev_number_of(node, true)
}

fn dev_number_of(path: &str, rdev: bool) -> Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::metadata(path).with_context(|| format!("stat {path}"))?;
    let d = if rdev { md.rdev() } else { md.dev() };
    let (ma, mi) = (libc::major(d), libc::minor(d));
    Ok(format!("{ma}:{mi}"))
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            // Thaw first: unmounting or touching a frozen filesystem would block.
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mountpoint).stderr(Stdio::null()).status();
            let _ = Command::new("umount").arg(&self.mountpoint).stderr(Stdio::null()).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

/// Extra mounts a test makes (on top of its `LoopFs`es): thaws `thaw` first, then unmounts every
/// path in Drop, also when the test fails half-way.
pub struct ExtraMounts {
    pub thaw: PathBuf,
    pub paths: Vec<PathBuf>,
}

impl Drop for ExtraMounts {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.thaw).stderr(Stdio::null()).status();
        for p in self.paths.iter().rev() {
            // A path may hold several mounts (or none, if the test never got that far).
            while Command::new("umount").arg(p).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {}
        }
    }
}

/// A freeze taken by the test itself; thawed in Drop.
pub struct Frozen<'a> {
    fs: &'a LoopFs,
}

impl<'a> Frozen<'a> {
    pub fn new(fs: &'a LoopFs) -> Result<Self> {
        sh(Command::new("fsfreeze").args(["-f", fs.mnt()]))?;
        Ok(Frozen { fs })
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").args(["-u", self.fs.mnt()]).status();
    }
}
