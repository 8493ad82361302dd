//! `freezewatch report TRACE`: what happened at the gate, for people or as JSON.
use std::{path::Path, time::Duration};

use freeze_model::{correlate, report};

use super::{
    args::{load_report, print_json},
    exit::{Exit, Outcome},
    export::{View, write_atomically},
};

pub fn command(trace: &Path, json: bool, all: bool, long_freeze: Duration, html: Option<&Path>) -> Outcome {
    let opts = correlate::Options::with_long_freeze(long_freeze);
    if let Some(dest) = html {
        // Written first and whole: a malformed trace leaves no page behind (and prints no report).
        write_atomically(dest, |w| View::Html.write(trace, w, &opts))?;
        eprintln!("freezewatch: wrote {}", dest.display());
        if trace.as_os_str() == "-" {
            // The page read stdin to its end: there is nothing left for the text report.
            return Ok(Exit::Ok);
        }
    }
    let streamed = load_report(trace, &opts, None)?;
    if json {
        print_json(&streamed.report)?;
    } else {
        print!("{}", report::human(&streamed.report, streamed.header.as_ref(), all));
    }
    Ok(Exit::Ok)
}
