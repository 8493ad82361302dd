//! The programs, one file per probe family. Each program is a `#[no_mangle]` function the loader
//! finds by name (freeze-common's `prog` names).
mod backing;
mod block;
mod dirty;
mod exit;
mod freeze;
mod gate;
mod lsm;
mod mount;
mod syscalls;
mod txn;
mod write;
