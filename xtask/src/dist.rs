//! `cargo xtask dist`: the release binary and a Debian package of it, built with the Debian tools
//! themselves (`dpkg-shlibdeps` for the dependencies, `dpkg-deb` for the archive), so that what
//! a packager checks (lintian, `dpkg -I`) reads as it would for any .deb.
//!
//! The package holds `/usr/bin/freezewatch` (stripped; the eBPF object is inside it), a manual
//! page per command and the bash, zsh and fish completions (all printed by the binary itself, so
//! they match its `--help`), the systemd unit of `watch`, the Prometheus alert rules (with their
//! promtool test) as examples, the trace-format doc, the README, the changelog (from
//! CHANGELOG.md) and the copyright file. Its control fields come from `[package.metadata.deb]` in
//! freeze-user/Cargo.toml; its dependencies are what the binary links (libc), never the toolchain.
use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{run, workspace_root};

/// What `dist` made: the package, and its tree unpacked by `dpkg-deb -x` (the binary the VM
/// guests run is the one in there).
pub struct Package {
    pub deb: PathBuf,
    pub unpacked: PathBuf,
}

impl Package {
    pub fn binary(&self) -> PathBuf {
        self.unpacked.join("usr/bin/freezewatch")
    }
}

/// Where each completion script goes, by the shell `freezewatch completions` takes.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/freezewatch"),
    ("zsh", "usr/share/zsh/vendor-completions/_freezewatch"),
    ("fish", "usr/share/fish/vendor_completions.d/freezewatch.fish"),
];

/// Documents shipped gzipped in /usr/share/doc/freezewatch: (source in the repository, name).
const DOCS: &[(&str, &str)] =
    &[("README.md", "README.md.gz"), ("docs/trace-format.md", "trace-format.md.gz")];

/// Files shipped as they are: (source in the repository, place in the package).
const FILES: &[(&str, &str)] = &[
    ("contrib/systemd/freezewatch.service", "lib/systemd/system/freezewatch.service"),
    ("contrib/prometheus/freezewatch-rules.yml", "usr/share/doc/freezewatch/examples/freezewatch-rules.yml"),
    (
        "contrib/prometheus/freezewatch-rules.test.yml",
        "usr/share/doc/freezewatch/examples/freezewatch-rules.test.yml",
    ),
    // Each override says why in the file itself.
    ("contrib/lintian/freezewatch", "usr/share/lintian/overrides/freezewatch"),
];

/// The package's control fields, from `[package.metadata.deb]` and the crate's own fields.
struct Meta {
    name: String,
    version: String,
    synopsis: String,
    maintainer: String,
    section: String,
    priority: String,
    long_description: String,
}

fn metadata() -> Result<Meta> {
    let out = crate::cargo().args(["metadata", "--no-deps", "--format-version", "1"]).output()?;
    ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let pkg = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "freeze-user"))
        .context("freeze-user is not in the workspace")?;
    let deb = &pkg["metadata"]["deb"];
    let field = |v: &Value, key: &str| -> Result<String> {
        v[key].as_str().map(str::to_owned).with_context(|| format!("freeze-user/Cargo.toml: no {key}"))
    };
    Ok(Meta {
        name: field(deb, "name")?,
        version: field(pkg, "version")?,
        synopsis: field(pkg, "description")?,
        maintainer: field(deb, "maintainer")?,
        section: field(deb, "section")?,
        priority: field(deb, "priority")?,
        long_description: field(deb, "extended-description")?,
    })
}

/// Builds the release binary and the package; returns both paths.
pub fn dist() -> Result<Package> {
    for tool in ["dpkg-deb", "dpkg-shlibdeps", "strip", "gzip", "md5sum"] {
        ensure!(
            crate::setup::on_path(tool),
            "{tool} is missing: run `cargo xtask setup` (it installs dpkg-dev, binutils and gzip)"
        );
    }
    let bin = crate::build(true)?;
    let meta = metadata()?;
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    let dist = workspace_root().join("target/dist");
    let stage = dist.join(format!("{}_{}_{arch}", meta.name, meta.version));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    let installed = stage.join("usr/bin/freezewatch");
    mkdir(installed.parent().context("usr/bin")?)?;
    std::fs::copy(&bin, &installed).with_context(|| format!("copying {}", bin.display()))?;
    // .comment and .note carry build details that lintian asks to strip with the symbols.
    run(Command::new("strip")
        .args(["--strip-unneeded", "--remove-section=.comment", "--remove-section=.note"])
        .arg(&installed))?;

    let man_tmp = dist.join("man");
    if man_tmp.exists() {
        std::fs::remove_dir_all(&man_tmp)?;
    }
    let pages = stdout_of(Command::new(&installed).arg("man").arg("--out-dir").arg(&man_tmp))?;
    let man1 = stage.join("usr/share/man/man1");
    mkdir(&man1)?;
    for page in pages.lines().map(PathBuf::from) {
        let name = page.file_name().context("page name")?.to_string_lossy().into_owned();
        gzip_to(&std::fs::read(&page)?, &man1.join(format!("{name}.gz")))?;
    }

    for (shell, dest) in COMPLETIONS {
        let script = stdout_of(Command::new(&installed).args(["completions", shell]))?;
        write(&stage.join(dest), script.as_bytes())?;
    }

    let doc = stage.join("usr/share/doc").join(&meta.name);
    mkdir(&doc)?;
    for (src, name) in DOCS {
        gzip_to(&std::fs::read(workspace_root().join(src))?, &doc.join(name))?;
    }
    for (src, dest) in FILES {
        write(&stage.join(dest), &std::fs::read(workspace_root().join(src))?)?;
    }
    let changelog = std::fs::read_to_string(workspace_root().join("CHANGELOG.md"))?;
    let entries = parse_changelog(&changelog)?;
    ensure!(
        entries.first().is_some_and(|e| e.version == meta.version),
        "CHANGELOG.md's newest entry must be for {} (the crate's version)",
        meta.version
    );
    gzip_to(debian_changelog(&meta, &entries).as_bytes(), &doc.join("changelog.gz"))?;
    write(&doc.join("copyright"), copyright()?.as_bytes())?;

    let depends = shlib_depends(&installed, &dist)?;
    set_modes(&stage)?;
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755))?;
    let control = control(&meta, &arch, &depends, installed_size_kib(&stage)?);
    let debian = stage.join("DEBIAN");
    mkdir(&debian)?;
    write(&debian.join("md5sums"), md5sums(&stage)?.as_bytes())?;
    write(&debian.join("control"), control.as_bytes())?;

    let deb = dist.join(format!("{}_{}_{arch}.deb", meta.name, meta.version));
    run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&stage).arg(&deb))?;
    let unpacked = dist.join("unpacked");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    eprintln!("xtask: built {} (Depends: {depends})", deb.display());
    Ok(Package { deb, unpacked })
}

fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    mkdir(path.parent().context("parent dir")?)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `gzip -9n`: best compression, no name or time stamp inside (reproducible, as lintian asks).
fn gzip_to(bytes: &[u8], dest: &Path) -> Result<()> {
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    feeder.join().map_err(|_| anyhow::anyhow!("gzip feeder panicked"))??;
    ensure!(out.status.success(), "gzip failed for {}", dest.display());
    write(dest, &out.stdout)
}

/// The dependencies of the binary's shared libraries, as `dpkg-shlibdeps` computes them (it wants
/// a `debian/control` naming the package in its working directory).
fn shlib_depends(binary: &Path, dist: &Path) -> Result<String> {
    let work = dist.join("shlibdeps");
    write(&work.join("debian/control"), b"Source: freezewatch\n\nPackage: freezewatch\nArchitecture: any\n")?;
    let out = stdout_of(Command::new("dpkg-shlibdeps").arg("-O").arg("-e").arg(binary).current_dir(&work))?;
    let depends = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no dependencies: {out}"))?;
    Ok(depends.trim().to_owned())
}

/// Directories 0755, files 0644 (the binary is set to 0755 after).
fn set_modes(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            set_modes(&path)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

fn files_under(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, root, out)?;
        } else {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, plus one per directory.
fn installed_size_kib(stage: &Path) -> Result<u64> {
    let mut files = Vec::new();
    files_under(stage, stage, &mut files)?;
    let mut kib = 0;
    for f in &files {
        kib += std::fs::metadata(stage.join(f))?.len().div_ceil(1024);
    }
    Ok(kib)
}

/// `DEBIAN/md5sums`: one line per file, relative paths, sorted.
fn md5sums(stage: &Path) -> Result<String> {
    let mut files = Vec::new();
    files_under(stage, stage, &mut files)?;
    files.retain(|f| !f.starts_with("DEBIAN"));
    files.sort();
    stdout_of(Command::new("md5sum").args(&files).current_dir(stage))
}

fn control(meta: &Meta, arch: &str, depends: &str, installed_kib: u64) -> String {
    let long: String = meta
        .long_description
        .split('\n')
        .map(|para| if para == "." { " .\n".to_owned() } else { wrap(para, 72, " ") })
        .collect();
    format!(
        "Package: {}\nVersion: {}\nArchitecture: {arch}\nMaintainer: {}\nInstalled-Size: {installed_kib}\n\
         Depends: {depends}\nSection: {}\nPriority: {}\nDescription: {}\n{long}",
        meta.name, meta.version, meta.maintainer, meta.section, meta.priority, meta.synopsis
    )
}

/// Wraps `text` at `width` columns, each line starting with `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            out += &format!("{indent}{line}\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += word;
    }
    if !line.is_empty() {
        out += &format!("{indent}{line}\n");
    }
    out
}

/// One `## VERSION (YYYY-MM-DD)` section of CHANGELOG.md.
#[derive(Debug, PartialEq)]
struct Entry {
    version: String,
    date: (i64, u32, u32),
    items: Vec<String>,
}

fn parse_changelog(text: &str) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(head) = line.strip_prefix("## ") {
            let (version, date) = head
                .split_once(" (")
                .and_then(|(v, d)| Some((v.trim(), d.strip_suffix(')')?)))
                .with_context(|| format!("CHANGELOG.md:{}: want `## VERSION (YYYY-MM-DD)`", n + 1))?;
            let parts: Vec<&str> = date.split('-').collect();
            let date = match parts[..] {
                [y, m, d] => (y.parse()?, m.parse()?, d.parse()?),
                _ => bail!("CHANGELOG.md:{}: bad date {date:?}", n + 1),
            };
            entries.push(Entry { version: version.to_owned(), date, items: Vec::new() });
        } else if let Some(entry) = entries.last_mut() {
            if let Some(item) = line.strip_prefix("- ") {
                entry.items.push(item.trim().to_owned());
            } else if line.starts_with("  ") && !line.trim().is_empty() {
                let item = entry
                    .items
                    .last_mut()
                    .with_context(|| format!("CHANGELOG.md:{}: text before an item", n + 1))?;
                item.push(' ');
                item.push_str(line.trim());
            }
        }
    }
    ensure!(!entries.is_empty(), "CHANGELOG.md has no `## VERSION (DATE)` entry");
    Ok(entries)
}

/// The changelog in Debian's format (a native package: `changelog.gz`).
fn debian_changelog(meta: &Meta, entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        out += &format!("{} ({}) unstable; urgency=medium\n\n", meta.name, e.version);
        for item in &e.items {
            let wrapped = wrap(item, 76, "    ");
            out += &format!("  * {}", wrapped.trim_start());
        }
        out += &format!("\n -- {}  {}\n\n", meta.maintainer, rfc2822_midnight(e.date));
    }
    out.trim_end().to_owned() + "\n"
}

/// `Sat, 28 Nov 2026 00:00:00 +0000`.
fn rfc2822_midnight((y, m, d): (i64, u32, u32)) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let weekday = DAYS[days_from_civil(y, m, d).rem_euclid(7) as usize];
    format!("{weekday}, {d:02} {} {y} 00:00:00 +0000", MONTHS[(m as usize).saturating_sub(1) % 12])
}

/// Days since 1970-01-01 (a Thursday), after Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The machine-readable copyright file, with both licences' texts (MIT is not among Debian's
/// common licences; Apache-2.0 is, and is referred to there).
fn copyright() -> Result<String> {
    let mit = std::fs::read_to_string(workspace_root().join("LICENSE-MIT"))?;
    let mit_body: String = mit
        .lines()
        .skip_while(|l| !l.starts_with("Permission"))
        .map(|l| if l.is_empty() { " .\n".to_owned() } else { format!(" {l}\n") })
        .collect();
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: freezewatch\n\n\
         Files: *\n\
         Copyright: 2026 The freezewatch developers\n\
         License: MIT or Apache-2.0\n\n\
         License: MIT\n{mit_body}\n\
         License: Apache-2.0\n \
         On Debian systems, the full text of the Apache License, Version 2.0, is in\n \
         /usr/share/common-licenses/Apache-2.0.\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_rfc2822_with_the_right_weekday() {
        assert_eq!(rfc2822_midnight((2026, 11, 28)), "Sat, 28 Nov 2026 00:00:00 +0000");
        assert_eq!(rfc2822_midnight((1970, 1, 1)), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822_midnight((2024, 2, 29)), "Thu, 29 Feb 2024 00:00:00 +0000");
    }

    #[test]
    fn the_changelog_reads_as_debian_wants_it() {
        let md = "# Changelog\n\nintro\n\n## 0.2.0 (2026-12-01)\n\n- Two\n  lines.\n- One.\n\n## 0.1.0 (2026-11-28)\n\n- First.\n";
        let entries = parse_changelog(md).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].items, ["Two lines.", "One."]);
        let meta = Meta {
            name: "freezewatch".into(),
            version: "0.2.0".into(),
            synopsis: String::new(),
            maintainer: "A <a@example.org>".into(),
            section: String::new(),
            priority: String::new(),
            long_description: String::new(),
        };
        let deb = debian_changelog(&meta, &entries);
        assert!(deb.starts_with("freezewatch (0.2.0) unstable; urgency=medium\n\n  * Two lines.\n  * One.\n\n -- A <a@example.org>  Tue, 01 Dec 2026 00:00:00 +0000\n\nfreezewatch (0.1.0)"), "{deb}");
        assert!(parse_changelog("## 0.1.0 2026-11-28\n").is_err(), "a heading without a date is refused");
    }

    #[test]
    fn descriptions_wrap_with_their_indent() {
        let w = wrap("aaa bbb ccc ddd", 9, " ");
        assert_eq!(w, " aaa bbb\n ccc ddd\n");
    }
}
