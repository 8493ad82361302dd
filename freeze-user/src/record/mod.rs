//! `freezewatch record`: attach, stream events as NDJSON with findings as soon as they are
//! certain, stop on command exit, duration or signal.
pub mod rotate;
mod sink;

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    process::Command,
    signal::unix::SignalKind,
};

use freeze_model::{
    correlate::{self, Correlator},
    coverage::Feature,
    event::Event,
    trace::{DenyStatus, EndReason, Footer, Header, Record},
};
use sink::Sink;

use crate::{
    bpf::loader::Loaded,
    host::kernel,
    queue::{Lane, Plain, Queue, Rank},
};

/// Standard output's write buffer: a batch of a few hundred lines per write(2).
const TRACE_BUFFER: usize = 256 << 10;

pub struct Options {
    pub out: TraceOut,
    /// Freezes longer than this are flagged `long-freeze`.
    pub long_freeze: Duration,
    pub duration: Option<Duration>,
    pub command: Vec<String>,
    /// Receives the header, every event and a counters snapshot each second (the live TUI).
    pub tap: Option<std::sync::mpsc::Sender<Tap>>,
    /// Stops the recording when it fires (or when its sender is dropped).
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
    /// No status lines on stderr while recording (the TUI owns the terminal); the closing
    /// summary is still printed.
    pub quiet: bool,
    /// Deny (or, in audit mode, flag) mounts of frozen filesystems with BPF LSM programs.
    pub deny_mounts: Option<freeze_model::deny::DenyMode>,
    /// Where a trace file's lines wait while the file cannot be written (it is on a frozen
    /// filesystem): the recording never waits for its output.
    pub queue: Queue,
}

/// Where the trace goes.
pub enum TraceOut {
    Stdout,
    File(std::path::PathBuf),
    /// Nowhere (the live TUI without --out).
    Discard,
    /// A writer made by the caller (`watch --trace-dir`: files rotated by size and count).
    Writer(Box<dyn Write + Send>),
}

/// What the recorder tells a live consumer.
#[derive(Clone, Debug)]
pub enum Tap {
    Header(Header),
    Event(Box<Event>),
    Counters(freeze_model::trace::Counters),
}

/// What a recording ended with, for the caller's exit code.
pub struct Outcome {
    pub events: u64,
    pub lost: u64,
    pub command_exit: Option<i32>,
    pub ended_by: EndReason,
}

/// A recording on a thread of its own, feeding a tap: what the TUI and `watch` consume.
pub struct Tapped {
    pub thread: std::thread::JoinHandle<Result<()>>,
    pub taps: std::sync::mpsc::Receiver<Tap>,
    /// The header: the recorder is attached once it is here.
    pub header: Header,
}

impl Tapped {
    /// Starts `opts` (its `tap` is replaced) on a thread and waits until the hooks are attached;
    /// a failure to load is returned as the recorder's own error.
    pub fn start(mut opts: Options) -> Result<Self> {
        let (tap_tx, taps) = std::sync::mpsc::channel::<Tap>();
        opts.tap = Some(tap_tx);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(record(opts)).map(|_| ())
            })
            .context("starting the recorder")?;
        let header = loop {
            match taps.recv_timeout(Duration::from_millis(200)) {
                Ok(Tap::Header(h)) => break h,
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !thread.is_finished() => continue,
                Err(_) => {
                    return match thread.join() {
                        Ok(Err(e)) => Err(e),
                        _ => Err(anyhow::anyhow!("the recorder stopped before attaching")),
                    };
                }
            }
        };
        Ok(Self { thread, taps, header })
    }

    /// Waits for the recorder to end (it drains, detaches and returns its result).
    pub fn join(self) -> Result<()> {
        drop(self.taps);
        self.thread.join().map_err(|_| anyhow::anyhow!("the recorder panicked"))?
    }
}

enum Stop {
    Command(Option<i32>),
    Duration,
    Signal,
}

pub async fn record(opts: Options) -> Result<Outcome> {
    let mut loaded = Loaded::load(opts.deny_mounts)?;
    // Loading parsed the kernel's BTF twice (tens of MiB, freed now): give those pages back, or
    // an idle recorder keeps them resident for good.
    // SAFETY: malloc_trim has no preconditions; it only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let mut ring = loaded.take_events().context("the eBPF object has no EVENTS ring buffer")?;

    let to_stdout = matches!(opts.out, TraceOut::Stdout);
    // Files are queued (a trace on a frozen filesystem must not stop the recording): the sink
    // flushes after each batch it takes from the ring buffer (and each tick), and each flush is
    // one chunk its writer thread writes with one write(2).
    let (out, dest, queued): (Box<dyn Write + Send>, String, bool) = match opts.out {
        TraceOut::File(path) => (
            Box::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?),
            path.display().to_string(),
            true,
        ),
        TraceOut::Stdout => (
            Box::new(std::io::BufWriter::with_capacity(TRACE_BUFFER, std::io::stdout())),
            "stdout".into(),
            false,
        ),
        TraceOut::Discard => (Box::new(std::io::sink()), "nowhere (no --out)".into(), false),
        TraceOut::Writer(w) => (w, "the trace directory".into(), true),
    };
    let (out, trace_lane): (Box<dyn Write + Send>, _) = if queued {
        let lane = opts
            .queue
            .lane("trace", Rank::Trace, Box::new(Plain(out)))
            .context("starting the trace writer")?;
        (Box::new(lane.writer()), Some(lane))
    } else {
        (out, None)
    };
    let correlator = Correlator::new(correlate::Options::with_long_freeze(opts.long_freeze));
    let mut sink = Sink::new(out, correlator, opts.tap);
    let mounts = sink.mounts.all();
    loaded.refresh_btrfs_aliases(&mounts);
    loaded.refresh_mount_paths(&mounts);
    loaded.refresh_storage(&mounts);
    let started = Instant::now();
    let header = Header {
        tool: "freezewatch".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel: kernel::release(),
        started_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        started_monotonic_ns: kernel::monotonic_ns(),
        hooks: loaded.hooks.clone(),
        command: (!opts.command.is_empty()).then(|| opts.command.clone()),
        deny_mounts: opts.deny_mounts.map(|mode| DenyStatus { mode, active: loaded.denying }),
        cgroup2_root: sink.cgroup2_root().map(|p| p.display().to_string()),
        storage: Some(loaded.storage.coverage()),
    };
    sink.write(&Record::Header(header.clone())).context("writing the trace header")?;
    if let Some(tap) = &sink.tap {
        let _ = tap.send(Tap::Header(header));
    }
    for h in loaded.hooks.iter().filter(|_| !opts.quiet) {
        crate::say!("freezewatch: {}: {}", h.feature, h.hook.as_deref().unwrap_or("none"));
        for f in &h.fallbacks {
            crate::say!("freezewatch:   (not used: {f})");
        }
    }
    if let (Some(mode), false) = (opts.deny_mounts, loaded.denying) {
        // Audit mode without the BPF LSM: said even with --quiet, since the user asked for it.
        let why = loaded
            .hooks
            .iter()
            .find(|h| h.feature == Feature::MountDenial.as_str())
            .and_then(|h| h.fallbacks.first().cloned())
            .unwrap_or_default();
        crate::say!(
            "freezewatch: WARNING: --deny-mounts={} is not active ({why}); mounts of frozen \
             filesystems are flagged from the mount tracepoints, nothing is denied",
            mode.as_str()
        );
    }

    // Spawn the command only now, so that nothing it does happens before the hooks are attached.
    let mut child = match opts.command.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            if to_stdout {
                // The trace owns stdout; the command's output goes to stderr so both stay readable.
                cmd.stdout(std::io::stderr());
            }
            Some(cmd.spawn().with_context(|| format!("starting `{program}`"))?)
        }
        None => None,
    };
    if child.is_none() && !opts.quiet {
        crate::say!(
            "freezewatch: recording{}; Ctrl-C to stop",
            opts.duration.map(|d| format!(" for {d:?}")).unwrap_or_default()
        );
    }

    // SAFETY: the RingBuf owns its map's file descriptor, which stays open and unchanged until
    // the RingBuf is dropped or taken back out with `into_inner` below.
    let mut ring_fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let mut logs = match loaded.take_logger() {
        // SAFETY: as for the ring buffer: the logger owns its map's fd for its whole life.
        Some(l) => Some(
            unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("polling the eBPF log: {e}"))?,
        ),
        None => None,
    };
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut stop = opts.stop;
    // btrfs filesystems mounted while we record get their device aliases within a second.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    // Time-based findings (a freeze that lasts too long) are raised while they are true.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let stop = loop {
        tokio::select! {
            guard = ring_fd.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                sink.drain(guard.get_inner_mut(), &loaded)?;
                guard.clear_ready();
                if std::mem::take(&mut sink.mounts_changed) {
                    sink.mounts.refresh();
                    let mounts = sink.mounts.all();
                    loaded.refresh_mount_paths(&mounts);
                    loaded.refresh_storage(&mounts);
                }
            }
            guard = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = guard.context("polling the eBPF log")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            status = async { child.as_mut().expect("guarded by the select condition").wait().await }, if child.is_some() => {
                let status = status.context("waiting for the command")?;
                break Stop::Command(status.code());
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                break Stop::Duration;
            }
            _ = tick.tick() => sink.tick(kernel::monotonic_ns())?,
            _ = refresh.tick() => {
                sink.mounts.refresh();
                let mounts = sink.mounts.all();
                loaded.refresh_btrfs_aliases(&mounts);
                loaded.refresh_mount_paths(&mounts);
                loaded.refresh_storage(&mounts);
                if let Some(tap) = &sink.tap {
                    let mut counters = loaded.counters();
                    counters.lost_undecodable = sink.undecodable;
                    let _ = tap.send(Tap::Counters(counters));
                }
            }
            _ = async { stop.as_mut().expect("guarded").await }, if stop.is_some() => break Stop::Signal,
            _ = sigint.recv() => break Stop::Signal,
            _ = sigterm.recv() => break Stop::Signal,
        }
    };
    // Whatever the programs emitted before the stop is already in the ring buffer: take it all.
    ring = ring_fd.into_inner();
    sink.drain(&mut ring, &loaded)?;

    let (ended_by, command_exit) = match stop {
        Stop::Command(code) => (EndReason::Command, code),
        Stop::Duration => (EndReason::Duration, None),
        Stop::Signal => (EndReason::Signal, None),
    };
    if let (Stop::Signal | Stop::Duration, Some(child)) = (&stop, child.as_mut()) {
        // Ask the command to stop, but never wait for it: a writer blocked on a frozen
        // filesystem sits in D state and would hang us.
        let _ = child.start_kill();
    }
    let mut counters = loaded.counters();
    counters.lost_undecodable = sink.undecodable;
    let lost = counters.lost();
    let end_ns = kernel::monotonic_ns();
    sink.finish(end_ns)?;
    let footer = Footer {
        events: sink.written.events,
        ended_by: ended_by.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        command_exit,
        counters,
        output_dropped: trace_lane.as_ref().map_or(0, Lane::dropped),
    };
    sink.write(&Record::Footer(footer)).context("writing the trace footer")?;
    // Its writer queues what is left when dropped.
    let written = std::mem::take(&mut sink.written);
    drop(sink);
    if let Some(lane) = trace_lane {
        lane.close();
    }
    crate::say!(
        "freezewatch: {} events, {} findings ({} slips), {lost} lost, written to {dest}",
        written.events,
        written.findings,
        written.slips
    );
    if lost > 0 {
        crate::say!("freezewatch: WARNING: {lost} events were lost; the trace is incomplete");
    }
    Ok(Outcome { events: written.events, lost, command_exit, ended_by })
}
