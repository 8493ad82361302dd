//! The TUI's loops: the terminal is set up and always restored (Drop, panic, SIGTERM); events
//! come from a trace (replay) or from the recorder on another thread (live), in bounded batches
//! so a burst never freezes the screen.
use std::{
    io::Stdout,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use ratatui::{
    Terminal,
    crossterm::event::{self, Event as TermEvent, KeyEventKind},
    prelude::CrosstermBackend,
};

use super::{
    app::{App, Mode},
    keys::action_for,
};
use crate::record::{self, Tap, Tapped, TraceOut};
use freeze_model::{
    correlate,
    trace::{Contents, read_trace},
};

/// Events applied per frame at most: a burst is spread over frames instead of blocking input.
const BATCH: usize = 2000;
const FRAME: Duration = Duration::from_millis(100);

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Raw mode and the alternate screen, undone in Drop (and by ratatui's panic hook).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> Self {
        // ratatui::init also installs a panic hook that restores the terminal first.
        Self { terminal: ratatui::init() }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads keys for up to `wait` and applies them.
fn handle_input(app: &mut App, wait: Duration) -> Result<()> {
    if event::poll(wait).context("reading the terminal")?
        && let TermEvent::Key(key) = event::read().context("reading the terminal")?
        && key.kind == KeyEventKind::Press
    {
        let action = action_for(app, key);
        app.apply(action);
    }
    if TERMINATE.load(Ordering::SeqCst) {
        app.should_quit = true;
    }
    Ok(())
}

pub fn replay(path: PathBuf, speed: f64, opts: correlate::Options, event_log: usize) -> Result<()> {
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let contents = Contents::from_records(
        read_trace(std::io::BufReader::with_capacity(freeze_model::trace::READ_BUFFER, file))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?,
    );
    let mut events = contents.events;
    events.sort_by_key(|e| e.ts_ns);
    let first_ts = events.first().map(|e| e.ts_ns).unwrap_or(0);
    let mut app = App::new(Mode::Replay { speed, playing: true, position: 0, total: events.len() }, opts);
    app.log_capacity = event_log;
    app.header = contents.header;
    if let Some(f) = &contents.footer {
        app.counters = f.counters.clone();
    }
    app.trace_file = Some(path.display().to_string());
    app.now_ns = first_ts;

    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t) };
    let mut guard = TerminalGuard::enter();
    let mut clock = first_ts as f64; // replay position, in the trace's clock
    let mut last = Instant::now();
    let mut next = 0usize;
    let mut applied = 0usize;
    while !app.should_quit {
        let elapsed = last.elapsed();
        last = Instant::now();
        if let Mode::Replay { speed, playing, position, .. } = &mut app.mode {
            if *playing {
                clock += elapsed.as_nanos() as f64 * *speed;
            }
            let batch_end = (next + BATCH).min(events.len());
            while next < batch_end && (events[next].ts_ns as f64) <= clock {
                next += 1;
            }
            *position = next;
            if next == events.len() {
                *playing = false;
            }
        }
        for ev in events[applied..next].iter().cloned() {
            app.push_event(ev);
        }
        applied = next;
        let end = if next == events.len() {
            // At the end, the clock stops where the recording stopped.
            contents_end(&app).unwrap_or(events.last().map_or(first_ts, |e| e.ts_ns))
        } else {
            clock as u64
        };
        app.refresh(end);
        guard.terminal.draw(|f| f.render_widget(&app, f.area())).context("drawing")?;
        handle_input(&mut app, FRAME)?;
    }
    Ok(())
}

fn contents_end(app: &App) -> Option<u64> {
    let h = app.header.as_ref()?;
    Some(h.started_monotonic_ns.max(app.now_ns))
}

pub struct LiveOptions {
    pub out: Option<PathBuf>,
    pub long_freeze: Duration,
    /// Events the log keeps.
    pub event_log: usize,
    pub deny_mounts: Option<freeze_model::deny::DenyMode>,
}

pub fn live(opts: LiveOptions) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let trace_file = opts.out.as_ref().map(|p| p.display().to_string());
    let record_opts = record::Options {
        out: opts.out.map_or(TraceOut::Discard, TraceOut::File),
        duration: None,
        long_freeze: opts.long_freeze,
        command: Vec::new(),
        tap: None,
        stop: Some(stop_rx),
        quiet: true,
        deny_mounts: opts.deny_mounts,
        queue: crate::queue::Queue::new(crate::queue::DEFAULT_BYTES),
        probe_levels: false,
    };
    // Attached (the header arrived) before the terminal is taken over, so that a failure to load
    // is printed as a plain error.
    let recorder = Tapped::start(record_opts)?;
    let header = recorder.header.clone();
    let mut app = App::new(Mode::Live, correlate::Options::with_long_freeze(opts.long_freeze));
    app.log_capacity = opts.event_log;
    app.header = Some(header);
    app.trace_file = trace_file;
    let result = live_loop(&mut app, &recorder.taps);
    let _ = stop_tx.send(());
    // The recorder drains, writes the footer and detaches (the kernel takes a second or two).
    let recorded = recorder.join();
    result.and(recorded)
}

fn live_loop(app: &mut App, taps: &std::sync::mpsc::Receiver<Tap>) -> Result<()> {
    let mut guard = TerminalGuard::enter();
    let mut rate_window = (Instant::now(), 0usize);
    while !app.should_quit {
        let mut n = 0;
        loop {
            match taps.try_recv() {
                Ok(Tap::Event(ev)) => {
                    app.push_event(*ev);
                    n += 1;
                    if n >= BATCH {
                        break;
                    }
                }
                Ok(Tap::Counters(c)) => app.counters = c,
                // The app correlates for itself (a replay has no recorder).
                Ok(Tap::Finding(_)) => {}
                Ok(Tap::Header(h)) => app.header = Some(h),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                // The recorder ended (SIGTERM, or an error it will report): leave the screen.
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    app.should_quit = true;
                    break;
                }
            }
        }
        rate_window.1 += n;
        let secs = rate_window.0.elapsed().as_secs_f64();
        if secs >= 1.0 {
            app.events_per_sec = rate_window.1 as f64 / secs;
            rate_window = (Instant::now(), 0);
        }
        app.refresh(crate::host::kernel::monotonic_ns());
        guard.terminal.draw(|f| f.render_widget(&*app, f.area())).context("drawing")?;
        handle_input(app, FRAME)?;
    }
    Ok(())
}
