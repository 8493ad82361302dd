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
#[derive(Debug)]
pub struct Capabilities {
    pub fentry: bool,
    /// The hook watch's level probe attached with (`iter:task_file` where iterators load).
    pub level_probe: Option<String>,
    /// Iterator programs load (doctor's program types).
    pub iter: bool,
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
            level_probe: report["level_probe"]["Ok"].as_str().map(str::to_owned),
            iter: report["program_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|p| p["program_type"] == "iter" && p["status"] == "ok")),
            lsm: hook("mount-denial").is_some(),
        }
    }
}

/// What `freezewatch doctor --json` reports for `feature`: (its hook, or None when none
/// attached; the fallbacks it went past, joined). Doctor runs once per test process.
pub fn doctor_feature(feature: &str) -> (Option<String>, String) {
    static REPORT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let report = REPORT.get_or_init(|| {
        let run = freezewatch(&["doctor", "--json"], limit(60)).expect("doctor runs");
        serde_json::from_str(&run.stdout).expect("doctor --json is JSON")
    });
    let entry = report["features"]["Ok"].as_array().and_then(|f| f.iter().find(|h| h["feature"] == feature));
    let hook = entry.and_then(|h| h["hook"].as_str().map(str::to_owned));
    let fallbacks = entry
        .and_then(|h| h["fallbacks"].as_array())
        .map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    (hook, fallbacks)
}

/// Whether this kernel is known to have no hook for `feature` (FREEZEWATCH_ABSENT, set by the
/// guests of `cargo xtask vm-test` from their kernel's table): a proof of life through that
/// feature is then not asked for. Everywhere else it is, and a silent loss fails.
pub fn absent_here(feature: &str) -> bool {
    listed_in("FREEZEWATCH_ABSENT", feature)
}

/// Whether comma-separated environment variable `var` names `name`.
fn listed_in(var: &str, name: &str) -> bool {
    std::env::var(var).is_ok_and(|list| list.split(',').any(|f| f.trim() == name))
}

/// Whether this kernel is known to do what quirk `name` describes (FREEZEWATCH_QUIRKS, set by the
/// guests of `cargo xtask vm-test` from their kernel's table, which says what each one is).
pub fn known_quirk(name: &str) -> bool {
    listed_in("FREEZEWATCH_QUIRKS", name)
}

/// Like `kernel_available`, for a test of `feature` through `hook` (any hook with None): true
/// when doctor says the feature attached there. Otherwise the test skips, saying
/// "SKIPPED TEST: needs FEATURE" and why; with FREEZEWATCH_REQUIRE_KERNEL=1 that is a failure
/// unless FREEZEWATCH_ABSENT or FREEZEWATCH_OTHER_HOOK (comma-separated features; the guests of
/// `cargo xtask vm-test` set them from their kernel's table) names the feature.
pub fn hook_available(test: &str, feature: &str, hook: Option<&str>) -> bool {
    if !kernel_available(test) {
        return false;
    }
    let (attached, fallbacks) = doctor_feature(feature);
    if attached.is_some() && (hook.is_none() || attached.as_deref() == hook) {
        return true;
    }
    let why = format!(
        "needs {feature} ({}); this kernel's is {} (passed over: {fallbacks})",
        hook.unwrap_or("any hook"),
        attached.as_deref().unwrap_or("none"),
    );
    if kernel_required() && !absent_here(feature) && !listed_in("FREEZEWATCH_OTHER_HOOK", feature) {
        panic!(
            "{test}: FREEZEWATCH_REQUIRE_KERNEL=1 but it {why}, and neither FREEZEWATCH_ABSENT nor \
             FREEZEWATCH_OTHER_HOOK names {feature}"
        );
    }
    eprintln!("SKIPPED {test}: {why}");
    false
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

/// A shell snippet that waits (up to `limit(10)`) until the process whose pid is in `$var` sleeps
/// uninterruptibly (state D), as a writer held at a freeze gate does: a test thaws only once the
/// writer is really blocked, instead of after a guessed sleep.
pub fn sh_wait_until_blocked(var: &str) -> String {
    let tries = 1000 * time_scale();
    format!(
        "i=0; while [ $i -lt {tries} ] && ! grep -q '^State:[[:space:]]*D' /proc/${var}/status 2>/dev/null; do \
         sleep 0.01; i=$((i+1)); done"
    )
}

/// Kills `child` (SIGKILL) and reaps it, waiting at most `limit(10)`: a process in state D (at a
/// frozen gate) dies only once it wakes, and a test must not hang on it; it is left to init then.
pub fn kill_and_reap(child: &mut std::process::Child) {
    let _ = child.kill();
    let start = std::time::Instant::now();
    while start.elapsed() < limit(10) {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("pid {} did not end within {:?} of SIGKILL: left to init", child.id(), limit(10));
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

/// The ids of the BPF programs process `pid` holds a descriptor of: its programs' and links'
/// `prog_id:` lines in `/proc/PID/fdinfo` (no bpftool needed: the guests have none).
pub fn bpf_programs_of(pid: u32) -> std::collections::BTreeSet<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Default::default() };
    fds.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok()))
        .collect()
}

/// bpf(2) command `cmd` with `attr`, the leading part of `union bpf_attr` it takes (the kernel
/// reads `size_of::<T>()` bytes and zero beyond): its non-negative result, or the errno.
///
/// # Safety
/// Every pointer in `attr` must be valid for what `cmd` does with it (read or written) for the
/// call's duration.
pub unsafe fn bpf_call<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised value of the size passed; what its pointers reach is
    // the caller's promise.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>()) };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(rc) }
}

/// A descriptor of BPF program `id` (BPF_PROG_GET_FD_BY_ID), or the errno.
fn bpf_program_fd(id: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // union bpf_attr's GET_FD_BY_ID member: prog_id, next_id, open_flags.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: the attribute holds no pointer.
    let fd = unsafe { bpf_call(BPF_PROG_GET_FD_BY_ID, &attr) }?;
    // SAFETY: a descriptor the call above returned to us and nobody else holds.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether BPF program `id` is still loaded (BPF_PROG_GET_FD_BY_ID finds it).
pub fn bpf_program_loaded(id: u32) -> bool {
    bpf_program_fd(id).map_or_else(|e| e.raw_os_error() != Some(libc::ENOENT), |_| true)
}

/// What the kernel says of each BPF program process `pid` holds: its type (`bpf_prog_type`) and
/// name (cut to 15 bytes, as the kernel keeps it), from `BPF_OBJ_GET_INFO_BY_FD`.
pub fn bpf_program_infos_of(pid: u32) -> Vec<(u32, String)> {
    use std::os::fd::AsRawFd as _;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // union bpf_attr's info member: bpf_fd, info_len, info (a pointer).
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    bpf_programs_of(pid)
        .into_iter()
        .filter_map(|id| {
            let fd = bpf_program_fd(id).ok()?;
            // struct bpf_prog_info up to its name: type at 0, name[16] at 64.
            let mut info = [0u8; 80];
            let get = InfoAttr {
                bpf_fd: fd.as_raw_fd() as u32,
                info_len: info.len() as u32,
                info: info.as_mut_ptr() as u64,
            };
            // SAFETY: the kernel writes at most `info_len` bytes into `info`, which outlives the
            // call.
            unsafe { bpf_call(BPF_OBJ_GET_INFO_BY_FD, &get) }.ok()?;
            let kind = u32::from_ne_bytes(info[0..4].try_into().ok()?);
            let name = info[64..80].split(|b| *b == 0).next().unwrap_or_default();
            Some((kind, String::from_utf8_lossy(name).into_owned()))
        })
        .collect()
}

/// The tracepoints process `pid`'s raw tracepoint links (raw tracepoints and `tp_btf`) are on:
/// the `tp_name:` lines of their `/proc/PID/fdinfo`.
pub fn raw_tracepoints_of(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    fds.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| Some(l.strip_prefix("tp_name:")?.trim().to_owned())))
        .collect()
}
