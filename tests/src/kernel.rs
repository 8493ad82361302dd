//! Whether kernel tests can run here, and what this kernel is and allows.
use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::*;

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

/// What `freezewatch doctor --json` says this kernel allows, read once per test.
pub struct Capabilities {
    pub fentry: bool,
    /// BPF LSM active and LSM programs accepted: `--deny-mounts` can enforce.
    pub lsm: bool,
}

impl Capabilities {
    pub fn probe() -> Self {
        let run = freezewatch(&["doctor", "--json"], limit(60)).expect("doctor runs");
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

/// A shell snippet that waits (up to 10 s) until the process whose pid is in `$var` sleeps
/// uninterruptibly (state D), as a writer held at a freeze gate does: a test thaws only once the
/// writer is really blocked, instead of after a guessed sleep.
pub fn sh_wait_until_blocked(var: &str) -> String {
    format!(
        "i=0; while [ $i -lt 1000 ] && ! grep -q '^State:[[:space:]]*D' /proc/${var}/status 2>/dev/null; do \
         sleep 0.01; i=$((i+1)); done"
    )
}

/// The factor every time limit of the kernel tests is scaled by: `FREEZEWATCH_TIME_SCALE`
/// (default 1). The QEMU guests, which run under TCG ten times slower, set it higher; limits
/// bound hangs, they never judge speed.
pub fn time_scale() -> u32 {
    std::env::var("FREEZEWATCH_TIME_SCALE").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// `secs` seconds, scaled by `time_scale`.
pub fn limit(secs: u64) -> Duration {
    Duration::from_secs(secs) * time_scale()
}

/// Polls `ready` every 10 ms until it gives a value, for at most `within`; fails with `what`.
pub fn poll_until<T>(within: Duration, what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(start.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
