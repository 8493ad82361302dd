//! `cargo xtask bench`: user-space figures. A synthetic trace of about a million events (copies of
//! a real 30-cycle recording, each later in time) is checked and reported by the release binary,
//! from a file (streamed: no events held) and from stdin (read whole and sorted); each is run in
//! interleaved rounds and the median wall time and peak RSS are printed and written to
//! target/bench/results.json.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::workspace_root;

const EVENTS: usize = 1_000_000;
const ROUNDS: usize = 3;

/// Writes the synthetic trace: the fixture's header, its events repeated with every timestamp
/// shifted past the previous copy, and a footer whose duration covers them all.
fn synthetic_trace(out: &Path) -> Result<usize> {
    let fixture = std::fs::read_to_string(workspace_root().join("tests/fixtures/cycles-ext4-xfs.ndjson"))?;
    let lines: Vec<Value> = fixture.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let header = lines.iter().find(|l| l["type"] == "header").context("no header")?;
    let events: Vec<&Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    let ts = |e: &Value| e["ts_ns"].as_u64().unwrap_or(0);
    let (first, last) =
        (events.iter().map(|e| ts(e)).min().unwrap_or(0), events.iter().map(|e| ts(e)).max().unwrap_or(0));
    let span = last - first + 1_000_000;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    writeln!(w, "{header}")?;
    let copies = EVENTS.div_ceil(events.len());
    for copy in 0..copies as u64 {
        for e in &events {
            let mut e = (*e).clone();
            for key in ["ts_ns", "begin_ts_ns"] {
                if let Some(t) = e[key].as_u64() {
                    e[key] = (t + copy * span).into();
                }
            }
            // As the recorder writes it: "v" and "type" first (the reader's fast path keys on
            // that prefix; a serde_json::Value would sort them among the other keys).
            if let Some(fields) = e.as_object_mut() {
                fields.remove("v");
                fields.remove("type");
            }
            let rest = e.to_string();
            writeln!(w, r#"{{"v":1,"type":"event",{}"#, &rest[1..])?;
        }
    }
    let start = header["started_monotonic_ns"].as_u64().unwrap_or(0);
    let duration_ms = (first + copies as u64 * span).saturating_sub(start) / 1_000_000 + 1;
    let footer = json!({"v": 1, "type": "footer", "events": copies * events.len(), "ended_by": "command",
        "duration_ms": duration_ms, "command_exit": 0, "counters": {"lost_ringbuf_full": 0,
        "lost_undecodable": 0, "read_failed": 0, "pending_full": 0, "ioctl_seen": 0, "fentry_seen": 0}});
    writeln!(w, "{footer}")?;
    w.flush()?;
    Ok(copies * events.len())
}

/// Runs `cmd` (stdin from `input` when given); wall seconds and peak RSS in KiB (from wait4).
fn measure(cmd: &mut Command, input: Option<&Path>) -> Result<(f64, u64)> {
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
    Ok((wall, usage.ru_maxrss as u64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(bin: &Path, user_only: bool) -> Result<()> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("1m.ndjson");
    let events = synthetic_trace(&trace)?;
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
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    // Interleaved rounds: a noisy machine slows every case alike.
    for _ in 0..ROUNDS {
        for ((_, args, input), (walls, rss)) in cases.iter().zip(samples.iter_mut()) {
            let (w, r) = measure(Command::new(bin).args(args), input.as_deref())?;
            walls.push(w);
            rss.push(r as f64);
        }
    }
    let mut results = Vec::new();
    println!("{:<40} {:>10} {:>12} {:>14}", "case", "wall s", "peak RSS MiB", "events/s");
    for ((name, _, _), (walls, rss)) in cases.iter().zip(samples) {
        let (wall, rss_kib) = (median(walls), median(rss));
        let rate = events as f64 / wall;
        println!("{name:<40} {wall:>10.2} {:>12.0} {rate:>14.0}", rss_kib / 1024.0);
        results.push(json!({"case": name, "events": events, "wall_s": wall, "peak_rss_kib": rss_kib, "events_per_s": rate, "rounds": ROUNDS}));
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
        serde_json::to_string_pretty(&json!({"binary": bin, "results": results, "kernel": kernel}))?,
    )?;
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}
