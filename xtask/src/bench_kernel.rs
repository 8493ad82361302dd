//! `cargo xtask bench`'s kernel figures (root only): how long `record -- true` takes from start to
//! exit and its idle memory, beside bpftrace attaching the same tracepoints; and what recording
//! costs a write load. Each workload (fio 1 KiB buffered writes, fio 4 KiB O_DIRECT random writes,
//! a create/unlink loop) runs on a loop ext4 and a loop xfs over a tmpfs (the machine's CPU, not a
//! disk, is what is measured), untraced, under `freezewatch record` and under bpftrace counting
//! hits of the same tracepoints, in three states: before any freeze, after a freeze and thaw of
//! another filesystem, and while another filesystem is frozen. Rounds are interleaved (each round
//! runs every tracer, in a rotating order) and the figure is the median of per-round ratios to
//! the untraced run of the same round: these machines are noisy.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use crate::{
    bench::median,
    scratch::{LoopFs, Reaped, Tmpfs},
};

const ROUNDS: usize = 3;
const RUN: Duration = Duration::from_secs(2);
const STARTS: usize = 5;

/// The tracepoints `freezewatch record` attaches on a kernel without fentry (this project's
/// host; it attaches them as raw tracepoints and `tp_btf`, the syscalls through one program on
/// `raw_syscalls:sys_enter`/`sys_exit`), for bpftrace to attach the same; those this kernel lacks
/// are left out.
const TRACEPOINTS: &[&str] = &[
    "raw_syscalls:sys_enter",
    "raw_syscalls:sys_exit",
    "block:block_bio_queue",
    "lock:contention_begin",
    "lock:contention_end",
    "ext4:ext4_journal_start_sb",
    "ext4:ext4_journal_start_inode",
    "xfs:xfs_trans_alloc",
    "btrfs:btrfs_transaction_commit",
    "btrfs:btrfs_space_reservation",
    "writeback:writeback_dirty_folio",
    "writeback:writeback_mark_inode_dirty",
];

/// The first choices of every chain but completed writes' on this host (see the README's hook
/// table): skipped, `record` attaches the perf-event tracepoints of their fallbacks, as it did
/// before the syscall dispatcher and the raw tracepoints.
const FIRST_CHOICES: &str = "tp_btf:raw_syscalls:ioctl,tp_btf:raw_syscalls:mount,\
    tp_btf:raw_syscalls:fallocate+ftruncate,tp_btf:lock:contention,raw_tracepoint:block:block_bio_queue,\
    raw_tracepoint:ext4:ext4_journal_start,raw_tracepoint:xfs:xfs_trans_alloc,\
    raw_tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation";

fn bpftrace_program() -> String {
    let probes: Vec<String> = TRACEPOINTS
        .iter()
        .filter(|tp| Path::new("/sys/kernel/tracing/events").join(tp.replace(':', "/")).is_dir())
        .map(|tp| format!("tracepoint:{tp}"))
        .collect();
    format!("{} {{ @[probe] = count(); }}", probes.join(","))
}

/// Where `Tracer::Freezewatch` writes its trace, in the scratch directory.
const RECORD_TRACE: &str = "record.ndjson";

/// The programs the tracers run.
struct Bins<'a> {
    freezewatch: &'a Path,
    /// The tests crate's fw-floor (release).
    floor: &'a Path,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracer {
    None,
    Freezewatch,
    /// `freezewatch record` with completed writes seen at the write syscalls (the fallback of the
    /// writeback hooks), for comparison.
    FreezewatchSyscalls,
    /// `freezewatch record` with every other hook at its perf-event tracepoint fallback
    /// (`FIRST_CHOICES` skipped).
    FreezewatchTracepoints,
    Bpftrace,
    /// An empty `tp_btf` program on `raw_syscalls:sys_enter` and one on `sys_exit` (the tests
    /// crate's fw-floor): the least any syscall hook costs, the floor of the dispatcher.
    Floor,
}

impl Tracer {
    const ALL: [Tracer; 6] = [
        Tracer::None,
        Tracer::Freezewatch,
        Tracer::FreezewatchSyscalls,
        Tracer::FreezewatchTracepoints,
        Tracer::Bpftrace,
        Tracer::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::Freezewatch => "freezewatch record",
            Tracer::FreezewatchSyscalls => "freezewatch record, write-syscall fallback",
            Tracer::FreezewatchTracepoints => "freezewatch record, tracepoint fallbacks",
            Tracer::Bpftrace => "bpftrace",
            Tracer::Floor => "empty tp_btf on sys_enter/sys_exit",
        }
    }

    /// Starts the tracer and returns once its probes are attached.
    fn start(self, bins: &Bins, scratch: &Path) -> Result<Option<Reaped>> {
        let log = scratch.join("tracer.log");
        let mut cmd = match self {
            Tracer::None => return Ok(None),
            Tracer::Freezewatch | Tracer::FreezewatchSyscalls | Tracer::FreezewatchTracepoints => {
                let mut c = Command::new(bins.freezewatch);
                c.args(["record", "--out"]).arg(scratch.join(RECORD_TRACE));
                match self {
                    Tracer::FreezewatchSyscalls => _ = c.env("FREEZEWATCH_SKIP_HOOKS", "tp_btf:writeback"),
                    Tracer::FreezewatchTracepoints => _ = c.env("FREEZEWATCH_SKIP_HOOKS", FIRST_CHOICES),
                    _ => {}
                }
                c
            }
            Tracer::Bpftrace => {
                let mut c = Command::new("bpftrace");
                c.arg("-e").arg(bpftrace_program());
                c
            }
            Tracer::Floor => {
                // It holds its programs until stdin closes (or SIGINT, as the others stop).
                let mut c = Command::new(bins.floor);
                c.stdin(std::process::Stdio::piped());
                c
            }
        };
        let file = std::fs::File::create(&log)?;
        cmd.stdout(file.try_clone()?).stderr(file);
        let child = Reaped(cmd.spawn().with_context(|| format!("starting {}", self.name()))?);
        let ready = match self {
            Tracer::Freezewatch | Tracer::FreezewatchSyscalls | Tracer::FreezewatchTracepoints => {
                "freezewatch: recording"
            }
            Tracer::Floor => "fw-floor: attached",
            _ => "Attaching",
        };
        let began = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(ready) {
            ensure!(began.elapsed() < Duration::from_secs(60), "{} did not attach", self.name());
            std::thread::sleep(Duration::from_millis(20));
        }
        if self == Tracer::Bpftrace {
            // bpftrace says "Attaching N probes..." before it attaches them.
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(Some(child))
    }
}

/// Stops a tracer the way a user does (SIGINT) and waits for it.
fn stop(tracer: Option<Reaped>) -> Result<()> {
    let Some(mut t) = tracer else { return Ok(()) };
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(t.0.id() as libc::pid_t, libc::SIGINT) };
    t.0.wait()?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    AfterFreeze,
    OtherFrozen,
}

impl State {
    const ALL: [State; 3] = [State::Fresh, State::AfterFreeze, State::OtherFrozen];

    fn name(self) -> &'static str {
        match self {
            State::Fresh => "no freeze yet",
            State::AfterFreeze => "after a freeze of another fs",
            State::OtherFrozen => "another fs frozen",
        }
    }
}

const WORKLOADS: [&str; 3] =
    ["fio 1 KiB buffered writes", "fio 4 KiB O_DIRECT random writes", "create/unlink loop"];

/// Operations per second of workload `w` on the filesystem mounted at `mnt`.
fn run_workload(w: usize, mnt: &Path) -> Result<f64> {
    let secs = RUN.as_secs().to_string();
    let fio = |args: &[&str]| -> Result<f64> {
        let out = Command::new("fio")
            .args(["--name=bench", "--ioengine=psync", "--time_based", "--output-format=json"])
            .arg(format!("--runtime={secs}"))
            .arg(format!("--directory={}", mnt.display()))
            .args(args)
            .stderr(Stdio::null())
            .output()
            .context("running fio")?;
        ensure!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stdout));
        let v: Value = serde_json::from_slice(&out.stdout).context("fio's JSON")?;
        v["jobs"][0]["write"]["iops"].as_f64().context("fio reported no write iops")
    };
    match w {
        0 => fio(&["--filename=w1", "--size=1M", "--bs=1k", "--rw=write"]),
        1 => fio(&["--filename=w2", "--size=32M", "--bs=4k", "--rw=randwrite", "--direct=1"]),
        _ => {
            let (began, mut ops) = (Instant::now(), 0u64);
            while began.elapsed() < RUN {
                let f = mnt.join(format!("c{}", ops % 64));
                std::fs::File::create(&f)?;
                std::fs::remove_file(&f)?;
                ops += 1;
            }
            Ok(ops as f64 / began.elapsed().as_secs_f64())
        }
    }
}

/// Wall seconds of `cmd` from spawn to exit.
fn wall_of(cmd: &mut Command) -> Result<f64> {
    let began = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    ensure!(status.success(), "{cmd:?} failed");
    Ok(began.elapsed().as_secs_f64())
}

/// Start to exit of a run with nothing to do, and idle memory.
fn start_stop(bin: &Path, scratch: &Path) -> Result<Value> {
    let program = bpftrace_program();
    let (mut fw, mut fw_tp, mut bt) = (Vec::new(), Vec::new(), Vec::new());
    let record_true = || {
        let mut c = Command::new(bin);
        c.args(["record", "--out"]).arg(scratch.join("s.ndjson")).args(["--", "true"]);
        c
    };
    for _ in 0..STARTS {
        fw.push(wall_of(&mut record_true())?);
        fw_tp.push(wall_of(record_true().env("FREEZEWATCH_SKIP_HOOKS", FIRST_CHOICES))?);
        bt.push(wall_of(Command::new("bpftrace").arg("-e").arg(&program).args(["-c", "/bin/true"]))?);
    }
    // Idle: recording, nothing happening, two seconds in.
    let mut idle = Reaped(
        Command::new(bin)
            .args(["record", "--duration", "4s", "--out"])
            .arg(scratch.join("idle.ndjson"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (rss, _) = crate::soak::usage(idle.0.id())?;
    idle.0.wait()?;
    let (fw, fw_tp, bt) = (median(fw), median(fw_tp), median(bt));
    println!("\n{:<44} {:>10}", "start + stop (`-- true`), median of 5", "wall s");
    println!("{:<44} {fw:>10.2}", "freezewatch record");
    println!("{:<44} {fw_tp:>10.2}", "freezewatch record, tracepoint fallbacks");
    println!(
        "{:<44} {bt:>10.2}",
        format!("bpftrace, {} tracepoints", program.matches("tracepoint:").count())
    );
    println!("{:<44} {:>10.1}", "freezewatch idle RSS MiB", rss as f64 / 1024.0);
    Ok(json!({"record_true_wall_s": fw, "record_true_tracepoints_wall_s": fw_tp,
        "bpftrace_true_wall_s": bt, "idle_rss_kib": rss}))
}

/// The Debian packages only the kernel benchmarks use (installed by them, not by `setup`, so that
/// CI machines do not pull in bpftrace's LLVM): the write loads, and the tracer compared with.
const PACKAGES: &[(&str, &str)] = &[("fio", "fio"), ("bpftrace", "bpftrace")];

/// Writers hammering a frozen filesystem's own loop device with 4 KiB O_DIRECT writes for a
/// second, each one a slip event: how many the kernel sent, how many the trace holds, how many
/// were lost (the ring buffer was full), at the default ring size.
fn burst(bins: &Bins, scratch: &Path) -> Result<Value> {
    const WRITERS: usize = 2;
    let fs = LoopFs::new("ext4", 256, scratch, "burst")?;
    let rec = Tracer::Freezewatch.start(bins, scratch)?;
    fs.fsfreeze("-f")?;
    let written: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let dev = fs.dev.clone();
                s.spawn(move || -> Result<u64> {
                    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
                    let f =
                        std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&dev)?;
                    // An O_DIRECT buffer must be aligned: 4 KiB inside an 8 KiB allocation.
                    let buf = vec![0u8; 8192];
                    let aligned = buf.as_ptr().wrapping_add(buf.as_ptr().align_offset(4096));
                    let (began, mut n) = (Instant::now(), 0u64);
                    while began.elapsed() < Duration::from_secs(1) {
                        // Near the end of the device, away from the filesystem's metadata.
                        let at = ((200u64 << 20) + ((w as u64 * 1000 + n % 1000) << 12)) as libc::off_t;
                        // SAFETY: `aligned` points at 4096 readable bytes inside `buf`, which
                        // outlives the call; the fd is open.
                        let rc = unsafe { libc::pwrite(f.as_raw_fd(), aligned.cast(), 4096, at) };
                        ensure!(rc == 4096, "pwrite: {}", std::io::Error::last_os_error());
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?)
            .sum::<Result<u64>>()
    })?;
    fs.fsfreeze("-u")?;
    stop(rec)?;
    let text = std::fs::read_to_string(scratch.join(RECORD_TRACE))?;
    let mut recorded = 0u64;
    let mut lost = None;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        match v["type"].as_str() {
            Some("event") if v["kind"] == "block_write" => recorded += 1,
            Some("footer") => lost = v["counters"]["lost_ringbuf_full"].as_u64(),
            _ => {}
        }
    }
    let lost = lost.context("the burst trace has no footer")?;
    println!(
        "
{:<44} {:>12}",
        "burst: 4 KiB O_DIRECT writes to a frozen device, 1 s", ""
    );
    println!("{:<44} {written:>12}", format!("writes ({WRITERS} writers; each a slip event)"));
    println!("{:<44} {recorded:>12}", "block_write events in the trace");
    println!("{:<44} {lost:>12}", "lost (ring buffer full)");
    Ok(json!({"writers": WRITERS, "writes": written, "recorded": recorded, "lost": lost, "seconds": 1}))
}

pub fn bench(bin: &Path) -> Result<Value> {
    let absent = crate::setup::absent_packages(PACKAGES);
    if !absent.is_empty() {
        crate::setup::apt_install(&absent)?;
    }
    let tmp = Tmpfs::new("bench", 1536)?;
    let starts = start_stop(bin, &tmp.dir)?;
    let floor = crate::bench::build_tests_bin("fw-floor")?;
    let bins = Bins { freezewatch: bin, floor: &floor };
    let burst = burst(&bins, &tmp.dir)?;
    let other = LoopFs::new("ext4", 64, &tmp.dir, "other")?;
    let mut rows = Vec::new();
    for fstype in ["ext4", "xfs"] {
        let fs = LoopFs::new(fstype, 320, &tmp.dir, fstype)?;
        // samples[workload][state][tracer]: one value per round.
        let tracers = Tracer::ALL.len();
        let mut samples = vec![vec![vec![Vec::new(); tracers]; 3]; 3];
        for round in 0..ROUNDS {
            for k in 0..tracers {
                let t = (round + k) % tracers;
                let tracer = Tracer::ALL[t];
                eprintln!("xtask: bench {fstype} round {} {}", round + 1, tracer.name());
                let running = tracer.start(&bins, &tmp.dir)?;
                for (s, state) in State::ALL.iter().enumerate() {
                    match state {
                        State::Fresh => {}
                        State::AfterFreeze => {
                            other.fsfreeze("-f")?;
                            other.fsfreeze("-u")?;
                        }
                        State::OtherFrozen => other.fsfreeze("-f")?,
                    }
                    for (w, per_state) in samples.iter_mut().enumerate() {
                        per_state[s][t].push(run_workload(w, &fs.mnt)?);
                    }
                    if *state == State::OtherFrozen {
                        other.fsfreeze("-u")?;
                    }
                }
                stop(running)?;
            }
        }
        for (w, per_state) in samples.iter().enumerate() {
            for (s, per_tracer) in per_state.iter().enumerate() {
                let ratio =
                    |t: usize| median((0..ROUNDS).map(|r| per_tracer[t][r] / per_tracer[0][r]).collect());
                rows.push(json!({"fs": fstype, "workload": WORKLOADS[w], "state": State::ALL[s].name(),
                    "untraced_ops_per_s": median(per_tracer[0].clone()),
                    "freezewatch_ratio": ratio(1), "freezewatch_syscalls_ratio": ratio(2),
                    "freezewatch_tracepoints_ratio": ratio(3), "bpftrace_ratio": ratio(4),
                    "floor_ratio": ratio(5),
                    // freezewatch's throughput against the empty programs' (the goal: >= 0.97).
                    "freezewatch_vs_floor": median((0..ROUNDS).map(|r| per_tracer[1][r] / per_tracer[5][r]).collect()),
                    "rounds": ROUNDS}));
            }
        }
    }
    println!(
        "\n{:<5} {:<34} {:<30} {:>12} {:>11} {:>11} {:>13} {:>9} {:>9} {:>10}",
        "fs",
        "workload",
        "state",
        "untraced/s",
        "freezewatch",
        "(syscalls)",
        "(tracepoints)",
        "bpftrace",
        "floor",
        "fw/floor"
    );
    for r in &rows {
        println!(
            "{:<5} {:<34} {:<30} {:>12.0} {:>10.3}x {:>10.3}x {:>12.3}x {:>8.3}x {:>8.3}x {:>9.3}x",
            r["fs"].as_str().unwrap_or(""),
            r["workload"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["untraced_ops_per_s"].as_f64().unwrap_or(0.0),
            r["freezewatch_ratio"].as_f64().unwrap_or(0.0),
            r["freezewatch_syscalls_ratio"].as_f64().unwrap_or(0.0),
            r["freezewatch_tracepoints_ratio"].as_f64().unwrap_or(0.0),
            r["bpftrace_ratio"].as_f64().unwrap_or(0.0),
            r["floor_ratio"].as_f64().unwrap_or(0.0),
            r["freezewatch_vs_floor"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(json!({"start_stop": starts, "burst": burst, "overhead": rows}))
}
