pub const UNKNOWN: u32 = 0;
pub const KERNEL: u32 = 1;
pub const USERSPACE: u32 = 2;
pub const MAY_NEST: u32 = 4;
pub const EXCL: u32 = 8;
