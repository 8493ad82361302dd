//! The reorder window: the ring buffer hands over events from different CPUs slightly out of
//! timestamp order. Each event is held until one at least `window` newer has arrived (or the
//! clock has passed it by that much), then released in (timestamp, arrival) order. An event older
//! than what was already released is let through at once and counted as late.
//!
//! Events are held in a queue kept in order: nearly every event is the newest so far and goes at
//! the back, releases take the front, and neither moves the events in between.
use std::collections::VecDeque;

use crate::event::Event;

pub(crate) struct Reorder {
    window: u64,
    /// In (timestamp, arrival) order.
    held: VecDeque<Event>,
    /// Events up to here may be released.
    ready_until: u64,
    /// Everything up to here has been released.
    released_until: u64,
    late: u64,
}

impl Reorder {
    pub(crate) fn new(window: u64) -> Self {
        Self { window, held: VecDeque::new(), ready_until: 0, released_until: 0, late: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn late(&self) -> u64 {
        self.late
    }

    /// Takes an event; `pop` then hands out those now safe to apply.
    pub(crate) fn push(&mut self, ev: Event) {
        let ts = ev.ts_ns;
        if ts < self.released_until {
            self.late += 1;
        }
        // After every held event of the same time or older: ties keep their arrival order.
        if self.held.back().is_none_or(|last| last.ts_ns <= ts) {
            self.held.push_back(ev);
        } else {
            let at = self.held.partition_point(|e| e.ts_ns <= ts);
            self.held.insert(at, ev);
        }
        self.ready_until = self.ready_until.max(ts.saturating_sub(self.window));
        if ts < self.released_until {
            // Late: released at once, whatever else is held.
            self.ready_until = self.ready_until.max(ts);
        }
    }

    /// The clock (the events' clock) says `now`: what is at least `window` older may go.
    pub(crate) fn advance_to(&mut self, now: u64) {
        self.ready_until = self.ready_until.max(now.saturating_sub(self.window));
    }

    /// The oldest held event, when it is safe to apply.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if self.held.front()?.ts_ns > self.ready_until {
            return None;
        }
        let ev = self.held.pop_front()?;
        self.released_until = self.released_until.max(ev.ts_ns);
        Some(ev)
    }

    /// Everything held, oldest first (the stream ended).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.ready_until = u64::MAX;
        std::iter::from_fn(|| self.pop())
    }
}
