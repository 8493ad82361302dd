//! Loading the eBPF programs and attaching them: `features` is the table of what attaches where
//! (each feature a chain of attempts), `attach` the one way an attempt attaches and unloads,
//! `loader` the session that owns them; aya for the kernel's own functions, tracepoints and
//! LSM hooks, raw `bpf(2)` (`sys`) for module functions (`module_fexit`) and `doctor`'s probes.
mod attach;
pub use attach::LevelProbe;
mod features;
pub mod loader;
pub mod module_fexit;
pub mod mount_paths;
pub mod program_types;
pub mod storage_maps;
pub mod sys;

/// The eBPF object, built by build.rs (aya-build) for bpfel-unknown-none.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/freeze-ebpf"));
