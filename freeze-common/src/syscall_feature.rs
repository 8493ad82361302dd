/// FIFREEZE/FITHAW ioctls (feature `freeze`).
pub const FREEZE: u32 = 1;
/// The mount calls (feature `mounts`).
pub const MOUNTS: u32 = 1 << 1;
/// fallocate and ftruncate (feature `backing-files`).
pub const BACKING: u32 = 1 << 2;
/// The level probe: FIGETBSZ ioctls of `PROBE_TGID`.
pub const LEVEL_PROBE: u32 = 1 << 3;
