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
/// A modifying bio that no storage map judged, sent while the maps may be older than the
/// storage (see `maps_age`): `arg` = sector, `flags` = bytes, `bdev` = the block device, no
/// superblock. The recorder judges it once its maps are newer than the bio and writes it as a
/// BLOCK_WRITE if it landed on a frozen filesystem's storage; it never reaches a trace.
pub const UNMAPPED_BIO: u32 = 11;
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
