//! freezewatch: watch the Linux filesystem freeze gate with eBPF.
//!
//! Analysis modules (`btf`, `offsets`, `event`, `trace`, `mountinfo`, `units`) are pure and need
//! neither aya nor root. `loader` is the only module that touches the kernel through aya; `probe`
//! issues raw `bpf(2)` calls for `doctor`.
pub mod assertions;
pub mod btf;
pub mod btrfs_devs;
pub mod correlate;
pub mod deny;
pub mod doctor;
pub mod event;
pub mod kernel;
pub mod ksyms;
pub mod loader;
pub mod module_fexit;
pub mod mountinfo;
pub mod offsets;
pub mod probe;
pub mod record;
pub mod report;
pub mod tpformat;
pub mod trace;
pub mod tui;
pub mod units;
pub mod verdicts;
