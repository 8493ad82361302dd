//! freezewatch: watch the Linux filesystem freeze gate with eBPF.
//!
//! The analysis (events, correlation, traces, reports, assertions) is the `freeze-model` crate.
//! This crate is the part that touches the machine, by layer:
//! - `host`: what the running kernel and system say (BTF and the offsets read from it, tracefs
//!   formats, mountinfo, kallsyms, btrfs member devices, the clock);
//! - `bpf`: loading and attaching the eBPF programs (aya, and raw `bpf(2)` where aya cannot);
//! - `record`: a recording session: the select loop, decoding and enriching events, the trace;
//! - `tui`: the terminal UI, live or replaying a trace;
//! - `service`: the always-on service of `watch` (live findings, alerts, watchdog, Prometheus metrics);
//! - `queue`: output that never makes its producer wait (a frozen output filesystem blocks only
//!   its own writer thread);
//! - `cli`: the command line, one handler per command, and the exit-code policy.
pub mod bpf;
pub mod cli;
pub mod host;
pub mod queue;
pub mod record;
pub mod say;
pub mod service;
pub mod tui;
