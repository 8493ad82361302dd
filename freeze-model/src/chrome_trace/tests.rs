//! The export's structure, on made-up events (nested and overlapping freezes, waits, what is
//! left open) and on a real recording, small and repeated into a large trace.
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::*;
use crate::correlate::FindingKind;
use crate::{
    event::{Event, EventKind},
    test_events::{block_write, ev, freeze, thaw},
    trace,
};

/// Every property a viewer relies on; returns what is wrong.
fn check_structure(doc: &Value) -> Result<(), String> {
    let events = doc["traceEvents"].as_array().ok_or("no traceEvents array")?;
    let mut open: HashMap<(String, String), (f64, Value)> = HashMap::new();
    let mut closed: HashMap<(String, String), usize> = HashMap::new();
    let mut last_ts: HashMap<String, f64> = HashMap::new();
    let mut slices: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in events {
        let ph = e["ph"].as_str().ok_or(format!("no ph: {e}"))?;
        if ph == "M" {
            continue;
        }
        let ts = e["ts"].as_f64().ok_or(format!("no ts: {e}"))?;
        let (pid, tid) = (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        let track = match ph {
            "b" | "e" => format!("async {} {}", e["cat"], e["id"]),
            "X" => format!("thread {pid} {tid}"),
            "C" => format!("counter {pid} {}", e["name"]),
            "i" => format!("instant {pid}"),
            other => return Err(format!("unexpected phase {other} (no B/E pairs: they cannot overlap)")),
        };
        if let Some(prev) = last_ts.insert(track.clone(), ts)
            && ts < prev
        {
            return Err(format!("{track}: ts {ts} after {prev}"));
        }
        let key = (e["cat"].to_string(), e["id"].to_string());
        match ph {
            "b" => {
                if open.contains_key(&key) || closed.contains_key(&key) {
                    return Err(format!("async id reused: {e}"));
                }
                open.insert(key, (ts, e["name"].clone()));
            }
            "e" => {
                let (begin, name) = open.remove(&key).ok_or(format!("end without begin: {e}"))?;
                if e["name"] != name || ts < begin {
                    return Err(format!("end does not match its begin ({name} at {begin}): {e}"));
                }
                *closed.entry(key).or_default() += 1;
            }
            "X" => slices.entry((pid, tid)).or_default().push((ts, ts + e["dur"].as_f64().unwrap_or(-1.0))),
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(format!("async slices never ended: {open:?}"));
    }
    for (thread, list) in slices {
        for pair in list.windows(2) {
            let ((b0, e0), (b1, e1)) = (pair[0], pair[1]);
            if b1 < e0 && e1 > e0 {
                return Err(format!("slices of thread {thread:?} overlap without nesting: {pair:?}"));
            }
            if e0 < b0 {
                return Err(format!("negative duration on {thread:?}"));
            }
        }
    }
    Ok(())
}

fn export(events: &[Event]) -> Value {
    let records = events.iter().cloned().map(|e| Ok(Record::Event(e)));
    let out = write(records, Vec::new(), &correlate::Options::default(), 0).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn of_phase<'a>(doc: &'a Value, ph: &str) -> Vec<&'a Value> {
    doc["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == ph).collect()
}

fn held(mut e: Event, holder: &str) -> Event {
    e.holder = Some(holder.into());
    e
}

fn wait(kind: EventKind, ts: u64, tid: u32) -> Event {
    let mut e = ev(kind, ts, 4, 4, if kind == EventKind::WriterUnblocked { Some(0) } else { None });
    e.hook = crate::event::Hook::TracepointLockContention;
    e.tid = tid;
    e.pid = tid;
    e.comm = format!("writer{tid}");
    e.gate_level = Some(1);
    e
}

#[test]
fn overlapping_holders_get_slices_of_their_own_and_each_thaw_ends_its_holders() {
    // A user-space freeze, then a kernel freeze on top; user space thaws first (the level stays
    // 4: the kernel still holds it), then the kernel.
    let [ub, ue] = freeze(100);
    let [mut kb, mut ke] = freeze(200).map(|e| held(e, "kernel"));
    (kb.level_before, kb.level_after, ke.level_before) = (Some(4), Some(4), Some(4));
    let [utb, mut ute] = thaw(300, 4);
    ute.level_after = Some(4);
    let [ktb, kte] = thaw(400, 0).map(|e| held(e, "kernel"));
    let doc = export(&[ub, ue, kb, ke, utb, ute, ktb, kte]);
    check_structure(&doc).unwrap();

    let frozen: Vec<&Value> = of_phase(&doc, "b")
        .into_iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("frozen"))
        .collect();
    assert_eq!(frozen.len(), 2, "{frozen:?}");
    assert_eq!(
        (frozen[0]["args"]["holder"].as_str(), frozen[0]["ts"].as_f64()),
        (Some("userspace"), Some(0.11))
    );
    assert_eq!(
        (frozen[1]["args"]["holder"].as_str(), frozen[1]["name"].as_str()),
        (Some("kernel"), Some("frozen (nested)"))
    );
    assert_ne!(frozen[0]["id"], frozen[1]["id"]);
    let end_of = |id: &Value| {
        of_phase(&doc, "e").into_iter().find(|e| e["id"] == *id).and_then(|e| e["ts"].as_f64()).unwrap()
    };
    assert_eq!(end_of(&frozen[0]["id"]), 0.31, "user space's thaw ends user space's freeze");
    assert_eq!(end_of(&frozen[1]["id"]), 0.41, "the kernel's thaw ends the kernel's");

    let levels: Vec<(f64, u64)> = of_phase(&doc, "C")
        .into_iter()
        .filter(|c| c["name"] == "freeze level")
        .map(|c| (c["ts"].as_f64().unwrap(), c["args"]["level"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        levels,
        [(0.1, 0), (0.11, 4), (0.41, 0)],
        "the level counter changes only when the level does"
    );
}

#[test]
fn waits_are_slices_on_their_threads_and_the_counter_follows_them() {
    let [fb, fe] = freeze(100);
    let [tb, te] = thaw(1_000, 0);
    let events = [
        fb,
        fe,
        wait(EventKind::WriterBlocked, 200, 21),
        wait(EventKind::WriterBlocked, 300, 22),
        tb,
        te,
        wait(EventKind::WriterUnblocked, 1_020, 21),
        wait(EventKind::WriterUnblocked, 1_030, 22),
    ];
    let doc = export(&events);
    check_structure(&doc).unwrap();
    let slices: Vec<(u64, f64, f64)> = of_phase(&doc, "X")
        .into_iter()
        .map(|x| (x["tid"].as_u64().unwrap(), x["ts"].as_f64().unwrap(), x["dur"].as_f64().unwrap()))
        .collect();
    assert_eq!(slices, [(21, 0.2, 0.82), (22, 0.3, 0.73)]);
    let blocked: Vec<u64> = of_phase(&doc, "C")
        .into_iter()
        .filter(|c| c["name"] == "blocked writers")
        .map(|c| c["args"]["blocked"].as_u64().unwrap())
        .collect();
    assert_eq!(blocked, [1, 2, 1, 0]);
    let names: Vec<&str> =
        of_phase(&doc, "M").into_iter().filter_map(|m| m["args"]["name"].as_str()).collect();
    assert!(names.contains(&"writer21[21]") && names.contains(&"ext4 7:0 (/mnt)"), "{names:?}");
}

#[test]
fn what_is_open_at_the_end_is_closed_there_and_says_so() {
    let [fb, fe] = freeze(100);
    let events = [fb, fe, wait(EventKind::WriterBlocked, 200, 21)];
    let records = events.iter().cloned().map(|e| Ok(Record::Event(e)));
    let footer = crate::trace::Footer {
        events: 3,
        ended_by: crate::trace::EndReason::Command,
        duration_ms: 1,
        command_exit: Some(0),
        counters: Default::default(),
        output_dropped: 0,
    };
    let header = Header {
        tool: "freezewatch".into(),
        tool_version: "0".into(),
        kernel: "6.18".into(),
        started_unix_ms: 0,
        started_monotonic_ns: 0,
        hooks: Vec::new(),
        command: None,
        deny_mounts: None,
        cgroup2_root: None,
        storage: None,
    };
    let records =
        std::iter::once(Ok(Record::Header(header))).chain(records).chain([Ok(Record::Footer(footer))]);
    let out = write(records, Vec::new(), &correlate::Options::default(), 0).unwrap();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    check_structure(&doc).unwrap();
    let end = of_phase(&doc, "e").into_iter().find(|e| e["name"] == "frozen").unwrap().clone();
    assert_eq!(
        (end["ts"].as_f64(), &end["args"]["left_frozen"]),
        (Some(1000.0), &Value::Bool(true)),
        "{end}"
    );
    let x = of_phase(&doc, "X")[0].clone();
    assert_eq!((x["ts"].as_f64(), x["dur"].as_f64()), (Some(0.2), Some(999.8)));
    assert_eq!(x["args"]["still_blocked_at_end"], true);
    assert_eq!(doc["otherData"]["kernel"], "6.18");
}

#[test]
fn slips_are_instants_with_their_sentence_and_stack() {
    let [fb, fe] = freeze(100);
    let mut slip = block_write(200, 4);
    slip.stack = Some(["submit_bio+0x1".into()].into());
    let [tb, te] = thaw(300, 0);
    let doc = export(&[fb, fe, slip, tb, te]);
    check_structure(&doc).unwrap();
    let instants = of_phase(&doc, "i");
    assert_eq!(instants.len(), 1, "{instants:?}");
    let i = instants[0];
    assert_eq!((i["name"].as_str(), i["ts"].as_f64(), i["s"].as_str()), (Some("slip"), Some(0.2), Some("p")));
    assert!(i["args"]["message"].as_str().unwrap().contains("dd[77] wrote 4096 bytes"), "{i}");
    assert_eq!(i["args"]["stack"][0], "submit_bio+0x1");
}

fn fixture() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/cycles-ext4-xfs.ndjson");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_real_recording_exports_every_freeze_wait_and_slip() {
    let text = fixture();
    let out = write(trace::records(text.as_bytes()), Vec::new(), &correlate::Options::default(), 0).unwrap();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    check_structure(&doc).unwrap();
    let contents = trace::Contents::from_records(trace::read_trace(text.as_bytes()).unwrap());
    let report = crate::report::build(&contents, &correlate::Options::default());
    let freezes: u64 = report.analysis.summaries.values().map(|s| s.freezes).sum();
    let frozen = of_phase(&doc, "b").into_iter().filter(|b| b["name"] == "frozen").count();
    assert_eq!(frozen as u64, freezes, "one slice per freeze");
    assert_eq!(of_phase(&doc, "X").len(), report.analysis.count(FindingKind::BlockedWriter), "one per wait");
    let slips = of_phase(&doc, "i").into_iter().filter(|i| i["name"] == "slip").count();
    assert_eq!(slips, report.analysis.count(FindingKind::Slip));
    assert!(slips > 0 && frozen > 0);
    // Timestamps are the trace's, in microseconds.
    let first_ns = contents.events.iter().map(|e| e.ts_ns).min().unwrap();
    let first_us = of_phase(&doc, "C").iter().filter_map(|c| c["ts"].as_f64()).fold(f64::MAX, f64::min);
    assert!((first_us * 1000.0 - first_ns as f64).abs() < 1.0, "{first_us} µs vs {first_ns} ns");
}

#[test]
fn a_large_trace_out_of_order_exports_as_its_sorted_copy_does() {
    // 60 copies of the recording one after another, each line swapped with its neighbour so that
    // events come out of order by up to the gap between them.
    let text = fixture();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    let span = events.iter().filter_map(|e| e["ts_ns"].as_u64()).max().unwrap() + 1_000_000_000;
    let mut shuffled = vec![lines.iter().find(|l| l["type"] == "header").unwrap().to_string()];
    for copy in 0..60u64 {
        let mut batch: Vec<String> = events
            .iter()
            .map(|e| {
                let mut e = (*e).clone();
                for key in ["ts_ns", "begin_ts_ns"] {
                    if let Some(t) = e[key].as_u64() {
                        e[key] = (t + copy * span).into();
                    }
                }
                e.to_string()
            })
            .collect();
        for pair in batch.chunks_mut(2) {
            pair.reverse();
        }
        shuffled.extend(batch);
    }
    let input = shuffled.join("\n");
    let window = trace::disorder_ns(input.as_bytes()).unwrap();
    assert!(window > 0, "the shuffle put events out of order");
    let opts = correlate::Options::default();
    let streamed = write(trace::records(input.as_bytes()), Vec::new(), &opts, window).unwrap();
    let sorted_records = crate::walk::sorted_records(input.as_bytes()).unwrap();
    let sorted = write(sorted_records.into_iter().map(Ok), Vec::new(), &opts, 0).unwrap();
    assert!(streamed == sorted, "the streamed export equals the sorted one");
    let doc: Value = serde_json::from_slice(&streamed).unwrap();
    check_structure(&doc).unwrap();
    assert!(doc["traceEvents"].as_array().unwrap().len() > 60 * 400);
}

#[test]
fn the_checker_catches_what_viewers_reject() {
    let doc = |events: Value| serde_json::json!({ "traceEvents": events });
    let b = |id: &str, ts: f64| serde_json::json!({"ph":"b","cat":"c","id":id,"name":"n","ts":ts,"pid":1,"tid":1});
    let e = |id: &str, ts: f64| serde_json::json!({"ph":"e","cat":"c","id":id,"name":"n","ts":ts,"pid":1,"tid":1});
    assert!(check_structure(&doc(serde_json::json!([b("1", 1.0), e("1", 2.0)]))).is_ok());
    assert!(check_structure(&doc(serde_json::json!([b("1", 1.0)]))).is_err(), "unended");
    assert!(check_structure(&doc(serde_json::json!([b("1", 2.0), e("1", 1.0)]))).is_err(), "backwards");
    assert!(
        check_structure(&doc(serde_json::json!([b("1", 1.0), e("1", 2.0), b("1", 3.0), e("1", 4.0)])))
            .is_err(),
        "reused id"
    );
    let x = |ts: f64, dur: f64| serde_json::json!({"ph":"X","name":"w","ts":ts,"dur":dur,"pid":1,"tid":2});
    assert!(check_structure(&doc(serde_json::json!([x(1.0, 5.0), x(3.0, 5.0)]))).is_err(), "overlap");
    assert!(check_structure(&doc(serde_json::json!([{"ph":"B","ts":1.0,"pid":1,"tid":1}]))).is_err());
}
