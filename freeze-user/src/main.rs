//! The `freezewatch` command line.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use freezewatch::{doctor, loader::LoadError, record, units::parse_duration};

/// Exit code when the tracer itself could not run (no privileges, no BTF, programs refused).
const EXIT_TRACER: u8 = 3;

#[derive(Parser)]
#[command(
    name = "freezewatch",
    version,
    about = "Watch the Linux filesystem freeze gate with eBPF",
    long_about = "Watch the Linux filesystem freeze gate with eBPF.\n\n\
        Freezing a filesystem (fsfreeze, xfs_freeze, FIFREEZE, device-mapper, suspend) is how backup \
        and snapshot tools get a consistent image. freezewatch records every freeze and thaw, with \
        the task, the superblock and the freeze level before and after.\n\n\
        Start with `freezewatch doctor` to see what this kernel allows, then `freezewatch record`.",
    after_help = "Examples:\n  \
        freezewatch doctor\n  \
        freezewatch record --out trace.ndjson -- sh -c 'fsfreeze -f /mnt/data; fsfreeze -u /mnt/data'\n  \
        freezewatch record --duration 30s > trace.ndjson\n\n\
        Exit codes: 0 success, 1 failure, 2 usage error, 3 the tracer could not run.\n\
        Set RUST_LOG=debug for loader details."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Report the kernel, what program types it accepts, and which hook each feature uses.
    #[command(long_about = "Report the kernel version, BTF, privileges, tracefs, active LSMs, which BPF \
            program types this kernel accepts (probed by loading a trivial program of each type), \
            the struct offsets resolved from BTF, and which hook each freezewatch feature attached \
            in a real load.\n\nExits 0 when `freezewatch record` can run here, 1 otherwise.")]
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record freeze events as NDJSON until CMD exits, DURATION passes, or Ctrl-C.
    #[command(
        long_about = "Attach to the kernel and record freeze and thaw events as NDJSON: one JSON \
            object per line (schema: docs/trace-format.md), a header first, a footer with counters \
            (including lost events) last.\n\n\
            With `-- CMD ARGS...`, CMD is started once the hooks are attached and recording stops \
            when it exits; its stdout goes to stderr when the trace is written to stdout. Without \
            CMD, recording runs until --duration passes or Ctrl-C/SIGTERM.\n\n\
            Exits 0 when the recording was written (whatever CMD returned; the footer holds CMD's \
            exit code), 3 when the tracer could not run.",
        after_help = "Example:\n  freezewatch record --out t.ndjson -- sh -c 'fsfreeze -f /mnt/x; fsfreeze -u /mnt/x'"
    )]
    Record {
        /// Write the trace to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Stop after this long (e.g. 500ms, 30s, 5m).
        #[arg(long, short, value_name = "D", value_parser = parse_duration_arg)]
        duration: Option<Duration>,
        /// Command to run while recording (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn tracer_failed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<LoadError>().is_some())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Doctor { json } => {
            let report = doctor::run();
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("freezewatch: cannot serialise the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.human());
            }
            if report.can_record { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Cmd::Record { out, duration, command } => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("freezewatch: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(record::record(record::Options { out, duration, command })) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("freezewatch: {e:#}");
                    if tracer_failed(&e) { ExitCode::from(EXIT_TRACER) } else { ExitCode::FAILURE }
                }
            }
        }
    }
}
