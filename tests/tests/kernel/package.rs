//! The Debian package as a user gets it (`cargo xtask dist`; `cargo xtask test` passes its path in
//! FREEZEWATCH_DEB): what it holds, that dpkg installs and removes it, that its manual pages
//! render without warnings, that bash completes with it, that lintian finds no error, and that
//! the packaged binary runs `doctor` here. The QEMU guests run that same binary for their tests.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use freezewatch_tests::{freezewatch_cmd, kernel_available, kernel_required, limit};

/// The package under test, or None (after saying why) where none was built; CI must have one.
fn package(test: &str) -> Option<PathBuf> {
    match std::env::var_os("FREEZEWATCH_DEB") {
        Some(p) => Some(PathBuf::from(p)),
        None if kernel_required() => {
            panic!("{test}: FREEZEWATCH_REQUIRE_KERNEL=1 but FREEZEWATCH_DEB is unset")
        }
        None => {
            eprintln!(
                "SKIPPED {test}: no package (run `cargo xtask test`, which builds one with `cargo xtask dist`)"
            );
            None
        }
    }
}

/// Runs a command to completion (none of these touches a frozen filesystem); panics with its
/// output when it fails.
fn output(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

/// The package unpacked with `dpkg-deb -x` into a fresh directory.
fn unpack(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    dir
}

/// The commands `freezewatch --help` lists (each must have a manual page).
fn subcommands(bin: &Path) -> Vec<String> {
    let (help, _) = output(Command::new(bin).arg("--help"));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn the_package_holds_the_binary_pages_completions_and_docs() {
    let Some(deb) = package("the_package_holds_the_binary_pages_completions_and_docs") else { return };
    let field =
        |name: &str| output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)).0.trim().to_owned();
    assert_eq!(field("Package"), "freezewatch");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"), "the package carries the crate's version");
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>="), "the binary's libc is a dependency: {depends}");
    for toolchain in ["rustc", "cargo", "llvm", "clang", "bpf-linker", "libbpf"] {
        assert!(!depends.contains(toolchain), "the build toolchain is no dependency: {depends}");
    }

    let dir = unpack(&deb);
    let root = dir.path();
    let bin = root.join("usr/bin/freezewatch");
    let mut want: BTreeSet<String> = [
        "usr/bin/freezewatch",
        "usr/share/bash-completion/completions/freezewatch",
        "usr/share/zsh/vendor-completions/_freezewatch",
        "usr/share/fish/vendor_completions.d/freezewatch.fish",
        "usr/share/doc/freezewatch/copyright",
        "usr/share/doc/freezewatch/changelog.gz",
        "usr/share/doc/freezewatch/README.md.gz",
        "usr/share/doc/freezewatch/trace-format.md.gz",
        "usr/share/man/man1/freezewatch.1.gz",
        "lib/systemd/system/freezewatch.service",
        "usr/share/doc/freezewatch/examples/freezewatch-rules.yml",
        "usr/share/doc/freezewatch/examples/freezewatch-rules.test.yml",
        "usr/share/lintian/overrides/freezewatch",
    ]
    .map(str::to_owned)
    .into();
    let commands = subcommands(&bin);
    assert!(commands.len() >= 8, "--help lists the commands: {commands:?}");
    want.extend(commands.iter().map(|c| format!("usr/share/man/man1/freezewatch-{c}.1.gz")));
    let (contents, _) = output(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: BTreeSet<String> = contents
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").to_owned())
        .collect();
    assert_eq!(files, want, "the package's files");
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "every file belongs to root: {line}");
        let mode = line.split_whitespace().next().unwrap_or_default();
        let path = line.split_whitespace().last().unwrap_or_default();
        let expected = if line.starts_with('d') || path.ends_with("usr/bin/freezewatch") {
            &mode[1..] == "rwxr-xr-x"
        } else {
            &mode[1..] == "rw-r--r--"
        };
        assert!(expected, "mode of {path}: {mode}");
    }

    // The zsh and fish scripts are for their shells (neither is installed here to run them).
    let zsh = std::fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_freezewatch")).unwrap();
    assert!(zsh.starts_with("#compdef freezewatch"), "{}", &zsh[..40.min(zsh.len())]);
    let fish =
        std::fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/freezewatch.fish")).unwrap();
    assert!(fish.contains("complete -c freezewatch"), "fish script");
    let (changelog, _) =
        output(Command::new("zcat").arg(root.join("usr/share/doc/freezewatch/changelog.gz")));
    assert!(
        changelog
            .starts_with(&format!("freezewatch ({}) unstable; urgency=medium", env!("CARGO_PKG_VERSION"))),
        "{changelog}"
    );
}

#[test]
fn the_binary_needs_no_newer_glibc_than_debian_12() {
    let Some(deb) = package("the_binary_needs_no_newer_glibc_than_debian_12") else { return };
    let dir = unpack(&deb);
    let (symbols, _) = output(Command::new("objdump").arg("-T").arg(dir.path().join("usr/bin/freezewatch")));
    let newest = symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the binary links glibc");
    assert!(newest <= (2, 36), "needs GLIBC_{}.{}, newer than Debian 12's 2.36", newest.0, newest.1);
}

#[test]
fn dpkg_installs_and_removes_it_cleanly() {
    let Some(deb) = package("dpkg_installs_and_removes_it_cleanly") else { return };
    let root = tempfile::tempdir().expect("temp dir");
    let admin = root.path().join("var/lib/dpkg");
    for sub in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(sub)).unwrap();
    }
    // A status database holding just what the package depends on, copied from this system: dpkg
    // then checks the Depends line for real, without --force-depends.
    let depends = output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends")).0;
    let names: Vec<&str> = depends.split(',').filter_map(|d| d.split_whitespace().next()).collect();
    let (status, _) = output(Command::new("dpkg-query").arg("-s").args(&names));
    std::fs::write(admin.join("status"), status).unwrap();
    for name in &names {
        std::fs::write(admin.join(format!("info/{name}.list")), "").unwrap();
    }
    std::fs::write(admin.join("available"), "").unwrap();

    let dpkg = || {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.path().display())).env("LC_ALL", "C");
        c
    };
    output(dpkg().arg("-i").arg(&deb));
    let (state, _) = output(dpkg().args(["-s", "freezewatch"]));
    assert!(state.contains("Status: install ok installed"), "{state}");
    let bin = root.path().join("usr/bin/freezewatch");
    let (version, _) = output(Command::new(&bin).arg("--version"));
    assert_eq!(version.trim(), format!("freezewatch {}", env!("CARGO_PKG_VERSION")));
    let (listed, _) = output(dpkg().args(["-L", "freezewatch"]));
    assert!(listed.lines().any(|l| l == "/usr/share/man/man1/freezewatch-record.1.gz"), "{listed}");

    output(dpkg().args(["-r", "freezewatch"]));
    assert!(!bin.exists(), "removing the package removes its binary");
    assert!(!root.path().join("usr/share/man/man1/freezewatch.1.gz").exists());
}

#[test]
fn the_manual_pages_render_without_warnings() {
    let Some(deb) = package("the_manual_pages_render_without_warnings") else { return };
    let dir = unpack(&deb);
    let man1 = dir.path().join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man1).unwrap().map(|e| e.unwrap().path()).collect();
    pages.sort();
    assert!(pages.len() >= 9, "{pages:?}");
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy().trim_end_matches(".1.gz").to_owned();
        let (text, warnings) = output(
            Command::new("man").args(["--warnings", "-l"]).arg(page).env("MANWIDTH", "80").env("LC_ALL", "C"),
        );
        assert_eq!(warnings.trim(), "", "{name}(1) renders with warnings");
        // man justifies lines: compare with runs of spaces made one.
        let text = text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        assert!(text.contains("NAME"), "{name}(1) has a NAME section:\n{text}");
        assert!(text.contains("freezewatch manual"), "{name}(1) says whose manual it is:\n{text}");
        assert!(text.contains(&format!("{name} - ")), "{name}(1) names itself:\n{text}");
        assert!(text.contains("OPTIONS"), "{name}(1) lists its options");
    }
    // The top page points at each command's page, and every page it points at is there.
    let (top, _) = output(
        Command::new("man")
            .arg("-l")
            .arg(man1.join("freezewatch.1.gz"))
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C"),
    );
    for page in pages.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()) {
        let sub = page.trim_end_matches(".1.gz");
        if sub != "freezewatch" {
            assert!(top.contains(&format!("{sub}(1)")), "freezewatch(1) refers to {sub}(1)");
        }
    }
}

#[test]
fn bash_completes_the_packaged_script() {
    let Some(deb) = package("bash_completes_the_packaged_script") else { return };
    let dir = unpack(&deb);
    let script = dir.path().join("usr/share/bash-completion/completions/freezewatch");
    // What bash does on `freezewatch re<TAB>` and `freezewatch report --<TAB>`.
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let array = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
        let cword = words.len() - 1;
        let prev = if cword > 0 { words[cword - 1] } else { "" };
        let program = format!(
            "source '{}'; COMP_WORDS=({array}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
             COMP_POINT=${{#COMP_LINE}}; _freezewatch freezewatch '{}' '{prev}'; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words[cword]
        );
        let (out, _) = output(Command::new("bash").arg("--noprofile").arg("--norc").arg("-c").arg(program));
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete("freezewatch re"), ["record", "report"]);
    let report_opts = complete("freezewatch report --");
    for opt in ["--json", "--all", "--long-freeze"] {
        assert!(report_opts.iter().any(|o| o == opt), "report's {opt} completes: {report_opts:?}");
    }
    assert!(!report_opts.iter().any(|o| o == "--duration"), "record's options are not report's");
}

#[test]
fn the_service_unit_verifies_and_starts_watch() {
    let Some(deb) = package("the_service_unit_verifies_and_starts_watch") else { return };
    let dir = unpack(&deb);
    let unit = dir.path().join("lib/systemd/system/freezewatch.service");
    let text = std::fs::read_to_string(&unit).expect("the unit is in the package");
    let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    assert!(exec.starts_with("/usr/bin/freezewatch watch "), "{exec}");
    // The packaged binary takes the unit's arguments (parsing them is all `--help` does first).
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let (help, _) = output(Command::new(dir.path().join("usr/bin/freezewatch")).args(&args).arg("--help"));
    assert!(help.contains("--thaw-orphans"), "{help}");
    for hardening in
        ["NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=CAP_BPF", "Restart=on-failure"]
    {
        assert!(text.contains(hardening), "the unit has {hardening}");
    }
    // systemd checks the unit (every key known, the binary executable): a copy whose ExecStart
    // points at the unpacked binary, since the package is not installed here. Any message fails.
    let have_analyze = Command::new("systemd-analyze").arg("--version").output().is_ok();
    assert!(
        have_analyze || !kernel_required(),
        "FREEZEWATCH_REQUIRE_KERNEL=1 but systemd-analyze is missing (`cargo xtask setup` installs systemd)"
    );
    if !have_analyze {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
    }
    if have_analyze {
        let copy = dir.path().join("freezewatch.service");
        let bin = dir.path().join("usr/bin/freezewatch");
        std::fs::write(
            &copy,
            text.replace("ExecStart=/usr/bin/freezewatch", &format!("ExecStart={}", bin.display())),
        )
        .unwrap();
        let out =
            Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}");
    }
}

#[test]
fn lintian_finds_no_error() {
    let Some(deb) = package("lintian_finds_no_error") else { return };
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info", "--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian is installed by `cargo xtask setup`");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "lintian failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    // The tags the README lists as kept, and nothing else above info level.
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("W:")).collect();
    assert!(
        warnings.is_empty(),
        "lintian warnings (fix, or list them in the README and here):\n{}",
        warnings.join("\n")
    );
}

#[test]
fn the_packaged_binary_runs_doctor() {
    if !kernel_available("the_packaged_binary_runs_doctor") {
        return;
    }
    let Some(deb) = package("the_packaged_binary_runs_doctor") else { return };
    let dir = unpack(&deb);
    let run = freezewatch_cmd(
        Command::new(dir.path().join("usr/bin/freezewatch")).args(["doctor", "--json"]),
        limit(60),
    )
    .expect("doctor runs");
    assert_eq!(run.code, Some(0), "the packaged doctor says recording works: {}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("doctor --json is JSON");
    assert_eq!(report["can_record"], true, "{report}");
    let freeze = report["features"]["Ok"]
        .as_array()
        .and_then(|f| f.iter().find(|h| h["feature"] == "freeze"))
        .expect("the packaged binary attached the freeze hook");
    assert!(freeze["hook"].as_str().is_some_and(|h| !h.is_empty()), "{freeze}");
}
