//! `cargo xtask bench --guest KERNEL`: what recording costs on a kernel where fentry works. One
//! guest boot (xtask/vm/bench-init) runs the kernel loads untraced, under `freezewatch record` and
//! under `freezewatch watch`, interleaved round by round, each before, during and after another
//! filesystem's freeze. Under TCG absolute figures mean nothing; the ratio of a traced run to the
//! untraced run of the same round, load and state does, and its median over rounds is what is
//! kept: target/bench/results.json under `guest.<kernel>.<load>.<setup>.<state>`.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

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

/// Builds fw-load (release) and returns its path.
fn build_fw_load() -> Result<PathBuf> {
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "--package",
        "freezewatch-tests",
        "--bin",
        "fw-load",
    ]))?;
    Ok(crate::workspace_root().join("target/release/fw-load"))
}

/// Boots each kernel of `which` with the bench, one after the other (a guest alone on the
/// machine), and writes what it measured.
pub fn bench_guest(which: &str, freezewatch: &Path, rounds: u32, seconds: f64) -> Result<()> {
    ensure!(rounds >= 1 && seconds > 0.0, "--rounds and --seconds must be positive");
    ensure_packages()?;
    let missing = crate::setup::absent_packages(BENCH_PACKAGES);
    if !missing.is_empty() {
        crate::setup::apt_install(&missing)?;
    }
    let fw_load = build_fw_load()?;
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
        let log =
            boot_with(kernel, &vmlinuz, &initrd, kvm, &format!("fw_rounds={rounds} fw_seconds={seconds}"))?;
        ensure!(log.contains("FW-DONE"), "the {name} bench guest did not finish");
        if let Some(line) = log.lines().find(|l| l.contains("FW-BENCH-FAILED")) {
            anyhow::bail!("{name}: {line}");
        }
        let runs = runs_in(&log);
        ensure!(!runs.is_empty(), "the {name} guest measured nothing");
        let figures = ratios(&runs);
        print_table(name, &figures);
        results["guest"][name] = json!({
            "accel": if kvm { "kvm" } else { "tcg" },
            "rounds": rounds,
            "seconds_per_run": seconds,
            "loads": figures,
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
}
