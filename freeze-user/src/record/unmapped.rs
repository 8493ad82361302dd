//! Bios the kernel could not judge because its storage maps may be older than the storage
//! (`kind::UNMAPPED_BIO`: a freeze completed since they were read, or a loop device was bound
//! since, where the kernel cannot judge loop devices itself). They wait here until the maps
//! have been read after them, then are judged against those maps and the freezes seen: a bio
//! that landed on a filesystem frozen at its time becomes the BLOCK_WRITE the kernel would have
//! sent; any other is dropped.
use std::collections::{HashMap, VecDeque};

use freeze_common::{RawEvent, SbIdent, kdev, kind, level};

/// Bios held at most: past it they are judged at once against a fresh read of the maps (which
/// the pipeline then does however recently it read them), so nothing is lost.
pub(super) const HELD_MAX: usize = 4096;

/// Frozen spans remembered per filesystem: a bio read late is judged by the span of its time.
const SPANS_KEPT: usize = 4;

/// Filesystems remembered before those thawed more than `FORGET_AFTER_NS` ago are forgotten
/// (an always-on `watch` sees loop devices come and go for months).
const FILESYSTEMS_KEPT: usize = 256;
const FORGET_AFTER_NS: u64 = 60_000_000_000;

/// When each filesystem was frozen, from the freeze, thaw and level-probe records drained.
#[derive(Default)]
pub(super) struct FrozenSpans {
    /// By `s_dev` (kernel encoding).
    by_dev: HashMap<u32, VecDeque<Span>>,
}

/// A filesystem at level COMPLETE from `from` until `until` (still frozen: `None`).
struct Span {
    sb: SbIdent,
    from: u64,
    until: Option<u64>,
}

impl FrozenSpans {
    /// Follows a drained record: a freeze that completed, a level probe that found the
    /// filesystem frozen, a thaw that left it unfrozen.
    pub(super) fn observe(&mut self, raw: &RawEvent) {
        let completed = match raw.kind {
            kind::FREEZE_END => raw.ret == 0 && raw.level_after == level::COMPLETE,
            kind::LEVEL_PROBE => raw.level_after == level::COMPLETE,
            kind::THAW_END => {
                if raw.level_after != level::COMPLETE
                    && let Some(open) = self.open_span(raw.sb.dev)
                {
                    open.until = Some(raw.ts_ns);
                }
                return;
            }
            _ => return,
        };
        if !completed || raw.sb.sb == 0 || self.open_span(raw.sb.dev).is_some() {
            return;
        }
        if self.by_dev.len() >= FILESYSTEMS_KEPT {
            let since = raw.ts_ns.saturating_sub(FORGET_AFTER_NS);
            self.by_dev.retain(|_, spans| spans.back().is_some_and(|s| s.until.is_none_or(|u| u > since)));
        }
        let spans = self.by_dev.entry(raw.sb.dev).or_default();
        if spans.len() >= SPANS_KEPT {
            spans.pop_front();
        }
        spans.push_back(Span { sb: raw.sb, from: raw.ts_ns, until: None });
    }

    fn open_span(&mut self, dev: u32) -> Option<&mut Span> {
        self.by_dev.get_mut(&dev)?.back_mut().filter(|s| s.until.is_none())
    }

    /// The superblock on `dev` if it was frozen at `ts_ns`.
    fn frozen_at(&self, dev: u32, ts_ns: u64) -> Option<SbIdent> {
        let spans = self.by_dev.get(&dev)?;
        spans.iter().find(|s| s.from <= ts_ns && s.until.is_none_or(|u| ts_ns < u)).map(|s| s.sb)
    }
}

/// The filesystems (`major:minor` of their own device) whose storage a bio of `len` sectors at
/// `sector` of `dev` (`major:minor`) lands on, by the storage maps.
pub(super) trait StorageLookup {
    fn holders(&self, dev: &str, sector: u64, len: u64) -> Vec<String>;
}

impl StorageLookup for crate::bpf::storage_maps::StorageMaps {
    fn holders(&self, dev: &str, sector: u64, len: u64) -> Vec<String> {
        Self::holders(self, dev, sector, len)
    }
}

/// Judges an UNMAPPED_BIO record: the BLOCK_WRITE record the kernel would have sent had its maps
/// been current, or `None` when it landed on no filesystem frozen at its time.
pub(super) fn judge(raw: &RawEvent, spans: &FrozenSpans, maps: &impl StorageLookup) -> Option<RawEvent> {
    let (major, minor) = kdev::split(raw.bdev);
    let sectors = u64::from(raw.flags / 512).max(1);
    maps.holders(&format!("{major}:{minor}"), raw.arg, sectors).iter().find_map(|fs| {
        let (ma, mi) = fs.split_once(':')?;
        let fs_dev = kdev::make(ma.parse().ok()?, mi.parse().ok()?);
        let sb = spans.frozen_at(fs_dev, raw.ts_ns)?;
        Some(RawEvent {
            kind: kind::BLOCK_WRITE,
            sb,
            level_before: level::COMPLETE,
            level_after: level::COMPLETE,
            ..*raw
        })
    })
}

/// UNMAPPED_BIO records waiting for the maps to be read after them, oldest first.
#[derive(Default)]
pub(super) struct Held {
    bios: VecDeque<RawEvent>,
}

impl Held {
    pub(super) fn push(&mut self, raw: RawEvent) {
        self.bios.push_back(raw);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bios.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.bios.len() >= HELD_MAX
    }

    /// Takes out every bio older than maps read at `maps_read_ns`.
    pub(super) fn take_older_than(&mut self, maps_read_ns: u64) -> Vec<RawEvent> {
        let (older, newer): (Vec<_>, Vec<_>) = self.bios.drain(..).partition(|b| b.ts_ns < maps_read_ns);
        self.bios.extend(newer);
        older
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map where loop device 7:5 sectors [100, 200) hold filesystem 7:0.
    struct OneAlias;

    impl StorageLookup for OneAlias {
        fn holders(&self, dev: &str, sector: u64, len: u64) -> Vec<String> {
            if dev == "7:5" && sector < 200 && 100 < sector + len { vec!["7:0".into()] } else { vec![] }
        }
    }

    fn raw(kind: u32, ts: u64, dev: u32, sb: u64) -> RawEvent {
        let mut r = RawEvent::zeroed();
        r.kind = kind;
        r.ts_ns = ts;
        r.sb.sb = sb;
        r.sb.dev = dev;
        r
    }

    fn freeze_end(ts: u64) -> RawEvent {
        let mut r = raw(kind::FREEZE_END, ts, kdev::make(7, 0), 0xff00);
        r.level_after = level::COMPLETE;
        r
    }

    fn thaw_end(ts: u64) -> RawEvent {
        let mut r = raw(kind::THAW_END, ts, kdev::make(7, 0), 0xff00);
        r.level_after = level::UNFROZEN;
        r
    }

    fn bio(ts: u64, sector: u64) -> RawEvent {
        let mut r = raw(kind::UNMAPPED_BIO, ts, 0, 0);
        r.bdev = kdev::make(7, 5);
        r.arg = sector;
        r.flags = 4096;
        r
    }

    #[test]
    fn a_bio_on_a_frozen_filesystems_layer_becomes_its_block_write() {
        let mut spans = FrozenSpans::default();
        spans.observe(&freeze_end(1000));
        let judged = judge(&bio(1500, 120), &spans, &OneAlias).expect("a slip's record");
        assert_eq!(judged.kind, kind::BLOCK_WRITE);
        assert_eq!((judged.sb.sb, judged.level_after), (0xff00, level::COMPLETE));
        assert_eq!(
            (judged.bdev, judged.arg, judged.flags, judged.ts_ns),
            (kdev::make(7, 5), 120, 4096, 1500)
        );
        assert!(judge(&bio(1500, 300), &spans, &OneAlias).is_none(), "outside the layer's range");
    }

    #[test]
    fn only_the_time_it_was_frozen_counts_even_when_read_after_the_thaw() {
        let mut spans = FrozenSpans::default();
        spans.observe(&freeze_end(1000));
        spans.observe(&thaw_end(2000));
        spans.observe(&freeze_end(3000));
        assert!(judge(&bio(900, 120), &spans, &OneAlias).is_none(), "before the freeze");
        assert!(judge(&bio(1999, 120), &spans, &OneAlias).is_some(), "frozen, read after the thaw");
        assert!(judge(&bio(2500, 120), &spans, &OneAlias).is_none(), "between freezes");
        assert!(judge(&bio(3500, 120), &spans, &OneAlias).is_some(), "the second freeze");
    }

    #[test]
    fn a_failed_freeze_or_a_nested_thaw_changes_nothing() {
        let mut spans = FrozenSpans::default();
        let mut failed = freeze_end(500);
        (failed.ret, failed.level_after) = (-16, level::UNFROZEN);
        spans.observe(&failed);
        assert!(judge(&bio(600, 120), &spans, &OneAlias).is_none(), "the freeze failed");
        spans.observe(&freeze_end(1000));
        let mut nested = thaw_end(1500);
        nested.level_after = level::COMPLETE;
        spans.observe(&nested);
        assert!(judge(&bio(1600, 120), &spans, &OneAlias).is_some(), "another holder keeps it frozen");
    }

    #[test]
    fn filesystems_thawed_long_ago_are_forgotten_once_many_were_seen() {
        let mut spans = FrozenSpans::default();
        for dev in 0..FILESYSTEMS_KEPT as u32 {
            let mut f = freeze_end(1000);
            (f.sb.dev, f.sb.sb) = (kdev::make(7, 100 + dev), 1);
            spans.observe(&f);
            let mut t = thaw_end(2000);
            t.sb.dev = f.sb.dev;
            spans.observe(&t);
        }
        let later = FORGET_AFTER_NS + 10_000;
        spans.observe(&freeze_end(later));
        assert_eq!(spans.by_dev.len(), 1, "only the one frozen now is kept");
        assert!(judge(&bio(later + 1, 120), &spans, &OneAlias).is_some());
    }

    #[test]
    fn held_bios_wait_for_maps_read_after_them() {
        let mut held = Held::default();
        held.push(bio(100, 1));
        held.push(bio(300, 2));
        let taken = held.take_older_than(200);
        assert_eq!(taken.iter().map(|b| b.arg).collect::<Vec<_>>(), [1]);
        assert!(!held.is_empty());
        assert_eq!(held.take_older_than(400).len(), 1);
        assert!(held.is_empty());
    }
}
