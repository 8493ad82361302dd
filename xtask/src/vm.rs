//! `cargo xtask vm-test`: boots Debian cloud kernels (6.1, 6.12) under QEMU, where fentry/fexit
//! and BPF LSM load (this project's host refuses them), and runs the kernel test suite there
//! (xtask/vm/init): the same tests as on the host, on the fentry and LSM paths, with the tests
//! that need those required to run rather than skip.
//!
//! Downloads are cached under target/vm/cache, so a second run fetches nothing.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::run;

/// Kernels by the name users pass to --kernel, with the apt package pattern that provides them.
const KERNELS: &[(&str, &str)] = &[
    ("6.1", "linux-image-6.1.0-.*-cloud-amd64-unsigned"),
    ("6.12", "linux-image-6.12.*-cloud-amd64-unsigned"),
];
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("busybox-static", "busybox"),
    ("cpio", "cpio"),
    ("xz-utils", "xz"),
    ("dash", "dash"),
];
/// A guest runs the whole kernel suite under TCG; this bounds a hang, not a slow run.
const BOOT_LIMIT: Duration = Duration::from_secs(2400);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_packages() -> Result<()> {
    let missing = crate::setup::absent_packages(PACKAGES);
    if missing.is_empty() { Ok(()) } else { crate::setup::apt_install(&missing) }
}

/// The newest package matching `pattern`, downloaded into the cache (once) and unpacked.
fn kernel(name: &str, pattern: &str) -> Result<(PathBuf, PathBuf)> {
    let cache = root().join("target/vm/cache");
    std::fs::create_dir_all(&cache)?;
    let search = |update: bool| -> Result<Option<String>> {
        if update {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
        }
        let list = output(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
        let mut names: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).collect();
        names.sort_by_key(|n| {
            n.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok()).collect::<Vec<_>>()
        });
        Ok(names.last().map(|s| (*s).to_owned()))
    };
    let package = match search(false)? {
        Some(p) => p,
        None => search(true)?.with_context(|| format!("no package matches {pattern}"))?,
    };
    let cached = || -> Result<Option<PathBuf>> {
        let prefix = format!("{package}_");
        Ok(std::fs::read_dir(&cache)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))))
    };
    let deb = match cached()? {
        Some(deb) => deb,
        None => {
            eprintln!("xtask: downloading {package}");
            run(Command::new("apt-get").args(["download", "-qq", &package]).current_dir(&cache))?;
            cached()?.context("apt-get download left no .deb")?
        }
    };
    let unpacked = root().join("target/vm").join(name);
    if !unpacked.join("boot").is_dir() {
        std::fs::create_dir_all(&unpacked)?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    let vmlinuz = std::fs::read_dir(unpacked.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .context("no vmlinuz in the package")?;
    Ok((unpacked, vmlinuz))
}

/// Copies a binary and the shared libraries it needs (as `ldd` lists them) to `dest` in `stage`.
fn copy_with_libs_to(bin: &Path, stage: &Path, dest: &str) -> Result<()> {
    let to = stage.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().context("destination dir")?)?;
    std::fs::copy(bin, &to).with_context(|| format!("copying {}", bin.display()))?;
    // ldd fails on static binaries ("not a dynamic executable"): they need nothing.
    let libs = Command::new("ldd").arg(bin).output()?;
    for lib in String::from_utf8_lossy(&libs.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let to = stage.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().context("lib dir")?)?;
        std::fs::copy(lib, &to).with_context(|| format!("copying {lib}"))?;
    }
    Ok(())
}

fn copy_with_libs(bin: &Path, stage: &Path) -> Result<()> {
    let name = bin.file_name().context("binary name")?.to_string_lossy().into_owned();
    copy_with_libs_to(bin, stage, &format!("usr/sbin/{name}"))
}

/// Tools the kernel tests call, copied from this machine (util-linux, e2fsprogs, xfsprogs,
/// btrfs-progs, coreutils dd, dmsetup), so that they behave in the guest as on the host; busybox fills in
/// the rest (sleep, seq, cat, …).
const GUEST_TOOLS: &[&str] = &[
    "fsfreeze",
    "losetup",
    "mount",
    "umount",
    "setpriv",
    "dd",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "xfs_io",
    "dmsetup",
];

/// Modules the tests need, with their `depends=` resolved; btrfs's crypto comes as soft
/// dependencies, which are named here. Modules built into a kernel are simply not found.
const GUEST_MODULES: &[&str] =
    &["loop", "crc32c_generic", "xxhash_generic", "blake2b_generic", "xfs", "btrfs", "dm_mod"];

/// A module's file name without extension, as the kernel names it (`dm-mod.ko.xz` → `dm_mod`).
fn module_name(path: &Path) -> String {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    file.split(".ko").next().unwrap_or_default().replace('-', "_")
}

fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let p = path.to_string_lossy();
    let tool = if p.ends_with(".xz") {
        Some("xz")
    } else if p.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        Some(t) => {
            let out = Command::new(t).arg("-dc").arg(path).output().with_context(|| format!("{t} -dc"))?;
            ensure!(out.status.success(), "{t} -dc {p} failed");
            Ok(out.stdout)
        }
        None => Ok(std::fs::read(path)?),
    }
}

/// The `depends=` list of a module's .modinfo section.
fn module_depends(bytes: &[u8]) -> Vec<String> {
    let key = b"depends=";
    bytes
        .split(|b| *b == 0)
        .find(|s| s.starts_with(key))
        .map(|s| {
            String::from_utf8_lossy(&s[key.len()..])
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Puts the test modules, decompressed and dependencies first, in /modules, with /modules/order
/// listing them in load order (the packages ship no modules.dep, and this machine has no depmod).
fn stage_modules(kernel_dir: &Path, stage: &Path) -> Result<()> {
    let listing = output(Command::new("find").arg(kernel_dir.join("lib/modules")).args(["-name", "*.ko*"]))?;
    let by_name: std::collections::HashMap<String, PathBuf> =
        listing.lines().map(|l| (module_name(Path::new(l)), PathBuf::from(l))).collect();
    let mut order: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        by_name: &std::collections::HashMap<String, PathBuf>,
        stage: &Path,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        let Some(path) = by_name.get(name) else { return Ok(()) }; // built in
        let bytes = module_bytes(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, by_name, stage, order)?;
        }
        std::fs::write(stage.join(format!("modules/{name}.ko")), bytes)?;
        order.push(name.to_owned());
        Ok(())
    }
    std::fs::create_dir_all(stage.join("modules"))?;
    for m in GUEST_MODULES {
        visit(m, &by_name, stage, &mut order)?;
    }
    ensure!(order.iter().any(|m| m == "loop") || !by_name.contains_key("loop"), "loop module missing");
    std::fs::write(stage.join("modules/order"), order.join("\n") + "\n")?;
    Ok(())
}

/// The kernel test binaries (tests/tests/*.rs) and fw-fsmount, as built for this machine.
pub struct TestBinaries {
    pub tests: Vec<(String, PathBuf)>,
    pub fsmount: PathBuf,
}

/// Test binaries left out of the guests, with why.
const HOST_ONLY_TESTS: &[(&str, &str)] =
    &[("tui", "drives the terminal UI through tmux; the UI is the same code on every kernel")];

pub fn build_test_binaries() -> Result<TestBinaries> {
    let out = crate::cargo()
        .args(["test", "--package", "freezewatch-tests", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    ensure!(out.status.success(), "building the kernel test binaries failed");
    let mut tests = Vec::new();
    let mut fsmount = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
        let (Some(exe), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str()) else {
            continue;
        };
        let kinds = msg["target"]["kind"].as_array().cloned().unwrap_or_default();
        if msg["profile"]["test"] == true && kinds.iter().any(|k| k == "test") {
            tests.push((name.to_owned(), PathBuf::from(exe)));
        } else if name == "fw-fsmount" && msg["profile"]["test"] == false {
            // (cargo also builds the bin's own unit-test harness under that target name.)
            fsmount = Some(PathBuf::from(exe));
        }
    }
    tests.retain(|(name, _)| !HOST_ONLY_TESTS.iter().any(|(h, _)| h == name));
    tests.sort();
    ensure!(!tests.is_empty(), "cargo built no kernel test binaries");
    Ok(TestBinaries { tests, fsmount: fsmount.context("fw-fsmount was not built")? })
}

fn initramfs(kernel_dir: &Path, freezewatch: &Path, bins: &TestBinaries, out: &Path) -> Result<()> {
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "usr/sbin", "lib", "etc", "proc", "sys", "dev", "tmp", "tests"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).context("busybox-static")?;
    let which =
        |b: &str| -> Result<PathBuf> { Ok(PathBuf::from(output(Command::new("which").arg(b))?.trim())) };
    // A POSIX shell that runs PATH's programs: busybox sh would run its own applets instead
    // (its fsfreeze, mount and dd differ from util-linux's and coreutils').
    copy_with_libs_to(&which("dash")?, &stage, "bin/sh")?;
    copy_with_libs(freezewatch, &stage)?;
    copy_with_libs_to(&bins.fsmount, &stage, "usr/sbin/fw-fsmount")?;
    for tool in GUEST_TOOLS {
        copy_with_libs(&which(tool)?, &stage)?;
    }
    for (name, exe) in &bins.tests {
        copy_with_libs_to(exe, &stage, &format!("tests/{name}"))?;
    }
    std::fs::copy("/etc/mke2fs.conf", stage.join("etc/mke2fs.conf")).context("mke2fs.conf")?;
    stage_modules(kernel_dir, &stage)?;
    std::fs::copy(root().join("xtask/vm/init"), stage.join("init"))?;
    // PID 1 must be executable whatever mode the checkout gave the file.
    std::fs::set_permissions(stage.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet | gzip -1 > '{}'", out.display()))
        .current_dir(&stage))?;
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}

/// Whether guests use KVM: FREEZEWATCH_VM_KVM=1 forces it and =0 forbids it; otherwise a short
/// probe decides. /dev/kvm exists on this project's machines, yet qemu aborts there at once
/// (setting an MSR fails), so the device alone says nothing.
fn use_kvm(vmlinuz: &Path) -> bool {
    match std::env::var("FREEZEWATCH_VM_KVM").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    if !Path::new("/dev/kvm").exists() {
        eprintln!("xtask: no /dev/kvm: guests run under TCG");
        return false;
    }
    match probe_kvm(vmlinuz) {
        Ok(()) => {
            eprintln!("xtask: KVM works here: guests use it");
            true
        }
        Err(why) => {
            eprintln!("xtask: KVM does not work here ({why}): guests run under TCG");
            false
        }
    }
}

/// Boots `vmlinuz` under KVM without an initramfs (it panics, and qemu exits): KVM works if the
/// kernel got to print its banner.
fn probe_kvm(vmlinuz: &Path) -> std::result::Result<(), String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "max", "-m", "256M", "-smp", "1", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no qemu stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("Linux version")) {
            let _ = tx.send(());
        }
    });
    // A qemu that aborts closes stdout, which ends the wait at once.
    let booted = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let _ = child.kill();
    let out = child.wait_with_output().map_err(|e| format!("waiting for qemu: {e}"))?;
    if booted {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr.lines().find(|l| !l.trim().is_empty()).map_or("no kernel output within 30 s".into(), |l| {
        l.trim().trim_start_matches("qemu-system-x86_64: ").to_owned()
    }))
}

/// Boots the guest and returns its console output, streamed to stderr as it comes.
fn boot(name: &str, vmlinuz: &Path, initrd: &Path, filter: Option<&str>, kvm: bool) -> Result<String> {
    let mut cmd = Command::new("qemu-system-x86_64");
    // One vCPU: with two, a TCG guest wedged for good (both vCPUs in soft lockup) in one of
    // about eight full-suite runs; a single vCPU cannot wait on another one.
    cmd.args(["-m", "3G", "-smp", "1", "-nographic", "-no-reboot"])
        .args(if kvm { ["-accel", "kvm", "-cpu", "max"] } else { ["-accel", "tcg", "-cpu", "max"] })
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            // Unknown key=value parameters reach the guest's init as environment variables.
            "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet loglevel=1 FW_TEST_ARGS={}",
            filter.unwrap_or_default()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut log = String::new();
    let mut in_doctor = false;
    // A guest kernel that reports soft lockups and prints nothing else for this long is wedged.
    let mut lockup_since: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                // doctor's JSON is long and checked below: show the guest's progress, not it.
                // (The first marker may follow the firmware's terminal escapes on the same line.)
                in_doctor =
                    (in_doctor || line.contains("FW-DOCTOR-BEGIN")) && !line.contains("FW-DOCTOR-END");
                if !in_doctor {
                    eprintln!("[guest {name}] {line}");
                }
                if line.contains("soft lockup") {
                    lockup_since.get_or_insert_with(Instant::now);
                } else {
                    lockup_since = None;
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > BOOT_LIMIT {
            let _ = child.kill();
            bail!("the {name} guest did not finish within {BOOT_LIMIT:?}");
        }
        if lockup_since.is_some_and(|t| t.elapsed() > WEDGED_AFTER) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Wedged.into());
        }
    }
    let _ = child.wait();
    Ok(log)
}

/// How long a guest may report nothing but soft lockups before it counts as wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(180);

/// The guest kernel stopped making progress (soft lockups only): an emulator stall, retried once.
#[derive(Debug)]
struct Wedged;

impl std::fmt::Display for Wedged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the guest kernel wedged: only soft-lockup reports for {WEDGED_AFTER:?}")
    }
}

impl std::error::Error for Wedged {}

fn between<'a>(log: &'a str, begin: &str, end: &str) -> Result<&'a str> {
    let from = log.find(begin).with_context(|| format!("the guest printed no {begin}"))? + begin.len();
    let to = log[from..].find(end).with_context(|| format!("the guest printed no {end}"))? + from;
    Ok(&log[from..to])
}

/// Checks what the guest reported: doctor found fentry and the BPF LSM usable, and every test
/// binary ran and passed (the guest makes tests that need fentry or LSM fail rather than skip).
fn check(name: &str, log: &str, bins: &TestBinaries) -> Result<()> {
    ensure!(log.contains("FW-DONE"), "the {name} guest did not finish its script");
    if let Some(line) = log.lines().find(|l| l.starts_with("FW-MODULE-FAILED")) {
        bail!("{name}: {line}");
    }
    let doctor: Value = serde_json::from_str(between(log, "FW-DOCTOR-BEGIN", "FW-DOCTOR-END")?.trim())
        .context("doctor --json output")?;
    let probe = |ty: &str| {
        doctor["program_types"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["program_type"] == ty))
            .map(|p| p["status"].clone())
    };
    ensure!(probe("fentry") == Some("ok".into()), "{name}: fentry probe: {:?}", probe("fentry"));
    ensure!(probe("lsm") == Some("ok".into()), "{name}: LSM probe: {:?}", probe("lsm"));
    let mut failed = Vec::new();
    let mut passed = 0u64;
    for (test, _) in &bins.tests {
        let rc = log
            .lines()
            .find_map(|l| l.strip_prefix(&format!("FW-TEST-RC {test} ")))
            .with_context(|| format!("{name}: test binary {test} did not run"))?;
        if rc.trim() != "0" {
            failed.push(format!("{test} (exit {})", rc.trim()));
        }
    }
    for line in log.lines().filter(|l| l.starts_with("test result: ")) {
        passed += line
            .split(';')
            .find_map(|p| p.trim().strip_suffix(" passed"))
            .and_then(|p| p.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ensure!(failed.is_empty(), "{name}: failing test binaries: {}", failed.join(", "));
    ensure!(passed > 0, "{name}: no test ran (does the filter match a test name?)");
    eprintln!("xtask: {name}: {passed} kernel tests passed in {} binaries", bins.tests.len());
    Ok(())
}

/// Boots each selected kernel and runs the kernel test suite in it; `filter` (a test name
/// substring, no spaces) selects tests as `cargo test FILTER` does.
pub fn vm_test(which: &str, freezewatch: &Path, filter: Option<&str>) -> Result<()> {
    ensure!(
        filter.is_none_or(|f| !f.is_empty() && !f.contains(char::is_whitespace)),
        "--filter takes one test-name substring without spaces"
    );
    ensure_packages()?;
    let bins = build_test_binaries()?;
    for (name, why) in HOST_ONLY_TESTS {
        eprintln!("xtask: not run in the guests: {name} ({why})");
    }
    let selected: Vec<&(&str, &str)> =
        KERNELS.iter().filter(|(n, _)| which == "all" || which == *n).collect();
    ensure!(!selected.is_empty(), "unknown kernel {which}: use 6.1, 6.12 or all");
    let mut failures = Vec::new();
    let mut kvm = None;
    for (name, pattern) in selected {
        let result = (|| -> Result<()> {
            let (dir, vmlinuz) = kernel(name, pattern)?;
            let kvm = *kvm.get_or_insert_with(|| use_kvm(&vmlinuz));
            let initrd = root().join(format!("target/vm/initrd-{name}.gz"));
            initramfs(&dir, freezewatch, &bins, &initrd)?;
            let log = match boot(name, &vmlinuz, &initrd, filter, kvm) {
                Err(e) if e.is::<Wedged>() => {
                    eprintln!("xtask: {name}: {e} (see above); booting it once more");
                    boot(name, &vmlinuz, &initrd, filter, kvm)?
                }
                other => other?,
            };
            check(name, &log, &bins)
        })();
        if let Err(e) = result {
            eprintln!("xtask: {name}: FAILED: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("vm-test failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}
