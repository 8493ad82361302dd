//! `record` holds no events in memory: a stream of real events (direct writes to a frozen
//! filesystem's device, each one a slip with a kernel stack) leaves its resident memory flat.
use std::{path::Path, process::Command, time::Duration};

use freezewatch_tests::{Frozen, FsType, LoopFs, Recorder, kernel_available};

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the recorder runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// `count` 512-byte O_DIRECT writes to the tail of the device, each its own bio.
fn write_device(dev: &str, first_sector: u64, count: u64) {
    let status = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={dev}"), "bs=512", &format!("count={count}")])
        .args([&format!("seek={first_sector}"), "oflag=direct", "conv=notrunc", "status=none"])
        .status()
        .expect("runs dd");
    assert!(status.success(), "dd failed: {status}");
}

/// Waits until the recorder has written everything it was sent: the trace stops growing.
fn wait_drained(trace: &Path) {
    let size = || std::fs::metadata(trace).map(|m| m.len()).unwrap_or(0);
    let (mut last, mut still) = (size(), 0);
    let start = std::time::Instant::now();
    while still < 5 && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
        let now = size();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
}

/// The footer and our filesystem's summary, read line by line (the trace is large).
fn footer_and_summary(trace: &Path, mnt: &str) -> (serde_json::Value, serde_json::Value) {
    let text = std::fs::read_to_string(trace).expect("the trace");
    let mut footer = None;
    let mut summary = None;
    for line in text.lines().filter(|l| l.contains(r#""type":"footer""#) || l.contains(r#""type":"summary""#))
    {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        if v["type"] == "footer" {
            footer = Some(v);
        } else if v["sb"]["mountpoint"] == mnt {
            summary = Some(v);
        }
    }
    (footer.expect("a footer"), summary.expect("our filesystem's summary"))
}

#[test]
fn record_holds_memory_flat_on_a_long_stream() {
    if !kernel_available("record_holds_memory_flat_on_a_long_stream") {
        return;
    }
    // Batches smaller than the ring buffer (about 23,000 records), each drained before the next,
    // so the events really pass through the recorder rather than being dropped in the kernel.
    const WARMUP: u64 = 2_000;
    const BATCH: u64 = 5_000;
    const BATCHES: u64 = 6;
    const STREAM: u64 = BATCH * BATCHES;
    let fs = LoopFs::new(FsType::Ext4).expect("loop fs");
    // The last sectors of the image: the test's own throwaway filesystem.
    let first_sector = fs.blocks_4k() * 8 - STREAM - 8;
    let mut rec = Recorder::start(&[]).expect("recorder");
    let frozen = Frozen::new(&fs).expect("freeze");
    // Warm up: symbols loaded, buffers and maps at their working size.
    write_device(&fs.loopdev, first_sector, WARMUP);
    wait_drained(&rec.trace_path);
    let before = rss_kib(rec.pid());
    for batch in 0..BATCHES {
        write_device(&fs.loopdev, first_sector + batch * BATCH, BATCH);
        wait_drained(&rec.trace_path);
    }
    let after = rss_kib(rec.pid());
    drop(frozen);
    let status = rec.stop_with(libc::SIGINT).expect("stops");
    assert!(status.success(), "{status}: {}", rec.stderr());
    let (footer, summary) = footer_and_summary(&rec.trace_path, fs.mnt());
    let events = footer["events"].as_u64().expect("event count");
    let lost = footer["counters"]["lost_ringbuf_full"].as_u64().unwrap_or(0);
    eprintln!(
        "RSS {before} KiB after {WARMUP} writes, {after} KiB after {STREAM} more; {events} events, {lost} lost, {} slips",
        summary["slips"]
    );
    // The stream was real: the writes reached the recorder as events and slips.
    assert!(events + lost >= WARMUP + STREAM, "{events} events + {lost} lost");
    assert!(summary["slips"].as_u64().expect("slips") >= STREAM * 9 / 10, "{summary}");
    // Keeping the events would cost about 1 KiB each (30 MiB here); flat means a few MiB at most.
    assert!(after.saturating_sub(before) < 8 * 1024, "RSS grew from {before} KiB to {after} KiB");
}
