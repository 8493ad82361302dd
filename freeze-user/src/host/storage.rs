//! Resolves the storage map of a mounted filesystem (`freeze_model::storage`): from its own
//! block device down, through partitions (sysfs `start`, `size`), device-mapper tables
//! (`dm::table`: linear and striped targets exactly, other targets as whole devices), stacking
//! drivers' `slaves/` (md: whole members) and loop devices (their backing file and range, the
//! file's blocks on the device below it (FIEMAP), followed further down, and every other loop
//! device over the same file), and the entries the kernel's watch maps need for it.
use std::path::{Path, PathBuf};

use freeze_common::{Extent, InodeKey, kdev};
use freeze_model::storage::{Layer, LayerSupport, Mapping, StorageCoverage, StorageMap};

use super::{
    dm::{DmError, DmTarget},
    fiemap::FileExtent,
};

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
    /// A file's extents (`fiemap::extents`).
    pub fiemap: &'a dyn Fn(&str) -> std::io::Result<Vec<FileExtent>>,
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
            fiemap: &super::fiemap::extents,
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
    (
        Layer::FileExtent,
        "a backing file's blocks on the device below it (FIEMAP), and that device's own layers",
    ),
    (Layer::LoopAlias, "every other loop device over a backing file, however and whenever it was set up"),
];

/// What no layer follows, in words (the trace header and `doctor` state it).
pub const UNMAPPED: &[&str] =
    &["the blocks of a loop device's backing file on btrfs (FIEMAP gives btrfs addresses, which only its \
     chunk tree places on the members)"];

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
                Layer::LoopFile | Layer::FileExtent | Layer::LoopAlias => Some("loop"),
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
    let top = Walk {
        dev: fs_dev,
        first: 0,
        len: None,
        fs_sector: Some(0),
        through: Vec::new(),
        under_file: None,
        under_whole: false,
    };
    walk(src, &mut r, fs_dev, &top, 0);
    r
}

/// The storage under a filesystem with no block device of its own whose `members` are (btrfs:
/// `fs_dev` is its anonymous `s_dev`). Each member is its own device already (aliased to the
/// filesystem); what lies under it is followed as under any filesystem's device, with no
/// filesystem sector (btrfs places its chunks itself).
pub fn resolve_members(src: &Sources<'_>, fs_dev: Dev, members: &[Dev]) -> Resolved {
    let mut r = Resolved {
        map: StorageMap { fs_dev: dev_str(fs_dev), mappings: Vec::new(), limits: Vec::new() },
        ..Default::default()
    };
    for &member in members {
        // A member is the filesystem's own device, not a layer's: btrfs writes it itself.
        let top = Walk {
            dev: member,
            first: 0,
            len: None,
            fs_sector: None,
            through: Vec::new(),
            under_file: None,
            under_whole: false,
        };
        // One level down already: the member is named in `through` of what lies under it.
        walk(src, &mut r, fs_dev, &top, 1);
    }
    r
}

/// A range of a device being followed down.
#[derive(Clone)]
struct Walk {
    dev: Dev,
    first: u64,
    /// `None`: to the end of the device.
    len: Option<u64>,
    /// The filesystem sector `first` holds, while every layer above is sector for sector.
    fs_sector: Option<u64>,
    /// Devices between the filesystem's own and `dev` (exclusive), top down.
    through: Vec<String>,
    /// Below the blocks of a backing file: (its path, the loop device it backs). Every mapping
    /// down there names them, and a loop device met further down maps part of its own file,
    /// whose inode is already another filesystem's watched backing file.
    under_file: Option<(String, String)>,
    /// A layer above `dev` is watched whole (its own threads' I/O reaches down here).
    under_whole: bool,
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
        loop_file(src, r, fs_dev, at, &real, depth);
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
        file: at.under_file.as_ref().map(|(path, _)| path.clone()),
        via: at.under_file.as_ref().map(|(_, via)| via.clone()),
        target: target.map(str::to_owned),
        first,
        len,
        fs_sector,
        through: through.clone(),
        under_whole: at.under_whole,
    });
    let end = len.map_or(u64::MAX, |l| first.saturating_add(l));
    r.extents.push((dev, Extent { fs_dev: kdev::make(fs_dev.0, fs_dev.1), via_dev: 0, first, end }));
    let under_file = at.under_file.clone();
    let under_whole = at.under_whole || layer.is_watched_whole();
    let below = Walk { dev, first, len, fs_sector, through, under_file, under_whole };
    walk(src, r, fs_dev, &below, depth + 1);
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

fn loop_file(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, real: &Path, depth: usize) {
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
    let file = FileRange {
        path,
        key: (file_dev, ino),
        first,
        end: len.map_or(u64::MAX, |l| first.saturating_add(l)),
    };
    if at.under_file.is_none() {
        r.map.mappings.push(Mapping {
            layer: Layer::LoopFile,
            dev: dev_str(at.dev),
            name: name_of(src, at.dev),
            file: Some(file.path.clone()),
            via: None,
            target: None,
            first,
            len,
            fs_sector: at.fs_sector,
            through: at.through.clone(),
            under_whole: at.under_whole,
        });
        let key = InodeKey { dev: kdev::make(file_dev.0, file_dev.1), _pad: 0, ino };
        let extent = Extent {
            fs_dev: kdev::make(fs_dev.0, fs_dev.1),
            via_dev: kdev::make(at.dev.0, at.dev.1),
            first,
            end: file.end,
        };
        r.backing.push((key, extent));
        loop_aliases(src, r, fs_dev, at, &file);
    }
    file_blocks(src, r, fs_dev, at, &file, depth);
}

/// The part of a loop device's backing file that holds the filesystem.
struct FileRange {
    path: String,
    /// (st_dev, st_ino).
    key: (Dev, u64),
    /// Bytes of the file: [first, end).
    first: u64,
    end: u64,
}

/// More pieces of one file than this are merged (over-approximated) to fit the kernel's slots.
const FILE_RANGES_MAX: usize = 16;

/// The blocks of `file` on the device of the filesystem that holds it, each a file-extents layer
/// of `at`'s filesystem followed further down like any device's range.
fn file_blocks(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, file: &FileRange, depth: usize) {
    let (file_dev, _) = file.key;
    let extents = match (src.fiemap)(&file.path) {
        Ok(e) => e,
        // tmpfs and others have no FIEMAP, and no device under them either.
        Err(_) if file_dev.0 == 0 => return,
        Err(e) => {
            r.map
                .limits
                .push(format!("{}: its extents are unreadable ({e}): its blocks are not watched", file.path));
            return;
        }
    };
    if file_dev.0 == 0 {
        if !extents.is_empty() {
            r.map.limits.push(format!(
                "{}: on a filesystem without a device of its own (btrfs): its blocks are not watched",
                file.path
            ));
        }
        return;
    }
    let mut pending = 0u64;
    // (sector on file_dev, sectors, the filesystem sector it holds).
    let mut ranges: Vec<(u64, u64, Option<u64>)> = Vec::new();
    for e in &extents {
        let (lo, hi) = (e.logical.max(file.first), e.logical.saturating_add(e.len).min(file.end));
        if lo >= hi {
            continue;
        }
        if !e.is_placed() {
            pending += hi - lo;
            continue;
        }
        let sector = (e.physical + (lo - e.logical)) / 512;
        let sectors = (hi - lo).div_ceil(512);
        let fs_sector = at.fs_sector.map(|s| s + (lo - file.first) / 512);
        match ranges.last_mut() {
            // Contiguous on both sides: one range.
            Some((s, n, f)) if *s + *n == sector && f.zip(fs_sector).is_none_or(|(f, g)| f + *n == g) => {
                *n += sectors
            }
            _ => ranges.push((sector, sectors, fs_sector)),
        }
    }
    if pending > 0 {
        r.map.limits.push(format!(
            "{}: {pending} bytes not yet on the device (delayed allocation): watched once written back",
            file.path
        ));
    }
    if ranges.len() > FILE_RANGES_MAX {
        r.map.limits.push(format!(
            "{}: {} pieces on {}, merged into {FILE_RANGES_MAX} ranges: a write between two pieces of a range \
             is reported too",
            file.path,
            ranges.len(),
            dev_str(file_dev)
        ));
        ranges = merge_closest(ranges, FILE_RANGES_MAX);
    }
    let under = Walk { under_file: Some((file.path.clone(), dev_str(at.dev))), ..at.clone() };
    for (sector, sectors, fs_sector) in ranges {
        lower(
            src,
            r,
            fs_dev,
            &under,
            Layer::FileExtent,
            None,
            file_dev,
            sector,
            Some(sectors),
            fs_sector,
            depth,
        );
    }
}

/// `ranges` (sorted by sector) merged across their smallest gaps until `max` are left; a merged
/// range no longer holds the filesystem sector for sector.
fn merge_closest(mut ranges: Vec<(u64, u64, Option<u64>)>, max: usize) -> Vec<(u64, u64, Option<u64>)> {
    ranges.sort_unstable_by_key(|r| r.0);
    while ranges.len() > max.max(1) {
        let Some(i) =
            (0..ranges.len() - 1).min_by_key(|&i| ranges[i + 1].0.saturating_sub(ranges[i].0 + ranges[i].1))
        else {
            break;
        };
        let next = ranges.remove(i + 1);
        let end = (ranges[i].0 + ranges[i].1).max(next.0 + next.1);
        ranges[i] = (ranges[i].0, end - ranges[i].0, None);
    }
    ranges
}

/// Every loop device bound to a backing file now.
pub fn bound_loops(src: &Sources<'_>) -> Vec<Dev> {
    let Ok(devs) = std::fs::read_dir(src.sysfs.join("dev/block")) else { return Vec::new() };
    let mut bound: Vec<Dev> = devs
        .flatten()
        .filter(|e| e.path().join("loop/backing_file").exists())
        .filter_map(|e| e.file_name().to_str().and_then(parse_dev))
        .collect();
    bound.sort_unstable();
    bound
}

/// Every other loop device over (part of) `file`: a loop-alias layer, whenever and however it
/// was set up. Its bios are judged at it; its own worker's writes to the file then are the
/// loop device's, as the filesystem's own loop device's are.
fn loop_aliases(src: &Sources<'_>, r: &mut Resolved, fs_dev: Dev, at: &Walk, file: &FileRange) {
    let Ok(devs) = std::fs::read_dir(src.sysfs.join("dev/block")) else { return };
    // (loop device, its offset in the file, the bytes of `file` it reads: [lo, hi)).
    let mut found: Vec<(Dev, u64, u64, u64)> = Vec::new();
    for entry in devs.flatten() {
        let Some(dev) = entry.file_name().to_str().and_then(parse_dev) else { continue };
        if dev == at.dev {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(entry.path()) else { continue };
        let Some(path) = read(&real.join("loop/backing_file")) else { continue };
        let (Some(sectors), Some(key)) = (read_u64(&real.join("size")), (src.stat)(&path)) else { continue };
        if key != file.key || sectors == 0 {
            continue;
        }
        let offset = read_u64(&real.join("loop/offset")).unwrap_or(0);
        let (lo, hi) = (file.first.max(offset), file.end.min(offset.saturating_add(sectors * 512)));
        if lo < hi {
            found.push((dev, offset, lo, hi));
        }
    }
    found.sort_unstable();
    for (dev, offset, lo, hi) in found {
        let first = (lo - offset) / 512;
        let sectors = (hi - offset).div_ceil(512) - first;
        r.map.mappings.push(Mapping {
            layer: Layer::LoopAlias,
            dev: dev_str(dev),
            name: name_of(src, dev),
            file: Some(file.path.clone()),
            via: Some(dev_str(at.dev)),
            target: None,
            first,
            len: Some(sectors),
            fs_sector: at.fs_sector.map(|s| s + (lo - file.first) / 512),
            through: at.through.clone(),
            under_whole: at.under_whole,
        });
        r.extents.push((
            dev,
            Extent { fs_dev: kdev::make(fs_dev.0, fs_dev.1), via_dev: 0, first, end: first + sectors },
        ));
    }
}

#[cfg(test)]
mod tests;
