//! `cargo xtask vm-test`: boots Debian cloud kernels (6.1, 6.12) under QEMU, where fentry/fexit
//! and BPF LSM load (this project's host refuses them), and runs the kernel test suite there
//! (xtask/vm/init): the same tests as on the host, on the fentry and LSM paths, with the tests
//! that need those required to run rather than skip.
//!
//! Downloads are cached under target/vm/cache, so a second run fetches nothing.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
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
    // Copied into the initramfs: the guests run the crashed-agent test with a real agent.
    ("qemu-guest-agent", "qemu-ga"),
    ("util-linux", "unshare"),
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

/// Tests that may print SKIPPED in a guest, with why; any other skip fails the guest run.
const ALLOWED_SKIPS: &[(&str, &str)] = &[
    ("nested_holders_keep_the_gate_closed_until_the_last_thaw", "6.1: freeze holders nest from Linux 6.6 on"),
    (
        "without_the_bpf_lsm_enforce_will_not_start_and_audit_says_it_is_inactive",
        "it tests a host that refuses the BPF LSM; the guests have it",
    ),
];

/// The hook every feature must attach in the guests, where fentry/fexit, module fexit and the BPF
/// LSM all work: a fallback there is a regression of the paths only the guests exercise.
const GUEST_HOOKS: &[(&str, &str)] = &[
    ("freeze", "fentry:freeze_super"),
    ("block-writes", "raw_tracepoint:block:block_bio_queue"),
    ("blocked-writers", "tp_btf:lock:contention"),
    ("txn-ext4", "raw_tracepoint:ext4:ext4_journal_start"),
    ("txn-xfs", "raw_tracepoint:xfs:xfs_trans_alloc"),
    ("txn-btrfs", "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit"),
    ("mounts", "tp_btf:raw_syscalls:mount"),
    ("completed-writes", "tp_btf:writeback"),
    ("mount-denial", "lsm:sb_kern_mount+sb_mount+move_mount"),
    ("backing-files", "tp_btf:raw_syscalls:fallocate+ftruncate"),
    ("freezer-exits", "tp_btf:sched:sched_process_exit"),
];

/// The storage layers `doctor` must find mappable in the guests (they load dm_mod and loop).
const GUEST_LAYERS: &[&str] =
    &["partition", "dm-linear", "dm-striped", "dm-whole-device", "loop-backing-file"];

/// Tests passed per `test result:` line of `log`.
fn passed_in(log: &str) -> u64 {
    log.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("test result: "))
        .filter_map(|l| l.split(';').find_map(|p| p.trim().strip_suffix(" passed")))
        .filter_map(|p| p.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// What test binary `test` printed, between its begin and end markers (lines may end in \r: the
/// guest's serial console).
fn output_of(log: &str, test: &str) -> String {
    let (begin, end) = (format!("FW-TEST-BEGIN {test}"), format!("FW-TEST-RC {test} "));
    log.lines()
        .skip_while(|l| l.trim() != begin)
        .take_while(|l| !l.trim_start().starts_with(&end))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The test a SKIPPED line is about: "test NAME ... SKIPPED ..." or "SKIPPED NAME: why".
fn skipped_test(line: &str) -> Option<&str> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("test ") {
        return rest.split_whitespace().next();
    }
    let rest = &line[line.find("SKIPPED ")? + "SKIPPED ".len()..];
    rest.split([':', '(', ' ']).next()
}

/// Checks what the guest reported: doctor attached the fentry, fexit and LSM hooks, every test
/// binary ran and passed at least one test (unless a filter selects tests), and nothing skipped
/// but the allowed few (the guest makes tests that need fentry or LSM fail rather than skip).
fn check(name: &str, log: &str, bins: &TestBinaries, filter: Option<&str>, bin_sha256: &str) -> Result<()> {
    ensure!(log.contains("FW-DONE"), "the {name} guest did not finish its script");
    // The first lines of a serial console carry terminal resets before the marker.
    let ran = log.lines().find_map(|l| l.split_once("FW-BIN-SHA256 ")).map(|(_, sha)| sha.trim());
    ensure!(
        ran == Some(bin_sha256),
        "{name}: the guest ran freezewatch {ran:?}, not the one given ({bin_sha256})"
    );
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
    let features = doctor["features"]["Ok"].as_array().with_context(|| format!("{name}: doctor features"))?;
    for (feature, hook) in GUEST_HOOKS {
        let got = features.iter().find(|f| f["feature"] == *feature).map(|f| f["hook"].clone());
        ensure!(got == Some((*hook).into()), "{name}: {feature} attached {got:?}, expected {hook}");
    }
    let layers =
        doctor["storage"]["Ok"]["layers"].as_array().with_context(|| format!("{name}: doctor storage"))?;
    for layer in GUEST_LAYERS {
        let available = layers.iter().find(|l| l["layer"] == *layer).map(|l| l["available"].clone());
        ensure!(available == Some(true.into()), "{name}: storage layer {layer}: {available:?}");
    }
    let mut failed = Vec::new();
    let mut empty = Vec::new();
    for (test, _) in &bins.tests {
        let rc = log
            .lines()
            .find_map(|l| l.strip_prefix(&format!("FW-TEST-RC {test} ")))
            .with_context(|| format!("{name}: test binary {test} did not run"))?;
        if rc.trim() != "0" {
            failed.push(format!("{test} (exit {})", rc.trim()));
        }
        if filter.is_none() && passed_in(&output_of(log, test)) == 0 {
            empty.push(test.as_str());
        }
    }
    ensure!(failed.is_empty(), "{name}: failing test binaries: {}", failed.join(", "));
    ensure!(empty.is_empty(), "{name}: test binaries that passed no test: {}", empty.join(", "));
    let skips: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SKIPPED"))
        .filter(|l| skipped_test(l).is_none_or(|t| !ALLOWED_SKIPS.iter().any(|(allowed, _)| *allowed == t)))
        .collect();
    ensure!(skips.is_empty(), "{name}: tests skipped that must run in the guests:\n{}", skips.join("\n"));
    let passed = passed_in(log);
    ensure!(passed > 0, "{name}: no test ran (does the filter match a test name?)");
    eprintln!("xtask: {name}: {passed} kernel tests passed in {} binaries", bins.tests.len());
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("starting sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
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
    let bin_sha256 = sha256(freezewatch)?;
    eprintln!("xtask: the guests run {} (sha256 {bin_sha256})", freezewatch.display());
    // Kernels and initramfs images first, one after the other (apt, downloads); then the guests
    // side by side: each is one TCG thread, and the machine has two cores.
    let mut failures = Vec::new();
    let mut kvm = None;
    let mut ready = Vec::new();
    for (name, pattern) in selected {
        let prepared = (|| -> Result<(PathBuf, PathBuf)> {
            let (dir, vmlinuz) = kernel(name, pattern)?;
            kvm.get_or_insert_with(|| use_kvm(&vmlinuz));
            let initrd = root().join(format!("target/vm/initrd-{name}.gz"));
            initramfs(&dir, freezewatch, &bins, &initrd)?;
            Ok((vmlinuz, initrd))
        })();
        match prepared {
            Ok((vmlinuz, initrd)) => ready.push((*name, vmlinuz, initrd)),
            Err(e) => {
                eprintln!("xtask: {name}: FAILED: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    let kvm = kvm.unwrap_or(false);
    let results: Vec<(&str, Duration, Result<()>)> = std::thread::scope(|scope| {
        let guests: Vec<_> = ready
            .iter()
            .map(|(name, vmlinuz, initrd)| {
                let (bins, bin_sha256) = (&bins, &bin_sha256);
                scope.spawn(move || {
                    let start = Instant::now();
                    let result = (|| -> Result<()> {
                        let log = match boot(name, vmlinuz, initrd, filter, kvm) {
                            Err(e) if e.is::<Wedged>() => {
                                eprintln!("xtask: {name}: {e} (see above); booting it once more");
                                boot(name, vmlinuz, initrd, filter, kvm)?
                            }
                            other => other?,
                        };
                        check(name, &log, bins, filter, bin_sha256)
                    })();
                    (*name, start.elapsed(), result)
                })
            })
            .collect();
        guests
            .into_iter()
            .map(|g| {
                g.join().unwrap_or_else(|_| ("?", Duration::ZERO, Err(anyhow!("a guest thread panicked"))))
            })
            .collect()
    });
    for (name, took, result) in results {
        eprintln!("xtask: {name}: the guest took {} s", took.as_secs());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a guest's log: serial-console line ends, two binaries, allowed and other skips.
    const LOG: &str = "FW-TEST-BEGIN cli\r\nrunning 2 tests\r\ntest a ... ok\r\n\
        test result: ok. 2 passed; 0 failed; 0 ignored\r\nFW-TEST-RC cli 0\r\n\
        FW-TEST-BEGIN gate\r\ntest nested_holders_keep_the_gate_closed_until_the_last_thaw ... SKIPPED x\r\n\
        test result: ok. 0 passed; 0 failed; 0 ignored\r\nFW-TEST-RC gate 0\r\n\
        SKIPPED some_test: no reason\r\n";

    #[test]
    fn each_binary_counts_its_own_passes() {
        assert_eq!(passed_in(&output_of(LOG, "cli")), 2);
        assert_eq!(passed_in(&output_of(LOG, "gate")), 0, "a binary that ran nothing is seen");
        assert_eq!(passed_in(LOG), 2);
    }

    #[test]
    fn skipped_lines_name_their_test() {
        let names: Vec<&str> =
            LOG.lines().filter(|l| l.contains("SKIPPED")).filter_map(skipped_test).collect();
        assert_eq!(names, ["nested_holders_keep_the_gate_closed_until_the_last_thaw", "some_test"]);
        assert!(ALLOWED_SKIPS.iter().any(|(t, _)| *t == names[0]));
        assert!(!ALLOWED_SKIPS.iter().any(|(t, _)| *t == names[1]));
    }
}
