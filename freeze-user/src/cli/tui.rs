//! `freezewatch tui`: live (attaching like `record`) or replaying a trace.
use std::{path::PathBuf, time::Duration};

use freeze_model::{correlate, deny::DenyMode};

use super::exit::{Exit, Outcome};
use crate::tui::run::{LiveOptions, live, replay};

pub fn command(
    replay_from: Option<PathBuf>,
    speed: f64,
    out: Option<PathBuf>,
    long_freeze: Duration,
    event_log: usize,
    deny_mounts: Option<DenyMode>,
) -> Outcome {
    match replay_from {
        Some(path) => replay(path, speed, correlate::Options::with_long_freeze(long_freeze), event_log)?,
        None => live(LiveOptions { out, long_freeze, event_log, deny_mounts })?,
    }
    Ok(Exit::Ok)
}
