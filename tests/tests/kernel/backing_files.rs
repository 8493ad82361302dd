//! The backing-files chain: where fentry works (the guests), `vfs_fallocate` and `do_truncate`
//! see every way a loop device's backing file is punched or truncated, with no syscall hook:
//! truncate(2) by path and an `O_TRUNC` open too, which the syscall dispatcher never sees; and
//! what both ways see, they see alike. A store through a shared mapping of a backing file is a
//! slip wherever the image's filesystem accounts dirty pages (completed-writes sees the page turn
//! dirty, on every kernel).
use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use freezewatch_tests::{
    Frozen, FsType, LoopFs, Recorder, Trace, guest_feature_available, hook_available, record_script_with,
};

/// The chain's first choice, where fentry loads.
const FENTRY: &str = "fentry:vfs_fallocate+do_truncate";

/// (hook, op, file offset, bytes) of each change to a backing file under `mnt` that reached it
/// while frozen (its `block_write` events), in order.
fn backing_changes(trace: &Trace, mnt: &str) -> Vec<(String, String, u64, u64)> {
    trace
        .events_on("block_write", mnt)
        .iter()
        .filter(|e| e["block"]["mapping"]["layer"] == "loop-backing-file")
        .map(|e| {
            let b = &e["block"];
            (
                e["hook"].as_str().unwrap_or_default().to_owned(),
                b["op"].as_str().unwrap_or_default().to_owned(),
                b["file_offset"].as_u64().unwrap_or(u64::MAX),
                b["bytes"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

/// truncate(2) by path and an `O_TRUNC` open of the backing file of a frozen filesystem, made by
/// this process while freezewatch records: each is a slip at `do_truncate`. A truncate(2) of a
/// file that backs nothing, made first, is not (the hook was live for it all the same).
#[test]
fn truncate_by_path_and_an_o_trunc_open_of_a_frozen_filesystems_backing_file_are_slips() {
    let name = "truncate_by_path_and_an_o_trunc_open_of_a_frozen_filesystems_backing_file_are_slips";
    if !guest_feature_available(name, "fentry") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let dir = tempfile::tempdir().expect("temp dir");
    let bystander = dir.path().join("bystander");
    std::fs::write(&bystander, vec![1u8; 8192]).expect("a file that backs nothing");
    let rec = Recorder::start(&[]).expect("recorder");
    {
        let _frozen = Frozen::new(&fs).expect("freeze");
        // SAFETY: truncate(2) on NUL-terminated paths that outlive the calls.
        unsafe {
            assert_eq!(libc::truncate(c_path(&bystander).as_ptr(), 4096), 0, "truncate(2) of the bystander");
            assert_eq!(libc::truncate(c_path(&fs.image).as_ptr(), 63 << 20), 0, "truncate(2) of the image");
        }
        std::fs::OpenOptions::new().write(true).truncate(true).open(&fs.image).expect("O_TRUNC open");
    }
    let trace = rec.finish().expect("trace");
    assert_eq!(trace.feature_hook("backing-files"), FENTRY);
    let truncated = |at: u64| ("fentry:do_truncate".to_owned(), "truncate".to_owned(), at, 0);
    assert_eq!(
        backing_changes(&trace, fs.mnt()),
        [truncated(63 << 20), truncated(0)],
        "truncate(2) to 63 MiB, then the O_TRUNC open to 0: the bystander's truncate backs nothing"
    );
    let slips: Vec<&str> =
        trace.findings_on("slip", fs.mnt()).iter().filter_map(|f| f["block"]["op"].as_str()).collect();
    assert_eq!(slips, ["truncate", "truncate"]);
    assert!(trace.hook_hits("fentry:do_truncate") >= 3, "{}", trace.footer());
}

/// A hole punched in the backing file (fallocate(1)) and a truncate (truncate(1): an ftruncate)
/// while frozen: fentry on `vfs_fallocate` and `do_truncate` see what the syscall dispatcher
/// (`FREEZEWATCH_NO_FENTRY=1`) sees, change for change, and the same slips.
#[test]
fn the_fentry_hooks_and_the_syscall_dispatcher_see_a_punched_hole_and_a_truncate_alike() {
    let name = "the_fentry_hooks_and_the_syscall_dispatcher_see_a_punched_hole_and_a_truncate_alike";
    if !guest_feature_available(name, "fentry") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let (m, img) = (fs.mnt(), fs.image.display());
    let script = format!(
        "set -e; fsfreeze -f {m}; trap 'fsfreeze -u {m}' EXIT\n\
         fallocate -p -o 50M -l 1M {img}\n\
         truncate -s 63M {img}\n\
         fsfreeze -u {m}; trap - EXIT"
    );
    let fentry = record_script_with(&script, &[]).expect("recording with fentry");
    let dispatcher = record_script_with(&script, &[("FREEZEWATCH_NO_FENTRY", "1")]).expect("recording");
    assert_eq!(fentry.feature_hook("backing-files"), FENTRY);
    assert_eq!(dispatcher.feature_hook("backing-files"), "tp_btf:raw_syscalls:fallocate+ftruncate");
    let changes = |trace: &Trace, fallocate: &str, truncate: &str| {
        vec![
            (fallocate.to_owned(), "punch-hole".to_owned(), 50 << 20, 1 << 20),
            (truncate.to_owned(), "truncate".to_owned(), 63 << 20, 0),
        ] == backing_changes(trace, m)
    };
    assert!(
        changes(&fentry, "fentry:vfs_fallocate", "fentry:do_truncate"),
        "{:?}",
        backing_changes(&fentry, m)
    );
    assert!(
        changes(&dispatcher, "tp_btf:raw_syscalls:fallocate", "tp_btf:raw_syscalls:ftruncate"),
        "{:?}",
        backing_changes(&dispatcher, m)
    );
    let slips = |trace: &Trace| -> Vec<String> {
        trace
            .findings_on("slip", m)
            .iter()
            .map(|f| {
                // The message without its first words, `comm[pid]`: the task ids differ.
                let message = f["message"].as_str().unwrap_or_default();
                let said = message.split_once("] ").map_or(message, |(_, rest)| rest);
                format!("{} {} {} {said}", f["comm"], f["block"]["op"], f["block"]["file_offset"])
            })
            .collect()
    };
    assert_eq!(slips(&fentry).len(), 2, "{:#?}", slips(&fentry));
    assert_eq!(slips(&fentry), slips(&dispatcher), "the two recordings' slips differ");
}

/// A store through a shared mapping of a frozen filesystem's backing file (on an ext4, which
/// accounts dirty pages; tmpfs does not) turns a clean page of it dirty: a slip at that page.
/// The page is 2 MiB-aligned, so that a large folio holding it starts there too.
#[test]
fn a_store_through_a_shared_mapping_of_a_frozen_filesystems_backing_file_is_a_slip() {
    let name = "a_store_through_a_shared_mapping_of_a_frozen_filesystems_backing_file_is_a_slip";
    if !hook_available(name, "completed-writes", Some("tp_btf:writeback")) {
        return;
    }
    let lower = LoopFs::new(FsType::Ext4).expect("the filesystem holding the image");
    let upper = LoopFs::new_in(FsType::Ext4, &lower.mountpoint).expect("the filesystem on the image");
    let at: u64 = 60 << 20;
    let rec = Recorder::start(&[]).expect("recorder");
    {
        let _frozen = Frozen::new(&upper).expect("freeze");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&upper.image).expect("image");
        // The freeze wrote the filesystem out through the loop device into the image's pages:
        // written back now, they are clean, and the store below turns one dirty.
        file.sync_all().expect("fsync of the image");
        use std::os::fd::AsRawFd as _;
        // SAFETY: a fresh shared mapping of 4 KiB of an open file at a page-aligned offset inside
        // it; the byte is read and stored back (volatile: the store is the point) before the
        // mapping is removed, and nothing else refers to it.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                at as libc::off_t,
            );
            assert_ne!(page, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            let byte = page.cast::<u8>();
            byte.write_volatile(byte.read_volatile());
            assert_eq!(libc::munmap(page, 4096), 0);
        }
    }
    let trace = rec.finish().expect("trace");
    let slips = trace.findings_on("slip", upper.mnt());
    let got: Vec<(u64, &str, u64, u64)> = slips
        .iter()
        .map(|f| {
            let b = &f["block"];
            (
                f["pid"].as_u64().unwrap_or(0),
                b["op"].as_str().unwrap_or_default(),
                b["file_offset"].as_u64().unwrap_or(u64::MAX),
                b["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(u64::from(std::process::id()), "file-write", at, 4096)],
        "the page the store dirtied, by this process, and nothing else: {slips:#?}"
    );
    assert_eq!(slips[0]["hook"], "tp_btf:writeback", "{}", slips[0]);
}
