//! A freeze call that has not returned yet: what its filesystem's gate shows meanwhile, and
//! `freeze-stalled` once it has taken too long.
use crate::{
    correlate::{Finding, FindingKind, messages::state_finding},
    event::{Event, EventKind, SharedSuperblock},
    units::fmt_secs,
};

/// A freeze call in progress (freeze_super has not returned).
pub(super) struct Freezing {
    pub(super) sb: SharedSuperblock,
    pub(super) since: u64,
    pub(super) task: String,
    /// The level the filesystem was last seen at.
    pub(super) level: u32,
    /// Writers seen waiting at its gate meanwhile (the first few), and how many.
    pub(super) waiters: Vec<String>,
    pub(super) waiting: usize,
    pub(super) said: bool,
}

/// Waiting writers a `freeze-stalled` finding names at most.
const WAITERS_NAMED: usize = 8;

impl Freezing {
    /// A freeze call began with `ev`.
    pub(super) fn new(ev: &Event, sb: &SharedSuperblock) -> Self {
        Self {
            sb: sb.clone(),
            since: ev.ts_ns,
            task: ev.who(),
            level: ev.level_after.unwrap_or(0),
            waiters: Vec::new(),
            waiting: 0,
            said: false,
        }
    }

    /// What `ev` shows of the gate: the level it is at, a writer waiting there.
    pub(super) fn saw(&mut self, ev: &Event) {
        if let Some(level) = ev.level_after {
            self.level = level;
        }
        if ev.kind == EventKind::WriterBlocked {
            self.waiting += 1;
            if self.waiters.len() < WAITERS_NAMED {
                self.waiters.push(format!("{}[{}]", ev.comm, ev.pid));
            }
        }
    }

    /// `freeze-stalled`, once, when the call has not returned `after_ns` after it began.
    pub(super) fn stalled(&mut self, now_ns: u64, after_ns: u64) -> Option<Finding> {
        let stalled_for = now_ns.saturating_sub(self.since);
        if self.said || stalled_for < after_ns {
            return None;
        }
        self.said = true;
        let gate = match self.level {
            0 => "not yet at level 1 (it is syncing or waiting for the gate's lock)".to_owned(),
            1 => "at level 1 (write): it waits for writes in flight to end, or for its sync".to_owned(),
            2 => "at level 2 (page fault)".to_owned(),
            3 => "at level 3 (fs-internal): the filesystem's own writers, or its freeze_fs".to_owned(),
            l => format!("at level {l}"),
        };
        let waiters = match self.waiting {
            0 => "no writer is seen waiting at its gate".to_owned(),
            n => {
                let more = n.saturating_sub(self.waiters.len());
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                format!("{n} writers wait at its gate: {}{more}", self.waiters.join(", "))
            }
        };
        let message = format!(
            "the freeze of {} by {} has not returned after {}; it is {gate}; {waiters} (the \
             writes in flight it waits for cannot be named: the kernel only counts them)",
            self.sb.describe(),
            self.task,
            fmt_secs(stalled_for)
        );
        Some(state_finding(FindingKind::FreezeStalled, &self.sb, self.since, stalled_for, message))
    }
}
