//! Who did it: a freeze and a slip from a cgroup this test makes (in the cgroup2 hierarchy,
//! wherever it is mounted: /sys/fs/cgroup/unified on this project's hybrid host) are attributed
//! to that cgroup's path, and name their parent (a script called backup.sh); the same actions from
//! outside that cgroup, in the same recording, are not (so the field is read, not assumed). The
//! task scopes of `check` count them, and `report` names who.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use freezewatch_tests::{
    FsType, LoopFs, Trace, freezewatch, freezewatch_bin, freezewatch_cmd, kernel_available, kernel_required,
    limit,
};
use serde_json::Value;

/// The cgroup2 mount whose root is the hierarchy's root.
fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        (right.starts_with("cgroup2 ") && f.get(3) == Some(&"/")).then(|| PathBuf::from(f[4]))
    })
}

/// A child cgroup made for the test; removed in Drop (its tasks have exited by then; any left
/// are moved back to the root first).
struct TestCgroup {
    root: PathBuf,
    dir: PathBuf,
}

impl TestCgroup {
    fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        Self { root: root.to_path_buf(), dir }
    }

    /// Its path as the trace gives it: below the cgroup2 root.
    fn path(&self) -> String {
        format!("/{}", self.dir.strip_prefix(&self.root).unwrap().display())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("could not remove cgroup {}", self.dir.display());
    }
}

#[test]
fn a_freeze_and_a_slip_from_a_cgroup_name_it_and_their_parent() {
    if !kernel_available("a_freeze_and_a_slip_from_a_cgroup_name_it_and_their_parent") {
        return;
    }
    let Some(root) = cgroup2_root() else {
        assert!(!kernel_required(), "FREEZEWATCH_REQUIRE_KERNEL=1 but no cgroup2 hierarchy is mounted");
        eprintln!("SKIPPED a_freeze_and_a_slip_from_a_cgroup_name_it_and_their_parent: no cgroup2 mount");
        return;
    };
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let cg = TestCgroup::new(&root, &format!("freezewatch-test-{}", std::process::id()));
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let script = dir.path().join("backup.sh");
    let seek = fs.blocks_4k() - 8;
    // One freeze/thaw from where the test runs, then the script moves itself into the cgroup and
    // freezes, writes to the device (a slip) and thaws from there. A failure still thaws (trap);
    // the LoopFs thaws in Drop too.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntrap 'fsfreeze -u {m} 2>/dev/null' EXIT\n\
             fsfreeze -f {m}; fsfreeze -u {m}\n\
             echo $$ > {procs}\necho $$ > {pid}\n\
             fsfreeze -f {m}\n\
             dd if=/dev/zero of={dev} bs=4096 count=1 seek={seek} oflag=direct conv=notrunc status=none\n\
             fsfreeze -u {m}\ntrap - EXIT\n",
            m = fs.mnt(),
            procs = cg.dir.join("cgroup.procs").display(),
            pid = pid_file.display(),
            dev = fs.loopdev,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("trace.ndjson");
    let run = freezewatch_cmd(
        Command::new(freezewatch_bin()).args(["record", "--out", out.to_str().unwrap(), "--"]).arg(&script),
        limit(60),
    )
    .expect("recording");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let trace = Trace::parse(&std::fs::read_to_string(&out).unwrap()).expect("trace");
    let script_pid: u64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(trace.of_type("header")[0]["cgroup2_root"], root.display().to_string());

    let freezes = trace.events_on("freeze_begin", fs.mnt());
    assert_eq!(freezes.len(), 2, "{freezes:#?}");
    for f in &freezes {
        assert_eq!(f["comm"], "fsfreeze");
        assert_eq!(f["parent"]["pid"], script_pid, "fsfreeze's parent is the script: {f}");
        assert_eq!(f["parent"]["comm"], "backup.sh", "{f}");
        assert!(f["cgroup"]["id"].as_u64().is_some_and(|id| id > 0), "{f}");
    }
    assert_ne!(freezes[0]["cgroup"]["path"], cg.path(), "the first freeze came from outside: {}", freezes[0]);
    assert!(freezes[0]["cgroup"]["path"].is_string(), "and its cgroup was resolved too: {}", freezes[0]);
    assert_eq!(freezes[1]["cgroup"]["path"], cg.path(), "the second from the test's cgroup: {}", freezes[1]);

    assert!(trace.findings("thaw-without-freeze").is_empty(), "the script thawed only what it froze");
    let slips: Vec<&Value> =
        trace.findings("slip").into_iter().filter(|f| f["sb"]["mountpoint"] == fs.mnt()).collect();
    assert_eq!(slips.len(), 1, "{slips:#?}");
    assert_eq!(
        (&slips[0]["comm"], &slips[0]["cgroup"]["path"]),
        (&Value::from("dd"), &Value::from(cg.path()))
    );
    assert_eq!(slips[0]["parent"]["comm"], "backup.sh", "{}", slips[0]);

    // The task scopes count it; the report says who.
    let trace_path = out.to_str().unwrap();
    let check = |assertion: &str| {
        freezewatch(&["check", trace_path, "--assert", assertion], limit(30)).expect("check runs").code
    };
    assert_eq!(check(&format!("slips @cgroup={} == 1", cg.path())), Some(0));
    assert_eq!(check("slips @comm=dd >= 1"), Some(0));
    assert_eq!(check(&format!("no-slips @cgroup={}", cg.path())), Some(1), "the slip is counted against it");
    assert_eq!(check("no-slips @cgroup=/freezewatch-elsewhere"), Some(0));
    let report = freezewatch(&["report", trace_path], limit(30)).expect("report runs");
    let line =
        report.stdout.lines().find(|l| l.contains("by dd[")).unwrap_or_else(|| panic!("{}", report.stdout));
    assert!(
        line.contains(&format!("← backup.sh[{script_pid}] in cgroup {}", cg.path())),
        "the report names parent and cgroup: {line}"
    );
}
