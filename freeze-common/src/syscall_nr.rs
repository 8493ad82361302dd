pub const IOCTL: u64 = 16;
pub const FTRUNCATE: u64 = 77;
pub const MOUNT: u64 = 165;
pub const FALLOCATE: u64 = 285;
pub const MOVE_MOUNT: u64 = 429;
pub const FSOPEN: u64 = 430;
pub const FSCONFIG: u64 = 431;
pub const FSMOUNT: u64 = 432;
