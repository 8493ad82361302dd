//! Correlation: turns a stream of events into findings a user can act on. Pure and deterministic:
//! events are taken in timestamp order (ties keep their input order), one state machine per
//! superblock (unfrozen → freezing → frozen → thawing → unfrozen, nested holders counted).
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Superblock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Something modified a frozen superblock.
    Slip,
    /// A freeze returned an error.
    FreezeFailed,
    /// A thaw of a superblock that was not frozen.
    ThawWithoutFreeze,
    /// Still frozen when the recording ended.
    LeftFrozen,
    /// A freeze that lasted longer than the threshold.
    LongFreeze,
    /// A task waited at the freeze gate (normal: that is what the gate is for).
    BlockedWriter,
    /// An event that looks like a slip but is legitimate; the message says why.
    Exempt,
    /// A mount of a frozen filesystem (its device, a bind from it, or its fsmount) succeeded.
    MountWhileFrozen,
    /// `--deny-mounts` refused a mount of a frozen filesystem (enforce), or would have (audit).
    MountDenied,
}

impl FindingKind {
    pub fn severity(self) -> Severity {
        match self {
            Self::Slip | Self::LeftFrozen | Self::MountWhileFrozen => Severity::Error,
            Self::FreezeFailed | Self::ThawWithoutFreeze | Self::LongFreeze => Severity::Warning,
            Self::BlockedWriter | Self::Exempt | Self::MountDenied => Severity::Info,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// When it happened (CLOCK_MONOTONIC ns; for durations, the start).
    pub ts_ns: u64,
    pub sb: Superblock,
    pub pid: u32,
    pub comm: String,
    pub hook: String,
    /// Freeze level of the superblock at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// One sentence a person can read.
    pub message: String,
    /// Kernel stack of the event behind the finding, innermost first, when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<String>>,
}

/// Where a superblock stands at the end of the analysed events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SbState {
    #[default]
    Unfrozen,
    /// freeze_super is running; the level is in `Summary::level`.
    Freezing,
    Frozen,
    Thawing,
}

/// Per-superblock totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub sb: Option<Superblock>,
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

#[derive(Clone, Debug)]
pub struct Options {
    /// Freezes longer than this get a `long-freeze` finding.
    pub long_freeze_ns: u64,
}

impl Options {
    pub fn with_long_freeze(threshold: std::time::Duration) -> Self {
        Self { long_freeze_ns: u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX) }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self { long_freeze_ns: 10_000_000_000 }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum State {
    #[default]
    Unfrozen,
    Freezing,
    Frozen,
    Thawing,
}

#[derive(Default)]
struct Track {
    state: State,
    /// Successful freezes not yet matched by a successful thaw (nesting: kernel + userspace).
    holders: u32,
    frozen_since: Option<u64>,
    summary: Summary,
    /// Blocked writers by tid: the event that started each wait.
    waiting: HashMap<u32, Event>,
    /// The task running the thaw in progress.
    thawing_tid: Option<u32>,
}

fn finding(kind: FindingKind, ev: &Event, message: String) -> Finding {
    Finding {
        kind,
        severity: kind.severity(),
        ts_ns: ev.ts_ns,
        sb: ev.sb.clone(),
        pid: ev.pid,
        comm: ev.comm.clone(),
        hook: serde_json::to_value(ev.hook)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        level: ev.level_after,
        duration_ns: None,
        message,
        stack: ev.stack.clone(),
    }
}

/// Why a transaction start on a freezing or frozen superblock is legitimate, if it is.
fn txn_exemption(ev: &Event, thawing_tid: Option<u32>) -> Option<String> {
    let txn = ev.txn.as_ref();
    let caller = txn.and_then(|t| t.caller.as_deref()).unwrap_or("");
    if ev.level_after.is_some_and(|l| l < 4) {
        return Some(format!(
            "started at level {} while freeze_super was still draining and syncing, before the gate closed",
            ev.level_after.unwrap_or(0)
        ));
    }
    if thawing_tid == Some(ev.tid) {
        return Some("started by the thawing task during its own thaw".into());
    }
    if ev.hook == crate::event::Hook::TracepointXfsTransAlloc {
        if txn.is_some_and(|t| t.flags & freeze_common::XFS_TRANS_NO_WRITECOUNT != 0) {
            return Some("xfs NO_WRITECOUNT transaction: it takes no freeze protection by design".into());
        }
        if caller.starts_with("xfs_trans_alloc_empty") {
            return Some(
                "xfs empty transaction (no log reservation: a read such as GETFSMAP or scrub)".into(),
            );
        }
    }
    None
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn where_(sb: &Superblock) -> String {
    let mp = sb.mountpoint.as_deref().unwrap_or("?");
    format!("{} {} ({mp})", sb.fstype, sb.dev)
}

/// Analyses `events`. `end_ns` is when recording stopped (for `left-frozen` durations); None
/// uses the last event's time.
pub fn analyze(events: &[Event], opts: &Options, end_ns: Option<u64>) -> Analysis {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.ts_ns); // stable: equal timestamps keep their order
    let end_ns = end_ns.or(order.last().map(|e| e.ts_ns)).unwrap_or(0);
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut denials = Denials::default();

    for ev in order {
        if ev.kind == EventKind::MountBegin {
            denials.begin(ev);
        }
        if ev.kind == EventKind::MountDenied {
            findings.extend(denials.finding(ev, &mut tracks));
            continue;
        }
        if matches!(ev.kind, EventKind::MountBegin | EventKind::MountEnd) {
            if let Some(f) = mount_finding(ev, &mut tracks) {
                findings.push(f);
            }
            continue;
        }
        let t = tracks.entry(ev.sb.id.clone()).or_default();
        if let Some(level) = ev.level_after {
            t.summary.level = level;
        }
        if t.summary.sb.is_none() || t.summary.sb.as_ref().is_some_and(|s| s.mountpoint.is_none()) {
            t.summary.sb = Some(ev.sb.clone());
        }
        let ok = ev.ret.is_some_and(|r| r == 0);
        match ev.kind {
            EventKind::FreezeBegin => {
                if t.state == State::Unfrozen {
                    t.state = State::Freezing;
                }
            }
            EventKind::FreezeEnd if ok => {
                t.summary.freezes += 1;
                t.holders += 1;
                if t.frozen_since.is_none() {
                    t.frozen_since = Some(ev.ts_ns);
                }
                t.state = State::Frozen;
            }
            EventKind::FreezeEnd => {
                t.summary.failed_freezes += 1;
                let err = ev.error.clone().unwrap_or_else(|| format!("{:?}", ev.ret));
                let why = if ev.level_before == Some(4) { " (it was already frozen)" } else { "" };
                findings.push(finding(
                    FindingKind::FreezeFailed,
                    ev,
                    format!("freeze of {} by {}[{}] failed: {err}{why}", where_(&ev.sb), ev.comm, ev.pid),
                ));
                t.state =
                    if t.holders > 0 || ev.level_after == Some(4) { State::Frozen } else { State::Unfrozen };
            }
            EventKind::ThawBegin => {
                if t.state == State::Frozen {
                    t.state = State::Thawing;
                    t.thawing_tid = Some(ev.tid);
                }
            }
            EventKind::ThawEnd if ok => {
                t.summary.thaws += 1;
                t.thawing_tid = None;
                t.holders = t.holders.saturating_sub(1);
                // The kernel's level is the truth (nested holders, or a freeze we did not see).
                let unfrozen = ev.level_after == Some(0) || (ev.level_after.is_none() && t.holders == 0);
                if unfrozen {
                    t.holders = 0;
                    t.state = State::Unfrozen;
                    if let Some(since) = t.frozen_since.take() {
                        let d = ev.ts_ns.saturating_sub(since);
                        t.summary.total_frozen_ns += d;
                        t.summary.max_frozen_ns = t.summary.max_frozen_ns.max(d);
                        if d > opts.long_freeze_ns {
                            let mut f = finding(
                                FindingKind::LongFreeze,
                                ev,
                                format!(
                                    "{} stayed frozen for {} (threshold {})",
                                    where_(&ev.sb),
                                    ms(d),
                                    ms(opts.long_freeze_ns)
                                ),
                            );
                            f.ts_ns = since;
                            f.duration_ns = Some(d);
                            findings.push(f);
                        }
                    }
                } else {
                    t.state = State::Frozen;
                }
            }
            EventKind::ThawEnd => {
                t.thawing_tid = None;
                if ev.level_before == Some(0) || t.state == State::Unfrozen {
                    let err = ev.error.clone().unwrap_or_else(|| format!("{:?}", ev.ret));
                    findings.push(finding(
                        FindingKind::ThawWithoutFreeze,
                        ev,
                        format!(
                            "{}[{}] thawed {}, which was not frozen ({err})",
                            ev.comm,
                            ev.pid,
                            where_(&ev.sb)
                        ),
                    ));
                }
                if t.state == State::Thawing {
                    t.state = State::Frozen;
                }
            }
            EventKind::BlockWrite => {
                // The kernel only reports writes at level 4; the level in the event decides.
                if ev.level_after == Some(4) && t.state == State::Thawing && t.thawing_tid == Some(ev.tid) {
                    // thaw_super runs ->unfreeze_fs before lowering the level; ext4 writes its
                    // superblock there.
                    findings.push(finding(
                        FindingKind::Exempt,
                        ev,
                        format!(
                            "{}[{}] wrote {} bytes to {}: written during its own thaw (unfreeze_fs writing \
                             the superblock before the level drops)",
                            ev.comm,
                            ev.pid,
                            ev.block.as_ref().map_or(0, |b| b.bytes),
                            where_(&ev.sb)
                        ),
                    ));
                } else if ev.level_after == Some(4) {
                    t.summary.slips += 1;
                    let io = ev.block.as_ref();
                    findings.push(finding(
                        FindingKind::Slip,
                        ev,
                        format!(
                            "{}[{}] wrote {} bytes at sector {} of block device {} while {} was frozen: \
                             a write that bypassed the freeze gate",
                            ev.comm,
                            ev.pid,
                            io.map_or(0, |b| b.bytes),
                            io.map_or(0, |b| b.sector),
                            io.map_or("?", |b| b.dev.as_str()),
                            where_(&ev.sb)
                        ),
                    ));
                }
            }
            EventKind::TxnStart => {
                let what = match ev.hook {
                    crate::event::Hook::TracepointBtrfsCommit => "btrfs transaction commit",
                    crate::event::Hook::TracepointBtrfsTxnReserve => "btrfs transaction (space reservation)",
                    crate::event::Hook::FexitBtrfsTxn => "btrfs transaction",
                    crate::event::Hook::TracepointXfsTransAlloc => "xfs transaction",
                    _ => "ext4 journal handle",
                };
                let caller = ev
                    .txn
                    .as_ref()
                    .and_then(|t| t.caller.clone())
                    .map(|c| format!(" from {c}"))
                    .unwrap_or_default();
                match txn_exemption(ev, t.thawing_tid) {
                    Some(reason) => findings.push(finding(
                        FindingKind::Exempt,
                        ev,
                        format!("{what} by {}[{}]{caller} on {}: {reason}", ev.comm, ev.pid, where_(&ev.sb)),
                    )),
                    None => {
                        t.summary.slips += 1;
                        findings.push(finding(
                            FindingKind::Slip,
                            ev,
                            format!(
                                "{what} started by {}[{}]{caller} while {} was frozen: it modifies the filesystem \
                                 behind the freeze",
                                ev.comm,
                                ev.pid,
                                where_(&ev.sb)
                            ),
                        ));
                    }
                }
            }
            EventKind::WriterBlocked => {
                t.waiting.insert(ev.tid, ev.clone());
            }
            EventKind::WriteDone => {
                // The kernel only reports writes that returned while the level was COMPLETE.
                if ev.level_after == Some(4) {
                    t.summary.slips += 1;
                    findings.push(finding(
                        FindingKind::Slip,
                        ev,
                        format!(
                            "{}[{}] completed a {}-byte write to a regular file on {} while it was frozen: \
                             the write went past the gate",
                            ev.comm,
                            ev.pid,
                            ev.ret.unwrap_or(0),
                            where_(&ev.sb)
                        ),
                    ));
                }
            }
            // Handled before the superblock lookup (a mount(2) event names no superblock).
            EventKind::MountBegin | EventKind::MountEnd | EventKind::MountDenied => {}
            EventKind::WriterUnblocked => {
                let start = t.waiting.remove(&ev.tid);
                t.summary.blocked_writers += 1;
                let begin = start.as_ref().map(|s| s.ts_ns).or(ev.begin_ts_ns).unwrap_or(ev.ts_ns);
                let d = ev.ts_ns.saturating_sub(begin);
                let mut f = finding(
                    FindingKind::BlockedWriter,
                    ev,
                    format!(
                        "{}[{}] waited {} at the {} gate of {}",
                        ev.comm,
                        ev.pid,
                        ms(d),
                        gate_name(ev.gate_level),
                        where_(&ev.sb)
                    ),
                );
                f.ts_ns = begin;
                f.duration_ns = Some(d);
                findings.push(f);
            }
        }
    }

    for t in tracks.values_mut() {
        t.summary.state = match t.state {
            State::Unfrozen => SbState::Unfrozen,
            State::Freezing => SbState::Freezing,
            State::Frozen => SbState::Frozen,
            State::Thawing => SbState::Thawing,
        };
        t.summary.frozen_since_ns = t.frozen_since;
        for (_, start) in t.waiting.drain() {
            t.summary.blocked_writers += 1;
            let d = end_ns.saturating_sub(start.ts_ns);
            let mut f = finding(
                FindingKind::BlockedWriter,
                &start,
                format!(
                    "{}[{}] was still waiting at the {} gate of {} when recording ended ({} so far)",
                    start.comm,
                    start.pid,
                    gate_name(start.gate_level),
                    where_(&start.sb),
                    ms(d)
                ),
            );
            f.duration_ns = Some(d);
            findings.push(f);
        }
        if let (Some(since), Some(sb)) = (t.frozen_since, t.summary.sb.clone()) {
            let d = end_ns.saturating_sub(since);
            t.summary.left_frozen = true;
            t.summary.total_frozen_ns += d;
            t.summary.max_frozen_ns = t.summary.max_frozen_ns.max(d);
            findings.push(Finding {
                kind: FindingKind::LeftFrozen,
                severity: FindingKind::LeftFrozen.severity(),
                ts_ns: since,
                sb: sb.clone(),
                pid: 0,
                comm: String::new(),
                hook: String::new(),
                level: Some(4),
                duration_ns: Some(d),
                message: format!(
                    "{} was still frozen when recording ended (frozen for {})",
                    where_(&sb),
                    ms(d)
                ),
                stack: None,
            });
        }
    }
    findings.sort_by_key(|f| f.ts_ns);
    let summaries = tracks.into_iter().map(|(id, t)| (id, t.summary)).collect();
    Analysis { findings, summaries }
}

/// "mount of /dev/loop0 on /mnt", "bind mount of /a/sub on /b", "move_mount to /c".
fn describe_mount(call: &crate::event::MountCall) -> String {
    const MS_BIND: u64 = 4096;
    if call.api == "move_mount" {
        format!("move_mount to {}", call.target)
    } else if call.flags & MS_BIND != 0 {
        format!("bind mount of {} on {}", call.source, call.target)
    } else {
        format!("mount of {} on {}", call.source, call.target)
    }
}

/// What the mount-gate findings need from the mount calls around them.
#[derive(Default)]
struct Denials<'a> {
    /// The mount call each thread is in: a denial names the superblock, the call the paths.
    calls: HashMap<u32, &'a crate::event::MountCall>,
    /// The "source" each thread last gave fsconfig (the new mount API's device).
    fs_sources: HashMap<u32, &'a str>,
    /// Audit mode: threads whose fsconfig create was already judged, with the superblock. Their
    /// move_mount of the same superblock is the same mount, judged once.
    judged_creates: HashMap<u32, String>,
}

impl<'a> Denials<'a> {
    fn begin(&mut self, ev: &'a Event) {
        let Some(call) = &ev.mount else { return };
        if call.api == "fsconfig" && call.source == "source" {
            self.fs_sources.insert(ev.tid, call.target.as_str());
        }
        self.calls.insert(ev.tid, call);
    }

    /// A mount the gate refused (enforce) or would have refused (audit).
    fn finding(&mut self, ev: &Event, tracks: &mut BTreeMap<String, Track>) -> Option<Finding> {
        let call = self.calls.get(&ev.tid).copied();
        let api = call.map_or("", |c| c.api.as_str());
        let audit = ev.denial.as_ref().is_some_and(|d| d.mode == crate::deny::DenyMode::Audit);
        if audit && api == "fsconfig" {
            self.judged_creates.insert(ev.tid, ev.sb.id.clone());
        } else if audit && api == "move_mount" && self.judged_creates.get(&ev.tid) == Some(&ev.sb.id) {
            self.judged_creates.remove(&ev.tid);
            return None;
        }
        let what = match call {
            Some(c) if c.api == "fsconfig" => {
                format!("fsconfig create of {}", self.fs_sources.get(&ev.tid).copied().unwrap_or("?"))
            }
            Some(c) => describe_mount(c),
            None => format!("a mount ({})", ev.denial.as_ref().map_or("?", |d| d.lsm_hook.as_str())),
        };
        Some(denial_finding(ev, what, tracks))
    }
}

/// A mount the gate refused (enforce) or would have refused (audit). The event names the frozen
/// superblock; `what` the mount.
fn denial_finding(ev: &Event, what: String, tracks: &mut BTreeMap<String, Track>) -> Finding {
    let t = tracks.entry(ev.sb.id.clone()).or_default();
    if t.summary.sb.is_none() {
        t.summary.sb = Some(ev.sb.clone());
    }
    let sb = t.summary.sb.clone().unwrap_or_else(|| ev.sb.clone());
    let enforced = ev.denial.as_ref().is_some_and(|d| d.mode == crate::deny::DenyMode::Enforce);
    let message = if enforced {
        t.summary.denied_mounts += 1;
        format!("{what} by {}[{}] was denied (EPERM): {} is frozen", ev.comm, ev.pid, where_(&sb))
    } else {
        t.summary.would_deny_mounts += 1;
        format!(
            "{what} by {}[{}] would have been denied (audit mode; it went ahead): {} is frozen",
            ev.comm,
            ev.pid,
            where_(&sb)
        )
    };
    let mut f = finding(FindingKind::MountDenied, ev, message);
    f.sb = sb;
    f
}

/// A successful mount whose superblock is frozen (or freezing, or thawing) at that moment.
fn mount_finding(ev: &Event, tracks: &mut BTreeMap<String, Track>) -> Option<Finding> {
    if ev.kind != EventKind::MountEnd || ev.ret != Some(0) {
        return None;
    }
    let call = ev.mount.as_ref()?;
    // Only these make a mount visible; fsopen/fsconfig/fsmount prepare one (move_mount attaches it).
    if call.api != "mount" && call.api != "move_mount" {
        return None;
    }
    // The kernel's superblock (move_mount of an fsmount fd), else the one mountinfo shows at the
    // target afterwards (mount(2)).
    let id = if ev.sb.id != "0x0" {
        ev.sb.id.clone()
    } else {
        // Where it landed if that was seen, else what its source belongs to.
        let dev = call.mounted_dev.as_ref().or(call.source_dev.as_ref())?;
        tracks.iter().find(|(_, t)| t.summary.sb.as_ref().is_some_and(|s| &s.dev == dev))?.0.clone()
    };
    let t = tracks.get_mut(&id)?;
    if t.state == State::Unfrozen {
        return None;
    }
    t.summary.mounts_while_frozen += 1;
    let sb = t.summary.sb.clone().unwrap_or_else(|| ev.sb.clone());
    let what = describe_mount(call);
    let mut f = finding(
        FindingKind::MountWhileFrozen,
        ev,
        format!(
            "{what} by {}[{}] landed while {} was frozen: the snapshot's source is exposed mid-snapshot",
            ev.comm,
            ev.pid,
            where_(&sb)
        ),
    );
    f.sb = sb;
    f.level = Some(4);
    Some(f)
}

fn gate_name(level: Option<u32>) -> &'static str {
    match level {
        Some(1) => "write",
        Some(2) => "page-fault",
        Some(3) => "fs-internal",
        _ => "freeze",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BlockIo, Hook};

    fn sb(id: &str) -> Superblock {
        Superblock {
            id: id.into(),
            dev: "7:0".into(),
            fstype: "ext4".into(),
            s_id: "loop0".into(),
            uuid: "u".into(),
            mountpoint: Some("/mnt".into()),
        }
    }

    fn ev(kind: EventKind, ts: u64, before: u32, after: u32, ret: Option<i64>) -> Event {
        Event {
            kind,
            hook: Hook::TracepointIoctl,
            ts_ns: ts,
            begin_ts_ns: None,
            pid: 10,
            tid: 10,
            comm: "fsfreeze".into(),
            sb: sb("0xa"),
            level_before: Some(before),
            level_after: Some(after),
            holder: Some("userspace".into()),
            ret,
            error: ret.filter(|r| *r < 0).map(|r| crate::event::errno_name(-r)),
            block: None,
            gate_level: None,
            txn: None,
            mount: None,
            denial: None,
            stack: None,
        }
    }

    fn freeze(ts: u64) -> [Event; 2] {
        [ev(EventKind::FreezeBegin, ts, 0, 0, None), ev(EventKind::FreezeEnd, ts + 10, 0, 4, Some(0))]
    }

    fn thaw(ts: u64, after: u32) -> [Event; 2] {
        [ev(EventKind::ThawBegin, ts, 4, 4, None), ev(EventKind::ThawEnd, ts + 10, 4, after, Some(0))]
    }

    fn block_write(ts: u64, level: u32) -> Event {
        let mut e = ev(EventKind::BlockWrite, ts, level, level, None);
        e.hook = Hook::TracepointBlockBioQueue;
        e.comm = "dd".into();
        e.pid = 77;
        e.block = Some(BlockIo { dev: "7:0".into(), sector: 8, bytes: 4096 });
        e
    }

    fn kinds(a: &Analysis) -> Vec<FindingKind> {
        a.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_clean_freeze_has_no_findings_and_is_summarised() {
        let events: Vec<Event> = freeze(100).into_iter().chain(thaw(1_000_110, 0)).collect();
        let a = analyze(&events, &Options::default(), None);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        let s = &a.summaries["0xa"];
        assert_eq!((s.freezes, s.thaws, s.failed_freezes, s.slips, s.left_frozen), (1, 1, 0, 0, false));
        // Frozen from the freeze's return (110) to the thaw's return (1_000_120).
        assert_eq!(s.total_frozen_ns, 1_000_010);
        assert_eq!(s.max_frozen_ns, 1_000_010);
    }

    #[test]
    fn a_block_write_while_frozen_is_a_slip_naming_the_writer() {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(block_write(500, 4));
        events.extend(thaw(900, 0));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::Slip]);
        let f = &a.findings[0];
        assert_eq!((f.severity, f.pid, f.comm.as_str(), f.level), (Severity::Error, 77, "dd", Some(4)));
        assert_eq!(f.hook, "tracepoint:block:block_bio_queue");
        assert!(
            f.message.contains("dd[77] wrote 4096 bytes at sector 8 of block device 7:0"),
            "{}",
            f.message
        );
        assert_eq!(a.summaries["0xa"].slips, 1);
    }

    #[test]
    fn the_thawing_tasks_own_write_is_exempt_but_another_tasks_is_a_slip() {
        let mut events: Vec<Event> = freeze(100).into();
        let [tb, te] = thaw(900, 0);
        let mut own = block_write(905, 4);
        own.tid = tb.tid;
        own.comm = "fsfreeze".into();
        let other = block_write(906, 4); // dd, another tid
        events.extend([tb, own, other, te]);
        let mut other_tid = events.clone();
        other_tid.iter_mut().filter(|e| e.comm == "dd").for_each(|e| e.tid = 99);
        let a = analyze(&other_tid, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::Exempt, FindingKind::Slip]);
        assert!(a.findings[0].message.contains("during its own thaw"), "{}", a.findings[0].message);
        assert_eq!(a.summaries["0xa"].slips, 1);
    }

    fn txn(ts: u64, level: u32, hook: Hook, flags: u32, caller: &str) -> Event {
        let mut e = ev(EventKind::TxnStart, ts, level, level, None);
        e.hook = hook;
        e.comm = "kworker/0:1".into();
        e.tid = 300;
        e.txn = Some(crate::event::Txn { flags, caller: Some(caller.into()) });
        e.stack = Some(vec!["xfs_trans_alloc+0x10".into(), "xfs_create+0x99".into()]);
        e
    }

    #[test]
    fn transaction_starts_are_slips_unless_exempt() {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(txn(150, 4, Hook::TracepointXfsTransAlloc, 0x04, "xfs_create+0x40"));
        events.push(txn(160, 4, Hook::TracepointXfsTransAlloc, 0x40, "xfs_log_quiesce+0x1"));
        events.push(txn(170, 4, Hook::TracepointXfsTransAlloc, 0, "xfs_trans_alloc_empty+0x20"));
        events.push(txn(180, 4, Hook::TracepointBtrfsCommit, 0, ""));
        events.extend(thaw(900, 0));
        events.insert(1, txn(105, 2, Hook::TracepointExt4JournalStart, 1, "ext4_dirty_inode+0x3"));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(
            kinds(&a),
            [
                FindingKind::Exempt,
                FindingKind::Slip,
                FindingKind::Exempt,
                FindingKind::Exempt,
                FindingKind::Slip
            ]
        );
        assert!(
            a.findings[0].message.contains("started at level 2 while freeze_super"),
            "{}",
            a.findings[0].message
        );
        let slip = &a.findings[1];
        assert!(
            slip.message.starts_with("xfs transaction started by kworker/0:1[10] from xfs_create+0x40"),
            "{}",
            slip.message
        );
        let stack = ["xfs_trans_alloc+0x10".to_owned(), "xfs_create+0x99".to_owned()];
        assert_eq!(slip.stack.as_deref(), Some(&stack[..]));
        assert!(a.findings[2].message.contains("NO_WRITECOUNT"));
        assert!(a.findings[3].message.contains("empty transaction"));
        assert!(a.findings[4].message.starts_with("btrfs transaction commit"));
        assert_eq!(a.summaries["0xa"].slips, 2);
    }

    fn mount_end(ts: u64, api: &str, sb_id: &str, mounted_dev: Option<&str>, ret: i64) -> Event {
        let mut e = ev(EventKind::MountEnd, ts, 0, 0, Some(ret));
        e.hook = Hook::TracepointSysMount;
        e.comm = "mount".into();
        e.sb.id = sb_id.into();
        e.mount = Some(crate::event::MountCall {
            api: api.into(),
            source: "/dev/loop0".into(),
            target: "/mnt2".into(),
            fstype: "ext4".into(),
            flags: 0,
            mounted_dev: mounted_dev.map(Into::into),
            source_dev: None,
        });
        e
    }

    #[test]
    fn a_mount_of_a_frozen_filesystem_is_flagged_by_device_or_superblock() {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(mount_end(200, "mount", "0x0", Some("7:0"), 0)); // mount(2) of its device
        events.push(mount_end(210, "move_mount", "0xa", None, 0)); // fsmount + move_mount
        events.push(mount_end(220, "mount", "0x0", Some("8:1"), 0)); // another filesystem
        events.push(mount_end(230, "mount", "0x0", Some("7:0"), -1)); // failed: nothing landed
        let mut gone = mount_end(240, "mount", "0x0", None, 0); // unmounted before it was looked up
        gone.mount.as_mut().expect("call").source_dev = Some("7:0".into());
        events.push(gone);
        events.extend(thaw(900, 0));
        events.push(mount_end(1_000, "mount", "0x0", Some("7:0"), 0)); // after the thaw: fine
        events.push(mount_end(250, "fsconfig", "0x0", Some("7:0"), 0)); // prepares, attaches nothing
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::MountWhileFrozen; 3]);
        assert!(
            a.findings[0]
                .message
                .starts_with("mount of /dev/loop0 on /mnt2 by mount[10] landed while ext4 7:0")
        );
        assert!(a.findings[1].message.starts_with("move_mount to /mnt2"));
        assert_eq!(a.summaries["0xa"].mounts_while_frozen, 3);
        assert!(!a.summaries.contains_key("0x0"), "mount(2) events create no phantom superblock");
    }

    fn mount_begin(ts: u64, tid: u32, api: &str, source: &str, target: &str, flags: u64) -> Event {
        let mut e = ev(EventKind::MountBegin, ts, 0, 0, None);
        e.hook = Hook::TracepointSysMount;
        e.sb.id = "0x0".into();
        e.tid = tid;
        e.mount = Some(crate::event::MountCall {
            api: api.into(),
            source: source.into(),
            target: target.into(),
            fstype: String::new(),
            flags,
            mounted_dev: None,
            source_dev: None,
        });
        e
    }

    fn denied(ts: u64, tid: u32, mode: crate::deny::DenyMode, lsm_hook: &str) -> Event {
        let ret = if mode == crate::deny::DenyMode::Enforce { -1 } else { 0 };
        let mut e = ev(EventKind::MountDenied, ts, 4, 4, Some(ret));
        e.hook = Hook::LsmMount;
        e.tid = tid;
        e.denial = Some(crate::event::Denial { mode, lsm_hook: lsm_hook.into() });
        e
    }

    /// mount(2) of the device, a bind mount, and the new mount API (fsconfig source + create,
    /// then, when not refused at create, move_mount), each on its own thread.
    fn gated_mounts(mode: crate::deny::DenyMode) -> Vec<Event> {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(mount_begin(200, 1, "mount", "/dev/loop0", "/m1", 0));
        events.push(denied(201, 1, mode, "sb_kern_mount"));
        events.push(mount_begin(210, 2, "mount", "/mnt/sub", "/m2", 4096));
        events.push(denied(211, 2, mode, "sb_mount"));
        events.push(mount_begin(220, 3, "fsconfig", "source", "/dev/loop0", 1));
        events.push(mount_begin(221, 3, "fsconfig", "", "", 6));
        events.push(denied(222, 3, mode, "sb_kern_mount"));
        if mode == crate::deny::DenyMode::Audit {
            events.push(mount_begin(230, 3, "move_mount", "", "/m3", 4));
            events.push(denied(231, 3, mode, "move_mount"));
        }
        events.extend(thaw(900, 0));
        events
    }

    #[test]
    fn enforced_denials_are_one_finding_per_mount_naming_it() {
        let a = analyze(&gated_mounts(crate::deny::DenyMode::Enforce), &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::MountDenied; 3]);
        let m: Vec<&str> = a.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(
            m[0].starts_with("mount of /dev/loop0 on /m1 by fsfreeze[10] was denied (EPERM)"),
            "{}",
            m[0]
        );
        assert!(m[1].starts_with("bind mount of /mnt/sub on /m2"), "{}", m[1]);
        assert!(m[2].starts_with("fsconfig create of /dev/loop0"), "{}", m[2]);
        assert!(m.iter().all(|m| m.ends_with("ext4 7:0 (/mnt) is frozen")), "{m:?}");
        assert_eq!(a.findings[0].severity, Severity::Info);
        let s = &a.summaries["0xa"];
        assert_eq!((s.denied_mounts, s.would_deny_mounts, s.freezes), (3, 0, 1));
    }

    #[test]
    fn audit_denials_judge_the_new_mount_api_once() {
        let a = analyze(&gated_mounts(crate::deny::DenyMode::Audit), &Options::default(), None);
        assert_eq!(
            kinds(&a),
            [FindingKind::MountDenied; 3],
            "fsconfig create and its move_mount are one mount"
        );
        assert!(a.findings.iter().all(|f| f.message.contains("would have been denied (audit mode")));
        let s = &a.summaries["0xa"];
        assert_eq!((s.denied_mounts, s.would_deny_mounts), (0, 3));
    }

    #[test]
    fn a_denial_without_its_mount_call_still_names_the_hook() {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(denied(300, 9, crate::deny::DenyMode::Enforce, "move_mount"));
        let a = analyze(&events, &Options::default(), None);
        assert!(
            a.findings.iter().any(|f| f.message.starts_with("a mount (move_mount) by")),
            "{:?}",
            a.findings
        );
    }

    #[test]
    fn a_write_that_completes_while_frozen_is_a_slip() {
        let mut events: Vec<Event> = freeze(100).into();
        let mut w = ev(EventKind::WriteDone, 500, 4, 4, Some(4096));
        w.hook = Hook::TracepointSysWrite;
        w.comm = "writer".into();
        events.push(w);
        events.extend(thaw(900, 0));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::Slip]);
        assert!(
            a.findings[0].message.starts_with("writer[10] completed a 4096-byte write"),
            "{}",
            a.findings[0].message
        );
        assert_eq!(a.findings[0].hook, "tracepoint:syscalls:write");
    }

    #[test]
    fn lost_events_do_not_derail_the_state_machine() {
        // The freeze's end was lost: the kernel's level on the next events still says frozen.
        let events = vec![
            ev(EventKind::FreezeBegin, 100, 0, 0, None),
            block_write(500, 4),
            // The thaw's begin was lost too; its end (level 0) closes the window.
            ev(EventKind::ThawEnd, 900, 4, 0, Some(0)),
        ];
        let a = analyze(&events, &Options::default(), Some(1_000));
        assert_eq!(kinds(&a), [FindingKind::Slip], "the slip is still seen, nothing is left frozen");
        let s = &a.summaries["0xa"];
        assert_eq!((s.state, s.freezes, s.thaws), (SbState::Unfrozen, 0, 1));
        // Only ends, no begins at all: the freeze is counted and the window closed.
        let ends =
            vec![ev(EventKind::FreezeEnd, 100, 0, 4, Some(0)), ev(EventKind::ThawEnd, 300, 4, 0, Some(0))];
        let a = analyze(&ends, &Options::default(), Some(1_000));
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!((a.summaries["0xa"].freezes, a.summaries["0xa"].total_frozen_ns), (1, 200));
        // A writer whose wait began before the recording (its start was never seen).
        let mut u = ev(EventKind::WriterUnblocked, 400, 0, 0, Some(0));
        u.begin_ts_ns = Some(50);
        let a = analyze(&[u], &Options::default(), None);
        assert_eq!(a.findings[0].duration_ns, Some(350), "the kernel's begin time is used");
    }

    #[test]
    fn a_write_during_freezing_is_not_a_slip() {
        let events = vec![ev(EventKind::FreezeBegin, 100, 0, 0, None), block_write(105, 2)];
        let a = analyze(&events, &Options::default(), Some(200));
        assert_eq!(a.count(FindingKind::Slip), 0);
    }

    #[test]
    fn out_of_order_events_are_sorted_before_the_state_machine_runs() {
        let mut events: Vec<Event> = thaw(900, 0).into();
        events.push(block_write(500, 4));
        events.extend(freeze(100));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::Slip]);
        assert_eq!(a.summaries["0xa"].freezes, 1);
        assert!(!a.summaries["0xa"].left_frozen);
    }

    #[test]
    fn a_failed_freeze_of_a_frozen_fs_keeps_it_frozen() {
        let mut events: Vec<Event> = freeze(100).into();
        events.push(ev(EventKind::FreezeBegin, 200, 4, 4, None));
        events.push(ev(EventKind::FreezeEnd, 210, 4, 4, Some(-16)));
        events.push(block_write(300, 4));
        events.extend(thaw(400, 0));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::FreezeFailed, FindingKind::Slip]);
        assert!(a.findings[0].message.contains("EBUSY (it was already frozen)"), "{}", a.findings[0].message);
        assert_eq!(a.summaries["0xa"].failed_freezes, 1);
    }

    #[test]
    fn nested_holders_keep_the_gate_closed_until_the_kernel_says_unfrozen() {
        // Two holders (kernel + userspace): the first thaw leaves level 4.
        let mut events: Vec<Event> = freeze(100).into();
        events.extend(freeze(200));
        events.extend(thaw(300, 4));
        events.push(block_write(350, 4));
        events.extend(thaw(400, 0));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::Slip]);
        let s = &a.summaries["0xa"];
        assert_eq!((s.freezes, s.thaws), (2, 2));
        assert_eq!(s.total_frozen_ns, 410 - 110, "one window, from the first freeze to the last thaw");
    }

    #[test]
    fn a_thaw_of_an_unfrozen_fs_is_flagged() {
        let events =
            vec![ev(EventKind::ThawBegin, 10, 0, 0, None), ev(EventKind::ThawEnd, 20, 0, 0, Some(-22))];
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(kinds(&a), [FindingKind::ThawWithoutFreeze]);
        assert!(a.findings[0].message.contains("EINVAL"));
    }

    #[test]
    fn a_freeze_still_held_at_the_end_is_left_frozen() {
        let a = analyze(&freeze(100), &Options::default(), Some(5_000));
        assert_eq!(kinds(&a), [FindingKind::LeftFrozen]);
        let s = &a.summaries["0xa"];
        assert_eq!((s.state, s.level, s.frozen_since_ns), (SbState::Frozen, 4, Some(110)));
        let begun = analyze(&freeze(100)[..1], &Options::default(), Some(5_000));
        assert_eq!(begun.summaries["0xa"].state, SbState::Freezing);
        assert_eq!(a.findings[0].duration_ns, Some(5_000 - 110));
        assert!(a.summaries["0xa"].left_frozen);
    }

    #[test]
    fn a_long_freeze_is_flagged_over_the_threshold_only() {
        let events: Vec<Event> = freeze(0).into_iter().chain(thaw(2_000, 0)).collect();
        let short = analyze(&events, &Options { long_freeze_ns: 10_000 }, None);
        assert!(short.findings.is_empty());
        let long = analyze(&events, &Options { long_freeze_ns: 1_000 }, None);
        assert_eq!(kinds(&long), [FindingKind::LongFreeze]);
        assert_eq!(long.findings[0].duration_ns, Some(2_000));
    }

    #[test]
    fn blocked_writers_are_reported_with_their_wait() {
        let mut events: Vec<Event> = freeze(100).into();
        let mut b = ev(EventKind::WriterBlocked, 200, 4, 4, None);
        b.comm = "sh".into();
        b.tid = 55;
        b.gate_level = Some(1);
        let mut u = b.clone();
        u.kind = EventKind::WriterUnblocked;
        u.ts_ns = 2_200;
        u.ret = Some(0);
        // A second writer that never unblocks before the end.
        let mut still = b.clone();
        still.tid = 56;
        still.ts_ns = 300;
        events.extend([b, still, u]);
        let a = analyze(&events, &Options::default(), Some(10_000));
        // Sorted by start: frozen since 110, waits from 200 and 300.
        assert_eq!(
            kinds(&a),
            [FindingKind::LeftFrozen, FindingKind::BlockedWriter, FindingKind::BlockedWriter]
        );
        let done =
            a.findings.iter().find(|f| f.kind == FindingKind::BlockedWriter && f.ts_ns == 200).expect("w1");
        assert_eq!(done.duration_ns, Some(2_000));
        assert!(done.message.contains("sh[10] waited 0.0 ms at the write gate"), "{}", done.message);
        let open = a.findings.iter().find(|f| f.ts_ns == 300).expect("w2");
        assert_eq!(open.duration_ns, Some(9_700));
        assert!(open.message.contains("still waiting"));
        assert_eq!(a.summaries["0xa"].blocked_writers, 2);
        assert_eq!(a.count(FindingKind::Slip), 0);
    }

    #[test]
    fn superblocks_are_tracked_independently() {
        let mut events: Vec<Event> = freeze(100).into();
        let mut other = block_write(500, 4);
        other.sb = sb("0xb");
        other.level_after = Some(0);
        events.push(other);
        events.extend(thaw(900, 0));
        let a = analyze(&events, &Options::default(), None);
        assert_eq!(a.count(FindingKind::Slip), 0, "a write to an unfrozen superblock is no slip");
        assert_eq!(a.summaries.len(), 2);
    }
}
