//! A frozen filesystem as watch tracks it: its holds, when it is alerted on next, whether its
//! owners are gone, and what the watchdog did.
use crate::{
    correlate::{Finding, FindingKind, messages::state_finding},
    event::{SharedSuperblock, Superblock},
    holds::{HeldBy, Holds},
    units::fmt_secs,
};

use super::{Task, ThawOrder, WatchOptions, hold::Hold, watchdog::Watchdog};

pub(super) struct Frozen {
    pub(super) sb: SharedSuperblock,
    pub(super) since: u64,
    pub(super) holds: Holds<Hold>,
    /// Found frozen at start: who holds it is unknown (it may be the kernel), so the watchdog
    /// leaves it alone.
    pub(super) unknown_holder: bool,
    pub(super) next_alert: u64,
    /// Since when nothing holds it: every user-space hold's owner has exited.
    pub(super) gone_since: Option<u64>,
    pub(super) watchdog: Watchdog,
}

/// A filesystem frozen now, as the metrics show it.
#[derive(Debug)]
pub struct FrozenNow<'a> {
    pub sb: &'a Superblock,
    /// Frozen since (CLOCK_MONOTONIC ns).
    pub since: u64,
    /// Every owner of its holds is gone (as `freezer-gone` or `suspend-orphaned` said).
    pub gone: bool,
    /// And it is held through its block device (`suspend-orphaned`): the watchdog leaves it.
    pub suspend_orphaned: bool,
}

impl Frozen {
    /// Frozen at `since`, alerted on `alert_after` later; `unknown_holder` when found so.
    pub(super) fn new(sb: &SharedSuperblock, since: u64, alert_after: u64, unknown_holder: bool) -> Self {
        Self {
            sb: sb.clone(),
            since,
            holds: Holds::default(),
            unknown_holder,
            next_alert: since + alert_after,
            gone_since: None,
            watchdog: Watchdog::Idle,
        }
    }

    /// The thaw the watchdog orders at `mountpoint`, its `attempt`th, for `reason`.
    pub(super) fn order(
        &self,
        mountpoint: String,
        reason: String,
        frozen_for_ns: u64,
        attempt: u32,
    ) -> ThawOrder {
        ThawOrder {
            sb: self.sb.clone(),
            mountpoint,
            reason,
            frozen_for_ns,
            frozen_by: self.holders(),
            since: self.since,
            attempt,
        }
    }

    /// At `at` (an owner's exit, or a thaw that ended another hold): if every hold left has lost
    /// its owner, and that was not said yet, the finding that says so: `freezer-gone`, or
    /// `suspend-orphaned` when a block device holds it.
    pub(super) fn judge_gone(&mut self, at: u64) -> Option<Finding> {
        // Only freezes made by processes have owners that can go away.
        if self.gone_since.is_some() || self.holds.is_empty() || self.holds.any_by(HeldBy::Kernel) {
            return None;
        }
        let gone: Vec<(u64, String)> =
            self.holds.iter().map(|(_, h)| h.gone(&self.sb)).collect::<Option<_>>()?;
        self.gone_since = Some(gone.iter().map(|(t, _)| *t).max().unwrap_or(at));
        let frozen_for = at.saturating_sub(self.since);
        let said: Vec<String> = gone.into_iter().map(|(_, s)| s).collect();
        Some(match self.block_device_hold() {
            Some(hold) => {
                let message = format!(
                    "{}; {} stays frozen under its suspended block device, frozen for {}, and the \
                     watchdog never thaws a block-device freeze: {}",
                    said.join("; "),
                    self.sb.describe(),
                    fmt_secs(frozen_for),
                    self.how_to_resume(hold)
                );
                about(FindingKind::SuspendOrphaned, self, frozen_for, message)
            }
            None => {
                let message = format!(
                    "{}; nothing holds the freeze of {} now, frozen for {}",
                    said.join("; "),
                    self.sb.describe(),
                    fmt_secs(frozen_for)
                );
                about(FindingKind::FreezerGone, self, frozen_for, message)
            }
        })
    }

    /// Whether only the kernel or the block device may end it: the watchdog leaves it alone.
    pub(super) fn not_ours_to_thaw(&self) -> bool {
        self.unknown_holder || self.holds.iter().any(|(by, _)| by != HeldBy::Process)
    }

    /// The hold made through the block device, if any.
    pub(super) fn block_device_hold(&self) -> Option<&Hold> {
        self.holds.iter().find(|(by, _)| *by == HeldBy::BlockDevice).map(|(_, h)| h)
    }

    /// What ends a block-device freeze of this filesystem.
    pub(super) fn how_to_resume(&self, hold: &Hold) -> String {
        match &hold.device_name {
            Some(name) => format!("only `dmsetup resume {name}` ends it"),
            None => format!(
                "only resuming its block device {} ({}) ends it (`dmsetup resume`, or the thaw of the \
                 block device by whatever froze it)",
                self.sb.s_id, self.sb.dev
            ),
        }
    }

    /// "fsfreeze[12] ← backup.sh[10], …": who froze it, as recorded (made only when said).
    pub(super) fn holders(&self) -> String {
        if self.unknown_holder && self.holds.is_empty() {
            return "an unknown holder (it was frozen when watch started)".to_owned();
        }
        self.holds.iter().map(|(_, h)| h.recorded_owner()).collect::<Vec<_>>().join(", ")
    }

    /// `frozen-too-long`, when due at `now_ns` (then next due `every_ns` later).
    pub(super) fn alert(&mut self, now_ns: u64, opts: &WatchOptions) -> Option<Finding> {
        if now_ns < self.next_alert {
            return None;
        }
        self.next_alert = now_ns + opts.alert_every_ns;
        let frozen_for = now_ns.saturating_sub(self.since);
        let kernel = if self.holds.any_by(HeldBy::Kernel) {
            " (the kernel holds it)"
        } else if self.block_device_hold().is_some() {
            " (through its block device: a device-mapper suspend, which the watchdog never thaws)"
        } else {
            ""
        };
        let message = format!(
            "{} has been frozen for {} (over --alert-frozen {}), frozen by {}{kernel}, and still is",
            self.sb.describe(),
            fmt_secs(frozen_for),
            fmt_secs(opts.alert_frozen_ns),
            self.holders()
        );
        Some(about(FindingKind::FrozenTooLong, self, frozen_for, message))
    }
}

/// A finding about a frozen filesystem, naming its first holder as the task.
pub(super) fn about(kind: FindingKind, f: &Frozen, frozen_for: u64, message: String) -> Finding {
    let mut finding = state_finding(kind, &f.sb, f.since, frozen_for, message);
    if let Some((_, h)) = f.holds.iter().next() {
        Task::of_hold(h).onto(&mut finding);
    }
    finding
}
