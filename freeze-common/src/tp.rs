//! Tracepoint record fields, written once: the eBPF programs read each field at its offset, and
//! the loader checks every field a program reads against the kernel's tracefs format file before
//! attaching (a mismatch refuses the hook instead of reading garbage).

/// One field of a tracepoint record, as tracefs names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpField {
    pub name: &'static str,
    pub offset: usize,
    /// Bytes the program reads (of an array field, a prefix may be read).
    pub size: usize,
}

const fn field(name: &'static str, offset: usize, size: usize) -> TpField {
    TpField { name, offset, size }
}

/// `syscalls:sys_enter_*` / `sys_exit_*`: arguments in 8-byte slots from offset 16, stable since
/// syscall tracepoints exist.
pub mod sys {
    use super::{TpField, field};
    /// Every `sys_exit_*`: the return value.
    pub const RET: TpField = field("ret", 16, 8);
    /// ioctl, write, pwrite64, writev, pwritev, pwritev2: the file descriptor.
    pub const FD: TpField = field("fd", 16, 8);
    pub const IOCTL_CMD: TpField = field("cmd", 24, 8);
    pub const MOUNT_DEV_NAME: TpField = field("dev_name", 16, 8);
    pub const MOUNT_DIR_NAME: TpField = field("dir_name", 24, 8);
    pub const MOUNT_TYPE: TpField = field("type", 32, 8);
    pub const MOUNT_FLAGS: TpField = field("flags", 40, 8);
    pub const MOVE_MOUNT_FROM_DFD: TpField = field("from_dfd", 16, 8);
    pub const MOVE_MOUNT_FROM_PATHNAME: TpField = field("from_pathname", 24, 8);
    pub const MOVE_MOUNT_TO_PATHNAME: TpField = field("to_pathname", 40, 8);
    pub const MOVE_MOUNT_FLAGS: TpField = field("flags", 48, 8);
    pub const FSOPEN_FS_NAME: TpField = field("_fs_name", 16, 8);
    pub const FSCONFIG_CMD: TpField = field("cmd", 24, 8);
    pub const FSCONFIG_KEY: TpField = field("_key", 32, 8);
    pub const FSCONFIG_VALUE: TpField = field("_value", 40, 8);
    pub const FSMOUNT_FLAGS: TpField = field("flags", 24, 8);
    /// pwrite64: the file position written at.
    pub const PWRITE_POS: TpField = field("pos", 40, 8);
    /// pwritev, pwritev2: the low half of the position (all of it on 64-bit).
    pub const PWRITEV_POS: TpField = field("pos_l", 40, 8);
    pub const FALLOCATE_MODE: TpField = field("mode", 24, 8);
    pub const FALLOCATE_OFFSET: TpField = field("offset", 32, 8);
    pub const FALLOCATE_LEN: TpField = field("len", 40, 8);
    pub const FTRUNCATE_LENGTH: TpField = field("length", 24, 8);

    pub const IOCTL_ENTER: &[TpField] = &[FD, IOCTL_CMD];
    pub const EXIT: &[TpField] = &[RET];
    pub const WRITE_ENTER: &[TpField] = &[FD];
    pub const PWRITE_ENTER: &[TpField] = &[FD, PWRITE_POS];
    pub const PWRITEV_ENTER: &[TpField] = &[FD, PWRITEV_POS];
    pub const FALLOCATE_ENTER: &[TpField] = &[FD, FALLOCATE_MODE, FALLOCATE_OFFSET, FALLOCATE_LEN];
    pub const FTRUNCATE_ENTER: &[TpField] = &[FD, FTRUNCATE_LENGTH];
    pub const MOUNT_ENTER: &[TpField] = &[MOUNT_DEV_NAME, MOUNT_DIR_NAME, MOUNT_TYPE, MOUNT_FLAGS];
    pub const MOVE_MOUNT_ENTER: &[TpField] =
        &[MOVE_MOUNT_FROM_DFD, MOVE_MOUNT_FROM_PATHNAME, MOVE_MOUNT_TO_PATHNAME, MOVE_MOUNT_FLAGS];
    pub const FSOPEN_ENTER: &[TpField] = &[FSOPEN_FS_NAME];
    pub const FSCONFIG_ENTER: &[TpField] = &[FSCONFIG_CMD, FSCONFIG_KEY, FSCONFIG_VALUE];
    pub const FSMOUNT_ENTER: &[TpField] = &[FSMOUNT_FLAGS];

    /// Which syscall argument a `sys_enter_*` record's field holds: the record is the common
    /// header and the syscall number (16 bytes), then each argument as 8 bytes.
    pub const fn arg_index(field: TpField) -> usize {
        (field.offset - 16) / 8
    }
}

/// `block:block_bio_queue`. `rwbs` is char[8] up to 6.12 and char[10] on 6.18; the first 8 bytes
/// are read (the W comes first, or after F for a flush).
pub mod block_bio_queue {
    use super::{TpField, field};
    pub const DEV: TpField = field("dev", 8, 4);
    pub const SECTOR: TpField = field("sector", 16, 8);
    pub const NR_SECTOR: TpField = field("nr_sector", 24, 4);
    pub const RWBS: TpField = field("rwbs", 28, 8);
    pub const FIELDS: &[TpField] = &[DEV, SECTOR, NR_SECTOR, RWBS];
}

/// `lock:contention_begin` / `contention_end`.
pub mod lock {
    use super::{TpField, field};
    pub const ADDR: TpField = field("lock_addr", 8, 8);
    /// contention_begin only.
    pub const FLAGS: TpField = field("flags", 16, 4);
    /// contention_end only.
    pub const RET: TpField = field("ret", 16, 4);
    pub const BEGIN: &[TpField] = &[ADDR, FLAGS];
    pub const END: &[TpField] = &[ADDR, RET];
}

/// `ext4:ext4_journal_start_sb`, `ext4_journal_start_inode` (6.5+), `ext4_journal_start` (before).
pub mod ext4 {
    use super::{TpField, field};
    pub const SB_DEV: TpField = field("dev", 8, 4);
    pub const SB_IP: TpField = field("ip", 16, 8);
    pub const SB_TYPE: TpField = field("type", 36, 4);
    pub const INODE_DEV: TpField = field("dev", 16, 4);
    pub const INODE_IP: TpField = field("ip", 24, 8);
    pub const INODE_TYPE: TpField = field("type", 44, 4);
    pub const START_DEV: TpField = field("dev", 8, 4);
    pub const START_IP: TpField = field("ip", 16, 8);
    pub const JOURNAL_START_SB: &[TpField] = &[SB_DEV, SB_IP, SB_TYPE];
    pub const JOURNAL_START_INODE: &[TpField] = &[INODE_DEV, INODE_IP, INODE_TYPE];
    pub const JOURNAL_START: &[TpField] = &[START_DEV, START_IP];
}

/// `xfs:xfs_trans_alloc`.
pub mod xfs {
    use super::{TpField, field};
    pub const DEV: TpField = field("dev", 8, 4);
    pub const FLAGS: TpField = field("flags", 16, 4);
    pub const CALLER_IP: TpField = field("caller_ip", 24, 8);
    pub const TRANS_ALLOC: &[TpField] = &[DEV, FLAGS, CALLER_IP];
}

/// `btrfs:btrfs_transaction_commit`, `btrfs_space_reservation` (`type` is a `__data_loc`: the
/// string's offset in the low 16 bits).
pub mod btrfs {
    use super::{TpField, field};
    pub const FSID: TpField = field("fsid", 8, 16);
    pub const RSV_TYPE: TpField = field("type", 24, 4);
    pub const RSV_BYTES: TpField = field("bytes", 40, 8);
    pub const RSV_RESERVE: TpField = field("reserve", 48, 4);
    pub const TRANSACTION_COMMIT: &[TpField] = &[FSID];
    pub const SPACE_RESERVATION: &[TpField] = &[FSID, RSV_TYPE, RSV_BYTES, RSV_RESERVE];
}
