//! Booting a guest under QEMU (KVM where a probe boot works, TCG otherwise), streaming its
//! output, and telling a wedged guest from a slow one.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::*;

pub(super) fn use_kvm(vmlinuz: &Path) -> bool {
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
pub(super) fn probe_kvm(vmlinuz: &Path) -> std::result::Result<(), String> {
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
pub(super) fn boot(kernel: &kernels::Kernel, vmlinuz: &Path, initrd: &Path, kvm: bool) -> Result<String> {
    boot_with(kernel, vmlinuz, initrd, kvm, "")
}

/// `boot`, with `extra` added to the kernel command line (the bench guest's settings).
pub(super) fn boot_with(
    kernel: &kernels::Kernel,
    vmlinuz: &Path,
    initrd: &Path,
    kvm: bool,
    extra: &str,
) -> Result<String> {
    let name = kernel.name;
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
            "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet loglevel=1 FW_ABSENT={} FW_OTHER_HOOK={} FW_QUIRKS={} {extra}",
            kernel.absent(),
            kernel.other_hooks(),
            kernel.quirk_names(),
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
    // The whole console (doctor's JSON too), for reading after the run.
    let saved = root().join(format!("target/vm/guest-{name}.log"));
    if let Err(e) = std::fs::write(&saved, &log) {
        eprintln!("xtask: {name}: could not keep the console in {}: {e}", saved.display());
    }
    Ok(log)
}

/// How long a guest may report nothing but soft lockups before it counts as wedged.
pub(super) const WEDGED_AFTER: Duration = Duration::from_secs(180);

/// The guest kernel stopped making progress (soft lockups only): an emulator stall, retried once.
#[derive(Debug)]
pub(super) struct Wedged;

impl std::fmt::Display for Wedged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the guest kernel wedged: only soft-lockup reports for {WEDGED_AFTER:?}")
    }
}

impl std::error::Error for Wedged {}
