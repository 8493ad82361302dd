//! What a guest boots with: the initramfs (busybox, dash, freezewatch, the kernel test binary,
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

/// The kernel test binary (tests/tests/kernel/), its tests by module, and the script helpers, as
/// built for this machine. The guests run it once per module, so each module is accounted for on
/// its own.
pub struct KernelTests {
    pub exe: PathBuf,
    /// Module name, then the full names of its tests (`module::test`), as `--list` gives them.
    pub modules: Vec<(String, Vec<String>)>,
    /// Each of `SCRIPT_HELPERS` and where it was built.
    pub helpers: Vec<(&'static str, PathBuf)>,
}

/// The tests crate's binaries that test scripts run (`tests/src/bin`), found in the guests in
/// `/usr/sbin` ($FREEZEWATCH_HELPERS_DIR).
const SCRIPT_HELPERS: &[&str] = &["fw-fsmount", "fw-at-once"];

impl KernelTests {
    /// The modules to run, with the tests whose names contain `filter` (all without one); a module
    /// left with none is not run.
    pub fn plan(&self, filter: Option<&str>) -> Vec<(&str, Vec<&str>)> {
        self.modules
            .iter()
            .map(|(module, tests)| {
                let tests = tests.iter().map(String::as_str).filter(|t| filter.is_none_or(|f| t.contains(f)));
                (module.as_str(), tests.collect::<Vec<_>>())
            })
            .filter(|(_, tests)| !tests.is_empty())
            .collect()
    }
}

/// Modules of the kernel test binary left out of the guests, with why.
pub(super) const HOST_ONLY_MODULES: &[(&str, &str)] = &[
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

/// The name of the kernel test binary's target (tests/tests/kernel/main.rs).
const KERNEL_TEST_TARGET: &str = "kernel";

pub fn build_kernel_tests() -> Result<KernelTests> {
    let out = crate::cargo()
        .args(["test", "--package", "freezewatch-tests", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    ensure!(out.status.success(), "building the kernel test binary failed");
    let mut exe = None;
    let mut helpers = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
        let (Some(path), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str()) else {
            continue;
        };
        let kinds = msg["target"]["kind"].as_array().cloned().unwrap_or_default();
        if msg["profile"]["test"] == true && kinds.iter().any(|k| k == "test") {
            ensure!(
                name == KERNEL_TEST_TARGET,
                "a second kernel test binary, {name}: make it a module of tests/tests/kernel"
            );
            exe = Some(PathBuf::from(path));
        } else if let Some(helper) = SCRIPT_HELPERS.iter().find(|h| **h == name)
            && msg["profile"]["test"] == false
        {
            // (cargo also builds the bin's own unit-test harness under that target name.)
            helpers.push((*helper, PathBuf::from(path)));
        }
    }
    let exe = exe.context("cargo built no kernel test binary")?;
    let modules = modules_of(&output(Command::new(&exe).args(["--list", "--format", "terse"]))?);
    ensure!(!modules.is_empty(), "the kernel test binary lists no tests");
    for helper in SCRIPT_HELPERS {
        ensure!(helpers.iter().any(|(h, _)| h == helper), "{helper} was not built");
    }
    Ok(KernelTests { exe, modules, helpers })
}

/// The tests of a `--list --format terse` listing ("module::name: test"), by module, without the
/// host-only modules.
fn modules_of(listing: &str) -> Vec<(String, Vec<String>)> {
    let mut modules: Vec<(String, Vec<String>)> = Vec::new();
    for test in listing.lines().filter_map(|l| l.strip_suffix(": test")) {
        let module = test.split("::").next().unwrap_or(test);
        if HOST_ONLY_MODULES.iter().any(|(m, _)| *m == module) {
            continue;
        }
        match modules.iter_mut().find(|(m, _)| m == module) {
            Some((_, tests)) => tests.push(test.to_owned()),
            None => modules.push((module.to_owned(), vec![test.to_owned()])),
        }
    }
    modules.sort();
    modules
}

pub(super) fn initramfs(
    kernel_dir: &Path,
    freezewatch: &Path,
    tests: &KernelTests,
    filter: Option<&str>,
    out: &Path,
) -> Result<()> {
    build_initramfs(kernel_dir, freezewatch, GUEST_TOOLS, "init", out, |stage| {
        for (name, built) in &tests.helpers {
            copy_with_libs_to(built, stage, &format!("usr/sbin/{name}"))?;
        }
        copy_with_libs_to(&tests.exe, stage, "tests/kernel")?;
        // The plan the init runs: one line per module, its name and then its tests' full names.
        let plan: Vec<String> =
            tests.plan(filter).iter().map(|(m, t)| format!("{m} {}", t.join(" "))).collect();
        std::fs::write(stage.join("tests/plan"), plan.join("\n") + "\n")?;
        Ok(())
    })
}

/// Builds the gzipped cpio `out` a guest boots with: busybox, dash as /bin/sh, freezewatch and
/// `tools` (found on PATH) with their libraries, mke2fs.conf, the kernel's modules, and
/// xtask/vm/`init` as PID 1; `extra` adds what only this guest needs to the staging directory.
pub(super) fn build_initramfs(
    kernel_dir: &Path,
    freezewatch: &Path,
    tools: &[&str],
    init: &str,
    out: &Path,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "usr/sbin", "lib", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).context("busybox-static")?;
    let which =
        |b: &str| -> Result<PathBuf> { Ok(PathBuf::from(output(Command::new("which").arg(b))?.trim())) };
    // A POSIX shell that runs PATH's programs: busybox sh would run its own applets instead
    // (its fsfreeze, mount, losetup and dd differ from util-linux's and coreutils').
    copy_with_libs_to(&which("dash")?, &stage, "bin/sh")?;
    copy_with_libs(freezewatch, &stage)?;
    for tool in tools {
        copy_with_libs(&which(tool)?, &stage)?;
    }
    extra(&stage)?;
    std::fs::copy("/etc/mke2fs.conf", stage.join("etc/mke2fs.conf")).context("mke2fs.conf")?;
    stage_modules(kernel_dir, &stage)?;
    std::fs::copy(root().join("xtask/vm").join(init), stage.join("init"))?;
    // PID 1 must be executable whatever mode the checkout gave the file.
    std::fs::set_permissions(stage.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet | gzip -1 > '{}'", out.display()))
        .current_dir(&stage))?;
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "cli::a: test\ngate::b: test\ncli::c: test\ntui::d: test\nwatch::hold: test\n\n5 tests, 0 benchmarks\n";

    #[test]
    fn modules_group_their_tests_and_leave_host_only_ones_out() {
        let modules = modules_of(LISTING);
        let names: Vec<(&str, Vec<&str>)> =
            modules.iter().map(|(m, t)| (m.as_str(), t.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            names,
            [("cli", vec!["cli::a", "cli::c"]), ("gate", vec!["gate::b"]), ("watch", vec!["watch::hold"])]
        );
    }

    #[test]
    fn a_filter_keeps_the_modules_with_a_matching_test() {
        let tests = KernelTests { exe: PathBuf::new(), modules: modules_of(LISTING), helpers: Vec::new() };
        assert_eq!(tests.plan(None).len(), 3);
        assert_eq!(tests.plan(Some("cli::c")), [("cli", vec!["cli::c"])]);
        assert!(tests.plan(Some("nothing")).is_empty());
    }
}
