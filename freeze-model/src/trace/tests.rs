//! Writing and reading traces: round trips, the fast path against the general one, bad lines.
use super::*;
use crate::event::{EventKind, Hook, Superblock};

fn event() -> Event {
    Event {
        begin_ts_ns: Some(4),
        sb: Some(
            Superblock {
                id: "0x1".into(),
                dev: "7:0".into(),
                fstype: "xfs".into(),
                s_id: "loop0".into(),
                uuid: "u".into(),
                mountpoint: None,
            }
            .into(),
        ),
        level_before: Some(4),
        level_after: Some(0),
        holder: Some("userspace".into()),
        ret: Some(0),
        ..Event::new(EventKind::ThawEnd, Hook::TracepointIoctl, 5, 1, 1, "fsfreeze".into())
    }
}

#[test]
fn written_traces_read_back_identically() {
    let records = vec![
        Record::Header(Header {
            tool: "freezewatch".into(),
            tool_version: "0.1.0".into(),
            kernel: "6.18".into(),
            started_unix_ms: 1,
            started_monotonic_ns: 2,
            hooks: vec![ActiveHook {
                feature: "freeze".into(),
                hook: Some("tracepoint:syscalls:ioctl".into()),
                fallbacks: vec!["fentry: EPERM".into()],
                limits: None,
            }],
            command: Some(vec!["true".into()]),
            deny_mounts: Some(DenyStatus { mode: crate::deny::DenyMode::Enforce, active: true }),
            cgroup2_root: Some("/sys/fs/cgroup".into()),
            storage: None,
        }),
        Record::Event(event()),
        Record::Footer(Footer {
            events: 1,
            ended_by: EndReason::Command,
            duration_ms: 3,
            command_exit: Some(0),
            counters: Counters { lost_ringbuf_full: 2, ..Default::default() },
            output_dropped: 5,
        }),
    ];
    let mut buf = Vec::new();
    let mut w = TraceWriter::new(&mut buf);
    for r in &records {
        w.write(r).expect("writes");
    }
    let text = String::from_utf8(buf).expect("utf8");
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().all(|l| l.starts_with(r#"{"v":1,"type":"#)), "{text}");
    assert_eq!(read_trace(text.as_bytes()).expect("reads"), records);
}

#[test]
fn bad_lines_are_named() {
    let good = {
        let mut b = Vec::new();
        TraceWriter::new(&mut b).write(&Record::Event(event())).expect("writes");
        String::from_utf8(b).expect("utf8")
    };
    let cases = [
        (format!("{good}\n{{oops"), "line 3: not JSON"),
        (format!("{good}{{\"type\":\"event\"}}"), "line 2: no \"v\""),
        (format!("{{\"v\":9,\"type\":\"event\"}}\n{good}"), "line 1: schema version 9"),
        (format!("{good}{{\"v\":1,\"type\":\"bogus\"}}"), "line 2: unknown variant `bogus`"),
        (r#"{"v":1,"type":"event","kind":"freeze_end"}"#.to_owned(), "line 1: missing field"),
    ];
    for (text, want) in cases {
        let err = read_trace(text.as_bytes()).expect_err("must fail").to_string();
        assert!(err.starts_with(want), "{err:?} should start with {want:?}");
    }
}

#[test]
fn an_event_without_a_superblock_leaves_it_out_and_old_traces_zero_superblock_reads_as_none() {
    let mut e = event();
    e.sb = None;
    let mut buf = Vec::new();
    TraceWriter::new(&mut buf).write(&Record::Event(e.clone())).expect("writes");
    let text = String::from_utf8(buf).expect("utf8");
    assert!(!text.contains("\"sb\""), "{text}");
    assert_eq!(read_trace(text.as_bytes()).expect("reads"), [Record::Event(e)]);
    // Before: mount(2) events carried a zeroed superblock.
    let old = r#"{"v":1,"type":"event","kind":"mount_begin","hook":"tracepoint:syscalls:mount","ts_ns":1,"pid":1,"tid":1,"comm":"mount","sb":{"id":"0x0","dev":"0:0","fstype":"","s_id":"","uuid":"00000000-0000-0000-0000-000000000000"},"level_before":null,"level_after":null}"#;
    let Record::Event(e) = &read_trace(old.as_bytes()).expect("reads")[0] else { panic!("an event") };
    assert_eq!(e.sb, None);
}

/// Lines are read where they lie in the input's buffer, or gathered when they span its end:
/// the same records either way, the last line with or without its newline, numbered alike.
#[test]
fn any_buffer_size_reads_the_same_records() {
    let trace = include_str!("../../../tests/fixtures/cycles-ext4-xfs.ndjson");
    let whole = read_trace(trace.as_bytes()).expect("reads");
    for capacity in [1, 7, 64, 4096] {
        let small = std::io::BufReader::with_capacity(capacity, trace.as_bytes());
        assert_eq!(read_trace(small).expect("reads"), whole, "buffer of {capacity}");
        let unended = trace.trim_end();
        let small = std::io::BufReader::with_capacity(capacity, unended.as_bytes());
        assert_eq!(read_trace(small).expect("reads"), whole, "no newline at the end, buffer of {capacity}");
        let broken = format!("{trace}\n{{oops");
        let small = std::io::BufReader::with_capacity(capacity, broken.as_bytes());
        let err = read_trace(small).expect_err("a broken last line").to_string();
        let n = trace.lines().count() + 2;
        assert!(err.starts_with(&format!("line {n}: not JSON")), "{err}");
    }
}

#[test]
fn finding_and_summary_lines_are_checked_and_passed_over() {
    let trace = include_str!("../../../tests/fixtures/cycles-ext4-xfs.ndjson");
    assert!(trace.contains(r#"{"v":1,"type":"finding""#) && trace.contains(r#"{"v":1,"type":"summary""#));
    let records = read_trace(trace.as_bytes()).expect("reads");
    assert!(records.iter().all(|r| !matches!(r, Record::Finding(_) | Record::Summary(_))));
    let events = trace.lines().filter(|l| l.starts_with(r#"{"v":1,"type":"event""#)).count();
    assert_eq!(records.iter().filter(|r| matches!(r, Record::Event(_))).count(), events);
    // Cut short, or not UTF-8: an error that names the line, as for any other record.
    let cut = r#"{"v":1,"type":"finding","kind":"slip","message":"a"#;
    let err = read_trace(cut.as_bytes()).expect_err("a cut line").to_string();
    assert!(err.starts_with("line 1: not JSON"), "{err}");
    let bad = b"{\"v\":1,\"type\":\"summary\",\"x\":\"\xff\"}";
    let err = read_trace(&bad[..]).expect_err("not UTF-8").to_string();
    assert!(err.starts_with("line 1: not UTF-8"), "{err}");
}

#[test]
fn an_event_written_by_reference_is_the_same_line() {
    let (mut owned, mut borrowed) = (Vec::new(), Vec::new());
    TraceWriter::new(&mut owned).write(&Record::Event(event())).expect("writes");
    TraceWriter::new(&mut borrowed).write_event(&event()).expect("writes");
    assert_eq!(String::from_utf8(borrowed).expect("utf8"), String::from_utf8(owned).expect("utf8"));
}

/// The writer's lines are the ones serde writes for `Line` (a record flattened after `v`).
#[test]
fn lines_are_what_serde_writes_for_a_tagged_record() {
    let mut unfrozen = event();
    (unfrozen.level_before, unfrozen.ret, unfrozen.error) = (Some(0), Some(-22), Some("EINVAL".into()));
    let finding = crate::correlate::analyze(&[unfrozen], &Default::default(), None).findings;
    assert!(!finding.is_empty(), "a thaw without a freeze is a finding");
    let mut records = vec![Record::Event(event())];
    records.extend(finding.into_iter().map(Record::Finding));
    for record in records {
        let mut written = Vec::new();
        TraceWriter::new(&mut written).write(&record).expect("writes");
        let serde = serde_json::to_string(&Line { v: SCHEMA_VERSION, record: &record }).expect("serialises");
        assert_eq!(String::from_utf8(written).expect("UTF-8"), format!("{serde}\n"));
    }
}
