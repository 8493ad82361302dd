//! `freezewatch watch --metrics` scraped by a real Prometheus server (Debian's `prometheus`,
//! which `cargo xtask setup` installs), started by the test on a loopback port with a 1 s scrape
//! interval and stopped by it: during a freeze its query API gives the filesystem's level 4 and a
//! growing frozen-seconds, the slip counter rises after a device write, and after the thaw both
//! are 0. Host only (the metrics code is the same on every kernel; the server's binary stays out
//! of the guests' initramfs). Skipped where Prometheus is missing, unless
//! FREEZEWATCH_REQUIRE_KERNEL=1.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use freezewatch_tests::{
    Frozen, FsType, LoopFs, Watcher, free_port, http_get, kernel_available, kernel_required, limit,
};

/// A Prometheus server the test starts on a loopback port, scraping `target` every second; killed
/// in Drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: freezewatch\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr"))
            .spawn()
            .expect("starts prometheus");
        let p = Prometheus { child, port, _dir: dir };
        let start = Instant::now();
        while !http_get(p.port, "/-/ready")
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
        {
            assert!(start.elapsed() < limit(60), "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The value of an instant query's first sample, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let response = http_get(self.port, &format!("/api/v1/query?query={encoded}"))?;
        let body = response.split_once("\r\n\r\n")?.1;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until `ok` holds for its value (at most `limit(20)`); returns the value.
    fn wait_for(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(v) = self.query(promql).filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                start.elapsed() < limit(20),
                "prometheus never saw {promql} as wanted (last: {:?})",
                self.query(promql)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_level_frozen_seconds_and_slips() {
    if !kernel_available("a_real_prometheus_scrapes_the_level_frozen_seconds_and_slips") {
        return;
    }
    if Command::new("prometheus").arg("--version").output().is_err() {
        assert!(!kernel_required(), "FREEZEWATCH_REQUIRE_KERNEL=1 but prometheus is not installed");
        eprintln!("SKIPPED a_real_prometheus_scrapes_the_level_frozen_seconds_and_slips: no prometheus");
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _watch = Watcher::start(&["--metrics", &addr]).expect("watch");
    let prom = Prometheus::start(&addr);
    prom.wait_for("up{job=\"freezewatch\"}", |v| v == 1.0);
    let m = fs.mnt();
    let frozen = Frozen::new(&fs).expect("freeze");
    prom.wait_for(&format!("freezewatch_freeze_level{{mountpoint=\"{m}\"}}"), |v| v == 4.0);
    let first = prom.wait_for(&format!("freezewatch_frozen_seconds{{mountpoint=\"{m}\"}}"), |v| v > 0.0);
    prom.wait_for(&format!("freezewatch_frozen_seconds{{mountpoint=\"{m}\"}}"), |v| v > first);
    fs.write_device().expect("dd to the device");
    prom.wait_for(&format!("freezewatch_slips_total{{mountpoint=\"{m}\",path=\"block\"}}"), |v| v == 1.0);
    drop(frozen);
    prom.wait_for(&format!("freezewatch_freeze_level{{mountpoint=\"{m}\"}}"), |v| v == 0.0);
    prom.wait_for(&format!("freezewatch_frozen_seconds{{mountpoint=\"{m}\"}}"), |v| v == 0.0);
}
