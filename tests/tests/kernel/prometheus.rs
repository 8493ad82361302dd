//! `freezewatch watch --metrics` scraped by a real Prometheus server (Debian's `prometheus`,
//! which `cargo xtask setup` installs), started by the test on a loopback port with a 1 s scrape
//! interval and stopped by it: during a freeze its query API gives the filesystem's level 4 and a
//! growing frozen-seconds, the slip counter rises after a device write, and after the thaw both
//! are 0. The shipped alert rules, evaluated by it, reach a webhook through a real Alertmanager
//! (`prometheus-alertmanager`) for the first slip of a filesystem, a long freeze and a crashed
//! freezer; events the kernel drops are counted. Host only (the metrics code is the same on every kernel; the server's binary stays out
//! of the guests' initramfs). Skipped where Prometheus is missing, unless
//! FREEZEWATCH_REQUIRE_KERNEL=1.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use freezewatch_tests::{
    Frozen, FsType, LoopFs, Watcher, free_port, http_get, kernel_available, kernel_required, limit,
};

/// A server of the Prometheus family (prometheus, prometheus-alertmanager) the test starts on a
/// loopback port, with its files in its own temp dir; killed in Drop.
struct Daemon {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `program ARGS` listening on 127.0.0.1 only, and waits (bounded) until it is ready.
    fn start(program: &str, dir: tempfile::TempDir, args: &[String]) -> Self {
        let port = free_port();
        let child = Command::new(program)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let daemon = Daemon { child, port, _dir: dir };
        freezewatch_tests::poll_until(limit(60), &format!("{program} did not get ready"), || {
            http_get(daemon.port, "/-/ready").filter(|r| r.contains(" 200 ")).map(|_| ())
        });
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        freezewatch_tests::kill_and_reap(&mut self.child);
    }
}

/// A Prometheus server scraping watch every second.
struct Prometheus {
    daemon: Daemon,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        Self::start_with(target, None)
    }

    /// The same, evaluating `rules` (a rules file's text) every second and sending what fires
    /// to the Alertmanager on `alertmanager` (host:port).
    fn start_with(target: &str, alerting: Option<(&str, &str)>) -> Self {
        Self::start_configured(target, "", alerting)
    }

    /// The same, with `scrape` (YAML lines of the scrape job: scheme, TLS, auth) added.
    fn start_scraping(target: &str, scrape: &str) -> Self {
        Self::start_configured(target, scrape, None)
    }

    fn start_configured(target: &str, scrape: &str, alerting: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let mut text = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: freezewatch\n    static_configs:\n      - targets: ['{target}']\n{scrape}"
        );
        if let Some((rules, alertmanager)) = alerting {
            let path = dir.path().join("rules.yml");
            std::fs::write(&path, rules).expect("rules");
            text += &format!(
                "rule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        \
                 - targets: ['{alertmanager}']\n",
                path.display()
            );
        }
        std::fs::write(&config, text).expect("config");
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        ];
        Prometheus { daemon: Daemon::start("prometheus", dir, &args) }
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
        let response = http_get(self.daemon.port, &format!("/api/v1/query?query={encoded}"))?;
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

/// Debian's Alertmanager, started by the test on a loopback port (clustering off: it listens on
/// nothing else) and sending every alert at once to the webhook at `webhook`; killed in Drop.
struct Alertmanager {
    daemon: Daemon,
}

impl Alertmanager {
    fn start(webhook: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: [alertname, mountpoint]\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
                 webhook_configs:\n      - url: 'http://{webhook}/'\n        send_resolved: false\n"
            ),
        )
        .expect("config");
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            "--cluster.listen-address=".to_owned(),
        ];
        Alertmanager { daemon: Daemon::start("prometheus-alertmanager", dir, &args) }
    }
}

/// An HTTP server on a loopback port that keeps the body of every request (Alertmanager's
/// webhook notifications) and answers 200; it stops when dropped.
struct Webhook {
    addr: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Self {
        use std::io::{BufRead as _, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopping) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = std::io::BufReader::new(stream);
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    kept.lock().expect("bodies").push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        Self { addr, bodies, stop, thread: Some(thread) }
    }

    /// Waits (at most `limit(40)`) for a firing alert named `name` about `mountpoint`.
    fn wait_alert(&self, name: &str, mountpoint: &str) -> serde_json::Value {
        freezewatch_tests::poll_until(
            limit(40),
            &format!("no {name} for {mountpoint} reached the webhook"),
            || {
                self.bodies.lock().expect("bodies").iter().find_map(|b| {
                    let note: serde_json::Value = serde_json::from_str(b).ok()?;
                    note["alerts"]
                        .as_array()?
                        .iter()
                        .find(|a| {
                            a["status"] == "firing"
                                && a["labels"]["alertname"] == name
                                && a["labels"]["mountpoint"] == mountpoint
                        })
                        .cloned()
                })
            },
        )
    }

    fn alerts_named(&self, name: &str, mountpoint: &str) -> usize {
        self.bodies
            .lock()
            .expect("bodies")
            .iter()
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == name && a["labels"]["mountpoint"] == mountpoint)
            .count()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shipped rules, with the long-freeze threshold at 3 s instead of 5 minutes (a test cannot
/// wait that long; promtool's tests check the real threshold).
fn rules_for_a_test() -> String {
    let rules = include_str!("../../../contrib/prometheus/freezewatch-rules.yml");
    assert!(rules.contains("expr: freezewatch_frozen_seconds > 300"), "the long-freeze rule changed");
    rules.replace("expr: freezewatch_frozen_seconds > 300", "expr: freezewatch_frozen_seconds > 3")
}

#[test]
fn the_shipped_rules_deliver_the_first_slip_a_long_freeze_and_a_crashed_freezer_through_alertmanager() {
    let name =
        "the_shipped_rules_deliver_the_first_slip_a_long_freeze_and_a_crashed_freezer_through_alertmanager";
    if !kernel_available(name) {
        return;
    }
    for tool in ["prometheus", "prometheus-alertmanager"] {
        if Command::new(tool).arg("--version").output().is_err() {
            assert!(!kernel_required(), "FREEZEWATCH_REQUIRE_KERNEL=1 but {tool} is not installed");
            eprintln!("SKIPPED {name}: no {tool}");
            return;
        }
    }
    let slipped = LoopFs::new(FsType::Ext4).expect("fs");
    let abandoned = LoopFs::new(FsType::Xfs).expect("fs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let watch = Watcher::start(&["--metrics", &addr]).expect("watch");
    let webhook = Webhook::start();
    let am = Alertmanager::start(&webhook.addr);
    let prom =
        Prometheus::start_with(&addr, Some((&rules_for_a_test(), &format!("127.0.0.1:{}", am.daemon.port))));
    prom.wait_for("up{job=\"freezewatch\"}", |v| v == 1.0);

    // The first slip of a filesystem: its counter was scraped at 0 before it rose.
    let m = slipped.mnt();
    let frozen = Frozen::new(&slipped).expect("freeze");
    prom.wait_for(&format!("freezewatch_slips_total{{mountpoint=\"{m}\",path=\"block\"}}"), |v| v == 0.0);
    slipped.write_device().expect("dd to the device");
    let slip = webhook.wait_alert("FrozenFilesystemModified", m);
    assert_eq!(slip["labels"]["path"], "block", "{slip}");
    // Still frozen past the (test's) threshold: a long freeze.
    let long = webhook.wait_alert("FilesystemFrozenTooLong", m);
    assert!(
        long["annotations"]["summary"].as_str().is_some_and(|s| s.contains("has been frozen for")),
        "{long}"
    );
    drop(frozen);

    // A freezer that crashed: the script holding the freeze is killed.
    let n = abandoned.mnt();
    let mut script = Command::new("sh")
        .arg("-c")
        .arg(format!("fsfreeze -f {n} && exec sleep 600"))
        .stdin(Stdio::null())
        .spawn()
        .expect("the freezer");
    watch.wait_sample("freezewatch_freeze_level", n, "", |v| v == 4.0);
    freezewatch_tests::kill_and_reap(&mut script);
    let gone = webhook.wait_alert("FilesystemFreezerGone", n);
    assert_eq!(gone["labels"]["severity"], "critical", "{gone}");
    // Each came for its own filesystem only.
    assert_eq!(webhook.alerts_named("FrozenFilesystemModified", n), 0);
    assert_eq!(webhook.alerts_named("FilesystemFreezerGone", m), 0, "the test, which froze it, still runs");
    // (The LoopFs guards thaw both.)
}

#[test]
fn events_lost_in_the_kernel_are_counted_in_the_metrics() {
    if !kernel_available("events_lost_in_the_kernel_are_counted_in_the_metrics") {
        return;
    }
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let watch = Watcher::start(&[]).expect("watch");
    let frozen = Frozen::new(&fs).expect("freeze");
    watch.wait_sample("freezewatch_freeze_level", fs.mnt(), "", |v| v == 4.0);
    let lost = |w: &Watcher| {
        w.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("freezewatch_lost_events_total ")?.trim().parse::<f64>().ok())
    };
    assert_eq!(lost(&watch), Some(0.0), "{}", watch.metrics());
    // watch stops reading; 40,000 block writes to the frozen device (each an event; the ring
    // buffer holds about 23,000) fill the ring buffer, and the kernel counts what it drops.
    watch.signal(libc::SIGSTOP);
    let first_sector = fs.blocks_4k() * 8 - 40_008;
    let dd = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", fs.loopdev), "bs=512", "count=40000"])
        .args([&format!("seek={first_sector}"), "oflag=direct", "conv=notrunc", "status=none"])
        .status();
    watch.signal(libc::SIGCONT);
    assert!(dd.expect("dd runs").success());
    let total = freezewatch_tests::poll_until(limit(30), "lost events never showed", || {
        lost(&watch).filter(|v| *v > 0.0)
    });
    let slips = watch.wait_sample("freezewatch_slips_total", fs.mnt(), "path=\"block\"", |v| v > 0.0);
    eprintln!("{total} events lost, {slips} slips counted");
    drop(frozen);
}

/// A self-signed certificate for 127.0.0.1 and its key (PKCS#8), made by openssl in `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by `cargo xtask setup`");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// `curl` of `url` with `args`; its HTTP status code (0 when no HTTP answer came).
fn curl_status(url: &str, args: &[&str]) -> u32 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed by `cargo xtask setup`");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn a_web_config_file_puts_the_metrics_behind_tls_and_basic_auth_and_prometheus_scrapes_them() {
    let name = "a_web_config_file_puts_the_metrics_behind_tls_and_basic_auth_and_prometheus_scrapes_them";
    if !kernel_available(name) {
        return;
    }
    if Command::new("prometheus").arg("--version").output().is_err() {
        assert!(!kernel_required(), "FREEZEWATCH_REQUIRE_KERNEL=1 but prometheus is not installed");
        eprintln!("SKIPPED {name}: no prometheus");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = self_signed(dir.path());
    let hash = bcrypt::hash("s3cret", 6).expect("bcrypt");
    let web = dir.path().join("web.yml");
    // Relative paths: from the file's directory, as exporters read them.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  \
             prometheus: '{hash}'\n"
        ),
    )
    .expect("web config");
    let fs = LoopFs::new(FsType::Ext4).expect("fs");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _watch = Watcher::start(&["--metrics", &addr, "--web.config.file", web.to_str().expect("UTF-8")])
        .expect("watch");
    let url = format!("https://{addr}/metrics");
    let ca = cert.to_str().expect("UTF-8");
    assert_eq!(curl_status(&format!("http://{addr}/metrics"), &[]), 0, "no plain HTTP answer");
    assert_eq!(curl_status(&url, &["--cacert", ca]), 401, "no credentials");
    assert_eq!(curl_status(&url, &["--cacert", ca, "-u", "prometheus:wrong"]), 401, "a wrong password");
    assert_eq!(curl_status(&url, &["--cacert", ca, "-u", "prometheus:s3cret"]), 200);
    // Prometheus, told the CA and the credentials, scrapes it.
    let prom = Prometheus::start_scraping(
        &addr,
        &format!(
            "    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n      \
         password: s3cret\n"
        ),
    );
    prom.wait_for("up{job=\"freezewatch\"}", |v| v == 1.0);
    let m = fs.mnt();
    let _frozen = Frozen::new(&fs).expect("freeze");
    prom.wait_for(&format!("freezewatch_freeze_level{{mountpoint=\"{m}\"}}"), |v| v == 4.0);
    assert!(key.exists());
}
