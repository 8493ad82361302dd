//! Running the `freezewatch` binary: one-shot with a limit, recording a script, or in the
//! background; and the parsed trace.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::limit;

/// Path of the freezewatch binary: $FREEZEWATCH_BIN (set by `cargo xtask test`), else the one
/// cargo built beside this test binary (target/<profile>/freezewatch).
pub fn freezewatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FREEZEWATCH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("freezewatch");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo xtask test` (or build freeze-user first)",
        bin.display()
    );
    bin
}

/// What a `freezewatch` run produced.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs freezewatch with `args`, killing it after `limit`. The freezewatch process itself never
/// blocks on a frozen filesystem, so waiting for it here is safe.
pub fn freezewatch(args: &[&str], limit: Duration) -> Result<Run> {
    freezewatch_cmd(Command::new(freezewatch_bin()).args(args), limit)
}

pub fn freezewatch_cmd(cmd: &mut Command, limit: Duration) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("starting freezewatch")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            bail!("freezewatch did not finish within {limit:?}: {}", std::fs::read_to_string(&err_path)?);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out_path)?,
        stderr: std::fs::read_to_string(err_path)?,
    })
}

/// A parsed trace: all records, as JSON values.
pub struct Trace {
    pub records: Vec<Value>,
    /// What freezewatch and the recorded command printed on stderr (record_script only).
    pub stderr: String,
}

impl Trace {
    pub fn parse(text: &str) -> Result<Self> {
        let records = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("trace line {}: {l}", i + 1)))
            .collect::<Result<Vec<Value>>>()?;
        Ok(Trace { records, stderr: String::new() })
    }

    pub fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == ty).collect()
    }

    pub fn events(&self) -> Vec<&Value> {
        self.of_type("event")
    }

    pub fn findings(&self, kind: &str) -> Vec<&Value> {
        self.of_type("finding").into_iter().filter(|f| f["kind"] == kind).collect()
    }

    /// The findings of `kind` about the filesystem mounted at `mnt`.
    pub fn findings_on(&self, kind: &str, mnt: &str) -> Vec<&Value> {
        self.findings(kind).into_iter().filter(|f| f["sb"]["mountpoint"] == mnt).collect()
    }

    /// The events of `kind` on the filesystem mounted at `mnt`.
    pub fn events_on(&self, kind: &str, mnt: &str) -> Vec<&Value> {
        self.events().into_iter().filter(|e| e["kind"] == kind && e["sb"]["mountpoint"] == mnt).collect()
    }

    /// The events within `window` ns of `ts_ns` on the same superblock, one line each: for
    /// assertion messages that must show what happened around a finding.
    pub fn around(&self, finding: &Value, window: u64) -> String {
        let ts = finding["ts_ns"].as_u64().unwrap_or(0);
        self.events()
            .into_iter()
            .filter(|e| e["sb"]["id"] == finding["sb"]["id"])
            .filter(|e| e["ts_ns"].as_u64().is_some_and(|t| t.abs_diff(ts) <= window))
            .map(|e| {
                format!(
                    "{} {} {}[{}] level {}->{} ret {} hook {}",
                    e["ts_ns"],
                    e["kind"],
                    e["comm"],
                    e["tid"],
                    e["level_before"],
                    e["level_after"],
                    e["ret"],
                    e["hook"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How often `hook`'s programs ran in this recording (the footer's `hook_hits`).
    pub fn hook_hits(&self, hook: &str) -> u64 {
        self.footer()["counters"]["hook_hits"][hook].as_u64().unwrap_or(0)
    }

    /// The hook the header says `feature` attached (panics when it attached none).
    pub fn feature_hook(&self, feature: &str) -> String {
        let header = &self.of_type("header")[0];
        let hooks = header["hooks"].as_array().expect("hooks");
        let h = hooks
            .iter()
            .find(|h| h["feature"] == feature)
            .unwrap_or_else(|| panic!("no {feature}: {header}"));
        h["hook"].as_str().unwrap_or_else(|| panic!("{feature} did not attach: {h}")).to_owned()
    }

    pub fn footer(&self) -> &Value {
        self.of_type("footer").into_iter().next_back().expect("trace has a footer")
    }
}

/// Records `script` (run by `sh -c`) and returns the parsed trace.
pub fn record_script(script: &str) -> Result<Trace> {
    record_script_with(script, &[])
}

/// `record_script` with extra environment for freezewatch (e.g. FREEZEWATCH_NO_FENTRY=1).
pub fn record_script_with(script: &str, env: &[(&str, &str)]) -> Result<Trace> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("trace.ndjson");
    let out_s = out.to_str().expect("UTF-8 temp path");
    let mut cmd = Command::new(freezewatch_bin());
    cmd.args(["record", "--out", out_s, "--", "sh", "-c", script]).envs(env.iter().copied());
    let run = freezewatch_cmd(&mut cmd, limit(60))?;
    if run.code != Some(0) {
        bail!("freezewatch record exited {:?}: {}", run.code, run.stderr);
    }
    let mut trace = Trace::parse(&std::fs::read_to_string(&out)?)?;
    trace.stderr = run.stderr;
    Ok(trace)
}

/// A script helper of this crate (`tests/src/bin`, e.g. fw-fsmount): in
/// $FREEZEWATCH_HELPERS_DIR (the QEMU guests set it), else the path cargo built it at (`built`,
/// from `env!("CARGO_BIN_EXE_NAME")` in the test).
pub fn helper_bin(name: &str, built: &str) -> String {
    std::env::var_os("FREEZEWATCH_HELPERS_DIR")
        .map(|dir| PathBuf::from(dir).join(name).display().to_string())
        .unwrap_or_else(|| built.to_owned())
}

/// A freezewatch command running in the background, its stderr in a file; killed in Drop.
pub struct Background {
    child: Option<std::process::Child>,
    stderr_path: PathBuf,
}

impl Background {
    /// Starts `freezewatch ARGS...` with stdout discarded and stderr to `stderr_path`.
    pub fn start(args: &[&std::ffi::OsStr], stderr_path: PathBuf) -> Result<Self> {
        let mut cmd = Command::new(freezewatch_bin());
        cmd.args(args);
        Self::spawn(cmd, stderr_path)
    }

    /// Starts `cmd` (which runs freezewatch, or execs into it) the same way.
    pub fn spawn(mut cmd: Command, stderr_path: PathBuf) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .context("starting freezewatch")?;
        Ok(Self { child: Some(child), stderr_path })
    }

    /// Waits (at most `limit(60)`) until `ready` holds; fails if the process exits first.
    pub fn wait_until(&mut self, what: &str, ready: impl Fn(&Self) -> bool) -> Result<()> {
        let start = Instant::now();
        while !ready(self) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("freezewatch exited ({status}) before {what}: {}", self.stderr());
            }
            if start.elapsed() > limit(60) {
                bail!("freezewatch did not get to {what} within {:?}: {}", limit(60), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Sends `signal` (the process goes on, or not, as it decides).
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends `signal` and waits (bounded) for the process to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: libc::c_int) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        // SAFETY: kill(2) on our own child's pid; it has not been reaped, so the pid is still ours.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit(60) {
                let _ = child.kill();
                bail!("freezewatch did not exit within {:?} of signal {signal}", limit(60));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::kill_and_reap(&mut child);
        }
    }
}

/// A `freezewatch record` running in the background until stopped: for tests that act on the
/// system themselves while freezewatch watches (and, with --deny-mounts, gates mounts).
pub struct Recorder {
    process: Background,
    pub trace_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Recorder {
    /// Starts `freezewatch record --out FILE ARGS...` and waits until the hooks are attached
    /// (the trace header is written only then).
    pub fn start(args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let trace_path = dir.path().join("trace.ndjson");
        let mut argv: Vec<&std::ffi::OsStr> =
            vec!["record".as_ref(), "--out".as_ref(), trace_path.as_os_str()];
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        let mut process = Background::start(&argv, dir.path().join("stderr"))?;
        process.wait_until("attaching", |_| {
            let text = std::fs::read_to_string(&trace_path).unwrap_or_default();
            text.lines().next().is_some_and(|l| l.contains("\"header\""))
        })?;
        Ok(Recorder { process, trace_path, _dir: dir })
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` and waits (bounded) for the recorder to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: libc::c_int) -> Result<std::process::ExitStatus> {
        self.process.stop_with(signal)
    }

    /// Stops recording (SIGINT, as Ctrl-C) and returns the trace.
    pub fn finish(mut self) -> Result<Trace> {
        let status = self.stop_with(libc::SIGINT)?;
        if !status.success() {
            bail!("freezewatch record exited with {status}: {}", self.stderr());
        }
        Trace::parse(&std::fs::read_to_string(&self.trace_path)?)
    }
}
