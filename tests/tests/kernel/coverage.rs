//! A verdict cannot pass on nothing: when the hook that would have seen a slip is not attached
//! (here turned off with FREEZEWATCH_DISABLE, as a hook that failed to attach would be),
//! `run --assert no-slips` does not pass: it is UNPROVEN and exits 3, naming the missing hook.
//! The same script with every hook fails on the slip, so the hook really mattered.
use std::process::Command;

use freezewatch_tests::{FsType, LoopFs, freezewatch_bin, freezewatch_cmd, kernel_available, limit};

/// Freezes, writes one block straight to the device (a slip only the block hook sees), thaws.
fn slipping_script(fs: &LoopFs) -> String {
    let seek = fs.blocks_4k() - 32;
    format!(
        "fsfreeze -f {m}; dd if=/dev/zero of={dev} bs=4k count=1 seek={seek} oflag=direct conv=notrunc \
         status=none; fsfreeze -u {m}",
        m = fs.mnt(),
        dev = fs.loopdev
    )
}

fn run_no_slips(fs: &LoopFs, disable: Option<&str>, extra: &[&str]) -> freezewatch_tests::Run {
    let mut cmd = Command::new(freezewatch_bin());
    cmd.args(["run", "--assert", "no-slips", "--assert", &format!("frozen @{}", fs.mnt())]);
    cmd.args(extra).args(["--", "sh", "-c", &slipping_script(fs)]);
    if let Some(features) = disable {
        cmd.env("FREEZEWATCH_DISABLE", features);
    }
    freezewatch_cmd(&mut cmd, limit(60)).expect("freezewatch runs")
}

#[test]
fn no_slips_without_the_block_hook_is_unproven_and_exits_3() {
    if !kernel_available("no_slips_without_the_block_hook_is_unproven_and_exits_3") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    // Every hook: the slip is seen and the assertion fails.
    let full = run_no_slips(&fs, None, &[]);
    assert_eq!(full.code, Some(1), "stdout: {}\nstderr: {}", full.stdout, full.stderr);
    assert!(full.stdout.contains("FAIL  no-slips"), "{}", full.stdout);
    // Without the block hook: nothing is seen, and nothing is claimed.
    let partial = run_no_slips(&fs, Some("block-writes"), &[]);
    assert_eq!(partial.code, Some(3), "stdout: {}\nstderr: {}", partial.stdout, partial.stderr);
    assert!(partial.stdout.contains("UNPROVEN  no-slips"), "{}", partial.stdout);
    assert!(
        partial.stdout.contains("needs block-writes: no hook attached (disabled (FREEZEWATCH_DISABLE))"),
        "{}",
        partial.stdout
    );
    assert!(partial.stdout.contains("PASS      frozen @"), "the freeze itself is proven: {}", partial.stdout);
    assert!(partial.stderr.contains("--allow-partial"), "{}", partial.stderr);
    // Accepted on request: reported, not failing.
    let allowed = run_no_slips(&fs, Some("block-writes"), &["--allow-partial"]);
    assert_eq!(allowed.code, Some(0), "stdout: {}\nstderr: {}", allowed.stdout, allowed.stderr);
    assert!(allowed.stdout.contains("1 of 2 assertions hold, 1 unproven"), "{}", allowed.stdout);
}
