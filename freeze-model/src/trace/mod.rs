//! Trace files: NDJSON, one record per line, each with `"v"` (the schema version) and `"type"`.
//! The schema is documented in docs/trace-format.md; keep the two in step.
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{
    correlate::{Finding, Summary},
    event::Event,
};

mod fast;
#[cfg(test)]
mod fast_tests;
mod intern;
mod scan;

use intern::Interner;

/// Schema version written on every line. Bump only for incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The read buffer for a trace file: large reads, a few thousand lines each.
pub const READ_BUFFER: usize = 256 << 10;

/// Which program each feature is using, as recorded in the header and shown by `doctor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveHook {
    /// The feature ("freeze").
    pub feature: String,
    /// The hook in use (e.g. "tracepoint:syscalls:ioctl"), or null when none could attach.
    pub hook: Option<String>,
    /// Why better hooks of the chain were not used (one entry per hook tried and refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// What this hook cannot see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub tool: String,
    pub tool_version: String,
    pub kernel: String,
    /// Wall clock at start, Unix milliseconds.
    pub started_unix_ms: u64,
    /// CLOCK_MONOTONIC at the same instant, ns: `unix_ms = started_unix_ms + (ts_ns - this) / 1e6`.
    pub started_monotonic_ns: u64,
    pub hooks: Vec<ActiveHook>,
    /// The traced command, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `--deny-mounts`, when asked for: the mode, and whether the LSM programs are attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_mounts: Option<DenyStatus>,
    /// Where the cgroup2 hierarchy the tasks' cgroup paths are relative to is mounted; absent when
    /// none is (then events carry cgroup ids without paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup2_root: Option<String>,
    /// Which storage layers under a filesystem this kernel can map, and the maps at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::storage::StorageCoverage>,
}

/// Mount denial as a recording ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyStatus {
    pub mode: crate::deny::DenyMode,
    /// False when the BPF LSM was unavailable (audit mode records on without it).
    pub active: bool,
}

/// Counters read from the kernel side: losses are counted, never silent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events dropped because the ring buffer was full.
    pub lost_ringbuf_full: u64,
    /// Records user space could not decode (unknown kind, short record).
    pub lost_undecodable: u64,
    /// Kernel reads that failed while building an event (fields left blank).
    pub read_failed: u64,
    /// Begins that could not be remembered (their end lacks `begin_ts_ns`).
    pub pending_full: u64,
    /// FIFREEZE/FITHAW ioctls seen by the tracepoint hook.
    pub ioctl_seen: u64,
    /// freeze_super/thaw_super calls seen by the fentry hook.
    pub fentry_seen: u64,
    /// Block writes and lock contentions on objects nobody watched (cost: one map lookup).
    #[serde(default)]
    pub filtered: u64,
    /// Superblocks that could not be added to the kernel's watch maps (their writes go unseen).
    #[serde(default)]
    pub watch_full: u64,
    /// How often each hook's programs ran, by hook name (tracepoints that fire on every
    /// superblock count every call, including the filtered ones).
    #[serde(default)]
    pub hook_hits: std::collections::BTreeMap<String, u64>,
}

impl Counters {
    /// Events that never reached the trace.
    pub fn lost(&self) -> u64 {
        self.lost_ringbuf_full + self.lost_undecodable
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The traced command exited.
    Command,
    /// `--duration` passed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    pub events: u64,
    pub ended_by: EndReason,
    pub duration_ms: u64,
    /// Exit code of the traced command (null if it was killed by a signal or there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_exit: Option<i32>,
    pub counters: Counters,
    /// Trace lines dropped before this footer because the output was blocked (a trace file on a
    /// frozen filesystem) and the queue was full: the trace lacks them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-superblock totals, written after the events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryLine {
    pub sb_id: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Records are built and written one at a time; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Header(Header),
    Event(Event),
    Finding(Finding),
    Summary(SummaryLine),
    Footer(Footer),
}

/// The events, the recording's end (monotonic ns) and the loss counters of a read trace.
pub struct Contents {
    pub header: Option<Header>,
    pub events: Vec<Event>,
    pub footer: Option<Footer>,
}

impl Contents {
    pub fn from_records(records: Vec<Record>) -> Self {
        let mut c = Contents { header: None, events: Vec::new(), footer: None };
        for r in records {
            match r {
                Record::Header(h) => c.header = Some(h),
                Record::Event(e) => c.events.push(e),
                Record::Footer(f) => c.footer = Some(f),
                // Findings and summaries are recomputed from the events.
                Record::Finding(_) | Record::Summary(_) => {}
            }
        }
        c
    }

    /// When recording ended, in the events' clock (from the header and footer).
    pub fn end_ns(&self) -> Option<u64> {
        end_ns(self.header.as_ref(), self.footer.as_ref())
    }
}

/// When recording ended, in the events' clock: the header's start plus the footer's duration.
pub fn end_ns(header: Option<&Header>, footer: Option<&Footer>) -> Option<u64> {
    Some(header?.started_monotonic_ns + footer?.duration_ms * 1_000_000)
}

#[derive(Serialize, Deserialize)]
struct Line<R> {
    v: u32,
    #[serde(flatten)]
    record: R,
}

/// Writes records as NDJSON. Lines are buffered until `flush`: a recorder flushes after each
/// batch it takes from the kernel, so a reader (or a crash) loses at most that batch, and a burst
/// costs one write(2) a batch, not one a line.
pub struct TraceWriter<W: Write> {
    out: W,
    /// One record's JSON, before it is written out after its line's prefix.
    body: Vec<u8>,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out, body: Vec::new() }
    }

    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        match record {
            Record::Event(e) => self.write_event(e),
            Record::Finding(f) => self.write_tagged("finding", f),
            // Once a trace: serde's flattening is quick enough.
            Record::Header(_) | Record::Summary(_) | Record::Footer(_) => {
                serde_json::to_writer(&mut self.out, &Line { v: SCHEMA_VERSION, record })?;
                self.out.write_all(b"\n")
            }
        }
    }

    /// Writes an event line from a borrowed event: the recorder's hot path copies nothing.
    pub fn write_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.write_tagged("event", event)
    }

    /// `{"v":1,"type":"TAG",` then the record's own fields: the line `Line` writes for a record of
    /// that variant, without serde's flattening (which goes through a map, key by key, and took
    /// half the time of writing an event).
    fn write_tagged(&mut self, tag: &str, body: &impl Serialize) -> std::io::Result<()> {
        self.body.clear();
        serde_json::to_writer(&mut self.body, body)?;
        let fields = self.body.strip_prefix(b"{").unwrap_or(&self.body);
        write!(self.out, r#"{{"v":{SCHEMA_VERSION},"type":"{tag}""#)?;
        if fields != b"}" {
            self.out.write_all(b",")?;
        }
        self.out.write_all(fields)?;
        self.out.write_all(b"\n")
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

/// What the fast path makes of a line: most lines are events or findings as our writer writes
/// them (`{"v":1,"type":"event",...}`).
// Made and matched at once, never stored: boxing the record would cost an allocation a line.
#[allow(clippy::large_enum_variant)]
enum Fast {
    Record(Record),
    /// A finding or summary line, whole and in UTF-8: derived from the events, which every reader
    /// recomputes, so it is not read.
    Derived,
}

/// Events are read by the fast path (`fast`), straight into their struct; finding and summary
/// lines are checked for shape and passed over. Anything else, or a line the fast path does not
/// take, goes to the general path, which reads any JSON and names what is wrong.
fn fast_record(line: &[u8], interner: &mut Interner) -> Option<Fast> {
    let rest = line.strip_prefix(br#"{"v":1,"type":""#)?;
    if rest.starts_with(br#"event""#) {
        fast::event(line, interner).map(|e| Fast::Record(Record::Event(e)))
    } else if rest.starts_with(br#"finding""#) || rest.starts_with(br#"summary""#) {
        (scan::is_one_object(line) && std::str::from_utf8(line).is_ok()).then_some(Fast::Derived)
    } else {
        None
    }
}

fn parse_line(n: usize, line: &str) -> Result<Record, TraceError> {
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| TraceError::Line { line: n, message: format!("not JSON: {e}") })?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(TraceError::Line {
                line: n,
                message: format!("schema version {v}, this freezewatch reads version {SCHEMA_VERSION}"),
            });
        }
        None => return Err(TraceError::Line { line: n, message: "no \"v\" (schema version) field".into() }),
    }
    let parsed: Line<Record> =
        serde_json::from_value(value).map_err(|e| TraceError::Line { line: n, message: e.to_string() })?;
    Ok(parsed.record)
}

/// The records of a trace, one at a time (see `records`).
pub struct Records<R> {
    input: R,
    /// A line that spans the end of the input's buffer, gathered (most lines are read where they
    /// lie in the buffer, without a copy).
    line: Vec<u8>,
    /// The number of the last line read, from 1.
    number: usize,
    interner: Interner,
}

/// What line `n` holds: a record, an error, or nothing (a blank or derived line).
fn read_line(n: usize, line: &[u8], interner: &mut Interner) -> Option<Result<Record, TraceError>> {
    match fast_record(line, interner) {
        Some(Fast::Record(record)) => return Some(Ok(record)),
        Some(Fast::Derived) => return None,
        None => {}
    }
    let text = match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(e) => return Some(Err(TraceError::Line { line: n, message: format!("not UTF-8 ({e})") })),
    };
    (!text.trim().is_empty()).then(|| parse_line(n, text))
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(TraceError::Io(e))),
            };
            let (read, used) = if buf.is_empty() {
                // The end: a last line without its newline, if any.
                if self.line.is_empty() {
                    return None;
                }
                self.number += 1;
                let read = read_line(self.number, &self.line, &mut self.interner);
                self.line.clear();
                (read, 0)
            } else if let Some(end) = memchr::memchr(b'\n', buf) {
                self.number += 1;
                let read = if self.line.is_empty() {
                    read_line(self.number, &buf[..end], &mut self.interner)
                } else {
                    self.line.extend_from_slice(&buf[..end]);
                    let read = read_line(self.number, &self.line, &mut self.interner);
                    self.line.clear();
                    read
                };
                (read, end + 1)
            } else {
                self.line.extend_from_slice(buf);
                (None, buf.len())
            };
            self.input.consume(used);
            if read.is_some() {
                return read;
            }
        }
    }
}

/// The records of a trace, one at a time; a malformed line is an error that names it. Events of
/// the same filesystem share one `Superblock`, and events with the same kernel stack (or cgroup,
/// or parent) one copy of it. Finding and summary lines are derived from the events and every
/// reader recomputes them: they are checked (a whole JSON object in UTF-8) and passed over, not
/// read; a finding or summary line that is not one is an error like any other.
pub fn records<R: BufRead>(input: R) -> Records<R> {
    Records { input, line: Vec::new(), number: 0, interner: Interner::new() }
}

/// How far out of time order a trace's events are: the most an event's timestamp precedes the
/// newest before it (0: sorted). Reads only the type and timestamp of each line; lines that do not
/// parse are left to the reader that follows, which names them.
pub fn disorder_ns(input: impl BufRead) -> Result<u64, TraceError> {
    #[derive(Deserialize)]
    struct Stamp<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        ts_ns: Option<u64>,
    }
    let (mut newest, mut worst) = (0u64, 0u64);
    for line in input.lines() {
        let line = line?;
        let Ok(stamp) = serde_json::from_str::<Stamp>(&line) else { continue };
        if let (Some("event"), Some(ts)) = (stamp.kind.as_deref(), stamp.ts_ns) {
            worst = worst.max(newest.saturating_sub(ts));
            newest = newest.max(ts);
        }
    }
    Ok(worst)
}

/// Reads every record; the first malformed line is an error that names it.
pub fn read_trace(input: impl BufRead) -> Result<Vec<Record>, TraceError> {
    records(input).collect()
}

#[cfg(test)]
mod tests;
