//! `cargo xtask`: everything a fresh machine needs to build, run and test freezewatch.
mod bench;
mod bench_kernel;
mod dist;
mod scratch;
mod screenshot;
mod setup;
mod soak;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test freezewatch",
    after_help = "A newcomer needs two commands:\n  \
        cargo xtask run     build everything (installing what is missing) and start the live TUI\n  \
        cargo xtask test    run every test (kernel tests need root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (idempotent): nightly rust-src, bpf-linker built
    /// against the nightly's own LLVM, and the Debian packages the kernel tests use.
    Setup {
        /// Only report what is missing; change nothing (exit 1 if something is).
        #[arg(long)]
        check: bool,
    },
    /// Build freezewatch (the eBPF programs are built by freeze-user's build.rs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run freezewatch with ARGS (default: `tui`, the live screen; needs root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for freezewatch (after `--`), e.g. `-- doctor`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the release binary and a Debian package of it (man pages, bash/zsh/fish completions,
    /// docs, changelog) in target/dist/; the package is also unpacked to target/dist/unpacked.
    Dist,
    /// Soak `freezewatch watch` (release build, root): N freeze/thaw cycles of a loop ext4 under a
    /// write load; prints watch's RSS at the start and the end and the CPU it used
    /// (target/bench/soak.json; see docs/benchmarks.md).
    Soak {
        #[arg(long, default_value_t = 10_000)]
        cycles: u64,
    },
    /// Regenerate docs/report.png (the README's picture of `report --html`) with headless Chromium.
    Screenshot,
    /// Benchmarks (release build): `check` and `report` of a synthetic trace of a million events;
    /// as root also start + stop and idle memory of `record`, and what recording costs fio and
    /// create/unlink loads on loop ext4 and xfs, beside bpftrace on the same tracepoints and the
    /// floor of any syscall hook (an empty tp_btf program on sys_enter/sys_exit). Medians
    /// over interleaved rounds; results in target/bench/results.json (see docs/benchmarks.md).
    Bench {
        /// Only the user-space figures (no root needed, a minute and a half).
        #[arg(long)]
        user_only: bool,
        /// Instead, what recording costs on a kernel with fentry: boot KERNEL (5.10, 6.1, 6.12,
        /// 7.3, several separated by commas, or all) under QEMU and run the kernel loads
        /// untraced, under record and under watch, interleaved in that one boot, before, during
        /// and after another filesystem's freeze. Ratios to untraced (medians over rounds) go to
        /// target/bench/results.json under guest.KERNEL; about 15 minutes a kernel under TCG.
        #[arg(long, value_name = "KERNEL")]
        guest: Option<String>,
        /// Rounds of the guest bench (each runs every load in every setup and state).
        #[arg(long, default_value_t = 3, requires = "guest")]
        rounds: u32,
        /// Seconds each load runs in the guest bench.
        #[arg(long, default_value_t = 3.0, requires = "guest")]
        seconds: f64,
        /// Only these loads of the guest bench (fio-1k-buffered, fio-4k-direct, create-unlink,
        /// getppid, mount-umount), separated by commas.
        #[arg(long, value_delimiter = ',', requires = "guest")]
        loads: Vec<String>,
        /// Have the guest's kernel time every program run (kernel.bpf_stats_enabled) and print
        /// the programs' share beside the tracer's CPU: to find where a cost is (it adds two
        /// clock reads to every run, so the ratios are not the product's).
        #[arg(long, requires = "guest")]
        bpf_stats: bool,
    },
    /// Boot Debian cloud kernels (5.10, 6.1, 6.12, 7.3) under QEMU, two at a time, where fentry and BPF LSM load, and run
    /// the kernel test suite there (fentry paths, mount denial) with the packaged binary (`dist`). Downloads are cached under
    /// target/vm/cache. KVM is used where a probe boot works (FREEZEWATCH_VM_KVM=1/0 decides
    /// instead), TCG otherwise; each guest takes several minutes under TCG.
    VmTest {
        /// 5.10, 6.1, 6.12, 7.3, several of them separated by commas, or all.
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Run only the tests whose name contains this (as `cargo test FILTER`).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Run every test: the lint gate (`cargo fmt --check`, clippy `-D warnings` for the workspace
    /// and for the eBPF programs on their target), unit tests, `dist`, the kernel tests (root; one
    /// at a time, on loop images; they check the package too), then `vm-test --kernel all` (four
    /// guests, two at a time). With FREEZEWATCH_REQUIRE_KERNEL=1 a kernel test that cannot run
    /// fails instead of skipping.
    Test {
        /// Extra arguments for the kernel test binary (after `--`), e.g. a test name filter
        /// (`gate::` runs one module).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

pub(crate) fn build(release: bool) -> Result<PathBuf> {
    setup::ensure(false)?;
    let mut cmd = cargo();
    cmd.args(["build", "--package", "freeze-user", "--bin", "freezewatch"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(workspace_root().join("target").join(if release { "release" } else { "debug" }).join("freezewatch"))
}

/// The lint gate: formatting, then clippy with warnings as errors for the workspace and for the
/// eBPF programs on their own target (as aya-build compiles them).
fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    let mut ebpf = Command::new("cargo");
    ebpf.current_dir(workspace_root())
        .args(["+nightly", "clippy", "--package", "freeze-ebpf", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(workspace_root().join("target/lint-ebpf"))
        .args(["--", "-D", "warnings"])
        .env("CARGO_ENCODED_RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    run(&mut ebpf)
}

fn test(args: &[String]) -> Result<()> {
    let bin = build(false)?;
    lint()?;
    // Unit tests: everything but the kernel integration tests.
    run(cargo().args(["test", "--workspace", "--exclude", "freezewatch-tests"]))?;
    let package = dist::dist()?;
    // Kernel tests: real freezes on loop devices, strictly one at a time.
    let mut cmd = cargo();
    cmd.args(["test", "--package", "freezewatch-tests", "--", "--test-threads=1"]).args(args);
    cmd.env("FREEZEWATCH_BIN", &bin).env("FREEZEWATCH_DEB", &package.deb);
    run(&mut cmd)?;
    // The fentry path, on kernels that allow it (this host refuses fentry): QEMU guests, running
    // the binary as the package installs it.
    vm::vm_test("all", &package.binary(), None)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup { check } => setup::ensure(check),
        Cmd::Build { release } => build(release).map(|bin| eprintln!("xtask: built {}", bin.display())),
        Cmd::Run { release, args } => {
            let bin = build(release)?;
            let args = if args.is_empty() { vec!["tui".to_owned()] } else { args };
            run(Command::new(bin).args(&args))
        }
        Cmd::Test { args } => test(&args),
        Cmd::Bench { guest: Some(kernel), rounds, seconds, loads, bpf_stats, .. } => {
            let bench = vm::GuestBench { rounds, seconds, loads: &loads, bpf_stats };
            vm::bench_guest(&kernel, &build(true)?, &bench)
        }
        Cmd::Bench { user_only, guest: None, .. } => bench::bench(&build(true)?, user_only),
        Cmd::Soak { cycles } => soak::soak(&build(true)?, cycles),
        Cmd::Screenshot => screenshot::screenshot(&build(false)?),
        Cmd::Dist => dist::dist().map(|p| eprintln!("xtask: unpacked in {}", p.unpacked.display())),
        Cmd::VmTest { kernel, filter } => vm::vm_test(&kernel, &dist::dist()?.binary(), filter.as_deref()),
    }
}
