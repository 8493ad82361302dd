//! The TUI as a person meets it, in a real terminal (tmux): replaying a recorded trace, and live
//! while a loop filesystem is frozen and thawed. `q` must leave a clean terminal.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use freezewatch_tests::{Frozen, FsType, LoopFs, freezewatch_bin, kernel_available, kernel_required};

/// A tmux session running an interactive shell; killed in Drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str) -> Option<Self> {
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "160", "-y", "44", "bash --norc --noprofile"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(!kernel_required(), "tmux is needed for the TUI tests (cargo xtask setup installs it)");
            eprintln!("SKIPPED: tmux is not available");
            return None;
        }
        let t = Tmux { name: name.to_owned() };
        t.send(&["export PS1='fw-prompt$ '; clear", "Enter"]);
        t.wait_for("the shell", Duration::from_secs(10), |s| s.trim_end().ends_with("fw-prompt$"));
        Some(t)
    }

    fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux").args(["send-keys", "-t", &self.name]).args(keys).status();
        assert!(status.is_ok_and(|s| s.success()), "tmux send-keys");
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `pred` holds; returns the screen and how long it took.
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return (s, start.elapsed());
            }
            assert!(start.elapsed() < limit, "waited {limit:?} for {what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// After `q`: the shell prompt is back and the tty is out of raw mode.
    fn assert_clean_exit(&self) {
        self.wait_for("the prompt after q", Duration::from_secs(20), |s| {
            s.trim_end().ends_with("fw-prompt$")
        });
        self.send(&["stty -a | grep -o -- ' -*icanon' | tr -d ' '; echo END", "Enter"]);
        let (s, _) = self.wait_for("stty output", Duration::from_secs(5), |s| s.contains("\nEND"));
        let lines: Vec<&str> = s.lines().collect();
        let end = lines.iter().rposition(|l| *l == "END").expect("END");
        assert_eq!(lines[end - 1], "icanon", "canonical mode restored (not -icanon):\n{s}");
        assert!(!s.contains("Superblocks ("), "the alternate screen is gone:\n{s}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).status();
    }
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slip-blocked-mount.ndjson").display().to_string()
}

#[test]
fn replay_shows_the_recording_and_q_restores_the_terminal() {
    let Some(tmux) = Tmux::start("fw-replay") else { return };
    let cmd = format!("{} tui --replay {} --speed 16", freezewatch_bin().display(), fixture());
    tmux.send(&[&cmd, "Enter"]);
    let (s, _) = tmux.wait_for("the whole replay", Duration::from_secs(20), |s| {
        s.contains("10/10 events") && s.contains("ERROR slip")
    });
    assert!(s.contains("replay paused 16x, 10/10 events"), "{s}");
    let row = s.lines().find(|l| l.contains("/tmp/fwfix/data   ")).expect("superblock row");
    assert!(row.contains("7:0") && row.contains("ext4") && row.contains("unfrozen"), "{row}");
    assert!(s.contains("dd[23716] wrote 4096 bytes"), "{s}");
    assert!(s.contains("ERROR mount-while-frozen"), "{s}");
    assert!(s.contains("sh[23714] waited"), "{s}");
    // Details of the slip: focus the findings, pick the second newest, Enter.
    tmux.send(&["Tab", "Down", "Enter"]);
    let (s, _) =
        tmux.wait_for("the detail pane", Duration::from_secs(5), |s| s.contains("Finding (Esc to close)"));
    assert!(s.contains("task:  dd[23716]") && s.contains("blkdev_write_iter+"), "{s}");
    // Keys one at a time: ESC followed at once by a key reads as Alt+key.
    for keys in [["Escape"], ["?"]] {
        tmux.send(&keys);
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.wait_for("the help screen", Duration::from_secs(5), |s| s.contains("Keys (? or Esc to close)"));
    for keys in [["Escape"], ["q"]] {
        tmux.send(&keys);
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.assert_clean_exit();
}

#[test]
fn live_shows_a_freeze_and_its_thaw_within_a_second() {
    if !kernel_available("live_shows_a_freeze_and_its_thaw_within_a_second") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let Some(tmux) = Tmux::start("fw-live") else { return };
    tmux.send(&[&format!("{} tui", freezewatch_bin().display()), "Enter"]);
    tmux.wait_for("the live screen", Duration::from_secs(30), |s| s.contains(" freezewatch  live"));
    // The superblocks row starts with the device (the mountpoint column may be cut short).
    let dev = fs.loop_dev_number().expect("loop dev");
    let row_state = |s: &str| -> Option<String> {
        s.lines().find(|l| l.starts_with(&format!("│{dev} ")) && l.contains("ext4")).map(|l| l.to_owned())
    };
    let frozen = Frozen::new(&fs).expect("freeze");
    // Polled for up to 5 s: how fast the screen follows is for benchmarks, not tests.
    tmux.wait_for("FROZEN on screen", Duration::from_secs(5), |s| {
        row_state(s).is_some_and(|r| r.contains("FROZEN"))
    });
    drop(frozen); // thaw
    let (s, _) = tmux.wait_for("unfrozen on screen", Duration::from_secs(5), |s| {
        row_state(s).is_some_and(|r| r.contains("unfrozen"))
    });
    let row = row_state(&s).expect("row");
    assert!(row.contains("ext4") && row.contains(" 1 "), "one freeze counted: {row}");
    tmux.send(&["q"]);
    tmux.assert_clean_exit();
}
