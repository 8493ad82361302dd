//! freezewatch's pure analysis: the event model and its decoding from the kernel's records, the
//! streaming correlator, the trace format, `report`, the assertion language and its verdicts.
//!
//! Nothing here touches the kernel, a terminal or a runtime (no aya, libc, tokio, clap, ratatui;
//! tests/pure.rs checks): everything is testable and usable without root, on any trace.
pub mod assertions;
pub mod attribution;
pub mod chrome_trace;
pub mod correlate;
pub mod coverage;
pub mod decode;
pub mod deny;
pub mod event;
pub mod holds;
pub mod html;
mod names;
pub mod oversight;
pub mod report;
pub mod storage;
#[cfg(test)]
pub(crate) mod test_events;
pub mod timeline;
pub mod trace;
pub mod units;
pub mod verdicts;
pub mod walk;
