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
