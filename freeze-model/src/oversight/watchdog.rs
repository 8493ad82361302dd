//! The watchdog: which frozen filesystems to thaw (or, in audit mode, say it would), when a thaw
//! that failed is tried again, and what is said of each thaw. Never a freeze the kernel holds or
//! one made through the block device.
use crate::{
    correlate::{Finding, FindingKind, messages::state_finding},
    event::SharedSuperblock,
    units::fmt_secs,
};

use super::{
    ThawMode, Watch, WatchOptions,
    frozen::{Frozen, about},
};

/// The first wait before a failed watchdog thaw is tried again, and the longest.
const RETRY_FIRST_NS: u64 = 1_000_000_000;
const RETRY_MAX_NS: u64 = 300_000_000_000;

/// What the watchdog has done about a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Watchdog {
    Idle,
    /// It ordered a thaw (or, in audit mode, said it would have): once per freeze.
    Acted,
    /// Its thaw failed; the next try is due at `at` (the `attempt`th).
    Retry {
        at: u64,
        attempt: u32,
    },
}

/// A thaw the watchdog wants done; hand the result back to `Watch::thawed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThawOrder {
    pub sb: SharedSuperblock,
    /// Where to issue FITHAW.
    pub mountpoint: String,
    pub reason: String,
    pub frozen_for_ns: u64,
    /// Who had frozen it, as recorded.
    pub frozen_by: String,
    pub(super) since: u64,
    /// 1 for the first try, more for the retries of a thaw that failed.
    pub attempt: u32,
}

/// What the watchdog does about a frozen filesystem now.
pub(super) enum Act {
    Thaw(ThawOrder),
    /// Say it would thaw (audit mode, or no mount point to thaw at).
    Say(Finding),
}

impl Frozen {
    /// What the watchdog does about this filesystem at `now_ns`, if anything: a retry that is
    /// due, or a first thaw once its freezer has been gone for the grace or it is overdue.
    pub(super) fn watchdog(&mut self, now_ns: u64, opts: &WatchOptions) -> Option<Act> {
        if self.not_ours_to_thaw() {
            return None;
        }
        let frozen_for = now_ns.saturating_sub(self.since);
        match self.watchdog {
            Watchdog::Acted => return None,
            Watchdog::Retry { at, attempt } if now_ns >= at => {
                self.watchdog = Watchdog::Acted;
                let mountpoint = self.sb.mountpoint.clone()?;
                let reason = format!("try {attempt}, after a failed thaw");
                return Some(Act::Thaw(self.order(mountpoint, reason, frozen_for, attempt)));
            }
            Watchdog::Retry { .. } => return None,
            Watchdog::Idle => {}
        }
        let orphaned = opts.thaw_orphans.and_then(|mode| {
            let since = self.gone_since?;
            (now_ns.saturating_sub(since) >= opts.orphan_grace_ns)
                .then(|| (mode, format!("its freezer has been gone for {}", fmt_secs(now_ns - since))))
        });
        let overdue = opts.thaw_after_ns.filter(|limit| frozen_for >= *limit).map(|limit| {
            let mode = opts.thaw_orphans.unwrap_or(ThawMode::Enforce);
            (mode, format!("frozen longer than --thaw-after {}", fmt_secs(limit)))
        });
        let (mode, reason) = orphaned.or(overdue)?;
        self.watchdog = Watchdog::Acted;
        let message = match (mode, self.sb.mountpoint.clone()) {
            (ThawMode::Enforce, Some(mountpoint)) => {
                return Some(Act::Thaw(self.order(mountpoint, reason, frozen_for, 1)));
            }
            (ThawMode::Enforce, None) => format!(
                "the watchdog would thaw {} ({reason}; frozen by {}) but knows no mount point of it",
                self.sb.describe(),
                self.holders()
            ),
            (ThawMode::Audit, _) => format!(
                "the watchdog would thaw {} ({reason}; frozen for {} by {}); audit mode: left as it is",
                self.sb.describe(),
                fmt_secs(frozen_for),
                self.holders()
            ),
        };
        Some(Act::Say(about(FindingKind::WatchdogWouldThaw, self, frozen_for, message)))
    }
}

impl Watch {
    /// The caller carried out `order` at `now_ns` (or failed, with why): the finding that says so.
    /// A failed thaw of a filesystem still frozen is tried again later (`tick` orders it).
    pub fn thawed(&mut self, order: &ThawOrder, now_ns: u64, result: Result<(), String>) -> Finding {
        let frozen_for = now_ns.saturating_sub(order.since);
        if let Err(why) = &result
            && let Some(f) = self.frozen.get_mut(&order.sb.id)
            && f.since == order.since
        {
            let doublings = order.attempt.saturating_sub(1).min(16);
            let wait = (RETRY_FIRST_NS << doublings).min(RETRY_MAX_NS);
            f.watchdog = Watchdog::Retry { at: now_ns + wait, attempt: order.attempt + 1 };
            let message = format!(
                "the watchdog could not thaw {} ({}; try {}): {why}; it tries again in {}",
                order.sb.describe(),
                order.reason,
                order.attempt,
                fmt_secs(wait)
            );
            return state_finding(FindingKind::WatchdogFailed, &order.sb, order.since, frozen_for, message);
        }
        let (kind, message) = match result {
            Ok(()) => (
                FindingKind::ThawedByWatchdog,
                format!(
                    "the watchdog thawed {} ({}): it had been frozen for {} by {}",
                    order.sb.describe(),
                    order.reason,
                    fmt_secs(frozen_for),
                    order.frozen_by
                ),
            ),
            Err(why) => (
                FindingKind::WatchdogWouldThaw,
                format!("the watchdog could not thaw {} ({}): {why}", order.sb.describe(), order.reason),
            ),
        };
        state_finding(kind, &order.sb, order.since, frozen_for, message)
    }
}
