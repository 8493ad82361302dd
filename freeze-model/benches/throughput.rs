//! Throughput of the model's per-event work on one core, in events a second: decoding ring-buffer
//! records, correlating, writing trace lines, and reading them back (what `check` does).
//!
//! The events are a real recording (`tests/fixtures/cycles-ext4-xfs.ndjson`: 30 freeze cycles of
//! an ext4 and an xfs with slips, blocked writers and exempt transaction starts), repeated later
//! in time to a million, with the cgroup and parent today's recorder attaches to every event. For
//! decoding they are encoded back into the kernel's `RawEvent` records.
//!
//! ```sh
//! cargo bench -p freeze-model --bench throughput                   # prints a table
//! cargo bench -p freeze-model --bench throughput -- --json F --trace T   # also writes figures to
//!                                          # F and the trace (as the recorder writes it) to T
//! ```
//! `cargo xtask bench` runs it with both and puts the figures in target/bench/results.json.
use std::{collections::HashMap, io::Write as _, sync::Arc, time::Instant};

use freeze_common::{RawEvent, holder, kdev, level};
use freeze_model::{
    attribution::{Cgroup, Parent},
    correlate::{Correlator, Options},
    decode::{Decoder, holder_name},
    event::{Event, EventKind, Hook, IoOp, Stack},
    trace::{self, Record, TraceWriter},
};

const EVENTS: usize = 1_000_000;
const ROUNDS: usize = 5;
const FIXTURE: &str = include_str!("../../tests/fixtures/cycles-ext4-xfs.ndjson");

/// The fixture's events, repeated (each copy later than the last) to `EVENTS`, each with the
/// task's cgroup and parent as a current recording carries them.
fn events() -> Vec<Event> {
    let one: Vec<Event> = trace::records(FIXTURE.as_bytes())
        .filter_map(|r| match r.expect("the fixture reads") {
            Record::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    let (first, last) =
        (one.iter().map(|e| e.ts_ns).min().unwrap_or(0), one.iter().map(|e| e.ts_ns).max().unwrap_or(0));
    let span = last - first + 1_000_000;
    let cgroup = Arc::new(Cgroup::at(4242, "/system.slice/backup.service".into()));
    let parent = Arc::new(Parent { pid: 7400, comm: "cycle.sh".into(), reaper: false, exiting: false });
    let mut out = Vec::with_capacity(EVENTS);
    for copy in 0.. {
        for e in &one {
            if out.len() == EVENTS {
                return out;
            }
            let mut e = e.clone();
            e.ts_ns += copy * span;
            e.begin_ts_ns = e.begin_ts_ns.map(|t| t + copy * span);
            e.cgroup = Some(cgroup.clone());
            e.parent = Some(parent.clone());
            out.push(e);
        }
    }
    out
}

fn c_bytes<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn dev(s: &str) -> u32 {
    let (ma, mi) = s.split_once(':').unwrap_or(("0", "0"));
    kdev::make(ma.parse().unwrap_or(0), mi.parse().unwrap_or(0))
}

/// The number `from_raw` maps to `want`.
fn raw_of<T: PartialEq>(want: T, from_raw: impl Fn(u32) -> Option<T>) -> u32 {
    (0..256).find(|&n| from_raw(n).as_ref() == Some(&want)).expect("a raw value")
}

/// The record the kernel sent for `e` (the inverse of decoding, for what decoding reads). Stacks
/// get an id per distinct stack, as the kernel's stack map gives them.
fn encode(e: &Event, stack_ids: &mut HashMap<Stack, u32>) -> RawEvent {
    let mut r = RawEvent::zeroed();
    r.kind = raw_of(e.kind, EventKind::from_raw);
    r.hook = raw_of(e.hook, Hook::from_raw);
    r.ts_ns = e.ts_ns;
    r.begin_ts_ns = e.begin_ts_ns.unwrap_or(0);
    (r.pid, r.tid, r.comm) = (e.pid, e.tid, c_bytes(&e.comm));
    r.level_before = e.level_before.unwrap_or(level::UNKNOWN);
    r.level_after = e.level_after.unwrap_or(level::UNKNOWN);
    r.holder = (0..=holder::EXCL * 2).find(|&b| holder_name(b) == e.holder).unwrap_or(0);
    r.ret = e.ret.unwrap_or(0);
    if let Some(b) = &e.block {
        (r.arg, r.flags, r.bdev) = (b.position(), b.bytes as u32, dev(&b.dev));
        r.io_op = b.op.map_or(0, |op| raw_of(op, IoOp::from_raw));
    }
    if let Some(t) = &e.txn {
        r.flags = t.flags;
    }
    if let Some(g) = e.gate_level {
        r.flags = g;
    }
    if let Some(sb) = &e.sb {
        r.sb.sb = u64::from_str_radix(sb.id.trim_start_matches("0x"), 16).unwrap_or(1);
        r.sb.dev = dev(&sb.dev);
        (r.sb.fstype, r.sb.s_id) = (c_bytes(&sb.fstype), c_bytes(&sb.s_id));
        let hex: String = sb.uuid.chars().filter(char::is_ascii_hexdigit).collect();
        for (i, byte) in r.sb.uuid.iter_mut().enumerate() {
            *byte = hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
        }
    }
    if let Some(stack) = &e.stack {
        let next = stack_ids.len() as u32 + 1;
        r.stack_id = *stack_ids.entry(stack.clone()).or_insert(next);
    }
    r.cgroup_id = e.cgroup.as_ref().map_or(0, |c| c.id);
    if let Some(p) = &e.parent {
        (r.ppid, r.pcomm) = (p.pid, c_bytes(&p.comm));
    }
    r
}

/// Decodes the records as the recorder does: the decoder shares superblocks and parents, and a
/// stack id is looked up in the stacks named so far (the recorder names each once).
fn decode(raws: &[RawEvent], stacks: &HashMap<u32, Stack>) -> Vec<Event> {
    let mut decoder = Decoder::default();
    let mountpoints = ["/tmp/fwrec/a", "/tmp/fwrec/b"];
    raws.iter()
        .map(|r| {
            let mp = mountpoints[(kdev::split(r.sb.dev).1 as usize).min(1)];
            let mut e = decoder.event(r, Some(mp)).expect("decodes");
            e.stack = stacks.get(&r.stack_id).cloned();
            e
        })
        .collect()
}

fn correlate(events: impl Iterator<Item = Event>) -> usize {
    let mut c = Correlator::new(Options::default());
    let mut findings = 0;
    for e in events {
        findings += c.push(e).len();
    }
    findings + c.finish(None).findings.len()
}

/// The trace as the recorder writes it: every event, and each finding once it is certain.
fn write(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 500);
    let mut w = TraceWriter::new(&mut out);
    let mut c = Correlator::new(Options::default());
    for e in events {
        w.write_event(e).expect("writes");
        for f in c.push(e.clone()) {
            w.write(&Record::Finding(f)).expect("writes");
        }
    }
    out
}

/// What the recorder does with each record: decode it, write its line, correlate it, and write
/// the findings that became certain.
fn record(raws: &[RawEvent], stacks: &HashMap<u32, Stack>) -> usize {
    let mut out = Vec::with_capacity(raws.len() * 500);
    let mut w = TraceWriter::new(&mut out);
    let mut c = Correlator::new(Options::default());
    for e in decode(raws, stacks) {
        w.write_event(&e).expect("writes");
        for f in c.push(e) {
            w.write(&Record::Finding(f)).expect("writes");
        }
    }
    drop(w);
    out.len()
}

/// Event lines alone: the recorder's per-event cost of writing.
fn write_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 500);
    let mut w = TraceWriter::new(&mut out);
    for e in events {
        w.write_event(e).expect("writes");
    }
    out
}

fn read(text: &[u8]) -> usize {
    trace::records(text).inspect(|r| assert!(r.is_ok(), "reads")).count()
}

/// The median of `ROUNDS` timings of `f`, in seconds.
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut secs: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    secs[ROUNDS / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let events = events();
    let mut stack_ids = HashMap::new();
    let raws: Vec<RawEvent> = events.iter().map(|e| encode(e, &mut stack_ids)).collect();
    let stacks: HashMap<u32, Stack> = stack_ids.into_iter().map(|(s, id)| (id, s)).collect();
    let decoded = decode(&raws, &stacks);
    assert_eq!(decoded.len(), events.len());
    assert_eq!(
        correlate(decoded.iter().cloned()),
        correlate(events.iter().cloned()),
        "decoding loses nothing"
    );
    let text = write(&events);
    // Finding lines are passed over: every reader recomputes them.
    assert_eq!(read(&text), events.len());

    let n = events.len() as f64;
    let cases: Vec<(&str, f64)> = vec![
        ("decode (records to events)", time(|| decode(&raws, &stacks))),
        ("correlate", time(|| correlate(events.iter().cloned()))),
        ("decode + correlate", time(|| correlate(decode(&raws, &stacks).into_iter()))),
        ("write event lines", time(|| write_events(&events))),
        ("decode + write + correlate (the recorder's work)", time(|| record(&raws, &stacks))),
        ("read trace lines", time(|| read(&text))),
        (
            "read + correlate (check's work)",
            time(|| {
                correlate(trace::records(&text[..]).filter_map(|r| match r.expect("reads") {
                    Record::Event(e) => Some(e),
                    _ => None,
                }))
            }),
        ),
    ];
    println!(
        "{} events, {} MiB of trace; median of {ROUNDS} rounds on one core",
        events.len(),
        text.len() >> 20
    );
    println!("{:<48} {:>9} {:>14}", "case", "s", "events/s");
    for (name, secs) in &cases {
        println!("{name:<48} {secs:>9.3} {:>14.0}", n / secs);
    }
    if let Some(path) = arg("--json") {
        let figures: Vec<serde_json::Value> = cases
            .iter()
            .map(|(name, secs)| serde_json::json!({"case": name, "events": events.len(), "seconds": secs, "events_per_s": n / secs}))
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&figures).expect("serialises"))
            .expect("writes the figures");
    }
    if let Some(path) = arg("--trace") {
        let mut f = std::fs::File::create(&path).expect("creates the trace");
        let header = FIXTURE.lines().next().expect("the fixture's header");
        let started: serde_json::Value = serde_json::from_str(header).expect("the header is JSON");
        let start = started["started_monotonic_ns"].as_u64().unwrap_or(0);
        let end = events.last().map_or(0, |e| e.ts_ns);
        let footer = serde_json::json!({"v": 1, "type": "footer", "events": events.len(), "ended_by": "command",
            "duration_ms": end.saturating_sub(start) / 1_000_000 + 1, "command_exit": 0,
            "counters": {"lost_ringbuf_full": 0, "lost_undecodable": 0, "read_failed": 0, "pending_full": 0,
                "ioctl_seen": 0, "fentry_seen": 0}});
        writeln!(f, "{header}")
            .and_then(|()| f.write_all(&text))
            .and_then(|()| writeln!(f, "{footer}"))
            .expect("writes the trace");
    }
}
