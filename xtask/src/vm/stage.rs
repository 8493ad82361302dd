//! What a guest boots with: the initramfs (busybox, dash, freezewatch, the kernel test binaries,
//! the tools they call with their libraries) and the kernel modules with their dependencies.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::*;
use crate::run;

/// Copies a binary and the shared libraries it needs (as `ldd` lists them) to `dest` in `stage`.
pub(super) fn copy_with_libs_to(bin: &Path, stage: &Path, dest: &str) -> Result<()> {
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

pub(super) fn copy_with_libs(bin: &Path, stage: &Path) -> Result<()> {
    let name = bin.file_name().context("binary name")?.to_string_lossy().into_owned();
    copy_with_libs_to(bin, stage, &format!("usr/sbin/{name}"))
}

/// Tools the kernel tests call, copied from this machine (util-linux, e2fsprogs, xfsprogs,
/// btrfs-progs, coreutils, dmsetup), so that they behave in the guest as on the host; busybox fills in
/// the rest (sleep, seq, cat, …).
pub(super) const GUEST_TOOLS: &[&str] = &[
    "fsfreeze",
    "losetup",
    "mount",
    "umount",
    "setpriv",
    // The service unit's sandbox, rebuilt for the watch test that runs watch in it.
    "unshare",
    // A real freezer daemon for the crashed-agent test.
    "qemu-ga",
    "dd",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "xfs_io",
    "dmsetup",
    "sfdisk",
    "blkdiscard",
    "fallocate",
    "truncate",
    "sync",
];

/// Modules the tests need, with their `depends=` resolved; btrfs's crypto comes as soft
/// dependencies, which are named here. Modules built into a kernel are simply not found.
pub(super) const GUEST_MODULES: &[&str] =
    &["loop", "crc32c_generic", "xxhash_generic", "blake2b_generic", "xfs", "btrfs", "dm_mod", "dm_snapshot"];

/// A module's file name without extension, as the kernel names it (`dm-mod.ko.xz` → `dm_mod`).
pub(super) fn module_name(path: &Path) -> String {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    file.split(".ko").next().unwrap_or_default().replace('-', "_")
}

pub(super) fn module_bytes(path: &Path) -> Result<Vec<u8>> {
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
pub(super) fn module_depends(bytes: &[u8]) -> Vec<String> {
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
pub(super) fn stage_modules(kernel_dir: &Path, stage: &Path) -> Result<()> {
    // lib/modules up to 6.16, usr/lib/modules in the split packages since.
    let listing = output(Command::new("find").arg(kernel_dir).args(["-name", "*.ko*"]))?;
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
pub(super) const HOST_ONLY_TESTS: &[(&str, &str)] = &[
    ("tui", "drives the terminal UI through tmux; the UI is the same code on every kernel"),
    (
        "memory",
        "measures the recorder's user-space memory, the same code on every kernel; 32,000 device writes are slow under TCG",
    ),
    (
        "prometheus",
        "a real Prometheus server scraping watch: the metrics code is the same on every kernel, and the server's binary stays out of the initramfs",
    ),
    (
        "package",
        "inspects the .deb with dpkg, lintian and man on the build host; the guests run the packaged binary itself",
    ),
];

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

pub(super) fn initramfs(
    kernel_dir: &Path,
    freezewatch: &Path,
    bins: &TestBinaries,
    out: &Path,
) -> Result<()> {
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
