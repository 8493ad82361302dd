/// `REQ_OP_BITS` is 8.
pub const MASK: u32 = 0xff;
pub const READ: u32 = 0;
pub const WRITE: u32 = 1;
pub const FLUSH: u32 = 2;
pub const DISCARD: u32 = 3;
pub const SECURE_ERASE: u32 = 5;
pub const WRITE_ZEROES: u32 = 9;
