//! `freezewatch record`: attach, stream events as NDJSON with findings as soon as they are
//! certain, stop on command exit, duration or signal.
mod level_probe;
mod pipeline;
pub mod rotate;
mod unmapped;

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    process::Command,
    signal::unix::SignalKind,
};

use freeze_model::{
    correlate::{self, Correlator},
    coverage::Feature,
    event::Event,
    trace::{DenyStatus, EndReason, Footer, Header},
};
use pipeline::EventPipeline;

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
    /// Once attached, asks the level probe for the freeze level of every filesystem mounted from
    /// a block device (`watch`: frozen-at-start).
    pub probe_levels: bool,
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
    /// A finding of the recorder's correlator, as soon as it is certain (after the event that made
    /// it certain), but not those of the recording's end.
    Finding(Box<freeze_model::correlate::Finding>),
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

impl Stop {
    /// Why the recording ended, and the command's exit code when it ended it.
    fn reason(&self) -> (EndReason, Option<i32>) {
        match self {
            Stop::Command(code) => (EndReason::Command, *code),
            Stop::Duration => (EndReason::Duration, None),
            Stop::Signal => (EndReason::Signal, None),
        }
    }
}

/// Where the trace goes, opened: the writer the pipeline writes to, its name for the closing
/// line, and the queue's lane when the writes are queued.
struct Trace {
    writer: Box<dyn Write + Send>,
    dest: String,
    lane: Option<Lane>,
}

impl Trace {
    /// Files are queued (a trace on a frozen filesystem must not stop the recording): the
    /// pipeline flushes after each batch it takes from the ring buffer (and each tick), and each
    /// flush is one chunk the lane's writer thread writes with one write(2).
    fn open(out: TraceOut, queue: &Queue) -> Result<Self> {
        let (writer, dest, queued): (Box<dyn Write + Send>, String, bool) = match out {
            TraceOut::File(path) => (
                Box::new(
                    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
                ),
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
        if !queued {
            return Ok(Self { writer, dest, lane: None });
        }
        let lane =
            queue.lane("trace", Rank::Trace, Box::new(Plain(writer))).context("starting the trace writer")?;
        Ok(Self { writer: Box::new(lane.writer()), dest, lane: Some(lane) })
    }
}

/// Loads and attaches the programs.
fn attach(deny_mounts: Option<freeze_model::deny::DenyMode>) -> Result<Loaded> {
    let loaded = Loaded::load(deny_mounts)?;
    // Loading parsed the kernel's BTF twice (tens of MiB, freed now): give those pages back, or
    // an idle recorder keeps them resident for good.
    release_free_heap();
    Ok(loaded)
}

/// Gives the heap's free pages back to the kernel, after work that grew it past what is kept.
pub(super) fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions; it only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
}

/// The trace's first line: what is recording, where, with which hooks.
fn header(
    loaded: &Loaded,
    command: &[String],
    deny_mounts: Option<freeze_model::deny::DenyMode>,
    cgroup2_root: Option<&std::path::Path>,
) -> Header {
    Header {
        tool: "freezewatch".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel: kernel::release(),
        started_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        started_monotonic_ns: kernel::monotonic_ns(),
        hooks: loaded.hooks.clone(),
        command: (!command.is_empty()).then(|| command.to_vec()),
        deny_mounts: deny_mounts.map(|mode| DenyStatus { mode, active: loaded.denying }),
        cgroup2_root: cgroup2_root.map(|p| p.display().to_string()),
        storage: Some(loaded.storage.coverage()),
    }
}

/// Says on stderr which hook each feature uses (unless quiet), and that mount denial is not
/// active when it was asked for and could not attach (even when quiet: the user asked for it).
fn announce(loaded: &Loaded, quiet: bool, deny_mounts: Option<freeze_model::deny::DenyMode>) {
    for h in loaded.hooks.iter().filter(|_| !quiet) {
        crate::say!("freezewatch: {}: {}", h.feature, h.hook.as_deref().unwrap_or("none"));
        for f in &h.fallbacks {
            crate::say!("freezewatch:   (not used: {f})");
        }
    }
    if let (Some(mode), false) = (deny_mounts, loaded.denying) {
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
}

/// Starts the command, if there is one: only once the hooks are attached, so that nothing it
/// does happens before. With the trace on stdout, its output goes to stderr.
fn run_command(command: &[String], trace_on_stdout: bool) -> Result<Option<tokio::process::Child>> {
    let Some((program, args)) = command.split_first() else { return Ok(None) };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if trace_on_stdout {
        cmd.stdout(std::io::stderr());
    }
    Ok(Some(cmd.spawn().with_context(|| format!("starting `{program}`"))?))
}

/// What `drain_until_stop` waits on besides the ring buffer.
struct Stops {
    child: Option<tokio::process::Child>,
    deadline: Option<tokio::time::Instant>,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Runs the pipeline on the ring buffer (and the eBPF log) until the command exits, the
/// duration passes, a signal comes or the caller stops it; refreshes the kernel's view of mounts
/// and storage each second and ticks the correlator's clock. Returns the ring buffer, with what
/// the programs emitted before the stop still in it.
async fn drain_until_stop(
    ring: RingBuf<MapData>,
    loaded: &mut Loaded,
    pipeline: &mut EventPipeline,
    stops: &mut Stops,
) -> Result<(Stop, RingBuf<MapData>)> {
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
    // Filesystems mounted and layers set up while we record are known within a second, and
    // layers at once where the kernel's device events can be read.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    let mut uevents = match crate::host::uevents::Uevents::open() {
        // SAFETY: `Uevents` owns its socket, which stays open and unchanged until it is dropped
        // with the AsyncFd.
        Ok(u) => Some(
            unsafe { AsyncFd::register_with_interest(u, Interest::READABLE) }
                .context("polling device events")?,
        ),
        Err(e) => {
            log::warn!("device events cannot be read ({e}): new storage layers are mapped within a second");
            None
        }
    };
    // Time-based findings (a freeze that lasts too long) are raised while they are true.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let Stops { child, deadline, stop } = stops;
    let stop = loop {
        tokio::select! {
            guard = ring_fd.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                pipeline.drain(guard.get_inner_mut(), loaded)?;
                guard.clear_ready();
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
            guard = async { uevents.as_mut().expect("guarded").readable_mut().await }, if uevents.is_some() => {
                let mut guard = guard.context("polling device events")?;
                if guard.get_inner().drain_block_changes() {
                    pipeline.refresh(loaded);
                }
                guard.clear_ready();
            }
            _ = tick.tick() => pipeline.tick(kernel::monotonic_ns(), loaded)?,
            _ = refresh.tick() => {
                pipeline.refresh(loaded);
                pipeline.tap_counters(loaded);
            }
            _ = async { stop.as_mut().expect("guarded").await }, if stop.is_some() => break Stop::Signal,
            _ = sigint.recv() => break Stop::Signal,
            _ = sigterm.recv() => break Stop::Signal,
        }
    };
    Ok((stop, ring_fd.into_inner()))
}

/// A recording: attach, open the trace, write its header, announce, run the command, drain
/// until stopped, finish (the last records, the open findings, summaries, the footer).
pub async fn record(opts: Options) -> Result<Outcome> {
    let Options { out, long_freeze, duration, command, tap, stop, quiet, deny_mounts, queue, probe_levels } =
        opts;
    let mut loaded = attach(deny_mounts)?;
    let ring = loaded.take_events().context("the eBPF object has no EVENTS ring buffer")?;
    let trace_on_stdout = matches!(out, TraceOut::Stdout);
    let trace = Trace::open(out, &queue)?;
    let correlator = Correlator::new(correlate::Options::with_long_freeze(long_freeze));
    let mut pipeline = EventPipeline::new(trace.writer, correlator, tap, &mut loaded);
    let started = Instant::now();
    pipeline.start(header(&loaded, &command, deny_mounts, pipeline.cgroup2_root()))?;
    // Filesystems frozen before we looked: the probe's events arrive like any others.
    match (probe_levels, loaded.level_probe.take()) {
        (true, Some(probe)) => {
            let hook = probe.hook();
            let probed = level_probe::probe_all(probe);
            log::debug!("probed the freeze level of {probed} filesystems ({})", hook.as_str());
        }
        (true, None) => log::warn!("no level probe: a filesystem frozen before the start is not told"),
        (false, _) => {}
    }
    announce(&loaded, quiet, deny_mounts);
    let child = run_command(&command, trace_on_stdout)?;
    if child.is_none() && !quiet {
        crate::say!(
            "freezewatch: recording{}; Ctrl-C to stop",
            duration.map(|d| format!(" for {d:?}")).unwrap_or_default()
        );
    }
    let mut stops = Stops { child, deadline: duration.map(|d| tokio::time::Instant::now() + d), stop };
    let (stop, mut ring) = drain_until_stop(ring, &mut loaded, &mut pipeline, &mut stops).await?;
    // Whatever the programs emitted before the stop is already in the ring buffer: take it all.
    pipeline.drain(&mut ring, &mut loaded)?;
    let (ended_by, command_exit) = stop.reason();
    if let (Stop::Signal | Stop::Duration, Some(child)) = (&stop, stops.child.as_mut()) {
        // Ask the command to stop, but never wait for it: a writer blocked on a frozen
        // filesystem sits in D state and would hang us.
        let _ = child.start_kill();
    }
    let counters = pipeline.counters(&loaded);
    let lost = counters.lost();
    let footer = Footer {
        events: 0,
        ended_by: ended_by.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        command_exit,
        counters,
        output_dropped: trace.lane.as_ref().map_or(0, Lane::dropped),
    };
    let written = pipeline.finish(kernel::monotonic_ns(), footer)?;
    if let Some(lane) = trace.lane {
        lane.close();
    }
    crate::say!(
        "freezewatch: {} events, {} findings ({} slips), {lost} lost, written to {}",
        written.events,
        written.findings,
        written.slips,
        trace.dest
    );
    if lost > 0 {
        crate::say!("freezewatch: WARNING: {lost} events were lost; the trace is incomplete");
    }
    Ok(Outcome { events: written.events, lost, command_exit, ended_by })
}
