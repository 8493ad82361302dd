//! The correlator as a stream: one event at a time, out of order within the reorder window,
//! with the clock ticking; and its memory, which must not grow with the number of events.
use super::*;
use crate::test_events::{
    block_write, denied, ev, freeze, gated_mounts, kinds, mount_begin, mount_end, sb, thaw, txn,
};
use crate::{
    deny::DenyMode,
    event::{EventKind, Hook},
};

const WINDOW: u64 = 50;

fn opts() -> Options {
    Options { long_freeze_ns: 1_000, reorder_window_ns: WINDOW, ..Options::default() }
}

/// Pushes `events` one at a time in an order that differs from time order within the window
/// (each pair of neighbours closer than the window is swapped), ticks after every push, and
/// finishes: what a live recorder sees of the same events.
fn stream(events: &[Event], end_ns: Option<u64>) -> Analysis {
    let mut order: Vec<Event> = events.to_vec();
    order.sort_by_key(|e| e.ts_ns);
    let mut i = 0;
    while i + 1 < order.len() {
        if order[i + 1].ts_ns - order[i].ts_ns < WINDOW {
            order.swap(i, i + 1);
            i += 1;
        }
        i += 1;
    }
    let mut c = Correlator::new(Options { reorder_window_ns: WINDOW, ..opts() });
    let mut findings = Vec::new();
    for e in order {
        findings.extend(c.push(e));
    }
    assert_eq!(c.late_events(), 0, "swaps stay inside the window");
    let end = c.finish(end_ns);
    findings.extend(end.findings);
    findings.sort_by_key(|f| f.ts_ns);
    Analysis { findings, summaries: end.summaries }
}

/// One scenario per finding kind, each a list of events and the end of recording.
fn scenarios() -> Vec<(FindingKind, Vec<Event>, Option<u64>)> {
    let frozen = |extra: Vec<Event>| -> Vec<Event> {
        let mut v: Vec<Event> = freeze(100).into();
        v.extend(extra);
        v.extend(thaw(900, 0));
        v
    };
    let mut write = ev(EventKind::WriteDone, 500, 4, 4, Some(4096));
    write.hook = Hook::TracepointSysWrite;
    let mut blocked = ev(EventKind::WriterBlocked, 200, 4, 4, None);
    blocked.tid = 55;
    blocked.gate_level = Some(1);
    let mut unblocked = blocked.clone();
    unblocked.kind = EventKind::WriterUnblocked;
    unblocked.ts_ns = 905;
    unblocked.ret = Some(0);
    let failed =
        vec![ev(EventKind::FreezeBegin, 300, 4, 4, None), ev(EventKind::FreezeEnd, 310, 4, 4, Some(-16))];
    let mut landed = vec![mount_begin(400, 7, "mount", "/dev/loop0", "/m", 0)];
    landed.push({
        let mut e = mount_end(420, "mount", "0x0", Some("7:0"), 0);
        e.tid = 7;
        e
    });
    vec![
        (FindingKind::Slip, frozen(vec![block_write(500, 4)]), None),
        (
            FindingKind::Slip,
            frozen(vec![txn(500, 4, Hook::TracepointXfsTransAlloc, 0, "xfs_create+0x1")]),
            None,
        ),
        (FindingKind::Slip, frozen(vec![write]), None),
        (FindingKind::Exempt, frozen(vec![txn(105, 2, Hook::TracepointExt4JournalStart, 1, "x")]), None),
        (FindingKind::FreezeFailed, frozen(failed), None),
        (
            FindingKind::ThawWithoutFreeze,
            vec![ev(EventKind::ThawBegin, 10, 0, 0, None), ev(EventKind::ThawEnd, 20, 0, 0, Some(-22))],
            None,
        ),
        (FindingKind::LeftFrozen, freeze(100).into(), Some(5_000)),
        (FindingKind::LongFreeze, freeze(0).into_iter().chain(thaw(2_000, 0)).collect(), None),
        (FindingKind::BlockedWriter, frozen(vec![blocked, unblocked]), None),
        (FindingKind::MountWhileFrozen, frozen(landed), None),
        (FindingKind::MountDenied, gated_mounts(DenyMode::Enforce), None),
        (FindingKind::MountDenied, gated_mounts(DenyMode::Audit), None),
    ]
}

#[test]
fn every_finding_kind_comes_out_of_the_stream_as_out_of_the_batch() {
    for (kind, events, end) in scenarios() {
        let batch = analyze(&events, &opts(), end);
        assert!(batch.count(kind) >= 1, "{kind}: {:?}", kinds(&batch));
        let streamed = stream(&events, end);
        assert_eq!(streamed, batch, "{kind}");
    }
}

#[test]
fn a_finding_is_returned_once_the_window_has_passed_it() {
    let mut c = Correlator::new(opts());
    for e in freeze(100) {
        assert!(c.push(e).is_empty());
    }
    assert!(c.push(block_write(500, 4)).is_empty(), "held: an older event may still arrive");
    // A late-arriving event from another CPU, older than the write, is applied before it.
    let mut other = block_write(480, 0);
    other.sb = Some(sb("0xb"));
    assert!(c.push(other).is_empty());
    let out = c.push(ev(EventKind::ThawBegin, 600, 4, 4, None));
    assert_eq!(out.iter().map(|f| f.kind).collect::<Vec<_>>(), [FindingKind::Slip]);
    assert_eq!(out[0].ts_ns, 500);
    assert_eq!(c.late_events(), 0);
    // Older than what was already applied: applied at once, and counted.
    let out = c.push(block_write(400, 4));
    assert_eq!(out.len(), 1);
    assert_eq!(c.late_events(), 1);
}

#[test]
fn tick_applies_held_events_when_the_clock_passes_them() {
    let mut c = Correlator::new(opts());
    for e in freeze(100) {
        c.push(e);
    }
    assert!(c.push(block_write(500, 4)).is_empty());
    assert!(c.tick(540).is_empty(), "not yet a window past it");
    assert_eq!(c.tick(551).iter().map(|f| f.kind).collect::<Vec<_>>(), [FindingKind::Slip]);
}

#[test]
fn a_long_freeze_is_raised_by_the_clock_while_still_frozen_and_only_once() {
    let mut c = Correlator::new(opts()); // threshold 1_000 ns
    for e in freeze(100) {
        c.push(e);
    }
    assert!(c.tick(900).is_empty(), "frozen 790 ns: under the threshold");
    let raised = c.tick(1_200);
    assert_eq!(raised.len(), 1);
    let f = &raised[0];
    assert_eq!((f.kind, f.ts_ns, f.duration_ns), (FindingKind::LongFreeze, 110, Some(1_090)));
    assert!(
        f.message.contains("has been frozen for") && f.message.ends_with("and still is"),
        "{}",
        f.message
    );
    assert!(c.tick(5_000).is_empty(), "once per frozen window");
    let mut out = Vec::new();
    for e in thaw(6_000, 0) {
        out.extend(c.push(e));
    }
    let end = c.finish(None);
    out.extend(end.findings);
    assert!(
        out.iter().all(|f| f.kind != FindingKind::LongFreeze),
        "the thaw does not raise it again: {out:?}"
    );
    assert_eq!(end.summaries["0xa"].max_frozen_ns, 6_010 - 110);
    // The next window gets its own.
    let mut c = Correlator::new(opts());
    for e in freeze(100).into_iter().chain(thaw(200, 0)).chain(freeze(300)) {
        c.push(e);
    }
    assert_eq!(c.tick(2_000).len(), 1);
}

#[test]
fn a_live_view_shows_open_waits_and_frozen_filesystems_without_ending_them() {
    let mut c = Correlator::new(Options { reorder_window_ns: 0, ..opts() });
    for e in freeze(100) {
        c.push(e);
    }
    let mut b = ev(EventKind::WriterBlocked, 200, 4, 4, None);
    b.gate_level = Some(1);
    c.push(b);
    let (summaries, open) = c.view_at(1_000);
    assert_eq!(
        open.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FindingKind::BlockedWriter, FindingKind::LeftFrozen]
    );
    let s = &summaries["0xa"];
    assert_eq!((s.state, s.frozen_since_ns, s.total_frozen_ns), (SbState::Frozen, Some(110), 890));
    assert_eq!(c.windows()["0xa"], [(110, None)]);
    for e in thaw(2_000, 0) {
        c.push(e);
    }
    assert_eq!(c.windows()["0xa"], [(110, Some(2_010))]);
}

#[test]
fn memory_stays_flat_over_two_million_events() {
    // One cycle: freeze, a slip, a wait, a mount call, a denial, thaw; 16 events, repeated.
    fn cycle(t: u64, tid: u32) -> Vec<Event> {
        let mut v: Vec<Event> = freeze(t).into();
        v.push(block_write(t + 20, 4));
        let mut b = ev(EventKind::WriterBlocked, t + 30, 4, 4, None);
        b.tid = tid;
        let mut u = b.clone();
        u.kind = EventKind::WriterUnblocked;
        u.ts_ns = t + 95;
        u.ret = Some(0);
        v.push(b);
        v.push(mount_begin(t + 40, tid, "mount", "/dev/loop0", "/m", 0));
        v.push(denied(t + 41, tid, DenyMode::Enforce, "sb_kern_mount"));
        let mut end = mount_end(t + 42, "mount", "0x0", None, -1);
        end.tid = tid;
        v.push(end);
        v.push(mount_begin(t + 50, tid + 1, "fsconfig", "source", "/dev/loop0", 1));
        v.push(txn(t + 60, 4, Hook::TracepointXfsTransAlloc, 0x40, "xfs_log+0x1"));
        v.extend(thaw(t + 80, 0));
        v.push(u);
        v.push(mount_begin(t + 96, tid + 2, "mount", "/a", "/b", 4096));
        let mut end = mount_end(t + 97, "mount", "0x0", None, 0);
        end.tid = tid + 2;
        v.push(end);
        v
    }
    let mut c = Correlator::new(Options { reorder_window_ns: 50, ..opts() });
    let mut at_start = None;
    let mut findings = 0usize;
    let mut n = 0u64;
    let mut cycles = 0u32;
    while n < 2_000_000 {
        // Thread ids keep changing, as pids do on a real host.
        for e in cycle(u64::from(cycles) * 100, cycles.wrapping_mul(3)) {
            findings += c.push(e).len();
            n += 1;
        }
        cycles += 1;
        if cycles == 1_000 {
            at_start = Some(c.retained());
        }
    }
    let at_end = c.retained();
    let at_start = at_start.expect("measured after 1,000 cycles");
    eprintln!("retained after 1,000 cycles: {at_start:?}; after {n} events: {at_end:?}");
    assert_eq!(at_end.superblocks, 1);
    assert!(at_end.waits <= 1, "every wait ended but the one in the reorder window: {at_end:?}");
    assert!(at_end.held_events <= 16, "only the reorder window: {at_end:?}");
    // Calls whose end never comes (fsconfig here) stop at the per-map cap.
    assert!(at_end.mount_calls < 3 * 4096, "{at_start:?} → {at_end:?}");
    assert_eq!(at_end.windows, 1024, "timelines keep the newest windows only");
    assert!(findings as u64 > n / 16 * 3, "the stream was really correlated: {findings} findings");
}
