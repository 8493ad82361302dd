//! `freezewatch watch` on real freezes of loop filesystems: alerts while a freeze lasts, a freezer
//! that dies (and the watchdog, in enforce and audit mode), a script that thaws what it froze, the
//! metrics endpoint, bad input and SIGTERM during a freeze. Every "nothing happened" is paired with
//! something that did happen in the same run.
//!
//! Longer than 500 lines: every test here runs the one service against real freezes, and they
//! share its helpers (a freezer that holds its own freeze, a writer held at the gate, waiting for
//! an exit without blocking on the gate); split, those helpers would move to `tests/src` for one
//! user.
use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use freezewatch_tests::{
    Capabilities, DmStack, Frozen, FsType, LoopFs, UnitSandbox, Watcher, absent_here, bpf_program_loaded,
    bpf_programs_of, dmsetup, free_port, freezewatch, freezewatch_bin, hook_available, kernel_available,
    kill_and_reap, layer_available, limit, poll_until, time_scale,
};

/// A process that froze `fs` and keeps running (`sh`, turned into `sleep` after fsfreeze returns):
/// fsfreeze exits at once, its parent is the owner. Returns once the freeze is done.
fn freezer(fs: &LoopFs, then: &str) -> Child {
    spawn_frozen(|mark| {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!("fsfreeze -f {} && touch {} && {then}", fs.mnt(), mark.display()));
        sh
    })
}

/// Starts the freezer `command` makes, which touches the path it is given once it has frozen;
/// returns once it has.
fn spawn_frozen(command: impl FnOnce(&std::path::Path) -> Command) -> Child {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = dir.path().join("frozen");
    let child = command(&mark).stdin(Stdio::null()).spawn().expect("starts the freezer");
    poll_until(limit(30), "the freezer did not freeze", || mark.exists().then_some(()));
    child
}

/// A writer that blocks at the frozen gate; never waited for synchronously.
fn blocked_writer(fs: &LoopFs) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("echo data > {}/written", fs.mnt()))
        .spawn()
        .expect("starts the writer")
}

/// Whether `fs` is frozen now: a second freeze fails with EBUSY exactly then (and changes
/// nothing when it fails; when it succeeds it is undone at once).
fn is_frozen(fs: &LoopFs) -> bool {
    let ok = Command::new("fsfreeze")
        .args(["-f", fs.mnt()])
        .stderr(Stdio::null())
        .status()
        .expect("fsfreeze")
        .success();
    if ok {
        let _ = Command::new("fsfreeze").args(["-u", fs.mnt()]).status();
    }
    !ok
}

/// Waits for `child` to exit, polling, never longer than `within` (a task blocked at a frozen gate
/// cannot be waited for outright); fails with `what` when it has not.
fn exits_within(child: &mut Child, within: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Not a test: the process `self_freezer` starts (this test binary again, with `FW_HOLD_FREEZE`
/// set to a mount point) to make the FIFREEZE ioctl itself and keep running, as qemu-ga or a
/// backup daemon does. It touches `FW_HOLD_MARK` once frozen.
#[test]
#[ignore = "a helper process of the ownership tests, run by them"]
fn hold_freeze_helper() {
    use std::os::fd::AsRawFd as _;
    let (Some(mnt), Some(mark)) = (std::env::var_os("FW_HOLD_FREEZE"), std::env::var_os("FW_HOLD_MARK"))
    else {
        panic!("run by the ownership tests, with FW_HOLD_FREEZE and FW_HOLD_MARK");
    };
    let dir = std::fs::File::open(mnt).expect("opens the mount point");
    // SAFETY: FIFREEZE takes no argument; the descriptor is open for the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), freeze_common::FIFREEZE as libc::c_ulong, 0) };
    assert_eq!(rc, 0, "FIFREEZE: {}", std::io::Error::last_os_error());
    std::fs::write(mark, b"").expect("marks");
    std::thread::sleep(Duration::from_secs(3600));
}

/// A process that froze `fs` with its own ioctl and keeps running until killed.
fn self_freezer(fs: &LoopFs) -> Child {
    spawn_frozen(|mark| {
        let mut helper = Command::new(std::env::current_exe().expect("this binary"));
        helper
            .args(["--ignored", "--exact", "watch::hold_freeze_helper", "--test-threads=1"])
            .env("FW_HOLD_FREEZE", fs.mnt())
            .env("FW_HOLD_MARK", mark)
            .stdout(Stdio::null());
        helper
    })
}

/// The watchdog ended `fs`'s freeze within `within` (from now), and `writer`, held at its gate,
/// went on and wrote its data.
fn thawed_and_written(
    watch: &Watcher,
    fs: &LoopFs,
    writer: &mut Child,
    within: Duration,
) -> serde_json::Value {
    let thawed = watch.wait_for("thawed-by-watchdog", fs.mnt(), within).expect("the watchdog thaws");
    let status = exits_within(writer, limit(10), "the writer is still blocked after the thaw");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(format!("{}/written", fs.mnt())).expect("written"), "data\n");
    assert!(!is_frozen(fs));
    thawed
}

/// Waits (bounded) until `writer` sleeps at the frozen gate (state D).
fn wait_blocked(writer: &Child) {
    let status = format!("/proc/{}/status", writer.id());
    poll_until(limit(10), "the writer never blocked at the gate", || {
        // The shell forks nothing for `echo`: the writer is the shell itself.
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        text.lines().any(|l| l.starts_with("State:") && l.contains("D")).then_some(())
    });
}

#[test]
fn a_process_that_froze_by_itself_and_was_killed_is_gone_and_thawed() {
    if !kernel_available("a_process_that_froze_by_itself_and_was_killed_is_gone_and_thawed") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&["--thaw-orphans=enforce", "--orphan-grace", "1s"]).expect("watch");
    let mut owner = self_freezer(&fs);
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    // Past the settle time it owns its freeze; its parent (this test) is no owner of it.
    watch.wait_frozen_for(fs.mnt(), 1.5);
    assert!(watch.findings_of("freezer-gone", fs.mnt()).is_empty(), "not gone while it runs");
    let pid = owner.id();
    kill_and_reap(&mut owner);
    let killed_at = Instant::now();
    let gone = watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    let message = gone["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("[{pid}] was killed by SIGKILL ")), "{message}");
    assert!(
        message.contains(" after freezing ext4 ") && message.contains("nothing holds the freeze"),
        "{message}"
    );
    assert_eq!(gone["pid"], pid, "{gone}");
    thawed_and_written(&watch, &fs, &mut writer, Duration::from_secs(1) + limit(2));
    assert!(killed_at.elapsed() >= Duration::from_secs(1), "not before the grace period");
}

/// A real qemu-guest-agent (Debian's `qemu-guest-agent`), started as a daemon (`-d`: its parent is
/// init) listening on a socket in its own temp dir; killed in `Drop` if still running.
struct GuestAgent {
    pid: i32,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl GuestAgent {
    /// `None` when qemu-ga is not installed.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, pidfile, state) =
            (dir.path().join("qga.sock"), dir.path().join("qga.pid"), dir.path().join("state"));
        std::fs::create_dir(&state).expect("state dir");
        let path = |p: &std::path::Path| p.to_str().expect("UTF-8 temp path").to_owned();
        let status = Command::new("qemu-ga")
            .args([
                "-d",
                "-m",
                "unix-listen",
                "-p",
                &path(&socket),
                "-f",
                &path(&pidfile),
                "-t",
                &path(&state),
            ])
            .args(["-l", &path(&dir.path().join("qga.log"))])
            .status()
            .ok()?;
        assert!(status.success(), "qemu-ga -d failed: {status}");
        let pid = poll_until(limit(10), "qemu-ga wrote no pid file or made no socket", || {
            let pid = std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse().ok());
            pid.filter(|_| socket.exists())
        });
        Some(Self { pid, socket, _dir: dir })
    }

    /// One command on its socket; its answer.
    fn execute(&self, command: &serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead as _, Write as _};
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket).expect("connects to qemu-ga");
        stream.set_read_timeout(Some(limit(30))).expect("timeout");
        writeln!(stream, "{command}").expect("sends");
        let mut line = String::new();
        std::io::BufReader::new(stream).read_line(&mut line).expect("qemu-ga answers");
        serde_json::from_str(&line).expect("JSON answer")
    }

    fn kill(&self) {
        // SAFETY: kill(2) with a pid this test started; no memory is involved.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Drop for GuestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_crashed_guest_agent_is_gone_and_its_freeze_is_thawed() {
    if !kernel_available("a_crashed_guest_agent_is_gone_and_its_freeze_is_thawed") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&["--thaw-orphans=enforce", "--orphan-grace", "1s"]).expect("watch");
    let Some(agent) = GuestAgent::start() else {
        assert!(
            !freezewatch_tests::kernel_required(),
            "FREEZEWATCH_REQUIRE_KERNEL=1 but qemu-ga is not installed"
        );
        eprintln!("SKIPPED a_crashed_guest_agent_is_gone_and_its_freeze_is_thawed: no qemu-ga");
        return;
    };
    let answer = agent.execute(&serde_json::json!({
        "execute": "guest-fsfreeze-freeze-list",
        "arguments": {"mountpoints": [fs.mnt()]},
    }));
    assert_eq!(answer["return"], 1, "qemu-ga froze one filesystem: {answer}");
    assert!(is_frozen(&fs));
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    watch.wait_frozen_for(fs.mnt(), 1.5);
    assert!(watch.findings_of("freezer-gone", fs.mnt()).is_empty(), "not gone while qemu-ga runs");
    agent.kill();
    let killed_at = Instant::now();
    let gone = watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    let message = gone["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("qemu-ga[{}] was killed by SIGKILL ", agent.pid)), "{message}");
    assert!(message.contains("nothing holds the freeze"), "{message}");
    let thawed = thawed_and_written(&watch, &fs, &mut writer, Duration::from_secs(1) + limit(2));
    assert!(killed_at.elapsed() >= Duration::from_secs(1), "not before the grace period");
    assert!(thawed["message"].as_str().unwrap_or_default().contains("by qemu-ga["), "{thawed}");
}

#[test]
fn outputs_on_the_frozen_filesystem_stop_nothing_and_lose_nothing() {
    if !kernel_available("outputs_on_the_frozen_filesystem_stop_nothing_and_lose_nothing") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let (findings, traces) = (format!("{}/findings.ndjson", fs.mnt()), format!("{}/traces", fs.mnt()));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = ["--thaw-orphans=enforce", "--orphan-grace", "1s", "--trace-dir", &traces, "--metrics", &addr];
    let mut watch = Watcher::start_with(Some(findings.clone().into()), &args).expect("watch");
    let mut owner = freezer(&fs, "exec sleep 600");
    // Findings while frozen: a thaw-blocked writer would be the freezer's own; a second freeze
    // attempt that fails is a finding of its own (freeze-failed).
    let failed =
        Command::new("fsfreeze").args(["-f", fs.mnt()]).stderr(Stdio::null()).status().expect("fsfreeze");
    assert!(!failed.success(), "the second freeze fails: it is frozen");
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    // /metrics answers while watch's own outputs are frozen.
    let m = fs.mnt();
    watch.wait_sample("freezewatch_freeze_level", m, "", |v| v == 4.0);
    kill_and_reap(&mut owner);
    // The watchdog thaws although every output of watch waits at this filesystem's gate.
    let status =
        exits_within(&mut writer, Duration::from_secs(1) + limit(10), "nothing thawed the filesystem");
    assert!(status.success());
    assert!(!is_frozen(&fs));
    watch.wait_sample("freezewatch_watchdog_thaws_total", m, "", |v| v == 1.0);
    let thawed = watch.wait_for("thawed-by-watchdog", m, limit(10)).expect("the findings reach the file");
    assert!(thawed["message"].as_str().unwrap_or_default().contains("its freezer has been gone"), "{thawed}");
    let kinds: Vec<String> =
        watch.findings().iter().filter_map(|f| f["kind"].as_str().map(str::to_owned)).collect();
    let order = ["freeze-failed", "freezer-gone", "thawed-by-watchdog"];
    let at: Vec<Option<usize>> = order.iter().map(|k| kinds.iter().position(|x| x == k)).collect();
    assert!(at.iter().all(Option::is_some) && at.is_sorted(), "every finding, in order: {kinds:?}");
    let text = watch.metrics();
    assert!(text.contains("freezewatch_output_dropped_total{output=\"findings\"} 0"), "{text}");
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success(), "{}", watch.stderr());
    // The trace directory got the freeze too, once the filesystem took writes again.
    let trace: String = std::fs::read_dir(&traces)
        .expect("trace dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(trace.contains("\"kind\":\"freeze_end\"") && trace.contains("\"kind\":\"thaw_end\""), "{trace}");
}

#[test]
fn a_prompt_freezer_left_to_init_is_unowned_and_thawed_after_the_grace() {
    if !kernel_available("a_prompt_freezer_left_to_init_is_unowned_and_thawed_after_the_grace") {
        return;
    }
    let fs = LoopFs::new(FsType::Xfs).expect("fs");
    let watch = Watcher::start(&["--thaw-orphans=enforce", "--orphan-grace", "1s"]).expect("watch");
    // The shell backgrounds fsfreeze and exits at once: fsfreeze is left to init (or the
    // nearest subreaper), which owns nothing it did not start itself.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("fsfreeze -f {} >/dev/null 2>&1 &", fs.mnt()))
        .status()
        .expect("runs the shell");
    assert!(status.success());
    let gone = watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    let message = gone["message"].as_str().unwrap_or_default();
    assert!(message.contains("fsfreeze[") && message.contains("nothing holds the freeze"), "{message}");
    let mut writer = blocked_writer(&fs);
    thawed_and_written(&watch, &fs, &mut writer, limit(10));
}

#[test]
fn frozen_too_long_arrives_while_still_frozen() {
    if !kernel_available("frozen_too_long_arrives_while_still_frozen") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let mut watch = Watcher::start(&["--alert-frozen", "1s", "--alert-every", "1h"]).expect("watch");
    // Taken before the freeze: the threshold counts from the freeze's completion, inside fsfreeze,
    // which can be milliseconds before fsfreeze has exited and the test reads the clock (2 ms
    // in the 6.1 guest).
    let froze_at = Instant::now();
    let frozen = Frozen::new(&fs).expect("freeze");
    let alert = watch.wait_for("frozen-too-long", fs.mnt(), limit(10)).expect("frozen-too-long arrives");
    let after = froze_at.elapsed();
    assert!(after >= Duration::from_secs(1), "not before the threshold: {after:?}");
    assert!(after < Duration::from_secs(1) + limit(1), "within a second of it: {after:?}");
    assert!(is_frozen(&fs), "it came while the filesystem was still frozen");
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(message.contains("and still is") && message.contains("frozen by fsfreeze["), "{alert}");
    assert_eq!(alert["severity"], "warning");
    drop(frozen);
    watch.wait_thawed(fs.mnt());
    assert!(watch.findings_of("freezer-gone", fs.mnt()).is_empty(), "its owner (this test) still runs");
    assert_eq!(watch.findings_of("frozen-too-long", fs.mnt()).len(), 1, "once: the cadence is an hour");
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success(), "{}", watch.stderr());
}

#[test]
fn a_killed_freezer_is_gone_and_enforce_thaws_after_the_grace() {
    if !kernel_available("a_killed_freezer_is_gone_and_enforce_thaws_after_the_grace") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&["--thaw-orphans=enforce", "--orphan-grace", "1s"]).expect("watch");
    let mut owner = freezer(&fs, "exec sleep 600");
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    assert!(watch.findings_of("freezer-gone", fs.mnt()).is_empty(), "not gone while its owner runs");
    let owner_pid = owner.id();
    kill_and_reap(&mut owner);
    let killed_at = Instant::now();
    let gone = watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    let message = gone["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("sh[{owner_pid}] was killed by SIGKILL; it had run fsfreeze[")),
        "names the owner that died, and how: {message}"
    );
    let thawed = watch.wait_for("thawed-by-watchdog", fs.mnt(), limit(10)).expect("the watchdog thaws");
    assert!(killed_at.elapsed() >= Duration::from_secs(1), "not before the grace period");
    let message = thawed["message"].as_str().unwrap_or_default();
    assert!(message.contains("its freezer has been gone for") && message.contains("fsfreeze["), "{message}");
    // The writer that was held at the gate goes on.
    let status = exits_within(&mut writer, limit(10), "the writer is still blocked after the thaw");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(format!("{}/written", fs.mnt())).expect("written"), "data\n");
    assert!(!is_frozen(&fs));
}

#[test]
fn audit_only_says_what_it_would_thaw() {
    if !kernel_available("audit_only_says_what_it_would_thaw") {
        return;
    }
    let fs = LoopFs::new(FsType::Xfs).expect("fs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let watch =
        Watcher::start(&["--thaw-orphans=audit", "--orphan-grace", "1s", "--metrics", &addr]).expect("watch");
    let mut owner = freezer(&fs, "exec sleep 600");
    kill_and_reap(&mut owner);
    watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    let would = watch.wait_for("watchdog-would-thaw", fs.mnt(), limit(10)).expect("audit says it");
    assert!(would["message"].as_str().unwrap_or_default().contains("audit mode: left as it is"), "{would}");
    assert!(watch.findings_of("thawed-by-watchdog", fs.mnt()).is_empty());
    assert!(is_frozen(&fs), "audit thaws nothing");
    watch.wait_sample("freezewatch_freezer_gone", fs.mnt(), "", |v| v == 1.0);
    assert_eq!(watch.sample("freezewatch_watchdog_thaws_total", fs.mnt(), ""), Some(0.0), "no thaw counted");
    // (LoopFs thaws it in Drop.)
}

#[test]
fn a_script_that_thaws_is_no_orphan_and_one_that_exits_early_is_left_for_the_grace() {
    if !kernel_available("a_script_that_thaws_is_no_orphan_and_one_that_exits_early_is_left_for_the_grace") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&["--thaw-orphans", "--orphan-grace", "30s"]).expect("watch");
    let script = format!("fsfreeze -f {m}; sleep 1; fsfreeze -u {m}", m = fs.mnt());
    let status = Command::new("sh").arg("-c").arg(&script).status().expect("script");
    assert!(status.success());
    // A script that exits between freeze and thaw: its freezer is gone.
    let status =
        Command::new("sh").arg("-c").arg(format!("fsfreeze -f {}", fs.mnt())).status().expect("script");
    assert!(status.success());
    watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("the early exit is seen");
    assert_eq!(
        watch.findings_of("freezer-gone", fs.mnt()).len(),
        1,
        "and only that one: the first script thawed"
    );
    // watch has looked at it for 2 s: no thaw in that time.
    watch.wait_frozen_for(fs.mnt(), 2.0);
    assert!(
        watch.findings_of("thawed-by-watchdog", fs.mnt()).is_empty(),
        "nothing is thawed before the grace"
    );
    assert!(is_frozen(&fs));
}

#[test]
fn metrics_show_the_level_frozen_seconds_and_slips() {
    if !kernel_available("metrics_show_the_level_frozen_seconds_and_slips") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut watch = Watcher::start(&["--metrics", &addr]).expect("watch");
    let before = watch.metrics();
    assert!(before.starts_with("HTTP/1.0 200") || before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.contains("freezewatch_build_info{version=\""), "{before}");
    assert!(before.contains("freezewatch_hook_info{feature=\"freeze\""), "{before}");
    let frozen = Frozen::new(&fs).expect("freeze");
    // Each value is polled (bounded): watch updates time-based metrics every 100 ms, and a slow
    // guest may take longer.
    let m = fs.mnt();
    watch.wait_sample("freezewatch_freeze_level", m, "", |v| v == 4.0);
    let first = watch.wait_sample("freezewatch_frozen_seconds", m, "", |v| v > 0.0);
    watch.wait_sample("freezewatch_frozen_seconds", m, "", |v| v > first);
    // Every counter of the filesystem exists at 0 before its first event of that kind, so that
    // `increase()` sees the first slip (a series born at 1 has none).
    let zero = watch.metrics();
    for (name, extra) in [
        ("freezewatch_slips_total", "path=\"block\""),
        ("freezewatch_slips_total", "path=\"write\""),
        ("freezewatch_slips_total", "path=\"transaction\""),
        ("freezewatch_mounts_while_frozen_total", ""),
        ("freezewatch_denied_mounts_total", ""),
        ("freezewatch_watchdog_thaws_total", ""),
        ("freezewatch_alerts_total", ""),
    ] {
        assert_eq!(freezewatch_tests::sample(&zero, name, m, extra), Some(0.0), "{name} {extra}:\n{zero}");
    }
    // A write straight to the device while frozen: a slip by the block path.
    fs.write_device().expect("dd to the device");
    watch.wait_sample("freezewatch_slips_total", m, "path=\"block\"", |v| v == 1.0);
    drop(frozen);
    watch.wait_sample("freezewatch_freeze_level", m, "", |v| v == 0.0);
    watch.wait_sample("freezewatch_frozen_seconds", m, "", |v| v == 0.0);
    let after = watch.metrics();
    assert_eq!(freezewatch_tests::sample(&after, "freezewatch_freezes_total", m, ""), Some(1.0));
    assert!(after.contains("freezewatch_freeze_duration_seconds_count{"), "{after}");
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the server stops with watch");
}

#[test]
fn a_busy_port_and_an_unwritable_findings_file_are_clear_errors() {
    if !kernel_available("a_busy_port_and_an_unwritable_findings_file_are_clear_errors") {
        return;
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = busy.local_addr().expect("addr").to_string();
    let run = freezewatch(&["watch", "--metrics", &addr], limit(30)).expect("runs");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("cannot serve metrics on {addr}")), "{}", run.stderr);
    assert!(!run.stderr.contains("watching"), "nothing was attached: {}", run.stderr);
    let run =
        freezewatch(&["watch", "--findings", "/nonexistent/dir/findings.ndjson"], limit(30)).expect("runs");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("opening the findings file /nonexistent/dir/findings.ndjson"),
        "{}",
        run.stderr
    );
}

#[test]
fn sigterm_during_a_freeze_ends_watch_and_leaves_the_freeze_to_its_owner() {
    if !kernel_available("sigterm_during_a_freeze_ends_watch_and_leaves_the_freeze_to_its_owner") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let mut watch = Watcher::start(&["--thaw-orphans", "--orphan-grace", "1h"]).expect("watch");
    let frozen = Frozen::new(&fs).expect("freeze");
    watch.wait_sample("freezewatch_freeze_level", fs.mnt(), "", |level| level == 4.0);
    // The programs it holds, so that their going is seen (and there were some to go).
    let programs = bpf_programs_of(watch.pid());
    assert!(programs.len() >= 4, "watch holds its programs: {programs:?}");
    assert!(programs.iter().all(|id| bpf_program_loaded(*id)));
    let start = Instant::now();
    let status = watch.stop_with(libc::SIGTERM).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", watch.stderr());
    assert!(start.elapsed() < limit(10), "stops promptly: {:?}", start.elapsed());
    assert!(is_frozen(&fs), "watch never thaws on its way out");
    drop(frozen);
    assert!(!is_frozen(&fs));
    // Nothing stays attached: the kernel frees a program shortly after its last descriptor (and
    // link) closes; wait for it, bounded.
    poll_until(limit(10), "watch's programs are still loaded after it exited", || {
        programs.iter().all(|id| !bpf_program_loaded(*id)).then_some(())
    });
}

#[test]
fn a_freezer_that_writes_to_its_own_frozen_filesystem_is_thaw_blocked() {
    let name = "a_freezer_that_writes_to_its_own_frozen_filesystem_is_thaw_blocked";
    if !hook_available(name, "blocked-writers", None) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&[]).expect("watch");
    let m = fs.mnt();
    // The script freezes, then writes to what it froze: it waits at the gate for good.
    let mut script = Command::new("sh")
        .arg("-c")
        .arg(format!("fsfreeze -f {m}; echo x > {m}/own; fsfreeze -u {m}"))
        // (Its own thaw fails once the test has thawed: that message is expected.)
        .stderr(Stdio::null())
        .spawn()
        .expect("starts the script");
    let found = watch.wait_for("thaw-blocked", m, limit(10));
    // Whatever was found, the test thaws it (the script cannot), then looks.
    let _ = Command::new("fsfreeze").args(["-u", m]).status();
    exits_within(&mut script, limit(10), "the script stays blocked after the thaw");
    let f = found.expect("thaw-blocked arrives while the script waits");
    let message = f["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("sh[{}] ", script.id())) && message.contains(" waits at the gate of "),
        "{message}"
    );
    assert!(message.contains("which it froze (fsfreeze["), "{message}");
    assert_eq!(f["severity"], "error");
}

#[test]
fn sighup_reopens_the_findings_file_for_logrotate() {
    if !kernel_available("sighup_reopens_the_findings_file_for_logrotate") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let mut watch = Watcher::start(&[]).expect("watch");
    // A thaw of an unfrozen filesystem is a finding (thaw-without-freeze) on demand.
    let thaw = || {
        let _ = Command::new("fsfreeze").args(["-u", fs.mnt()]).stderr(Stdio::null()).status();
    };
    thaw();
    watch.wait_for("thaw-without-freeze", fs.mnt(), limit(10)).expect("the first finding");
    let rotated = watch.findings_path.with_extension("1");
    std::fs::rename(&watch.findings_path, &rotated).expect("rotates");
    watch.signal(libc::SIGHUP);
    let start = Instant::now();
    while !watch.stderr().contains("SIGHUP") {
        assert!(start.elapsed() < limit(10), "no word of the SIGHUP: {}", watch.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(watch.running(), "SIGHUP does not end watch");
    thaw();
    watch.wait_for("thaw-without-freeze", fs.mnt(), limit(10)).expect("the second finding, in the new file");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert_eq!(old.lines().count(), 1, "the rotated file keeps only the first: {old}");
    assert_eq!(watch.findings_of("thaw-without-freeze", fs.mnt()).len(), 1, "the new file only the second");
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success());
}

/// `n` freeze/thaw cycles of `fs` (each balanced).
/// The trace files `--trace-dir` wrote to `dir` (beside them: each run's lock file).
fn trace_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("the trace dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect()
}

fn cycles(fs: &LoopFs, n: usize) {
    for _ in 0..n {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("fsfreeze -f {m} && fsfreeze -u {m}", m = fs.mnt()))
            .status()
            .expect("cycle")
            .success();
        assert!(ok);
    }
}

#[test]
fn the_trace_dir_rotates_by_size_and_count_and_each_file_is_a_trace() {
    if !kernel_available("the_trace_dir_rotates_by_size_and_count_and_each_file_is_a_trace") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let traces = dir.path().join("traces");
    let mut watch = Watcher::start(&[
        "--trace-dir",
        traces.to_str().unwrap(),
        "--trace-size",
        "16KiB",
        "--trace-keep",
        "3",
    ])
    .expect("watch");
    cycles(&fs, 40);
    // Findings follow their events by up to the reorder window and a tick; the last 48 KiB of a
    // trace can be all findings (each thaw of a loop filesystem brings two exempt writes with
    // their stacks). Once they are out, one more cycle: its freeze is in the newest files.
    std::thread::sleep(Duration::from_millis(500) * time_scale());
    cycles(&fs, 1);
    std::thread::sleep(Duration::from_millis(500) * time_scale());
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success(), "{}", watch.stderr());
    let mut files = trace_files(&traces);
    files.sort();
    assert_eq!(files.len(), 3, "rotated and pruned to 3: {files:?}");
    let mut freezes = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("trace file");
        assert!(text.len() <= 16 * 1024, "{} is {} bytes", f.display(), text.len());
        assert!(
            text.lines().next().is_some_and(|l| l.contains("\"type\":\"header\"")),
            "{} starts with the header",
            f.display()
        );
        freezes +=
            text.lines().filter(|l| l.contains("\"kind\":\"freeze_end\"") && l.contains(fs.mnt())).count();
        let report = freezewatch(&["report", "--json", f.to_str().unwrap()], limit(30)).expect("report");
        assert_eq!(report.code, Some(0), "{} is a trace report reads: {}", f.display(), report.stderr);
    }
    assert!(freezes > 0, "the kept files hold the newest freezes");
    let newest = std::fs::read_to_string(files.last().unwrap()).unwrap();
    assert!(
        newest.lines().last().is_some_and(|l| l.contains("\"type\":\"footer\"")),
        "the last file ends with the footer"
    );
}

#[test]
fn a_full_trace_disk_is_a_clear_error_and_an_unwritable_one_fails_before_attaching() {
    if !kernel_available("a_full_trace_disk_is_a_clear_error_and_an_unwritable_one_fails_before_attaching") {
        return;
    }
    let run = freezewatch(&["watch", "--trace-dir", "/proc/freezewatch-cannot"], limit(30)).expect("runs");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("opening the trace directory /proc/freezewatch-cannot"), "{}", run.stderr);
    assert!(!run.stderr.contains("watching"), "nothing was attached: {}", run.stderr);

    // A 32 KiB tmpfs fills after a few dozen events.
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let small = tempfile::tempdir().expect("temp dir");
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=32k", "tmpfs"]).arg(small.path()).status();
    assert!(mounted.expect("mount").success());
    let _unmount = freezewatch_tests::Unmount(small.path());
    let mut watch = Watcher::start(&["--trace-dir", small.path().to_str().unwrap(), "--trace-size", "1MiB"])
        .expect("watch");
    let start = Instant::now();
    while watch.running() {
        assert!(start.elapsed() < limit(60), "watch never noticed the full disk");
        cycles(&fs, 5);
    }
    let status = watch.stop_with(libc::SIGTERM).expect("it had exited");
    let stderr = watch.stderr();
    assert!(stderr.contains("No space left on device"), "a clear error: {stderr}");
    assert_eq!(status.code(), Some(1), "and exit 1 (not a crash): {stderr}");
    assert!(!is_frozen(&fs), "nothing left frozen");
}

#[test]
fn a_filesystem_frozen_before_watch_starts_is_frozen_at_start() {
    if !kernel_available("a_filesystem_frozen_before_watch_starts_is_frozen_at_start") {
        return;
    }
    let frozen_fs = LoopFs::new(FsType::Xfs).expect("fs");
    let thawed_fs = LoopFs::new(FsType::Ext4).expect("fs");
    let frozen = Frozen::new(&frozen_fs).expect("freeze");
    let watch =
        Watcher::start(&["--thaw-orphans", "--orphan-grace", "1s", "--thaw-after", "1s"]).expect("watch");
    let found =
        watch.wait_for("frozen-at-start", frozen_fs.mnt(), limit(10)).expect("frozen-at-start arrives");
    let message = found["message"].as_str().unwrap_or_default();
    assert!(message.contains("was already frozen (level 4) when watch started"), "{message}");
    // Told by a task_file iterator wherever the kernel loads iterators (this project's host and
    // guests do): no syscall hook. Doctor names the same.
    let caps = Capabilities::probe();
    let probe = if caps.iter { "iter:task_file" } else { "tp_btf:raw_syscalls:ioctl" };
    assert_eq!(found["hook"], probe, "{found} {caps:?}");
    assert_eq!(caps.level_probe.as_deref(), Some(probe));
    // Found frozen, it is watched as if its freeze had been seen: a second mount of its device
    // now is a mount while frozen.
    let again = tempfile::tempdir().expect("mount point");
    let mounted = freezewatch_tests::mount_device("xfs", &frozen_fs.loopdev, again.path());
    let unmount_again = freezewatch_tests::Unmount(again.path());
    assert_eq!(mounted, Ok(()), "a second mount of the frozen device");
    watch
        .wait_for("mount-while-frozen", frozen_fs.mnt(), limit(10))
        .expect("the mount of a filesystem frozen before watch started is flagged");
    // Past --thaw-after on watch's own clock: every tick until then has run.
    watch.wait_frozen_for(frozen_fs.mnt(), 2.0);
    assert!(watch.findings_of("frozen-at-start", thawed_fs.mnt()).is_empty(), "the unfrozen one is no news");
    assert!(
        watch.findings_of("thawed-by-watchdog", frozen_fs.mnt()).is_empty(),
        "its holder is unknown: left alone"
    );
    assert!(is_frozen(&frozen_fs));
    drop(unmount_again);
    drop(frozen);
    watch.wait_thawed(frozen_fs.mnt());
    // Its thaw is a thaw, not a thaw of something unfrozen: the probe told the correlator.
    assert!(watch.findings_of("thaw-without-freeze", frozen_fs.mnt()).is_empty(), "{:?}", watch.findings());
}

#[test]
fn a_freeze_that_cannot_finish_its_sync_is_freeze_stalled() {
    if !kernel_available("a_freeze_that_cannot_finish_its_sync_is_freeze_stalled") {
        return;
    }
    // A stack: the inner filesystem's image is a file on the outer one. With the outer frozen,
    // the inner's freeze cannot write back its dirty data, and waits.
    let outer = LoopFs::new(FsType::Ext4).expect("outer fs");
    let inner = LoopFs::new_in(FsType::Ext4, &outer.mountpoint).expect("inner fs");
    // A second, scaled: the outer freeze (which syncs the inner image's writes) must return
    // within it, also in a TCG guest beside another guest.
    let stalled_after = format!("{}s", time_scale());
    let watch = Watcher::start(&["--alert-stalled", &stalled_after]).expect("watch");
    let dirty = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}/dirty", inner.mnt()), "bs=1M", "count=4", "status=none"])
        .status()
        .expect("dd");
    assert!(dirty.success());
    // Declared after `inner`: dropped (thawed) before it, also when an assertion fails, so that
    // the inner freeze can finish before the inner filesystem is thawed and unmounted.
    let outer_frozen = Frozen::new(&outer).expect("freeze the outer fs");
    let mut inner_freeze = Command::new("fsfreeze").args(["-f", inner.mnt()]).spawn().expect("inner freeze");
    let stalled = watch.wait_for("freeze-stalled", inner.mnt(), limit(15));
    let still_running = inner_freeze.try_wait().expect("fsfreeze").is_none();
    drop(outer_frozen);
    // The inner freeze now completes; it is waited for (bounded), then thawed by `inner`'s Drop.
    exits_within(&mut inner_freeze, limit(30), "the inner freeze did not finish after the outer thaw");
    assert!(still_running, "the inner freeze was still in freeze_super when the finding came");
    let f = stalled.expect("freeze-stalled arrives while the freeze waits");
    let message = f["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("by fsfreeze[{}]", inner_freeze.id())), "{message}");
    assert!(message.contains("has not returned after"), "{message}");
    assert!(watch.findings_of("freeze-stalled", outer.mnt()).is_empty(), "the outer freeze returned at once");
}

/// `dmsetup info NAME`'s state line: "ACTIVE" or "SUSPENDED".
fn dm_state(name: &str) -> String {
    let info = dmsetup(&["info", name]).expect("dmsetup info");
    info.lines()
        .find_map(|l| l.strip_prefix("State:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no State in {info}"))
}

#[test]
fn an_orphaned_device_mapper_suspend_is_an_error_and_the_watchdog_never_thaws_it() {
    let name = "an_orphaned_device_mapper_suspend_is_an_error_and_the_watchdog_never_thaws_it";
    if !layer_available(name, "device-mapper") {
        return;
    }
    let dm = format!("fwsuspend{}", std::process::id());
    let stack = DmStack::linear_ext4(&dm, 64, 0).expect("ext4 on a dm-linear device");
    let m = stack.fs().mnt().to_owned();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(format!("{m}/data"), &data).expect("a file before the suspend");
    assert!(Command::new("sync").status().expect("sync").success());
    let dir = tempfile::tempdir().expect("temp dir");
    let traces = dir.path().join("traces");
    let mut watch = Watcher::start(&[
        "--thaw-orphans=enforce",
        "--orphan-grace",
        "1s",
        "--thaw-after",
        "2s",
        "--alert-frozen",
        "4s",
        "--trace-dir",
        traces.to_str().expect("UTF-8 temp path"),
    ])
    .expect("watch");
    // A script suspends the device (the kernel freezes ext4 through it) and is killed: dmsetup
    // returned at once, so the script owned the suspend.
    let mut script = spawn_frozen(|mark| {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("dmsetup suspend --noudevsync {dm} && touch {} && exec sleep 3600", mark.display()))
            .env("DM_DISABLE_UDEV", "1");
        sh
    });
    let pid = script.id();
    kill_and_reap(&mut script);
    let orphaned = watch.wait_for("suspend-orphaned", &m, limit(10)).expect("suspend-orphaned arrives");
    let message = orphaned["message"].as_str().unwrap_or_default();
    assert_eq!(orphaned["severity"], "error", "{orphaned}");
    assert!(message.contains(&format!("[{pid}] was killed by SIGKILL")), "{message}");
    assert!(message.ends_with(&format!("only `dmsetup resume {dm}` ends it")), "{message}");
    // Past the grace and --thaw-after (frozen-too-long comes at 4 s, after both): the watchdog
    // has looked at it on every tick since, and left it alone.
    let late = watch.wait_for("frozen-too-long", &m, limit(15)).expect("frozen-too-long arrives");
    let late_message = late["message"].as_str().unwrap_or_default();
    assert!(late_message.contains("which the watchdog never thaws"), "{late_message}");
    for kind in ["thawed-by-watchdog", "watchdog-would-thaw", "watchdog-failed", "freezer-gone"] {
        assert!(watch.findings_of(kind, &m).is_empty(), "{kind}: {:?}", watch.findings_of(kind, &m));
    }
    assert_eq!(dm_state(&dm), "SUSPENDED", "the device stays suspended until resumed");
    dmsetup(&["resume", &dm]).expect("the test resumes it");
    assert_eq!(dm_state(&dm), "ACTIVE");
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success(), "{}", watch.stderr());
    assert_eq!(std::fs::read(format!("{m}/data")).expect("the file after the resume"), data, "intact");
    // The trace says how the freeze and the thaw were made.
    let mut via = Vec::new();
    for f in trace_files(&traces) {
        let text = std::fs::read_to_string(f).expect("trace file");
        for line in text.lines().filter(|l| l.contains(&m)) {
            let ev: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            if ["freeze_end", "thaw_end"].contains(&ev["kind"].as_str().unwrap_or_default()) {
                via.push((ev["kind"].clone(), ev["via"].clone(), ev["comm"].clone()));
            }
        }
    }
    assert_eq!(
        via,
        [
            ("freeze_end".into(), "block-device".into(), "dmsetup".into()),
            ("thaw_end".into(), "block-device".into(), "dmsetup".into())
        ],
        "the suspend and the resume, each through the block device"
    );
    drop(stack);
}

/// The service unit the package installs.
const UNIT: &str = include_str!("../../../contrib/systemd/freezewatch.service");

/// What `cmd` (a `freezewatch doctor --json`) prints.
fn doctor_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.stdin(Stdio::null()).output().expect("runs doctor");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("doctor --json is JSON")
}

#[test]
fn under_the_service_sandbox_watch_maps_names_and_thaws_as_it_does_outside() {
    if !kernel_available("under_the_service_sandbox_watch_maps_names_and_thaws_as_it_does_outside") {
        return;
    }
    let sandbox = UnitSandbox::parse(UNIT).expect("the unit's sandbox");
    let bin = freezewatch_bin();
    // What doctor finds: the same storage layers (device-mapper's through /dev/mapper/control),
    // the same hooks, and kernel symbols (CAP_SYSLOG).
    let outside = doctor_json(Command::new(&bin).args(["doctor", "--json"]));
    let inside = doctor_json(&mut sandbox.command(&[], &bin, &["doctor".as_ref(), "--json".as_ref()]));
    assert_eq!(inside["storage"], outside["storage"], "storage layers under the unit's sandbox");
    assert_eq!(inside["features"], outside["features"], "hooks under the unit's sandbox");
    assert!(inside["kernel_symbols"]["Ok"].as_u64().is_some_and(|n| n > 0), "{}", inside["kernel_symbols"]);
    assert_eq!(inside["can_record"], true, "{}", inside["problems"]);

    // watch with the unit's arguments (its metrics on a free port, its findings in a directory
    // of this test's), and the watchdog on: a filesystem mounted under /tmp, frozen by a script
    // that is then killed, is found gone and thawed through its /tmp mount point.
    let exec = UNIT.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let mut unit_args: Vec<String> = exec.split_whitespace().skip(2).map(str::to_owned).collect();
    let logs = sandbox.logs_directory().expect("LogsDirectory");
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).map(|i| i + 1).expect(flag);
    let i = at(&unit_args, "--findings");
    assert!(unit_args[i].starts_with(logs), "the findings go to {logs}");
    unit_args.drain(i - 1..=i);
    let out = tempfile::tempdir().expect("temp dir");
    let findings = out.path().join("findings.ndjson");
    let i = at(&unit_args, "--metrics");
    unit_args[i] = format!("127.0.0.1:{}", free_port());
    unit_args.extend(["--thaw-orphans=enforce", "--orphan-grace", "1s"].map(str::to_owned));
    let args: Vec<&str> = unit_args.iter().map(String::as_str).collect();
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    assert!(fs.mnt().starts_with(&std::env::temp_dir().to_string_lossy().to_string()), "{}", fs.mnt());
    let mut watch =
        Watcher::start_in(Some(findings), &args, |argv| sandbox.command(&[out.path()], &bin, argv))
            .expect("watch in the sandbox");
    let mut script = freezer(&fs, "exec sleep 600");
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    kill_and_reap(&mut script);
    let gone = watch.wait_for("freezer-gone", fs.mnt(), limit(10)).expect("freezer-gone arrives");
    assert!(gone["message"].as_str().is_some_and(|m| m.contains("was killed by SIGKILL")), "{gone}");
    thawed_and_written(&watch, &fs, &mut writer, limit(10));
    assert!(watch.stop_with(libc::SIGTERM).expect("stops").success(), "{}", watch.stderr());
}

#[test]
fn every_per_filesystem_metric_moves_when_what_it_counts_happens() {
    if !kernel_available("every_per_filesystem_metric_moves_when_what_it_counts_happens") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let m = fs.mnt();
    let watch = Watcher::start(&[
        "--thaw-orphans=enforce",
        "--orphan-grace",
        "1s",
        "--alert-frozen",
        "1s",
        "--deny-mounts=audit",
    ])
    .expect("watch");
    let mut owner = freezer(&fs, "exec sleep 600");
    watch.wait_sample("freezewatch_freeze_level", m, "", |v| v == 4.0);
    // Born at 0 when the filesystem is first seen.
    for name in [
        "freezewatch_watchdog_thaws_total",
        "freezewatch_mounts_while_frozen_total",
        "freezewatch_denied_mounts_total",
        "freezewatch_watchdog_failures_total",
        "freezewatch_suspends_orphaned_total",
    ] {
        assert_eq!(watch.sample(name, m, ""), Some(0.0), "{name}: {}", watch.metrics());
    }
    // A writer held at the gate.
    let mut writer = blocked_writer(&fs);
    wait_blocked(&writer);
    // (Where the kernel has no hook for writers at the gate, nothing counts them.)
    let seen_blocked = !absent_here("blocked-writers");
    if seen_blocked {
        watch.wait_sample("freezewatch_blocked_writers", m, "", |v| v == 1.0);
    }
    // A bind mount of the frozen filesystem lands (audit mode lets it) and is flagged twice.
    let target = tempfile::tempdir().expect("temp dir");
    let bind = Command::new("mount").arg("--bind").arg(m).arg(target.path()).status().expect("mount");
    assert!(bind.success());
    let _ = Command::new("umount").arg(target.path()).status();
    watch.wait_sample("freezewatch_mounts_while_frozen_total", m, "", |v| v == 1.0);
    // Audit-mode denials come from the BPF LSM (the guests); where it is refused (this host)
    // the mount is flagged as mount-while-frozen only.
    let lsm = !watch.metrics().contains("freezewatch_hook_info{feature=\"mount-denial\",hook=\"none\"}");
    let denied = if lsm { 1.0 } else { 0.0 };
    watch.wait_sample("freezewatch_denied_mounts_total", m, "", |v| v == denied);
    // Frozen past --alert-frozen: an alert.
    watch.wait_sample("freezewatch_alerts_total", m, "", |v| v >= 1.0);
    // The owner dies: freezer-gone (another alert), then the watchdog's thaw.
    kill_and_reap(&mut owner);
    watch.wait_sample("freezewatch_watchdog_thaws_total", m, "", |v| v == 1.0);
    watch.wait_sample("freezewatch_alerts_total", m, "", |v| v >= 2.0);
    exits_within(&mut writer, limit(10), "the writer is still blocked after the thaw");
    watch.wait_sample("freezewatch_blocked_writers", m, "", |v| v == 0.0);
    let waits = if seen_blocked { 1.0 } else { 0.0 };
    // The wait's end is its own event, which may come after the thaw's: waited for, not sampled.
    watch.wait_sample("freezewatch_blocked_wait_seconds_count", m, "", |v| v == waits);
    assert_eq!(watch.sample("freezewatch_freezes_total", m, ""), Some(1.0));
    assert_eq!(watch.sample("freezewatch_freeze_duration_seconds_count", m, ""), Some(1.0));
    // The freeze hook ran (global: not per filesystem).
    let text = watch.metrics();
    let hits: f64 = text
        .lines()
        .filter(|l| l.starts_with("freezewatch_hook_hits{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(hits >= 2.0, "the freeze and the thaw at least: {text}");
}
