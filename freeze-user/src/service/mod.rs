//! `freezewatch watch`: the always-on service. It records like `record` (on a thread, through the
//! same tap the TUI uses, keeping no trace), and while freezes happen it writes findings as NDJSON
//! lines (the trace's finding schema) to stdout or a file, raises alerts while a freeze lasts,
//! acts as a watchdog when asked, and keeps the Prometheus metrics. It runs until SIGTERM or
//! SIGINT; what it keeps is bounded by what is open (filesystems, waits), not by time.
//!
//! It never waits on a gate it watches: findings and trace lines go through a bounded queue
//! (`crate::queue`) to writer threads, so an output on a frozen filesystem (`/` frozen by
//! qemu-ga's freeze-everything) blocks only its writer, and the event loop, the judgement, the
//! watchdog's FITHAW and `/metrics` go on.
pub mod metrics;
mod server;
mod thaw;
pub mod web_config;

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    sync::mpsc::{Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use freeze_model::{
    correlate::Finding,
    oversight::{Watch, WatchOptions},
    trace::{Record, TraceWriter},
};

use crate::{
    host::kernel,
    queue::{Lane, LaneWriter, Output, Queue, Rank},
    record::{self, Tap, Tapped, TraceOut},
};

/// How often alerts, the watchdog and the time-based metrics are looked at.
const TICK: Duration = Duration::from_millis(100);

pub struct Options {
    pub findings: Option<PathBuf>,
    /// Keep the trace in this directory: (dir, bytes per file, files kept).
    pub trace_dir: Option<(PathBuf, u64, usize)>,
    pub watch: WatchOptions,
    pub long_freeze: Duration,
    pub metrics: Option<String>,
    pub deny_mounts: Option<freeze_model::deny::DenyMode>,
    /// The output queue's budget in bytes.
    pub queue_bytes: usize,
    /// `--web.config.file`: TLS and basic auth for the metrics.
    pub web_config: Option<PathBuf>,
}

/// Set by SIGHUP: reopen the findings file (after logrotate moved it away).
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

/// The findings file (appended to), or stdout.
fn open_findings(path: Option<&Path>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stdout()),
    })
}

/// The findings output, written by its queue thread: reopened there on SIGHUP.
struct FindingsOut {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
}

impl Output for FindingsOut {
    fn write_chunk(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.out.write_all(chunk)?;
        self.out.flush()
    }

    fn reopen(&mut self) -> std::io::Result<String> {
        if self.path.is_some() {
            self.out = open_findings(self.path.as_deref())?;
        }
        Ok("SIGHUP: findings go to a freshly opened file now".into())
    }
}

type Findings = TraceWriter<LaneWriter>;

pub fn run(opts: Options) -> Result<()> {
    // Everything that can fail on bad input fails before anything is attached.
    let first = open_findings(opts.findings.as_deref()).with_context(|| {
        format!("opening the findings file {}", opts.findings.as_deref().unwrap_or(Path::new("-")).display())
    })?;
    let queue = Queue::new(opts.queue_bytes);
    let findings_lane = queue
        .lane("findings", Rank::Findings, Box::new(FindingsOut { path: opts.findings.clone(), out: first }))
        .context("starting the findings writer")?;
    let mut findings = TraceWriter::new(findings_lane.writer());
    // freezewatch's own lines (and the log) from now on: through the queue, never waiting for
    // stderr (journald's socket, while journald waits for a frozen filesystem).
    let log_lane = queue
        .lane("log", Rank::Log, Box::new(crate::queue::Plain(std::io::stderr())))
        .context("starting the log writer")?;
    crate::say::route(Some(log_lane.clone()));
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };

    let trace_out = match &opts.trace_dir {
        Some((dir, size, keep)) => TraceOut::Writer(Box::new(
            record::rotate::Rotating::new(dir, *size, *keep)
                .with_context(|| format!("opening the trace directory {}", dir.display()))?,
        )),
        None => TraceOut::Discard,
    };
    let record_opts = record::Options {
        out: trace_out,
        duration: None,
        long_freeze: opts.long_freeze,
        command: Vec::new(),
        tap: None,
        stop: None,
        quiet: true,
        deny_mounts: opts.deny_mounts,
        queue: queue.clone(),
        probe_levels: true,
    };
    // The metrics server listens before the recorder attaches, so that a busy port is a plain
    // error with nothing attached; its hook labels are filled once the header arrives.
    let mut metrics = metrics::Metrics::new();
    let web = opts.web_config.as_deref().map(web_config::WebConfig::load).transpose()?;
    let server = match &opts.metrics {
        Some(addr) => Some(server::Server::start(addr, metrics.registry(), web)?),
        None => None,
    };
    let recorder = Tapped::start(record_opts)?;
    let header = &recorder.header;
    metrics.hooks(&header.hooks);
    for h in &header.hooks {
        crate::say!("freezewatch: {}: {}", h.feature, h.hook.as_deref().unwrap_or("none"));
    }
    crate::say!(
        "freezewatch: watching{}; findings to {}; SIGTERM or Ctrl-C stops",
        opts.metrics.as_deref().map(|a| format!(", metrics at http://{a}/metrics")).unwrap_or_default(),
        opts.findings.as_ref().map_or("stdout".into(), |p| p.display().to_string())
    );
    let result = watch_loop(&recorder.taps, &mut findings, &mut metrics, &opts, &queue, &findings_lane);
    let recorded = recorder.join();
    drop(findings);
    findings_lane.close();
    drop(server);
    crate::say::route(None);
    log_lane.close();
    result.and(recorded)
}

/// One finding: counted in the metrics, queued as a line (never waiting for the output).
fn emit(out: &mut Findings, metrics: &mut metrics::Metrics, f: Finding) -> Result<()> {
    metrics.finding(&f);
    out.write(&Record::Finding(f)).and_then(|()| out.flush()).context("queueing a finding")
}

fn watch_loop(
    taps: &Receiver<Tap>,
    out: &mut Findings,
    metrics: &mut metrics::Metrics,
    opts: &Options,
    queue: &Queue,
    findings_lane: &Lane,
) -> Result<()> {
    let mut watch = Watch::new(opts.watch.clone()).with_device_names(Box::new(thaw::dm_name));
    let mut last_tick = Instant::now();
    loop {
        match taps.recv_timeout(TICK) {
            Ok(Tap::Event(ev)) => {
                metrics.event(&ev);
                let pushed = watch.push(&ev);
                if let (Some(d), Some(sb)) = (pushed.freeze_ended_after_ns, ev.sb.as_ref()) {
                    metrics.freeze_ended(sb, d);
                }
                for f in pushed.findings {
                    emit(out, metrics, f)?;
                }
            }
            // The recorder's correlator: watch does not correlate a second time.
            Ok(Tap::Finding(f)) => emit(out, metrics, *f)?,
            Ok(Tap::Counters(c)) => metrics.counters(&c),
            Ok(Tap::Header(_)) | Err(RecvTimeoutError::Timeout) => {}
            // The recorder stopped: a signal, or an error it reports when joined.
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() < TICK {
            continue;
        }
        last_tick = Instant::now();
        if HANGUP.swap(false, Ordering::Relaxed) {
            // The findings' writer reopens the file after what is queued before it (`emit`
            // flushes every finding into the queue).
            findings_lane.reopen();
        }
        let now = kernel::monotonic_ns();
        let (alerts, orders) = watch.tick(now);
        for f in alerts {
            emit(out, metrics, f)?;
        }
        for order in orders {
            let result = thaw::thaw(&order.mountpoint);
            let f = watch.thawed(&order, kernel::monotonic_ns(), result);
            emit(out, metrics, f)?;
        }
        metrics.tick(now, watch.frozen());
        metrics.output_dropped(&queue.dropped());
    }
    Ok(())
}
