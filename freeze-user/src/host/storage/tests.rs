//! Resolution over a fake sysfs: a partitioned loop disk, a dm-linear and a striped device, an
//! md-like holder, and a loop device with an offset.
use super::*;
use crate::host::fiemap::flag;

/// A sysfs tree in a temp dir: `devices/<path>` dirs with `dev` files, `dev/block/M:m` links.
struct FakeSys {
    root: tempfile::TempDir,
}

impl FakeSys {
    fn new() -> Self {
        Self { root: tempfile::tempdir().expect("temp dir") }
    }

    fn device(&self, path: &str, dev: Dev, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root.path().join("devices").join(path);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("dev"), format!("{}:{}\n", dev.0, dev.1)).expect("dev");
        for (name, text) in files {
            let f = dir.join(name);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, text).expect("write");
        }
        let links = self.root.path().join("dev/block");
        std::fs::create_dir_all(&links).expect("mkdir");
        std::os::unix::fs::symlink(&dir, links.join(format!("{}:{}", dev.0, dev.1))).expect("link");
        dir
    }

    fn slave(&self, holder: &Path, name: &str, target: &Path) {
        std::fs::create_dir_all(holder.join("slaves")).expect("mkdir");
        std::os::unix::fs::symlink(target, holder.join("slaves").join(name)).expect("link");
    }

    fn sources<'a>(
        &self,
        dm: &'a dyn Fn(Dev) -> Result<Vec<DmTarget>, DmError>,
        stat: &'a dyn Fn(&str) -> Option<(Dev, u64)>,
    ) -> Sources<'a> {
        Sources { sysfs: self.root.path().to_path_buf(), dm_table: dm, stat, fiemap: &no_extents }
    }
}

/// A sparse file: no extents.
fn no_extents(_: &str) -> std::io::Result<Vec<FileExtent>> {
    Ok(Vec::new())
}

fn no_dm(_: Dev) -> Result<Vec<DmTarget>, DmError> {
    Err(DmError::Malformed)
}

fn stat_img(path: &str) -> Option<(Dev, u64)> {
    (path == "/tmp/x/disk.img").then_some(((254, 0), 1234))
}

fn target(start: u64, len: u64, kind: &str, params: &str) -> DmTarget {
    DmTarget { start, len, kind: kind.into(), params: params.into() }
}

#[test]
fn a_partition_maps_to_its_range_of_the_disk_and_the_disk_to_its_backing_file() {
    let sys = FakeSys::new();
    sys.device(
        "virtual/block/loop0",
        (7, 0),
        &[("loop/backing_file", "/tmp/x/disk.img\n"), ("loop/offset", "0\n"), ("loop/sizelimit", "0\n")],
    );
    sys.device(
        "virtual/block/loop0/loop0p2",
        (259, 1),
        &[("partition", "2\n"), ("start", "4096\n"), ("size", "8192\n")],
    );
    let r = resolve(&sys.sources(&no_dm, &stat_img), (259, 1));
    let [disk, file] = r.map.mappings.as_slice() else { panic!("{:#?}", r.map) };
    assert_eq!(
        (disk.layer, disk.dev.as_str(), disk.name.as_deref()),
        (Layer::Partition, "7:0", Some("loop0"))
    );
    assert_eq!((disk.first, disk.len, disk.fs_sector), (4096, Some(8192), Some(0)));
    assert_eq!((file.layer, file.file.as_deref()), (Layer::LoopFile, Some("/tmp/x/disk.img")));
    assert_eq!((file.first, file.len, file.fs_sector), (4096 * 512, Some(8192 * 512), Some(0)));
    // The file backs 7:0 itself, the partition's disk: nothing lies between.
    assert!(file.through.is_empty());
    assert_eq!(
        r.extents,
        vec![((7, 0), Extent { fs_dev: kdev::make(259, 1), via_dev: 0, first: 4096, end: 4096 + 8192 })]
    );
    let (key, extent) = r.backing[0];
    assert_eq!((key.dev, key.ino), (kdev::make(254, 0), 1234));
    assert_eq!(
        (extent.via_dev, extent.first, extent.end),
        (kdev::make(7, 0), 4096 * 512, (4096 + 8192) * 512)
    );
    assert!(r.map.limits.is_empty(), "{:?}", r.map.limits);
    // btrfs writes its members itself: no layer's own threads below them.
    assert!(r.map.mappings.iter().all(|m| !m.is_whole_layer_or_under_one()));
}

#[test]
fn dm_linear_targets_map_their_part_of_the_range_sector_for_sector() {
    let sys = FakeSys::new();
    sys.device("virtual/block/dm-0", (253, 0), &[("dm/name", "origin\n")]);
    sys.device("virtual/block/loop1", (7, 1), &[]);
    sys.device("virtual/block/loop2", (7, 2), &[]);
    let dm = |dev: Dev| {
        assert_eq!(dev, (253, 0));
        Ok(vec![target(0, 1000, "linear", "7:1 2048"), target(1000, 500, "linear", "7:2 0")])
    };
    let r = resolve(&sys.sources(&dm, &stat_img), (253, 0));
    let got: Vec<_> =
        r.map.mappings.iter().map(|m| (m.layer, m.dev.as_str(), m.first, m.len, m.fs_sector)).collect();
    assert_eq!(
        got,
        vec![
            (Layer::DmLinear, "7:1", 2048, Some(1000), Some(0)),
            (Layer::DmLinear, "7:2", 0, Some(500), Some(1000))
        ]
    );
}

#[test]
fn striped_and_unknown_targets_are_watched_as_shares_and_wholes_and_said() {
    let sys = FakeSys::new();
    sys.device("virtual/block/dm-1", (253, 1), &[("dm/name", "s\n")]);
    sys.device("virtual/block/dm-2", (253, 2), &[("dm/name", "c\n")]);
    let dm = |dev: Dev| match dev {
        (253, 1) => Ok(vec![target(0, 4096, "striped", "2 128 7:1 0 7:2 64")]),
        _ => Ok(vec![target(0, 4096, "crypt", "aes-xts-plain64 :64:logon:k 0 7:3 4096")]),
    };
    let striped = resolve(&sys.sources(&dm, &stat_img), (253, 1));
    let got: Vec<_> =
        striped.map.mappings.iter().map(|m| (m.layer, m.dev.as_str(), m.first, m.len, m.fs_sector)).collect();
    assert_eq!(
        got,
        vec![(Layer::DmStriped, "7:1", 0, Some(2048), None), (Layer::DmStriped, "7:2", 64, Some(2048), None)]
    );
    let crypt = resolve(&sys.sources(&dm, &stat_img), (253, 2));
    let m = &crypt.map.mappings[0];
    assert_eq!(
        (m.layer, m.dev.as_str(), m.target.as_deref(), m.len),
        (Layer::DmWhole, "7:3", Some("crypt"), None)
    );
    assert_eq!(crypt.extents[0].1.end, u64::MAX);
    assert!(crypt.map.limits[0].contains("\"crypt\""), "{:?}", crypt.map.limits);
}

/// A snapshot watches origin-real and its copy-on-write device whole; origin-real's own linear
/// table is still followed, and what lies there is marked as under a whole layer (the snapshot's
/// held origin writes reach it on a worker).
#[test]
fn what_lies_under_a_device_watched_whole_is_marked_so() {
    let sys = FakeSys::new();
    sys.device("virtual/block/dm-0", (253, 0), &[("dm/name", "real\n")]);
    sys.device("virtual/block/dm-2", (253, 2), &[("dm/name", "snap\n")]);
    sys.device("virtual/block/loop0", (7, 0), &[]);
    sys.device("virtual/block/loop1", (7, 1), &[]);
    let dm = |dev: Dev| match dev {
        (253, 0) => Ok(vec![target(0, 4096, "linear", "7:0 0")]),
        (253, 2) => Ok(vec![target(0, 4096, "snapshot", "253:0 7:1 P 8")]),
        other => panic!("no table for {other:?}"),
    };
    let r = resolve(&sys.sources(&dm, &stat_img), (253, 2));
    let got: Vec<_> =
        r.map.mappings.iter().map(|m| (m.layer, m.dev.as_str(), m.through.clone(), m.under_whole)).collect();
    assert_eq!(
        got,
        vec![
            (Layer::DmWhole, "253:0", vec![], false),
            (Layer::DmLinear, "7:0", vec!["253:0".to_owned()], true),
            (Layer::DmWhole, "7:1", vec![], false),
        ]
    );
    assert!(r.map.mappings.iter().all(|m| m.is_whole_layer_or_under_one()));
}

#[test]
fn an_unreadable_table_falls_back_to_whole_slaves_and_says_so() {
    let sys = FakeSys::new();
    let dm0 = sys.device("virtual/block/dm-0", (253, 0), &[("dm/name", "x\n")]);
    let loop1 = sys.device("virtual/block/loop1", (7, 1), &[]);
    sys.slave(&dm0, "loop1", &loop1);
    let r = resolve(&sys.sources(&no_dm, &stat_img), (253, 0));
    assert_eq!(r.map.mappings.len(), 1);
    assert_eq!((r.map.mappings[0].layer, r.map.mappings[0].dev.as_str()), (Layer::DmWhole, "7:1"));
    assert!(r.map.limits[0].contains("table unreadable"), "{:?}", r.map.limits);
}

#[test]
fn an_md_array_watches_its_members_whole_and_a_plain_disk_maps_to_nothing() {
    let sys = FakeSys::new();
    let md = sys.device("virtual/block/md0", (9, 0), &[]);
    let a = sys.device("virtual/block/loop3", (7, 3), &[]);
    let b = sys.device("virtual/block/loop4", (7, 4), &[]);
    sys.slave(&md, "loop3", &a);
    sys.slave(&md, "loop4", &b);
    let r = resolve(&sys.sources(&no_dm, &stat_img), (9, 0));
    let got: Vec<_> = r.map.mappings.iter().map(|m| (m.layer, m.dev.as_str())).collect();
    assert_eq!(got, vec![(Layer::MemberWhole, "7:3"), (Layer::MemberWhole, "7:4")]);
    let disk = resolve(&sys.sources(&no_dm, &stat_img), (7, 3));
    assert!(disk.map.mappings.is_empty() && disk.extents.is_empty());
}

#[test]
fn a_loop_device_with_an_offset_and_a_limit_maps_that_part_of_its_file() {
    let sys = FakeSys::new();
    sys.device(
        "virtual/block/loop5",
        (7, 5),
        &[
            ("loop/backing_file", "/tmp/x/disk.img\n"),
            ("loop/offset", "1048576\n"),
            ("loop/sizelimit", "4194304\n"),
        ],
    );
    let r = resolve(&sys.sources(&no_dm, &stat_img), (7, 5));
    let m = &r.map.mappings[0];
    assert_eq!((m.first, m.len, m.through.len()), (1 << 20, Some(4 << 20), 0));
    assert_eq!((r.backing[0].1.first, r.backing[0].1.end), (1 << 20, 5 << 20));
    // A deleted backing file is a stated limit, not a silent miss.
    let gone = resolve(&sys.sources(&no_dm, &|_| None), (7, 5));
    assert!(gone.backing.is_empty());
    assert!(gone.map.limits[0].contains("cannot be found"), "{:?}", gone.map.limits);
}

#[test]
fn layers_compose_dm_over_a_partition_over_a_loop_disk_over_a_file() {
    let sys = FakeSys::new();
    sys.device(
        "virtual/block/loop0",
        (7, 0),
        &[("loop/backing_file", "/tmp/x/disk.img\n"), ("size", "100000\n")],
    );
    sys.device(
        "virtual/block/loop0/loop0p1",
        (259, 0),
        &[("partition", "1\n"), ("start", "2048\n"), ("size", "50000\n")],
    );
    sys.device("virtual/block/dm-3", (253, 3), &[("dm/name", "lv\n")]);
    // The filesystem's device maps 1000 sectors from sector 100 of the partition.
    let dm = |_: Dev| Ok(vec![target(0, 1000, "linear", "259:0 100")]);
    let r = resolve(&sys.sources(&dm, &stat_img), (253, 3));
    let got: Vec<_> = r
        .map
        .mappings
        .iter()
        .map(|m| (m.layer, m.dev.as_str(), m.first, m.len, m.fs_sector, m.through.join(",")))
        .collect();
    assert_eq!(
        got,
        vec![
            (Layer::DmLinear, "259:0", 100, Some(1000), Some(0), String::new()),
            (Layer::Partition, "7:0", 2148, Some(1000), Some(0), "259:0".to_owned()),
            (Layer::LoopFile, "7:0", 2148 * 512, Some(1000 * 512), Some(0), "259:0".to_owned()),
        ]
    );
    // A write to the disk lands in the filesystem's range only between 2148 and 3148.
    let disk: Vec<_> =
        r.extents.iter().filter(|(d, _)| *d == (7, 0)).map(|(_, e)| (e.first, e.end)).collect();
    assert_eq!(disk, vec![(2148, 3148)]);
}

/// (layer, dev, first, len, fs_sector, file, via) of a mapping.
type Row<'a> = (Layer, &'a str, u64, Option<u64>, Option<u64>, Option<&'a str>, Option<&'a str>);

/// (dev, first, len, fs_sector, via) of a loop-alias mapping.
type AliasRow<'a> = (&'a str, u64, Option<u64>, Option<u64>, Option<&'a str>);

fn extent(logical: u64, physical: u64, len: u64, flags: u32) -> FileExtent {
    FileExtent { logical, physical, len, flags }
}

/// A loop device 7:0 over /tmp/x/disk.img (4 MiB, 8192 sectors), the file on partition 254:1
/// (from sector 2048 of disk 254:0).
fn loop_over_a_partitioned_disk(sys: &FakeSys) {
    sys.device(
        "virtual/block/loop0",
        (7, 0),
        &[("loop/backing_file", "/tmp/x/disk.img\n"), ("loop/offset", "0\n"), ("size", "8192\n")],
    );
    sys.device("vd/vda", (254, 0), &[]);
    sys.device("vd/vda/vda1", (254, 1), &[("partition", "1\n"), ("start", "2048\n"), ("size", "100000\n")]);
}

fn stat_on_vda1(path: &str) -> Option<(Dev, u64)> {
    (path == "/tmp/x/disk.img").then_some(((254, 1), 1234))
}

#[test]
fn a_backing_files_blocks_are_followed_onto_its_device_and_further_down() {
    let sys = FakeSys::new();
    loop_over_a_partitioned_disk(&sys);
    let fiemap = |_: &str| -> std::io::Result<Vec<FileExtent>> {
        Ok(vec![
            // Two pieces contiguous in the file and on the device: one range.
            extent(0, 1 << 20, 64 << 10, 0),
            extent(64 << 10, (1 << 20) + (64 << 10), 64 << 10, flag::UNWRITTEN),
            extent(1 << 20, 10 << 20, 4096, 0),
            // Not on the device yet.
            extent(2 << 20, 0, 4096, flag::DELALLOC | flag::UNKNOWN),
            // Past what the loop device reads (4 MiB).
            extent(8 << 20, 20 << 20, 4096, flag::LAST),
        ])
    };
    let src = Sources { fiemap: &fiemap, ..sys.sources(&no_dm, &stat_on_vda1) };
    let r = resolve(&src, (7, 0));
    let got: Vec<Row> = r
        .map
        .mappings
        .iter()
        .map(|m| (m.layer, m.dev.as_str(), m.first, m.len, m.fs_sector, m.file.as_deref(), m.via.as_deref()))
        .collect();
    let file = Some("/tmp/x/disk.img");
    assert_eq!(
        got,
        vec![
            (Layer::LoopFile, "7:0", 0, Some(4 << 20), Some(0), file, None),
            (Layer::FileExtent, "254:1", 2048, Some(256), Some(0), file, Some("7:0")),
            (Layer::Partition, "254:0", 4096, Some(256), Some(0), file, Some("7:0")),
            (Layer::FileExtent, "254:1", 20480, Some(8), Some(2048), file, Some("7:0")),
            (Layer::Partition, "254:0", 22528, Some(8), Some(2048), file, Some("7:0")),
        ]
    );
    assert_eq!(r.map.mappings[2].through, vec!["254:1".to_owned()]);
    assert_eq!(r.map.limits, vec!["/tmp/x/disk.img: 4096 bytes not yet on the device (delayed allocation): watched once written back".to_owned()]);
    let extents: Vec<(Dev, u64, u64)> = r.extents.iter().map(|(d, e)| (*d, e.first, e.end)).collect();
    assert_eq!(
        extents,
        vec![
            ((254, 1), 2048, 2304),
            ((254, 0), 4096, 4352),
            ((254, 1), 20480, 20488),
            ((254, 0), 22528, 22536)
        ]
    );
    assert!(r.extents.iter().all(|(_, e)| e.fs_dev == kdev::make(7, 0) && e.via_dev == 0));
    let m = r.map.lookup("254:0", false, 22530, 1).expect("the second piece, on the disk");
    assert_eq!(m.fs_sector_of(22530), Some(2050));
}

#[test]
fn more_pieces_than_fit_are_merged_across_their_smallest_gaps_and_said() {
    let sys = FakeSys::new();
    loop_over_a_partitioned_disk(&sys);
    // Two more pieces of 4 KiB than fit, 1 MiB apart on the device, except two pairs 8 KiB apart.
    let fiemap = |_: &str| -> std::io::Result<Vec<FileExtent>> {
        let mut physical: Vec<u64> = (0..FILE_RANGES_MAX as u64 + 2).map(|i| i << 20).collect();
        physical[2] = physical[1] + 8192;
        physical[5] = physical[4] + 8192;
        Ok(physical.iter().enumerate().map(|(i, p)| extent(i as u64 * 8192, *p, 4096, 0)).collect())
    };
    let src = Sources { fiemap: &fiemap, ..sys.sources(&no_dm, &stat_on_vda1) };
    let r = resolve(&src, (7, 0));
    let pieces: Vec<(u64, Option<u64>, Option<u64>)> = r
        .map
        .mappings
        .iter()
        .filter(|m| m.layer == Layer::FileExtent)
        .map(|m| (m.first, m.len, m.fs_sector))
        .collect();
    assert_eq!(pieces.len(), FILE_RANGES_MAX, "{pieces:#?}");
    assert_eq!(pieces[1], (2048, Some(24), None), "merged: no longer sector for sector");
    assert_eq!(pieces[0], (0, Some(8), Some(0)));
    assert!(
        r.map.limits.iter().any(|l| l.contains(&format!(
            "{} pieces on 254:1, merged into {FILE_RANGES_MAX} ranges",
            FILE_RANGES_MAX + 2
        ))),
        "{:?}",
        r.map.limits
    );
}

#[test]
fn every_other_loop_device_over_the_same_file_is_a_layer_for_the_part_it_reads() {
    let sys = FakeSys::new();
    loop_over_a_partitioned_disk(&sys);
    // From 1 MiB of the file, 4 MiB: reads the filesystem's bytes [1 MiB, 4 MiB).
    sys.device(
        "virtual/block/loop1",
        (7, 1),
        &[("loop/backing_file", "/tmp/x/disk.img\n"), ("loop/offset", "1048576\n"), ("size", "8192\n")],
    );
    // Another file.
    sys.device(
        "virtual/block/loop2",
        (7, 2),
        &[("loop/backing_file", "/tmp/x/other.img\n"), ("loop/offset", "0\n"), ("size", "8192\n")],
    );
    // The same file, past the part the filesystem's loop device reads.
    sys.device(
        "virtual/block/loop3",
        (7, 3),
        &[("loop/backing_file", "/tmp/x/disk.img\n"), ("loop/offset", "4194304\n"), ("size", "8\n")],
    );
    // The same inode by another path (a hard link or a bind mount).
    sys.device(
        "virtual/block/loop4",
        (7, 4),
        &[("loop/backing_file", "/mnt/link.img\n"), ("loop/offset", "0\n"), ("size", "16\n")],
    );
    let stat = |path: &str| match path {
        "/tmp/x/disk.img" | "/mnt/link.img" => Some(((254, 1), 1234)),
        "/tmp/x/other.img" => Some(((254, 1), 99)),
        _ => None,
    };
    let r = resolve(&sys.sources(&no_dm, &stat), (7, 0));
    let aliases: Vec<AliasRow> = r
        .map
        .mappings
        .iter()
        .filter(|m| m.layer == Layer::LoopAlias)
        .map(|m| (m.dev.as_str(), m.first, m.len, m.fs_sector, m.via.as_deref()))
        .collect();
    assert_eq!(
        aliases,
        vec![("7:1", 0, Some(6144), Some(2048), Some("7:0")), ("7:4", 0, Some(16), Some(0), Some("7:0"))]
    );
    assert!(
        r.extents.contains(&((7, 1), Extent { fs_dev: kdev::make(7, 0), via_dev: 0, first: 0, end: 6144 }))
    );
    assert_eq!(r.backing.len(), 1, "the file is keyed once, by the filesystem's own loop device");
    let m = r.map.lookup("7:1", false, 100, 8).expect("a bio to the other loop device");
    assert_eq!(m.fs_sector_of(100), Some(2148));
}

#[test]
fn a_file_on_a_filesystem_without_a_device_has_no_blocks_below_it() {
    let sys = FakeSys::new();
    loop_over_a_partitioned_disk(&sys);
    let tmpfs = |_: &str| -> std::io::Result<Vec<FileExtent>> {
        Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    };
    let on_tmpfs = |path: &str| (path == "/tmp/x/disk.img").then_some(((0, 30), 5));
    let r = resolve(&Sources { fiemap: &tmpfs, ..sys.sources(&no_dm, &on_tmpfs) }, (7, 0));
    assert_eq!(r.map.mappings.len(), 1);
    assert!(r.map.limits.is_empty(), "tmpfs: nothing below, nothing to say");
    let btrfs =
        |_: &str| -> std::io::Result<Vec<FileExtent>> { Ok(vec![extent(0, 1 << 30, 4096, flag::LAST)]) };
    let r = resolve(&Sources { fiemap: &btrfs, ..sys.sources(&no_dm, &on_tmpfs) }, (7, 0));
    assert_eq!(r.map.mappings.len(), 1);
    assert!(r.map.limits[0].contains("without a device of its own (btrfs)"), "{:?}", r.map.limits);
}

/// A btrfs (anonymous 0:45) on two dm-linear devices over one loop disk: each member's table is
/// followed down, the member named in `through`, with no filesystem sector, and the kernel
/// extents belong to the btrfs.
#[test]
fn a_btrfs_members_layers_are_followed_down_as_any_devices() {
    let sys = FakeSys::new();
    sys.device("virtual/block/dm-0", (253, 0), &[("dm/name", "a\n")]);
    sys.device("virtual/block/dm-1", (253, 1), &[("dm/name", "b\n")]);
    sys.device("virtual/block/loop1", (7, 1), &[]);
    let dm = |dev: Dev| match dev {
        (253, 0) => Ok(vec![target(0, 1000, "linear", "7:1 2048")]),
        (253, 1) => Ok(vec![target(0, 1000, "linear", "7:1 4096")]),
        other => panic!("no table for {other:?}"),
    };
    let r = resolve_members(&sys.sources(&dm, &stat_img), (0, 45), &[(253, 0), (253, 1)]);
    assert_eq!(r.map.fs_dev, "0:45");
    let got: Vec<_> = r
        .map
        .mappings
        .iter()
        .map(|m| (m.layer, m.dev.as_str(), m.first, m.len, m.fs_sector, m.through.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Layer::DmLinear, "7:1", 2048, Some(1000), None, vec!["253:0".to_owned()]),
            (Layer::DmLinear, "7:1", 4096, Some(1000), None, vec!["253:1".to_owned()])
        ]
    );
    let btrfs = kdev::make(0, 45);
    assert_eq!(
        r.extents,
        vec![
            ((7, 1), Extent { fs_dev: btrfs, via_dev: 0, first: 2048, end: 3048 }),
            ((7, 1), Extent { fs_dev: btrfs, via_dev: 0, first: 4096, end: 5096 })
        ]
    );
    assert!(r.map.limits.is_empty(), "{:?}", r.map.limits);
    // btrfs writes its members itself: no layer's own threads below them.
    assert!(r.map.mappings.iter().all(|m| !m.is_whole_layer_or_under_one()));
}
