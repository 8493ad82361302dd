//! `cargo xtask bench`: user-space figures. `cargo bench -p freeze-model --bench throughput`
//! measures the model's per-event work on one core (decode, correlate, write, read) and writes a
//! trace of a million events as the recorder writes them (a real 30-cycle recording, repeated
//! later in time, with the findings lines and attribution a current recording has); that trace is
//! then checked and reported by the release binary, from a file (streamed: no events held) and
//! from stdin (read whole and sorted), each in interleaved rounds. The medians of wall time and
//! peak RSS are printed and written with the throughput figures to target/bench/results.json.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, run, workspace_root};

const ROUNDS: usize = 3;

/// Runs the model's throughput bench, which also writes the synthetic trace to `trace`; its
/// figures.
fn throughput(trace: &Path, figures: &Path) -> Result<Value> {
    run(cargo()
        .args(["bench", "--package", "freeze-model", "--bench", "throughput", "--", "--json"])
        .arg(figures)
        .arg("--trace")
        .arg(trace))?;
    Ok(serde_json::from_str(&std::fs::read_to_string(figures)?)?)
}

/// Runs `cmd` (stdin from `input` when given); wall seconds and peak RSS in KiB (from wait4).
/// What one run of a case took: wall seconds, CPU seconds (user + system: what the wall time
/// is when nothing else slows the run, such as a page cache that lost the trace) and peak RSS
/// in KiB.
struct Run {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

fn measure(cmd: &mut Command, input: Option<&Path>) -> Result<Run> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(path) = input {
        cmd.stdin(std::fs::File::open(path)?);
    }
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid with valid pointers to a status and a rusage.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) > 1 {
        bail!("{cmd:?} failed with status {status}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run { wall, cpu: secs(usage.ru_utime) + secs(usage.ru_stime), rss_kib: usage.ru_maxrss as u64 })
}

/// The median of `v` (the upper one of an even count); `v` is not empty.
/// Builds a binary of the tests crate (release: fw-load, fw-floor) and returns its path.
pub(crate) fn build_tests_bin(name: &str) -> Result<PathBuf> {
    crate::run(crate::cargo().args(["build", "--release", "--package", "freezewatch-tests", "--bin", name]))?;
    Ok(workspace_root().join("target/release").join(name))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(bin: &Path, user_only: bool) -> Result<()> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("1m.ndjson");
    let throughput = throughput(&trace, &dir.join("throughput.json"))?;
    let events = throughput[0]["events"].as_u64().context("the throughput bench names its event count")?;
    let size = std::fs::metadata(&trace)?.len();
    eprintln!("xtask: bench trace {} ({events} events, {} MiB)", trace.display(), size >> 20);
    let t = trace.to_str().context("non-UTF-8 path")?;
    let cases: Vec<(&str, Vec<&str>, Option<PathBuf>)> = vec![
        ("check FILE (streamed)", vec!["check", t, "--assert", "no-slips"], None),
        ("report --json FILE (streamed)", vec!["report", "--json", t], None),
        (
            "check - (stdin: read whole, sorted)",
            vec!["check", "-", "--assert", "no-slips"],
            Some(trace.clone()),
        ),
    ];
    let mut samples: Vec<Vec<Run>> = (0..cases.len()).map(|_| Vec::new()).collect();
    // Interleaved rounds: a noisy machine slows every case alike.
    for _ in 0..ROUNDS {
        for ((_, args, input), runs) in cases.iter().zip(samples.iter_mut()) {
            runs.push(measure(Command::new(bin).args(args), input.as_deref())?);
        }
    }
    let mut results = Vec::new();
    println!("{:<40} {:>8} {:>8} {:>12} {:>14}", "case", "wall s", "CPU s", "peak RSS MiB", "events/s");
    for ((name, _, _), runs) in cases.iter().zip(samples) {
        let of = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let (wall, cpu, rss_kib) = (of(|r| r.wall), of(|r| r.cpu), of(|r| r.rss_kib as f64));
        let rate = events as f64 / wall;
        println!("{name:<40} {wall:>8.2} {cpu:>8.2} {:>12.0} {rate:>14.0}", rss_kib / 1024.0);
        results.push(
            json!({"case": name, "events": events, "wall_s": wall, "cpu_s": cpu, "peak_rss_kib": rss_kib,
            "events_per_s": rate, "rounds": ROUNDS}),
        );
    }
    // The kernel figures need root (eBPF, loop filesystems); without it they are skipped, said.
    let kernel = match crate::scratch::need_root("the kernel part of cargo xtask bench") {
        _ if user_only => Value::Null,
        Ok(()) => crate::bench_kernel::bench(bin)?,
        Err(e) => {
            eprintln!("xtask: kernel benchmarks skipped: {e}");
            Value::Null
        }
    };
    let out = dir.join("results.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(
            &json!({"binary": bin, "throughput": throughput, "results": results, "kernel": kernel}),
        )?,
    )?;
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}
