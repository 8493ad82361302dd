//! Storage layers under a test filesystem, for the guests (this host has no device-mapper and
//! parses no partition tables): a partitioned loop disk, device-mapper devices made with dmsetup.
//! Each removes what it made in `Drop`, top down, also when the test fails.
use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::{kernel_available, loopfs::sh, unmount};

/// Like `kernel_available`, for tests that need a storage layer this host lacks: `what` is
/// "partitions" (a loop device's partition table parsed) or "device-mapper". The guests set
/// FREEZEWATCH_REQUIRE_LAYERS=1 so that such a test cannot skip there.
pub fn layer_available(test: &str, what: &str) -> bool {
    if !kernel_available(test) {
        return false;
    }
    let have = match what {
        "partitions" => PartitionedLoop::new(&[8192]).is_ok_and(|p| p.partition(1).exists()),
        "device-mapper" => std::path::Path::new("/dev/mapper/control").exists(),
        other => panic!("unknown layer {other}"),
    };
    if have {
        return true;
    }
    if std::env::var_os("FREEZEWATCH_REQUIRE_LAYERS").is_some_and(|v| v == "1") {
        panic!("{test}: FREEZEWATCH_REQUIRE_LAYERS=1 but this kernel has no {what}");
    }
    eprintln!("SKIPPED {test}: this kernel has no {what}; it runs in the QEMU guests (cargo xtask vm-test)");
    false
}

/// dmsetup without udev (the guests have none): libdevmapper makes the /dev/mapper nodes itself.
pub fn dmsetup(args: &[&str]) -> Result<String> {
    sh(Command::new("dmsetup").args(args).arg("--noudevsync").env("DM_DISABLE_UDEV", "1"))
}

/// A loop device over a sparse image in a temp dir, partitioned (DOS label) into partitions of
/// the given sizes in sectors, the first at sector 2048, each next one 2048 sectors after the end
/// of the one before.
pub struct PartitionedLoop {
    pub loopdev: String,
    /// (first sector, sectors) of each partition.
    pub parts: Vec<(u64, u64)>,
    _dir: tempfile::TempDir,
}

impl PartitionedLoop {
    pub fn new(sizes: &[u64]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("freezewatch-parts-").tempdir()?;
        let mut parts = Vec::new();
        let mut at = 2048;
        for size in sizes {
            parts.push((at, *size));
            at += size + 2048;
        }
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)?.set_len(at * 512)?;
        let table: String = std::iter::once("label: dos\n".to_owned())
            .chain(parts.iter().map(|(start, size)| format!("start={start}, size={size}, type=83\n")))
            .collect();
        let script = dir.path().join("table");
        std::fs::write(&script, table)?;
        sh(Command::new("sh").arg("-c").arg(format!(
            "sfdisk -q {} < {}",
            image.display(),
            script.display()
        )))?;
        let loopdev = sh(Command::new("losetup").args(["--find", "--show", "--partscan"]).arg(&image))?;
        Ok(Self { loopdev, parts, _dir: dir })
    }

    /// `/dev/loopNpI`.
    pub fn partition(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("{}p{i}", self.loopdev))
    }
}

impl Drop for PartitionedLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

/// A filesystem made and mounted on `dev` in a temp dir; Drop thaws and unmounts it.
pub struct MountedOn {
    pub dev: String,
    pub mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl MountedOn {
    pub fn ext4(dev: &str) -> Result<Self> {
        sh(Command::new("mkfs.ext4").args(["-q", "-F", dev]))?;
        Self::existing(dev)
    }

    /// Mounts the ext4 already on `dev` (a snapshot of one, say).
    pub fn existing(dev: &str) -> Result<Self> {
        Self::mount(&["-t", "ext4", dev])
    }

    /// A btrfs with its data and metadata mirrored (raid1) on `devs`, mounted from the first,
    /// naming every member (no udev scan is needed).
    pub fn btrfs_raid1(devs: &[&str]) -> Result<Self> {
        sh(Command::new("mkfs.btrfs").args(["-q", "-f", "-d", "raid1", "-m", "raid1"]).args(devs))?;
        let options: Vec<String> = devs.iter().map(|d| format!("device={d}")).collect();
        Self::mount(&["-t", "btrfs", "-o", &options.join(","), devs[0]])
    }

    /// `mount ARGS <a new temp dir>`; the device is the last argument.
    fn mount(args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("freezewatch-fs-").tempdir()?;
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)?;
        sh(Command::new("mount").args(args).arg(&mountpoint))?;
        let dev = args.last().copied().unwrap_or_default().to_owned();
        Ok(Self { dev, mountpoint, _dir: dir })
    }

    pub fn mnt(&self) -> &str {
        self.mountpoint.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for MountedOn {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mountpoint).output();
        unmount(&self.mountpoint);
    }
}

/// Device-mapper devices a test made, removed in reverse order of creation in Drop (after
/// resuming each, so that nothing stays suspended).
#[derive(Default)]
pub struct DmDevices {
    names: Vec<String>,
}

impl DmDevices {
    /// `dmsetup create NAME --table TABLE`; returns `/dev/mapper/NAME`.
    pub fn create(&mut self, name: &str, table: &str) -> Result<String> {
        dmsetup(&["create", name, "--table", table])?;
        self.names.push(name.to_owned());
        Ok(format!("/dev/mapper/{name}"))
    }
}

impl Drop for DmDevices {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = dmsetup(&["resume", name]);
            let _ = dmsetup(&["remove", name]);
        }
    }
}

/// A loop device over a sparse image of `mb` MiB in a temp dir, detached in Drop.
pub struct LoopDev {
    pub dev: String,
    pub image: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    pub fn new(mb: u64) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("freezewatch-loop-").tempdir()?;
        let image = dir.path().join("dev.img");
        std::fs::File::create(&image)?.set_len(mb << 20)?;
        let dev = sh(Command::new("losetup").args(["--find", "--show"]).arg(&image))?;
        Ok(Self { dev, image, _dir: dir })
    }

    /// major:minor.
    pub fn number(&self) -> Result<String> {
        use std::os::unix::fs::MetadataExt as _;
        let rdev = std::fs::metadata(&self.dev)?.rdev();
        Ok(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A filesystem on device-mapper devices over loop devices. Drop resumes every device first (a
/// suspended device would hang the unmount), then thaws and unmounts, removes the devices and
/// detaches the loops.
pub struct DmStack {
    // Field order is drop order: the filesystem, then the devices under it, then the loops.
    pub fs: Option<MountedOn>,
    pub dm: DmDevices,
    pub loops: Vec<LoopDev>,
}

impl DmStack {
    /// ext4 on a dm-linear device `name` over a loop device of `mb` MiB, mapping it from sector
    /// `offset` on.
    pub fn linear_ext4(name: &str, mb: u64, offset: u64) -> Result<Self> {
        let lower = LoopDev::new(mb)?;
        let mut stack = DmStack { fs: None, dm: DmDevices::default(), loops: Vec::new() };
        let table = format!("0 {} linear {} {offset}", (mb << 11) - offset, lower.dev);
        stack.loops.push(lower);
        let dev = stack.dm.create(name, &table)?;
        stack.fs = Some(MountedOn::ext4(&dev)?);
        Ok(stack)
    }

    pub fn fs(&self) -> &MountedOn {
        self.fs.as_ref().expect("the stack has a filesystem")
    }
}

impl Drop for DmStack {
    fn drop(&mut self) {
        for name in &self.dm.names {
            let _ = dmsetup(&["resume", name]);
        }
    }
}
