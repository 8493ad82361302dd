//! Resolves the storage map of a mounted filesystem (`freeze_model::storage`): from its own
//! block device down, through partitions (sysfs `start`, `size`), device-mapper tables
//! (`dm::table`: linear and striped targets exactly, other targets as whole devices), stacking
//! drivers' `slaves/` (md: whole members) and loop devices (their backing file and range), and
//! the entries the kernel's watch maps need for it.
use std::path::{Path, PathBuf};

use freeze_common::{Extent, InodeKey, kdev};
use freeze_model::storage::{Layer, LayerSupport, Mapping, StorageCoverage, StorageMap};

use super::dm::{DmError, DmTarget};

/// (major, minor).
pub type Dev = (u32, u32);

/// Stacks deeper than this are cut (a loop or a cycle would otherwise never end).
const MAX_DEPTH: usize = 8;

/// Where sysfs is mounted.
pub const SYSFS: &str = "/sys";

/// What resolution reads from the system; tests give a fake sysfs and canned tables.
pub struct Sources<'a> {
    /// The sysfs mount (`/sys`).
    pub sysfs: PathBuf,
    pub dm_table: &'a dyn Fn(Dev) -> Result<Vec<DmTarget>, DmError>,
    /// A path's (st_dev, st_ino).
    pub stat: &'a dyn Fn(&str) -> Option<(Dev, u64)>,
}

impl Sources<'static> {
    pub fn system() -> Self {
        Sources {
            sysfs: PathBuf::from(SYSFS),
            dm_table: &super::dm::table,
            stat: &|path| {
                use std::os::unix::fs::MetadataExt as _;
                let md = std::fs::metadata(path).ok()?;
                Some(((libc::major(md.dev()), libc::minor(md.dev())), md.ino()))
            },
        }
    }
}

/// A storage map and the kernel entries that watch it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub map: StorageMap,
    /// Lower block device → its extents (in the order found).
    pub extents: Vec<(Dev, Extent)>,
    pub backing: Vec<(InodeKey, Extent)>,
}

/// The layer types this build follows, and what each watches: for `doctor` and the trace header.
pub const LAYERS: &[(Layer, &str)] = &[
    (Layer::Partition, "a partition's range of its disk"),
    (Layer::DmLinear, "device-mapper linear targets, sector for sector"),
    (Layer::DmStriped, "device-mapper striped targets, each device's share"),
    (Layer::DmWhole, "other device-mapper targets (snapshot, crypt, thin, raid, ...): their devices whole"),
    (Layer::MemberWhole, "md arrays and other stacking drivers (sysfs slaves/): members whole"),
    (Layer::LoopFile, "a loop device's backing file: writes, fallocate, ftruncate in its range"),
];

/// What no layer follows, in words (the trace header and `doctor` state it).
pub const UNMAPPED: &[&str] = &[
    "the blocks of a loop device's backing file on its own filesystem's device (only the file is watched)",
    "btrfs members' lower layers (members are watched whole, as their own devices)",
];

/// Which layer types this kernel has (their drivers are in `sysfs/module`), with what each
/// watches; `maps` are the storage maps to report with them.
pub fn coverage(sysfs: &Path, maps: Vec<StorageMap>) -> StorageCoverage {
    let module = |m: &str| sysfs.join("module").join(m).exists();
    let layers = LAYERS
        .iter()
        .map(|(layer, watches)| {
            let driver = match layer {
                Layer::DmLinear | Layer::DmStriped | Layer::DmWhole => Some("dm_mod"),
                Layer::MemberWhole => Some("md_mod"),
                Layer::LoopFile => Some("loop"),
                Layer::Partition => None,
            };
            let available = driver.is_none_or(module);
            let detail = match driver {
                Some(d) if !available => format!("{d} is not loaded: nothing of this kind to map"),
                _ => (*watches).to_owned(),
            };
            LayerSupport { layer: *layer, available, detail }
        })
        .collect();
    StorageCoverage { layers, unmapped: UNMAPPED.iter().map(|s| (*s).to_owned()).collect(), maps }
}

/// The storage under the filesystem whose own block device is `fs_dev`.
pub fn resolve(src: &Sources<'_>, fs_dev: Dev) -> Resolved {
    let mut r = Resolved {
        map: StorageMap { fs_dev: dev_str(fs_dev), mappings: Vec::new(), limits: Vec::new() },
        ..Default::default()
    };
    let top = Walk { dev: fs_dev, first: 0, len: None, fs_sector: Some(0), through: Vec::new() };
    walk(src, &mut r, fs_dev, &top, 0);
    r
}

/// A range of a device being followed down.
struct Walk {
    dev: Dev,
    first: u64,
    /// `None`: to the end of the device.
    len: Option<u64>,
    /// The filesystem sector `first` holds, while every layer above is sector for sector.
    fs_sector: Option<u64>,
    /// Devices between the filesystem's own and `dev` (exclusive), top down.
    through: Vec<String>,
}

fn dev_str((ma, mi): Dev) -> String {
    format!("{ma}:{mi}")
}

fn parse_dev(s: &str) -> Option<Dev> {
    let (ma, mi) = s.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.parse().ok()
}

fn walk(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, depth: usize) {
    if depth >= MAX_DEPTH {
        r.map.limits.push(format!(
            "the stack under {} is deeper than {MAX_DEPTH} layers: cut there",
            dev_str(at.dev)
        ));
        return;
    }
    let dir = src.sysfs.join("dev/block").join(dev_str(at.dev));
    let Ok(real) = std::fs::canonicalize(&dir) else { return };
    if real.join("partition").exists() {
        partition(src, r, fs_dev, at, &real, depth);
    } else if real.join("dm").is_dir() {
        device_mapper(src, r, fs_dev, at, &real, depth);
    } else if real.join("loop").is_dir() {
        loop_file(src, r, fs_dev, at, &real);
    } else {
        members(src, r, fs_dev, at, &real, depth, Layer::MemberWhole);
    }
}

/// Adds a block mapping and its kernel extent, and follows it further down.
#[allow(clippy::too_many_arguments)]
fn lower(
    src: &Sources<'_>,
    r: &mut Resolved,
    fs_dev: Dev,
    at: &Walk,
    layer: Layer,
    target: Option<&str>,
    dev: Dev,
    first: u64,
    len: Option<u64>,
    fs_sector: Option<u64>,
    depth: usize,
) {
    let mut through = at.through.clone();
    if depth > 0 {
        through.push(dev_str(at.dev));
    }
    let name = name_of(src, dev);
    r.map.mappings.push(Mapping {
        layer,
        dev: dev_str(dev),
        name,
        file: None,
        target: target.map(str::to_owned),
        first,
        len,
        fs_sector,
        through: through.clone(),
    });
    let end = len.map_or(u64::MAX, |l| first.saturating_add(l));
    r.extents.push((dev, Extent { fs_dev: kdev::make(fs_dev.0, fs_dev.1), via_dev: 0, first, end }));
    walk(src, r, fs_dev, &Walk { dev, first, len, fs_sector, through }, depth + 1);
}

fn name_of(src: &Sources<'_>, dev: Dev) -> Option<String> {
    let real = std::fs::canonicalize(src.sysfs.join("dev/block").join(dev_str(dev))).ok()?;
    Some(real.file_name()?.to_string_lossy().into_owned())
}

fn partition(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, real: &Path, depth: usize) {
    let (Some(start), Some(size), Some(disk)) = (
        read_u64(&real.join("start")),
        read_u64(&real.join("size")),
        real.parent().and_then(|p| read(&p.join("dev"))).and_then(|s| parse_dev(&s)),
    ) else {
        r.map.limits.push(format!("partition {}: start, size or disk unreadable in sysfs", dev_str(at.dev)));
        return;
    };
    let len = at.len.unwrap_or(size.saturating_sub(at.first));
    lower(src, r, fs_dev, at, Layer::Partition, None, disk, start + at.first, Some(len), at.fs_sector, depth);
}

fn device_mapper(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, real: &Path, depth: usize) {
    let table = match (src.dm_table)(at.dev) {
        Ok(t) => t,
        Err(e) => {
            r.map.limits.push(format!(
                "device-mapper {}: table unreadable ({e}): its devices are watched whole",
                dev_str(at.dev)
            ));
            return members(src, r, fs_dev, at, real, depth, Layer::DmWhole);
        }
    };
    let (want_first, want_end) = (at.first, at.len.map_or(u64::MAX, |l| at.first.saturating_add(l)));
    for t in &table {
        // The part of this target inside the range being followed.
        let (first, end) = (t.start.max(want_first), t.start.saturating_add(t.len).min(want_end));
        if first >= end {
            continue;
        }
        let fs_sector = at.fs_sector.map(|s| s + (first - want_first));
        let params: Vec<&str> = t.params.split_whitespace().collect();
        match (t.kind.as_str(), params.as_slice()) {
            ("linear", [dev, offset, ..]) => {
                if let (Some(dev), Ok(offset)) = (parse_dev(dev), offset.parse::<u64>()) {
                    let lower_first = offset + (first - t.start);
                    lower(
                        src,
                        r,
                        fs_dev,
                        at,
                        Layer::DmLinear,
                        Some("linear"),
                        dev,
                        lower_first,
                        Some(end - first),
                        fs_sector,
                        depth,
                    );
                    continue;
                }
            }
            ("striped", [n, _chunk, rest @ ..]) => {
                let n: usize = n.parse().unwrap_or(0);
                if n > 0 && rest.len() >= 2 * n {
                    // Each device holds len/n sectors of the target from its offset on.
                    let share = t.len / n as u64;
                    for pair in rest[..2 * n].chunks(2) {
                        if let (Some(dev), Ok(offset)) = (parse_dev(pair[0]), pair[1].parse::<u64>()) {
                            lower(
                                src,
                                r,
                                fs_dev,
                                at,
                                Layer::DmStriped,
                                Some("striped"),
                                dev,
                                offset,
                                Some(share),
                                None,
                                depth,
                            );
                        }
                    }
                    continue;
                }
            }
            _ => {}
        }
        // Any other target: every device its parameters name, whole.
        let devs: Vec<Dev> = params.iter().filter_map(|p| parse_dev(p)).collect();
        if devs.is_empty() {
            continue;
        }
        r.map.limits.push(format!(
            "device-mapper {} target {:?}: not followed sector for sector; its devices are watched whole",
            dev_str(at.dev),
            t.kind
        ));
        for dev in devs {
            lower(src, r, fs_dev, at, Layer::DmWhole, Some(&t.kind), dev, 0, None, None, depth);
        }
    }
}

/// The devices under a stacking driver (sysfs `slaves/`), each watched whole.
fn members(
    src: &Sources<'_>,
    r: &mut Resolved,
    fs_dev: Dev,
    at: &Walk,
    real: &Path,
    depth: usize,
    layer: Layer,
) {
    let Ok(slaves) = std::fs::read_dir(real.join("slaves")) else { return };
    let mut devs: Vec<Dev> =
        slaves.flatten().filter_map(|s| read(&s.path().join("dev"))).filter_map(|s| parse_dev(&s)).collect();
    devs.sort_unstable();
    for dev in devs {
        lower(src, r, fs_dev, at, layer, None, dev, 0, None, None, depth);
    }
}

fn loop_file(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, real: &Path) {
    let Some(path) = read(&real.join("loop/backing_file")) else { return };
    let offset = read_u64(&real.join("loop/offset")).unwrap_or(0);
    let sizelimit = read_u64(&real.join("loop/sizelimit")).filter(|s| *s > 0);
    let Some((file_dev, ino)) = (src.stat)(&path) else {
        r.map.limits.push(format!(
            "loop {}: backing file {path} cannot be found (deleted?): not watched",
            dev_str(at.dev)
        ));
        return;
    };
    // The loop device's sectors [first, first + len) are the file's bytes from offset on.
    let first = offset + at.first * 512;
    // Without a range from above, the loop device's capacity (what the file held when it was
    // attached): growing the file past it changes nothing the device reads.
    let len = match (at.len, read_u64(&real.join("size")), sizelimit) {
        (Some(l), _, _) => Some(l * 512),
        (None, Some(sectors), _) if sectors > 0 => Some((sectors - at.first.min(sectors)) * 512),
        (None, _, Some(limit)) => Some(limit.saturating_sub(at.first * 512)),
        (None, _, None) => None,
    };
    r.map.mappings.push(Mapping {
        layer: Layer::LoopFile,
        dev: dev_str(at.dev),
        name: name_of(src, at.dev),
        file: Some(path),
        target: None,
        first,
        len,
        fs_sector: at.fs_sector,
        through: at.through.clone(),
    });
    let end = len.map_or(u64::MAX, |l| first.saturating_add(l));
    let key = InodeKey { dev: kdev::make(file_dev.0, file_dev.1), _pad: 0, ino };
    let extent = Extent {
        fs_dev: kdev::make(fs_dev.0, fs_dev.1),
        via_dev: kdev::make(at.dev.0, at.dev.1),
        first,
        end,
    };
    r.backing.push((key, extent));
}

#[cfg(test)]
mod tests;
