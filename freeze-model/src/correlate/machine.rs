//! The streaming correlator: one state machine per superblock (unfrozen → freezing → frozen →
//! thawing → unfrozen, nested holders counted, the kernel's level as the truth).
use std::collections::{BTreeMap, VecDeque};

use freeze_common::level;

use super::{
    Finding, FindingKind, KindSet, Options, SbState, Summary, messages as msg, mounts::MountCalls,
    reorder::Reorder,
};
use crate::{
    event::{Event, EventKind, Superblock},
    holds::Holds,
    storage::Layer,
};

/// Closed freeze windows kept per superblock for timelines (the newest; older ones drop off).
const WINDOWS_KEPT: usize = 1024;

/// One superblock's state.
#[derive(Default)]
struct Track {
    summary: Summary,
    /// Successful freezes not yet matched by a successful thaw (nesting: kernel + userspace).
    holders: Holds<()>,
    /// Blocked writers by tid: the event that started each wait.
    waiting: BTreeMap<u32, Event>,
    /// The task running the thaw in progress.
    thawing_tid: Option<u32>,
    /// The open frozen window already has its `long-freeze` finding (raised live by `tick`).
    long_raised: bool,
    /// Recent closed frozen windows, (start, end), oldest first.
    windows: VecDeque<(u64, u64)>,
}

impl Track {
    fn frozen_since(&self) -> Option<u64> {
        self.summary.frozen_since_ns
    }

    /// The summary and the findings if the recording ended at `end_ns` now.
    fn closed_at(&self, end_ns: u64) -> (Summary, Vec<Finding>) {
        let mut summary = self.summary.clone();
        let mut findings = Vec::new();
        for start in self.waiting.values() {
            summary.blocked_writers += 1;
            if let Some(sb) = &start.sb {
                findings.push(msg::still_waiting(start, sb, end_ns));
            }
        }
        if let (Some(since), Some(sb)) = (self.frozen_since(), summary.sb.as_ref()) {
            let d = end_ns.saturating_sub(since);
            summary.left_frozen = true;
            summary.total_frozen_ns += d;
            summary.max_frozen_ns = summary.max_frozen_ns.max(d);
            findings.push(msg::left_frozen(sb, since, d));
        }
        (summary, findings)
    }
}

/// What a correlator holds right now: all of it is bounded by what is open, not by events seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Events in the reorder window.
    pub held_events: usize,
    pub superblocks: usize,
    /// Writers waiting at a gate.
    pub waits: usize,
    /// Mount calls in progress and fsconfig sources remembered.
    pub mount_calls: usize,
    /// Closed freeze windows kept for timelines (at most 1024 per superblock).
    pub windows: usize,
}

/// Where applying events puts findings: those of kinds nobody wants are not built at all (their
/// events still count in the summaries).
struct Out<'a> {
    wanted: KindSet,
    findings: &'a mut Vec<Finding>,
}

impl Out<'_> {
    fn add(&mut self, kind: FindingKind, make: impl FnOnce() -> Finding) {
        if self.wanted.contains(kind) {
            let finding = make();
            debug_assert_eq!(finding.kind, kind, "the kind a finding is filtered by is its own");
            self.findings.push(finding);
        }
    }
}

/// The streaming correlator (see the module docs of `correlate`).
pub struct Correlator {
    opts: Options,
    reorder: Reorder,
    tracks: BTreeMap<String, Track>,
    mounts: MountCalls,
    /// The newest event time applied.
    last_ts: Option<u64>,
}

impl Correlator {
    pub fn new(opts: Options) -> Self {
        let reorder = Reorder::new(opts.reorder_window_ns);
        Self { opts, reorder, tracks: BTreeMap::new(), mounts: MountCalls::default(), last_ts: None }
    }

    /// Takes one event; returns the findings that became certain (of events at least the
    /// reorder window older than the newest one seen).
    pub fn push(&mut self, ev: Event) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut out = Out { wanted: self.opts.kinds, findings: &mut findings };
        self.reorder.push(ev);
        while let Some(ev) = self.reorder.pop() {
            self.apply(&ev, &mut out);
        }
        findings
    }

    /// The time is now `now_ns` (the events' clock): applies held events that nothing older can
    /// precede any more, and raises `long-freeze` for a filesystem frozen longer than the
    /// threshold, once per frozen window, while it is still frozen.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut applied = Out { wanted: self.opts.kinds, findings: &mut out };
        self.reorder.advance_to(now_ns);
        while let Some(ev) = self.reorder.pop() {
            self.apply(&ev, &mut applied);
        }
        let threshold = self.opts.long_freeze_ns;
        for t in self.tracks.values_mut() {
            let (Some(since), Some(sb)) = (t.frozen_since(), t.summary.sb.as_ref()) else { continue };
            let so_far = now_ns.saturating_sub(since);
            if !t.long_raised && so_far > threshold {
                t.long_raised = true;
                applied
                    .add(FindingKind::LongFreeze, || msg::long_freeze_ongoing(sb, since, so_far, threshold));
            }
        }
        out
    }

    /// Ends the stream: applies what the reorder window holds, then closes every open wait and
    /// frozen window at `end_ns` (None: the last event's time).
    pub fn finish(mut self, end_ns: Option<u64>) -> super::Analysis {
        let mut findings = Vec::new();
        let held: Vec<Event> = self.reorder.drain().collect();
        let mut out = Out { wanted: self.opts.kinds, findings: &mut findings };
        for ev in held {
            self.apply(&ev, &mut out);
        }
        let (summaries, closing) = self.view_at(end_ns.or(self.last_ts).unwrap_or(0));
        findings.extend(closing);
        super::Analysis { findings, summaries }
    }

    /// Summaries as if the recording ended at `now_ns`, and the findings that ending would add
    /// (writers still waiting, filesystems still frozen): what a live view shows, without
    /// ending anything.
    pub fn view_at(&self, now_ns: u64) -> (BTreeMap<String, Summary>, Vec<Finding>) {
        let mut summaries = BTreeMap::new();
        let mut findings = Vec::new();
        for (id, t) in &self.tracks {
            let (summary, closing) = t.closed_at(now_ns);
            findings.extend(closing);
            summaries.insert(id.clone(), summary);
        }
        (summaries, findings)
    }

    /// Frozen windows per superblock id, (start, end or None while still frozen), oldest first:
    /// the recent closed ones and the open one. Events still in the reorder window are not in.
    pub fn windows(&self) -> BTreeMap<&str, Vec<(u64, Option<u64>)>> {
        self.tracks
            .iter()
            .map(|(id, t)| {
                let mut w: Vec<(u64, Option<u64>)> = t.windows.iter().map(|&(s, e)| (s, Some(e))).collect();
                w.extend(t.frozen_since().map(|s| (s, None)));
                (id.as_str(), w)
            })
            .collect()
    }

    /// Events that arrived after newer ones had been applied (older than the reorder window).
    pub fn late_events(&self) -> u64 {
        self.reorder.late()
    }

    pub fn retained(&self) -> Retained {
        Retained {
            held_events: self.reorder.len(),
            superblocks: self.tracks.len(),
            waits: self.tracks.values().map(|t| t.waiting.len()).sum(),
            mount_calls: self.mounts.len(),
            windows: self.tracks.values().map(|t| t.windows.len()).sum(),
        }
    }

    fn apply(&mut self, ev: &Event, out: &mut Out<'_>) {
        self.last_ts = Some(self.last_ts.map_or(ev.ts_ns, |t| t.max(ev.ts_ns)));
        match ev.kind {
            EventKind::MountBegin => {
                self.mounts.begin(ev);
                // A mount(2) names no superblock: it becomes a finding only when it lands.
            }
            EventKind::MountDenied => {
                // The LSM program names the frozen superblock it protected.
                let Some(ev_sb) = ev.sb.as_ref() else { return };
                if let Some(what) = self.mounts.denied(ev) {
                    let t = self.tracks.entry(ev_sb.id.clone()).or_default();
                    let sb = t.summary.sb.get_or_insert_with(|| ev_sb.clone()).clone();
                    let enforced = msg::enforced(ev);
                    if enforced {
                        t.summary.denied_mounts += 1;
                    } else {
                        t.summary.would_deny_mounts += 1;
                    }
                    out.add(FindingKind::MountDenied, || msg::mount_denied(ev, &what, &sb, enforced));
                }
            }
            EventKind::MountEnd => {
                self.mounts.end(ev);
                if let Some(f) = self.mount_landed(ev) {
                    out.add(FindingKind::MountWhileFrozen, || f);
                }
            }
            _ => self.apply_to_superblock(ev, out),
        }
    }

    /// A successful mount whose superblock is frozen (or freezing, or thawing) at that moment.
    fn mount_landed(&mut self, ev: &Event) -> Option<Finding> {
        let call = ev.mount.as_ref()?;
        if ev.ret != Some(0) || !call.api.attaches() {
            return None;
        }
        // The kernel's superblock (move_mount of an fsmount fd), else the one mountinfo shows at
        // the target afterwards, else what its source belongs to (mount(2)).
        let id = if let Some(sb) = &ev.sb {
            sb.id.clone()
        } else {
            let dev = call.mounted_dev.as_ref().or(call.source_dev.as_ref())?;
            self.tracks.iter().find(|(_, t)| t.summary.sb.as_ref().is_some_and(|s| &s.dev == dev))?.0.clone()
        };
        let t = self.tracks.get_mut(&id)?;
        if t.summary.state == SbState::Unfrozen {
            return None;
        }
        t.summary.mounts_while_frozen += 1;
        let sb = t.summary.sb.clone().or_else(|| ev.sb.clone())?;
        Some(msg::mount_while_frozen(ev, call, &sb))
    }

    fn apply_to_superblock(&mut self, ev: &Event, out: &mut Out<'_>) {
        // Every kind handled here names its superblock; a record that does not is passed over.
        let Some(sb) = ev.sb.as_ref() else { return };
        let long_freeze_ns = self.opts.long_freeze_ns;
        // Looked up before it is made: a key is cloned once per superblock, not per event.
        if !self.tracks.contains_key(&sb.id) {
            self.tracks.insert(sb.id.clone(), Track::default());
        }
        let Some(t) = self.tracks.get_mut(&sb.id) else { return };
        if let Some(level) = ev.level_after {
            t.summary.level = level;
        }
        if t.summary.sb.as_ref().is_none_or(|s| s.mountpoint.is_none()) {
            t.summary.sb = Some(sb.clone());
        }
        let ok = ev.ret == Some(0);
        let frozen_after = ev.level_after == Some(level::COMPLETE);
        match ev.kind {
            EventKind::FreezeBegin => {
                if t.summary.state == SbState::Unfrozen {
                    t.summary.state = SbState::Freezing;
                }
            }
            EventKind::FreezeEnd if ok => {
                t.summary.freezes += 1;
                t.holders.freeze(ev, ());
                t.summary.frozen_since_ns.get_or_insert(ev.ts_ns);
                t.summary.state = SbState::Frozen;
            }
            EventKind::FreezeEnd => {
                t.summary.failed_freezes += 1;
                out.add(FindingKind::FreezeFailed, || msg::freeze_failed(ev, sb));
                t.summary.state =
                    if !t.holders.is_empty() || frozen_after { SbState::Frozen } else { SbState::Unfrozen };
            }
            EventKind::ThawBegin => {
                if t.summary.state == SbState::Frozen {
                    t.summary.state = SbState::Thawing;
                    t.thawing_tid = Some(ev.tid);
                }
            }
            EventKind::ThawEnd if ok => {
                t.summary.thaws += 1;
                t.thawing_tid = None;
                t.holders.thaw(ev);
                // The kernel's level is the truth (nested holders, or a freeze we did not see).
                let unfrozen = ev.level_after == Some(level::UNFROZEN)
                    || (ev.level_after.is_none() && t.holders.is_empty());
                if !unfrozen {
                    t.summary.state = SbState::Frozen;
                    return;
                }
                t.holders.clear();
                t.summary.state = SbState::Unfrozen;
                if let Some(since) = t.summary.frozen_since_ns.take() {
                    let d = ev.ts_ns.saturating_sub(since);
                    t.summary.total_frozen_ns += d;
                    t.summary.max_frozen_ns = t.summary.max_frozen_ns.max(d);
                    if d > long_freeze_ns && !t.long_raised {
                        out.add(FindingKind::LongFreeze, || {
                            msg::long_freeze(ev, sb, since, d, long_freeze_ns)
                        });
                    }
                    t.long_raised = false;
                    if t.windows.len() == WINDOWS_KEPT {
                        t.windows.pop_front();
                    }
                    t.windows.push_back((since, ev.ts_ns));
                }
            }
            EventKind::ThawEnd => {
                t.thawing_tid = None;
                if ev.level_before == Some(level::UNFROZEN) || t.summary.state == SbState::Unfrozen {
                    out.add(FindingKind::ThawWithoutFreeze, || msg::thaw_without_freeze(ev, sb));
                }
                if t.summary.state == SbState::Thawing {
                    t.summary.state = SbState::Frozen;
                }
            }
            EventKind::BlockWrite => {
                // The kernel only reports writes at level 4; the level in the event decides.
                if !frozen_after {
                    return;
                }
                let thawing = t.summary.state == SbState::Thawing;
                if loop_worker_write(ev) {
                    // The bio it carries reached the loop device first, where it was judged.
                    out.add(FindingKind::Exempt, || msg::loop_worker_write(ev, sb));
                } else if backing_file_writeback(ev) {
                    out.add(FindingKind::Exempt, || msg::backing_file_writeback(ev, sb));
                } else if thawing && (t.thawing_tid == Some(ev.tid) || passed_down_by_the_kernel(ev, sb)) {
                    // thaw_super runs ->unfreeze_fs before lowering the level; ext4 writes its
                    // superblock there. Below the filesystem, a kernel worker may carry that
                    // write on (dm-snapshot's copy-out, a loop worker): the same write.
                    out.add(FindingKind::Exempt, || msg::own_thaw_write(ev, sb));
                } else if layer_own_io(ev) {
                    out.add(FindingKind::LayerIo, || msg::layer_io(ev, sb));
                } else {
                    t.summary.slips += 1;
                    out.add(FindingKind::Slip, || msg::block_slip(ev, sb));
                }
            }
            EventKind::TxnStart => match msg::txn_exemption(ev, t.thawing_tid) {
                Some(reason) => out.add(FindingKind::Exempt, || msg::txn_exempt(ev, sb, reason)),
                None => {
                    t.summary.slips += 1;
                    out.add(FindingKind::Slip, || msg::txn_slip(ev, sb));
                }
            },
            EventKind::Dirtied => {
                // The kernel only reports it at level COMPLETE. thaw_super runs ->unfreeze_fs
                // before lowering the level: what the thawing task dirties there is the thaw's.
                if !frozen_after {
                    return;
                }
                if t.summary.state == SbState::Thawing && t.thawing_tid == Some(ev.tid) {
                    out.add(FindingKind::Exempt, || msg::own_thaw_dirtied(ev, sb));
                } else {
                    t.summary.slips += 1;
                    out.add(FindingKind::Slip, || msg::dirtied_slip(ev, sb));
                }
            }
            EventKind::WriteDone => {
                // The kernel only reports writes that returned while the level was COMPLETE.
                if frozen_after {
                    t.summary.slips += 1;
                    out.add(FindingKind::Slip, || msg::write_slip(ev, sb));
                }
            }
            EventKind::WriterBlocked => {
                t.waiting.insert(ev.tid, ev.clone());
            }
            EventKind::WriterUnblocked => {
                let start = t.waiting.remove(&ev.tid);
                t.summary.blocked_writers += 1;
                let begin = start.as_ref().map(|s| s.ts_ns).or(ev.begin_ts_ns).unwrap_or(ev.ts_ns);
                out.add(FindingKind::BlockedWriter, || msg::blocked_writer(ev, sb, begin));
            }
            // Handled in `apply` (a mount(2) event names no superblock).
            EventKind::LevelProbe => {
                // Frozen before we looked: its freeze was not seen, its thaw will be.
                if frozen_after && t.summary.state == SbState::Unfrozen {
                    t.summary.state = SbState::Frozen;
                    t.holders.clear();
                    t.holders.found(());
                    t.summary.frozen_since_ns = Some(ev.ts_ns);
                }
            }
            EventKind::MountBegin | EventKind::MountEnd | EventKind::MountDenied => {}
            // Ownership is `watch`'s to judge; an exit names no superblock.
            EventKind::ProcessExit => {}
        }
    }
}

/// A kernel thread writing a loop device's backing file: the loop device's worker, carrying out a
/// bio queued to the loop device (user tasks' changes to the file come in their own context).
fn loop_worker_write(ev: &Event) -> bool {
    ev.block.as_ref().is_some_and(|b| b.op().is_file()) && ev.is_kernel_thread()
}

/// A kernel thread's bio to the blocks of the filesystem's backing file on the device below it:
/// the lower filesystem's writeback of the file's pages, or a direct-I/O loop worker. What it
/// carries was written to the file by a write that was judged there (a write to the file, or a
/// bio to the loop device); a user task's raw write to those blocks is never this.
fn backing_file_writeback(ev: &Event) -> bool {
    // file-extents, or a layer below them (which names the file too).
    let on_file_blocks = ev
        .block
        .as_ref()
        .and_then(|b| b.mapping.as_ref())
        .is_some_and(|m| m.via.is_some() && m.layer != Layer::LoopAlias);
    on_file_blocks && ev.is_kernel_thread()
}

/// A kernel thread's bio to a device the storage map watches whole (an md member, a device in a
/// dm table whose mapping is not followed), or to a range below one (origin-real's dm-linear
/// device under a snapshot). Those layers keep their own copies in step on their own threads: md
/// resync and recovery, dm-snapshot's and dm-thin's copy-out (kcopyd), the origin write a
/// snapshot held until its chunk was copied out, dm-crypt carrying a bio already judged at the dm
/// device. None of it changes what the filesystem reads. Where every layer above is sector for
/// sector (partition, dm-linear, file extents), any write to the filesystem's range changes its
/// bytes, so a kernel thread there stays a slip.
fn layer_own_io(ev: &Event) -> bool {
    let whole =
        ev.block.as_ref().and_then(|b| b.mapping.as_ref()).is_some_and(|m| m.is_whole_layer_or_under_one());
    whole && ev.is_kernel_thread()
}

/// A bio below the filesystem's own device, submitted by a kernel thread: I/O the layers pass
/// down on the filesystem's behalf, not a new writer (a user task's write is submitted in its own
/// context, so it is never this).
fn passed_down_by_the_kernel(ev: &Event, sb: &Superblock) -> bool {
    let below = ev.block.as_ref().is_some_and(|b| b.dev != sb.dev && !b.op().is_file());
    below && ev.is_kernel_thread()
}
