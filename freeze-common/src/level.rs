pub const UNFROZEN: u32 = 0;
pub const WRITE: u32 = 1;
pub const PAGEFAULT: u32 = 2;
pub const FS: u32 = 3;
pub const COMPLETE: u32 = 4;
/// The level could not be read (a failed kernel read); never a real level.
pub const UNKNOWN: u32 = u32::MAX;
