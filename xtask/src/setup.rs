//! `cargo xtask setup`: makes a fresh machine able to build and test freezewatch.
//!
//! Steps, each skipped when already done:
//! 1. the nightly toolchain has `rust-src` (the eBPF crate is built with `-Z build-std=core`);
//! 2. `bpf-linker` 0.13 is installed, built against the nightly's own libLLVM through an
//!    LLVM_PREFIX directory of symlinks (kept: the linker's RUNPATH points into it);
//! 3. the Debian packages the kernel tests use (mkfs for ext4/xfs/btrfs, fsfreeze, bpftool, tmux),
//!    and those that build and check the Debian package (dpkg-dev, binutils, lintian, man-db).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::run;

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages and a command each provides, to tell whether it is installed.
const PACKAGES: &[(&str, &str)] = &[
    ("e2fsprogs", "mkfs.ext4"),
    ("xfsprogs", "mkfs.xfs"),
    ("btrfs-progs", "mkfs.btrfs"),
    ("util-linux", "fsfreeze"),
    ("bpftool", "bpftool"),
    ("tmux", "tmux"),
    ("dmsetup", "dmsetup"),
    // The storage-layer tests partition a loop disk (in the guests, which get it from here).
    ("fdisk", "sfdisk"),
    // `cargo xtask dist` and the package test: build, inspect, lint and read the .deb.
    ("dpkg-dev", "dpkg-shlibdeps"),
    ("binutils", "strip"),
    ("lintian", "lintian"),
    ("man-db", "man"),
    // The HTML report's browser test and `cargo xtask screenshot`.
    ("chromium", "chromium"),
    // The watch tests: a real Prometheus scrapes it and sends the shipped rules' alerts through a
    // real Alertmanager; promtool tests the alert rules; systemd checks the service unit.
    ("prometheus", "promtool"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    // The metrics over TLS with basic auth: a certificate made by openssl, requests by curl.
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("systemd", "systemd-analyze"),
    // A real freezer daemon for the watch tests' crashed-agent case.
    ("qemu-guest-agent", "qemu-ga"),
];

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).any(|d| d.join(name).is_file())
}

/// The packages of `wanted` (package, a command it provides) whose command is not installed.
pub(crate) fn absent_packages<'a>(wanted: &[(&'a str, &str)]) -> Vec<&'a str> {
    wanted.iter().filter(|(_, cmd)| !on_path(cmd)).map(|(pkg, _)| *pkg).collect()
}

/// Installs Debian packages; without root, says what to run instead.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "missing Debian packages {}; as root run: apt-get install -y {}",
            packages.join(", "),
            packages.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("no nightly toolchain: the eBPF programs need one (rustup toolchain install nightly)")?;
    Ok(PathBuf::from(out.trim()))
}

fn has_rust_src() -> bool {
    output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
        .is_some_and(|s| s.lines().any(|l| l.starts_with("rust-src")))
}

fn bpf_linker_ok() -> bool {
    let bin = cargo_home().join("bin").join("bpf-linker");
    let probe =
        if bin.is_file() { Command::new(bin) } else { Command::new("bpf-linker") }.arg("--version").output();
    probe.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

/// The nightly's libLLVM file (e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`) and its major version.
fn nightly_llvm(sysroot: &Path) -> Result<(PathBuf, String)> {
    let lib = sysroot.join("lib");
    let entries = std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(ver) = name.strip_prefix("libLLVM.so.") {
            let major = ver.split('.').next().unwrap_or_default().to_owned();
            if major.chars().all(|c| c.is_ascii_digit()) && !major.is_empty() {
                return Ok((e.path(), major));
            }
        }
    }
    bail!("no libLLVM.so.<version> in {}: cannot build bpf-linker against the nightly's LLVM", lib.display())
}

fn install_bpf_linker() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let (libllvm, major) = nightly_llvm(&sysroot)?;
    // bpf-linker's RUNPATH points at this directory, so it lives beside the installed binary.
    let prefix = cargo_home().join("freezewatch-llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let file_name = libllvm.file_name().map(PathBuf::from).unwrap_or_default();
    for link in [PathBuf::from("libLLVM.so"), file_name] {
        let at = lib.join(link);
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(&libllvm, &at).with_context(|| format!("linking {}", at.display()))?;
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (about 2 minutes)");
    run(crate::cargo()
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--force"])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

/// Checks (and unless `check_only`, installs) everything. Prints what it did.
pub fn ensure(check_only: bool) -> Result<()> {
    let mut missing = Vec::new();
    let mut did = Vec::new();

    if !has_rust_src() {
        if check_only {
            missing.push("rust-src for the nightly toolchain".to_owned());
        } else {
            run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
            did.push("added rust-src to the nightly toolchain");
        }
    }
    if !bpf_linker_ok() {
        if check_only {
            missing.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
        } else {
            install_bpf_linker()?;
            did.push("installed bpf-linker");
        }
    }
    let absent = absent_packages(PACKAGES);
    if !absent.is_empty() {
        if check_only {
            missing.push(format!("Debian packages: {}", absent.join(" ")));
        } else {
            apt_install(&absent)?;
            did.push("installed Debian packages");
        }
    }

    if check_only {
        if missing.is_empty() {
            eprintln!("xtask setup: everything is in place");
            return Ok(());
        }
        bail!("missing: {}", missing.join("; "));
    }
    if did.is_empty() {
        eprintln!("xtask setup: everything was already in place");
    } else {
        eprintln!("xtask setup: {}", did.join("; "));
    }
    Ok(())
}
