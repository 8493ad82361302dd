//! What a timeline draws, derived from events as they stream: each filesystem's freezes (from
//! completion to thaw, nested or overlapping holders apart), the drain before each, every wait at
//! the gate, and the freeze level and number of blocked writers as they change. The Perfetto export
//! and the HTML report both draw from here. It holds one entry per filesystem and per open freeze
//! or wait, never the events; it wants events in time order.
use std::collections::BTreeMap;

use crate::{
    correlate::FindingKind,
    event::{Event, EventKind, Superblock},
    holds::Holds,
};

/// A filesystem's track: numbered from 1 in the order first seen.
#[derive(Clone, Debug)]
pub struct Track {
    pub index: u32,
    pub sb: Superblock,
}

/// One shape, complete when it is handed out.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `freeze_super` running: the drain before a freeze that completed.
    Freezing { track: u32, id: u64, begin: u64, end: u64, by: String },
    /// A completed freeze, until its thaw or, still frozen, the end of the trace.
    Frozen {
        track: u32,
        /// Unique in the timeline.
        id: u64,
        /// 1 for a freeze of an unfrozen filesystem, 2 for one taken while another holder's was
        /// in force, and so on.
        nesting: usize,
        holder: Option<String>,
        level: Option<u32>,
        begin: u64,
        end: u64,
        by: String,
        thawed_by: Option<String>,
        left_frozen: bool,
    },
    /// A task waiting at the gate, until it went on or, still waiting, the end of the trace.
    Wait {
        track: u32,
        tid: u32,
        task: String,
        begin: u64,
        end: u64,
        gate_level: Option<u32>,
        still_blocked: bool,
    },
    /// The freeze level changed.
    Level { track: u32, ts: u64, level: u32 },
    /// The number of writers waiting at the gate changed.
    Blocked { track: u32, ts: u64, count: usize },
}

impl Item {
    /// The filesystem's track it belongs to.
    pub fn track(&self) -> u32 {
        match self {
            Item::Freezing { track, .. }
            | Item::Frozen { track, .. }
            | Item::Wait { track, .. }
            | Item::Level { track, .. }
            | Item::Blocked { track, .. } => *track,
        }
    }
}

/// The findings a timeline marks as moments; the others are drawn as shapes already (waits,
/// freezes) or are not news (exempt events).
pub fn is_moment(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::Slip
            | FindingKind::MountWhileFrozen
            | FindingKind::MountDenied
            | FindingKind::FreezeFailed
            | FindingKind::ThawWithoutFreeze
    )
}

struct OpenFreeze {
    id: u64,
    nesting: usize,
    holder: Option<String>,
    level: Option<u32>,
    begin: u64,
    by: String,
}

struct OpenWait {
    begin: u64,
    task: String,
    gate_level: Option<u32>,
}

struct State {
    track: Track,
    open: Holds<OpenFreeze>,
    waits: BTreeMap<u32, OpenWait>,
    level: Option<u32>,
}

#[derive(Default)]
pub struct Timeline {
    states: BTreeMap<String, State>,
    next_id: u64,
    last_ts: u64,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tracks seen so far, by superblock id.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.states.values().map(|s| &s.track)
    }

    /// The track of `sb`, made when first seen (a mount point learnt later is kept).
    pub fn track(&mut self, sb: &Superblock) -> u32 {
        self.state(sb).track.index
    }

    fn state(&mut self, sb: &Superblock) -> &mut State {
        let index = u32::try_from(self.states.len() + 1).unwrap_or(u32::MAX);
        let state = self.states.entry(sb.id.clone()).or_insert_with(|| State {
            track: Track { index, sb: sb.clone() },
            open: Holds::default(),
            waits: BTreeMap::new(),
            level: None,
        });
        if state.track.sb.mountpoint.is_none() && sb.mountpoint.is_some() {
            state.track.sb.mountpoint.clone_from(&sb.mountpoint);
        }
        state
    }

    /// Takes the next event (in time order); returns the shapes it completed.
    pub fn push(&mut self, ev: &Event) -> Vec<Item> {
        let mut out = Vec::new();
        let Some(sb) = ev.sb.as_ref() else { return out };
        self.last_ts = self.last_ts.max(ev.ts_ns);
        let task = format!("{}[{}]", ev.comm, ev.pid);
        // Ids for what this event may open: a drain and a freeze.
        let (drain_id, id) = (self.next_id + 1, self.next_id + 2);
        let mut took_ids = false;
        let state = self.state(sb);
        let track = state.track.index;
        match ev.kind {
            EventKind::FreezeEnd if ev.ret == Some(0) => {
                if let Some(begin) = ev.begin_ts_ns {
                    out.push(Item::Freezing { track, id: drain_id, begin, end: ev.ts_ns, by: task.clone() });
                }
                let nesting = state.open.len() + 1;
                let freeze = OpenFreeze {
                    id,
                    nesting,
                    holder: ev.holder.clone(),
                    level: ev.level_after,
                    begin: ev.ts_ns,
                    by: task,
                };
                state.open.freeze(ev, freeze);
                took_ids = true;
            }
            EventKind::ThawEnd if ev.ret == Some(0) => {
                // The freezes the thaw ends (`Holds`: the one made the same way, or all of them
                // when the filesystem is unfrozen after it).
                for freeze in state.open.thaw(ev) {
                    out.push(frozen(track, freeze, ev.ts_ns, Some(task.clone())));
                }
            }
            EventKind::WriterBlocked => {
                state.waits.insert(ev.tid, OpenWait { begin: ev.ts_ns, task, gate_level: ev.gate_level });
                out.push(Item::Blocked { track, ts: ev.ts_ns, count: state.waits.len() });
            }
            EventKind::WriterUnblocked => {
                let open = state.waits.remove(&ev.tid);
                let begin = open.as_ref().map(|w| w.begin).or(ev.begin_ts_ns);
                if let Some(begin) = begin {
                    out.push(Item::Wait {
                        track,
                        tid: ev.tid,
                        task,
                        begin,
                        end: ev.ts_ns,
                        gate_level: ev.gate_level,
                        still_blocked: false,
                    });
                }
                out.push(Item::Blocked { track, ts: ev.ts_ns, count: state.waits.len() });
            }
            _ => {}
        }
        let changes_level = matches!(
            ev.kind,
            EventKind::FreezeBegin | EventKind::FreezeEnd | EventKind::ThawBegin | EventKind::ThawEnd
        );
        if changes_level
            && let Some(level) = ev.level_after
            && state.level != Some(level)
        {
            state.level = Some(level);
            out.push(Item::Level { track, ts: ev.ts_ns, level });
        }
        if took_ids {
            self.next_id = id;
        }
        out
    }

    /// The trace ended at `end_ns` (None: the last event's time): closes what is still open there,
    /// marked so (the newest freeze first).
    pub fn finish(&mut self, end_ns: Option<u64>) -> Vec<Item> {
        let end = end_ns.unwrap_or(self.last_ts).max(self.last_ts);
        let mut out = Vec::new();
        for state in self.states.values_mut() {
            let track = state.track.index;
            for (tid, wait) in std::mem::take(&mut state.waits) {
                out.push(Item::Wait {
                    track,
                    tid,
                    task: wait.task,
                    begin: wait.begin,
                    end,
                    gate_level: wait.gate_level,
                    still_blocked: true,
                });
            }
            while let Some(freeze) = state.open.pop() {
                out.push(frozen(track, freeze, end, None));
            }
        }
        out
    }
}

fn frozen(track: u32, f: OpenFreeze, end: u64, thawed_by: Option<String>) -> Item {
    Item::Frozen {
        track,
        id: f.id,
        nesting: f.nesting,
        holder: f.holder,
        level: f.level,
        begin: f.begin,
        end,
        by: f.by,
        left_frozen: thawed_by.is_none(),
        thawed_by,
    }
}
