//! `freezewatch export` and `report --html` as a user meets them: from a file and from stdin alike, into a file that
//! appears only once complete, and clear failures on bad input.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cycles-ext4-xfs.ndjson")
}

fn freezewatch(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_freezewatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs freezewatch");
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.unwrap_or_default().to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

#[test]
fn stdin_and_a_file_export_the_same_and_out_writes_it() {
    let trace = fixture();
    let from_file = freezewatch(&["export", "--format", "chrome-trace", trace.to_str().unwrap()], None);
    assert_eq!(from_file.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_file.stderr));
    let from_stdin = freezewatch(&["export", "-"], Some(&std::fs::read(&trace).unwrap()));
    assert_eq!(from_stdin.status.code(), Some(0));
    assert!(
        from_file.stdout == from_stdin.stdout,
        "stdin (read whole, sorted) and the file (streamed) agree"
    );
    let doc: serde_json::Value = serde_json::from_slice(&from_file.stdout).expect("JSON");
    assert!(doc["traceEvents"].as_array().is_some_and(|a| a.len() > 400));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    let run = freezewatch(&["export", trace.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    assert_eq!(run.status.code(), Some(0));
    assert!(run.stdout.is_empty(), "with -o nothing goes to stdout");
    assert!(std::fs::read(&out).unwrap() == from_file.stdout);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "no temporary file is left beside it: {left:?}");
}

#[test]
fn a_malformed_trace_is_exit_2_and_leaves_the_old_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    let mut text = std::fs::read_to_string(fixture()).unwrap();
    text.push_str("{\"v\":1,\"type\":\"event\",\"kind\":\"no_such_kind\"}\n");
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("t.json");
    std::fs::write(&out, "previous").unwrap();
    let run = freezewatch(&["export", bad.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 643"), "names the line: {stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous", "a failed export replaces nothing");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "and leaves no temporary file");

    let missing = freezewatch(&["export", "/nonexistent/trace.ndjson"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/trace.ndjson"));
    let unwritable =
        freezewatch(&["export", fixture().to_str().unwrap(), "-o", "/nonexistent/dir/t.json"], None);
    assert_eq!(unwritable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("/nonexistent/dir"));
    let format = freezewatch(&["export", "--format", "svg", fixture().to_str().unwrap()], None);
    assert_eq!(format.status.code(), Some(2), "an unknown format is a usage error");
}

#[test]
fn report_html_writes_a_page_beside_the_text_and_nothing_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("r.html");
    let trace = fixture();
    let run = freezewatch(&["report", trace.to_str().unwrap(), "--html", page.to_str().unwrap()], None);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("superblocks (2):"),
        "the text report still prints"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg class=\"timeline\""));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o644, "others may read it");
    let from_stdin = dir.path().join("s.html");
    let run = freezewatch(
        &["report", "-", "--html", from_stdin.to_str().unwrap()],
        Some(&std::fs::read(&trace).unwrap()),
    );
    assert_eq!(run.status.code(), Some(0));
    assert!(std::fs::read(&from_stdin).unwrap() == html.as_bytes(), "stdin gives the same page");

    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"v\":1,\"type\":\"header\"\n").unwrap();
    let none = dir.path().join("none.html");
    let run = freezewatch(&["report", bad.to_str().unwrap(), "--html", none.to_str().unwrap()], None);
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!none.exists(), "a malformed trace leaves no page");
    assert!(run.stdout.is_empty(), "and prints no report");
}
