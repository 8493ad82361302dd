//! The layers under a frozen filesystem that this host lacks, in the guests: a write to the
//! whole disk over a frozen partition is a slip and one over its neighbour is not; a write to the
//! device under a dm-linear target is a slip inside the mapped range and not outside it; and the
//! device-mapper snapshot flow (suspend, snapshot, resume) records the kernel's freeze and thaw
//! with no slip, denies a mount of the origin, catches a write to the lower device, and leaves a
//! snapshot equal to the origin at freeze time. Under a frozen snapshot, dm-snapshot's copy-out
//! is `layer-io` and a user's write to the copy-on-write device a slip. Under a btrfs on two
//! dm-linear devices, a write to a member's disk inside its range is a slip and outside it is not.
//! Under a loop filesystem whose image lies on a partition, a write to the disk over the image is
//! a slip through both layers.
use std::process::Command;

use freezewatch_tests::{
    DmDevices, DmStack, FsType, LoopDev, LoopFs, MountedOn, PartitionedLoop, Recorder, dmsetup,
    kernel_version, layer_available, mount_device, record_script, unmount,
};

use crate::storage_stacks::{image_block_on_lower, over_and_elsewhere, slips_below};
use serde_json::Value;

/// `dd` of one 4 KiB block of zeroes to `dev` at 512-byte sector `sector`: one direct write.
fn dd_at(dev: &str, sector: u64) -> String {
    format!(
        "dd if=/dev/zero of={dev} bs=4096 count=1 seek={} oflag=direct,seek_bytes conv=notrunc status=none",
        sector * 512
    )
}

fn dev_number(path: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let rdev = std::fs::metadata(path).expect("device").rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

#[test]
fn a_write_to_the_disk_over_a_frozen_partition_is_a_slip_and_over_its_neighbour_is_not() {
    let name = "a_write_to_the_disk_over_a_frozen_partition_is_a_slip_and_over_its_neighbour_is_not";
    if !layer_available(name, "partitions") {
        return;
    }
    let disk = PartitionedLoop::new(&[40960, 40960]).expect("a partitioned loop disk");
    let p1 = disk.partition(1).display().to_string();
    let fs = MountedOn::ext4(&p1).expect("ext4 on partition 1");
    let (p1_start, _) = disk.parts[0];
    let (p2_start, _) = disk.parts[1];
    let m = fs.mnt();
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{}\n{}\n{}\nfsfreeze -u {m}; trap - EXIT",
        dd_at(&disk.loopdev, p1_start + 8000),
        dd_at(&disk.loopdev, p2_start + 100),
        dd_at(&disk.partition(2).display().to_string(), 100),
    );
    let trace = record_script(&script).expect("recording");
    let slips = trace.findings_on("slip", m);
    assert_eq!(slips.len(), 1, "only the write inside partition 1 reached its storage: {slips:#?}");
    let b = &slips[0]["block"];
    let disk_dev = dev_number(&disk.loopdev);
    assert_eq!((slips[0]["comm"].as_str(), b["op"].as_str()), (Some("dd"), Some("write")));
    assert_eq!(
        (b["dev"].as_str(), b["sector"].as_u64(), b["bytes"].as_u64()),
        (Some(disk_dev.as_str()), Some(p1_start + 8000), Some(4096))
    );
    let mapping = &b["mapping"];
    assert_eq!(mapping["layer"], "partition", "{b}");
    assert_eq!(
        (mapping["first"].as_u64(), mapping["len"].as_u64(), mapping["fs_sector"].as_u64()),
        (Some(p1_start), Some(40960), Some(0))
    );
    assert!(
        slips[0]["message"].as_str().is_some_and(|s| s.contains("from its sector 8000 on")),
        "{}",
        slips[0]
    );
    let header = &trace.of_type("header")[0];
    let maps = header["storage"]["maps"].as_array().expect("the header has the storage maps");
    assert!(maps.iter().any(|m| m["fs_dev"] == dev_number(&p1)), "{header}");
}

#[test]
fn a_write_to_the_device_under_a_dm_linear_target_is_a_slip_inside_its_range_only() {
    let name = "a_write_to_the_device_under_a_dm_linear_target_is_a_slip_inside_its_range_only";
    if !layer_available(name, "device-mapper") {
        return;
    }
    // The target maps the loop device from sector 2048 on: sectors before are not the filesystem's.
    let stack =
        DmStack::linear_ext4(&format!("fwlin{}", std::process::id()), 64, 2048).expect("ext4 on dm-linear");
    let (fs, lower) = (stack.fs(), &stack.loops[0]);
    let m = fs.mnt();
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{}\n{}\nfsfreeze -u {m}; trap - EXIT",
        dd_at(&lower.dev, 1000),
        dd_at(&lower.dev, 2048 + 800),
    );
    let trace = record_script(&script).expect("recording");
    let slips = trace.findings_on("slip", m);
    assert_eq!(slips.len(), 1, "{slips:#?}");
    let b = &slips[0]["block"];
    let lower_dev = lower.number().expect("dev number");
    assert_eq!(
        (b["dev"].as_str(), b["sector"].as_u64(), b["op"].as_str()),
        (Some(lower_dev.as_str()), Some(2848), Some("write"))
    );
    let mapping = &b["mapping"];
    assert_eq!(
        (mapping["layer"].as_str(), mapping["target"].as_str()),
        (Some("dm-linear"), Some("linear")),
        "{b}"
    );
    assert_eq!((mapping["first"].as_u64(), mapping["fs_sector"].as_u64()), (Some(2048), Some(0)), "{b}");
    assert!(
        slips[0]["message"].as_str().is_some_and(|s| s.contains("from its sector 800 on")),
        "{}",
        slips[0]
    );
}

/// Reads a whole device or file.
fn contents(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn the_device_mapper_snapshot_flow_is_clean_denies_mounts_and_catches_a_lower_write() {
    let name = "the_device_mapper_snapshot_flow_is_clean_denies_mounts_and_catches_a_lower_write";
    if !layer_available(name, "device-mapper") {
        return;
    }
    let pid = std::process::id();
    let (real, origin, snap) = (format!("fwreal{pid}"), format!("fworigin{pid}"), format!("fwsnap{pid}"));
    let data = LoopDev::new(64).expect("data device");
    let cow = LoopDev::new(32).expect("copy-on-write device");
    let sectors = 64u64 << 11;
    let mut stack = DmStack { fs: None, dm: DmDevices::default(), loops: Vec::new() };
    let real_dev =
        stack.dm.create(&real, &format!("0 {sectors} linear {} 0", data.dev)).expect("origin-real");
    let origin_dev = stack.dm.create(&origin, &format!("0 {sectors} linear {real_dev} 0")).expect("origin");
    stack.fs = Some(MountedOn::ext4(&origin_dev).expect("ext4 on the origin"));
    let m = stack.fs().mnt().to_owned();
    std::fs::write(format!("{m}/before"), vec![7u8; 1 << 20]).expect("a file before the snapshot");
    let again = tempfile::tempdir().expect("tmp");

    let rec = Recorder::start(&["--deny-mounts"]).expect("recorder");
    // LVM's order: suspend the origin (the kernel freezes the filesystem), make the snapshot of
    // the real device, reload the origin as snapshot-origin, resume (the kernel thaws).
    dmsetup(&["suspend", &origin]).expect("suspend");
    let at_freeze = contents(&real_dev);
    let snap_table = format!("0 {sectors} snapshot {real_dev} {} P 8", cow.dev);
    let snap_dev = stack.dm.create(&snap, &snap_table).expect("the snapshot");
    let snapshot = contents(&snap_dev);
    let denied = mount_device("ext4", &origin_dev, again.path());
    // A write to the device under it all, inside the filesystem's range: a slip.
    let lower_write = Command::new("sh").arg("-c").arg(dd_at(&data.dev, 4096)).status().expect("dd");
    dmsetup(&["load", &origin, "--table", &format!("0 {sectors} snapshot-origin {real_dev}")]).expect("load");
    dmsetup(&["resume", &origin]).expect("resume");
    // After the thaw, writes to the origin go to it and are copied out of the snapshot's way.
    std::fs::write(format!("{m}/after"), vec![9u8; 1 << 20]).expect("a file after the thaw");
    Command::new("sync").status().expect("sync");
    let snapshot_later = contents(&snap_dev);
    let trace = rec.finish().expect("trace");
    unmount(again.path());

    // Before bdev_freeze (6.8) the kernel itself refuses to mount a frozen block device (EBUSY),
    // ahead of the LSM; from then on --deny-mounts refuses it.
    let (errno, denials_expected) =
        if kernel_version() >= (6, 8) { (libc::EPERM, 1) } else { (libc::EBUSY, 0) };
    assert_eq!(denied, Err(errno), "a mount of the suspended origin is refused");
    assert!(lower_write.success());
    assert!(snapshot == at_freeze, "the snapshot holds the origin as it was at freeze time");
    assert!(snapshot_later == snapshot, "writes after the thaw did not change the snapshot");
    // The freeze and thaw device-mapper makes (bdev_freeze: since 6.8 a userspace holder that may
    // nest, as for any block-device freeze; 6.1 names no holders).
    let freezes: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "freeze_end" && e["sb"]["mountpoint"] == m.as_str())
        .collect();
    let thaws: Vec<&Value> = trace
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "thaw_end" && e["sb"]["mountpoint"] == m.as_str())
        .collect();
    assert_eq!((freezes.len(), thaws.len()), (1, 1), "{freezes:#?} {thaws:#?}");
    let holder = match kernel_version() {
        v if v >= (6, 8) => Value::from("userspace+may_nest"),
        v if v >= (6, 6) => Value::from("userspace"),
        _ => Value::Null,
    };
    assert_eq!((&freezes[0]["holder"], &freezes[0]["ret"]), (&holder, &Value::from(0)), "{}", freezes[0]);
    assert_eq!((freezes[0]["comm"].as_str(), thaws[0]["comm"].as_str()), (Some("dmsetup"), Some("dmsetup")));
    assert_eq!(thaws[0]["level_after"], 0, "{}", thaws[0]);
    let denials: Vec<&Value> = trace.events().into_iter().filter(|e| e["kind"] == "mount_denied").collect();
    assert_eq!(denials.len(), denials_expected, "{denials:#?}");
    // One slip: the lower write, named with its writer and the layers it went through.
    let slips = trace.findings_on("slip", &m);
    assert_eq!(slips.len(), 1, "the snapshot's own I/O is no slip: {slips:#?}");
    let b = &slips[0]["block"];
    let data_dev = data.number().expect("dev number");
    assert_eq!(
        (slips[0]["comm"].as_str(), b["dev"].as_str(), b["sector"].as_u64()),
        (Some("dd"), Some(data_dev.as_str()), Some(4096))
    );
    let mapping = &b["mapping"];
    assert_eq!(
        (mapping["layer"].as_str(), mapping["fs_sector"].as_u64()),
        (Some("dm-linear"), Some(0)),
        "{b}"
    );
    assert_eq!(
        mapping["through"],
        serde_json::json!([dev_number(&real_dev)]),
        "origin → origin-real → data: {b}"
    );
    assert!(
        slips[0]["message"].as_str().is_some_and(|s| s.contains("from its sector 4096 on")),
        "{}",
        slips[0]
    );
}

/// ext4 on a writable dm snapshot, frozen. A write to the origin makes dm-snapshot copy the old
/// chunk out to the copy-on-write device first (kcopyd, a kernel worker) and then lets the held
/// write through on a worker: the snapshot's own I/O on the devices under the frozen filesystem
/// (and, where the kernel traces the held write again, on origin-real's disk), `layer-io`, not a
/// slip. `dd` to the copy-on-write device in the same run: a slip.
#[test]
fn a_snapshot_copy_out_under_a_frozen_snapshot_is_layer_io_and_a_write_to_its_cow_is_a_slip() {
    let name = "a_snapshot_copy_out_under_a_frozen_snapshot_is_layer_io_and_a_write_to_its_cow_is_a_slip";
    if !layer_available(name, "device-mapper") {
        return;
    }
    let pid = std::process::id();
    let (real, origin, snap) = (format!("fwlreal{pid}"), format!("fwlorigin{pid}"), format!("fwlsnap{pid}"));
    let data = LoopDev::new(64).expect("data device");
    let cow = LoopDev::new(32).expect("copy-on-write device");
    let sectors = 64u64 << 11;
    let mut stack = DmStack { fs: None, dm: DmDevices::default(), loops: Vec::new() };
    let real_dev =
        stack.dm.create(&real, &format!("0 {sectors} linear {} 0", data.dev)).expect("origin-real");
    // An ext4 on the origin before the snapshot, as a backup finds it.
    drop(MountedOn::ext4(&real_dev).expect("ext4 on the origin"));
    let origin_dev =
        stack.dm.create(&origin, &format!("0 {sectors} snapshot-origin {real_dev}")).expect("origin");
    let snap_dev = stack
        .dm
        .create(&snap, &format!("0 {sectors} snapshot {real_dev} {} P 8", cow.dev))
        .expect("snapshot");
    stack.fs = Some(MountedOn::existing(&snap_dev).expect("the snapshot's ext4 mounted"));
    let m = stack.fs().mnt().to_owned();
    // The last MiB of the origin, which mounting the snapshot did not write (no exception there
    // yet, so the origin write must wait for a copy-out); sector 60000 of the 32 MiB
    // copy-on-write device, past the exceptions this run stores.
    let (origin_sector, cow_sector) = (sectors - 2048, 60000);
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{}\n{}\nfsfreeze -u {m}; trap - EXIT",
        dd_at(&origin_dev, origin_sector),
        dd_at(&cow.dev, cow_sector),
    );
    let trace = record_script(&script).expect("recording");

    let layer_io = trace.findings_on("layer-io", &m);
    assert!(!layer_io.is_empty(), "the copy-out was seen: {:#?}", trace.findings("slip"));
    let cow_number = cow.number().expect("dev number");
    for f in &layer_io {
        let m = &f["block"]["mapping"];
        assert_eq!(f["severity"], "warning", "{f}");
        // On the devices in the snapshot's table, or (5.10, where the held origin write is
        // queued again at origin-real) on origin-real's disk below them.
        assert!(m["layer"] == "dm-whole-device" || m["under_whole"] == true, "{f}");
        assert_eq!(f["parent"]["pid"], 2, "a kernel thread: {f}");
    }
    assert!(
        layer_io.iter().any(|f| f["block"]["dev"] == cow_number.as_str()),
        "the old chunk was copied to the copy-on-write device: {layer_io:#?}"
    );
    let slips = trace.findings_on("slip", &m);
    assert_eq!(slips.len(), 1, "only dd's write to the copy-on-write device: {slips:#?}");
    let b = &slips[0]["block"];
    assert_eq!(
        (slips[0]["comm"].as_str(), b["dev"].as_str(), b["sector"].as_u64()),
        (Some("dd"), Some(cow_number.as_str()), Some(cow_sector))
    );
    assert_eq!(
        (b["mapping"]["layer"].as_str(), b["mapping"]["target"].as_str()),
        (Some("dm-whole-device"), Some("snapshot"))
    );
}

/// btrfs mirrored on two dm-linear devices, each over its own loop disk from MiB 8 on, frozen. A
/// write to the first disk inside its member's range is a slip through that member; a write to
/// the same disk before the range is not (the slip in the same run shows the hook was live).
#[test]
fn a_write_to_the_disk_under_a_frozen_btrfs_members_dm_linear_device_is_a_slip_and_outside_it_is_not() {
    let name =
        "a_write_to_the_disk_under_a_frozen_btrfs_members_dm_linear_device_is_a_slip_and_outside_it_is_not";
    if !layer_available(name, "device-mapper") {
        return;
    }
    let pid = std::process::id();
    let (mb, offset) = (256u64, 16384u64);
    let mut stack = DmStack { fs: None, dm: DmDevices::default(), loops: Vec::new() };
    let mut members = Vec::new();
    for i in 0..2 {
        let disk = LoopDev::new(mb).expect("a member's disk");
        let table = format!("0 {} linear {} {offset}", (mb << 11) - offset, disk.dev);
        members.push(stack.dm.create(&format!("fwbtrfs{i}x{pid}"), &table).expect("a member"));
        stack.loops.push(disk);
    }
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    stack.fs = Some(MountedOn::btrfs_raid1(&member_refs).expect("btrfs on the two members"));
    let m = stack.fs().mnt().to_owned();
    let disk = stack.loops[0].dev.clone();
    let inside = offset + 100_000;
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{}\n{}\nfsfreeze -u {m}; trap - EXIT",
        dd_at(&disk, inside),
        dd_at(&disk, 0),
    );
    let trace = record_script(&script).expect("recording");

    let slips = trace.findings_on("slip", &m);
    assert_eq!(slips.len(), 1, "only the write inside the member's range: {slips:#?}");
    let (f, b) = (slips[0], &slips[0]["block"]);
    assert_eq!(
        (f["comm"].as_str(), b["dev"].as_str(), b["sector"].as_u64()),
        (Some("dd"), Some(dev_number(&disk).as_str()), Some(inside)),
        "{f}"
    );
    assert_eq!(f["sb"]["fstype"], "btrfs", "{f}");
    let mapping = &b["mapping"];
    assert_eq!(
        (mapping["layer"].as_str(), mapping["first"].as_u64()),
        (Some("dm-linear"), Some(offset)),
        "{f}"
    );
    assert_eq!(mapping["through"], serde_json::json!([dev_number(&members[0])]), "{f}");
}

/// A loop filesystem whose image lives on an ext4 on a partition: a raw write to the disk over the
/// image's block, while the loop filesystem is frozen, is its slip through both layers (the
/// image's extents on the partition, the partition on the disk); a write to the partition's first
/// sector on the same disk, in no file, is not (the slip in the same run shows the hook was live).
#[test]
fn a_write_to_the_disk_under_a_frozen_filesystems_image_on_a_partition_is_a_slip_and_elsewhere_is_not() {
    let name =
        "a_write_to_the_disk_under_a_frozen_filesystems_image_on_a_partition_is_a_slip_and_elsewhere_is_not";
    if !layer_available(name, "partitions") {
        return;
    }
    // Declared lowest first: dropped top down (the image's filesystem, the partition's, the disk).
    let disk = PartitionedLoop::new(&[196_608]).expect("a partitioned loop disk");
    let p1 = disk.partition(1).display().to_string();
    let lower = MountedOn::ext4(&p1).expect("ext4 on partition 1");
    let upper = LoopFs::new_in(FsType::Ext4, &lower.mountpoint).expect("ext4 on an image on partition 1");
    let dir = tempfile::tempdir().expect("temp dir");
    let (at, upper_block) = image_block_on_lower(&p1, &upper, dir.path());
    let (p1_start, _) = disk.parts[0];
    let m = upper.mnt();
    let script = over_and_elsewhere(m, &disk.loopdev, p1_start * 512, at, &dir.path().join("scratch"));
    let trace = record_script(&script).expect("recording");

    let (disk_dev, upper_dev) = (dev_number(&disk.loopdev), upper.loop_dev_number().expect("dev number"));
    let image = upper.image.display().to_string();
    assert_eq!(
        slips_below(&trace, m),
        vec![(
            "dd".to_owned(),
            disk_dev.clone(),
            p1_start + at / 512,
            1024,
            "partition".to_owned(),
            image.clone(),
            upper_dev.clone()
        )],
        "the write over the image's block is the upper filesystem's slip; the partition's sector 0 is nobody's"
    );
    let slip = &trace.findings_on("slip", m)[0];
    assert_eq!(slip["block"]["mapping"]["through"], serde_json::json!([dev_number(&p1)]), "{slip}");
    let message = slip["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("of block device {disk_dev}"))
            && message.contains(&format!("{image} (the backing file of loop device {upper_dev})"))
            && message.contains(&format!("from its sector {} on", upper_block * 8)),
        "{message}"
    );
    assert!(trace.findings_on("slip", lower.mnt()).is_empty(), "the partition's filesystem was not frozen");
}
