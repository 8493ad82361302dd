//! `freezewatch report TRACE`: what happened at the gate, for people or as JSON.
use std::{path::Path, time::Duration};

use freeze_model::{correlate, report};

use super::{
    args::{load_report, print_json},
    exit::{Exit, Outcome},
};

pub fn command(trace: &Path, json: bool, all: bool, long_freeze: Duration) -> Outcome {
    let streamed = load_report(trace, &correlate::Options::with_long_freeze(long_freeze), None)?;
    if json {
        print_json(&streamed.report)?;
    } else {
        print!("{}", report::human(&streamed.report, streamed.header.as_ref(), all));
    }
    Ok(Exit::Ok)
}
