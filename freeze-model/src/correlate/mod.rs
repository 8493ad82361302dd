//! Correlation: turns a stream of events into findings a user can act on.
//!
//! `Correlator` is streaming: `push` an event and get the findings that are certain at that
//! point, `tick` with the current time to raise time-based findings while they are still true,
//! `finish` to close what is open and get the summaries. It holds only what is open (one state
//! machine per superblock, waits in progress, pending mount calls, a short reorder window), never
//! the events. `analyze` runs it over a whole trace: sort, push, finish.
mod machine;
pub(crate) mod messages;
mod mounts;
mod reorder;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use machine::{Correlator, Retained};
pub(crate) use reorder::Reorder;
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{Cgroup, Parent},
    event::{Event, SharedSuperblock, Stack},
    names::named_enum,
};

named_enum! {
    /// How bad a finding is; ordered from least to most severe.
    pub enum Severity {
        Info = "info",
        Warning = "warning",
        Error = "error",
    }
}

named_enum! {
    /// What a finding says happened.
    pub enum FindingKind {
        /// Something modified a frozen superblock.
        Slip = "slip",
        /// A freeze returned an error.
        FreezeFailed = "freeze-failed",
        /// A thaw of a superblock that was not frozen.
        ThawWithoutFreeze = "thaw-without-freeze",
        /// Still frozen when the recording ended.
        LeftFrozen = "left-frozen",
        /// A freeze that lasted (or, live, has lasted so far) longer than the threshold.
        LongFreeze = "long-freeze",
        /// A task waited at the freeze gate (normal: that is what the gate is for).
        BlockedWriter = "blocked-writer",
        /// An event that looks like a slip but is legitimate; `exempt_reason` says why.
        Exempt = "exempt",
        /// A mount of a frozen filesystem (its device, a bind from it, or its fsmount) succeeded.
        MountWhileFrozen = "mount-while-frozen",
        /// `--deny-mounts` refused a mount of a frozen filesystem (enforce), or would have (audit).
        MountDenied = "mount-denied",
        /// `watch`: still frozen past `--alert-frozen` (raised while it lasts, again at a slower
        /// cadence).
        FrozenTooLong = "frozen-too-long",
        /// `watch`: the freeze's owner exited and the filesystem is still frozen.
        FreezerGone = "freezer-gone",
        /// `watch --thaw-orphans=enforce` / `--thaw-after`: the watchdog thawed a filesystem.
        ThawedByWatchdog = "thawed-by-watchdog",
        /// `watch --thaw-orphans=audit`: the watchdog would have thawed it.
        WatchdogWouldThaw = "watchdog-would-thaw",
        /// `watch`: the task that froze a filesystem waits at that filesystem's own gate, so
        /// it will never thaw it.
        ThawBlocked = "thaw-blocked",
        /// `watch`: a filesystem was already frozen when watch started (who froze it is unknown).
        FrozenAtStart = "frozen-at-start",
        /// `watch`: a freeze call (`freeze_super`) has not returned after `--alert-stalled`.
        FreezeStalled = "freeze-stalled",
        /// `watch`: the owner of a block-device freeze (a device-mapper suspend) is gone and the
        /// device is still suspended. The watchdog never thaws one: only resuming the device does.
        SuspendOrphaned = "suspend-orphaned",
        /// `watch`: the watchdog's thaw failed; it is tried again, less and less often.
        WatchdogFailed = "watchdog-failed",
        /// A kernel thread's write to a device under a frozen filesystem that is watched whole
        /// (an md member, a device in a snapshot, thin, raid or crypt table): the layer's own I/O
        /// (md resync or recovery, dm-snapshot or dm-thin copy-out, kcopyd), which leaves the
        /// bytes the filesystem reads as they were. A user task's write there is a slip.
        LayerIo = "layer-io",
    }
}

impl FindingKind {
    pub fn severity(self) -> Severity {
        match self {
            Self::Slip
            | Self::LeftFrozen
            | Self::MountWhileFrozen
            | Self::ThawBlocked
            | Self::SuspendOrphaned
            | Self::WatchdogFailed => Severity::Error,
            Self::FreezeFailed
            | Self::ThawWithoutFreeze
            | Self::LongFreeze
            | Self::FrozenTooLong
            | Self::FrozenAtStart
            | Self::FreezeStalled
            | Self::FreezerGone
            | Self::ThawedByWatchdog
            | Self::LayerIo => Severity::Warning,
            Self::BlockedWriter | Self::Exempt | Self::MountDenied | Self::WatchdogWouldThaw => {
                Severity::Info
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// When it happened (CLOCK_MONOTONIC ns; for durations, the start).
    pub ts_ns: u64,
    pub sb: SharedSuperblock,
    pub pid: u32,
    pub comm: String,
    pub hook: std::borrow::Cow<'static, str>,
    /// Freeze level of the superblock at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// One sentence a person can read.
    pub message: String,
    /// Kernel stack of the event behind the finding, innermost first, when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
    /// For `exempt`: why the event is legitimate (also the end of `message`). Not written to
    /// traces or JSON: it is derived again whenever findings are computed.
    #[serde(skip)]
    pub exempt_reason: Option<String>,
    /// The cgroup of the task behind it (of the event that raised it), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::sync::Arc<Cgroup>>,
    /// That task's parent, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<std::sync::Arc<Parent>>,
    /// For a slip of the storage (block writes, discards, backing-file changes): what it did,
    /// where, and the layer that maps it to the filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Box<crate::event::BlockIo>>,
}

named_enum! {
    /// How a slip reached its frozen filesystem (the `path` label of watch's slip metrics).
    pub enum SlipPath {
        /// A bio to its device or a device below it.
        Block = "block",
        /// A transaction the filesystem started.
        Transaction = "transaction",
        /// A change to a file: the filesystem's own, or a loop device's backing file under it.
        Write = "write",
    }
}

impl Finding {
    /// For a slip, its path: bios are `block`; changes to a file (a backing file's op, or a
    /// write hook's finding) are `write`; the rest are transactions.
    pub fn slip_path(&self) -> Option<SlipPath> {
        use crate::event::Hook;
        if self.kind != FindingKind::Slip {
            return None;
        }
        Some(match (&self.block, Hook::from_name(&self.hook)) {
            (Some(b), _) if !b.op().is_file() => SlipPath::Block,
            (Some(_), _)
            | (None, Some(Hook::TracepointSysWrite | Hook::FexitVfsWrite | Hook::TpBtfWriteback)) => {
                SlipPath::Write
            }
            _ => SlipPath::Transaction,
        })
    }

    /// "fsfreeze[8812] ← backup.sh[8790] in backup.service": the task behind the finding.
    pub fn who(&self) -> String {
        crate::attribution::describe(&self.comm, self.pid, self.parent.as_deref(), self.cgroup.as_deref())
    }
}

named_enum! {
    /// Where a superblock stands: the one state machine of the correlator.
    #[derive(Default)]
    pub enum SbState {
        #[default]
        Unfrozen = "unfrozen",
        /// freeze_super is running; the level is in `Summary::level`.
        Freezing = "freezing",
        Frozen = "frozen",
        Thawing = "thawing",
    }
}

/// Per-superblock totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub sb: Option<SharedSuperblock>,
    /// State after the last event.
    #[serde(default)]
    pub state: SbState,
    /// The last freeze level the kernel reported for it.
    #[serde(default)]
    pub level: u32,
    /// When the current frozen window began (None when not frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_since_ns: Option<u64>,
    pub freezes: u64,
    pub failed_freezes: u64,
    pub thaws: u64,
    pub total_frozen_ns: u64,
    pub max_frozen_ns: u64,
    pub slips: u64,
    pub blocked_writers: u64,
    pub mounts_while_frozen: u64,
    /// Mounts `--deny-mounts=enforce` refused.
    #[serde(default)]
    pub denied_mounts: u64,
    /// Mounts `--deny-mounts=audit` would have refused (they went ahead).
    #[serde(default)]
    pub would_deny_mounts: u64,
    pub left_frozen: bool,
}

impl Summary {
    /// "30 freezes (0 failed), 30 thaws, frozen 0.178s in total (longest 0.012s), 30 slips, 0
    /// blocked writers": the counts a report gives per filesystem.
    pub fn counts(&self) -> String {
        format!(
            "{} freezes ({} failed), {} thaws, frozen {} in total (longest {}), {} slips, {} blocked writers",
            self.freezes,
            self.failed_freezes,
            self.thaws,
            crate::units::fmt_secs(self.total_frozen_ns),
            crate::units::fmt_secs(self.max_frozen_ns),
            self.slips,
            self.blocked_writers
        )
    }
}

/// Default reorder window: the ring buffer delivers events from different CPUs a little out of
/// timestamp order; an event is applied once nothing older can still arrive.
pub const DEFAULT_REORDER_NS: u64 = 50_000_000;

/// A set of finding kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSet(u32);

// One bit a kind.
const _: () = assert!(FindingKind::ALL.len() <= 32);

impl KindSet {
    pub const ALL: Self = Self(u32::MAX);

    pub fn of(kinds: &[FindingKind]) -> Self {
        Self(kinds.iter().fold(0, |bits, &k| bits | 1 << k as u32))
    }

    pub fn contains(self, kind: FindingKind) -> bool {
        self.0 & (1 << kind as u32) != 0
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Freezes longer than this get a `long-freeze` finding.
    pub long_freeze_ns: u64,
    /// How long an event is held for older ones to arrive (0: applied at once, in push order).
    pub reorder_window_ns: u64,
    /// The findings `push` and `tick` build (a check of a few metrics needs few of them; the
    /// summaries count every event whatever this says).
    pub kinds: KindSet,
}

impl Options {
    pub fn with_long_freeze(threshold: std::time::Duration) -> Self {
        Self { long_freeze_ns: u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX), ..Self::default() }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self { long_freeze_ns: 10_000_000_000, reorder_window_ns: DEFAULT_REORDER_NS, kinds: KindSet::ALL }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub findings: Vec<Finding>,
    /// By superblock id.
    pub summaries: BTreeMap<String, Summary>,
}

impl Analysis {
    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

/// Analyses a whole trace: events in timestamp order (ties keep their input order) through one
/// `Correlator`. `end_ns` is when recording stopped (for `left-frozen` durations); None uses the
/// last event's time. Findings come out in time order.
pub fn analyze(events: &[Event], opts: &Options, end_ns: Option<u64>) -> Analysis {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.ts_ns); // stable: equal timestamps keep their order
    let mut correlator = Correlator::new(opts.clone());
    let mut findings = Vec::new();
    for ev in order {
        findings.extend(correlator.push(ev.clone()));
    }
    in_time_order(findings, correlator.finish(end_ns))
}

/// A whole stream's analysis: the findings `push` returned, then those `finish` added, in time
/// order (ties keep that order), with the summaries.
pub fn in_time_order(mut pushed: Vec<Finding>, end: Analysis) -> Analysis {
    pushed.extend(end.findings);
    pushed.sort_by_key(|f| f.ts_ns);
    Analysis { findings: pushed, summaries: end.summaries }
}
