//! `cargo xtask vm-test`: boots Debian cloud kernels (6.1, 6.12) under QEMU, where fentry/fexit
//! and BPF LSM load (this project's host refuses them), and runs the kernel test suite there
//! (xtask/vm/init): the same tests as on the host, on the fentry and LSM paths, with the tests
//! that need those required to run rather than skip.
//!
//! Downloads are cached under target/vm/cache, so a second run fetches nothing.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::run;

mod qemu;
mod stage;

use qemu::*;
use stage::*;

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

pub(super) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

pub(super) fn output(cmd: &mut Command) -> Result<String> {
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

/// The part of the guest's log between two markers the init script prints.
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
