//! The assertion language of `freezewatch run` and `check`: `METRIC [@SCOPE] OP VALUE`.
//!
//! Pure: parsing and evaluation need no kernel. Grammar (documented in README):
//! - METRIC: freezes, thaws, failed_freezes, slips, blocked_writers, mounts_while_frozen,
//!   denied_mounts, would_deny_mounts, lost_events, left_frozen (counts); max_frozen, total_frozen (durations).
//! - SCOPE: `@/mount/point`, `@fs=TYPE`, `@dev=MAJOR:MINOR` (filesystems); none means every
//!   superblock. Or who: `@unit=NAME`, `@cgroup=/PATH` (that cgroup and those below it),
//!   `@comm=NAME`, for the metrics counted from findings (slips, failed_freezes,
//!   blocked_writers, mounts_while_frozen).
//! - OP: `==`, `!=`, `<`, `<=`, `>`, `>=`. VALUE: an integer, or a duration with unit (`500ms`).
//! - Shorthands: `no-slips` (`slips == 0`), `frozen @SCOPE` (`freezes @SCOPE >= 1`),
//!   `no-mounts-while-frozen`, `no-lost-events`, `not-left-frozen`.
mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub use eval::{Status, Verdict, evaluate};
pub use parse::{ParseError, parse, parse_file};
use serde::Serialize;

use crate::{correlate::FindingKind, names::named_enum};

named_enum! {
    /// What an assertion measures: counts, or (`max_frozen`, `total_frozen`) durations.
    pub enum Metric {
        Freezes = "freezes",
        Thaws = "thaws",
        FailedFreezes = "failed_freezes",
        Slips = "slips",
        BlockedWriters = "blocked_writers",
        MountsWhileFrozen = "mounts_while_frozen",
        DeniedMounts = "denied_mounts",
        WouldDenyMounts = "would_deny_mounts",
        LostEvents = "lost_events",
        LeftFrozen = "left_frozen",
        MaxFrozen = "max_frozen",
        TotalFrozen = "total_frozen",
    }
}

impl Metric {
    fn is_duration(self) -> bool {
        matches!(self, Metric::MaxFrozen | Metric::TotalFrozen)
    }

    /// The finding kind each of this metric's counts is, for the metrics a task scope can count.
    pub fn counted_finding(self) -> Option<FindingKind> {
        match self {
            Metric::Slips => Some(FindingKind::Slip),
            Metric::FailedFreezes => Some(FindingKind::FreezeFailed),
            Metric::BlockedWriters => Some(FindingKind::BlockedWriter),
            Metric::MountsWhileFrozen => Some(FindingKind::MountWhileFrozen),
            _ => None,
        }
    }

    /// The findings that explain a value of this metric.
    pub fn finding_kinds(self) -> &'static [FindingKind] {
        match self {
            Metric::Slips => &[FindingKind::Slip],
            Metric::FailedFreezes => &[FindingKind::FreezeFailed],
            Metric::BlockedWriters => &[FindingKind::BlockedWriter],
            Metric::MountsWhileFrozen => &[FindingKind::MountWhileFrozen],
            Metric::DeniedMounts | Metric::WouldDenyMounts => &[FindingKind::MountDenied],
            Metric::LeftFrozen => &[FindingKind::LeftFrozen],
            Metric::MaxFrozen | Metric::TotalFrozen => &[FindingKind::LongFreeze, FindingKind::LeftFrozen],
            Metric::Freezes | Metric::Thaws | Metric::LostEvents => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum Scope {
    All,
    Mountpoint(String),
    Fs(String),
    Dev(String),
    /// The task's systemd unit (from its cgroup path).
    Unit(String),
    /// The task's cgroup path, or one below it.
    Cgroup(String),
    /// The task's command name.
    Comm(String),
}

impl Scope {
    /// Whether it selects tasks (who), not filesystems.
    pub fn is_task(&self) -> bool {
        matches!(self, Scope::Unit(_) | Scope::Cgroup(_) | Scope::Comm(_))
    }
}

named_enum! {
    /// How the measured value is compared with the bound.
    pub enum Op {
        Eq = "==",
        Ne = "!=",
        Lt = "<",
        Le = "<=",
        Gt = ">",
        Ge = ">=",
    }
}

impl Op {
    fn holds(self, value: u64, bound: u64) -> bool {
        match self {
            Op::Eq => value == bound,
            Op::Ne => value != bound,
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assertion {
    /// As the user wrote it.
    pub text: String,
    pub metric: Metric,
    pub scope: Scope,
    pub op: Op,
    /// A count, or nanoseconds for duration metrics.
    pub bound: u64,
}
