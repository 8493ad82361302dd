//! The `freezewatch` command line.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use freezewatch::{correlate, doctor, loader::LoadError, record, report, trace, units::parse_duration};

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
        /// Flag freezes longer than this as `long-freeze`.
        #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
        long_freeze: Duration,
        /// Command to run while recording (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Correlate a recorded trace: per-filesystem summary and findings (slips, failed freezes, …).
    #[command(long_about = "Read a trace written by `freezewatch record` and print what happened at the \
            freeze gate: per superblock, freezes, time frozen, slips and blocked writers; then every \
            finding, oldest first:\n\n\
            \x20 slip                a write reached a frozen filesystem (e.g. straight to its block device)\n\
            \x20 freeze-failed       a freeze returned an error (EBUSY: it was already frozen)\n\
            \x20 thaw-without-freeze a thaw of a filesystem that was not frozen\n\
            \x20 left-frozen         still frozen when recording ended\n\
            \x20 long-freeze         frozen longer than --long-freeze\n\
            \x20 blocked-writer      a task waited at the gate (expected; shown with its wait)\n\
            \x20 mount-while-frozen  a mount of a frozen filesystem landed mid-snapshot\n\
            \x20 exempt              looked like a slip but is legitimate (counted by reason; --all lists them)\n\n\
            Needs no privileges. Exits 0 when the trace was read, 2 when it is malformed (the \
            message names the line).")]
    Report {
        /// The trace file (NDJSON from `freezewatch record`); `-` for stdin.
        trace: PathBuf,
        /// Print JSON (findings, summaries, lost_events, complete).
        #[arg(long)]
        json: bool,
        /// List every exempt event too (by default they are counted by reason).
        #[arg(long)]
        all: bool,
        /// Flag freezes longer than this as `long-freeze`.
        #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
        long_freeze: Duration,
    },
}

/// Exit code for unreadable input (a malformed trace), as for usage errors.
const EXIT_INPUT: u8 = 2;

fn read_trace_file(path: &std::path::Path) -> Result<trace::Contents, String> {
    let records = if path.as_os_str() == "-" {
        trace::read_trace(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        trace::read_trace(std::io::BufReader::new(file))
    };
    records.map(trace::Contents::from_records).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn tracer_failed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<LoadError>().is_some())
}

fn main() -> ExitCode {
    // Die quietly when the reader of our stdout goes away (`freezewatch report t | head`), as
    // Unix tools do, instead of panicking on a failed print.
    // SAFETY: resetting a signal disposition to its default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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
        Cmd::Report { trace, json, all, long_freeze } => {
            let contents = match read_trace_file(&trace) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("freezewatch: {e}");
                    return ExitCode::from(EXIT_INPUT);
                }
            };
            let opts = correlate::Options { long_freeze_ns: long_freeze.as_nanos() as u64 };
            let rep = report::build(&contents, &opts);
            if json {
                match serde_json::to_string_pretty(&rep) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("freezewatch: cannot serialise the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report::human(&rep, contents.header.as_ref(), all));
            }
            ExitCode::SUCCESS
        }
        Cmd::Record { out, duration, long_freeze, command } => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("freezewatch: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(record::record(record::Options { out, duration, long_freeze, command })) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("freezewatch: {e:#}");
                    if tracer_failed(&e) { ExitCode::from(EXIT_TRACER) } else { ExitCode::FAILURE }
                }
            }
        }
    }
}
