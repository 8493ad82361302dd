/// Not denying (the LSM programs are not loaded).
pub const OFF: u32 = 0;
/// Let the mount proceed, record that it would have been denied.
pub const AUDIT: u32 = 1;
/// Refuse the mount with EPERM.
pub const ENFORCE: u32 = 2;
