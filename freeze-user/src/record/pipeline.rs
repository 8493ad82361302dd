//! What happens to each ring-buffer record: decoded, enriched (mount points, cgroups, symbols,
//! mount calls, storage layers), written to the trace, handed to a live consumer, and fed to the
//! streaming correlator, whose findings are written as soon as they are certain. Nothing here
//! grows with the number of events.
use std::{collections::HashMap, io::Write};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use freeze_common::kdev;
use freeze_model::{
    correlate::{Analysis, Correlator, Finding, FindingKind},
    decode::{Decoder, raw_from_bytes},
    event::{Event, EventKind, MountCall, Stack},
    trace::{Counters, Footer, Header, Record, SummaryLine, TraceWriter},
};

use super::{
    Tap,
    unmapped::{self, FrozenSpans, Held},
};
use crate::{
    bpf::loader::Loaded,
    host::{btrfs_devs, cgroups::CgroupPaths, kernel, ksyms::Ksyms, mountinfo::MountTable},
};

/// Mount calls remembered at most (a call whose end was lost is forgotten with the rest).
const MOUNT_CALLS_KEPT: usize = 4096;

/// What a recording wrote, for its closing line and exit.
#[derive(Clone, Copy, Default)]
pub(super) struct Written {
    pub events: u64,
    pub findings: u64,
    pub slips: u64,
}

/// Decodes, enriches, writes and correlates the events of one recording.
pub(super) struct EventPipeline {
    writer: TraceWriter<Box<dyn Write + Send>>,
    mounts: MountTable,
    correlator: Correlator,
    written: Written,
    /// Records that did not decode (counted as lost in the footer).
    undecodable: u64,
    /// Kernel symbols, read on the first event that carries a stack or a caller address (a tenth
    /// of a second, and megabytes a recording without one never needs).
    ksyms: Option<Ksyms>,
    /// Mount calls in progress, by thread: their end event repeats them.
    mount_calls: HashMap<u32, Box<MountCall>>,
    tap: Option<std::sync::mpsc::Sender<Tap>>,
    /// A mount landed since the mount points were last given to the kernel.
    mounts_changed: bool,
    /// A freeze began since the mount table was last read.
    freezes_seen: bool,
    /// `MountTable::changes` when the maps were last read: they are current while it stays.
    mapped_mounts: u64,
    /// When an event's unknown layer last made the maps refresh.
    layer_refreshed: Option<std::time::Instant>,
    /// When the storage maps were last read (CLOCK_MONOTONIC ns, the events' clock).
    maps_read_ns: u64,
    /// Bios the kernel could not judge, waiting for maps read after them.
    unmapped: Held,
    /// When each filesystem was frozen, to judge those bios by their time.
    frozen: FrozenSpans,
    /// Cgroup ids to paths, for attribution.
    cgroups: CgroupPaths,
    /// Shares the superblocks and parents that records repeat.
    decoder: Decoder,
    /// Symbolized kernel stacks by stack id: the kernel's stack map keeps an id's frames for as
    /// long as the map lives, so each distinct stack is read and named once.
    stacks: HashMap<u32, Stack>,
}

impl EventPipeline {
    /// A pipeline writing to `out`. It reads the mount table here, once, and gives the kernel
    /// what follows from it (`refresh`) before any event is drained.
    pub(super) fn new(
        out: Box<dyn Write + Send>,
        correlator: Correlator,
        tap: Option<std::sync::mpsc::Sender<Tap>>,
        loaded: &mut Loaded,
    ) -> Self {
        let mut pipeline = Self {
            writer: TraceWriter::new(out),
            mounts: MountTable::default(),
            correlator,
            written: Written::default(),
            undecodable: 0,
            ksyms: None,
            mount_calls: HashMap::new(),
            tap,
            mounts_changed: false,
            freezes_seen: false,
            mapped_mounts: 0,
            layer_refreshed: None,
            maps_read_ns: 0,
            unmapped: Held::default(),
            frozen: FrozenSpans::default(),
            cgroups: CgroupPaths::load(),
            decoder: Decoder::default(),
            stacks: HashMap::new(),
        };
        pipeline.refresh(loaded);
        pipeline
    }

    /// The cgroup2 mount that cgroup paths are relative to (for the trace header).
    pub(super) fn cgroup2_root(&self) -> Option<&std::path::Path> {
        self.cgroups.root()
    }

    /// Writes a record (the header, the footer) and flushes it out.
    fn write(&mut self, record: &Record) -> Result<()> {
        self.writer.write(record).and_then(|()| self.writer.flush()).context("writing the trace")
    }

    /// Starts the trace with `header`, and tells the live consumer.
    pub(super) fn start(&mut self, header: Header) -> Result<()> {
        self.write(&Record::Header(header.clone())).context("writing the trace header")?;
        if let Some(tap) = &self.tap {
            let _ = tap.send(Tap::Header(header));
        }
        Ok(())
    }

    /// Reads the mount table again and gives the kernel what follows from it: btrfs members'
    /// aliases, the mount points (for mount denial), the storage under each filesystem.
    pub(super) fn refresh(&mut self, loaded: &mut Loaded) {
        // Read before the layers: a freeze that completes while they are read leaves the maps
        // behind it, and the kernel keeps sending what it cannot judge.
        let freezes = loaded.freezes_completed();
        self.maps_read_ns = kernel::monotonic_ns();
        self.mounts.refresh();
        self.mapped_mounts = self.mounts.changes();
        let mounts = self.mounts.all();
        let btrfs = btrfs_devs::on_this_system(&mounts);
        loaded.refresh_btrfs_aliases(&btrfs);
        loaded.refresh_mount_paths(&mounts);
        loaded.refresh_storage(&mounts, &btrfs);
        loaded.maps_read_after(freezes);
        self.mounts_changed = false;
    }

    /// Whether an unknown layer may make the maps refresh now: at most every
    /// `LAYER_REFRESH_EVERY`, so that a stream of writes through one cannot keep the recorder
    /// resolving storage.
    fn may_refresh_for_a_layer(&mut self) -> bool {
        let now = std::time::Instant::now();
        let due = self.layer_refreshed.is_none_or(|at| now.duration_since(at) >= LAYER_REFRESH_EVERY);
        if due {
            self.layer_refreshed = Some(now);
        }
        due
    }

    /// The programs' counters, with the records this side could not decode.
    pub(super) fn counters(&self, loaded: &Loaded) -> Counters {
        Counters { lost_undecodable: self.undecodable, ..loaded.counters() }
    }

    /// Hands the counters to the live consumer, if there is one.
    pub(super) fn tap_counters(&self, loaded: &Loaded) {
        if let Some(tap) = &self.tap {
            let _ = tap.send(Tap::Counters(self.counters(loaded)));
        }
    }

    /// Writes findings; with `live`, also hands them to the live consumer (`watch` judges from
    /// these rather than correlating a second time). The findings of the recording's end are not
    /// live: a consumer that outlives the recording has not seen it end.
    fn write_findings(&mut self, findings: Vec<Finding>, live: bool) -> Result<()> {
        for f in findings {
            if let (true, Some(tap)) = (live, &self.tap) {
                let _ = tap.send(Tap::Finding(Box::new(f.clone())));
            }
            self.written.findings += 1;
            if f.kind == FindingKind::Slip {
                self.written.slips += 1;
            }
            self.writer.write(&Record::Finding(f)).context("writing a finding")?;
        }
        Ok(())
    }

    /// Takes every record the ring buffer holds through the pipeline; when one of them changed
    /// the mounts (a mount, a freeze), refreshes what the kernel knows of them.
    pub(super) fn drain(&mut self, ring: &mut RingBuf<MapData>, loaded: &mut Loaded) -> Result<()> {
        while let Some(item) = ring.next() {
            let raw = match raw_from_bytes(&item) {
                Ok(raw) => raw,
                Err(e) => {
                    self.undecodable += 1;
                    log::warn!("dropped an undecodable record: {e}");
                    continue;
                }
            };
            self.frozen.observe(&raw);
            if raw.kind == freeze_common::kind::UNMAPPED_BIO {
                self.hold_unmapped(raw, loaded)?;
                continue;
            }
            self.take(&raw, &item, loaded)?;
        }
        self.catch_up_unmapped(loaded)?;
        // What the kernel handed over is in the trace (one write for the whole batch).
        self.writer.flush().context("writing the trace")?;
        if self.freezes_seen {
            // The table is read, and only a changed one is mapped again: layers that change
            // without a mount are device events (refreshed on them), and what the freeze's sync
            // changes is read when it completes.
            self.freezes_seen = false;
            self.mounts.refresh();
            self.mounts_changed |= self.mounts.changes() != self.mapped_mounts;
        }
        if self.mounts_changed {
            self.refresh(loaded);
        }
        Ok(())
    }

    /// One record (`item`: its bytes, for a mount call's strings) through the pipeline.
    fn take(&mut self, raw: &freeze_common::RawEvent, item: &[u8], loaded: &mut Loaded) -> Result<()> {
        let mountpoint =
            if raw.sb.sb != 0 { self.mounts.mountpoint_refreshing(kdev::split(raw.sb.dev)) } else { None };
        let mut ev = match self.decoder.event(raw, mountpoint) {
            Ok(ev) => ev,
            Err(e) => {
                self.undecodable += 1;
                log::warn!("dropped an undecodable record: {e}");
                return Ok(());
            }
        };
        ev.add_mount_strings(item);
        if let Some(cg) = ev.cgroup.as_mut()
            && let Some(known) = self.cgroups.cgroup(cg.id)
        {
            *cg = known;
        }
        self.symbolize(raw, &mut ev, loaded);
        if name_the_layer(&mut ev, loaded) == Named::Unknown && self.may_refresh_for_a_layer() {
            // Judged in the kernel below a layer set up since the last refresh (a loop
            // device over a watched file): map it now, to name it.
            self.refresh(loaded);
            name_the_layer(&mut ev, loaded);
        }
        self.complete_mount(&mut ev);
        self.writer.write_event(&ev).context("writing the trace")?;
        self.written.events += 1;
        if let Some(tap) = &self.tap {
            let _ = tap.send(Tap::Event(Box::new(ev.clone())));
        }
        let findings = self.correlator.push(ev);
        self.write_findings(findings, true)
    }

    /// A bio the kernel could not judge: held until the maps are read after it. A full hold
    /// has the maps read now, however recently they were, so that none is dropped.
    fn hold_unmapped(&mut self, raw: freeze_common::RawEvent, loaded: &mut Loaded) -> Result<()> {
        self.unmapped.push(raw);
        if self.unmapped.is_full() {
            self.refresh(loaded);
            self.judge_unmapped(loaded)?;
        }
        Ok(())
    }

    /// Reads the maps again for held bios (at most every `LAYER_REFRESH_EVERY`), and judges
    /// those the maps were read after.
    fn catch_up_unmapped(&mut self, loaded: &mut Loaded) -> Result<()> {
        if !self.unmapped.is_empty() && self.may_refresh_for_a_layer() {
            self.refresh(loaded);
        }
        self.judge_unmapped(loaded)
    }

    /// Judges the held bios the maps were read after: those that landed on a filesystem frozen
    /// at their time go on as the block writes the kernel would have sent.
    fn judge_unmapped(&mut self, loaded: &mut Loaded) -> Result<()> {
        for bio in self.unmapped.take_older_than(self.maps_read_ns) {
            if let Some(judged) = unmapped::judge(&bio, &self.frozen, &loaded.storage) {
                self.take(&judged, &[], loaded)?;
            }
        }
        Ok(())
    }

    /// The clock moved on: findings that only time makes certain (a freeze that has lasted too
    /// long), and events the reorder window no longer needs to hold.
    pub(super) fn tick(&mut self, now_ns: u64, loaded: &mut Loaded) -> Result<()> {
        self.catch_up_unmapped(loaded)?;
        let findings = self.correlator.tick(now_ns);
        self.write_findings(findings, true)?;
        self.writer.flush().context("writing the trace")
    }

    /// Recording ended at `end_ns`: the findings still open, a summary per superblock, then
    /// `footer` (its event count filled in here); returns what was written. The trace's writer
    /// is dropped, queueing what is left.
    pub(super) fn finish(mut self, end_ns: u64, mut footer: Footer) -> Result<Written> {
        let correlator = std::mem::replace(&mut self.correlator, Correlator::new(Default::default()));
        let Analysis { findings, summaries } = correlator.finish(Some(end_ns));
        self.write_findings(findings, false)?;
        for (sb_id, summary) in summaries {
            self.writer
                .write(&Record::Summary(SummaryLine { sb_id, summary }))
                .context("writing a summary")?;
        }
        footer.events = self.written.events;
        self.write(&Record::Footer(footer)).context("writing the trace footer")?;
        Ok(self.written)
    }

    /// A mount_end repeats its begin's call, and says which device is now mounted at the target.
    fn complete_mount(&mut self, ev: &mut Event) {
        match ev.kind {
            // A freeze that begins needs the mount table current (mount denial, the storage
            // under a filesystem mounted just before), which it usually is already.
            EventKind::FreezeBegin => self.freezes_seen = true,
            // A loop device's backing file settles its extents while the freeze syncs (delayed
            // allocation), and they are what a write must be judged by from now on.
            EventKind::FreezeEnd => self.mounts_changed = true,
            EventKind::MountBegin => {
                if let Some(call) = ev.mount.as_mut() {
                    call.source_dev = self.source_dev(&call.source);
                    if self.mount_calls.len() >= MOUNT_CALLS_KEPT {
                        self.mount_calls.clear();
                    }
                    self.mount_calls.insert(ev.tid, call.clone());
                }
            }
            EventKind::MountEnd => {
                let Some(mut call) = self.mount_calls.remove(&ev.tid) else { return };
                // The device now mounted where it landed, from mountinfo.
                let mut landed = None;
                if let (Some(0), Some(id)) = (ev.ret, call.mount_id) {
                    // An automount: where it landed, and what, is the mount with its id.
                    self.mounts.refresh();
                    if let Some(m) = u32::try_from(id).ok().and_then(|id| self.mounts.by_id(id)) {
                        call.target = m.mountpoint.clone();
                        call.source = m.source.clone();
                        call.fstype = m.fstype.clone();
                        landed = Some(m.dev);
                    }
                } else if ev.ret == Some(0) && call.target.starts_with('/') {
                    let target = canonical_mount_point(&call.target);
                    self.mounts.refresh();
                    landed = self.mounts.dev_at(&target);
                }
                call.mounted_dev = landed.map(|(ma, mi)| format!("{ma}:{mi}"));
                if ev.ret == Some(0) && call.api.attaches() && may_change_storage(landed, &self.mounts) {
                    self.mounts_changed = true;
                }
                ev.mount = Some(call);
            }
            _ => {}
        }
    }

    /// The superblock device a mount source belongs to: a block device's number (btrfs members
    /// map to their filesystem's anonymous device), or the st_dev of a directory being bound.
    fn source_dev(&self, source: &str) -> Option<String> {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let md = std::fs::metadata(source).ok()?;
        let (dev, is_bdev) =
            if md.file_type().is_block_device() { (md.rdev(), true) } else { (md.dev(), false) };
        let mut num = (libc::major(dev), libc::minor(dev));
        if is_bdev {
            let aliases = btrfs_devs::on_this_system(&self.mounts.all());
            if let Some((_, fs)) = aliases.iter().find(|(member, _)| *member == num) {
                num = *fs;
            }
        }
        Some(format!("{}:{}", num.0, num.1))
    }

    /// Names the stack frames and the transaction caller from /proc/kallsyms.
    fn symbolize(&mut self, raw: &freeze_common::RawEvent, ev: &mut Event, loaded: &Loaded) {
        let caller = ev.txn.as_ref().and_then(|_| (raw.arg != 0).then_some(raw.arg));
        if raw.stack_id == 0 && caller.is_none() {
            return;
        }
        let ksyms = self.ksyms.get_or_insert_with(|| {
            let ksyms = Ksyms::load();
            // Reading them grew the heap past what they keep: give the rest back, as after loading.
            super::release_free_heap();
            ksyms
        });
        if let (Some(txn), Some(addr)) = (ev.txn.as_mut(), caller) {
            txn.caller = Some(ksyms.name(addr));
        }
        if raw.stack_id == 0 {
            return;
        }
        if let Some(stack) = self.stacks.get(&raw.stack_id) {
            ev.stack = Some(stack.clone());
        } else if let Some(frames) = loaded.stack(raw.stack_id) {
            let stack: Stack = frames.into_iter().map(|ip| ksyms.name(ip)).collect();
            self.stacks.insert(raw.stack_id, stack.clone());
            ev.stack = Some(stack);
        }
    }
}

/// Refreshing the storage maps to name a layer: at most this often.
const LAYER_REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// What `name_the_layer` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Named {
    /// No layer to name (not a modification, or the filesystem's own device), or named.
    Done,
    /// Below the filesystem, and no map holds that device and range.
    Unknown,
}

/// A modification of a device other than the filesystem's own: which layer maps it there.
fn name_the_layer(ev: &mut Event, loaded: &Loaded) -> Named {
    let (Some(sb), Some(block)) = (ev.sb.as_ref(), ev.block.as_mut()) else { return Named::Done };
    let file = block.op().is_file();
    if block.dev == sb.dev && !file {
        return Named::Done;
    }
    block.mapping =
        loaded.storage.mapping(&sb.dev, &block.dev, file, block.position(), block.span()).map(Box::new);
    if block.mapping.is_some() { Named::Done } else { Named::Unknown }
}

/// Whether a mount that landed may change what the storage maps and the mount-point table hold:
/// a filesystem on a block device, or a btrfs (whose superblock has an anonymous device), or one
/// not known. A tmpfs, proc or other virtual mount changes neither, and a mount loop of them
/// would otherwise have the recorder walk sysfs for each (docs/benchmarks.md, guest bench).
fn may_change_storage(landed: Option<(u32, u32)>, mounts: &MountTable) -> bool {
    landed.is_none_or(|dev| dev.0 != 0 || mounts.fstype(dev) == Some("btrfs"))
}

/// `target` with its directories' symlinks and dots resolved, as mountinfo names mount points,
/// without walking into the mount point itself: a path walk through a mount holds it for that
/// moment, and a `umount` right after the `mount` would then fail with EBUSY.
fn canonical_mount_point(target: &str) -> String {
    let path = std::path::Path::new(target);
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name).to_string_lossy().into_owned())
            .unwrap_or_else(|_| target.to_owned()),
        _ => target.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{canonical_mount_point, may_change_storage};
    use crate::host::mountinfo::{MountTable, parse};

    /// Block-device and btrfs mounts (and unknown ones) refresh the storage maps; a tmpfs does not.
    #[test]
    fn only_a_mount_that_can_hold_storage_refreshes_the_maps() {
        let mounts = MountTable::from_mounts(parse(
            "30 1 0:40 / /t rw - tmpfs none rw\n31 1 0:41 / /b rw - btrfs /dev/loop1 rw\n",
        ));
        assert!(may_change_storage(Some((7, 0)), &mounts));
        assert!(may_change_storage(Some((0, 41)), &mounts), "btrfs");
        assert!(may_change_storage(None, &mounts), "unknown");
        assert!(!may_change_storage(Some((0, 40)), &mounts), "tmpfs");
    }

    /// The directories above a mount point are resolved (a symlink among them); the mount point
    /// itself is taken as named, never walked into.
    #[test]
    fn a_mount_point_is_resolved_up_to_its_parent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("mnt")).expect("dirs");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        let canonical_real = std::fs::canonicalize(&real).expect("canonical");
        let via_link = dir.path().join("link/mnt").display().to_string();
        assert_eq!(canonical_mount_point(&via_link), canonical_real.join("mnt").display().to_string());
        assert_eq!(canonical_mount_point("/"), "/");
        assert_eq!(canonical_mount_point("/no/such/dir/mnt"), "/no/such/dir/mnt");
    }
}
