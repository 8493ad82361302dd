//! The `freezewatch` command line: clap definitions, one handler per command, one exit-code
//! policy.
pub mod doctor;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use freeze_model::{
    assertions::{self, Assertion},
    correlate,
    deny::DenyMode,
    report, trace,
    units::parse_duration,
    verdicts,
};

use crate::{bpf::loader::LoadError, record};

/// Exit code when the tracer itself could not run (no privileges, no BTF, programs refused).
const EXIT_TRACER: u8 = 3;

#[derive(Parser)]
#[command(
    name = "freezewatch",
    version,
    about = "Watch the Linux filesystem freeze gate with eBPF",
    long_about = "Watch the Linux filesystem freeze gate with eBPF.\n\n\
        Freezing a filesystem (fsfreeze, xfs_freeze, FIFREEZE, device-mapper, suspend) is how backup \
                and snapshot tools get a consistent image. freezewatch records every freeze and thaw, and \
        everything that reaches a frozen filesystem: writes to its block device, transaction starts, \
        completed writes, writers held at the gate, mounts that land on it. It flags what slipped \
        past the gate, with the task and the kernel stack.\n\n\
        Start with `freezewatch doctor` to see what this kernel allows; `freezewatch tui` to watch; \
        `freezewatch run --assert no-slips -- ./backup.sh` in CI.",
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
    /// Record freeze-gate events as NDJSON until CMD exits, DURATION passes, or Ctrl-C.
    #[command(
        long_about = "Attach to the kernel and record freeze-gate events as NDJSON: one JSON \
            object per line (schema: docs/trace-format.md): a header first, then events, then the \
            findings and per-filesystem summaries, and a footer with counters (including lost \
            events) last.\n\n\
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
        #[command(flatten)]
        deny_mounts: DenyArg,
        /// Command to run while recording (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Trace CMD and assert on what happened at the freeze gate; for CI (exit code, JUnit).
    #[command(
        long_about = "Attach, run CMD, detach, then evaluate every assertion on what was recorded \
            and print a verdict for each. The trace is kept with --out (otherwise it lives in a \
            temporary file), so that `freezewatch check` can re-evaluate it later with the same result.",
        after_help = RUN_HELP,
    )]
    Run {
        #[command(flatten)]
        args: AssertArgs,
        /// Keep the trace in FILE.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// When CMD exits non-zero, exit with its status (after printing the verdicts).
        #[arg(long)]
        propagate_exit: bool,
        #[command(flatten)]
        deny_mounts: DenyArg,
        /// The command to trace (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Watch freezes, blocked writers, mounts and slips live, or replay a trace.
    #[command(
        long_about = "A terminal UI over the same correlation `report` and `check` compute: \
            superblocks with their state and a live frozen-for clock, a timeline of freeze \
            windows with slips and mounts marked, findings (Enter for the task, hook, level, \
            kernel stack and the events around it), and a filterable event log.\n\n\
            Live (root): attaches like `record`; --out also writes the trace.\n\
            --replay FILE: the same screens from a recorded trace, no root, with play/pause and speed.\n\n\
            Press ? for every key; q quits and restores the terminal.",
        after_help = "Examples:\n  sudo freezewatch tui --out trace.ndjson\n  freezewatch tui --replay trace.ndjson --speed 4"
    )]
    Tui {
        /// Replay this trace instead of attaching.
        #[arg(long, value_name = "FILE", conflicts_with = "out")]
        replay: Option<PathBuf>,
        /// Replay speed (× real time).
        #[arg(long, default_value = "1", requires = "replay")]
        speed: f64,
        /// Live: also write the trace to FILE.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Flag freezes longer than this as `long-freeze`.
        #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
        long_freeze: Duration,
        /// Keep the newest N events in the event log (older ones scroll off; counts, summaries
        /// and findings stay complete).
        #[arg(long, value_name = "N", default_value_t = crate::tui::app::DEFAULT_EVENT_LOG,
              value_parser = parse_event_log)]
        event_log: usize,
        #[command(flatten)]
        deny_mounts: DenyArg,
    },
    /// Evaluate assertions on a recorded trace (no root needed).
    #[command(after_help = CHECK_HELP)]
    Check {
        /// The trace file; `-` for stdin.
        trace: PathBuf,
        #[command(flatten)]
        args: AssertArgs,
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
            \x20 mount-denied        --deny-mounts refused a mount of a frozen filesystem (audit: would have)\n\
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

/// `--deny-mounts[=MODE]`, shared by the commands that attach.
#[derive(clap::Args)]
struct DenyArg {
    /// While a filesystem is frozen, refuse new mounts of it (its device, a bind mount from it,
    /// fsmount + move_mount) with EPERM (`enforce`, the default), or let them proceed and record
    /// that they would have been denied (`audit`). Needs the BPF LSM (see `freezewatch doctor`);
    /// without it, enforce exits 3 and audit records on, flagging instead. Other mounts are never
    /// touched, and nothing is denied once freezewatch exits.
    #[arg(
        long = "deny-mounts",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "enforce"
    )]
    mode: Option<DenyModeArg>,
}

/// `DenyMode` as clap parses it (the model knows nothing of clap).
#[derive(Clone, Copy, clap::ValueEnum)]
enum DenyModeArg {
    /// Let the mount proceed and record that it would have been denied.
    Audit,
    /// Refuse the mount with EPERM.
    Enforce,
}

impl DenyArg {
    fn mode(&self) -> Option<DenyMode> {
        self.mode.map(|m| match m {
            DenyModeArg::Audit => DenyMode::Audit,
            DenyModeArg::Enforce => DenyMode::Enforce,
        })
    }
}

/// Exit code for unreadable input (a malformed trace, a bad assertion), as for usage errors.
const EXIT_INPUT: u8 = 2;

/// The assertion language, for the help of `run` and `check` (a macro: concat! wants literals).
macro_rules! assert_help {
    () => {
        "Assertions: METRIC [@SCOPE] OP VALUE\n  \
    METRIC  freezes thaws failed_freezes slips blocked_writers mounts_while_frozen denied_mounts\n          \
    would_deny_mounts lost_events left_frozen (counts); max_frozen total_frozen (durations)\n  \
    SCOPE   @/mount/point  @fs=xfs  @dev=7:0   (none: every filesystem in the trace)\n  \
    OP      == != < <= > >=\n  \
    Shorthands: no-slips, frozen @SCOPE (freezes >= 1), no-mounts-while-frozen, no-lost-events,\n  \
    not-left-frozen. An --assertions file holds one per line; # starts a comment.\n\n\
    Exit codes: 0 every assertion holds, 1 one failed, 2 bad assertion or trace (the message\n\
    names the line and column), 3 the tracer could not run."
    };
}

const RUN_HELP: &str = concat!(
    "Example:\n  freezewatch run --assert 'frozen @/mnt/data' --assert no-slips --junit report.xml -- \\\n",
    "      sh -c 'fsfreeze -f /mnt/data; take-snapshot; fsfreeze -u /mnt/data'\n\n",
    assert_help!()
);
const CHECK_HELP: &str = concat!(
    "Example:\n  freezewatch check trace.ndjson --assert no-slips --assert 'max_frozen < 2s'\n\n",
    assert_help!()
);

/// Assertion options shared by `run` and `check`.
#[derive(clap::Args)]
struct AssertArgs {
    /// An assertion (repeatable), e.g. `no-slips`, `frozen @/mnt/data`, `max_frozen < 2s`.
    #[arg(long = "assert", short = 'a', value_name = "EXPR")]
    asserts: Vec<String>,
    /// A file of assertions, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    assertions: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per assertion) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the verdicts as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Freezes longer than this count as `long-freeze` findings.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
    long_freeze: Duration,
}

impl AssertArgs {
    /// Every assertion, from --assert and --assertions; the error is ready to print.
    fn collect(&self) -> Result<Vec<Assertion>, String> {
        let mut out = Vec::new();
        for text in &self.asserts {
            out.push(assertions::parse(text).map_err(|e| format!("--assert '{text}': {e}"))?);
        }
        if let Some(path) = &self.assertions {
            let content = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            out.extend(assertions::parse_file(&content).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        if out.is_empty() {
            return Err("no assertions: give --assert EXPR or --assertions FILE (see --help)".into());
        }
        Ok(out)
    }
}

/// Evaluates, prints and writes JUnit; returns the exit code (0 all hold, 1 some failed).
fn judge(contents: &trace::Contents, list: &[Assertion], args: &AssertArgs, suite: &str) -> ExitCode {
    let opts = correlate::Options::with_long_freeze(args.long_freeze);
    let (verdicts, rep) = verdicts::evaluate(contents, list, &opts);
    let command_exit = contents.footer.as_ref().and_then(|f| f.command_exit);
    let passed = verdicts.iter().all(|v| v.passed);
    if args.json {
        let summary = verdicts::Summary {
            passed,
            verdicts: &verdicts,
            lost_events: rep.lost_events,
            complete: rep.complete,
            command_exit,
        };
        print_json(&summary);
    } else {
        print!("{}", verdicts::human(&verdicts, command_exit));
    }
    if let Some(path) = &args.junit {
        let seconds = contents.footer.as_ref().map_or(0.0, |f| f.duration_ms as f64 / 1e3);
        if let Err(e) = verdicts::write_junit(path, &verdicts, suite, seconds) {
            eprintln!("freezewatch: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_INPUT);
        }
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn read_trace_file(path: &std::path::Path) -> Result<trace::Contents, String> {
    let records = if path.as_os_str() == "-" {
        trace::read_trace(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        trace::read_trace(std::io::BufReader::new(file))
    };
    records.map(trace::Contents::from_records).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_event_log(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("the event log needs room for at least 1 event".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn run_command(
    args: AssertArgs,
    out: Option<PathBuf>,
    propagate_exit: bool,
    deny_mounts: Option<DenyMode>,
    command: Vec<String>,
) -> ExitCode {
    // Bad assertions are found before anything is attached or run.
    let list = match args.collect() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("freezewatch: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let tmp;
    let path = match out {
        Some(p) => p,
        None => match tempfile::Builder::new().prefix("freezewatch-").suffix(".ndjson").tempfile() {
            Ok(f) => {
                tmp = f.into_temp_path();
                tmp.to_path_buf()
            }
            Err(e) => {
                eprintln!("freezewatch: cannot create a temporary trace file: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
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
    };
    let outcome = match runtime.block_on(record::record(opts)) {
        Ok(o) => o,
        Err(e) => return failed(&e),
    };
    // Judge the trace as written, exactly as `check` would.
    let contents = match read_trace_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("freezewatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = judge(&contents, &list, &args, &command.join(" "));
    match outcome.command_exit {
        Some(c) if c != 0 && propagate_exit => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        _ => code,
    }
}

/// Prints `value` as pretty JSON on stdout; false (after saying why) when it cannot.
fn print_json(value: &impl serde::Serialize) -> bool {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            true
        }
        Err(e) => {
            eprintln!("freezewatch: cannot serialise the output as JSON: {e}");
            false
        }
    }
}

/// Reads a trace, or says what is wrong with it (naming the line) and gives the input-error code.
fn load_trace(path: &std::path::Path) -> Result<trace::Contents, ExitCode> {
    read_trace_file(path).map_err(|e| {
        eprintln!("freezewatch: {e}");
        ExitCode::from(EXIT_INPUT)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("freezewatch: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Prints a top-level error; exit 3 when the tracer itself could not run, else 1.
fn failed(e: &anyhow::Error) -> ExitCode {
    eprintln!("freezewatch: {e:#}");
    if tracer_failed(e) { ExitCode::from(EXIT_TRACER) } else { ExitCode::FAILURE }
}

fn tracer_failed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<LoadError>().is_some())
}

pub fn main() -> ExitCode {
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
                if !print_json(&report) {
                    return ExitCode::FAILURE;
                }
            } else {
                print!("{}", report.human());
            }
            if report.can_record { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Cmd::Check { trace, args } => {
            let list = match args.collect() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("freezewatch: {e}");
                    return ExitCode::from(EXIT_INPUT);
                }
            };
            let contents = match load_trace(&trace) {
                Ok(c) => c,
                Err(code) => return code,
            };
            judge(&contents, &list, &args, &trace.display().to_string())
        }
        Cmd::Tui { replay, speed, out, long_freeze, event_log, deny_mounts } => {
            let deny_mounts = deny_mounts.mode();
            let result = match replay {
                Some(path) => crate::tui::run::replay(
                    path,
                    speed,
                    correlate::Options::with_long_freeze(long_freeze),
                    event_log,
                ),
                None => crate::tui::run::live(crate::tui::run::LiveOptions {
                    out,
                    long_freeze,
                    event_log,
                    deny_mounts,
                }),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed(&e),
            }
        }
        Cmd::Run { args, out, propagate_exit, deny_mounts, command } => {
            run_command(args, out, propagate_exit, deny_mounts.mode(), command)
        }
        Cmd::Report { trace, json, all, long_freeze } => {
            let contents = match load_trace(&trace) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = correlate::Options::with_long_freeze(long_freeze);
            let rep = report::build(&contents, &opts);
            if json {
                if !print_json(&rep) {
                    return ExitCode::FAILURE;
                }
            } else {
                print!("{}", report::human(&rep, contents.header.as_ref(), all));
            }
            ExitCode::SUCCESS
        }
        Cmd::Record { out, duration, long_freeze, deny_mounts, command } => {
            let deny_mounts = deny_mounts.mode();
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(record::record(record::Options {
                out: out.map_or(record::TraceOut::Stdout, record::TraceOut::File),
                duration,
                long_freeze,
                command,
                tap: None,
                stop: None,
                quiet: false,
                deny_mounts,
            })) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => failed(&e),
            }
        }
    }
}
