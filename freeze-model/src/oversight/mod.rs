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
mod freezing;
mod frozen;
mod hold;
#[cfg(test)]
mod tests;
mod watchdog;

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    attribution::{Cgroup, Parent},
    correlate::{Finding, FindingKind, messages::state_finding},
    event::{Event, EventKind, ProcessExit, SharedSuperblock},
    holds::HeldBy,
    names::named_enum,
};
use freezing::Freezing;
use frozen::Frozen;
pub use frozen::FrozenNow;
use hold::Hold;
pub use watchdog::ThawOrder;

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

/// What an event changed: how long a freeze lasted when it ended one, and what it made certain.
#[derive(Debug, Default)]
pub struct Pushed {
    pub freeze_ended_after_ns: Option<u64>,
    pub findings: Vec<Finding>,
}

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
        self.track_freezing(ev, sb);
        match ev.kind {
            EventKind::FreezeEnd if ev.ret == Some(0) => self.freeze_returned(ev, sb),
            EventKind::ThawEnd if ev.ret == Some(0) => self.thaw_returned(ev, sb, &mut out),
            EventKind::LevelProbe => out.findings.extend(self.level_probed(ev, sb)),
            EventKind::WriterBlocked => out.findings.extend(self.thaw_blocked(ev, sb)),
            _ => {}
        }
        out
    }

    /// Freeze calls in progress: begun, seen at the gate, returned.
    fn track_freezing(&mut self, ev: &Event, sb: &SharedSuperblock) {
        if let Some(f) = self.freezing.get_mut(&sb.id) {
            f.saw(ev);
        }
        match ev.kind {
            EventKind::FreezeBegin => {
                self.freezing.entry(sb.id.clone()).or_insert_with(|| Freezing::new(ev, sb));
            }
            EventKind::FreezeEnd => {
                self.freezing.remove(&sb.id);
            }
            _ => {}
        }
    }

    /// A freeze call succeeded: one more hold on the filesystem, held again if it was gone.
    fn freeze_returned(&mut self, ev: &Event, sb: &SharedSuperblock) {
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
        let f =
            self.frozen.entry(sb.id.clone()).or_insert_with(|| Frozen::new(sb, ev.ts_ns, alert_after, false));
        f.holds.freeze(ev, hold);
        // A new holder holds it again.
        f.gone_since = None;
    }

    /// A thaw call succeeded: the freeze ends with its last hold, or the holds left may all have
    /// lost their owners already.
    fn thaw_returned(&mut self, ev: &Event, sb: &SharedSuperblock, out: &mut Pushed) {
        let Some(f) = self.frozen.get_mut(&sb.id) else { return };
        f.holds.thaw(ev);
        if ev.level_after == Some(0) || f.holds.is_empty() {
            if let Some(f) = self.frozen.remove(&sb.id) {
                out.freeze_ended_after_ns = Some(ev.ts_ns.saturating_sub(f.since));
            }
        } else {
            out.findings.extend(f.judge_gone(ev.ts_ns));
        }
    }

    /// watch's own probe at start found the filesystem at a freeze level: `frozen-at-start`, and
    /// a frozen one is tracked with an unknown holder (the watchdog leaves it alone).
    fn level_probed(&mut self, ev: &Event, sb: &SharedSuperblock) -> Option<Finding> {
        let level = ev.level_after.unwrap_or(0);
        if level == 0 || self.frozen.contains_key(&sb.id) {
            return None;
        }
        let state = if level >= freeze_common::level::COMPLETE { "frozen" } else { "freezing" };
        let message = format!(
            "{} was already {state} (level {level}) when watch started; who froze it, and when, is \
             unknown, so the watchdog leaves it alone",
            sb.describe()
        );
        if level >= freeze_common::level::COMPLETE {
            self.frozen.insert(sb.id.clone(), Frozen::new(sb, ev.ts_ns, self.opts.alert_frozen_ns, true));
        }
        let mut finding = state_finding(FindingKind::FrozenAtStart, sb, ev.ts_ns, 0, message);
        // How it was told: the level probe's hook (an iterator, or an ioctl hook).
        finding.hook = ev.hook.as_str().into();
        Some(finding)
    }

    /// A writer waits at the gate of a frozen filesystem: `thaw-blocked` when it is the freezer
    /// (or the script that ran it), which then cannot thaw what it froze.
    fn thaw_blocked(&self, ev: &Event, sb: &SharedSuperblock) -> Option<Finding> {
        let f = self.frozen.get(&sb.id)?;
        let (_, hold) = f.holds.iter().find(|(by, h)| {
            *by != HeldBy::Kernel && (h.pid == ev.pid || h.parent.as_ref().is_some_and(|p| p.pid == ev.pid))
        })?;
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
        Task::of_event(ev).onto(&mut finding);
        Some(finding)
    }

    /// The time is `now_ns`: alerts due, owners gone, and what the watchdog would thaw.
    pub fn tick(&mut self, now_ns: u64) -> (Vec<Finding>, Vec<ThawOrder>) {
        let stalled_after = self.opts.alert_stalled_ns;
        let mut findings: Vec<Finding> =
            self.freezing.values_mut().filter_map(|f| f.stalled(now_ns, stalled_after)).collect();
        let mut orders = Vec::new();
        for f in self.frozen.values_mut() {
            findings.extend(f.alert(now_ns, &self.opts));
            match f.watchdog(now_ns, &self.opts) {
                Some(watchdog::Act::Thaw(order)) => orders.push(order),
                Some(watchdog::Act::Say(finding)) => findings.push(finding),
                None => {}
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
}

/// The task a finding names: who did what it is about.
struct Task<'a> {
    pid: u32,
    comm: &'a str,
    parent: &'a Option<Arc<Parent>>,
    cgroup: &'a Option<Arc<Cgroup>>,
}

impl<'a> Task<'a> {
    fn of_event(ev: &'a Event) -> Self {
        Self { pid: ev.pid, comm: &ev.comm, parent: &ev.parent, cgroup: &ev.cgroup }
    }

    fn of_hold(h: &'a Hold) -> Self {
        Self { pid: h.pid, comm: &h.comm, parent: &h.parent, cgroup: &h.cgroup }
    }

    /// Names this task as the finding's.
    fn onto(self, finding: &mut Finding) {
        finding.pid = self.pid;
        finding.comm = self.comm.to_owned();
        finding.parent.clone_from(self.parent);
        finding.cgroup.clone_from(self.cgroup);
    }
}
