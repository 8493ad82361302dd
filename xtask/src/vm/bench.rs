//! `cargo xtask bench --guest KERNEL`: what recording costs on a kernel where fentry works. One
//! guest boot (xtask/vm/bench-init) runs the kernel loads untraced, under `freezewatch record` and
//! under `freezewatch watch`, interleaved round by round, each before, during and after another
//! filesystem's freeze. Under TCG absolute figures mean nothing; the ratio of a traced run to the
//! untraced run of the same round, load and state does, and its median over rounds is what is
//! kept: target/bench/results.json under `guest.<kernel>.<load>.<setup>.<state>`.
use std::{collections::BTreeMap, path::Path};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::*;
use crate::bench::median;

/// The tools the bench guest runs beside freezewatch (copied from this machine with their
/// libraries): its loads, and what makes the filesystems they run on.
const BENCH_TOOLS: &[&str] =
    &["fio", "losetup", "mount", "umount", "mkfs.ext4", "fsfreeze", "truncate", "seq"];
/// Installed for the loads (fio) on this machine first.
const BENCH_PACKAGES: &[(&str, &str)] = &[("fio", "fio")];

/// One run's figure: (round, setup, state, load) → operations per second.
type Runs = BTreeMap<(u32, String, String, String), f64>;

/// The `FW-BENCH ROUND SETUP STATE LOAD OPS` lines of a guest's log.
fn runs_in(log: &str) -> Runs {
    log.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("FW-BENCH ")?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let [round, setup, state, load, ops] = f.as_slice() else { return None };
            Some(((round.parse().ok()?, (*setup).into(), (*state).into(), (*load).into()), ops.parse().ok()?))
        })
        .collect()
}

/// One traced run's cost: (round, setup, state, load) → (tracer CPU, its programs' run time),
/// each in seconds per second of the run.
type Costs = BTreeMap<(u32, String, String, String), (f64, f64)>;

/// `USER_HZ`, the unit of `/proc/PID/stat`'s CPU times: 100 on x86 (the ABI fixes it).
const USER_HZ: f64 = 100.0;

/// The `FW-COST ROUND SETUP STATE LOAD TICKS0 NS0 TICKS1 NS1` lines of a guest's log (the
/// tracer's CPU ticks and its programs' run time before and after a run of `seconds`).
fn costs_in(log: &str, seconds: f64) -> Costs {
    log.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("FW-COST ")?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let [round, setup, state, load, t0, n0, t1, n1] = f.as_slice() else { return None };
            let num = |s: &str| s.parse::<f64>().ok();
            let cpu = (num(t1)? - num(t0)?) / USER_HZ / seconds;
            let bpf = (num(n1)? - num(n0)?) / 1e9 / seconds;
            Some(((round.parse().ok()?, (*setup).into(), (*state).into(), (*load).into()), (cpu, bpf)))
        })
        .filter(|((_, setup, ..), _)| setup != "untraced")
        .collect()
}

/// Median over rounds of each traced run's cost, per load, setup and state:
/// `{load: {setup: {state: {"tracer_cpu": share, "bpf_run_time": share}}}}`.
fn cost_medians(costs: &Costs) -> Value {
    // (load, setup, state) → (tracer CPU shares, run-time shares)
    type Shares = (Vec<f64>, Vec<f64>);
    let mut by: BTreeMap<(String, String, String), Shares> = BTreeMap::new();
    for ((_, setup, state, load), (cpu, bpf)) in costs {
        let e = by.entry((load.clone(), setup.clone(), state.clone())).or_default();
        e.0.push(*cpu);
        e.1.push(*bpf);
    }
    let mut out = json!({});
    for ((load, setup, state), (cpu, bpf)) in by {
        out[&load][&setup][&state] = json!({ "tracer_cpu": median(cpu), "bpf_run_time": median(bpf) });
    }
    out
}

/// Median over rounds of (traced / untraced in the same round, state and load), per load, setup
/// and state; and the untraced median, for scale.
fn ratios(runs: &Runs) -> Value {
    let mut by: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for ((round, setup, state, load), ops) in runs {
        let base = runs.get(&(*round, "untraced".into(), state.clone(), load.clone()));
        let Some(base) = base.filter(|b| **b > 0.0) else { continue };
        let value = if setup == "untraced" { *ops } else { ops / base };
        by.entry((load.clone(), setup.clone(), state.clone())).or_default().push(value);
    }
    let mut out = serde_json::Map::new();
    for ((load, setup, state), values) in by {
        let load = out.entry(load).or_insert_with(|| json!({}));
        let setup_key = if setup == "untraced" { "untraced_ops_per_s".to_owned() } else { setup };
        load[&setup_key][&state] = json!(median(values));
    }
    Value::Object(out)
}

/// The initramfs of the bench guest: freezewatch, fw-load, the tools, the kernel's modules and
/// bench-init as PID 1.
fn bench_initramfs(kernel_dir: &Path, freezewatch: &Path, fw_load: &Path, out: &Path) -> Result<()> {
    build_initramfs(kernel_dir, freezewatch, BENCH_TOOLS, "bench-init", out, |stage| {
        copy_with_libs_to(fw_load, stage, "usr/sbin/fw-load")
    })
}

/// What a guest bench runs: `loads` empty for all of them; `bpf_stats` has the kernel time every
/// program run (which costs each run two clock reads: for finding where the cost is, not for the
/// ratios).
pub struct GuestBench<'a> {
    pub rounds: u32,
    pub seconds: f64,
    pub loads: &'a [String],
    pub bpf_stats: bool,
}

/// The loads bench-init knows (its `run_load`).
const LOADS: &[&str] = &["fio-1k-buffered", "fio-4k-direct", "create-unlink", "getppid", "mount-umount"];

impl GuestBench<'_> {
    /// The guest's kernel command line parameters (read by bench-init).
    fn cmdline(&self) -> Result<String> {
        let mut line = format!("fw_rounds={} fw_seconds={}", self.rounds, self.seconds);
        if let Some(unknown) = self.loads.iter().find(|l| !LOADS.contains(&l.as_str())) {
            anyhow::bail!("unknown load {unknown:?}: the guest bench runs {}", LOADS.join(", "));
        }
        if !self.loads.is_empty() {
            line += &format!(" fw_loads={}", self.loads.join(","));
        }
        if self.bpf_stats {
            line += " fw_bpf_stats=1";
        }
        Ok(line)
    }
}

/// Boots each kernel of `which` with the bench, one after the other (a guest alone on the
/// machine), and writes what it measured.
pub fn bench_guest(which: &str, freezewatch: &Path, bench: &GuestBench) -> Result<()> {
    let (rounds, seconds) = (bench.rounds, bench.seconds);
    ensure!(rounds >= 1 && seconds > 0.0, "--rounds and --seconds must be positive");
    let cmdline = bench.cmdline()?;
    ensure_packages()?;
    let missing = crate::setup::absent_packages(BENCH_PACKAGES);
    if !missing.is_empty() {
        crate::setup::apt_install(&missing)?;
    }
    let fw_load = crate::bench::build_tests_bin("fw-load")?;
    let dir = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let results_path = dir.join("results.json");
    let mut results: Value = std::fs::read_to_string(&results_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    for kernel in selected(which)? {
        let name = kernel.name;
        let (kernel_dir, vmlinuz) = kernels::fetch(kernel)?;
        let initrd = root().join(format!("target/vm/bench-initrd-{name}.gz"));
        bench_initramfs(&kernel_dir, freezewatch, &fw_load, &initrd)?;
        let kvm = use_kvm(&vmlinuz);
        let log = boot_with(kernel, &vmlinuz, &initrd, kvm, &cmdline)?;
        ensure!(log.contains("FW-DONE"), "the {name} bench guest did not finish");
        if let Some(line) = log.lines().find(|l| l.contains("FW-BENCH-FAILED")) {
            anyhow::bail!("{name}: {line}");
        }
        let runs = runs_in(&log);
        ensure!(!runs.is_empty(), "the {name} guest measured nothing");
        let figures = ratios(&runs);
        let costs = cost_medians(&costs_in(&log, seconds));
        print_table(name, &figures);
        print_costs(&costs, bench.bpf_stats);
        results["guest"][name] = json!({
            "accel": if kvm { "kvm" } else { "tcg" },
            "rounds": rounds,
            "seconds_per_run": seconds,
            "bpf_stats": bench.bpf_stats,
            "loads": figures,
            "cost": costs,
        });
    }
    std::fs::write(&results_path, serde_json::to_string_pretty(&results)? + "\n")?;
    eprintln!("xtask: results in {}", results_path.display());
    Ok(())
}

fn print_table(kernel: &str, figures: &Value) {
    println!(
        "\nguest {kernel}: traced / untraced, median over rounds (before | during another fs's freeze | after)"
    );
    println!("{:<16} {:>12}  {:<26} {:<26}", "load", "untraced/s", "record", "watch");
    let Some(loads) = figures.as_object() else { return };
    let states = |v: &Value| {
        ["before", "during", "after"]
            .iter()
            .map(|s| v[*s].as_f64().map_or("-".into(), |r| format!("{r:.3}")))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for (load, v) in loads {
        println!(
            "{load:<16} {:>12.0}  {:<26} {:<26}",
            v["untraced_ops_per_s"]["before"].as_f64().unwrap_or(0.0),
            states(&v["record"]),
            states(&v["watch"])
        );
    }
}

/// The tracer's own CPU and its programs' run time, as shares of the run's wall time.
fn print_costs(costs: &Value, bpf_stats: bool) {
    let what = if bpf_stats { "tracer CPU / programs' run time" } else { "tracer CPU" };
    println!("\n{what}, share of each run's wall time, median over rounds (before | during | after)");
    let Some(loads) = costs.as_object() else { return };
    for (load, setups) in loads {
        for (setup, states) in setups.as_object().into_iter().flatten() {
            let cell = |s: &str| {
                let v = &states[s];
                let cpu = v["tracer_cpu"].as_f64().map_or("-".into(), |c| format!("{c:.3}"));
                if bpf_stats {
                    format!("{cpu}/{:.3}", v["bpf_run_time"].as_f64().unwrap_or(0.0))
                } else {
                    cpu
                }
            };
            println!("{load:<16} {setup:<7} {} | {} | {}", cell("before"), cell("during"), cell("after"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratios_are_medians_of_the_same_rounds() {
        let log = "FW-BENCH 1 untraced before getppid 100\nFW-BENCH 1 record before getppid 90\n\
                   FW-BENCH 2 untraced before getppid 200\nFW-BENCH 2 record before getppid 196\n\
                   FW-BENCH 3 untraced before getppid 100\nFW-BENCH 3 record before getppid 99\n\
                   [guest 6.12] FW-BENCH garbage\n";
        let figures = ratios(&runs_in(log));
        assert_eq!(figures["getppid"]["record"]["before"], json!(0.98));
        assert_eq!(figures["getppid"]["untraced_ops_per_s"]["before"], json!(100.0));
    }

    #[test]
    fn a_runs_cost_is_the_tracers_share_of_its_wall_time() {
        let log = "FW-COST 1 record after fio-1k-buffered 100 0 130 500000000\n\
                   FW-COST 2 record after fio-1k-buffered 130 500000000 190 500000000\n\
                   FW-COST 3 record after fio-1k-buffered 190 500000000 200 2000000000\n\
                   FW-COST 1 untraced after fio-1k-buffered 0 0 0 0\n";
        let costs = cost_medians(&costs_in(log, 2.0));
        let after = &costs["fio-1k-buffered"]["record"]["after"];
        assert_eq!(after["tracer_cpu"], json!(0.15));
        assert_eq!(after["bpf_run_time"], json!(0.25));
        assert!(costs["fio-1k-buffered"].get("untraced").is_none());
    }
}
