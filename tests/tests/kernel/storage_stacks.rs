//! What lies under a loop device's backing file and beside it: the file's blocks on the device
//! of the filesystem that holds it (a raw write there over them is a slip of the frozen
//! filesystem above, one elsewhere on that device is not), and every other loop device over the
//! same file, set up before the freeze, during it, or 50 ms before it; and the same under a
//! btrfs member's image.
use std::{path::Path, process::Command};

use freezewatch_tests::{
    FsType, LoopFs, Trace, block_dev_number, helper_bin, kernel_available, limit, record_script,
    record_script_with,
};
use serde_json::Value;

/// Loop devices a test's script sets up (one path per line in `list`): detached in Drop, also
/// when the test fails half-way.
struct ScriptLoops<'a> {
    list: &'a Path,
}

impl Drop for ScriptLoops<'_> {
    fn drop(&mut self) {
        for dev in std::fs::read_to_string(self.list).unwrap_or_default().lines() {
            // The script detaches what it can; what is left, was left by a failure.
            let _ =
                Command::new("losetup").args(["-d", dev.trim()]).stderr(std::process::Stdio::null()).status();
        }
    }
}

/// (comm, dev, sector, bytes, layer, file, via) of each slip on `mnt`.
pub(crate) fn slips_below(
    trace: &Trace,
    mnt: &str,
) -> Vec<(String, String, u64, u64, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    trace
        .findings_on("slip", mnt)
        .iter()
        .map(|f| {
            let (b, m) = (&f["block"], &f["block"]["mapping"]);
            (
                text(&f["comm"]),
                text(&b["dev"]),
                b["sector"].as_u64().unwrap_or(u64::MAX),
                b["bytes"].as_u64().unwrap_or(0),
                text(&m["layer"]),
                text(&m["file"]),
                text(&m["via"]),
            )
        })
        .collect()
}

/// Reads block `block` (of `count` bytes; a number or a shell expression) of `dev` and writes it
/// back, both with O_DIRECT: a write that changes nothing but is a write all the same.
fn rewrite(dev: &str, block: &str, count: u64, scratch: &Path) -> String {
    let s = scratch.display();
    format!(
        "dd if={dev} of={s} bs={count} count=1 skip={block} iflag=direct status=none\n\
         dd if={s} of={dev} bs={count} count=1 seek={block} oflag=direct conv=notrunc status=none"
    )
}

/// Where a block of `upper`'s image lies on `lower_dev`, the device of the filesystem that holds
/// the image (byte offset), found without freezewatch: a marker written through the upper
/// device (into a block near its end, which ext4 and btrfs leave unused) and synced down, then
/// looked for on the lower device. Returns it with the upper device's 4 KiB block that holds the
/// marker.
pub(crate) fn image_block_on_lower(lower_dev: &str, upper: &LoopFs, dir: &Path) -> (u64, u64) {
    let marker: Vec<u8> =
        format!("freezewatch-marker-{}-", std::process::id()).bytes().cycle().take(4096).collect();
    let marker_path = dir.join("marker");
    std::fs::write(&marker_path, &marker).expect("marker");
    let upper_block = upper.blocks_4k() - 8;
    let put = Command::new("dd")
        .arg(format!("if={}", marker_path.display()))
        .arg(format!("of={}", upper.loopdev))
        .args(["bs=4096", "count=1", &format!("seek={upper_block}"), "oflag=direct", "conv=notrunc,fsync"])
        .args(["status=none"])
        .status()
        .expect("dd");
    assert!(put.success());
    assert!(Command::new("sync").arg("-f").arg(&upper.image).status().expect("sync").success());
    let lower_bytes = Command::new("dd")
        .arg(format!("if={lower_dev}"))
        .args(["bs=1M", "iflag=direct", "status=none"])
        .output()
        .expect("reading the lower device")
        .stdout;
    // A small ext4 has 1 KiB blocks: the marker's first KiB is in one of them.
    let at = (0..lower_bytes.len() / 1024)
        .map(|i| i * 1024)
        .find(|&i| lower_bytes[i..i + 1024] == marker[..1024])
        .expect("the marker is on the lower device") as u64;
    (at, upper_block)
}

/// A script that freezes `m`, rewrites the KiB at byte `at` of the lower filesystem (over the
/// image) and its sector 0 (ext4 leaves its first 1024 bytes alone, and no file is there), and
/// thaws. Both are written to `dev`, where the lower filesystem starts at byte `base` (0 on its
/// own device; a partition's start on the disk under it).
pub(crate) fn over_and_elsewhere(m: &str, dev: &str, base: u64, at: u64, scratch: &Path) -> String {
    format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{over}\n{elsewhere}\nfsfreeze -u {m}; trap - EXIT",
        over = rewrite(dev, &((base + at) / 1024).to_string(), 1024, scratch),
        elsewhere = rewrite(dev, &(base / 512).to_string(), 512, scratch),
    )
}

#[test]
fn a_raw_write_over_the_blocks_of_a_frozen_filesystems_image_is_a_slip_and_elsewhere_is_not() {
    if !kernel_available(
        "a_raw_write_over_the_blocks_of_a_frozen_filesystems_image_is_a_slip_and_elsewhere_is_not",
    ) {
        return;
    }
    let lower = LoopFs::new(FsType::Ext4).expect("the filesystem holding the image");
    let upper = LoopFs::new_in(FsType::Ext4, &lower.mountpoint).expect("the filesystem on the image");
    let dir = tempfile::tempdir().expect("temp dir");
    let (at, upper_block) = image_block_on_lower(&lower.loopdev, &upper, dir.path());
    let m = upper.mnt();
    let script = over_and_elsewhere(m, &lower.loopdev, 0, at, &dir.path().join("scratch"));
    let trace = record_script(&script).expect("recording");
    let lower_dev = lower.loop_dev_number().expect("dev number");
    let upper_dev = upper.loop_dev_number().expect("dev number");
    let image = upper.image.display().to_string();
    assert_eq!(
        slips_below(&trace, m),
        vec![(
            "dd".to_owned(),
            lower_dev.clone(),
            at / 512,
            1024,
            "file-extents".to_owned(),
            image.clone(),
            upper_dev.clone()
        )],
        "the write over the image's block is the upper filesystem's slip; sector 0 is nobody's"
    );
    let slip = &trace.findings_on("slip", m)[0];
    let message = slip["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("of block device {lower_dev}"))
            && message
                .contains(&format!("in the blocks of {image} (the backing file of loop device {upper_dev})"))
            && message.contains(&format!("from its sector {} on", upper_block * 8)),
        "{message}"
    );
    assert!(trace.findings_on("slip", lower.mnt()).is_empty(), "the lower filesystem was not frozen");
}

/// A btrfs whose member is a loop device over an image on an ext4: the member's own layers are
/// followed down as any filesystem's device, so a raw write to the ext4's device over the image's
/// block while the btrfs is frozen is its slip; sector 0 is nobody's.
#[test]
fn a_raw_write_under_a_frozen_btrfs_members_image_is_a_slip_and_elsewhere_is_not() {
    if !kernel_available("a_raw_write_under_a_frozen_btrfs_members_image_is_a_slip_and_elsewhere_is_not") {
        return;
    }
    let lower = LoopFs::new(FsType::Ext4).expect("the filesystem holding the image");
    let upper = LoopFs::new_in(FsType::Btrfs, &lower.mountpoint).expect("btrfs on the image");
    let dir = tempfile::tempdir().expect("temp dir");
    let (at, _) = image_block_on_lower(&lower.loopdev, &upper, dir.path());
    let m = upper.mnt();
    let trace = record_script(&over_and_elsewhere(m, &lower.loopdev, 0, at, &dir.path().join("scratch")))
        .expect("recording");
    let lower_dev = lower.loop_dev_number().expect("dev number");
    let member = upper.loop_dev_number().expect("dev number");
    assert_eq!(
        slips_below(&trace, m),
        vec![(
            "dd".to_owned(),
            lower_dev.clone(),
            at / 512,
            1024,
            "file-extents".to_owned(),
            upper.image.display().to_string(),
            member.clone()
        )],
        "the write over the member's image is the btrfs's slip; sector 0 is nobody's"
    );
    let slip = &trace.findings_on("slip", m)[0];
    assert_eq!(slip["sb"]["fstype"], "btrfs", "{slip}");
    assert_eq!(slip["block"]["mapping"]["through"], serde_json::json!([member]), "{slip}");
    assert!(trace.findings_on("slip", lower.mnt()).is_empty(), "the lower filesystem was not frozen");
}

#[test]
fn another_loop_device_over_a_frozen_filesystems_image_set_up_before_or_during_the_freeze_is_a_layer() {
    if !kernel_available(
        "another_loop_device_over_a_frozen_filesystems_image_set_up_before_or_during_the_freeze_is_a_layer",
    ) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let (list, names, scratch) =
        (dir.path().join("loops"), dir.path().join("names"), dir.path().join("scratch"));
    let _loops = ScriptLoops { list: &list };
    let (m, img, l) = (fs.mnt(), fs.image.display(), list.display());
    // The one set up during the freeze is written to a second later, when the storage maps know
    // it on every kernel; the next test is the one where no time passes.
    let script = format!(
        "set -e\n\
         a=$(losetup -f --show {img}); echo $a >> {l}\n\
         fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n\
         b=$(losetup -f --show {img}); echo $b >> {l}\n\
         sleep 1.2\n\
         {write_a}\n{write_b}\n\
         fsfreeze -u {m}; trap - EXIT\n\
         echo $a $b > {names}",
        write_a = rewrite("$a", "100", 4096, &scratch),
        write_b = rewrite("$b", "200", 4096, &scratch),
        names = names.display(),
    );
    let trace = record_script(&script).expect("recording");
    let text = std::fs::read_to_string(&names).expect("the script ran to its end");
    let [a, b] = text.split_whitespace().collect::<Vec<_>>()[..] else { panic!("{text}") };
    let own = fs.loop_dev_number().expect("dev number");
    let alias = |dev: &str, sector: u64| {
        (
            "dd".to_owned(),
            block_dev_number(dev).expect("dev number"),
            sector,
            4096,
            "loop-alias".to_owned(),
            fs.image.display().to_string(),
            own.clone(),
        )
    };
    assert_eq!(slips_below(&trace, m), vec![alias(a, 800), alias(b, 1600)]);
    let message = trace.findings_on("slip", m)[1]["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains(&format!("over {img} as loop device {own} is"))
            && message.contains("from its sector 1600 on"),
        "{message}"
    );
    // What the other loop devices' workers then wrote to the file was judged at them. The
    // writeback hook sees a worker dirty the file's pages only where the file's filesystem
    // accounts dirty pages: not on tmpfs (the guests' /tmp), where the two slips above are all.
    if !on_tmpfs(&fs.image) {
        assert!(
            trace
                .findings_on("exempt", m)
                .iter()
                .any(|f| f["message"].as_str().is_some_and(|t| t.contains("judged there"))),
            "{:#?}",
            trace.findings_on("exempt", m)
        );
    }
}

/// Whether `path` is on tmpfs (`stat -f`).
fn on_tmpfs(path: &std::path::Path) -> bool {
    let out = std::process::Command::new("stat").args(["-f", "-c", "%T"]).arg(path).output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "tmpfs")
}

#[test]
fn a_loop_device_set_up_50ms_before_the_freeze_is_judged_20_times_out_of_20() {
    if !kernel_available("a_loop_device_set_up_50ms_before_the_freeze_is_judged_20_times_out_of_20") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let (list, scratch) = (dir.path().join("loops"), dir.path().join("scratch"));
    let _loops = ScriptLoops { list: &list };
    let (m, img, l) = (fs.mnt(), fs.image.display(), list.display());
    let script = format!(
        "set -e; trap 'fsfreeze -u {m} 2>/dev/null' EXIT\n\
         for i in $(seq 20); do\n\
           x=$(losetup -f --show {img}); echo $x >> {l}\n\
           sleep 0.05\n\
           fsfreeze -f {m}\n\
           {write}\n\
           fsfreeze -u {m}\n\
           losetup -d $x\n\
         done\n\
         trap - EXIT",
        write = rewrite("$x", "$((100 + i))", 4096, &scratch),
    );
    let trace = record_script(&script).expect("recording");
    let slips = slips_below(&trace, m);
    let sectors: Vec<u64> = slips.iter().map(|s| s.2).collect();
    assert_eq!(sectors, (1..=20).map(|i| (100 + i) * 8).collect::<Vec<u64>>(), "{slips:#?}");
    for (comm, dev, _, bytes, layer, ..) in &slips {
        assert_eq!((comm.as_str(), *bytes), ("dd", 4096), "{slips:#?}");
        assert!(dev.starts_with("7:") && *dev != fs.loop_dev_number().expect("dev"), "{slips:#?}");
        // Named when the maps knew it by the time the event was read (it is detached right
        // after): never as another layer.
        assert!(["loop-alias", ""].contains(&layer.as_str()), "{slips:#?}");
    }
}

/// Where the kernel cannot judge a loop device itself (the block tracepoint's record names no
/// `struct block_device`: before 5.12, or the raw tracepoint skipped as here), a loop device bound
/// during the freeze and written at once by the same process (no tool can have read the new layer
/// in between) is not in the kernel's maps: the bio goes to user space, which judges it against
/// the maps read after it. The layer outlives that read (300 ms, scaled), as a backup's would.
/// The number it freed is then taken (and kept) by another loop device, so that each iteration
/// binds a new one: one detached and bound again while the maps are read is a known limit.
#[test]
fn a_loop_device_bound_during_a_freeze_and_written_at_once_is_judged_where_the_kernel_cannot() {
    if !kernel_available(
        "a_loop_device_bound_during_a_freeze_and_written_at_once_is_judged_where_the_kernel_cannot",
    ) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("loops");
    let _loops = ScriptLoops { list: &list };
    let (m, img, l) = (fs.mnt(), fs.image.display(), list.display());
    let at_once = helper_bin("fw-at-once", env!("CARGO_BIN_EXE_fw-at-once"));
    let script = format!(
        "set -e; trap 'fsfreeze -u {m} 2>/dev/null' EXIT\n\
         for i in $(seq 20); do\n\
           fsfreeze -f {m}\n\
           {at_once} bind {img} rewrite @bound $(((100 + i) * 4096)) 4096 sleep {hold} >> {l}\n\
           losetup -f --show {img} >> {l}\n\
           fsfreeze -u {m}\n\
         done\n\
         trap - EXIT",
        hold = limit(1).as_millis() * 3 / 10,
    );
    let trace =
        record_script_with(&script, &[("FREEZEWATCH_SKIP_HOOKS", "raw_tracepoint:block:block_bio_queue")])
            .expect("recording");
    // The hook that ran is the tracepoint: the kernel had no loop device to judge the bio by.
    let hooks = trace.of_type("header")[0]["hooks"].clone();
    let block = hooks.as_array().and_then(|h| h.iter().find(|h| h["feature"] == "block-writes")).cloned();
    assert_eq!(block.map(|b| b["hook"].clone()), Some("tracepoint:block:block_bio_queue".into()), "{hooks}");
    let slips = slips_below(&trace, m);
    let sectors: Vec<u64> = slips.iter().map(|s| s.2).collect();
    assert_eq!(sectors, (1..=20).map(|i| (100 + i) * 8).collect::<Vec<u64>>(), "{slips:#?}");
    for (comm, dev, _, bytes, layer, file, ..) in &slips {
        assert_eq!((comm.as_str(), *bytes, layer.as_str()), ("fw-at-once", 4096, "loop-alias"), "{slips:#?}");
        assert!(dev.starts_with("7:") && *dev != fs.loop_dev_number().expect("dev"), "{slips:#?}");
        assert_eq!(file.as_str(), fs.image.to_str().expect("path"), "{slips:#?}");
    }
}

/// A filesystem mounted, frozen, and the device under its image written while the recorder
/// cannot run (stopped with SIGSTOP, as a loaded host may keep it from running): its storage maps
/// were read before the mount, so none holds the image's blocks when the write comes. A freeze
/// that completes leaves the maps behind it: the kernel sends what no map judged until they are
/// read again, and once it runs again the recorder judges the write against the maps it reads
/// after it, while the filesystem is still mounted and frozen.
#[test]
fn a_write_under_a_filesystem_mounted_and_frozen_while_the_recorder_is_stopped_is_a_slip() {
    if !kernel_available(
        "a_write_under_a_filesystem_mounted_and_frozen_while_the_recorder_is_stopped_is_a_slip",
    ) {
        return;
    }
    let lower = LoopFs::new(FsType::Ext4).expect("the filesystem holding the image");
    let upper = LoopFs::new_in(FsType::Ext4, &lower.mountpoint).expect("the filesystem on the image");
    let dir = tempfile::tempdir().expect("temp dir");
    let (at, _) = image_block_on_lower(&lower.loopdev, &upper, dir.path());
    // Not mounted when the recording starts: no map holds the image's blocks.
    let m = upper.mnt();
    assert!(Command::new("umount").arg(m).status().expect("umount").success());
    let at_once = helper_bin("fw-at-once", env!("CARGO_BIN_EXE_fw-at-once"));
    let done = dir.path().join("written");
    // The recorder is the script's parent. It runs again on any exit of the script; the helper
    // thaws and unmounts when it exits.
    let script = format!(
        "set -e; trap 'kill -CONT $PPID' EXIT; kill -STOP $PPID\n\
         {at_once} mount {upper_dev} {m} ext4 freeze {m} rewrite {lower_dev} {at} 1024 mark {done} sleep {hold} &\n\
         while [ ! -e {done} ]; do sleep 0.05; done\n\
         kill -CONT $PPID; wait",
        upper_dev = upper.loopdev,
        lower_dev = lower.loopdev,
        done = done.display(),
        hold = limit(2).as_millis(),
    );
    let trace = record_script(&script).expect("recording");
    assert_eq!(
        slips_below(&trace, m),
        vec![(
            "fw-at-once".to_owned(),
            lower.loop_dev_number().expect("dev number"),
            at / 512,
            1024,
            "file-extents".to_owned(),
            upper.image.display().to_string(),
            upper.loop_dev_number().expect("dev number"),
        )],
        "the write over the image's block, made before any map held it, is the upper filesystem's slip"
    );
}
