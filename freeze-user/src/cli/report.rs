//! `freezewatch report TRACE`: what happened at the gate, for people or as JSON.
use std::{path::Path, time::Duration};

use freeze_model::{correlate, report};

use super::{
    args::{load_trace, print_json},
    exit::{Exit, Outcome},
};

pub fn command(trace: &Path, json: bool, all: bool, long_freeze: Duration) -> Outcome {
    let contents = load_trace(trace)?;
    let rep = report::build(&contents, &correlate::Options::with_long_freeze(long_freeze));
    if json {
        print_json(&rep)?;
    } else {
        print!("{}", report::human(&rep, contents.header.as_ref(), all));
    }
    Ok(Exit::Ok)
}
