//! The names an event is made of: its kind, the hook that saw it, how a freeze was made, what a
//! storage change did, the mount API, the LSM hook of a denial. One name table per enum.
use crate::names::named_enum;

named_enum! {
    /// What happened.
    pub enum EventKind {
        FreezeBegin = "freeze_begin",
        FreezeEnd = "freeze_end",
        ThawBegin = "thaw_begin",
        ThawEnd = "thaw_end",
        /// A write queued to the block device of a frozen superblock (bypasses the freeze gate).
        BlockWrite = "block_write",
        /// A task started waiting at a superblock's freeze gate.
        WriterBlocked = "writer_blocked",
        /// That wait ended.
        WriterUnblocked = "writer_unblocked",
        /// A filesystem transaction started (btrfs: committed) while freezing or frozen.
        TxnStart = "txn_start",
        /// A mount call started (mount(2) or move_mount(2)); `mount` holds its arguments.
        MountBegin = "mount_begin",
        /// It returned; `mount` repeats the arguments and says where it landed.
        MountEnd = "mount_end",
        /// A write syscall to a regular file completed while its filesystem was frozen.
        WriteDone = "write_done",
        /// A page or the inode of a regular file on a frozen filesystem turned dirty: the file
        /// was modified past the gate (a freeze cleans every page and inode); `dirtied` says what.
        Dirtied = "dirtied",
        /// A BPF LSM program found a mount that would expose a frozen superblock: refused it
        /// (enforce) or let it through (audit); `denial` says which.
        MountDenied = "mount_denied",
        /// `watch` asked for a filesystem's freeze level (FIGETBSZ on its mount point, at start):
        /// `level_after` is that level now.
        LevelProbe = "level_probe",
        /// A process that made a freeze call, or its parent, exited: `exit` says how, and
        /// `begin_ts_ns` when it had started (with the pid, what names that very process).
        ProcessExit = "process_exit",
    }
}

impl EventKind {
    /// Whether this kind closes an operation (and so carries a return value).
    pub fn is_end(self) -> bool {
        matches!(
            self,
            Self::FreezeEnd
                | Self::ThawEnd
                | Self::WriterUnblocked
                | Self::MountEnd
                | Self::WriteDone
                | Self::MountDenied
        )
    }
}

named_enum! {
    /// Which program produced an event. Names are what `doctor` and the trace show.
    pub enum Hook {
        /// `syscalls:sys_{enter,exit}_ioctl`, FIFREEZE/FITHAW only.
        TracepointIoctl = "tracepoint:syscalls:ioctl",
        /// fentry/fexit on freeze_super/thaw_super.
        FentryFreezeSuper = "fentry:freeze_super",
        /// `block:block_bio_queue`.
        TracepointBlockBioQueue = "tracepoint:block:block_bio_queue",
        /// `lock:contention_begin/end` on `s_writers.rw_sem[]`.
        TracepointLockContention = "tracepoint:lock:contention",
        TracepointExt4JournalStart = "tracepoint:ext4:ext4_journal_start",
        TracepointXfsTransAlloc = "tracepoint:xfs:xfs_trans_alloc",
        TracepointBtrfsCommit = "tracepoint:btrfs:btrfs_transaction_commit",
        /// `syscalls:sys_{enter,exit}_{mount,move_mount}`.
        TracepointSysMount = "tracepoint:syscalls:mount",
        /// `syscalls:sys_{enter,exit}_{write,pwrite64,writev,pwritev,pwritev2}`.
        TracepointSysWrite = "tracepoint:syscalls:write",
        /// `btrfs:btrfs_space_reservation` of type "transaction".
        TracepointBtrfsTxnReserve = "tracepoint:btrfs:btrfs_space_reservation",
        /// fexit on `vfs_write` (recorders before the writeback hooks).
        FexitVfsWrite = "fexit:vfs_write",
        /// BPF LSM on `sb_kern_mount`, `sb_mount` (bind) and `move_mount`.
        LsmMount = "lsm:mount",
        /// fexit on `btrfs_start_transaction`, `btrfs_start_transaction_fallback_global_rsv` and
        /// `btrfs_join_transaction`: a transaction handle the caller got.
        FexitBtrfsTxn = "fexit:btrfs_transaction",
        /// `syscalls:sys_{enter,exit}_fallocate` on a loop device's backing file.
        TracepointSysFallocate = "tracepoint:syscalls:fallocate",
        /// `syscalls:sys_{enter,exit}_ftruncate` on a loop device's backing file.
        TracepointSysFtruncate = "tracepoint:syscalls:ftruncate",
        /// `tp_btf` on `writeback:writeback_dirty_folio` and `writeback_mark_inode_dirty`.
        TpBtfWriteback = "tp_btf:writeback",
        /// The syscall dispatcher (`tp_btf` on `sys_enter`/`sys_exit`), FIFREEZE/FITHAW only.
        TpBtfSysIoctl = "tp_btf:raw_syscalls:ioctl",
        /// The syscall dispatcher on mount(2), move_mount, fsopen, fsconfig and fsmount.
        TpBtfSysMount = "tp_btf:raw_syscalls:mount",
        /// The syscall dispatcher on fallocate(2) of a loop device's backing file.
        TpBtfSysFallocate = "tp_btf:raw_syscalls:fallocate",
        /// The syscall dispatcher on ftruncate(2) of a loop device's backing file.
        TpBtfSysFtruncate = "tp_btf:raw_syscalls:ftruncate",
        /// `tp_btf` on `lock:contention_begin/end` on `s_writers.rw_sem[]`.
        TpBtfLockContention = "tp_btf:lock:contention",
        /// Raw tracepoints (their arguments, no perf event) on what the tracepoints of the same
        /// names see: `block_bio_queue`.
        RawTpBlockBioQueue = "raw_tracepoint:block:block_bio_queue",
        RawTpExt4JournalStart = "raw_tracepoint:ext4:ext4_journal_start",
        RawTpXfsTransAlloc = "raw_tracepoint:xfs:xfs_trans_alloc",
        RawTpBtrfsCommit = "raw_tracepoint:btrfs:btrfs_transaction_commit",
        /// `btrfs_space_reservation` of type "transaction".
        RawTpBtrfsTxnReserve = "raw_tracepoint:btrfs:btrfs_space_reservation",
        /// `tp_btf` on `sched_process_exit`, for the processes that froze something and their parents.
        TpBtfProcessExit = "tp_btf:sched:sched_process_exit",
        /// `sched:sched_process_exit`, the same.
        TracepointProcessExit = "tracepoint:sched:sched_process_exit",
        /// fentry/fexit on `__percpu_down_read` for `s_writers.rw_sem[]`: writers held at the
        /// gate on kernels without the lock contention tracepoints (before 5.19).
        FentryPercpuDownRead = "fentry:__percpu_down_read",
        /// fentry/fexit on `vfs_fallocate` of a loop device's backing file (any caller).
        FentryVfsFallocate = "fentry:vfs_fallocate",
        /// fentry/fexit on `do_truncate` of a loop device's backing file: ftruncate(2),
        /// truncate(2) by path, `O_TRUNC` opens.
        FentryDoTruncate = "fentry:do_truncate",
        /// A `task_file` BPF iterator over freezewatch's own open directories: the level probe
        /// where tracing programs load.
        IterTaskFile = "iter:task_file",
        /// fentry/fexit on the mount calls' syscall functions (`__x64_sys_mount`, `move_mount`,
        /// `fsopen`, `fsconfig`, `fsmount`): the calls themselves, and nothing else, pay.
        FentrySysMount = "fentry:sys_mount",
        /// fentry/fexit on `finish_automount` outside a mount call: a mount the kernel attached
        /// itself.
        FentryAutomount = "fentry:finish_automount",
    }
}

named_enum! {
    /// How a freeze or thaw was made, when it was not a FIFREEZE/FITHAW of the filesystem.
    pub enum FreezeVia {
        /// Through its block device (`bdev_freeze`/`bdev_thaw`; `freeze_bdev`/`thaw_bdev`
        /// before 6.8): a device-mapper suspend or resume. Only the block device's thaw
        /// (`dmsetup resume`) may end such a freeze; a FITHAW would thaw the filesystem under a
        /// device that is still suspended.
        BlockDevice = "block-device",
    }
}

named_enum! {
    /// What a modification of a frozen filesystem's storage did.
    pub enum IoOp {
        /// A write bio (`W` in the block tracepoint's rwbs).
        Write = "write",
        /// A discard bio (`D`; blkdiscard, fstrim).
        Discard = "discard",
        /// A secure-erase bio (`DE`; blkdiscard -s).
        SecureErase = "secure-erase",
        /// A write-zeroes bio (`N`; blkdiscard -z, BLKZEROOUT); on a zoned device the block
        /// tracepoint gives zone operations the same letter.
        WriteZeroes = "write-zeroes",
        /// A write to a loop device's backing file.
        FileWrite = "file-write",
        /// fallocate(FALLOC_FL_PUNCH_HOLE) on a backing file.
        PunchHole = "punch-hole",
        /// ftruncate of a backing file: everything from the new size on.
        Truncate = "truncate",
        /// fallocate(FALLOC_FL_ZERO_RANGE) on a backing file.
        ZeroRange = "zero-range",
        /// fallocate(FALLOC_FL_COLLAPSE_RANGE or INSERT_RANGE): everything after the offset moves.
        ShiftRange = "shift-range",
    }
}

impl IoOp {
    /// Whether the op went to a loop device's backing file (its offsets are bytes of the file),
    /// not to a block device (offsets in 512-byte sectors).
    pub fn is_file(self) -> bool {
        matches!(
            self,
            Self::FileWrite | Self::PunchHole | Self::Truncate | Self::ZeroRange | Self::ShiftRange
        )
    }

    /// The verb for findings: "wrote", "discarded", ...
    pub fn verb(self) -> &'static str {
        match self {
            Self::Write => "wrote",
            Self::Discard => "discarded",
            Self::SecureErase => "securely erased",
            Self::WriteZeroes => "zeroed (write-zeroes)",
            Self::FileWrite => "wrote",
            Self::PunchHole => "punched a hole of",
            Self::Truncate => "truncated",
            Self::ZeroRange => "zeroed (fallocate)",
            Self::ShiftRange => "collapsed or inserted a range of",
        }
    }
}

named_enum! {
    /// The mount API a mount event came from.
    pub enum MountApi {
        Mount = "mount",
        MoveMount = "move_mount",
        Fsopen = "fsopen",
        Fsconfig = "fsconfig",
        Fsmount = "fsmount",
        /// A mount the kernel attached itself, outside any mount call: an automount.
        Automount = "automount",
    }
}

impl MountApi {
    /// Whether a successful call attaches a mount (fsopen/fsconfig/fsmount only prepare one).
    pub fn attaches(self) -> bool {
        matches!(self, Self::Mount | Self::MoveMount | Self::Automount)
    }
}

named_enum! {
    /// The LSM hook that judged a mount.
    pub enum LsmHook {
        /// mount(2) of a device, or fsconfig(FSCONFIG_CMD_CREATE).
        SbKernMount = "sb_kern_mount",
        /// A bind mount (matched by its source path).
        SbMount = "sb_mount",
        /// fsmount/open_tree + move_mount.
        MoveMount = "move_mount",
        /// A value this build does not know (a newer eBPF object).
        Unknown = "unknown",
    }
}
