//! `report --html` in a real browser: headless Chromium (Debian's `chromium`, which `cargo xtask
//! setup` installs) loads the page from a file, with no network, and the DOM after load must hold
//! a timeline per filesystem, one row per finding, and the mark of the script having run to its
//! end; the console must show no error. Skipped only where Chromium is missing, unless
//! FREEZEWATCH_REQUIRE_KERNEL=1 (CI), which makes a missing browser a failure.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cycles-ext4-xfs.ndjson")
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file())
}

/// Runs the browser on `page` with `args`, killing it after a minute; (stdout, stderr).
fn browse(browser: &Path, page: &Path, args: &[&str], profile: &Path) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        // No network: the page must need none.
        .args(["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("starts chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in a minute: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(err).unwrap())
}

#[test]
fn the_page_loads_in_a_browser_with_its_timelines_and_rows_and_no_error() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("FREEZEWATCH_REQUIRE_KERNEL").is_none_or(|v| v != "1"),
            "FREEZEWATCH_REQUIRE_KERNEL=1 but chromium is not installed (cargo xtask setup installs it)"
        );
        eprintln!(
            "SKIPPED the_page_loads_in_a_browser_with_its_timelines_and_rows_and_no_error: no chromium"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let run = Command::new(env!("CARGO_BIN_EXE_freezewatch"))
        .arg("report")
        .arg(fixture())
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let json = Command::new(env!("CARGO_BIN_EXE_freezewatch"))
        .arg("report")
        .arg("--json")
        .arg(fixture())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let filesystems = report["summaries"].as_object().unwrap().len();
    let findings = report["findings"].as_array().unwrap().iter().filter(|f| f["kind"] != "exempt").count();

    let profile = dir.path().join("profile");
    let (dom, log) = browse(&browser, &page, &["--dump-dom"], &profile);
    assert!(
        dom.contains("<body data-ready=\"1\">"),
        "the page's script ran to its end:\n{}",
        &dom[..dom.len().min(400)]
    );
    assert_eq!(dom.matches("<svg class=\"timeline\"").count(), filesystems, "a timeline per filesystem");
    assert_eq!(dom.matches("<tr class=\"finding ").count(), findings, "a row per finding");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "the console shows messages:\n{}", console.join("\n"));
    assert!(!log.contains("Uncaught"), "{log}");
}
