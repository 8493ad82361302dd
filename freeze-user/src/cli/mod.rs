//! The `freezewatch` command line: the clap definitions here, one handler per command in its own
//! file, options they share in `args`, and the exit-code policy in `exit`.
mod args;
mod check;
pub mod doctor;
mod exit;
mod export;
mod manuals;
mod record;
mod report;
mod run;
mod tui;
mod watch;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use args::{AssertArgs, CHECK_HELP, DenyArg, RUN_HELP, parse_duration_arg, parse_event_log};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "freezewatch",
    version,
    about = "Watch the Linux filesystem freeze gate with eBPF",
    long_about = "Watch the Linux filesystem freeze gate with eBPF.\n\n\
        Freezing a filesystem (fsfreeze, xfs_freeze, FIFREEZE, device-mapper, suspend) is how backup \
                and snapshot tools get a consistent image. freezewatch records every freeze and thaw, and \
        everything that reaches a frozen filesystem: writes, discards and zero-outs of its block \
        device and of the layers under it (partitions, device-mapper, md, a loop device's backing \
        file), transaction starts, completed writes, writers held at the gate, mounts that land on \
        it. It flags what slipped \
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
        /// Replay speed, as a multiple of real time.
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
    /// Correlate a recorded trace: per-filesystem summary and findings (slips, failed freezes, ...).
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
            \x20 layer-io            a kernel thread wrote a device under a frozen filesystem that is watched \
            whole (md resync, a snapshot's copy-out): a warning, not a slip\n\
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
        /// Also write a self-contained HTML page to FILE: a timeline per filesystem, the
        /// findings with who and the stack, the summary and the hooks (opens offline).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Watch every filesystem all the time: live findings, alerts while a freeze lasts, a
    /// watchdog, Prometheus metrics.
    #[command(
        long_about = "Run until SIGTERM or SIGINT, attached like `record` but keeping no trace, and \
            write every finding as soon as it is certain, one NDJSON line each (the trace's finding \
            schema, docs/trace-format.md), to stdout or --findings FILE (appended), for journald, \
            Vector or Fluent Bit. While a freeze lasts it also raises:\n\n\
            \x20 frozen-too-long      frozen past --alert-frozen, then again every --alert-every\n\
            \x20 freezer-gone         the freeze's owner exited and it is still frozen (the owner is \
            the task that made the freeze call while it runs, else the process that started it: the \
            script around `fsfreeze -f`)\n\
            \x20 thawed-by-watchdog   --thaw-orphans=enforce thawed an orphaned freeze after \
            --orphan-grace, or --thaw-after one older than that\n\
            \x20 watchdog-would-thaw  the same in audit mode (nothing is thawed)\n\
            \x20 thaw-blocked         the task that froze a filesystem waits at its own gate\n\
            \x20 freeze-stalled       a freeze call has not returned after --alert-stalled (with \
            the level it is at and the writers waiting at its gate)\n\
            \x20 frozen-at-start      a filesystem was already frozen when watch started (found \
            with a harmless FIGETBSZ ioctl, never by freezing); the watchdog leaves it alone\n\n\
            The watchdog never thaws a freeze the kernel holds (device-mapper suspend). SIGHUP \
            reopens the findings file (for logrotate). --trace-dir keeps the full trace as files \
            rotated by size and count.\n\n\
            --metrics ADDR serves Prometheus metrics at http://ADDR/metrics: per filesystem \
            (device, fstype, mountpoint) the freeze level, seconds frozen so far, freezes and \
            their durations, slips by path, blocked writers and their waits, mounts while \
            frozen, denied mounts, watchdog thaws; and events, lost events, hook hits, the hook \
            each feature uses, the build.",
        after_help = "Examples:\n  sudo freezewatch watch --metrics 127.0.0.1:9815 --findings /var/log/freezewatch.ndjson\n  \
            sudo freezewatch watch --alert-frozen 30s --thaw-orphans=audit"
    )]
    Watch(watch::Args),
    /// Convert a trace for a timeline viewer: chrome-trace (Perfetto, chrome://tracing).
    #[command(
        long_about = "Convert a recorded trace to the Trace Event JSON that Perfetto \
            (ui.perfetto.dev, offline too) and chrome://tracing open. Each filesystem is a \
            process named by its device and mount point. On it: every freeze as a slice from \
            the moment it completed to its thaw (nested or overlapping freezes apart, each with \
            its holder), the drain before it (`freezing`), every wait at the gate as a slice on \
            the waiting task's thread, slips, mounts while frozen, denied mounts and failed \
            freezes as instant events with their message and stack, and the freeze level and \
            blocked writers as counters. Timestamps are microseconds of the trace's clock.\n\n\
            Needs no privileges. Exits 0 when the export was written, 2 when the trace is \
            malformed (the message names the line), 1 when the output could not be written.",
        after_help = "Examples:\n  freezewatch export --format chrome-trace trace.ndjson -o trace.json\n  \
            freezewatch record -- ./backup.sh | freezewatch export --format chrome-trace - > backup.json"
    )]
    Export {
        /// The trace file (NDJSON from `freezewatch record`); `-` for stdin.
        trace: PathBuf,
        /// What to write.
        #[arg(long, value_enum, default_value = "chrome-trace")]
        format: export::Format,
        /// Write to FILE instead of stdout (replaced only once the export is complete).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a manual page (roff), or write every page to a directory.
    #[command(
        long_about = "Print freezewatch's manual page, or a subcommand's, as roff on stdout; with \
            --out-dir, write freezewatch.1 and freezewatch-COMMAND.1 for every command there \
            (one path per line). The pages are made from the same definitions as --help.",
        after_help = "Examples:\n  freezewatch man report | man -l -\n  \
            freezewatch man --out-dir /usr/local/share/man/man1"
    )]
    Man {
        /// The command whose page to print (e.g. `record`); none: freezewatch(1).
        #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
        page: Option<String>,
        /// Write every page to DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        long_about = "Print the completion script for SHELL on stdout. The Debian package installs \
            the bash, zsh and fish scripts where those shells look for them.",
        after_help = "Examples:\n  source <(freezewatch completions bash)\n  \
            freezewatch completions fish > ~/.config/fish/completions/freezewatch.fish\n  \
            freezewatch completions zsh > \"${fpath[1]}/_freezewatch\""
    )]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

pub fn main() -> ExitCode {
    // Die quietly when the reader of our stdout goes away (`freezewatch report t | head`), as
    // Unix tools do, instead of panicking on a failed print.
    // SAFETY: resetting a signal disposition to its default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // The log goes where freezewatch's own lines go (`say`: through watch's queue while it runs).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Pipe(Box::new(crate::say::LogTarget::new())))
        .init();
    let outcome = match Cli::parse().command {
        Cmd::Doctor { json } => doctor::command(json),
        Cmd::Record { out, duration, long_freeze, deny_mounts, command } => {
            record::command(out, duration, long_freeze, deny_mounts.mode(), command)
        }
        Cmd::Run { args, out, propagate_exit, deny_mounts, command } => {
            run::command(&args, out, propagate_exit, deny_mounts.mode(), command)
        }
        Cmd::Tui { replay, speed, out, long_freeze, event_log, deny_mounts } => {
            tui::command(replay, speed, out, long_freeze, event_log, deny_mounts.mode())
        }
        Cmd::Check { trace, args } => check::command(&trace, &args),
        Cmd::Report { trace, json, all, long_freeze, html } => {
            report::command(&trace, json, all, long_freeze, html.as_deref())
        }
        Cmd::Watch(args) => watch::command(args),
        Cmd::Export { trace, format, out } => export::command(&trace, format, out.as_deref()),
        Cmd::Man { page, out_dir } => manuals::man(page.as_deref(), out_dir.as_deref()),
        Cmd::Completions { shell } => manuals::completions(shell),
    };
    exit::finish(outcome)
}
