//! Options several commands share (`--deny-mounts`, the assertion options), their parsers and
//! help texts, and the helpers that read a trace and print JSON.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use freeze_model::{
    assertions::{self, Assertion},
    correlate::{self, FindingKind},
    deny::DenyMode,
    report, trace,
    units::parse_duration,
};

use super::exit::Failure;

/// `--deny-mounts[=MODE]`, shared by the commands that attach.
#[derive(clap::Args)]
pub struct DenyArg {
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
    pub fn mode(&self) -> Option<DenyMode> {
        self.mode.map(|m| match m {
            DenyModeArg::Audit => DenyMode::Audit,
            DenyModeArg::Enforce => DenyMode::Enforce,
        })
    }
}

/// The assertion language, for the help of `run` and `check` (a macro: concat! wants literals).
macro_rules! assert_help {
    () => {
        "Assertions: METRIC [@SCOPE] OP VALUE\n  \
    METRIC  freezes thaws failed_freezes slips blocked_writers mounts_while_frozen denied_mounts\n          \
    would_deny_mounts lost_events left_frozen (counts); max_frozen total_frozen (durations)\n  \
    SCOPE   @/mount/point  @fs=xfs  @dev=7:0   (none: every filesystem in the trace)\n          \
    or who: @unit=backup.service  @cgroup=/system.slice (and below)  @comm=dd: counts the\n          \
    findings of those tasks (slips, failed_freezes, blocked_writers, mounts_while_frozen)\n  \
    OP      == != < <= > >=\n  \
    Shorthands: no-slips, frozen @SCOPE (freezes >= 1), no-mounts-while-frozen, no-lost-events,\n  \
    not-left-frozen. An --assertions file holds one per line; # starts a comment.\n\n\
    An assertion that needs a hook that did not attach (see the trace header or `freezewatch\n\
    doctor`) is UNPROVEN unless what was seen already decides it: slips <= 0 with one slip seen\n\
    fails whatever the missing hook would have added.\n\n\
    Exit codes: 0 every assertion holds, 1 one failed, 2 bad assertion or trace (the message\n\
    names the line and column), 3 the tracer could not run or an assertion is unproven\n\
    (--allow-partial: unproven ones are reported and do not fail the run)."
    };
}

pub const RUN_HELP: &str = concat!(
    "Example:\n  freezewatch run --assert 'frozen @/mnt/data' --assert no-slips --junit report.xml -- \\\n",
    "      sh -c 'fsfreeze -f /mnt/data; take-snapshot; fsfreeze -u /mnt/data'\n\n",
    assert_help!()
);
pub const CHECK_HELP: &str = concat!(
    "Example:\n  freezewatch check trace.ndjson --assert no-slips --assert 'max_frozen < 2s'\n\n",
    assert_help!()
);

/// Assertion options shared by `run` and `check`.
#[derive(clap::Args)]
pub struct AssertArgs {
    /// An assertion (repeatable), e.g. `no-slips`, `frozen @/mnt/data`, `max_frozen < 2s`.
    #[arg(long = "assert", short = 'a', value_name = "EXPR")]
    pub asserts: Vec<String>,
    /// A file of assertions, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub assertions: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per assertion) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the verdicts as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Accept assertions left unproven because a hook they need did not attach (they are still
    /// reported); without it such a run exits 3, as the tracer could not do its job.
    #[arg(long)]
    pub allow_partial: bool,
    /// Freezes longer than this count as `long-freeze` findings.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
    pub long_freeze: Duration,
}

impl AssertArgs {
    /// Every assertion, from --assert and --assertions; the error is ready to print.
    pub fn collect(&self) -> Result<Vec<Assertion>, String> {
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

    /// The finding kinds the assertions' verdicts can cite.
    pub fn finding_kinds(list: &[Assertion]) -> Vec<FindingKind> {
        let mut kinds: Vec<FindingKind> =
            list.iter().flat_map(|a| a.metric.finding_kinds()).copied().collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

pub fn parse_event_log(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("the event log needs room for at least 1 event".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

/// A size as people write it: `64MiB`, `512KiB`, `1GiB`, `4096` (bytes); K, M, G and KB, MB,
/// GB mean the same powers of 1024.
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 64MiB, 512KiB, 4096)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KiB" => 10,
        "M" | "MB" | "MiB" => 20,
        "G" | "GB" | "GiB" => 30,
        other => return Err(format!("`{other}` is not a size unit (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift).filter(|v| *v > 0).ok_or_else(|| format!("`{s}` is not a size above zero"))
}

pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Reads a trace (`-`: stdin), or says what is wrong with it, naming the line (exit 2).
pub fn load_trace(path: &Path) -> Result<trace::Contents, Failure> {
    let records = if path.as_os_str() == "-" {
        trace::read_trace(std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        trace::read_trace(std::io::BufReader::with_capacity(trace::READ_BUFFER, file))
    };
    records.map(trace::Contents::from_records).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// A trace's report (with its header and footer), correlated while it is read so that no events are
/// held; a file whose events are out of order beyond the streaming window, and stdin, are read
/// whole and sorted instead. Either way the result is the same.
///
/// `kinds`: the finding kinds to keep (None: all), for checks that explain only some.
pub fn load_report(
    path: &Path,
    opts: &correlate::Options,
    kinds: Option<&[FindingKind]>,
) -> Result<report::Streamed, Failure> {
    if path.as_os_str() != "-" {
        let file =
            std::fs::File::open(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        let kinds = kinds.map_or(correlate::KindSet::ALL, correlate::KindSet::of);
        let input = std::io::BufReader::with_capacity(trace::READ_BUFFER, file);
        let streamed = report::stream_keeping(input, opts, kinds)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        if let Some(s) = streamed {
            return Ok(s);
        }
    }
    let contents = load_trace(path)?;
    let report = report::build(&contents, opts);
    Ok(report::Streamed { header: contents.header, footer: contents.footer, report })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    // Written as it is serialised: a report of a long trace can hold a great many findings.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(|e| Failure::failed(format!("cannot write the output as JSON: {e}")))?;
    std::io::Write::write_all(&mut out, b"\n")
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| Failure::failed(format!("cannot write the output as JSON: {e}")))
}

/// The runtime the recorder runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}
