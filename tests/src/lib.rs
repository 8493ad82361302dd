//! Fixtures for freezewatch's kernel tests: loop-image filesystems that clean up after themselves,
//! and a runner for the `freezewatch` binary.
//!
//! Safety rules these fixtures enforce: only filesystems they created on a loop image in a temp
//! dir are ever frozen; every `LoopFs` thaws, unmounts and detaches in `Drop` (so also on panic);
//! nothing here waits synchronously for a process that may be blocked on a frozen filesystem.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// Whether kernel tests must run (CI sets FREEZEWATCH_REQUIRE_KERNEL=1).
pub fn kernel_required() -> bool {
    std::env::var_os("FREEZEWATCH_REQUIRE_KERNEL").is_some_and(|v| v == "1")
}

/// Returns true when kernel tests can run here. Otherwise prints why and returns false, or
/// panics when FREEZEWATCH_REQUIRE_KERNEL=1, so that CI never passes on a skipped kernel test.
pub fn kernel_available(test: &str) -> bool {
    let why = if !is_root() {
        Some("not root".to_owned())
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("no kernel BTF".to_owned())
    } else if !Path::new("/dev/loop-control").exists() {
        Some("no loop device support".to_owned())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if kernel_required() => panic!("{test}: FREEZEWATCH_REQUIRE_KERNEL=1 but {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why} (set FREEZEWATCH_REQUIRE_KERNEL=1 to make this fail)");
            false
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Path of the freezewatch binary: $FREEZEWATCH_BIN (set by `cargo xtask test`), else the one
/// cargo built beside this test binary (target/<profile>/freezewatch).
pub fn freezewatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FREEZEWATCH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("freezewatch");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo xtask test` (or build freeze-user first)",
        bin.display()
    );
    bin
}

fn sh(cmd: &mut Command) -> Result<String> {
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
    pub mountpoint: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    pub fn new(fstype: FsType) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("freezewatch-test-").tempdir()?;
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)?.set_len(fstype.image_mb() << 20)?;
        let loopdev = sh(Command::new("losetup").args(["--find", "--show"]).arg(&image))?;
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)?;
        let mut fs = LoopFs { fstype, loopdev, mountpoint, mounted: false, _dir: dir };
        // From here on, Drop cleans up whatever the next steps managed to do.
        sh(&mut fstype.mkfs(&fs.loopdev))?;
        sh(Command::new("mount").args(["-t", fstype.name(), &fs.loopdev]).arg(&fs.mountpoint))?;
        fs.mounted = true;
        Ok(fs)
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
            let _ = Command::new("umount").arg(&self.mountpoint).status();
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

/// What a `freezewatch` run produced.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs freezewatch with `args`, killing it after `limit`. The freezewatch process itself never
/// blocks on a frozen filesystem, so waiting for it here is safe.
pub fn freezewatch(args: &[&str], limit: Duration) -> Result<Run> {
    freezewatch_cmd(Command::new(freezewatch_bin()).args(args), limit)
}

pub fn freezewatch_cmd(cmd: &mut Command, limit: Duration) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("starting freezewatch")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            bail!("freezewatch did not finish within {limit:?}: {}", std::fs::read_to_string(&err_path)?);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out_path)?,
        stderr: std::fs::read_to_string(err_path)?,
    })
}

/// A parsed trace: all records, as JSON values.
pub struct Trace {
    pub records: Vec<Value>,
    /// What freezewatch and the recorded command printed on stderr (record_script only).
    pub stderr: String,
}

impl Trace {
    pub fn parse(text: &str) -> Result<Self> {
        let records = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("trace line {}: {l}", i + 1)))
            .collect::<Result<Vec<Value>>>()?;
        Ok(Trace { records, stderr: String::new() })
    }

    pub fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == ty).collect()
    }

    pub fn events(&self) -> Vec<&Value> {
        self.of_type("event")
    }

    pub fn findings(&self, kind: &str) -> Vec<&Value> {
        self.of_type("finding").into_iter().filter(|f| f["kind"] == kind).collect()
    }

    /// The events within `window` ns of `ts_ns` on the same superblock, one line each: for
    /// assertion messages that must show what happened around a finding.
    pub fn around(&self, finding: &Value, window: u64) -> String {
        let ts = finding["ts_ns"].as_u64().unwrap_or(0);
        self.events()
            .into_iter()
            .filter(|e| e["sb"]["id"] == finding["sb"]["id"])
            .filter(|e| e["ts_ns"].as_u64().is_some_and(|t| t.abs_diff(ts) <= window))
            .map(|e| {
                format!(
                    "{} {} {}[{}] level {}->{} ret {} hook {}",
                    e["ts_ns"],
                    e["kind"],
                    e["comm"],
                    e["tid"],
                    e["level_before"],
                    e["level_after"],
                    e["ret"],
                    e["hook"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn footer(&self) -> &Value {
        self.of_type("footer").into_iter().next_back().expect("trace has a footer")
    }
}

/// Records `script` (run by `sh -c`) and returns the parsed trace.
pub fn record_script(script: &str) -> Result<Trace> {
    record_script_with(script, &[])
}

/// `record_script` with extra environment for freezewatch (e.g. FREEZEWATCH_NO_FENTRY=1).
pub fn record_script_with(script: &str, env: &[(&str, &str)]) -> Result<Trace> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("trace.ndjson");
    let out_s = out.to_str().expect("UTF-8 temp path");
    let mut cmd = Command::new(freezewatch_bin());
    cmd.args(["record", "--out", out_s, "--", "sh", "-c", script]).envs(env.iter().copied());
    let run = freezewatch_cmd(&mut cmd, Duration::from_secs(60))?;
    if run.code != Some(0) {
        bail!("freezewatch record exited {:?}: {}", run.code, run.stderr);
    }
    let mut trace = Trace::parse(&std::fs::read_to_string(&out)?)?;
    trace.stderr = run.stderr;
    Ok(trace)
}

/// What `freezewatch doctor --json` says this kernel allows, read once per test.
pub struct Capabilities {
    pub fentry: bool,
    /// BPF LSM active and LSM programs accepted: `--deny-mounts` can enforce.
    pub lsm: bool,
}

impl Capabilities {
    pub fn probe() -> Self {
        let run = freezewatch(&["doctor", "--json"], Duration::from_secs(60)).expect("doctor runs");
        let report: Value = serde_json::from_str(&run.stdout).expect("doctor --json is JSON");
        let hook = |feature: &str| {
            report["features"]["Ok"]
                .as_array()
                .and_then(|f| f.iter().find(|h| h["feature"] == feature))
                .and_then(|h| h["hook"].as_str().map(str::to_owned))
        };
        Capabilities {
            fentry: hook("freeze").is_some_and(|h| h.starts_with("fentry:")),
            lsm: hook("mount-denial").is_some(),
        }
    }
}

/// Like `kernel_available`, for tests that need fentry (`what` = "fentry") or the BPF LSM
/// (`what` = "lsm"), which this project's host refuses and its QEMU guests allow. The guests set
/// FREEZEWATCH_REQUIRE_FENTRY=1 / FREEZEWATCH_REQUIRE_LSM=1 so that such a test cannot skip there.
pub fn guest_feature_available(test: &str, what: &str) -> bool {
    if !kernel_available(test) {
        return false;
    }
    let caps = Capabilities::probe();
    let (have, var) = match what {
        "fentry" => (caps.fentry, "FREEZEWATCH_REQUIRE_FENTRY"),
        "lsm" => (caps.lsm, "FREEZEWATCH_REQUIRE_LSM"),
        other => panic!("unknown feature {other}"),
    };
    if have {
        return true;
    }
    if std::env::var_os(var).is_some_and(|v| v == "1") {
        panic!("{test}: {var}=1 but this kernel does not allow {what} programs (see freezewatch doctor)");
    }
    eprintln!(
        "SKIPPED {test}: this kernel does not allow {what} programs; it runs in the QEMU guests \
         (cargo xtask vm-test)"
    );
    false
}

/// The fw-fsmount helper: $FREEZEWATCH_FSMOUNT_BIN (the QEMU guests set it), else the path cargo
/// built it at (`built`, from `env!("CARGO_BIN_EXE_fw-fsmount")` in the test).
pub fn fsmount_bin(built: &str) -> String {
    std::env::var("FREEZEWATCH_FSMOUNT_BIN").unwrap_or_else(|_| built.to_owned())
}

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

/// A `freezewatch record` running in the background until stopped: for tests that act on the
/// system themselves while freezewatch watches (and, with --deny-mounts, gates mounts).
pub struct Recorder {
    child: Option<std::process::Child>,
    pub trace_path: PathBuf,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Recorder {
    /// Starts `freezewatch record --out FILE ARGS...` and waits until the hooks are attached
    /// (the trace header is written only then).
    pub fn start(args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let trace_path = dir.path().join("trace.ndjson");
        let stderr_path = dir.path().join("stderr");
        let child = Command::new(freezewatch_bin())
            .arg("record")
            .arg("--out")
            .arg(&trace_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .context("starting freezewatch record")?;
        let mut rec = Recorder { child: Some(child), trace_path, stderr_path, _dir: dir };
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&rec.trace_path).unwrap_or_default();
            if text.lines().next().is_some_and(|l| l.contains("\"header\"")) {
                return Ok(rec);
            }
            if let Some(status) = rec.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("freezewatch record exited ({status}) before attaching: {}", rec.stderr());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("freezewatch record did not attach within 60 s: {}", rec.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Sends `signal` and waits (bounded) for the recorder to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: libc::c_int) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        // SAFETY: kill(2) on our own child's pid; it has not been reaped, so the pid is still ours.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("freezewatch record did not exit within 60 s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops recording (SIGINT, as Ctrl-C) and returns the trace.
    pub fn finish(mut self) -> Result<Trace> {
        let status = self.stop_with(libc::SIGINT)?;
        if !status.success() {
            bail!("freezewatch record exited with {status}: {}", self.stderr());
        }
        Trace::parse(&std::fs::read_to_string(&self.trace_path)?)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The running kernel's version as (major, minor).
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}

/// The holder a FIFREEZE/FITHAW event reports: "userspace", except through fentry on kernels
/// before 6.6, whose `freeze_super(sb)` has no holder argument (null).
pub fn expected_fifreeze_holder(event: &Value) -> Value {
    if event["hook"] == "fentry:freeze_super" && kernel_version() < (6, 6) {
        Value::Null
    } else {
        Value::from("userspace")
    }
}
