//! Wire types shared by the eBPF programs (`freeze-ebpf`) and the user side (`freeze-user`).
//!
//! Everything here is `#[repr(C)]` with explicit padding and only integer fields (no `bool`, no
//! enums), so that the kernel side and the user side agree on the bytes whatever compiler built
//! them. Numeric kinds are stable: a trace file written today must decode tomorrow, so numbers are
//! only ever added, never reused.
#![no_std]

pub mod tp;

/// Names of the maps and globals user space reaches by name. The eBPF statics carry the same
/// identifiers; freeze-user's object test checks that each one is in the built object.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const HOOK_HITS: &str = "HOOK_HITS";
    pub const STACKS: &str = "STACKS";
    pub const BDEV_ALIAS: &str = "BDEV_ALIAS";
    pub const MOUNT_PATHS: &str = "MOUNT_PATHS";
    pub const FROZEN_SBS: &str = "FROZEN_SBS";
    pub const LOWER_EXTENTS: &str = "LOWER_EXTENTS";
    pub const BACKING_FILES: &str = "BACKING_FILES";
    /// One `u32` of `syscall_feature` bits: what the syscall dispatcher handles.
    pub const SYSCALL_FEATURES: &str = "SYSCALL_FEATURES";
    /// Maps user space opens by name.
    pub const MAPS: &[&str] = &[
        EVENTS,
        COUNTERS,
        HOOK_HITS,
        STACKS,
        BDEV_ALIAS,
        MOUNT_PATHS,
        FROZEN_SBS,
        LOWER_EXTENTS,
        BACKING_FILES,
        SYSCALL_FEATURES,
    ];
    /// Read-only globals user space fills before load (`.rodata`).
    pub const OFFSETS: &str = "OFFSETS";
    pub const DENY_MODE: &str = "DENY_MODE";
    /// The thread group id whose FIGETBSZ ioctls the level probe reports (freezewatch's own).
    pub const PROBE_TGID: &str = "PROBE_TGID";
    /// The level probe's program (attached on its own, outside the feature table).
    pub const LEVEL_PROBE_PROGRAM: &str = "fw_level_probe";
}

/// Event kinds (`RawEvent::kind`). Stable numbers.
pub mod kind {
    /// A freeze of a superblock started (FIFREEZE entry, or `freeze_super` entry).
    pub const FREEZE_BEGIN: u32 = 1;
    /// A freeze returned; `ret` holds the result and `begin_ts_ns` the matching begin.
    pub const FREEZE_END: u32 = 2;
    /// A thaw started (FITHAW entry, or `thaw_super` entry).
    pub const THAW_BEGIN: u32 = 3;
    /// A thaw returned.
    pub const THAW_END: u32 = 4;
    /// A write bio was queued to the block device of a superblock at level COMPLETE:
    /// `arg` = sector, `flags` = bytes, `bdev` = the block device. Kernel-filtered: only frozen.
    pub const BLOCK_WRITE: u32 = 10;
    /// A task started waiting on a superblock's freeze gate (`s_writers.rw_sem[flags - 1]`);
    /// `flags` = gate level (1 write, 2 page fault, 3 fs-internal).
    pub const WRITER_BLOCKED: u32 = 20;
    /// That wait ended; `begin_ts_ns` = when it started, `ret` = the lock's result.
    pub const WRITER_UNBLOCKED: u32 = 21;
    /// A filesystem transaction started (or, for btrfs, committed) on a freezing or frozen
    /// superblock. `arg` = caller address (0 if unknown), `flags` = fs-specific flags
    /// (xfs `t_flags`, ext4 handle type).
    pub const TXN_START: u32 = 30;
    /// A mount call started: the record is a [`RawMount`] (source, target, fstype strings).
    /// `flags` = [`mount_api`], `arg` = mount flags. For move_mount the superblock being
    /// attached is resolved from `from_dfd` when `from_pathname` is empty.
    pub const MOUNT_BEGIN: u32 = 40;
    /// The mount call returned; `ret` holds the result.
    pub const MOUNT_END: u32 = 41;
    /// A write syscall to a regular file completed (`ret` > 0 bytes) while its superblock was
    /// still at level COMPLETE: the write went past the gate. `arg` = bytes written.
    pub const WRITE_DONE: u32 = 50;
    /// A page or the inode of a regular file on a superblock at level COMPLETE turned dirty: the
    /// file was modified past the gate (a freeze cleans every page and inode). `arg` = inode
    /// number; for a page `ret` = its first byte in the file and `flags` = its size; for the
    /// inode itself (its metadata) `ret` = -1 and `flags` = the kernel's `I_DIRTY_*` bits.
    pub const DIRTIED: u32 = 51;
    /// A BPF LSM program found a mount that would expose a freezing or frozen superblock (`sb`).
    /// `flags` = [`deny`] mode, `arg` = [`lsm_hook`], `ret` = the verdict returned to the kernel
    /// (-1 = EPERM in enforce mode, 0 in audit mode), levels = the superblock's level then.
    pub const MOUNT_DENIED: u32 = 42;
    /// `watch`'s startup probe: freezewatch itself made an FIGETBSZ ioctl on a mount point;
    /// `sb` is that filesystem and both levels are its freeze level now.
    pub const LEVEL_PROBE: u32 = 60;
    /// A process that made a freeze call, or the parent of one (`OWNERS`), exited: its last
    /// thread left. `pid` is its thread group id and `comm` its name; `arg` = its exit code as
    /// wait(2) reports it (the signal that killed it in the low 7 bits, 0x80 for a core dump,
    /// the exit status in bits 8–15); `begin_ts_ns` = when it started (`task_struct.start_time`,
    /// CLOCK_MONOTONIC). Reported only for the very process recorded at the freeze (same pid and
    /// start time), never for a later one that reused its pid. No superblock.
    pub const PROCESS_EXIT: u32 = 70;
}

/// Bits of `RawEvent::flags` on FREEZE_END.
pub mod freeze_flags {
    /// The caller's parent (`ppid`) is the init of a PID namespace (the host's PID 1 included;
    /// `SIGNAL_UNKILLABLE`) or a child subreaper (`is_child_subreaper`: systemd user managers,
    /// container shims): it outlives what it starts, so it is nobody's freezer.
    pub const PARENT_REAPER: u32 = 1;
    /// The caller's parent was already exiting (its last thread past `signal->live`): its exit
    /// may have been reported before it could be watched, and it holds nothing.
    pub const PARENT_EXITING: u32 = 2;
    /// The freeze or thaw was made through the block device (`bdev_freeze`/`bdev_thaw`, before
    /// 6.8 `freeze_bdev`/`thaw_bdev`): a device-mapper suspend or resume, not a FIFREEZE. Only
    /// the block device's thaw (`dmsetup resume`) may end it. Set on FREEZE_* and THAW_* records.
    pub const VIA_BLOCK_DEVICE: u32 = 4;
}

/// `SIGNAL_UNKILLABLE` in `signal_struct.flags` (include/linux/sched/signal.h): set on the init
/// task of every PID namespace. Unchanged since 2.6.
pub const SIGNAL_UNKILLABLE: u32 = 0x0000_0040;

/// What the syscall dispatcher (one `tp_btf` program on `sys_enter` and one on `sys_exit`, shared
/// by every feature that watches syscalls) handles: bits of the `SYSCALL_FEATURES` map, set by
/// user space for each feature whose chain chose it. Unset, a syscall costs its number's test.
pub mod syscall_feature {
    /// FIFREEZE/FITHAW ioctls (feature `freeze`).
    pub const FREEZE: u32 = 1;
    /// The mount calls (feature `mounts`).
    pub const MOUNTS: u32 = 1 << 1;
    /// fallocate and ftruncate (feature `backing-files`).
    pub const BACKING: u32 = 1 << 2;
    /// The level probe: FIGETBSZ ioctls of `PROBE_TGID`.
    pub const LEVEL_PROBE: u32 = 1 << 3;
}

/// x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl; the ABI never renumbers).
pub mod syscall_nr {
    pub const IOCTL: u64 = 16;
    pub const FTRUNCATE: u64 = 77;
    pub const MOUNT: u64 = 165;
    pub const FALLOCATE: u64 = 285;
    pub const MOVE_MOUNT: u64 = 429;
    pub const FSOPEN: u64 = 430;
    pub const FSCONFIG: u64 = 431;
    pub const FSMOUNT: u64 = 432;
}

/// x86-64 `struct pt_regs` (arch/x86/include/asm/ptrace.h): byte offsets of what a syscall
/// entered with. The verifier checks every load against the kernel's BTF, and freeze-user's
/// offsets test against this machine's.
pub mod pt_regs {
    pub const R10: usize = 56;
    pub const R9: usize = 64;
    pub const R8: usize = 72;
    pub const DX: usize = 96;
    pub const SI: usize = 104;
    pub const DI: usize = 112;
    /// The syscall number (`sys_exit` gets the registers and the return value only).
    pub const ORIG_AX: usize = 120;
    pub const CS: usize = 136;
    /// The six syscall arguments, in order.
    pub const ARGS: [usize; 6] = [DI, SI, DX, R10, R8, R9];
    /// `cs` of a task in 64-bit mode (`__USER_CS`), in the low 16 bits (from 6.9 on the upper
    /// ones may hold FRED state); ia32 syscalls, numbered differently, enter with `__USER32_CS`.
    pub const USER_CS: u64 = 0x33;
}

/// `--deny-mounts` mode, as the eBPF global `DENY_MODE` and a MOUNT_DENIED event's `flags`.
pub mod deny {
    /// Not denying (the LSM programs are not loaded).
    pub const OFF: u32 = 0;
    /// Let the mount proceed, record that it would have been denied.
    pub const AUDIT: u32 = 1;
    /// Refuse the mount with EPERM.
    pub const ENFORCE: u32 = 2;
}

/// Which LSM hook saw a denied mount (`RawEvent::arg` of MOUNT_DENIED).
pub mod lsm_hook {
    /// `sb_kern_mount(sb)`: mount(2) of a new mount of the superblock (its device).
    pub const SB_KERN_MOUNT: u64 = 1;
    /// `sb_mount(dev_name, …, MS_BIND)`: a bind mount whose source path lies on the superblock.
    pub const SB_MOUNT_BIND: u64 = 2;
    /// `move_mount(from, to)`: attaching a mount of the superblock (fsmount, open_tree).
    pub const MOVE_MOUNT: u64 = 3;
}

/// Which mount API a MOUNT_* event came from (`RawEvent::flags`).
pub mod mount_api {
    /// mount(2): new mounts, bind mounts, remounts.
    pub const MOUNT: u32 = 1;
    /// move_mount(2): attaching a mount made with fsmount(2) or open_tree(2).
    pub const MOVE_MOUNT: u32 = 2;
    /// fsopen(2): `fstype` holds the filesystem type.
    pub const FSOPEN: u32 = 3;
    /// fsconfig(2) with FSCONFIG_SET_STRING: `source` holds the key, `target` the value.
    pub const FSCONFIG: u32 = 4;
    /// fsmount(2): turns a configured context into a detached mount (not yet visible).
    pub const FSMOUNT: u32 = 5;
}

/// A MOUNT_BEGIN record: the common event, then the user-supplied strings (NUL padded, cut to size).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMount {
    pub event: RawEvent,
    pub source: [u8; 64],
    pub target: [u8; 128],
    pub fstype: [u8; 16],
}

/// mount(2) flags the mount programs and the analysis read.
pub mod mount_flags {
    /// A bind mount: the source is a path, not a device.
    pub const MS_BIND: u64 = 4096;
    /// A remount changes flags of an existing mount; it exposes nothing new.
    pub const MS_REMOUNT: u64 = 32;
}

/// Bytes of a mount-point key in the kernel's `MOUNT_PATHS` trie (longer mount points are left
/// out, so a bind from below them is allowed: fail open).
pub const PATH_KEY_BYTES: usize = 128;

/// The kernel's internal `dev_t` encoding (`MAJOR << 20 | MINOR`), as `sb->s_dev` and
/// `bio->bi_bdev->bd_dev` hold it (not the user-space encoding `stat` returns).
pub mod kdev {
    const MINOR_BITS: u32 = 20;
    const MINOR_MASK: u32 = (1 << MINOR_BITS) - 1;

    /// `major:minor` → kernel dev_t.
    pub const fn make(major: u32, minor: u32) -> u32 {
        (major << MINOR_BITS) | (minor & MINOR_MASK)
    }

    /// Kernel dev_t → (major, minor).
    pub const fn split(dev: u32) -> (u32, u32) {
        (dev >> MINOR_BITS, dev & MINOR_MASK)
    }
}

/// xfs `t_flags` bit: a transaction that does not take freeze protection (legitimate when frozen).
pub const XFS_TRANS_NO_WRITECOUNT: u32 = 0x40;

/// Which program produced an event (`RawEvent::hook`). Stable numbers.
pub mod hook {
    /// `syscalls:sys_enter_ioctl` / `sys_exit_ioctl` for FIFREEZE and FITHAW.
    pub const TP_IOCTL: u32 = 1;
    /// fentry/fexit on `freeze_super` / `thaw_super`.
    pub const FENTRY_FREEZE: u32 = 2;
    /// `block:block_bio_queue` (in the submitting task's context).
    pub const TP_BLOCK_BIO_QUEUE: u32 = 3;
    /// `lock:contention_begin` / `contention_end` on a superblock's `s_writers.rw_sem[]`.
    pub const TP_LOCK_CONTENTION: u32 = 4;
    /// `ext4:ext4_journal_start_sb` / `ext4_journal_start_inode` (fire before ext4's frozen check).
    pub const TP_EXT4_JOURNAL_START: u32 = 5;
    /// `xfs:xfs_trans_alloc`.
    pub const TP_XFS_TRANS_ALLOC: u32 = 6;
    /// `btrfs:btrfs_transaction_commit` (btrfs has no transaction-start tracepoint).
    pub const TP_BTRFS_COMMIT: u32 = 7;
    /// `syscalls:sys_{enter,exit}_mount` and `sys_{enter,exit}_move_mount`.
    pub const TP_SYS_MOUNT: u32 = 8;
    /// `syscalls:sys_{enter,exit}_{write,pwrite64,writev,pwritev,pwritev2}`.
    pub const TP_SYS_WRITE: u32 = 9;
    /// `btrfs:btrfs_space_reservation` of type "transaction" (a transaction start reserving
    /// metadata space; btrfs has no transaction-start tracepoint).
    pub const TP_BTRFS_TXN_RESERVE: u32 = 10;
    /// fexit on `vfs_write`: every write path (syscalls, io_uring, aio, kernel writers).
    pub const FEXIT_VFS_WRITE: u32 = 11;
    /// BPF LSM programs on `sb_kern_mount`, `sb_mount` and `move_mount` (mount denial).
    pub const LSM_MOUNT: u32 = 12;
    /// fexit on `btrfs_start_transaction`, `btrfs_start_transaction_fallback_global_rsv` and
    /// `btrfs_join_transaction`: a btrfs transaction handle that was obtained (past the gate).
    pub const FEXIT_BTRFS_TXN: u32 = 13;
    /// `syscalls:sys_{enter,exit}_fallocate`: space allocated, punched or zeroed in a loop
    /// device's backing file.
    pub const TP_SYS_FALLOCATE: u32 = 14;
    /// `syscalls:sys_{enter,exit}_ftruncate`: a loop device's backing file truncated.
    pub const TP_SYS_FTRUNCATE: u32 = 15;
    /// `tp_btf` on `writeback:writeback_dirty_folio` and `writeback_mark_inode_dirty`: a clean
    /// page or inode turning dirty, whatever path modified it.
    pub const TP_BTF_WRITEBACK: u32 = 16;
    /// The syscall dispatcher (`tp_btf` on `sys_enter`/`sys_exit`, see `syscall_feature`) on
    /// FIFREEZE/FITHAW ioctls.
    pub const TP_BTF_SYS_IOCTL: u32 = 17;
    /// The syscall dispatcher on mount(2), move_mount, fsopen, fsconfig and fsmount.
    pub const TP_BTF_SYS_MOUNT: u32 = 18;
    /// The syscall dispatcher on fallocate(2) of a loop device's backing file.
    pub const TP_BTF_SYS_FALLOCATE: u32 = 19;
    /// The syscall dispatcher on ftruncate(2) of a loop device's backing file.
    pub const TP_BTF_SYS_FTRUNCATE: u32 = 20;
    /// `tp_btf` on `lock:contention_begin` / `contention_end`.
    pub const TP_BTF_LOCK_CONTENTION: u32 = 21;
    /// Raw tracepoints (no perf event; module tracepoints too) on what the tracepoints with the
    /// same names see, from their arguments: `block_bio_queue`.
    pub const RAW_TP_BLOCK_BIO_QUEUE: u32 = 22;
    /// `ext4_journal_start_sb` / `ext4_journal_start_inode` (or, before 6.5, `ext4_journal_start`).
    pub const RAW_TP_EXT4_JOURNAL_START: u32 = 23;
    /// `xfs_trans_alloc`.
    pub const RAW_TP_XFS_TRANS_ALLOC: u32 = 24;
    /// `btrfs_transaction_commit`.
    pub const RAW_TP_BTRFS_COMMIT: u32 = 25;
    /// `btrfs_space_reservation` of type "transaction".
    pub const RAW_TP_BTRFS_TXN_RESERVE: u32 = 26;
    /// `tp_btf` on `sched_process_exit`: a freezer (or its parent) exited.
    pub const TP_BTF_PROCESS_EXIT: u32 = 27;
    /// `sched:sched_process_exit`.
    pub const TP_PROCESS_EXIT: u32 = 28;
    /// fentry/fexit on `__percpu_down_read`: a reader of a gate's semaphore that waits (kernels
    /// before 5.19, which have no lock contention tracepoints).
    pub const FENTRY_PERCPU_DOWN_READ: u32 = 29;
    /// Number of hook ids (size of the per-hook hit counters).
    pub const COUNT: u32 = 30;
}

/// What a modification did to the storage (`RawEvent::io_op` of BLOCK_WRITE). Stable numbers.
///
/// The block ops are read from `block:block_bio_queue`'s `rwbs`, which `blk_fill_rwbs()` fills
/// the same way on 6.1 through 6.18: an optional `F` (preflush), then one op letter (`W` write,
/// `D` discard, `DE` secure erase, `F` flush, `R` read, `N` any other op: write-zeroes, and the
/// zone operations of zoned devices), then flag letters (`F` FUA, `A`, `S`, `M`, ...).
pub mod io_op {
    /// Not a block-layer modification (events of other kinds).
    pub const NONE: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const DISCARD: u32 = 2;
    pub const SECURE_ERASE: u32 = 3;
    /// `N` in rwbs: REQ_OP_WRITE_ZEROES (BLKZEROOUT), or a zone operation on a zoned device.
    pub const WRITE_ZEROES: u32 = 4;
    /// A write to a loop device's backing file (write syscalls, `vfs_write`, or a page of it
    /// turning dirty).
    pub const FILE_WRITE: u32 = 5;
    /// fallocate(2) FALLOC_FL_PUNCH_HOLE on a loop device's backing file.
    pub const FILE_PUNCH_HOLE: u32 = 6;
    /// ftruncate(2) of a loop device's backing file (everything from the new size on).
    pub const FILE_TRUNCATE: u32 = 7;
    /// fallocate(2) FALLOC_FL_ZERO_RANGE on a loop device's backing file.
    pub const FILE_ZERO_RANGE: u32 = 8;
    /// fallocate(2) FALLOC_FL_COLLAPSE_RANGE or INSERT_RANGE: everything after the offset moves.
    pub const FILE_SHIFT_RANGE: u32 = 9;

    /// The op of a bio from its `bi_opf` (what `blk_fill_rwbs()` turns into the letters
    /// `from_rwbs` reads: the same answer for the same bio); `None` for reads, flushes and empty
    /// bios.
    pub const fn from_opf(opf: u32, bytes: u32) -> Option<u32> {
        if bytes >> 9 == 0 {
            return None;
        }
        use super::req_op as op;
        match opf & op::MASK {
            op::READ | op::FLUSH => None,
            op::WRITE => Some(WRITE),
            op::DISCARD => Some(DISCARD),
            op::SECURE_ERASE => Some(SECURE_ERASE),
            // `N`: write-zeroes, and the zone operations.
            _ => Some(WRITE_ZEROES),
        }
    }

    /// The op of a bio from its `rwbs` letters; `None` for reads, flushes and empty bios (they
    /// change no data).
    pub const fn from_rwbs(rwbs: &[u8; 8], sectors: u32) -> Option<u32> {
        if sectors == 0 {
            return None;
        }
        // A leading F is a preflush when an op letter follows it; alone it is the flush op.
        let i = if rwbs[0] == b'F' && matches!(rwbs[1], b'W' | b'D' | b'N' | b'R' | b'F') { 1 } else { 0 };
        match rwbs[i] {
            b'W' => Some(WRITE),
            b'D' if rwbs[i + 1] == b'E' => Some(SECURE_ERASE),
            b'D' => Some(DISCARD),
            b'N' => Some(WRITE_ZEROES),
            _ => None,
        }
    }
}

/// `enum req_op` (include/linux/blk_types.h), the low bits of a bio's `bi_opf`: the values
/// 6.1 through 6.18 share, checked against the running kernel's BTF by freeze-user's tests.
pub mod req_op {
    /// `REQ_OP_BITS` is 8.
    pub const MASK: u32 = 0xff;
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const FLUSH: u32 = 2;
    pub const DISCARD: u32 = 3;
    pub const SECURE_ERASE: u32 = 5;
    pub const WRITE_ZEROES: u32 = 9;
}

/// A range of a lower layer that holds part of a filesystem's storage, as user space resolved it
/// (a partition's range of its disk, a device-mapper target's range of a lower device, a loop
/// device's range of its backing file). The programs check a modification against it, and the
/// filesystem's own superblock (found by `fs_dev` in `FROZEN_SBS`) decides whether it is frozen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// `s_dev` of the filesystem whose storage this is (kernel dev_t encoding).
    pub fs_dev: u32,
    /// For a backing file: the loop device it backs (kernel dev_t encoding); 0 for block extents.
    pub via_dev: u32,
    /// First 512-byte sector (block extents) or byte (backing files) of the range.
    pub first: u64,
    /// One past the last; `u64::MAX` for "to the end".
    pub end: u64,
}

/// `LOWER_EXTENTS` key: a block device and the slot of one of its extents (0, 1, ... up to
/// [`EXTENTS_PER_DEV`], filled without gaps).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtentKey {
    pub dev: u32,
    pub slot: u32,
}

/// Extents of one lower block device the programs look at.
pub const EXTENTS_PER_DEV: u32 = 8;

/// `BACKING_FILES` key: a regular file by its filesystem's `s_dev` and inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// `enum freeze_holder` bits as the kernel defines them (6.6+); 0 means unknown.
pub mod holder {
    pub const UNKNOWN: u32 = 0;
    pub const KERNEL: u32 = 1;
    pub const USERSPACE: u32 = 2;
    pub const MAY_NEST: u32 = 4;
    pub const EXCL: u32 = 8;
}

/// Values of `sb->s_writers.frozen`.
pub mod level {
    pub const UNFROZEN: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const PAGEFAULT: u32 = 2;
    pub const FS: u32 = 3;
    pub const COMPLETE: u32 = 4;
    /// The level could not be read (a failed kernel read); never a real level.
    pub const UNKNOWN: u32 = u32::MAX;
}

/// Slots of the per-CPU `COUNTERS` array that the programs bump and user space reads.
pub mod counter {
    /// The ring buffer was full: an event was dropped (this is the loss count).
    pub const RINGBUF_FULL: u32 = 0;
    /// A kernel read failed while building an event (the event was still sent, with blanks).
    pub const READ_FAILED: u32 = 1;
    /// FIFREEZE/FITHAW ioctls seen by the tracepoint hook.
    pub const IOCTL_SEEN: u32 = 2;
    /// freeze_super/thaw_super calls seen by the fentry hook.
    pub const FENTRY_SEEN: u32 = 3;
    /// A begin whose pending slot could not be stored (the end will lack its begin).
    pub const PENDING_FULL: u32 = 4;
    /// Block writes and lock contentions that cost only a map lookup (not a watched object).
    pub const FILTERED: u32 = 5;
    /// A superblock could not be added to the watch maps (maps full).
    pub const WATCH_FULL: u32 = 6;
    pub const COUNT: u32 = 8;
}

/// FIFREEZE / FITHAW ioctl numbers (`_IOWR('X', 119, int)` / `_IOWR('X', 120, int)`).
pub const FIFREEZE: u32 = 0xC004_5877;
pub const FITHAW: u32 = 0xC004_5878;
/// FIGETBSZ (`_IO(0x00, 2)`): the harmless ioctl `watch` makes on a mount point so that the level
/// probe reads its filesystem's freeze level (never FIFREEZE: probing must not freeze).
pub const FIGETBSZ: u32 = 2;

/// Identity of a superblock, read from `struct super_block` at event time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbIdent {
    /// Kernel address of the superblock: the key that ties events together.
    pub sb: u64,
    /// `sb->s_dev` in the kernel's encoding (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
    /// `sb->s_type->name`, NUL padded.
    pub fstype: [u8; 16],
    /// `sb->s_id`, NUL padded (the block device name for block filesystems).
    pub s_id: [u8; 32],
    /// `sb->s_uuid`.
    pub uuid: [u8; 16],
}

impl SbIdent {
    pub const fn zeroed() -> Self {
        Self { sb: 0, dev: 0, _pad: 0, fstype: [0; 16], s_id: [0; 32], uuid: [0; 16] }
    }
}

/// One event as it travels through the ring buffer. Fixed size; fields a kind does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// One of [`kind`].
    pub kind: u32,
    /// One of [`hook`].
    pub hook: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event happened.
    pub ts_ns: u64,
    /// For *_END kinds: the timestamp of the matching begin; 0 when unknown.
    pub begin_ts_ns: u64,
    /// Thread group id (what user space calls the pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: [u8; 16],
    /// `sb->s_writers.frozen` when the operation started.
    pub level_before: u32,
    /// `sb->s_writers.frozen` when the event was emitted (for *_END: after the operation).
    pub level_after: u32,
    /// One of [`holder`] (bits), 0 when unknown.
    pub holder: u32,
    pub flags: u32,
    /// Return value of the operation (for *_END), 0 otherwise.
    pub ret: i64,
    /// Kind-specific argument (see [`kind`]).
    pub arg: u64,
    /// Block device (kernel dev_t encoding) for block-layer events, 0 otherwise.
    pub bdev: u32,
    /// Kernel stack: id in the `STACKS` map + 1; 0 when none was taken.
    pub stack_id: u32,
    pub sb: SbIdent,
    /// `bpf_get_current_cgroup_id()`: the task's cgroup v2 id (the inode number of its directory
    /// under the cgroup2 mount); 0 when unknown.
    pub cgroup_id: u64,
    /// The parent task's thread group id (`current->real_parent->tgid`); 0 when unread.
    pub ppid: u32,
    /// The parent task's `comm`, NUL padded.
    pub pcomm: [u8; 16],
    /// For BLOCK_WRITE: one of [`io_op`].
    pub io_op: u32,
}

impl RawEvent {
    pub const fn zeroed() -> Self {
        Self {
            kind: 0,
            hook: 0,
            ts_ns: 0,
            begin_ts_ns: 0,
            pid: 0,
            tid: 0,
            comm: [0; 16],
            level_before: 0,
            level_after: 0,
            holder: 0,
            flags: 0,
            ret: 0,
            arg: 0,
            bdev: 0,
            stack_id: 0,
            sb: SbIdent::zeroed(),
            cgroup_id: 0,
            ppid: 0,
            pcomm: [0; 16],
            io_op: 0,
        }
    }
}

/// Field offsets the programs need, resolved by user space from the running kernel's BTF and
/// handed over as a read-only global. Rust eBPF objects carry no CO-RE relocations, so without
/// this the programs would only be right for the kernel they were built against.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KernelOffsets {
    /// Non-zero once user space has filled the struct; programs do nothing while it is 0.
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_inode: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    pub sb_s_type: u32,
    /// Offset of `s_writers.frozen` from the start of `struct super_block`.
    pub sb_frozen: u32,
    /// Size in bytes of `frozen` (2 on 6.6+, 4 before).
    pub sb_frozen_size: u32,
    pub sb_s_id: u32,
    pub sb_s_uuid: u32,
    pub fstype_name: u32,
    /// Number of parameters of `freeze_super` (1 on 6.1, 2 on 6.6–6.15, 3 on 6.16+).
    pub freeze_super_nargs: u32,
    /// `super_block.s_bdev` (pointer to the block device; NULL for non-block filesystems).
    pub sb_s_bdev: u32,
    /// `block_device.bd_dev`.
    pub bdev_bd_dev: u32,
    /// `block_device.bd_holder` (pointer): for a filesystem's device, its superblock.
    pub bdev_bd_holder: u32,
    /// Offset of `s_writers.rw_sem[0]` from the start of `struct super_block`.
    pub sb_rw_sem: u32,
    /// `sizeof(struct percpu_rw_semaphore)`: the stride of `rw_sem[]`.
    pub rw_sem_size: u32,
    /// `inode.i_mode` (umode_t, 2 bytes).
    pub inode_i_mode: u32,
    /// `path.mnt` (pointer to `struct vfsmount`).
    pub path_mnt: u32,
    /// `vfsmount.mnt_sb`.
    pub vfsmount_mnt_sb: u32,
    /// `btrfs_root.fs_info`, from btrfs's BTF (module or vmlinux); 0 when btrfs has none.
    pub btrfs_root_fs_info: u32,
    /// `btrfs_fs_info.sb`; 0 when btrfs has no BTF.
    pub btrfs_fs_info_sb: u32,
    /// `task_struct.real_parent` (pointer).
    pub task_real_parent: u32,
    /// `task_struct.tgid` (pid_t).
    pub task_tgid: u32,
    /// `task_struct.comm` (char[16]).
    pub task_comm: u32,
    /// `file.f_pos` (loff_t).
    pub file_f_pos: u32,
    /// `inode.i_ino` (unsigned long).
    pub inode_i_ino: u32,
    /// `address_space.host` (the inode whose pages it holds).
    pub mapping_host: u32,
    /// `folio.index` (the folio's first page in its file); before folios (5.16), `page.index`,
    /// at the same offset (a folio overlays its first page).
    pub folio_index: u32,
    /// log2 of the page size (from the running system, not BTF).
    pub page_shift: u32,
    /// `bio.bi_bdev` (the block device a bio was submitted to); 0 where bio has none (before
    /// 5.12, which has `bi_disk`): the raw block tracepoint needs it and is not used there.
    pub bio_bi_bdev: u32,
    /// `bio.bi_opf` (`req_op` in the low bits, flags above).
    pub bio_bi_opf: u32,
    /// `bio.bi_iter.bi_sector`.
    pub bio_bi_sector: u32,
    /// `bio.bi_iter.bi_size` (bytes).
    pub bio_bi_size: u32,
    /// `xfs_trans.t_mountp`, from xfs's BTF (module or vmlinux); 0 when xfs has none.
    pub xfs_trans_t_mountp: u32,
    /// `xfs_trans.t_flags`; 0 when xfs has no BTF.
    pub xfs_trans_t_flags: u32,
    /// `xfs_mount.m_super`; 0 when xfs has no BTF.
    pub xfs_mount_m_super: u32,
    /// `task_struct.group_leader` (pointer): the thread whose start time names the process.
    pub task_group_leader: u32,
    /// `task_struct.start_time` (u64, CLOCK_MONOTONIC ns).
    pub task_start_time: u32,
    /// `task_struct.exit_code` (int, wait(2) encoding).
    pub task_exit_code: u32,
    /// `task_struct.signal` (pointer to the thread group's `signal_struct`).
    pub task_signal: u32,
    /// `signal_struct.live` (atomic_t): threads not yet exited; 0 once the last one has.
    pub signal_live: u32,
    /// `signal_struct.flags` (unsigned int; `SIGNAL_UNKILLABLE` marks a PID namespace's init).
    pub signal_flags: u32,
    /// Bit offset of the one-bit `signal_struct.is_child_subreaper` from the struct's start.
    pub signal_subreaper_bit: u32,
}

impl KernelOffsets {
    /// All zero, `valid == 0`: the value the eBPF object ships with until user space fills it.
    pub const fn zeroed() -> Self {
        Self {
            valid: 0,
            task_files: 0,
            files_fdt: 0,
            fdtable_max_fds: 0,
            fdtable_fd: 0,
            file_f_inode: 0,
            inode_i_sb: 0,
            sb_s_dev: 0,
            sb_s_type: 0,
            sb_frozen: 0,
            sb_frozen_size: 0,
            sb_s_id: 0,
            sb_s_uuid: 0,
            fstype_name: 0,
            freeze_super_nargs: 0,
            sb_s_bdev: 0,
            bdev_bd_dev: 0,
            bdev_bd_holder: 0,
            sb_rw_sem: 0,
            rw_sem_size: 0,
            inode_i_mode: 0,
            path_mnt: 0,
            vfsmount_mnt_sb: 0,
            btrfs_root_fs_info: 0,
            btrfs_fs_info_sb: 0,
            task_real_parent: 0,
            task_tgid: 0,
            task_comm: 0,
            file_f_pos: 0,
            inode_i_ino: 0,
            mapping_host: 0,
            folio_index: 0,
            page_shift: 0,
            bio_bi_bdev: 0,
            bio_bi_opf: 0,
            bio_bi_sector: 0,
            bio_bi_size: 0,
            xfs_trans_t_mountp: 0,
            xfs_trans_t_flags: 0,
            xfs_mount_m_super: 0,
            task_group_leader: 0,
            task_start_time: 0,
            task_exit_code: 0,
            task_signal: 0,
            signal_live: 0,
            signal_flags: 0,
            signal_subreaper_bit: 0,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are `#[repr(C)]`, contain only integers and arrays of integers, and have
    // explicit padding fields, so every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above (a RawEvent followed by byte arrays; 376 bytes, no padding).
    unsafe impl aya::Pod for super::RawMount {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Extent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExtentKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InodeKey {}
}
