//! The reorder window: the ring buffer hands over events from different CPUs slightly out of
//! timestamp order. Each event is held until one at least `window` newer has arrived (or the
//! clock has passed it by that much), then released in (timestamp, arrival) order. An event older
//! than what was already released is let through at once and counted as late.
use std::collections::BTreeMap;

use crate::event::Event;

pub(crate) struct Reorder {
    window: u64,
    held: BTreeMap<(u64, u64), Event>,
    /// Arrival counter: ties in time keep their arrival order.
    seq: u64,
    /// Newest timestamp seen.
    newest: u64,
    /// Everything up to here has been released.
    released_until: u64,
    late: u64,
}

impl Reorder {
    pub(crate) fn new(window: u64) -> Self {
        Self { window, held: BTreeMap::new(), seq: 0, newest: 0, released_until: 0, late: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn late(&self) -> u64 {
        self.late
    }

    /// Takes an event; returns those now safe to apply, oldest first.
    pub(crate) fn push(&mut self, ev: Event) -> Vec<Event> {
        if ev.ts_ns < self.released_until {
            self.late += 1;
            return vec![ev];
        }
        if self.window == 0 {
            self.released_until = ev.ts_ns;
            return vec![ev];
        }
        self.newest = self.newest.max(ev.ts_ns);
        self.seq += 1;
        self.held.insert((ev.ts_ns, self.seq), ev);
        self.release_up_to(self.newest.saturating_sub(self.window))
    }

    /// The clock (the events' clock) says `now`: releases what is at least `window` older.
    pub(crate) fn release_at(&mut self, now: u64) -> Vec<Event> {
        self.release_up_to(now.saturating_sub(self.window))
    }

    fn release_up_to(&mut self, until: u64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > until {
                break;
            }
            out.push(entry.remove());
        }
        if let Some(last) = out.last() {
            self.released_until = self.released_until.max(last.ts_ns);
        }
        out
    }

    /// Everything held, oldest first (the stream ended).
    pub(crate) fn drain(&mut self) -> Vec<Event> {
        self.release_up_to(u64::MAX)
    }
}
