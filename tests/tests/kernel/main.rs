//! The kernel tests: one binary, a module per topic (as aya's integration tests are), so a build
//! links once. Run as root, one test at a time: `cargo test -p freezewatch-tests -- --test-threads=1`;
//! `cargo xtask vm-test` runs it module by module in the guests.
mod attribution;
mod backing_files;
mod cli;
mod coverage;
mod deny_mounts;
mod fentry;
mod findings;
mod freeze_thaw;
mod gate;
mod hooks;
mod live_findings;
mod memory;
mod mount_hooks;
mod mounts;
mod package;
mod prometheus;
mod raw_tracepoints;
mod run_check;
mod storage_layers;
mod storage_paths;
mod storage_stacks;
mod stress;
mod syscall_hooks;
mod tui;
mod watch;
