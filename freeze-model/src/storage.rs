//! The storage under a filesystem, layer by layer: which ranges of which lower devices (a
//! partition's disk, a device-mapper target's devices) and which backing files (of loop devices)
//! hold its blocks. The recorder resolves it from sysfs and device-mapper tables, loads it into
//! the kernel so that modifications of those ranges are caught, and names the layer in the event
//! (`BlockIo::mapping`) so that findings can say which path reached the frozen storage.
use serde::{Deserialize, Serialize};

use crate::names::named_enum;

named_enum! {
    /// How a lower range holds a filesystem's blocks.
    pub enum Layer {
        /// A partition's range of its whole disk.
        Partition = "partition",
        /// A dm-linear target's range of its device: sector for sector.
        DmLinear = "dm-linear",
        /// A dm-striped target's share of one of its devices (its chunks interleave).
        DmStriped = "dm-striped",
        /// A device-mapper target whose mapping is not followed (snapshot, crypt, thin, raid, ...):
        /// the devices in its table are watched whole.
        DmWhole = "dm-whole-device",
        /// A device under an md array or any other stacking driver (sysfs `slaves/`): watched whole.
        MemberWhole = "member-whole-device",
        /// A loop device's backing file (offsets in bytes of the file).
        LoopFile = "loop-backing-file",
        /// The blocks of a loop device's backing file on the device of the filesystem that holds
        /// the file (its FIEMAP extents): a range of that device, sector for sector.
        FileExtent = "file-extents",
        /// Another loop device over (part of) the same backing file: its range that reads the
        /// filesystem's bytes, sector for sector.
        LoopAlias = "loop-alias",
    }
}

impl Layer {
    /// Whether a position in the lower range maps to one sector of the filesystem's device.
    pub fn is_one_to_one(self) -> bool {
        matches!(self, Self::Partition | Self::DmLinear | Self::LoopFile | Self::FileExtent | Self::LoopAlias)
    }

    /// Whether the layer's lower devices are watched whole (their mapping is not followed).
    pub fn is_watched_whole(self) -> bool {
        matches!(self, Self::DmWhole | Self::MemberWhole)
    }
}

/// One lower range that holds part of a filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub layer: Layer,
    /// `major:minor` of the lower block device; for a backing file, of the loop device it backs.
    pub dev: String,
    /// The lower device's name (`sda`, `dm-0`, `loop0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The backing file's path (loop-backing-file, file-extents, loop-alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// file-extents and loop-alias: `major:minor` of the loop device whose backing file `file` is
    /// (the filesystem's own, or one between it and this device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The device-mapper target type (dm layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// First 512-byte sector of the range (bytes, for a backing file).
    pub first: u64,
    /// Its length in the same unit; `None`: to the end of the device or file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// The sector of the filesystem's own device that `first` holds, when the layers above are
    /// all sector for sector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_sector: Option<u64>,
    /// The devices between the filesystem's own and this one, top down (`major:minor`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub through: Vec<String>,
    /// A layer above this range is watched whole (dm-whole-device, member-whole-device): the
    /// kernel threads of that layer (copy-out, resync) pass their own I/O down to here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub under_whole: bool,
}

impl Mapping {
    /// Whether this range is a whole-device layer or lies under one: where a layer's own
    /// threads write copies the filesystem does not read through this range's sectors.
    pub fn is_whole_layer_or_under_one(&self) -> bool {
        self.under_whole || self.layer.is_watched_whole()
    }

    /// The range's end (exclusive), `u64::MAX` for "to the end".
    pub fn end(&self) -> u64 {
        self.len.map_or(u64::MAX, |l| self.first.saturating_add(l))
    }

    /// Whether `[at, at + len)` (len 0: everything from `at` on) overlaps the range.
    pub fn overlaps(&self, at: u64, len: u64) -> bool {
        let end = if len == 0 { u64::MAX } else { at.saturating_add(len) };
        at < self.end() && self.first < end
    }

    /// The sector of the filesystem's device that position `at` of the range holds.
    pub fn fs_sector_of(&self, at: u64) -> Option<u64> {
        let base = self.fs_sector?;
        let offset = at.checked_sub(self.first)?;
        Some(base + if self.layer == Layer::LoopFile { offset / 512 } else { offset })
    }

    /// "sda", "loop0", or the number when the name is unknown.
    pub fn device_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.dev)
    }
}

/// Everything that holds one filesystem's blocks below its own device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageMap {
    /// `major:minor` of the filesystem's own device.
    pub fs_dev: String,
    pub mappings: Vec<Mapping>,
    /// What could not be mapped, in words (a layer this build does not follow, a table that
    /// could not be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

impl StorageMap {
    /// The mapping a modification of `dev` at `at` (sectors, or bytes of a backing file when
    /// `file`) for `len` falls in.
    pub fn lookup(&self, dev: &str, file: bool, at: u64, len: u64) -> Option<&Mapping> {
        self.mappings
            .iter()
            .find(|m| m.dev == dev && (m.layer == Layer::LoopFile) == file && m.overlaps(at, len))
    }
}

/// One layer type and whether this kernel has it (its driver is loaded or built in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSupport {
    pub layer: Layer,
    pub available: bool,
    /// What is watched of it, or why it is not available.
    pub detail: String,
}

/// What the storage maps of a recording can follow on this kernel, what no layer follows, and
/// the maps of the filesystems mounted when it started (the trace header's `storage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageCoverage {
    pub layers: Vec<LayerSupport>,
    /// Paths to a filesystem's storage that no layer follows, in words.
    pub unmapped: Vec<String>,
    /// The mounted filesystems that have layers under them, at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<StorageMap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(layer: Layer, dev: &str, first: u64, len: Option<u64>, fs_sector: Option<u64>) -> Mapping {
        Mapping {
            layer,
            dev: dev.into(),
            name: None,
            file: None,
            via: None,
            target: None,
            first,
            len,
            fs_sector,
            through: vec![],
            under_whole: false,
        }
    }

    #[test]
    fn lookup_matches_the_device_the_unit_and_the_range() {
        let map = StorageMap {
            fs_dev: "7:1".into(),
            mappings: vec![
                mapping(Layer::Partition, "7:0", 2048, Some(4096), Some(0)),
                mapping(Layer::LoopFile, "7:0", 0, None, Some(0)),
            ],
            limits: vec![],
        };
        let p = map.lookup("7:0", false, 2048 + 100, 8).expect("inside the partition");
        assert_eq!(p.layer, Layer::Partition);
        assert_eq!(p.fs_sector_of(2148), Some(100));
        assert!(map.lookup("7:0", false, 0, 2048).is_none(), "before the partition");
        assert!(map.lookup("7:0", false, 2048 + 4096, 8).is_none(), "after it");
        assert!(map.lookup("7:0", false, 2040, 16).is_some(), "straddling its start");
        assert!(map.lookup("8:0", false, 2048, 8).is_none(), "another device");
        let f = map.lookup("7:0", true, 1 << 20, 4096).expect("the backing file");
        assert_eq!(f.fs_sector_of(1 << 20), Some(2048));
    }

    #[test]
    fn a_truncate_overlaps_everything_after_it() {
        let m = mapping(Layer::LoopFile, "7:0", 1 << 20, Some(1 << 20), None);
        assert!(m.overlaps(0, 0), "truncate to 0");
        assert!(m.overlaps((1 << 20) + 5, 0));
        assert!(!m.overlaps(2 << 20, 0), "truncate past the mapped range");
    }

    #[test]
    fn whole_device_layers_have_no_sector_for_sector_position() {
        let m = mapping(Layer::DmWhole, "8:16", 0, None, None);
        assert_eq!(m.fs_sector_of(100), None);
        assert!(m.overlaps(u64::MAX - 10, 8));
    }
}
