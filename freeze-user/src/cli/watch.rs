//! `freezewatch watch`: the always-on service (see `crate::service`).
use std::{path::PathBuf, time::Duration};

use freeze_model::oversight::{ThawMode, WatchOptions};

use super::{
    args::{DenyArg, parse_duration_arg, parse_size_arg},
    exit::{Exit, Outcome},
};
use crate::service;

/// `--thaw-orphans[=MODE]` as clap parses it.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ThawArg {
    /// Only say what would be thawed (`watchdog-would-thaw`).
    Audit,
    /// Thaw it (FITHAW on its mount point) and say so (`thawed-by-watchdog`).
    Enforce,
}

#[derive(clap::Args)]
pub struct Args {
    /// Append findings to FILE instead of writing them to stdout.
    #[arg(long, value_name = "FILE")]
    findings: Option<PathBuf>,
    /// Raise `freeze-stalled` when a freeze call has not returned after this long.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = parse_duration_arg)]
    alert_stalled: Duration,
    /// Raise `frozen-too-long` once a freeze lasts this long.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration_arg)]
    alert_frozen: Duration,
    /// While it lasts, raise it again this often.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = parse_duration_arg)]
    alert_every: Duration,
    /// Thaw (enforce, the default) or say it would thaw (audit) a filesystem whose freezer is
    /// gone, once --orphan-grace has passed.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "enforce")]
    thaw_orphans: Option<ThawArg>,
    /// How long a freeze whose owner is gone is left before the watchdog acts.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = parse_duration_arg)]
    orphan_grace: Duration,
    /// Thaw any user-space freeze older than this, whoever holds it (audit with
    /// --thaw-orphans=audit).
    #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
    thaw_after: Option<Duration>,
    /// Also keep the full trace in DIR, as files of at most --trace-size, the oldest removed beyond
    /// --trace-keep (each file starts with the trace header: `report` reads any one of them).
    /// Instances sharing DIR never remove each other's files while they run (each holds a lock
    /// file there); the files of runs that ended count towards --trace-keep and go first.
    #[arg(long, value_name = "DIR")]
    trace_dir: Option<PathBuf>,
    /// The size at which a trace file in --trace-dir is closed and a new one begun.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size_arg, requires = "trace_dir")]
    trace_size: u64,
    /// How many trace files --trace-dir keeps.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..), requires = "trace_dir")]
    trace_keep: u16,
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9815) at /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// TLS and basic auth for --metrics, from a web config file in the format Prometheus
    /// exporters share (tls_server_config: cert_file, key_file; basic_auth_users: user: bcrypt
    /// hash), as node_exporter reads it.
    #[arg(long = "web.config.file", value_name = "FILE", requires = "metrics")]
    web_config: Option<PathBuf>,
    /// Flag freezes longer than this as `long-freeze` (as `record` does).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration_arg)]
    long_freeze: Duration,
    /// Memory for findings and trace lines waiting for an output that cannot take them (on a
    /// frozen filesystem): watch never waits for its outputs. When it is full the oldest trace
    /// lines are dropped first, then the oldest findings, counted in
    /// freezewatch_output_dropped_total and reported once the output works again.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size_arg)]
    queue_size: u64,
    #[command(flatten)]
    deny_mounts: DenyArg,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub fn command(a: Args) -> Outcome {
    let opts = service::Options {
        findings: a.findings,
        trace_dir: a.trace_dir.map(|dir| (dir, a.trace_size, usize::from(a.trace_keep))),
        watch: WatchOptions {
            alert_stalled_ns: ns(a.alert_stalled),
            alert_frozen_ns: ns(a.alert_frozen),
            alert_every_ns: ns(a.alert_every),
            thaw_orphans: a.thaw_orphans.map(|m| match m {
                ThawArg::Audit => ThawMode::Audit,
                ThawArg::Enforce => ThawMode::Enforce,
            }),
            orphan_grace_ns: ns(a.orphan_grace),
            thaw_after_ns: a.thaw_after.map(ns),
        },
        long_freeze: a.long_freeze,
        metrics: a.metrics,
        deny_mounts: a.deny_mounts.mode(),
        queue_bytes: usize::try_from(a.queue_size).unwrap_or(usize::MAX),
        web_config: a.web_config,
    };
    service::run(opts)?;
    Ok(Exit::Ok)
}
