//! `cargo xtask vm-test`: boots Debian cloud kernels (6.1, 6.12) under QEMU, where fentry/fexit
//! and BPF LSM load (this project's host refuses them), runs a freeze scenario in the guest
//! (xtask/vm/init) and checks on the host what freezewatch recorded there.
//!
//! Downloads are cached under target/vm/cache, so a second run fetches nothing.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::run;

/// Kernels by the name users pass to --kernel, with the apt package pattern that provides them.
const KERNELS: &[(&str, &str)] = &[
    ("6.1", "linux-image-6.1.0-.*-cloud-amd64-unsigned"),
    ("6.12", "linux-image-6.12.*-cloud-amd64-unsigned"),
];
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("busybox-static", "busybox"),
    ("cpio", "cpio"),
    ("xz-utils", "xz"),
];
const BOOT_LIMIT: Duration = Duration::from_secs(600);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_packages() -> Result<()> {
    let missing = crate::setup::absent_packages(PACKAGES);
    if missing.is_empty() { Ok(()) } else { crate::setup::apt_install(&missing) }
}

/// The newest package matching `pattern`, downloaded into the cache (once) and unpacked.
fn kernel(name: &str, pattern: &str) -> Result<(PathBuf, PathBuf)> {
    let cache = root().join("target/vm/cache");
    std::fs::create_dir_all(&cache)?;
    let search = |update: bool| -> Result<Option<String>> {
        if update {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
        }
        let list = output(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
        let mut names: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).collect();
        names.sort_by_key(|n| {
            n.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok()).collect::<Vec<_>>()
        });
        Ok(names.last().map(|s| (*s).to_owned()))
    };
    let package = match search(false)? {
        Some(p) => p,
        None => search(true)?.with_context(|| format!("no package matches {pattern}"))?,
    };
    let cached = || -> Result<Option<PathBuf>> {
        let prefix = format!("{package}_");
        Ok(std::fs::read_dir(&cache)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))))
    };
    let deb = match cached()? {
        Some(deb) => deb,
        None => {
            eprintln!("xtask: downloading {package}");
            run(Command::new("apt-get").args(["download", "-qq", &package]).current_dir(&cache))?;
            cached()?.context("apt-get download left no .deb")?
        }
    };
    let unpacked = root().join("target/vm").join(name);
    if !unpacked.join("boot").is_dir() {
        std::fs::create_dir_all(&unpacked)?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    let vmlinuz = std::fs::read_dir(unpacked.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .context("no vmlinuz in the package")?;
    Ok((unpacked, vmlinuz))
}

/// Copies a binary and the shared libraries it needs (as `ldd` lists them) into `stage`.
fn copy_with_libs(bin: &Path, stage: &Path) -> Result<()> {
    let dest = stage.join("usr/sbin").join(bin.file_name().context("binary name")?);
    std::fs::copy(bin, &dest).with_context(|| format!("copying {}", bin.display()))?;
    for lib in output(Command::new("ldd").arg(bin))?.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = stage.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().context("lib dir")?)?;
        std::fs::copy(lib, &to).with_context(|| format!("copying {lib}"))?;
    }
    Ok(())
}

fn initramfs(kernel_dir: &Path, freezewatch: &Path, out: &Path) -> Result<()> {
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "usr/sbin", "lib", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).context("busybox-static")?;
    let which =
        |b: &str| -> Result<PathBuf> { Ok(PathBuf::from(output(Command::new("which").arg(b))?.trim())) };
    copy_with_libs(freezewatch, &stage)?;
    copy_with_libs(&which("fsfreeze")?, &stage)?;
    copy_with_libs(&which("mkfs.ext4")?, &stage)?;
    std::fs::copy("/etc/mke2fs.conf", stage.join("etc/mke2fs.conf")).context("mke2fs.conf")?;
    let loop_ko =
        output(Command::new("find").arg(kernel_dir.join("lib/modules")).args(["-name", "loop.ko*"]))?;
    let loop_ko = loop_ko.lines().next().context("no loop module in the kernel package")?;
    if loop_ko.ends_with(".xz") {
        let data = Command::new("xz").args(["-dc", loop_ko]).output()?.stdout;
        std::fs::write(stage.join("lib/loop.ko"), data)?;
    } else {
        std::fs::copy(loop_ko, stage.join("lib/loop.ko"))?;
    }
    std::fs::copy(root().join("xtask/vm/init"), stage.join("init"))?;
    // PID 1 must be executable whatever mode the checkout gave the file.
    std::fs::set_permissions(stage.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet | gzip -1 > '{}'", out.display()))
        .current_dir(&stage))?;
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}

/// Boots the guest and returns its console output, streamed to stderr as it comes.
fn boot(name: &str, vmlinuz: &Path, initrd: &Path) -> Result<String> {
    // TCG by default: /dev/kvm exists on this project's machines but guests die there at once.
    // FREEZEWATCH_VM_KVM=1 asks for KVM where it works.
    let kvm =
        Path::new("/dev/kvm").exists() && std::env::var_os("FREEZEWATCH_VM_KVM").is_some_and(|v| v == "1");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-m", "1G", "-smp", "2", "-nographic", "-no-reboot"])
        .args(if kvm { ["-accel", "kvm:tcg", "-cpu", "max"] } else { ["-accel", "tcg", "-cpu", "max"] })
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut log = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                // The trace is long JSON; show the guest's progress, not every record.
                if !line.starts_with("{\"v\"") {
                    eprintln!("[guest {name}] {line}");
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > BOOT_LIMIT {
            let _ = child.kill();
            bail!("the {name} guest did not finish within {BOOT_LIMIT:?}");
        }
    }
    let _ = child.wait();
    Ok(log)
}

fn between<'a>(log: &'a str, begin: &str, end: &str) -> Result<&'a str> {
    let from = log.find(begin).with_context(|| format!("the guest printed no {begin}"))? + begin.len();
    let to = log[from..].find(end).with_context(|| format!("the guest printed no {end}"))? + from;
    Ok(&log[from..to])
}

/// Checks what the guest recorded: fentry was used, and the events and findings are right.
fn check(name: &str, log: &str) -> Result<()> {
    ensure!(log.contains("FW-DONE"), "the {name} guest did not finish its script");
    let doctor: Value = serde_json::from_str(between(log, "FW-DOCTOR-BEGIN", "FW-DOCTOR-END")?.trim())
        .context("doctor --json output")?;
    let probe = |ty: &str| {
        doctor["program_types"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["program_type"] == ty))
            .map(|p| p["status"].clone())
    };
    ensure!(probe("fentry") == Some("ok".into()), "{name}: fentry probe: {:?}", probe("fentry"));
    ensure!(probe("lsm") == Some("ok".into()), "{name}: LSM probe: {:?}", probe("lsm"));
    ensure!(log.contains("FW-RECORD-RC 0"), "{name}: freezewatch record failed");
    let records: Vec<Value> = between(log, "FW-TRACE-BEGIN", "FW-TRACE-END")?
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("trace lines")?;
    let header = records.iter().find(|r| r["type"] == "header").context("no header")?;
    let freeze_hook = header["hooks"].as_array().and_then(|h| h.iter().find(|h| h["feature"] == "freeze"));
    ensure!(
        freeze_hook.is_some_and(|h| h["hook"] == "fentry:freeze_super"),
        "{name}: the freeze hook is {freeze_hook:?}, not fentry"
    );
    let writes_hook =
        header["hooks"].as_array().and_then(|h| h.iter().find(|h| h["feature"] == "completed-writes"));
    ensure!(
        writes_hook.is_some_and(|h| h["hook"] == "fexit:vfs_write"),
        "{name}: completed writes use {writes_hook:?}, not fexit:vfs_write"
    );
    let ext4_hook = header["hooks"].as_array().and_then(|h| h.iter().find(|h| h["feature"] == "txn-ext4"));
    ensure!(
        ext4_hook.is_some_and(|h| h["hook"].as_str().is_some_and(|n| n.starts_with("tracepoint:ext4:"))),
        "{name}: ext4 transaction starts are not watched: {ext4_hook:?}"
    );
    let events: Vec<&Value> = records.iter().filter(|r| r["type"] == "event").collect();
    let freeze_thaw: Vec<&&Value> = events.iter().filter(|e| e["hook"] == "fentry:freeze_super").collect();
    let kinds: Vec<&str> = freeze_thaw.iter().filter_map(|e| e["kind"].as_str()).collect();
    ensure!(
        kinds == ["freeze_begin", "freeze_end", "freeze_begin", "freeze_end", "thaw_begin", "thaw_end"],
        "{name}: freeze/thaw events {kinds:?}"
    );
    // Field for field what the host's tracepoint tests assert (tests/tests/freeze_thaw.rs).
    for e in &freeze_thaw {
        ensure!(e["comm"] == "fsfreeze", "{name}: comm {e}");
        ensure!(e["sb"]["fstype"] == "ext4" && e["sb"]["mountpoint"] == "/tmp/m", "{name}: superblock {e}");
        ensure!(e["sb"]["dev"].as_str().is_some_and(|d| d.starts_with("7:")), "{name}: dev {e}");
    }
    let level = |e: &Value| (e["level_before"].as_u64(), e["level_after"].as_u64(), e["ret"].as_i64());
    ensure!(level(freeze_thaw[1]) == (Some(0), Some(4), Some(0)), "{name}: first freeze {}", freeze_thaw[1]);
    ensure!(
        level(freeze_thaw[3]) == (Some(4), Some(4), Some(-16)),
        "{name}: second freeze {}",
        freeze_thaw[3]
    );
    ensure!(freeze_thaw[3]["error"] == "EBUSY", "{name}: {}", freeze_thaw[3]);
    ensure!(level(freeze_thaw[5]) == (Some(4), Some(0), Some(0)), "{name}: thaw {}", freeze_thaw[5]);
    // freeze_super(sb) on 6.1 has no holder argument; from 6.6 on it says userspace.
    let holder = if name == "6.1" { Value::Null } else { "userspace".into() };
    ensure!(freeze_thaw[1]["holder"] == holder, "{name}: holder {}", freeze_thaw[1]);
    let findings =
        |kind: &str| records.iter().filter(|r| r["type"] == "finding" && r["kind"] == kind).count();
    ensure!(findings("slip") == 1, "{name}: {} slips, expected the dd write", findings("slip"));
    ensure!(
        records.iter().any(|r| r["type"] == "finding" && r["kind"] == "slip" && r["comm"] == "dd"),
        "{name}: the slip does not name dd"
    );
    ensure!(findings("freeze-failed") == 1, "{name}: freeze-failed findings");
    ensure!(
        findings("blocked-writer") == 1,
        "{name}: {} blocked writers, expected the one writer",
        findings("blocked-writer")
    );
    let footer = records.iter().find(|r| r["type"] == "footer").context("no footer")?;
    ensure!(footer["counters"]["lost_ringbuf_full"] == 0, "{name}: lost events {footer}");
    eprintln!("xtask: {name}: fentry path verified (freeze, EBUSY, thaw, slip, blocked writer)");
    Ok(())
}

pub fn vm_test(which: &str, freezewatch: &Path) -> Result<()> {
    ensure_packages()?;
    let selected: Vec<&(&str, &str)> =
        KERNELS.iter().filter(|(n, _)| which == "all" || which == *n).collect();
    ensure!(!selected.is_empty(), "unknown kernel {which}: use 6.1, 6.12 or all");
    let mut failures = Vec::new();
    for (name, pattern) in selected {
        let result = (|| -> Result<()> {
            let (dir, vmlinuz) = kernel(name, pattern)?;
            let initrd = root().join(format!("target/vm/initrd-{name}.gz"));
            initramfs(&dir, freezewatch, &initrd)?;
            let log = boot(name, &vmlinuz, &initrd)?;
            check(name, &log)
        })();
        if let Err(e) = result {
            eprintln!("xtask: {name}: FAILED: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("vm-test failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}
