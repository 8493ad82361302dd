//! Resolution over a fake sysfs: a partitioned loop disk, a dm-linear and a striped device, an
//! md-like holder, and a loop device with an offset.
use super::*;

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
        Sources { sysfs: self.root.path().to_path_buf(), dm_table: dm, stat }
    }
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
