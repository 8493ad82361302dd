//! Every path to a frozen filesystem's storage on this host's layers: discards and write-zeroes
//! on its own device, and writes, punched holes and truncates of its loop device's backing file,
//! are slips that say what they did and where; flushes, writes to other devices and files, and
//! growing the backing file past the device are not; 50 freeze cycles under load stay clean.
//! Partitions and device-mapper layers are tested in the guests (`storage_layers.rs`).
use freezewatch_tests::{
    FsType, LoopFs, Trace, absent_here, kernel_available, record_script, record_script_with,
};
use serde_json::Value;

/// Freezes `fs` around `body` in a script that thaws on any exit.
fn frozen_script(fs: &LoopFs, body: &str) -> String {
    let m = fs.mnt();
    format!("set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n{body}\nfsfreeze -u {m}; trap - EXIT")
}

#[test]
fn discards_and_write_zeroes_of_a_frozen_device_are_slips_with_their_op_and_flushes_are_not() {
    if !kernel_available(
        "discards_and_write_zeroes_of_a_frozen_device_are_slips_with_their_op_and_flushes_are_not",
    ) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dev = &fs.loopdev;
    let script = frozen_script(
        &fs,
        &format!(
            "blkdiscard -f -o 32M -l 1M {dev} 2>/dev/null\nblkdiscard -f -z -o 40M -l 1M {dev} 2>/dev/null\nsync {dev}"
        ),
    );
    let trace = record_script(&script).expect("recording");
    let slips = trace.findings_on("slip", fs.mnt());
    let got: Vec<(&str, &str, u64, u64, &str)> = slips
        .iter()
        .map(|f| {
            let b = &f["block"];
            (
                f["comm"].as_str().unwrap_or(""),
                b["op"].as_str().unwrap_or(""),
                b["sector"].as_u64().unwrap_or(0),
                b["bytes"].as_u64().unwrap_or(0),
                b["dev"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let loop_dev = fs.loop_dev_number().expect("dev number");
    assert_eq!(
        got.first(),
        Some(&("blkdiscard", "discard", 32 << 11, 1 << 20, loop_dev.as_str())),
        "the flush `sync` sent to the frozen device is no slip: {got:?}"
    );
    // BLKZEROOUT sends write-zeroes where the device takes them, and writes zero pages where it
    // does not or where they fail (a loop device over tmpfs): the bios the kernel really sent.
    let zeroing: Vec<&str> = got[1..].iter().map(|(_, op, ..)| *op).collect();
    assert!(!zeroing.is_empty(), "{got:?}");
    for (comm, op, sector, bytes, dev) in &got[1..] {
        assert_eq!(
            (*comm, *sector, *bytes, *dev),
            ("blkdiscard", 40 << 11, 1 << 20, loop_dev.as_str()),
            "{got:?}"
        );
        assert!(["write-zeroes", "write"].contains(op), "{got:?}");
    }
    let name = fs.loopdev.trim_start_matches("/dev/");
    let takes_zeroes = std::fs::read_to_string(format!("/sys/block/{name}/queue/write_zeroes_max_bytes"))
        .is_ok_and(|s| s.trim() != "0");
    assert_eq!(
        zeroing.contains(&"write-zeroes"),
        takes_zeroes,
        "write-zeroes bios iff the device takes them: {got:?}"
    );
    assert!(
        slips[0]["message"].as_str().is_some_and(|m| m.contains("discarded 1048576 bytes at sector 65536")),
        "{}",
        slips[0]
    );
    if takes_zeroes {
        assert!(
            slips[1]["message"].as_str().is_some_and(|m| m.contains("a write-zeroes that bypassed")),
            "{}",
            slips[1]
        );
    }
    assert!(trace.hook_hits(&trace.feature_hook("block-writes")) > 0);
}

#[test]
fn changes_to_the_backing_file_are_slips_naming_the_loop_device_and_other_files_are_not() {
    if !kernel_available(
        "changes_to_the_backing_file_are_slips_naming_the_loop_device_and_other_files_are_not",
    ) {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let other = LoopFs::new(FsType::Ext4).expect("another fs, not frozen");
    let img = fs.image.display().to_string();
    let body = format!(
        "dd if=/dev/urandom of={img} bs=4096 count=1 seek=12000 conv=notrunc status=none\n\
         fallocate -p -o 50M -l 1M {img}\n\
         truncate -s 65M {img}\n\
         dd if=/dev/zero of={other_img} bs=4096 count=1 seek=100 conv=notrunc status=none\n\
         dd if=/dev/zero of={other_dev} bs=4096 count=1 seek=100 oflag=direct conv=notrunc status=none\n\
         truncate -s 63M {img}",
        other_img = other.image.display(),
        other_dev = other.loopdev,
    );
    let trace = record_script(&frozen_script(&fs, &body)).expect("recording");
    let slips = trace.findings_on("slip", fs.mnt());
    let got: Vec<(&str, &str, u64, u64)> = slips
        .iter()
        .map(|f| {
            let b = &f["block"];
            (
                f["comm"].as_str().unwrap_or(""),
                b["op"].as_str().unwrap_or(""),
                b["file_offset"].as_u64().unwrap_or(u64::MAX),
                b["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // A backing file on tmpfs (the guests' /tmp) dirties its pages unseen by the writeback hook:
    // its buffered write is seen only where the write-syscall fallback runs (see the next test).
    let mut want = vec![
        ("dd", "file-write", 12000 * 4096, 4096),
        ("fallocate", "punch-hole", 50 << 20, 1 << 20),
        ("truncate", "truncate", 63 << 20, 0),
    ];
    if fs.image_on_tmpfs() && trace.feature_hook("completed-writes") == "tp_btf:writeback" {
        want.remove(0);
    }
    assert_eq!(
        got, want,
        "growing the file past the device (65M) changes nothing it reads; the other loop's file and \
         device are not this filesystem's storage"
    );
    let loop_dev = fs.loop_dev_number().expect("dev number");
    for s in &slips {
        let m = &s["block"]["mapping"];
        assert_eq!(m["layer"], "loop-backing-file", "{s}");
        assert_eq!(
            (m["dev"].as_str(), m["file"].as_str()),
            (Some(loop_dev.as_str()), Some(img.as_str())),
            "{s}"
        );
        assert_eq!(
            (m["first"].as_u64(), m["len"].as_u64()),
            (Some(0), Some(64 << 20)),
            "the device's range of the file: {s}"
        );
    }
    let write = slips.iter().find(|s| s["block"]["op"] == "file-write");
    assert!(
        write.is_none_or(|w| w["message"].as_str().is_some_and(|m| m.contains(&format!(
            "wrote 4096 bytes at byte {} of {img}, the backing file of loop device {loop_dev}",
            12000 * 4096
        )) && m
            .contains("from its sector 96000 on"))),
        "{write:?}"
    );
    assert!(
        trace.findings("slip").iter().all(|f| f["sb"]["mountpoint"] == fs.mnt()),
        "{:#?}",
        trace.findings("slip")
    );
    let header = &trace.of_type("header")[0];
    let layers = header["storage"]["layers"].as_array().expect("the header states the layers");
    assert!(layers.iter().any(|l| l["layer"] == "loop-backing-file" && l["available"] == true), "{header}");
}

/// The completed-writes chain's two hooks on the same writes to the backing file: a buffered
/// write is seen alike by the writeback hook (a page of the file turning dirty) and by the write
/// syscalls' fallback (`FREEZEWATCH_SKIP_HOOKS` forces it); an `O_DIRECT` write dirties no page,
/// so only the fallback sees it, as the writeback hook's limits say. On tmpfs (the guests' /tmp)
/// pages turn dirty without the writeback tracepoint: there the fallback alone sees either.
#[test]
fn the_writeback_hook_and_the_syscall_fallback_see_a_backing_file_write_alike() {
    if !kernel_available("the_writeback_hook_and_the_syscall_fallback_see_a_backing_file_write_alike") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let img = fs.image.display().to_string();
    // tmpfs takes O_DIRECT from Linux 6.6 on (the 6.1 guest's /tmp refuses it): the direct
    // write is made where the file takes it.
    let direct_io = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&fs.image).is_ok()
    };
    let mut body = format!("dd if=/dev/urandom of={img} bs=4096 count=1 seek=9000 conv=notrunc status=none");
    if direct_io {
        body.push_str(&format!(
            "\ndd if=/dev/urandom of={img} bs=4096 count=1 seek=9500 conv=notrunc oflag=direct status=none"
        ));
    }
    let script = frozen_script(&fs, &body);
    let writes = |trace: &Trace| -> Vec<(String, String, u64, u64)> {
        trace
            .findings_on("slip", fs.mnt())
            .iter()
            .map(|f| {
                let b = &f["block"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&f["comm"]),
                    text(&b["op"]),
                    b["file_offset"].as_u64().unwrap_or(0),
                    b["bytes"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let writeback = record_script(&script).expect("recording");
    let fallback =
        record_script_with(&script, &[("FREEZEWATCH_SKIP_HOOKS", "tp_btf:writeback")]).expect("recording");
    assert_eq!(writeback.feature_hook("completed-writes"), "tp_btf:writeback");
    assert_eq!(fallback.feature_hook("completed-writes"), "tracepoint:syscalls:write");
    let buffered = ("dd".to_owned(), "file-write".to_owned(), 9000 * 4096, 4096);
    let direct = ("dd".to_owned(), "file-write".to_owned(), 9500 * 4096, 4096);
    let seen_dirtying: &[_] = if fs.image_on_tmpfs() { &[] } else { std::slice::from_ref(&buffered) };
    assert_eq!(writes(&writeback), seen_dirtying, "the O_DIRECT write dirties no page");
    let seen_at_syscalls: Vec<_> =
        [Some(buffered), direct_io.then_some(direct)].into_iter().flatten().collect();
    assert_eq!(writes(&fallback), seen_at_syscalls);
    assert!(writeback.hook_hits("tp_btf:writeback") > 0, "{}", writeback.footer());
}

#[test]
fn fifty_freeze_cycles_under_load_stay_clean() {
    if !kernel_available("fifty_freeze_cycles_under_load_stay_clean") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let other = LoopFs::new(FsType::Ext4).expect("another fs under load");
    let (m, o) = (fs.mnt(), other.mnt());
    // Writers on the frozen filesystem (held at the gate each cycle) and direct I/O on another.
    let script = format!(
        "( while :; do dd if=/dev/zero of={m}/load bs=64k count=4 conv=notrunc status=none; done ) & w=$!\n\
         ( while :; do dd if=/dev/zero of={o}/load bs=64k count=16 oflag=direct status=none; done ) & d=$!\n\
         trap 'fsfreeze -u {m} 2>/dev/null; kill $w $d 2>/dev/null' EXIT\n\
         for i in $(seq 50); do fsfreeze -f {m}; sleep 0.05; fsfreeze -u {m}; done\n\
         trap - EXIT; kill $w $d; wait"
    );
    let trace = record_script(&script).expect("recording");
    let ours: Vec<&Value> = trace
        .of_type("finding")
        .into_iter()
        .filter(|f| f["sb"]["mountpoint"] == m)
        .filter(|f| f["kind"] != "exempt" && f["kind"] != "blocked-writer")
        .collect();
    assert!(ours.is_empty(), "{ours:#?}");
    let summary = trace
        .of_type("summary")
        .into_iter()
        .find(|s| s["sb"]["mountpoint"] == m)
        .expect("a summary of our filesystem");
    assert_eq!(summary["freezes"].as_u64(), Some(50), "{summary}");
    // Live hooks: writers were held at the gate, and bios and writes were seen.
    if !absent_here("blocked-writers") {
        assert!(summary["blocked_writers"].as_u64().is_some_and(|n| n > 0), "{summary}");
    }
    assert!(trace.hook_hits(&trace.feature_hook("block-writes")) > 0);
}
