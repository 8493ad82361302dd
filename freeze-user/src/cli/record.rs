//! `freezewatch record`: the trace is written whatever the traced command returned (its status
//! is in the footer).
use std::{path::PathBuf, time::Duration};

use freeze_model::deny::DenyMode;

use super::{
    args::runtime,
    exit::{Exit, Outcome},
};
use crate::record;

pub fn command(
    out: Option<PathBuf>,
    duration: Option<Duration>,
    long_freeze: Duration,
    deny_mounts: Option<DenyMode>,
    command: Vec<String>,
) -> Outcome {
    runtime()?.block_on(record::record(record::Options {
        out: out.map_or(record::TraceOut::Stdout, record::TraceOut::File),
        duration,
        long_freeze,
        command,
        tap: None,
        stop: None,
        quiet: false,
        deny_mounts,
        queue: crate::queue::Queue::new(crate::queue::DEFAULT_BYTES),
        probe_levels: false,
    }))?;
    Ok(Exit::Ok)
}
