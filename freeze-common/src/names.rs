pub const EVENTS: &str = "EVENTS";
pub const COUNTERS: &str = "COUNTERS";
pub const HOOK_HITS: &str = "HOOK_HITS";
pub const STACKS: &str = "STACKS";
pub const BDEV_ALIAS: &str = "BDEV_ALIAS";
pub const MOUNT_PATHS: &str = "MOUNT_PATHS";
pub const FROZEN_SBS: &str = "FROZEN_SBS";
pub const LOWER_EXTENTS: &str = "LOWER_EXTENTS";
pub const BACKING_FILES: &str = "BACKING_FILES";
/// Two `u32`s, the slots of `maps_age`.
pub const MAPS_AGE: &str = "MAPS_AGE";
/// Loop devices bound when user space last read the storage layers (`dev` → 1).
pub const LOOPS_MAPPED: &str = "LOOPS_MAPPED";
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
    MAPS_AGE,
    LOOPS_MAPPED,
    SYSCALL_FEATURES,
];
/// Read-only globals user space fills before load (`.rodata`).
pub const OFFSETS: &str = "OFFSETS";
pub const DENY_MODE: &str = "DENY_MODE";
/// The thread group id whose FIGETBSZ ioctls the level probe reports (freezewatch's own).
pub const PROBE_TGID: &str = "PROBE_TGID";
/// The level probe's program (attached on its own, outside the feature table).
pub const LEVEL_PROBE_PROGRAM: &str = "fw_level_probe";
/// The level probe's first choice: a `task_file` iterator program.
pub const LEVEL_ITER_PROGRAM: &str = "fw_level_iter";
