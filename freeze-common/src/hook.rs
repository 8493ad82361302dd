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
/// fentry/fexit on `vfs_fallocate`: space punched, zeroed or shifted in a loop device's
/// backing file, from any caller (fallocate(2), nfsd, ksmbd).
pub const FENTRY_VFS_FALLOCATE: u32 = 30;
/// fentry/fexit on `do_truncate`: a loop device's backing file truncated, by ftruncate(2),
/// truncate(2) by path or an `O_TRUNC` open.
pub const FENTRY_DO_TRUNCATE: u32 = 31;
/// A `task_file` BPF iterator read by freezewatch itself (`watch`, at start): the freeze level
/// of each directory it holds open (the level probe, without a syscall hook).
pub const ITER_TASK_FILE: u32 = 32;
/// fentry/fexit on the mount calls' syscall functions (`__x64_sys_mount`, `move_mount`, `fsopen`,
/// `fsconfig`, `fsmount`): only those calls pay, unlike a syscall tracepoint.
pub const FENTRY_SYS_MOUNT: u32 = 33;
/// fentry/fexit on `finish_automount` outside any mount call: a mount the kernel attached itself.
pub const FENTRY_AUTOMOUNT: u32 = 34;
/// Number of hook ids (size of the per-hook hit counters).
pub const COUNT: u32 = 35;
