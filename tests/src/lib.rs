//! Fixtures for freezewatch's kernel tests: loop-image filesystems that clean up after themselves,
//! and a runner for the `freezewatch` binary.
//!
//! Safety rules these fixtures enforce: only filesystems they created on a loop image in a temp
//! dir are ever frozen; every `LoopFs` thaws, unmounts and detaches in `Drop` (so also on panic);
//! nothing here waits synchronously for a process that may be blocked on a frozen filesystem.
mod http;
mod kernel;
mod layers;
mod loopfs;
mod mounts;
mod runner;
mod sandbox;
mod watcher;

pub use http::*;
pub use kernel::*;
pub use layers::*;
pub use loopfs::*;
pub use mounts::*;
pub use runner::*;
pub use sandbox::*;
pub use watcher::*;
