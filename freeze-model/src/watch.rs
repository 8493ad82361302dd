//! The judgement of `freezewatch watch`, pure: which filesystems are frozen, by whom, for how long,
//! and what to say or do about it while it lasts.
//!
//! - `frozen-too-long` once a freeze passes `alert_frozen`, then again every `alert_every`.
//! - `freezer-gone` when every user-space hold's owner has exited and the filesystem is still
//!   frozen. The owner of a hold is the process that made the freeze call if it still ran
//!   `SETTLE_NS` after the call returned (qemu-ga, a backup daemon, a script doing the ioctl
//!   itself), else the parent recorded at the call (the script around `fsfreeze -f`, which exits
//!   at once). An init or a subreaper owns nothing: a prompt freezer whose parent is one (a
//!   daemon's child, `setsid fsfreeze -f`) leaves its hold unowned, which counts as gone. Exits
//!   come from the kernel (`process_exit` events, for the very process recorded at the freeze),
//!   so the finding says how the owner ended and when. Tools that freeze and thaw from separate
//!   short-lived processes (Velero's hooks) raise it too, which is why it is a warning and the
//!   watchdog waits `orphan_grace` before acting.
//! - `suspend-orphaned` (an error) instead, when a hold made through the block device
//!   (`via: block-device`: `dmsetup suspend`, LVM) has lost its owner: the device stays
//!   suspended until someone resumes it, and the finding says how (`dmsetup resume NAME`).
//! - The watchdog (`thaw_orphans`, `thaw_after`) asks the caller to thaw, or in audit mode says it
//!   would have; never for a freeze the kernel holds or one made through the block device
//!   (device-mapper suspend): a FITHAW there would thaw the filesystem under a device that is
//!   still suspended, in the middle of the snapshot it exists for. A thaw that fails is tried
//!   again (`watchdog-failed`), after 1 s, then twice as long each time, at most every 5 min.
//!
use std::collections::BTreeMap;

use crate::{
    attribution::{Cgroup, Parent},
    correlate::{Finding, FindingKind, messages::state_finding},
    event::{Event, EventKind, ProcessExit, SharedSuperblock, Superblock},
    holds::{HeldBy, Holds},
    names::named_enum,
    units::fmt_secs,
};

named_enum! {
    /// What the watchdog does with a filesystem it would thaw.
    pub enum ThawMode {
        /// Only say what it would thaw.
        Audit = "audit",
        /// Thaw it (FITHAW on its mount point).
        Enforce = "enforce",
    }
}

#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Raise `freeze-stalled` when a freeze call has not returned after this long.
    pub alert_stalled_ns: u64,
    pub alert_frozen_ns: u64,
    pub alert_every_ns: u64,
    pub thaw_orphans: Option<ThawMode>,
    pub orphan_grace_ns: u64,
    /// Thaw (or in audit mode, say so) any user-space freeze older than this.
    pub thaw_after_ns: Option<u64>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            alert_stalled_ns: 30_000_000_000,
            alert_frozen_ns: 60_000_000_000,
            alert_every_ns: 300_000_000_000,
            thaw_orphans: None,
            orphan_grace_ns: 300_000_000_000,
            thaw_after_ns: None,
        }
    }
}

/// How long the process that made a freeze call must still run after the call returned to own
/// the freeze itself; one that exits sooner (`fsfreeze -f`) leaves it to its parent.
pub const SETTLE_NS: u64 = 1_000_000_000;

/// The first wait before a failed watchdog thaw is tried again, and the longest.
const RETRY_FIRST_NS: u64 = 1_000_000_000;
const RETRY_MAX_NS: u64 = 300_000_000_000;

/// What the watchdog has done about a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watchdog {
    Idle,
    /// It ordered a thaw (or, in audit mode, said it would have): once per freeze.
    Acted,
    /// Its thaw failed; the next try is due at `at` (the `attempt`th).
    Retry {
        at: u64,
        attempt: u32,
    },
}

/// A process's exit, as the kernel reported it.
#[derive(Clone, Debug)]
struct Exited {
    at: u64,
    how: ProcessExit,
}

/// One successful freeze call still in force.
#[derive(Clone, Debug)]
struct Hold {
    /// For a block-device hold: the device-mapper name of the device, when known.
    device_name: Option<String>,
    /// The process that made the call.
    pid: u32,
    comm: String,
    parent: Option<std::sync::Arc<Parent>>,
    cgroup: Option<std::sync::Arc<Cgroup>>,
    /// When the call returned.
    returned_ns: u64,
    caller_exit: Option<Exited>,
    parent_exit: Option<Exited>,
}

impl Hold {
    /// When its owner went and what to say of it; `None` while it is held (its caller still
    /// runs, or ran past `SETTLE_NS` and still does, or its parent owns it and still runs).
    fn gone(&self, sb: &Superblock) -> Option<(u64, String)> {
        let caller = format!("{}[{}]", self.comm, self.pid);
        let exit = self.caller_exit.as_ref()?;
        let after = fmt_secs(exit.at.saturating_sub(self.returned_ns));
        if exit.at >= self.returned_ns + SETTLE_NS {
            return Some((
                exit.at,
                format!("{caller} {} {after} after freezing {}", exit.how.describe(), sb.describe()),
            ));
        }
        let ran =
            format!("{caller}, which froze {} and {} {after} later", sb.describe(), exit.how.describe());
        match &self.parent {
            Some(p) if p.reaper => Some((
                exit.at,
                format!(
                    "{ran}, was started by {}[{}], an init or subreaper, which holds nothing",
                    p.comm, p.pid
                ),
            )),
            Some(p) if p.exiting => Some((
                exit.at,
                format!("{ran}, was started by {}[{}], which was exiting already", p.comm, p.pid),
            )),
            Some(p) => {
                let pe = self.parent_exit.as_ref()?;
                let at = pe.at.max(exit.at);
                Some((at, format!("{}[{}] {}; it had run {ran}", p.comm, p.pid, pe.how.describe())))
            }
            None => Some((exit.at, format!("{ran}; who started it is unknown"))),
        }
    }

    /// Takes the exit of process `pid` at `at`, when it is this hold's caller or parent.
    fn exited(&mut self, pid: u32, at: u64, how: &ProcessExit) {
        if self.pid == pid && self.caller_exit.is_none() {
            self.caller_exit = Some(Exited { at, how: how.clone() });
        }
        if self.parent.as_ref().is_some_and(|p| p.pid == pid) && self.parent_exit.is_none() {
            self.parent_exit = Some(Exited { at, how: how.clone() });
        }
    }

    fn recorded_owner(&self) -> String {
        match &self.parent {
            Some(p) => format!("{}[{}] ← {}[{}]", self.comm, self.pid, p.comm, p.pid),
            None => format!("{}[{}]", self.comm, self.pid),
        }
    }
}

struct Frozen {
    sb: SharedSuperblock,
    since: u64,
    holds: Holds<Hold>,
    /// Found frozen at start: who holds it is unknown (it may be the kernel), so the watchdog
    /// leaves it alone.
    unknown_holder: bool,
    next_alert: u64,
    /// Since when nothing holds it: every user-space hold's owner has exited.
    gone_since: Option<u64>,
    watchdog: Watchdog,
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

/// What an event changed: how long a freeze lasted when it ended one, and what it made certain.
#[derive(Debug, Default)]
pub struct Pushed {
    pub freeze_ended_after_ns: Option<u64>,
    pub findings: Vec<Finding>,
}

impl Frozen {
    /// Frozen at `since`, alerted on `alert_after` later; `unknown_holder` when found so.
    fn new(sb: &SharedSuperblock, since: u64, alert_after: u64, unknown_holder: bool) -> Self {
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
    fn order(&self, mountpoint: String, reason: String, frozen_for_ns: u64, attempt: u32) -> ThawOrder {
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
    fn judge_gone(&mut self, at: u64) -> Option<Finding> {
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
    fn not_ours_to_thaw(&self) -> bool {
        self.unknown_holder || self.holds.iter().any(|(by, _)| by != HeldBy::Process)
    }

    /// The hold made through the block device, if any.
    fn block_device_hold(&self) -> Option<&Hold> {
        self.holds.iter().find(|(by, _)| *by == HeldBy::BlockDevice).map(|(_, h)| h)
    }

    /// What ends a block-device freeze of this filesystem.
    fn how_to_resume(&self, hold: &Hold) -> String {
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
    fn holders(&self) -> String {
        if self.unknown_holder && self.holds.is_empty() {
            return "an unknown holder (it was frozen when watch started)".to_owned();
        }
        self.holds.iter().map(|(_, h)| h.recorded_owner()).collect::<Vec<_>>().join(", ")
    }
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
    since: u64,
    /// 1 for the first try, more for the retries of a thaw that failed.
    pub attempt: u32,
}

/// A freeze call in progress (freeze_super has not returned).
struct Freezing {
    sb: SharedSuperblock,
    since: u64,
    task: String,
    /// The level the filesystem was last seen at.
    level: u32,
    /// Writers seen waiting at its gate meanwhile (the first few), and how many.
    waiters: Vec<String>,
    waiting: usize,
    said: bool,
}

/// Waiting writers a `freeze-stalled` finding names at most.
const WAITERS_NAMED: usize = 8;

/// The device-mapper name of a block device, from its `major:minor`.
pub type DeviceNames = Box<dyn Fn(&str) -> Option<String> + Send>;

#[derive(Default)]
pub struct Watch {
    opts: WatchOptions,
    frozen: BTreeMap<String, Frozen>,
    freezing: BTreeMap<String, Freezing>,
    device_names: Option<DeviceNames>,
}

impl Watch {
    pub fn new(opts: WatchOptions) -> Self {
        Self { opts, frozen: BTreeMap::new(), freezing: BTreeMap::new(), device_names: None }
    }

    /// Names the devices of block-device freezes with `names` (the caller reads sysfs), so
    /// that `suspend-orphaned` can say `dmsetup resume NAME`.
    pub fn with_device_names(mut self, names: DeviceNames) -> Self {
        self.device_names = Some(names);
        self
    }

    /// The filesystems frozen now.
    pub fn frozen(&self) -> impl Iterator<Item = FrozenNow<'_>> {
        self.frozen.values().map(|f| FrozenNow {
            sb: &f.sb,
            since: f.since,
            gone: f.gone_since.is_some(),
            suspend_orphaned: f.gone_since.is_some() && f.block_device_hold().is_some(),
        })
    }

    /// Takes the next event.
    pub fn push(&mut self, ev: &Event) -> Pushed {
        let mut out = Pushed::default();
        if ev.kind == EventKind::ProcessExit {
            if let Some(how) = &ev.exit {
                self.exited(ev.pid, ev.ts_ns, how, &mut out.findings);
            }
            return out;
        }
        let Some(sb) = ev.sb.as_ref() else { return out };
        if let Some(f) = self.freezing.get_mut(&sb.id) {
            if let Some(level) = ev.level_after {
                f.level = level;
            }
            if ev.kind == EventKind::WriterBlocked {
                f.waiting += 1;
                if f.waiters.len() < WAITERS_NAMED {
                    f.waiters.push(format!("{}[{}]", ev.comm, ev.pid));
                }
            }
        }
        match ev.kind {
            EventKind::FreezeBegin => {
                self.freezing.entry(sb.id.clone()).or_insert_with(|| Freezing {
                    sb: sb.clone(),
                    since: ev.ts_ns,
                    task: ev.who(),
                    level: ev.level_after.unwrap_or(0),
                    waiters: Vec::new(),
                    waiting: 0,
                    said: false,
                });
            }
            EventKind::FreezeEnd => {
                self.freezing.remove(&sb.id);
            }
            _ => {}
        }
        match ev.kind {
            EventKind::FreezeEnd if ev.ret == Some(0) => {
                let by = HeldBy::of(ev);
                let device_name = match (&self.device_names, by) {
                    (Some(names), HeldBy::BlockDevice) => names(&sb.dev),
                    _ => None,
                };
                let hold = Hold {
                    device_name,
                    pid: ev.pid,
                    comm: ev.comm.clone(),
                    parent: ev.parent.clone(),
                    cgroup: ev.cgroup.clone(),
                    returned_ns: ev.ts_ns,
                    caller_exit: None,
                    parent_exit: None,
                };
                let alert_after = self.opts.alert_frozen_ns;
                let f = self
                    .frozen
                    .entry(sb.id.clone())
                    .or_insert_with(|| Frozen::new(sb, ev.ts_ns, alert_after, false));
                f.holds.freeze(ev, hold);
                // A new holder holds it again.
                f.gone_since = None;
            }
            EventKind::ThawEnd if ev.ret == Some(0) => {
                let Some(f) = self.frozen.get_mut(&sb.id) else { return out };
                f.holds.thaw(ev);
                if ev.level_after == Some(0) || f.holds.is_empty() {
                    if let Some(f) = self.frozen.remove(&sb.id) {
                        out.freeze_ended_after_ns = Some(ev.ts_ns.saturating_sub(f.since));
                    }
                } else {
                    // The holds left may all have lost their owners already.
                    out.findings.extend(f.judge_gone(ev.ts_ns));
                }
            }
            EventKind::LevelProbe => {
                let level = ev.level_after.unwrap_or(0);
                if level == 0 || self.frozen.contains_key(&sb.id) {
                    return out;
                }
                let state = if level >= freeze_common::level::COMPLETE { "frozen" } else { "freezing" };
                let message = format!(
                    "{} was already {state} (level {level}) when watch started; who froze it, and when, is \
                     unknown, so the watchdog leaves it alone",
                    sb.describe()
                );
                out.findings.push(state_finding(FindingKind::FrozenAtStart, sb, ev.ts_ns, 0, message));
                if level >= freeze_common::level::COMPLETE {
                    self.frozen
                        .insert(sb.id.clone(), Frozen::new(sb, ev.ts_ns, self.opts.alert_frozen_ns, true));
                }
            }
            EventKind::WriterBlocked => {
                // The freezer (or the script that ran it) waiting at the gate it closed.
                let Some(f) = self.frozen.get(&sb.id) else { return out };
                let own = f
                    .holds
                    .iter()
                    .find(|(by, h)| {
                        *by != HeldBy::Kernel
                            && (h.pid == ev.pid || h.parent.as_ref().is_some_and(|p| p.pid == ev.pid))
                    })
                    .map(|(_, h)| h);
                if let Some(hold) = own {
                    let message = format!(
                        "{} waits at the gate of {}, which it froze ({}): it cannot thaw it; only \
                         another process's thaw (or a reboot) ends this",
                        ev.who(),
                        f.sb.describe(),
                        hold.recorded_owner()
                    );
                    let mut finding = state_finding(
                        FindingKind::ThawBlocked,
                        &f.sb,
                        ev.ts_ns,
                        ev.ts_ns.saturating_sub(f.since),
                        message,
                    );
                    finding.pid = ev.pid;
                    finding.comm.clone_from(&ev.comm);
                    finding.parent.clone_from(&ev.parent);
                    finding.cgroup.clone_from(&ev.cgroup);
                    out.findings.push(finding);
                }
            }
            _ => {}
        }
        out
    }

    /// The time is `now_ns`: alerts due, owners gone, and what the watchdog would thaw.
    pub fn tick(&mut self, now_ns: u64) -> (Vec<Finding>, Vec<ThawOrder>) {
        let (mut findings, mut orders) = (Vec::new(), Vec::new());
        for f in self.freezing.values_mut() {
            let stalled_for = now_ns.saturating_sub(f.since);
            if f.said || stalled_for < self.opts.alert_stalled_ns {
                continue;
            }
            f.said = true;
            let gate = match f.level {
                0 => "not yet at level 1 (it is syncing or waiting for the gate's lock)".to_owned(),
                1 => "at level 1 (write): it waits for writes in flight to end, or for its sync".to_owned(),
                2 => "at level 2 (page fault)".to_owned(),
                3 => "at level 3 (fs-internal): the filesystem's own writers, or its freeze_fs".to_owned(),
                l => format!("at level {l}"),
            };
            let waiters = match f.waiting {
                0 => "no writer is seen waiting at its gate".to_owned(),
                n => {
                    let more = n.saturating_sub(f.waiters.len());
                    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                    format!("{n} writers wait at its gate: {}{more}", f.waiters.join(", "))
                }
            };
            let message = format!(
                "the freeze of {} by {} has not returned after {}; it is {gate}; {waiters} (the \
                 writes in flight it waits for cannot be named: the kernel only counts them)",
                f.sb.describe(),
                f.task,
                fmt_secs(stalled_for)
            );
            findings.push(state_finding(FindingKind::FreezeStalled, &f.sb, f.since, stalled_for, message));
        }
        for f in self.frozen.values_mut() {
            let frozen_for = now_ns.saturating_sub(f.since);
            if now_ns >= f.next_alert {
                f.next_alert = now_ns + self.opts.alert_every_ns;
                let kernel = if f.holds.any_by(HeldBy::Kernel) {
                    " (the kernel holds it)"
                } else if f.block_device_hold().is_some() {
                    " (through its block device: a device-mapper suspend, which the watchdog never thaws)"
                } else {
                    ""
                };
                let message = format!(
                    "{} has been frozen for {} (over --alert-frozen {}), frozen by {}{kernel}, and still is",
                    f.sb.describe(),
                    fmt_secs(frozen_for),
                    fmt_secs(self.opts.alert_frozen_ns),
                    f.holders()
                );
                findings.push(about(FindingKind::FrozenTooLong, f, frozen_for, message));
            }
            if f.not_ours_to_thaw() {
                continue;
            }
            match f.watchdog {
                Watchdog::Acted => continue,
                Watchdog::Retry { at, attempt } if now_ns >= at => {
                    if let Some(mountpoint) = f.sb.mountpoint.clone() {
                        let reason = format!("try {attempt}, after a failed thaw");
                        orders.push(f.order(mountpoint, reason, frozen_for, attempt));
                    }
                    f.watchdog = Watchdog::Acted;
                    continue;
                }
                Watchdog::Retry { .. } => continue,
                Watchdog::Idle => {}
            }
            let orphaned = self.opts.thaw_orphans.and_then(|mode| {
                let since = f.gone_since?;
                (now_ns.saturating_sub(since) >= self.opts.orphan_grace_ns)
                    .then(|| (mode, format!("its freezer has been gone for {}", fmt_secs(now_ns - since))))
            });
            let overdue = self.opts.thaw_after_ns.filter(|limit| frozen_for >= *limit).map(|limit| {
                let mode = self.opts.thaw_orphans.unwrap_or(ThawMode::Enforce);
                (mode, format!("frozen longer than --thaw-after {}", fmt_secs(limit)))
            });
            let Some((mode, reason)) = orphaned.or(overdue) else { continue };
            f.watchdog = Watchdog::Acted;
            match (mode, f.sb.mountpoint.clone()) {
                (ThawMode::Enforce, Some(mountpoint)) => {
                    orders.push(f.order(mountpoint, reason, frozen_for, 1))
                }
                (ThawMode::Enforce, None) => {
                    let message = format!(
                        "the watchdog would thaw {} ({reason}; frozen by {}) but knows no mount point of it",
                        f.sb.describe(),
                        f.holders()
                    );
                    findings.push(about(FindingKind::WatchdogWouldThaw, f, frozen_for, message));
                }
                (ThawMode::Audit, _) => {
                    let message = format!(
                        "the watchdog would thaw {} ({reason}; frozen for {} by {}); audit mode: left as it is",
                        f.sb.describe(),
                        fmt_secs(frozen_for),
                        f.holders()
                    );
                    findings.push(about(FindingKind::WatchdogWouldThaw, f, frozen_for, message));
                }
            }
        }
        (findings, orders)
    }

    /// Process `pid` exited at `at`: the holds it owned end, and a filesystem none of whose
    /// user-space holds has an owner left is said to be gone.
    fn exited(&mut self, pid: u32, at: u64, how: &ProcessExit, findings: &mut Vec<Finding>) {
        for f in self.frozen.values_mut() {
            for (by, h) in f.holds.iter_mut() {
                if by != HeldBy::Kernel {
                    h.exited(pid, at, how);
                }
            }
            findings.extend(f.judge_gone(at));
        }
    }

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

/// A finding about a frozen filesystem, naming its first holder as the task.
fn about(kind: FindingKind, f: &Frozen, frozen_for: u64, message: String) -> Finding {
    let mut finding = state_finding(kind, &f.sb, f.since, frozen_for, message);
    if let Some((_, h)) = f.holds.iter().next() {
        finding.pid = h.pid;
        finding.comm.clone_from(&h.comm);
        finding.parent.clone_from(&h.parent);
        finding.cgroup.clone_from(&h.cgroup);
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::tests::{ev, freeze, thaw},
        event::FreezeVia,
    };

    const S: u64 = 1_000_000_000;

    fn opts() -> WatchOptions {
        WatchOptions {
            alert_stalled_ns: 2 * S,
            alert_frozen_ns: 10 * S,
            alert_every_ns: 30 * S,
            thaw_orphans: Some(ThawMode::Enforce),
            orphan_grace_ns: 5 * S,
            thaw_after_ns: None,
        }
    }

    /// fsfreeze[10], started by backup.sh[9]; its call returns at `at + 10`.
    fn frozen_by_script(w: &mut Watch, at: u64) {
        for mut e in freeze(at) {
            e.parent =
                Some(Parent { pid: 9, comm: "backup.sh".into(), reaper: false, exiting: false }.into());
            w.push(&e);
        }
    }

    /// Process `pid` (named `comm`) exits at `at` with exit code `code` (wait(2) encoding).
    fn exit(w: &mut Watch, pid: u32, comm: &str, at: u64, code: u32) -> Vec<Finding> {
        let mut e = Event::new(
            EventKind::ProcessExit,
            crate::event::Hook::TpBtfProcessExit,
            at,
            pid,
            pid,
            comm.into(),
        );
        e.exit = Some(ProcessExit::from_code(code));
        w.push(&e).findings
    }

    const SIGKILL: u32 = 9;

    /// Two holders (6.6+ nesting), each its own owner: qemu-ga[10] froze at 0, agent[20] at 1 s.
    fn held_twice(w: &mut Watch) {
        for mut e in freeze(0) {
            e.comm = "qemu-ga".into();
            w.push(&e);
        }
        for mut e in freeze(S) {
            e.pid = 20;
            e.comm = "agent".into();
            w.push(&e);
        }
    }

    fn kinds(f: &[Finding]) -> Vec<FindingKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn frozen_too_long_comes_at_the_threshold_and_again_at_the_cadence() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        assert!(w.tick(9 * S).0.is_empty());
        let (f, _) = w.tick(10 * S + 20);
        assert_eq!(kinds(&f), [FindingKind::FrozenTooLong]);
        assert!(f[0].message.contains("frozen by fsfreeze[10] ← backup.sh[9]"), "{}", f[0].message);
        assert_eq!((f[0].pid, f[0].comm.as_str()), (10, "fsfreeze"));
        assert!(w.tick(20 * S).0.is_empty(), "not again before the cadence");
        assert_eq!(kinds(&w.tick(41 * S).0), [FindingKind::FrozenTooLong]);
        for e in thaw(42 * S, 0) {
            w.push(&e);
        }
        assert!(w.tick(100 * S).0.is_empty(), "thawed: nothing more");
    }

    #[test]
    fn a_freezer_whose_script_still_runs_is_not_gone() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        // fsfreeze exits at once (as it does); the script around it still runs.
        assert!(exit(&mut w, 10, "fsfreeze", S / 100, 0).is_empty());
        assert!(exit(&mut w, 4242, "unrelated", S, SIGKILL).is_empty(), "another process's exit");
        let (f, orders) = w.tick(8 * S);
        assert!(f.is_empty() && orders.is_empty());
        assert_eq!(w.frozen().filter(|f| f.gone).count(), 0);
    }

    #[test]
    fn a_killed_script_is_gone_and_the_watchdog_thaws_after_the_grace() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        assert!(exit(&mut w, 10, "fsfreeze", S / 100, 0).is_empty());
        let f = exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL);
        assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
        assert_eq!(
            f[0].message,
            "backup.sh[9] was killed by SIGKILL; it had run fsfreeze[10], which froze ext4 7:0 (/mnt) and \
             exited with status 0 0.010s later; nothing holds the freeze of ext4 7:0 (/mnt) now, frozen for 2.000s"
        );
        assert_eq!(w.frozen().filter(|f| f.gone).count(), 1);
        assert!(w.tick(6 * S).1.is_empty(), "not before the grace period");
        let (_, orders) = w.tick(7 * S);
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].mountpoint, "/mnt");
        assert!(orders[0].reason.contains("gone for 5.000s"), "{}", orders[0].reason);
        assert!(w.tick(8 * S).1.is_empty(), "once");
        let done = w.thawed(&orders[0], 8 * S, Ok(()));
        assert_eq!(done.kind, FindingKind::ThawedByWatchdog);
        assert!(
            done.message.contains("frozen for 8.000s by fsfreeze[10] ← backup.sh[9]"),
            "{}",
            done.message
        );
    }

    #[test]
    fn a_long_lived_freezer_owns_its_freeze_and_is_gone_when_killed() {
        let mut w = Watch::new(opts());
        // qemu-ga[10], a daemon whose parent is init.
        for mut e in freeze(0) {
            e.comm = "qemu-ga".into();
            e.parent = Some(Parent { pid: 1, comm: "systemd".into(), reaper: true, exiting: false }.into());
            w.push(&e);
        }
        assert!(w.tick(3 * S).0.is_empty(), "still running: it holds it");
        let f = exit(&mut w, 10, "qemu-ga", 3 * S + 10, SIGKILL);
        assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
        assert_eq!(
            f[0].message,
            "qemu-ga[10] was killed by SIGKILL 3.000s after freezing ext4 7:0 (/mnt); nothing holds the \
             freeze of ext4 7:0 (/mnt) now, frozen for 3.000s"
        );
        assert_eq!((f[0].pid, f[0].comm.as_str()), (10, "qemu-ga"));
        assert_eq!(w.tick(8 * S + 10).1.len(), 1, "thawed after the grace");
    }

    #[test]
    fn a_prompt_freezer_whose_parent_is_a_reaper_leaves_its_freeze_unowned() {
        let mut w = Watch::new(opts());
        // `setsid fsfreeze -f`: its parent is init by the time it runs.
        for mut e in freeze(0) {
            e.parent = Some(Parent { pid: 1, comm: "init".into(), reaper: true, exiting: false }.into());
            w.push(&e);
        }
        let f = exit(&mut w, 10, "fsfreeze", S / 2, 0);
        assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
        assert!(
            f[0].message.starts_with(
                "fsfreeze[10], which froze ext4 7:0 (/mnt) and exited with status 0 0.500s later, was started \
                 by init[1], an init or subreaper, which holds nothing"
            ),
            "{}",
            f[0].message
        );
        // A prompt freezer with a parent that is not a reaper: the parent holds it.
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        assert!(exit(&mut w, 10, "fsfreeze", S / 2, 0).is_empty());
        // The same, ending later than the settle time: it held it itself.
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        let f = exit(&mut w, 10, "fsfreeze", 2 * S, 256);
        assert_eq!(kinds(&f), [FindingKind::FreezerGone]);
        assert!(
            f[0].message.starts_with("fsfreeze[10] exited with status 1 2.000s after freezing"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_thaw_before_the_exit_leaves_nothing_to_say_and_a_second_holder_keeps_it_held() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        for e in thaw(S, 0) {
            w.push(&e);
        }
        assert!(exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL).is_empty(), "thawed before it died");
        // Two holders: one gone is not enough.
        let mut w = Watch::new(opts());
        held_twice(&mut w);
        assert!(exit(&mut w, 10, "qemu-ga", 3 * S, SIGKILL).is_empty(), "agent[20] still holds it");
        assert_eq!(kinds(&exit(&mut w, 20, "agent", 4 * S, SIGKILL)), [FindingKind::FreezerGone]);
    }

    #[test]
    fn audit_only_says_and_kernel_freezes_are_never_touched() {
        let mut w = Watch::new(WatchOptions { thaw_orphans: Some(ThawMode::Audit), ..opts() });
        frozen_by_script(&mut w, 0);
        exit(&mut w, 10, "fsfreeze", S / 100, 0);
        assert_eq!(kinds(&exit(&mut w, 9, "backup.sh", 2 * S, SIGKILL)), [FindingKind::FreezerGone]);
        let (f, orders) = w.tick(7 * S);
        assert!(orders.is_empty());
        assert_eq!(kinds(&f), [FindingKind::WatchdogWouldThaw]);
        assert!(f[0].message.contains("audit mode"), "{}", f[0].message);

        let mut k = Watch::new(WatchOptions { thaw_after_ns: Some(S), ..opts() });
        for mut e in freeze(0) {
            e.holder = Some("kernel".into());
            k.push(&e);
        }
        assert!(exit(&mut k, 10, "fsfreeze", 3 * S, SIGKILL).is_empty(), "no freezer-gone for the kernel's");
        let (f, orders) = k.tick(20 * S);
        assert!(orders.is_empty(), "a kernel-held freeze is the kernel's to end");
        assert_eq!(kinds(&f), [FindingKind::FrozenTooLong]);
        assert!(f[0].message.contains("the kernel holds it"));
    }

    #[test]
    fn thaw_after_acts_whoever_holds_it_and_a_thaw_ends_the_watch() {
        let mut w = Watch::new(WatchOptions { thaw_orphans: None, thaw_after_ns: Some(3 * S), ..opts() });
        frozen_by_script(&mut w, 0);
        assert!(w.tick(2 * S).1.is_empty());
        let (_, orders) = w.tick(3 * S + 10);
        assert_eq!(orders.len(), 1, "an owner still running does not protect it from --thaw-after");
        let [tb, te] = thaw(4 * S, 0);
        w.push(&tb);
        assert_eq!(w.push(&te).freeze_ended_after_ns, Some(4 * S), "from the freeze's return to the thaw's");
        assert_eq!(w.frozen().count(), 0);
        // A thaw of something never seen frozen changes nothing.
        assert_eq!(w.push(&ev(EventKind::ThawEnd, 5 * S, 4, 0, Some(0))).freeze_ended_after_ns, None);
    }

    #[test]
    fn a_filesystem_frozen_before_watch_is_reported_alerted_on_and_never_thawed() {
        let mut w = Watch::new(WatchOptions { thaw_after_ns: Some(S), ..opts() });
        let mut probe = ev(EventKind::LevelProbe, 0, 4, 4, None);
        probe.holder = None;
        let found = w.push(&probe).findings;
        assert_eq!(kinds(&found), [FindingKind::FrozenAtStart]);
        assert!(
            found[0].message.contains("was already frozen (level 4) when watch started"),
            "{}",
            found[0].message
        );
        assert!(w.push(&probe).findings.is_empty(), "once");
        let (alerts, orders) = w.tick(11 * S);
        assert!(orders.is_empty(), "an unknown holder may be the kernel: the watchdog leaves it");
        assert_eq!(
            kinds(&alerts),
            [FindingKind::FrozenTooLong],
            "no freezer-gone: nobody is known to have gone"
        );
        assert!(alerts[0].message.contains("an unknown holder"), "{}", alerts[0].message);
        let [_, te] = thaw(12 * S, 0);
        assert_eq!(w.push(&te).freeze_ended_after_ns, Some(12 * S + 10), "its thaw ends it");
        let unfrozen = ev(EventKind::LevelProbe, 13 * S, 0, 0, None);
        assert!(w.push(&unfrozen).findings.is_empty(), "an unfrozen filesystem is no news");
    }

    #[test]
    fn a_freeze_that_does_not_return_is_stalled_with_its_level_and_waiters() {
        let mut w = Watch::new(opts());
        let [begin, end] = freeze(0);
        w.push(&begin);
        let mut writer = ev(EventKind::WriterBlocked, S, 1, 1, None);
        writer.pid = 77;
        writer.comm = "dd".into();
        w.push(&writer);
        assert!(w.tick(S).0.is_empty(), "not before --alert-stalled");
        let (found, _) = w.tick(2 * S);
        assert_eq!(kinds(&found), [FindingKind::FreezeStalled]);
        let m = &found[0].message;
        assert!(m.contains("by fsfreeze[10] has not returned after 2.000s"), "{m}");
        assert!(m.contains("at level 1 (write)") && m.contains("1 writers wait at its gate: dd[77]"), "{m}");
        assert!(w.tick(3 * S).0.is_empty(), "once");
        w.push(&end);
        let [b2, _] = freeze(10 * S);
        w.push(&b2);
        let [_, e2] = freeze(10 * S);
        w.push(&e2);
        assert!(
            w.tick(20 * S).0.iter().all(|f| f.kind != FindingKind::FreezeStalled),
            "a freeze that returned is not stalled"
        );
    }

    #[test]
    fn a_freezer_waiting_at_its_own_gate_is_thaw_blocked() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        let mut other = ev(EventKind::WriterBlocked, S, 4, 4, None);
        other.pid = 77;
        other.gate_level = Some(1);
        assert!(w.push(&other).findings.is_empty(), "another writer waiting is the gate working");
        let mut script = other.clone();
        script.pid = 9;
        script.comm = "backup.sh".into();
        let found = w.push(&script).findings;
        assert_eq!(kinds(&found), [FindingKind::ThawBlocked]);
        assert_eq!(found[0].severity, crate::correlate::Severity::Error);
        assert!(
            found[0].message.contains("backup.sh[9] waits at the gate of ext4 7:0 (/mnt), which it froze"),
            "{}",
            found[0].message
        );
    }
    /// `dmsetup[10]`, run by lvm.sh[9], suspends the device under ext4 7:0 (/mnt) at `at`.
    fn suspended_by_script(w: &mut Watch, at: u64) {
        for mut e in freeze(at) {
            e.comm = "dmsetup".into();
            e.via = Some(FreezeVia::BlockDevice);
            e.holder = Some("userspace+may_nest".into());
            e.parent = Some(Parent { pid: 9, comm: "lvm.sh".into(), reaper: false, exiting: false }.into());
            w.push(&e);
        }
    }

    #[test]
    fn a_suspend_whose_owner_is_gone_is_an_error_naming_the_resume_and_is_never_thawed() {
        let opts = WatchOptions { thaw_after_ns: Some(2 * S), ..opts() };
        let names: DeviceNames = Box::new(|dev| (dev == "7:0").then(|| "vg-data".to_owned()));
        let mut w = Watch::new(opts.clone()).with_device_names(names);
        suspended_by_script(&mut w, 0);
        assert!(exit(&mut w, 10, "dmsetup", S / 100, 0).is_empty(), "lvm.sh still runs");
        let f = exit(&mut w, 9, "lvm.sh", 2 * S, SIGKILL);
        assert_eq!(kinds(&f), [FindingKind::SuspendOrphaned]);
        assert_eq!(f[0].severity, crate::correlate::Severity::Error);
        assert_eq!(
            f[0].message,
            "lvm.sh[9] was killed by SIGKILL; it had run dmsetup[10], which froze ext4 7:0 (/mnt) and exited \
             with status 0 0.010s later; ext4 7:0 (/mnt) stays frozen under its suspended block device, \
             frozen for 2.000s, and the watchdog never thaws a block-device freeze: only `dmsetup resume \
             vg-data` ends it"
        );
        let now: Vec<(bool, bool)> = w.frozen().map(|f| (f.gone, f.suspend_orphaned)).collect();
        assert_eq!(now, [(true, true)], "the gauges say its owner is gone, from a suspend");
        // Past the grace and past --thaw-after: still no order, in enforce mode.
        for t in [8 * S, 11 * S, 400 * S] {
            let (said, orders) = w.tick(t);
            assert!(orders.is_empty(), "at {t}: {orders:?}");
            assert!(said.iter().all(|f| f.kind == FindingKind::FrozenTooLong), "{said:?}");
        }
        let (said, _) = w.tick(800 * S);
        assert!(said[0].message.contains("which the watchdog never thaws"), "{}", said[0].message);
        // `dmsetup resume` ends it.
        for mut e in thaw(900 * S, 0) {
            e.via = Some(FreezeVia::BlockDevice);
            w.push(&e);
        }
        assert_eq!(w.frozen().count(), 0);

        // Unnamed (no sysfs name): the block device is named instead.
        let mut w = Watch::new(opts);
        suspended_by_script(&mut w, 0);
        exit(&mut w, 10, "dmsetup", S / 100, 0);
        let f = exit(&mut w, 9, "lvm.sh", 2 * S, SIGKILL);
        assert!(f[0].message.ends_with("only resuming its block device loop0 (7:0) ends it (`dmsetup resume`, or the thaw of the block device by whatever froze it)"), "{}", f[0].message);
    }

    #[test]
    fn a_resume_ends_the_block_device_hold_and_leaves_a_fifreeze_hold() {
        let mut w = Watch::new(opts());
        frozen_by_script(&mut w, 0);
        suspended_by_script(&mut w, S);
        for mut e in thaw(2 * S, 4) {
            e.via = Some(FreezeVia::BlockDevice);
            w.push(&e);
        }
        // Only the FIFREEZE hold is left (fsfreeze[10] has run past the settle time: it owns
        // it): its exit is a plain freezer-gone, and the watchdog thaws after the grace.
        assert_eq!(kinds(&exit(&mut w, 10, "fsfreeze", 3 * S, SIGKILL)), [FindingKind::FreezerGone]);
        assert_eq!(w.tick(9 * S).1.len(), 1);
    }

    #[test]
    fn a_failed_thaw_is_said_and_tried_again_less_and_less_often() {
        let mut w = Watch::new(WatchOptions { thaw_orphans: None, thaw_after_ns: Some(S), ..opts() });
        frozen_by_script(&mut w, 0);
        let (_, orders) = w.tick(S + 10);
        assert_eq!(orders[0].attempt, 1);
        let failed = w.thawed(&orders[0], 2 * S, Err("FITHAW on /mnt: Invalid argument".into()));
        assert_eq!(
            (failed.kind, failed.severity),
            (FindingKind::WatchdogFailed, crate::correlate::Severity::Error)
        );
        assert!(
            failed.message.ends_with("try 1): FITHAW on /mnt: Invalid argument; it tries again in 1.000s"),
            "{}",
            failed.message
        );
        assert!(w.tick(2 * S + S / 2).1.is_empty(), "not before its time");
        let (_, again) = w.tick(3 * S);
        assert_eq!((again.len(), again[0].attempt), (1, 2));
        let failed = w.thawed(&again[0], 3 * S, Err("EIO".into()));
        assert!(failed.message.ends_with("it tries again in 2.000s"), "{}", failed.message);
        assert!(w.tick(4 * S).1.is_empty());
        let (_, third) = w.tick(5 * S);
        assert_eq!(third[0].attempt, 3);
        assert_eq!(w.thawed(&third[0], 5 * S, Ok(())).kind, FindingKind::ThawedByWatchdog);
        assert!(w.tick(100 * S).1.is_empty(), "done");
    }

    #[test]
    fn a_thaw_that_leaves_only_holds_whose_owners_exited_is_freezer_gone_at_the_thaw() {
        let mut w = Watch::new(opts());
        held_twice(&mut w);
        assert!(exit(&mut w, 10, "qemu-ga", 3 * S, SIGKILL).is_empty(), "agent[20] still holds it");
        // agent[20] thaws its own hold: what is left is qemu-ga's, whose owner is gone.
        let [tb, mut te] = thaw(4 * S, 4);
        te.pid = 20;
        w.push(&tb);
        let found = w.push(&te).findings;
        assert_eq!(kinds(&found), [FindingKind::FreezerGone]);
        assert!(found[0].message.starts_with("qemu-ga[10] was killed by SIGKILL"), "{}", found[0].message);
        assert_eq!(w.tick(9 * S + 20).1.len(), 1, "thawed after the grace from the exit");
    }
}
