//! Output that never makes its producer wait: what `watch` and the recorder write (findings, trace
//! lines, their own log lines) goes into a bounded in-memory queue, and a thread per output writes
//! it out. An output on a frozen filesystem blocks only its own thread; meanwhile the queue holds
//! what comes, up to its budget in bytes, shared by every output. When it is full the oldest
//! chunks of the output that gives way first (the trace, then the log, then findings) are dropped, each drop counted and reported
//! once that output works again. Nothing is dropped while the queue has room, and each output's
//! chunks are written in order.
use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// The queue's default budget: 64 MiB.
pub const DEFAULT_BYTES: usize = 64 << 20;

/// How long an output that is closed is given to take what is queued for it (one on a
/// filesystem still frozen takes nothing, and its producer must end).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A lane's writer hands its buffer to the queue once it holds this much, at a line's end, even
/// before a flush.
const CHUNK: usize = 1 << 20;

/// Where a lane's chunks are written, on its own thread.
pub trait Output: Send {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Opens the output anew (SIGHUP, after logrotate moved the file); says what it did.
    fn reopen(&mut self) -> io::Result<String> {
        Ok("nothing to reopen".into())
    }
}

/// Which output gives way first when the queue is full: the trace, then freezewatch's own log
/// lines (`crate::say`), then findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    Trace,
    Log,
    Findings,
}

/// Any writer as an output: each chunk written whole, then flushed.
pub struct Plain<W>(pub W);

impl<W: Write + Send> Output for Plain<W> {
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.0.write_all(chunk)?;
        self.0.flush()
    }
}

enum Item {
    Chunk(Vec<u8>),
    Reopen,
}

struct LaneState {
    name: &'static str,
    /// Lanes of a lower rank give way first when the queue is full.
    rank: Rank,
    items: VecDeque<Item>,
    /// Lines dropped in all, and since the last report.
    dropped: u64,
    unreported: u64,
    /// No more chunks come: the writer thread ends once it has written what is queued.
    closed: bool,
    /// The output's last write failed with this (a full disk): the producer's next flush says so.
    failed: Option<(io::ErrorKind, String)>,
    /// The writer thread has ended.
    done: bool,
}

impl LaneState {
    /// Bytes queued here.
    fn queued(&self) -> usize {
        self.items.iter().map(|i| if let Item::Chunk(c) = i { c.len() } else { 0 }).sum()
    }
}

struct State {
    lanes: Vec<LaneState>,
    /// Bytes queued in all lanes.
    queued: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when an item is queued, a lane is closed, or a writer thread ends.
    changed: Condvar,
    budget: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer thread that panicked left consistent state (every update is one assignment).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The queue and its outputs.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

/// One output of a `Queue`: pushing to it never blocks on the output.
#[derive(Clone)]
pub struct Lane {
    shared: Arc<Shared>,
    index: usize,
}

fn lines(chunk: &[u8]) -> u64 {
    (chunk.iter().filter(|b| **b == b'\n').count() as u64).max(1)
}

impl Queue {
    pub fn new(budget: usize) -> Self {
        let state = State { lanes: Vec::new(), queued: 0 };
        Self { shared: Arc::new(Shared { state: Mutex::new(state), changed: Condvar::new(), budget }) }
    }

    /// A new output, written by a thread of its own.
    pub fn lane(&self, name: &'static str, rank: Rank, mut output: Box<dyn Output>) -> io::Result<Lane> {
        let index = {
            let mut s = self.shared.lock();
            let lane = LaneState {
                name,
                rank,
                items: VecDeque::new(),
                dropped: 0,
                unreported: 0,
                closed: false,
                failed: None,
                done: false,
            };
            s.lanes.push(lane);
            s.lanes.len() - 1
        };
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new().name(format!("fw-out-{name}")).spawn(move || {
            write_lane(&shared, index, output.as_mut());
            shared.lock().lanes[index].done = true;
            shared.changed.notify_all();
        })?;
        Ok(Lane { shared: Arc::clone(&self.shared), index })
    }

    /// Lines dropped so far, per output name.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.shared.lock().lanes.iter().map(|l| (l.name, l.dropped)).collect()
    }

    /// Lets every writer finish what is queued, for at most `within`; returns the outputs that
    /// did not (blocked, probably on a frozen filesystem), with the bytes they still had.
    pub fn finish(&self, within: Duration) -> Vec<(&'static str, usize)> {
        let all: Vec<usize> = (0..self.shared.lock().lanes.len()).collect();
        finish(&self.shared, &all, within)
    }
}

/// Closes `lanes` and waits (at most `within`) for their writers to end.
fn finish(shared: &Shared, lanes: &[usize], within: Duration) -> Vec<(&'static str, usize)> {
    let deadline = Instant::now() + within;
    let mut s = shared.lock();
    for i in lanes {
        s.lanes[*i].closed = true;
    }
    shared.changed.notify_all();
    while lanes.iter().any(|i| !s.lanes[*i].done) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s = shared.changed.wait_timeout(s, left).map_or_else(|e| e.into_inner().0, |(g, _)| g);
    }
    lanes.iter().map(|i| &s.lanes[*i]).filter(|l| !l.done).map(|l| (l.name, l.queued())).collect()
}

/// Takes and writes a lane's items until the queue closes and the lane is empty.
fn write_lane(shared: &Shared, index: usize, output: &mut dyn Output) {
    let mut failing = false;
    loop {
        let (item, name) = {
            let mut s = shared.lock();
            loop {
                if let Some(item) = s.lanes[index].items.pop_front() {
                    if let Item::Chunk(c) = &item {
                        s.queued -= c.len();
                    }
                    break (item, s.lanes[index].name);
                }
                if s.lanes[index].closed {
                    return;
                }
                s = shared.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // This thread alone may wait on the output: a blocked stderr delays only its words.
        let result = match item {
            Item::Chunk(chunk) => output.write_chunk(&chunk),
            Item::Reopen => {
                match output.reopen() {
                    Ok(said) => crate::say!("freezewatch: {name}: {said}"),
                    Err(e) => {
                        crate::say!("freezewatch: {name}: reopening failed: {e}; the one open before is kept")
                    }
                }
                continue;
            }
        };
        match result {
            Ok(()) => {
                failing = false;
                let unreported = std::mem::take(&mut shared.lock().lanes[index].unreported);
                if unreported > 0 {
                    crate::say!(
                        "freezewatch: {name}: {unreported} lines were dropped while this output was blocked \
                         and the queue was full"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    crate::say!("freezewatch: {name}: writing failed: {e}");
                }
                failing = true;
                // Kept: the producer ends on it, as it did when it wrote itself.
                shared.lock().lanes[index].failed.get_or_insert((e.kind(), e.to_string()));
            }
        }
    }
}

impl Lane {
    /// Queues `chunk` (whole lines). When the queue is full, the oldest chunks of the lanes that
    /// give way first are dropped to make room; a chunk larger than the whole budget is dropped.
    pub fn push(&self, chunk: Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        let mut s = self.shared.lock();
        if chunk.len() > self.shared.budget {
            let n = lines(&chunk);
            let lane = &mut s.lanes[self.index];
            (lane.dropped, lane.unreported) = (lane.dropped + n, lane.unreported + n);
            return;
        }
        while s.queued + chunk.len() > self.shared.budget {
            // The lowest-ranked lane that has a chunk queued gives one up: its oldest.
            let Some(victim) = (0..s.lanes.len())
                .filter(|i| s.lanes[*i].items.iter().any(|item| matches!(item, Item::Chunk(_))))
                .min_by_key(|i| s.lanes[*i].rank)
            else {
                break;
            };
            let lane = &mut s.lanes[victim];
            let Some(at) = lane.items.iter().position(|i| matches!(i, Item::Chunk(_))) else { break };
            let Some(Item::Chunk(old)) = lane.items.remove(at) else { break };
            let n = lines(&old);
            (lane.dropped, lane.unreported) = (lane.dropped + n, lane.unreported + n);
            s.queued -= old.len();
        }
        s.queued += chunk.len();
        s.lanes[self.index].items.push_back(Item::Chunk(chunk));
        drop(s);
        self.shared.changed.notify_all();
    }

    /// Asks the output to reopen itself, after what is queued before it.
    pub fn reopen(&self) {
        self.shared.lock().lanes[self.index].items.push_back(Item::Reopen);
        self.shared.changed.notify_all();
    }

    /// Lines dropped from this output so far.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().lanes[self.index].dropped
    }

    /// Lets this output's writer finish what is queued, for at most `within`; the bytes it could
    /// not write (blocked, probably on a frozen filesystem), if any.
    pub fn finish(&self, within: Duration) -> Option<usize> {
        finish(&self.shared, &[self.index], within).first().map(|(_, bytes)| *bytes)
    }

    /// Ends this output (`finish` within `CLOSE_WITHIN`) and says on stderr what it did not
    /// write and what it dropped.
    pub fn close(&self) {
        let name = self.shared.lock().lanes[self.index].name;
        if let Some(bytes) = self.finish(CLOSE_WITHIN) {
            crate::say!(
                "freezewatch: WARNING: the {name} output is blocked (on a frozen filesystem?): {bytes} bytes \
                 queued for it were not written"
            );
        }
        match self.dropped() {
            0 => {}
            n => {
                crate::say!(
                    "freezewatch: WARNING: {n} {name} lines were dropped while its output was blocked"
                )
            }
        }
    }

    /// A writer whose flushes (and every `CHUNK` of whole lines) queue what it was given.
    pub fn writer(&self) -> LaneWriter {
        LaneWriter { lane: self.clone(), buf: Vec::new() }
    }
}

/// `Write` into a lane: never blocks on the output.
pub struct LaneWriter {
    lane: Lane,
    buf: Vec<u8>,
}

impl Write for LaneWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK
            && let Some(end) = self.buf.iter().rposition(|b| *b == b'\n')
        {
            let rest = self.buf.split_off(end + 1);
            self.lane.push(std::mem::replace(&mut self.buf, rest));
        }
        Ok(data.len())
    }

    /// Queues what it holds; fails when the output's last write failed (a full disk is an
    /// error its producer must hear of; a blocked output is not).
    fn flush(&mut self) -> io::Result<()> {
        self.lane.push(std::mem::take(&mut self.buf));
        match &self.lane.shared.lock().lanes[self.lane.index].failed {
            Some((kind, what)) => Err(io::Error::new(*kind, what.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for LaneWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that waits for a go before each chunk (a frozen filesystem), then records it.
    struct Gated {
        go: mpsc::Receiver<()>,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Output for Gated {
        fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
            let _ = self.go.recv();
            self.got.lock().expect("lock").push(String::from_utf8_lossy(chunk).into_owned());
            Ok(())
        }
    }

    fn gated(q: &Queue, name: &'static str, rank: Rank) -> (Lane, mpsc::Sender<()>, Arc<Mutex<Vec<String>>>) {
        let (tx, go) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let lane = q.lane(name, rank, Box::new(Gated { go, got: Arc::clone(&got) })).expect("lane");
        (lane, tx, got)
    }

    #[test]
    fn a_blocked_output_blocks_no_push_and_loses_nothing_within_the_budget() {
        let q = Queue::new(1000);
        let (findings, go, got) = gated(&q, "findings", Rank::Findings);
        let start = Instant::now();
        for i in 0..20 {
            findings.push(format!("finding {i}\n").into_bytes());
        }
        assert!(start.elapsed() < Duration::from_secs(1), "pushing did not wait for the output");
        for _ in 0..20 {
            go.send(()).expect("go");
        }
        assert!(q.finish(Duration::from_secs(10)).is_empty(), "everything was written");
        let got = got.lock().expect("lock").clone();
        assert_eq!(got.len(), 20);
        assert!(got.iter().enumerate().all(|(i, l)| *l == format!("finding {i}\n")), "in order: {got:?}");
        assert_eq!(q.dropped(), [("findings", 0)]);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_trace_lines_first_then_findings() {
        let q = Queue::new(100);
        // Findings' lane made first: the rank decides, not the order.
        let (findings, go_findings, got_findings) = gated(&q, "findings", Rank::Findings);
        let (trace, go_trace, got_trace) = gated(&q, "trace", Rank::Trace);
        // Each writer takes its first chunk off the queue and waits with it.
        trace.push(b"t-first\n".to_vec());
        findings.push(b"f-first\n".to_vec());
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..5 {
            trace.push(format!("trace line {i:03}\n").into_bytes()); // 15 bytes each
        }
        for i in 0..3 {
            findings.push(format!("finding {i:05}..\n").into_bytes()); // 16 bytes each
        }
        // 75 + 48 > 100: the two oldest trace lines made room.
        assert_eq!(q.dropped(), [("findings", 0), ("trace", 2)]);
        for i in 3..8 {
            findings.push(format!("finding {i:05}..\n").into_bytes());
        }
        // Every trace line went, then the oldest findings.
        assert_eq!(q.dropped(), [("findings", 2), ("trace", 5)]);
        let huge = vec![b'x'; 101];
        findings.push(huge);
        assert_eq!(q.dropped()[0], ("findings", 3), "a chunk larger than the budget is dropped itself");
        for _ in 0..10 {
            let _ = go_trace.send(());
            let _ = go_findings.send(());
        }
        assert!(q.finish(Duration::from_secs(10)).is_empty());
        assert_eq!(*got_trace.lock().expect("lock"), ["t-first\n"]);
        let f = got_findings.lock().expect("lock").clone();
        let expected: Vec<String> = std::iter::once("f-first\n".to_owned())
            .chain((2..8).map(|i| format!("finding {i:05}..\n")))
            .collect();
        assert_eq!(f, expected, "the newest findings, in order");
    }

    #[test]
    fn finish_gives_up_on_an_output_that_stays_blocked() {
        let q = Queue::new(1000);
        let (lane, _go, _) = gated(&q, "trace", Rank::Trace);
        lane.push(b"a\n".to_vec());
        lane.push(b"bc\n".to_vec());
        let start = Instant::now();
        let left = q.finish(Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(left, [("trace", 3)], "the chunk still queued (the first is being written)");
    }

    #[test]
    fn a_lane_writer_queues_whole_lines_on_flush() {
        let q = Queue::new(1 << 22);
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, go) = mpsc::channel();
        let lane = q.lane("trace", Rank::Trace, Box::new(Gated { go, got: Arc::clone(&got) })).expect("lane");
        let mut w = lane.writer();
        write!(w, "one\ntwo\n").expect("writes");
        w.flush().expect("flushes");
        let big = "x".repeat(CHUNK) + "\n";
        w.write_all(big.as_bytes()).expect("writes");
        write!(w, "tail").expect("writes");
        for _ in 0..3 {
            tx.send(()).expect("go");
        }
        drop(w);
        assert!(q.finish(Duration::from_secs(10)).is_empty());
        assert_eq!(*got.lock().expect("lock"), ["one\ntwo\n".to_owned(), big, "tail".to_owned()]);
    }
}
