//! Golden outputs: `report`, `check` and `export` on recorded traces print exactly what the committed files
//! under tests/fixtures/golden/ hold. They were written by the code before the analysis moved
//! into freeze-model and became a streaming correlator, so a refactor that changes a byte of what
//! users see fails here. `FREEZEWATCH_BLESS=1 cargo test -p freeze-user --test golden` rewrites
//! them (only for an intended change of output; say so in the commit).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Every trace × the commands whose output is pinned.
const TRACES: &[&str] = &["slip-blocked-mount.ndjson", "cycles-ext4-xfs.ndjson"];

fn cases(trace: &str) -> Vec<(String, Vec<String>)> {
    let t = fixtures().join(trace).display().to_string();
    let assertions = fixtures().join("golden/assertions.txt").display().to_string();
    let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        ("report".into(), argv(&["report", &t])),
        ("report-all".into(), argv(&["report", "--all", &t])),
        ("report-json".into(), argv(&["report", "--json", &t])),
        ("report-long-freeze".into(), argv(&["report", "--long-freeze", "1ms", &t])),
        ("check".into(), argv(&["check", &t, "--assertions", &assertions])),
        ("check-json".into(), argv(&["check", &t, "--json", "--assertions", &assertions])),
        ("export-chrome-trace".into(), argv(&["export", "--format", "chrome-trace", &t])),
    ]
}

/// What a command printed and its exit code, as one text (traces are named by file name only,
/// so the goldens do not depend on where the checkout is).
fn run(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_freezewatch")).args(args).output().expect("runs freezewatch");
    let dir = format!("{}/", fixtures().display());
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&dir, "");
    format!("exit {}\n{stdout}", out.status.code().unwrap_or(-1))
}

#[test]
fn report_and_check_print_what_the_goldens_hold() {
    let bless = std::env::var_os("FREEZEWATCH_BLESS").is_some_and(|v| v == "1");
    let mut failed = Vec::new();
    for trace in TRACES {
        assert!(fixtures().join(trace).is_file(), "fixture {trace} is missing");
        let stem = trace.trim_end_matches(".ndjson");
        for (name, args) in cases(trace) {
            let path = fixtures().join("golden").join(format!("{stem}.{name}.out"));
            let got = run(&args);
            if bless {
                std::fs::write(&path, &got).expect("writes the golden");
                continue;
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (FREEZEWATCH_BLESS=1 writes it)", path.display()));
            if got != want {
                failed.push(format!("{}: differs\n--- want\n{want}\n--- got\n{got}", path.display()));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
