/// A bind mount: the source is a path, not a device.
pub const MS_BIND: u64 = 4096;
/// A remount changes flags of an existing mount; it exposes nothing new.
pub const MS_REMOUNT: u64 = 32;
/// A move: the source is an existing mount point, given as a path.
pub const MS_MOVE: u64 = 8192;
