const MINOR_BITS: u32 = 20;
const MINOR_MASK: u32 = (1 << MINOR_BITS) - 1;

/// `major:minor` → kernel dev_t.
pub const fn make(major: u32, minor: u32) -> u32 {
    (major << MINOR_BITS) | (minor & MINOR_MASK)
}

/// Kernel dev_t → (major, minor).
pub const fn split(dev: u32) -> (u32, u32) {
    (dev >> MINOR_BITS, dev & MINOR_MASK)
}
