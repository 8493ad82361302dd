//! `cargo xtask vm-test`: boots Debian cloud kernels (5.10, 6.1, 6.12, 7.3) under QEMU, where fentry/fexit
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

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

mod bench;
mod kernels;
mod qemu;
mod stage;

pub use bench::{GuestBench, bench_guest};

use kernels::KERNELS;
use qemu::*;
use stage::*;

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
/// Guests booted at once at most (each is one TCG thread; CI machines have two cores).
const GUESTS_AT_ONCE: usize = 2;
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

/// The part of the guest's log between two markers the init script prints.
fn between<'a>(log: &'a str, begin: &str, end: &str) -> Result<&'a str> {
    let from = log.find(begin).with_context(|| format!("the guest printed no {begin}"))? + begin.len();
    let to = log[from..].find(end).with_context(|| format!("the guest printed no {end}"))? + from;
    Ok(&log[from..to])
}

/// Tests that may print SKIPPED in every guest, with why (each kernel adds its own, and the
/// tests of the features it lacks); any other skip fails the guest run.
const ALLOWED_SKIPS: &[(&str, &str)] = &[(
    "without_the_bpf_lsm_enforce_will_not_start_and_audit_says_it_is_inactive",
    "it tests a host that refuses the BPF LSM; the guests have it",
)];

/// The hook every feature must attach in the guests, where fentry/fexit, module fexit and the BPF
/// LSM all work: a fallback there is a regression of the paths only the guests exercise.
const GUEST_HOOKS: &[(&str, &str)] = &[
    ("freeze", "fentry:freeze_super"),
    ("block-writes", "raw_tracepoint:block:block_bio_queue"),
    ("blocked-writers", "tp_btf:lock:contention"),
    ("txn-ext4", "raw_tracepoint:ext4:ext4_journal_start"),
    ("txn-xfs", "raw_tracepoint:xfs:xfs_trans_alloc"),
    ("txn-btrfs", "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit"),
    ("mounts", "fentry:sys_mount+finish_automount"),
    ("completed-writes", "tp_btf:writeback"),
    ("mount-denial", "lsm:sb_kern_mount+sb_mount+move_mount"),
    ("backing-files", "fentry:vfs_fallocate+do_truncate"),
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

/// What the run of test module `test` printed, between its begin and end markers (lines may end in \r: the
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
        // "test module::name ...": the tables name tests without their module.
        return rest.split_whitespace().next().and_then(|t| t.rsplit("::").next());
    }
    let rest = &line[line.find("SKIPPED ")? + "SKIPPED ".len()..];
    rest.split([':', '(', ' ']).next()
}

/// Checks what the guest reported: doctor attached the fentry, fexit and LSM hooks, every test
/// module of the plan ran and passed at least one test, and nothing skipped
/// but the allowed few (the guest makes tests that need fentry or LSM fail rather than skip).
fn check(
    kernel: &kernels::Kernel,
    log: &str,
    tests: &KernelTests,
    filter: Option<&str>,
    bin_sha256: &str,
) -> Result<()> {
    let name = kernel.name;
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
    ensure!(probe("iter") == Some("ok".into()), "{name}: iterator probe: {:?}", probe("iter"));
    let level_probe = &doctor["level_probe"]["Ok"];
    ensure!(
        level_probe == "iter:task_file",
        "{name}: the level probe is {level_probe}, expected iter:task_file"
    );
    let features = doctor["features"]["Ok"].as_array().with_context(|| format!("{name}: doctor features"))?;
    for (feature, hook) in GUEST_HOOKS {
        let hook = kernel.differs.iter().find(|d| d.feature == *feature).map_or(Some(*hook), |d| d.hook);
        let got = features.iter().find(|f| f["feature"] == *feature).map(|f| f["hook"].clone());
        let want = hook.map_or(Value::Null, Value::from);
        ensure!(got.as_ref() == Some(&want), "{name}: {feature} attached {got:?}, expected {want}");
    }
    let layers =
        doctor["storage"]["Ok"]["layers"].as_array().with_context(|| format!("{name}: doctor storage"))?;
    for layer in GUEST_LAYERS {
        let available = layers.iter().find(|l| l["layer"] == *layer).map(|l| l["available"].clone());
        ensure!(available == Some(true.into()), "{name}: storage layer {layer}: {available:?}");
    }
    let mut failed = Vec::new();
    let mut empty = Vec::new();
    let plan = tests.plan(filter);
    for (module, _) in &plan {
        let rc = log
            .lines()
            .find_map(|l| l.strip_prefix(&format!("FW-TEST-RC {module} ")))
            .with_context(|| format!("{name}: test module {module} did not run"))?;
        if rc.trim() != "0" {
            failed.push(format!("{module} (exit {})", rc.trim()));
        }
        if passed_in(&output_of(log, module)) == 0 {
            empty.push(*module);
        }
    }
    ensure!(failed.is_empty(), "{name}: failing test modules: {}", failed.join(", "));
    ensure!(empty.is_empty(), "{name}: test modules that passed no test: {}", empty.join(", "));
    let allowed = |line: &str| {
        let test = skipped_test(line);
        let listed = ALLOWED_SKIPS.iter().chain(kernel.skips).any(|(t, _)| Some(*t) == test);
        // "SKIPPED TEST: needs FEATURE (…": a test of a feature this kernel is known to lack.
        let lacked = kernel.differs.iter().any(|d| line.contains(&format!(": needs {} (", d.feature)));
        let quirk = kernel.quirks.iter().any(|(q, _)| line.contains(&format!(": quirk {q} (")));
        listed || lacked || quirk
    };
    let skips: Vec<&str> = log.lines().filter(|l| l.contains("SKIPPED") && !allowed(l)).collect();
    ensure!(skips.is_empty(), "{name}: tests skipped that must run in the guests:\n{}", skips.join("\n"));
    let passed = passed_in(log);
    ensure!(passed > 0, "{name}: no test ran");
    let version = log.lines().find_map(|l| l.split_once("FW-KERNEL ")).map_or("?", |(_, v)| v.trim());
    let skipped = log.lines().filter(|l| l.contains("SKIPPED")).count();
    eprintln!(
        "xtask: {name}: Linux {version}: {passed} kernel tests passed in {} modules, {skipped} skipped as allowed",
        plan.len()
    );
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("starting sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// The kernels `which` names (comma-separated, or `all`), in the table's order.
fn selected(which: &str) -> Result<Vec<&'static kernels::Kernel>> {
    let wanted: Vec<&str> = which.split(',').map(str::trim).collect();
    for name in &wanted {
        ensure!(
            *name == "all" || KERNELS.iter().any(|k| k.name == *name),
            "unknown kernel {name}: use {}",
            kernels::names()
        );
    }
    Ok(KERNELS.iter().filter(|k| wanted.iter().any(|w| *w == "all" || *w == k.name)).collect())
}

/// A guest ready to boot: its kernel, vmlinuz and initramfs.
struct Ready {
    kernel: &'static kernels::Kernel,
    vmlinuz: PathBuf,
    initrd: PathBuf,
}

/// Fetches each kernel and builds its initramfs, one after the other (apt, downloads); those that
/// fail go to `failures`. Also says whether guests boot under KVM.
fn prepare(
    selected: Vec<&'static kernels::Kernel>,
    freezewatch: &Path,
    tests: &KernelTests,
    filter: Option<&str>,
    failures: &mut Vec<String>,
) -> (Vec<Ready>, bool) {
    let mut kvm = None;
    let mut ready = Vec::new();
    for kernel in selected {
        let name = kernel.name;
        let prepared = (|| -> Result<Ready> {
            let (dir, vmlinuz) = kernels::fetch(kernel)?;
            kvm.get_or_insert_with(|| use_kvm(&vmlinuz));
            let initrd = root().join(format!("target/vm/initrd-{name}.gz"));
            initramfs(&dir, freezewatch, tests, filter, &initrd)?;
            Ok(Ready { kernel, vmlinuz, initrd })
        })();
        match prepared {
            Ok(r) => ready.push(r),
            Err(e) => {
                eprintln!("xtask: {name}: FAILED: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    (ready, kvm.unwrap_or(false))
}

/// What each kernel's table entry says differs, may skip, or is a quirk.
fn say_what_differs(ready: &[Ready]) {
    for kernel in ready.iter().map(|r| r.kernel) {
        for d in kernel.differs {
            eprintln!(
                "xtask: {}: {} uses {}: {}",
                kernel.name,
                d.feature,
                d.hook.unwrap_or("no hook"),
                d.why
            );
        }
        for (test, why) in kernel.skips {
            eprintln!("xtask: {}: {test} may skip: {why}", kernel.name);
        }
        for (quirk, what) in kernel.quirks {
            eprintln!("xtask: {}: quirk {quirk}: {what}", kernel.name);
        }
    }
}

/// Boots the guest (once more if it wedged) and checks what it reported.
fn run_guest(
    r: &Ready,
    kvm: bool,
    tests: &KernelTests,
    filter: Option<&str>,
    bin_sha256: &str,
) -> Result<()> {
    let name = r.kernel.name;
    let log = match boot(r.kernel, &r.vmlinuz, &r.initrd, kvm) {
        Err(e) if e.is::<Wedged>() => {
            eprintln!("xtask: {name}: {e} (see above); booting it once more");
            boot(r.kernel, &r.vmlinuz, &r.initrd, kvm)?
        }
        other => other?,
    };
    check(r.kernel, &log, tests, filter, bin_sha256)
}

/// Boots each selected kernel and runs the kernel test suite in it; `filter` (a test name
/// substring, no spaces) selects tests as `cargo test FILTER` does.
pub fn vm_test(which: &str, freezewatch: &Path, filter: Option<&str>) -> Result<()> {
    ensure!(
        filter.is_none_or(|f| !f.is_empty() && !f.contains(char::is_whitespace)),
        "--filter takes one test-name substring without spaces"
    );
    ensure_packages()?;
    let tests = build_kernel_tests()?;
    for (module, why) in HOST_ONLY_MODULES {
        eprintln!("xtask: not run in the guests: {module} ({why})");
    }
    ensure!(
        !tests.plan(filter).is_empty(),
        "no kernel test run in the guests has a name containing {filter:?}"
    );
    let selected = selected(which)?;
    let bin_sha256 = sha256(freezewatch)?;
    eprintln!("xtask: the guests run {} (sha256 {bin_sha256})", freezewatch.display());
    let mut failures = Vec::new();
    let (ready, kvm) = prepare(selected, freezewatch, &tests, filter, &mut failures);
    say_what_differs(&ready);
    // Each guest is one TCG thread: as many at once as the machine has cores (two here), the
    // others waiting their turn, so that no guest runs slower than alone.
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, GUESTS_AT_ONCE);
    let queue = std::sync::Mutex::new(ready.iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| {
                while let Some(r) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let start = Instant::now();
                    let result = run_guest(r, kvm, &tests, filter, &bin_sha256);
                    eprintln!("xtask: {}: the guest took {} s", r.kernel.name, start.elapsed().as_secs());
                    if let Ok(mut all) = results.lock() {
                        all.push((r.kernel.name, result));
                    }
                }
            });
        }
    });
    for (name, result) in results.into_inner().unwrap_or_default() {
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

    /// Shaped like a guest's log: serial-console line ends, two modules, allowed and other skips.
    const LOG: &str = "FW-TEST-BEGIN cli\r\nrunning 2 tests\r\ntest cli::a ... ok\r\n\
        test result: ok. 2 passed; 0 failed; 0 ignored\r\nFW-TEST-RC cli 0\r\n\
        FW-TEST-BEGIN gate\r\ntest gate::nested_holders_keep_the_gate_closed_until_the_last_thaw ... SKIPPED x\r\n\
        test result: ok. 0 passed; 0 failed; 0 ignored\r\nFW-TEST-RC gate 0\r\n\
        SKIPPED some_test: no reason\r\n";

    #[test]
    fn each_module_counts_its_own_passes() {
        assert_eq!(passed_in(&output_of(LOG, "cli")), 2);
        assert_eq!(passed_in(&output_of(LOG, "gate")), 0, "a module that ran nothing is seen");
        assert_eq!(passed_in(LOG), 2);
    }

    #[test]
    fn skipped_lines_name_their_test() {
        let names: Vec<&str> =
            LOG.lines().filter(|l| l.contains("SKIPPED")).filter_map(skipped_test).collect();
        assert_eq!(names, ["nested_holders_keep_the_gate_closed_until_the_last_thaw", "some_test"]);
        let six_one = KERNELS.iter().find(|k| k.name == "6.1").expect("a 6.1 guest");
        assert!(six_one.skips.iter().any(|(t, _)| *t == names[0]));
        assert!(!ALLOWED_SKIPS.iter().chain(six_one.skips).any(|(t, _)| *t == names[1]));
    }
}
