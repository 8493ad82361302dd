//! `freezewatch run -- CMD`: record while CMD runs, then judge the trace as `check` would.
use std::path::PathBuf;

use freeze_model::deny::DenyMode;

use super::{
    args::{AssertArgs, load_report, runtime},
    check::judge,
    exit::{Exit, Failure, Outcome},
};
use crate::record;

pub fn command(
    args: &AssertArgs,
    out: Option<PathBuf>,
    propagate_exit: bool,
    deny_mounts: Option<DenyMode>,
    command: Vec<String>,
) -> Outcome {
    // Bad assertions are found before anything is attached or run.
    let list = args.collect().map_err(Failure::input)?;
    let tmp;
    let path = match out {
        Some(p) => p,
        None => {
            let file = tempfile::Builder::new()
                .prefix("freezewatch-")
                .suffix(".ndjson")
                .tempfile()
                .map_err(|e| Failure::failed(format!("cannot create a temporary trace file: {e}")))?;
            tmp = file.into_temp_path();
            tmp.to_path_buf()
        }
    };
    let opts = record::Options {
        out: record::TraceOut::File(path.clone()),
        duration: None,
        long_freeze: args.long_freeze,
        command: command.clone(),
        tap: None,
        stop: None,
        quiet: false,
        deny_mounts,
        queue: crate::queue::Queue::new(crate::queue::DEFAULT_BYTES),
        probe_levels: false,
    };
    let outcome = runtime()?.block_on(record::record(opts))?;
    // Judge the trace as written, exactly as `check` would; it was just written by us, so an
    // unreadable one is a failure of this run, not the user's input.
    let opts = freeze_model::correlate::Options::with_long_freeze(args.long_freeze);
    let kinds = AssertArgs::finding_kinds(&list);
    let streamed = load_report(&path, &opts, Some(&kinds)).map_err(|f| Failure::failed(f.message))?;
    let verdict = judge(&streamed, &list, args, &command.join(" "))?;
    Ok(match outcome.command_exit {
        Some(c) if c != 0 && propagate_exit => Exit::Command(u8::try_from(c).unwrap_or(1)),
        _ => verdict,
    })
}
