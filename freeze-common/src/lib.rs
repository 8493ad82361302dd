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
pub mod names;

/// Event kinds (`RawEvent::kind`). Stable numbers.
pub mod kind;

/// Bits of `RawEvent::flags` on FREEZE_END.
pub mod freeze_flags;

/// `SIGNAL_UNKILLABLE` in `signal_struct.flags` (include/linux/sched/signal.h): set on the init
/// task of every PID namespace. Unchanged since 2.6.
pub const SIGNAL_UNKILLABLE: u32 = 0x0000_0040;

/// What the syscall dispatcher (one `tp_btf` program on `sys_enter` and one on `sys_exit`, shared
/// by every feature that watches syscalls) handles: bits of the `SYSCALL_FEATURES` map, set by
/// user space for each feature whose chain chose it. Unset, a syscall costs its number's test.
pub mod syscall_feature;

/// x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl; the ABI never renumbers).
pub mod syscall_nr;

/// x86-64 `struct pt_regs` (arch/x86/include/asm/ptrace.h): byte offsets of what a syscall
/// entered with. The verifier checks every load against the kernel's BTF, and freeze-user's
/// offsets test against the running kernel's.
pub mod pt_regs;

/// `--deny-mounts` mode, as the eBPF global `DENY_MODE` and a MOUNT_DENIED event's `flags`.
pub mod deny;

/// Which LSM hook saw a denied mount (`RawEvent::arg` of MOUNT_DENIED).
pub mod lsm_hook;

/// Which mount API a MOUNT_* event came from (`RawEvent::flags`).
pub mod mount_api;

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
pub mod mount_flags;

/// Bytes of a mount-point key in the kernel's `MOUNT_PATHS` trie (longer mount points are left
/// out, so a bind from below them is allowed: fail open).
pub const PATH_KEY_BYTES: usize = 128;

/// The kernel's internal `dev_t` encoding (`MAJOR << 20 | MINOR`), as `sb->s_dev` and
/// `bio->bi_bdev->bd_dev` hold it (not the user-space encoding `stat` returns).
pub mod kdev;

/// xfs `t_flags` bit: a transaction that does not take freeze protection (legitimate when frozen).
pub const XFS_TRANS_NO_WRITECOUNT: u32 = 0x40;

/// Which program produced an event (`RawEvent::hook`). Stable numbers.
pub mod hook;

/// What a modification did to the storage (`RawEvent::io_op` of BLOCK_WRITE). Stable numbers.
///
/// The block ops are read from `block:block_bio_queue`'s `rwbs`, which `blk_fill_rwbs()` fills
/// the same way on 6.1 through 6.18: an optional `F` (preflush), then one op letter (`W` write,
/// `D` discard, `DE` secure erase, `F` flush, `R` read, `N` any other op: write-zeroes, and the
/// zone operations of zoned devices), then flag letters (`F` FUA, `A`, `S`, `M`, ...).
pub mod io_op;

/// `enum req_op` (include/linux/blk_types.h), the low bits of a bio's `bi_opf`: the values
/// 6.1 through 6.18 share, checked against the running kernel's BTF by freeze-user's tests.
pub mod req_op;

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
pub const EXTENTS_PER_DEV: u32 = 64;

/// Slots of the `MAPS_AGE` array: whether the storage maps are older than the newest freeze.
/// A freeze that completes bumps `FREEZES` in the kernel; user space reads it before it reads
/// the storage layers and writes what it read to `MAPPED` after. While they differ, a modifying
/// bio that no map judges is sent as `kind::UNMAPPED_BIO`, for user space to judge against maps
/// read after it: a layer set up just before the freeze is judged whatever the timing.
pub mod maps_age {
    pub const FREEZES: u32 = 0;
    pub const MAPPED: u32 = 1;
    pub const SLOTS: u32 = 2;
}

/// Loop devices `LOOPS_MAPPED` holds at most: a bio to a loop device bound since the storage
/// layers were read (or beyond this many) is sent for user space to judge while something is
/// frozen, where the kernel cannot judge loop devices itself.
pub const LOOPS_MAPPED_MAX: u32 = 1024;

/// `BACKING_FILES` key: a regular file by its filesystem's `s_dev` and inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// `enum freeze_holder` bits as the kernel defines them (6.6+); 0 means unknown.
pub mod holder;

/// Values of `sb->s_writers.frozen`.
pub mod level;

/// Slots of the per-CPU `COUNTERS` array that the programs bump and user space reads.
pub mod counter;

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
    /// `block_device.bd_disk` (pointer to its `gendisk`).
    pub bdev_bd_disk: u32,
    /// `gendisk.private_data` (for a loop device: its `struct loop_device`).
    pub gendisk_private_data: u32,
    /// `loop_device.lo_offset` (loff_t), from loop's BTF (module or vmlinux); 0 when loop has none.
    pub loop_lo_offset: u32,
    /// `loop_device.lo_backing_file` (pointer); 0 when loop has no BTF.
    pub loop_lo_backing_file: u32,
    /// `dentry.d_inode` (pointer).
    pub dentry_d_inode: u32,
    /// Number of parameters of `do_truncate` (4 before 5.12, 5 since: an idmap or user
    /// namespace first); 0 where BTF has no `do_truncate`, and its programs do not attach.
    pub do_truncate_nargs: u32,
    /// Index of `do_truncate`'s `dentry` parameter (its `length` is the next one).
    pub do_truncate_dentry_arg: u32,
    /// `mount.mnt` (the `struct vfsmount` a `struct mount` embeds); 0 where BTF has no `mount`.
    pub mount_mnt: u32,
    /// `mount.mnt_id` (int: the id mountinfo shows); 0 where BTF has no `mount`.
    pub mount_mnt_id: u32,
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
            bdev_bd_disk: 0,
            gendisk_private_data: 0,
            loop_lo_offset: 0,
            loop_lo_backing_file: 0,
            dentry_d_inode: 0,
            do_truncate_nargs: 0,
            do_truncate_dentry_arg: 0,
            mount_mnt: 0,
            mount_mnt_id: 0,
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
