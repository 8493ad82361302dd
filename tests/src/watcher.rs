//! A `freezewatch watch` running in the background, with its findings file, for the watch tests.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;

use crate::Background;

pub struct Watcher {
    process: Background,
    /// Where its metrics are served: watch's own clock and what it has seen, for tests that
    /// must know it got past a moment before saying nothing happened by then.
    pub metrics_port: u16,
    pub findings_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watcher {
    /// Starts `freezewatch watch --findings FILE ARGS...` and waits until it is attached.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_with(None, args)
    }

    /// The same, with the findings file at `findings` (its own temp dir's when `None`).
    pub fn start_with(findings: Option<PathBuf>, args: &[&str]) -> Result<Self> {
        Self::start_in(findings, args, |argv| {
            let mut cmd = std::process::Command::new(crate::freezewatch_bin());
            cmd.args(argv);
            cmd
        })
    }

    /// The same, run by the command `wrap` makes of freezewatch's arguments (a sandbox that
    /// execs into it, which must leave the findings file writable).
    pub fn start_in(
        findings: Option<PathBuf>,
        args: &[&str],
        wrap: impl FnOnce(&[&std::ffi::OsStr]) -> std::process::Command,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let findings_path = findings.unwrap_or_else(|| dir.path().join("findings.ndjson"));
        let mut argv: Vec<&std::ffi::OsStr> =
            vec!["watch".as_ref(), "--findings".as_ref(), findings_path.as_os_str()];
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        // Metrics always: on the port the test gave, or on a free one.
        let given = args.iter().position(|a| *a == "--metrics").and_then(|i| args.get(i + 1));
        let own = format!("127.0.0.1:{}", crate::free_port());
        if given.is_none() {
            argv.extend([std::ffi::OsStr::new("--metrics"), std::ffi::OsStr::new(&own)]);
        }
        let addr = given.copied().unwrap_or(&own);
        let metrics_port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let mut process = Background::spawn(wrap(&argv), dir.path().join("stderr"))?;
        process.wait_until("watching", |p| p.stderr().contains("freezewatch: watching"))?;
        Ok(Watcher { process, metrics_port, findings_path, _dir: dir })
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every finding written so far.
    pub fn findings(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.findings_path).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The findings of `kind` about the filesystem mounted at `mnt`.
    pub fn findings_of(&self, kind: &str, mnt: &str) -> Vec<Value> {
        self.findings().into_iter().filter(|f| f["kind"] == kind && f["sb"]["mountpoint"] == mnt).collect()
    }

    /// Waits (at most `within`) for the first finding of `kind` about `mnt`.
    pub fn wait_for(&self, kind: &str, mnt: &str, within: Duration) -> Option<Value> {
        let start = Instant::now();
        loop {
            if let Some(f) = self.findings_of(kind, mnt).into_iter().next() {
                return Some(f);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// Sends `signal` and waits (bounded) for watch to exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> Result<std::process::ExitStatus> {
        self.process.stop_with(signal)
    }

    /// Its `/metrics` page now.
    pub fn metrics(&self) -> String {
        crate::http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// The sample `name` of the filesystem mounted at `mnt` whose labels also hold `extra`, now.
    pub fn sample(&self, name: &str, mnt: &str, extra: &str) -> Option<f64> {
        sample(&self.metrics(), name, mnt, extra)
    }

    /// Polls watch's metrics (at most `limit(10)`) until the sample holds `ok`; returns its value.
    pub fn wait_sample(&self, name: &str, mnt: &str, extra: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            let text = self.metrics();
            if let Some(v) = sample(&text, name, mnt, extra).filter(|v| ok(*v)) {
                return v;
            }
            assert!(start.elapsed() < crate::limit(10), "{name} of {mnt} never became as wanted:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until watch itself counts `mnt` frozen for at least `secs`: every tick until then
    /// (alerts, the watchdog) has run, so what did not happen by then did not happen.
    pub fn wait_frozen_for(&self, mnt: &str, secs: f64) {
        self.wait_sample("freezewatch_frozen_seconds", mnt, "", |v| v >= secs);
    }

    /// Waits until watch has taken in the thaw of `mnt` (its level is 0 again).
    pub fn wait_thawed(&self, mnt: &str) {
        self.wait_sample("freezewatch_freeze_level", mnt, "", |v| v == 0.0);
    }
}

/// The value of the sample `name` in the metrics page `text` whose labels include
/// `mountpoint="mnt"` (and `extra`).
pub fn sample(text: &str, name: &str, mnt: &str, extra: &str) -> Option<f64> {
    let label = format!("mountpoint=\"{mnt}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label) && l.contains(extra))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
