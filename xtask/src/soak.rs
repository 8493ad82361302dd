//! `cargo xtask soak`: `freezewatch watch` (release build, metrics on) while a loop ext4 in a temp
//! dir is frozen and thawed N times (10,000 by default) under a write load; prints watch's resident
//! memory at the start, along the way and at the end, and the CPU it used, and writes
//! target/bench/soak.json. Root only. Every freeze is undone: by the loop itself, and by the
//! filesystem's guard (thaw, unmount, detach) when anything fails.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use serde_json::json;

use crate::{
    scratch::{LoopFs, Reaped, need_root},
    workspace_root,
};

/// (resident KiB, CPU seconds in user and system mode) of `pid`.
pub(crate) fn usage(pid: u32) -> Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based, in ticks).
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((rss, ticks as f64 / hz))
}

pub fn soak(bin: &Path, cycles: u64) -> Result<()> {
    need_root("cargo xtask soak")?;
    let scratch = std::env::temp_dir().join(format!("freezewatch-soak-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let fs = LoopFs::new("ext4", 256, &scratch, "mnt")?;
    let out_dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let findings = scratch.join("findings.ndjson");
    let stderr = scratch.join("watch.stderr");
    let watch = Reaped(
        Command::new(bin)
            .args(["watch", "--alert-frozen", "1h", "--metrics", &format!("127.0.0.1:{port}"), "--findings"])
            .arg(&findings)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("starting freezewatch watch")?,
    );
    let start = Instant::now();
    while !std::fs::read_to_string(&stderr).unwrap_or_default().contains("freezewatch: watching") {
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "watch did not attach: {}",
            std::fs::read_to_string(&stderr)?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The write load: small overwrites, held at the gate while frozen.
    let load = Reaped(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do dd if=/dev/zero of={}/load bs=4k count=16 conv=notrunc status=none; done",
                fs.mnt.display()
            ))
            .spawn()?,
    );
    std::thread::sleep(Duration::from_secs(1));
    let pid = watch.0.id();
    let (rss_start, cpu_start) = usage(pid)?;
    let mut samples = vec![json!({"cycle": 0, "rss_kib": rss_start})];
    let began = Instant::now();
    for cycle in 1..=cycles {
        fs.fsfreeze("-f")?;
        fs.fsfreeze("-u")?;
        if cycle % 1000 == 0 || cycle == cycles {
            let (rss, _) = usage(pid)?;
            eprintln!("xtask: soak: {cycle} cycles, watch RSS {rss} KiB");
            samples.push(json!({"cycle": cycle, "rss_kib": rss}));
        }
    }
    let wall = began.elapsed().as_secs_f64();
    // Let watch catch up with the last events before the counts are read.
    std::thread::sleep(Duration::from_secs(2));
    let (rss_end, cpu_end) = usage(pid)?;
    drop(load);
    let seen = freezes_seen(port, &fs.mnt)?;
    let cpu = cpu_end - cpu_start;
    println!("{:<34} {:>12}", "cycles (freeze + thaw)", cycles);
    println!("{:<34} {:>12}", "freezes watch counted", seen);
    println!("{:<34} {:>12.1}", "wall s", wall);
    println!("{:<34} {:>12}", "watch RSS at start KiB", rss_start);
    println!("{:<34} {:>12}", "watch RSS at end KiB", rss_end);
    println!("{:<34} {:>12.2}", "watch CPU s (user + system)", cpu);
    println!("{:<34} {:>12.1}", "watch CPU % of one core", 100.0 * cpu / wall);
    let out = out_dir.join("soak.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({"binary": bin, "cycles": cycles, "freezes_counted": seen,
            "wall_s": wall, "rss_start_kib": rss_start, "rss_end_kib": rss_end, "cpu_s": cpu, "rss_samples": samples}))?,
    )?;
    eprintln!("xtask: results in {}", out.display());
    drop(watch);
    drop(fs);
    let _ = std::fs::remove_dir_all(&scratch);
    ensure!(seen == cycles, "watch counted {seen} freezes of {cycles}: events were lost");
    Ok(())
}

/// `freezewatch_freezes_total` of the filesystem at `mnt`, from watch's metrics.
fn freezes_seen(port: u16, mnt: &Path) -> Result<u64> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let wanted = format!("mountpoint=\"{}\"", mnt.display());
    text.lines()
        .filter(|l| l.starts_with("freezewatch_freezes_total{") && l.contains(&wanted))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .context("watch's metrics have no freezes_total for the soak filesystem")
}
