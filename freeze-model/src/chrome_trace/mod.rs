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
use std::{collections::BTreeMap, io::Write};

use serde_json::{Value, json};

use crate::{
    correlate::{self, Finding},
    event::Event,
    timeline::{Item, Timeline, Track, is_moment},
    trace::{Header, Record, TraceError},
    walk::{OutputError, Step, walk},
};

/// Category names, one per kind of slice (Perfetto pairs async `b`/`e` by category and id).
const CAT_FREEZE: &str = "freeze";
const CAT_GATE: &str = "gate";
const CAT_FINDING: &str = "finding";

/// Microseconds (the format's unit) of a nanosecond timestamp, exact to the nanosecond.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The streaming writer; `finish` must be called to close the JSON.
pub struct ChromeTrace<W: Write> {
    out: W,
    first: bool,
    timeline: Timeline,
    /// (process, thread) → thread name, written with the metadata at the end.
    threads: BTreeMap<(u32, u32), String>,
}

impl<W: Write> ChromeTrace<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        Ok(Self { out, first: true, timeline: Timeline::new(), threads: BTreeMap::new() })
    }

    fn emit(&mut self, record: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, record).map_err(std::io::Error::other)
    }

    /// Takes the next event (in time order).
    pub fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        for item in self.timeline.push(ev) {
            self.item(item)?;
        }
        Ok(())
    }

    /// One timeline shape as trace events: a freeze as an async pair with its own id (written
    /// together once it ended), a wait as a complete slice on its thread, changes as counters.
    fn item(&mut self, item: Item) -> std::io::Result<()> {
        match item {
            Item::Freezing { track, id, begin, end, by } => {
                let id = format!("0x{id:x}");
                self.emit(&async_event('b', "freezing", &id, track, begin, &json!({"by": by})))?;
                self.emit(&async_event('e', "freezing", &id, track, end, &json!({})))
            }
            Item::Frozen { track, id, nesting, holder, level, begin, end, by, thawed_by, left_frozen } => {
                let name = if nesting == 1 { "frozen" } else { "frozen (nested)" };
                let id = format!("0x{id:x}");
                let args = json!({"by": by, "holder": holder, "level": level, "nesting": nesting});
                self.emit(&async_event('b', name, &id, track, begin, &args))?;
                let args =
                    if left_frozen { json!({"left_frozen": true}) } else { json!({"thawed_by": thawed_by}) };
                self.emit(&async_event('e', name, &id, track, end, &args))
            }
            Item::Wait { track, tid, task, begin, end, gate_level, still_blocked } => {
                // "dd[77]", or "java[70] tid 77" for a thread other than the process's first.
                let name = if task.ends_with(&format!("[{tid}]")) {
                    task.clone()
                } else {
                    format!("{task} tid {tid}")
                };
                self.threads.insert((track, tid), name);
                let args = if still_blocked {
                    json!({"task": task, "gate_level": gate_level, "still_blocked_at_end": true})
                } else {
                    json!({"task": task, "gate_level": gate_level})
                };
                self.emit(&json!({"name": "blocked at the gate", "cat": CAT_GATE, "ph": "X", "ts": us(begin),
                    "dur": us(end.saturating_sub(begin)), "pid": track, "tid": tid, "args": args}))
            }
            Item::Level { track, ts, level } => {
                self.emit(&counter("freeze level", track, ts, "level", u64::from(level)))
            }
            Item::Blocked { track, ts, count } => {
                self.emit(&counter("blocked writers", track, ts, "blocked", count as u64))
            }
        }
    }

    /// Takes a finding; those that mark a moment become instant events, the rest are already
    /// drawn (waits, freezes) or are not news (exempt events).
    pub fn finding(&mut self, f: &Finding) -> std::io::Result<()> {
        if !is_moment(f.kind) {
            return Ok(());
        }
        let pid = self.timeline.track(&f.sb);
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
        for item in self.timeline.finish(end_ns) {
            self.item(item)?;
        }
        let tracks: Vec<Track> = self.timeline.tracks().cloned().collect();
        for track in &tracks {
            let pid = track.index;
            self.emit(&json!({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                "args": {"name": track.sb.describe()}}))?;
            self.emit(&json!({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": pid,
                "args": {"sort_index": pid}}))?;
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

fn async_event(ph: char, name: &str, id: &str, pid: u32, ts_ns: u64, args: &Value) -> Value {
    json!({"name": name, "cat": CAT_FREEZE, "ph": ph.to_string(), "id": id,
        "ts": us(ts_ns), "pid": pid, "tid": pid, "args": args})
}

fn counter(name: &str, pid: u32, ts_ns: u64, series: &str, value: u64) -> Value {
    json!({"name": name, "ph": "C", "ts": us(ts_ns), "pid": pid, "tid": pid, "args": {series: value}})
}

/// Exports a trace's records to `out`. `window_ns` is how far out of time order the events may
/// be (see `walk`). Findings come from the same correlation as `report`.
pub fn write<W: Write>(
    records: impl Iterator<Item = Result<Record, TraceError>>,
    out: W,
    opts: &correlate::Options,
    window_ns: u64,
) -> Result<W, OutputError> {
    let mut writer = ChromeTrace::new(out).map_err(OutputError::Write)?;
    let walked = walk(records, opts, window_ns, |step| match step {
        Step::Event(ev) => writer.event(ev),
        Step::Finding(f) => writer.finding(f),
    })?;
    writer.finish(walked.end_ns, walked.header.as_ref()).map_err(OutputError::Write)
}

#[cfg(test)]
mod tests;
