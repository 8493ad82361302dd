//! `freezewatch export --format chrome-trace`: a trace as the Trace Event JSON that Perfetto
//! (ui.perfetto.dev) and chrome://tracing open.
//!
//! One process per filesystem, named by its device and mount point. On it:
//! - each freeze as an async slice (`b`/`e`) from the moment it completed to its thaw, with an id
//!   of its own, so nested holders (a kernel and a user-space freeze of the same filesystem) and
//!   overlapping freezes stay apart (Perfetto rejects overlapping `B`/`E` pairs on one track);
//!   the drain before it (`freeze_super` running) as a `freezing` slice;
//! - each wait at the gate as a complete slice (`X`) on the waiting task's thread;
//! - slips, mounts while frozen, denied mounts, failed freezes and thaws without a freeze as
//!   instant events (`i`) with the finding's sentence and stack;
//! - the freeze level and the number of blocked writers as counters (`C`).
//!
//! Timestamps are microseconds of the trace's clock (CLOCK_MONOTONIC, as in the trace). The writer
//! streams: it holds one entry per filesystem and per open freeze or wait, never the events, and
//! wants them in time order (`write` puts them in order).
use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
};

use serde_json::{Value, json};

use crate::{
    correlate::{self, Correlator, Finding, FindingKind, Reorder},
    event::{Event, EventKind, Superblock},
    trace::{self, Header, Record, TraceError},
};

/// What can stop an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("writing the export: {0}")]
    Write(std::io::Error),
}

/// Category names, one per kind of slice (Perfetto pairs async `b`/`e` by category and id).
const CAT_FREEZE: &str = "freeze";
const CAT_GATE: &str = "gate";
const CAT_FINDING: &str = "finding";

/// Microseconds (the format's unit) of a nanosecond timestamp, exact to the nanosecond.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// A freeze that completed and is not thawed yet.
struct OpenFreeze {
    id: u64,
    /// "frozen", or "frozen (nested)" when another freeze was open already; its end repeats it.
    name: &'static str,
    holder: Option<String>,
}

/// One filesystem's track.
struct Track {
    pid: u32,
    sb: Superblock,
    open: Vec<OpenFreeze>,
    /// Waits in progress: tid → when it began.
    waits: BTreeMap<u32, u64>,
    level: Option<u32>,
}

/// The streaming writer; `finish` must be called to close the JSON.
pub struct ChromeTrace<W: Write> {
    out: W,
    first: bool,
    tracks: BTreeMap<String, Track>,
    /// (process, thread) → thread name, written with the metadata at the end.
    threads: BTreeMap<(u32, u32), String>,
    next_id: u64,
    last_ts: u64,
}

impl<W: Write> ChromeTrace<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        Ok(Self {
            out,
            first: true,
            tracks: BTreeMap::new(),
            threads: BTreeMap::new(),
            next_id: 1,
            last_ts: 0,
        })
    }

    fn emit(&mut self, record: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, record).map_err(std::io::Error::other)
    }

    fn track(&mut self, sb: &Superblock) -> &mut Track {
        let next_pid = u32::try_from(self.tracks.len() + 1).unwrap_or(u32::MAX);
        let track = self.tracks.entry(sb.id.clone()).or_insert_with(|| Track {
            pid: next_pid,
            sb: sb.clone(),
            open: Vec::new(),
            waits: BTreeMap::new(),
            level: None,
        });
        // The mount point may be learnt after the first event.
        if track.sb.mountpoint.is_none() && sb.mountpoint.is_some() {
            track.sb.mountpoint.clone_from(&sb.mountpoint);
        }
        track
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Takes the next event (in time order).
    pub fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        let Some(sb) = ev.sb.as_ref() else { return Ok(()) };
        self.last_ts = self.last_ts.max(ev.ts_ns);
        let pid = self.track(sb).pid;
        let task = format!("{}[{}]", ev.comm, ev.pid);
        match ev.kind {
            EventKind::FreezeEnd if ev.ret == Some(0) => {
                if let Some(begin) = ev.begin_ts_ns {
                    let id = self.new_id();
                    let args = json!({"by": task});
                    self.emit(&async_event('b', "freezing", id, pid, begin, &args))?;
                    self.emit(&async_event('e', "freezing", id, pid, ev.ts_ns, &json!({})))?;
                }
                let id = self.new_id();
                let holder = ev.holder.clone();
                let depth = self.track(sb).open.len();
                let name = if depth == 0 { "frozen" } else { "frozen (nested)" };
                let args =
                    json!({"by": task, "holder": holder, "level": ev.level_after, "nesting": depth + 1});
                self.emit(&async_event('b', name, id, pid, ev.ts_ns, &args))?;
                self.track(sb).open.push(OpenFreeze { id, name, holder });
            }
            EventKind::ThawEnd if ev.ret == Some(0) => {
                let open = &mut self.track(sb).open;
                // The thaw ends the freeze of its holder when that is known, else the newest.
                let at = ev
                    .holder
                    .as_ref()
                    .and_then(|h| open.iter().rposition(|o| o.holder.as_ref() == Some(h)))
                    .or_else(|| open.len().checked_sub(1));
                if let Some(at) = at {
                    let freeze = open.remove(at);
                    let args = json!({"thawed_by": task});
                    self.emit(&async_event('e', freeze.name, freeze.id, pid, ev.ts_ns, &args))?;
                }
            }
            EventKind::WriterBlocked => {
                self.threads.insert((pid, ev.tid), format!("{} [{}]", ev.comm, ev.tid));
                let waiting = {
                    let t = self.track(sb);
                    t.waits.insert(ev.tid, ev.ts_ns);
                    t.waits.len()
                };
                self.emit(&counter("blocked writers", pid, ev.ts_ns, "blocked", waiting as u64))?;
            }
            EventKind::WriterUnblocked => {
                let (begin, waiting) = {
                    let t = self.track(sb);
                    let begin = t.waits.remove(&ev.tid).or(ev.begin_ts_ns);
                    (begin, t.waits.len())
                };
                if let Some(begin) = begin {
                    self.threads.insert((pid, ev.tid), format!("{} [{}]", ev.comm, ev.tid));
                    let args = json!({"task": task, "gate_level": ev.gate_level});
                    self.emit(&wait_slice(pid, ev.tid, begin, ev.ts_ns, &args))?;
                }
                self.emit(&counter("blocked writers", pid, ev.ts_ns, "blocked", waiting as u64))?;
            }
            _ => {}
        }
        if matches!(
            ev.kind,
            EventKind::FreezeBegin | EventKind::FreezeEnd | EventKind::ThawBegin | EventKind::ThawEnd
        ) && let Some(level) = ev.level_after
        {
            let t = self.track(sb);
            if t.level != Some(level) {
                t.level = Some(level);
                self.emit(&counter("freeze level", pid, ev.ts_ns, "level", u64::from(level)))?;
            }
        }
        Ok(())
    }

    /// Takes a finding; those that mark a moment become instant events, the rest are already
    /// drawn (waits, freezes) or are not news (exempt events).
    pub fn finding(&mut self, f: &Finding) -> std::io::Result<()> {
        if !matches!(
            f.kind,
            FindingKind::Slip
                | FindingKind::MountWhileFrozen
                | FindingKind::MountDenied
                | FindingKind::FreezeFailed
                | FindingKind::ThawWithoutFreeze
        ) {
            return Ok(());
        }
        let pid = self.track(&f.sb).pid;
        let mut args = json!({"message": f.message, "task": format!("{}[{}]", f.comm, f.pid),
            "severity": f.severity, "hook": f.hook});
        if let Some(stack) = &f.stack {
            args["stack"] = json!(stack);
        }
        let record = json!({"name": f.kind.as_str(), "cat": CAT_FINDING, "ph": "i", "s": "p",
            "ts": us(f.ts_ns), "pid": pid, "tid": pid, "args": args});
        self.emit(&record)
    }

    /// Closes what is still open at `end_ns` (waits, freezes: marked as such), writes the
    /// process and thread names and ends the JSON. Returns the writer.
    pub fn finish(mut self, end_ns: Option<u64>, header: Option<&Header>) -> std::io::Result<W> {
        let end = end_ns.unwrap_or(self.last_ts).max(self.last_ts);
        let tracks = std::mem::take(&mut self.tracks);
        for track in tracks.values() {
            for (&tid, &begin) in &track.waits {
                self.emit(&wait_slice(track.pid, tid, begin, end, &json!({"still_blocked_at_end": true})))?;
            }
            for freeze in track.open.iter().rev() {
                let args = json!({"left_frozen": true});
                self.emit(&async_event('e', freeze.name, freeze.id, track.pid, end, &args))?;
            }
        }
        for track in tracks.values() {
            let label = track.sb.describe();
            self.emit(&json!({"name": "process_name", "ph": "M", "pid": track.pid, "tid": track.pid,
                "args": {"name": label}}))?;
            self.emit(&json!({"name": "process_sort_index", "ph": "M", "pid": track.pid, "tid": track.pid,
                "args": {"sort_index": track.pid}}))?;
        }
        for (&(pid, tid), name) in &std::mem::take(&mut self.threads) {
            self.emit(
                &json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}),
            )?;
        }
        let other = json!({"tool": header.map(|h| format!("{} {}", h.tool, h.tool_version)),
            "kernel": header.map(|h| h.kernel.clone()),
            "started_unix_ms": header.map(|h| h.started_unix_ms),
            "started_monotonic_ns": header.map(|h| h.started_monotonic_ns),
            "clock": "CLOCK_MONOTONIC, microseconds"});
        write!(self.out, "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{other}}}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn async_event(ph: char, name: &str, id: u64, pid: u32, ts_ns: u64, args: &Value) -> Value {
    json!({"name": name, "cat": CAT_FREEZE, "ph": ph.to_string(), "id": format!("0x{id:x}"),
        "ts": us(ts_ns), "pid": pid, "tid": pid, "args": args})
}

fn wait_slice(pid: u32, tid: u32, begin: u64, end: u64, args: &Value) -> Value {
    json!({"name": "blocked at the gate", "cat": CAT_GATE, "ph": "X", "ts": us(begin),
        "dur": us(end.saturating_sub(begin)), "pid": pid, "tid": tid, "args": args})
}

fn counter(name: &str, pid: u32, ts_ns: u64, series: &str, value: u64) -> Value {
    json!({"name": name, "ph": "C", "ts": us(ts_ns), "pid": pid, "tid": pid, "args": {series: value}})
}

/// Exports a trace's records to `out`. `window_ns` is how far out of time order the events may
/// be (a reorder window that large puts them in order; `trace::disorder_ns` measures a file;
/// events that are already sorted take 0). Findings come from the same correlation as `report`.
pub fn write<W: Write>(
    records: impl Iterator<Item = Result<Record, TraceError>>,
    out: W,
    opts: &correlate::Options,
    window_ns: u64,
) -> Result<W, ExportError> {
    let mut writer = ChromeTrace::new(out).map_err(ExportError::Write)?;
    let mut order = Reorder::new(window_ns);
    // The events reach the correlator in order already.
    let mut correlator = Correlator::new(correlate::Options { reorder_window_ns: 0, ..opts.clone() });
    let (mut header, mut footer) = (None, None);
    let apply =
        |writer: &mut ChromeTrace<W>, correlator: &mut Correlator, ev: Event| -> std::io::Result<()> {
            writer.event(&ev)?;
            for f in correlator.push(ev) {
                writer.finding(&f)?;
            }
            Ok(())
        };
    for record in records {
        match record? {
            Record::Header(h) => header = Some(h),
            Record::Footer(f) => footer = Some(f),
            Record::Event(ev) => {
                for ev in order.push(ev) {
                    apply(&mut writer, &mut correlator, ev).map_err(ExportError::Write)?;
                }
            }
            Record::Finding(_) | Record::Summary(_) => {}
        }
    }
    for ev in order.drain() {
        apply(&mut writer, &mut correlator, ev).map_err(ExportError::Write)?;
    }
    let end = trace::end_ns(header.as_ref(), footer.as_ref());
    for f in correlator.finish(end).findings {
        writer.finding(&f).map_err(ExportError::Write)?;
    }
    writer.finish(end, header.as_ref()).map_err(ExportError::Write)
}

/// Exports a trace that is read whole (stdin): its events sorted by time first.
pub fn write_sorted<W: Write>(
    input: impl BufRead,
    out: W,
    opts: &correlate::Options,
) -> Result<W, ExportError> {
    let mut records = trace::read_trace(input)?;
    records.sort_by_key(|r| match r {
        Record::Header(_) => (0, 0),
        Record::Event(e) => (1, e.ts_ns),
        _ => (2, 0),
    });
    write(records.into_iter().map(Ok), out, opts, 0)
}

#[cfg(test)]
mod tests;
