/// The ring buffer was full: an event was dropped (this is the loss count).
pub const RINGBUF_FULL: u32 = 0;
/// A kernel read failed while building an event (the event was still sent, with blanks).
pub const READ_FAILED: u32 = 1;
/// FIFREEZE/FITHAW ioctls seen by the tracepoint hook.
pub const IOCTL_SEEN: u32 = 2;
/// freeze_super/thaw_super calls seen by the fentry hook.
pub const FENTRY_SEEN: u32 = 3;
/// A begin whose pending slot could not be stored (the end will lack its begin).
pub const PENDING_FULL: u32 = 4;
/// Block writes and lock contentions that cost only a map lookup (not a watched object).
pub const FILTERED: u32 = 5;
/// A superblock could not be added to the watch maps (maps full).
pub const WATCH_FULL: u32 = 6;
pub const COUNT: u32 = 8;
