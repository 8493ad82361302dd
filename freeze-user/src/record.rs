//! `freezewatch record`: attach, stream events as NDJSON, stop on command exit, duration or signal.
use std::{
    collections::HashMap,
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

use crate::{
    correlate,
    event::{Event, EventKind, MountCall, raw_from_bytes},
    kernel,
    ksyms::Ksyms,
    loader::Loaded,
    mountinfo::MountTable,
    trace::{DenyStatus, EndReason, Footer, Header, Record, SummaryLine, TraceWriter},
};

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
    pub deny_mounts: Option<crate::deny::DenyMode>,
}

/// Where the trace goes.
pub enum TraceOut {
    Stdout,
    File(std::path::PathBuf),
    /// Nowhere (the live TUI without --out).
    Discard,
}

/// What the recorder tells a live consumer.
#[derive(Clone, Debug)]
pub enum Tap {
    Header(Header),
    Event(Box<Event>),
    Counters(crate::trace::Counters),
}

/// What a recording ended with, for the caller's exit code.
pub struct Outcome {
    pub events: u64,
    pub lost: u64,
    pub command_exit: Option<i32>,
    pub ended_by: EndReason,
}

struct Sink {
    writer: TraceWriter<Box<dyn Write + Send>>,
    mounts: MountTable,
    events: Vec<Event>,
    undecodable: u64,
    /// Kernel symbols, loaded on a thread from the start (parsing takes a while) and taken on the
    /// first event that carries a stack or a caller address.
    ksyms: Option<Ksyms>,
    ksyms_loading: Option<std::thread::JoinHandle<Ksyms>>,
    /// Mount calls in progress, by thread: their end event repeats them.
    mount_calls: HashMap<u32, MountCall>,
    tap: Option<std::sync::mpsc::Sender<Tap>>,
    /// A mount landed or a freeze began since the mount points were last given to the kernel.
    mounts_changed: bool,
}

impl Sink {
    fn drain(&mut self, ring: &mut RingBuf<MapData>, loaded: &Loaded) -> Result<()> {
        while let Some(item) = ring.next() {
            let mounts = &mut self.mounts;
            let decoded = raw_from_bytes(&item).and_then(|raw| {
                Event::from_raw(&raw, |dev| mounts.mountpoint_refreshing(dev)).map(|ev| (raw, ev))
            });
            match decoded {
                Ok((raw, mut ev)) => {
                    ev.add_mount_strings(&item);
                    self.symbolize(&raw, &mut ev, loaded);
                    self.complete_mount(&mut ev);
                    self.writer.write(&Record::Event(ev.clone())).context("writing the trace")?;
                    if let Some(tap) = &self.tap {
                        let _ = tap.send(Tap::Event(Box::new(ev.clone())));
                    }
                    self.events.push(ev);
                }
                Err(e) => {
                    self.undecodable += 1;
                    log::warn!("dropped an undecodable record: {e}");
                }
            }
        }
        Ok(())
    }

    /// A mount_end repeats its begin's call, and says which device is now mounted at the target.
    fn complete_mount(&mut self, ev: &mut Event) {
        match ev.kind {
            EventKind::FreezeBegin => self.mounts_changed = true,
            EventKind::MountBegin => {
                if let Some(call) = ev.mount.as_mut() {
                    call.source_dev = self.source_dev(&call.source);
                    self.mount_calls.insert(ev.tid, call.clone());
                }
            }
            EventKind::MountEnd => {
                let Some(mut call) = self.mount_calls.remove(&ev.tid) else { return };
                if ev.ret == Some(0) {
                    self.mounts_changed = true;
                }
                if ev.ret == Some(0) && call.target.starts_with('/') {
                    let target = std::fs::canonicalize(&call.target)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| call.target.clone());
                    self.mounts.refresh();
                    call.mounted_dev = self.mounts.dev_at(&target).map(|(ma, mi)| format!("{ma}:{mi}"));
                }
                ev.mount = Some(call);
            }
            _ => {}
        }
    }

    /// The superblock device a mount source belongs to: a block device's number (btrfs members
    /// map to their filesystem's anonymous device), or the st_dev of a directory being bound.
    fn source_dev(&self, source: &str) -> Option<String> {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let md = std::fs::metadata(source).ok()?;
        let (dev, is_bdev) =
            if md.file_type().is_block_device() { (md.rdev(), true) } else { (md.dev(), false) };
        let mut num = (libc::major(dev), libc::minor(dev));
        if is_bdev {
            let aliases =
                crate::btrfs_devs::aliases(std::path::Path::new("/sys/fs/btrfs"), &self.mounts.all());
            if let Some((_, fs)) = aliases.iter().find(|(member, _)| *member == num) {
                num = *fs;
            }
        }
        Some(format!("{}:{}", num.0, num.1))
    }

    /// Names the stack frames and the transaction caller from /proc/kallsyms.
    fn symbolize(&mut self, raw: &freeze_common::RawEvent, ev: &mut Event, loaded: &Loaded) {
        let caller = ev.txn.as_ref().and_then(|_| (raw.arg != 0).then_some(raw.arg));
        if raw.stack_id == 0 && caller.is_none() {
            return;
        }
        if self.ksyms.is_none() {
            let loaded = self.ksyms_loading.take().and_then(|h| h.join().ok());
            self.ksyms = Some(loaded.unwrap_or_else(Ksyms::load));
        }
        let Some(ksyms) = self.ksyms.as_ref() else { return };
        if let (Some(txn), Some(addr)) = (ev.txn.as_mut(), caller) {
            txn.caller = Some(ksyms.name(addr));
        }
        if let Some(frames) = loaded.stack(raw.stack_id) {
            ev.stack = Some(frames.into_iter().map(|ip| ksyms.name(ip)).collect());
        }
    }
}

enum Stop {
    Command(Option<i32>),
    Duration,
    Signal,
}

pub async fn record(opts: Options) -> Result<Outcome> {
    let mut loaded = Loaded::load(opts.deny_mounts)?;
    let mut ring = loaded.take_events().context("the eBPF object has no EVENTS ring buffer")?;

    let to_stdout = matches!(opts.out, TraceOut::Stdout);
    let out: Box<dyn Write + Send> = match &opts.out {
        TraceOut::File(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        TraceOut::Stdout => Box::new(std::io::stdout()),
        TraceOut::Discard => Box::new(std::io::sink()),
    };
    let mut sink = Sink {
        writer: TraceWriter::new(out),
        mounts: MountTable::load(),
        events: Vec::new(),
        undecodable: 0,
        ksyms: None,
        ksyms_loading: Some(std::thread::spawn(Ksyms::load)),
        mount_calls: HashMap::new(),
        tap: opts.tap,
        mounts_changed: false,
    };
    loaded.refresh_btrfs_aliases(&sink.mounts.all());
    loaded.refresh_mount_paths(&sink.mounts.all());
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
    };
    sink.writer.write(&Record::Header(header.clone())).context("writing the trace header")?;
    if let Some(tap) = &sink.tap {
        let _ = tap.send(Tap::Header(header));
    }
    for h in loaded.hooks.iter().filter(|_| !opts.quiet) {
        eprintln!("freezewatch: {}: {}", h.feature, h.hook.as_deref().unwrap_or("none"));
        for f in &h.fallbacks {
            eprintln!("freezewatch:   (not used: {f})");
        }
    }
    if let (Some(mode), false) = (opts.deny_mounts, loaded.denying) {
        // Audit mode without the BPF LSM: said even with --quiet, since the user asked for it.
        let why = loaded
            .hooks
            .iter()
            .find(|h| h.feature == "mount-denial")
            .and_then(|h| h.fallbacks.first().cloned())
            .unwrap_or_default();
        eprintln!(
            "freezewatch: WARNING: --deny-mounts={} is not active ({why}); mounts of frozen \
             filesystems are flagged from the mount tracepoints, nothing is denied",
            serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
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
        eprintln!(
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
    let stop = loop {
        tokio::select! {
            guard = ring_fd.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                sink.drain(guard.get_inner_mut(), &loaded)?;
                guard.clear_ready();
                if std::mem::take(&mut sink.mounts_changed) {
                    sink.mounts.refresh();
                    loaded.refresh_mount_paths(&sink.mounts.all());
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
                        _ = refresh.tick() => {
                sink.mounts.refresh();
                loaded.refresh_btrfs_aliases(&sink.mounts.all());
                loaded.refresh_mount_paths(&sink.mounts.all());
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
    let analysis = correlate::analyze(
        &sink.events,
        &correlate::Options::with_long_freeze(opts.long_freeze),
        Some(end_ns),
    );
    for f in &analysis.findings {
        sink.writer.write(&Record::Finding(f.clone())).context("writing a finding")?;
    }
    for (sb_id, summary) in &analysis.summaries {
        let line = SummaryLine { sb_id: sb_id.clone(), summary: summary.clone() };
        sink.writer.write(&Record::Summary(line)).context("writing a summary")?;
    }
    let slips = analysis.count(correlate::FindingKind::Slip);
    let footer = Footer {
        events: sink.events.len() as u64,
        ended_by: ended_by.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        command_exit,
        counters,
    };
    sink.writer.write(&Record::Footer(footer)).context("writing the trace footer")?;
    let dest = match &opts.out {
        TraceOut::File(p) => p.display().to_string(),
        TraceOut::Stdout => "stdout".into(),
        TraceOut::Discard => "nowhere (no --out)".into(),
    };
    eprintln!(
        "freezewatch: {} events, {} findings ({slips} slips), {lost} lost, written to {dest}",
        sink.events.len(),
        analysis.findings.len()
    );
    if lost > 0 {
        eprintln!("freezewatch: WARNING: {lost} events were lost; the trace is incomplete");
    }
    Ok(Outcome { events: sink.events.len() as u64, lost, command_exit, ended_by })
}
