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
        let mut process = Background::spawn(wrap(&argv), dir.path().join("stderr"))?;
        process.wait_until("watching", |p| p.stderr().contains("freezewatch: watching"))?;
        Ok(Watcher { process, findings_path, _dir: dir })
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
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
}
