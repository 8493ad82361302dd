//! The shipped Prometheus alert rules (contrib/prometheus/) pass `promtool check rules` and their
//! unit tests (`promtool test rules`), and name only metrics `watch` exports. promtool comes with
//! Debian's `prometheus` package, which `cargo xtask setup` installs; without it the test skips,
//! unless FREEZEWATCH_REQUIRE_KERNEL=1 (CI).
use std::{path::Path, process::Command};

fn contrib() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus")
}

#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        assert!(
            std::env::var_os("FREEZEWATCH_REQUIRE_KERNEL").is_none_or(|v| v != "1"),
            "FREEZEWATCH_REQUIRE_KERNEL=1 but promtool is not installed (cargo xtask setup installs prometheus)"
        );
        eprintln!("SKIPPED the_alert_rules_pass_their_promtool_tests: no promtool");
        return;
    };
    assert!(version.status.success());
    for args in [["check", "rules", "freezewatch-rules.yml"], ["test", "rules", "freezewatch-rules.test.yml"]]
    {
        let out = Command::new("promtool").args(args).current_dir(contrib()).output().expect("runs promtool");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

#[test]
fn the_rules_name_only_metrics_watch_exports() {
    // A recording through the metrics, so that every family has a sample to show.
    let trace = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cycles-ext4-xfs.ndjson"),
    )
    .unwrap();
    let contents = freeze_model::trace::Contents::from_records(
        freeze_model::trace::read_trace(trace.as_bytes()).unwrap(),
    );
    let mut metrics = freezewatch::watch::metrics::Metrics::new();
    let mut correlator = freeze_model::correlate::Correlator::new(Default::default());
    for ev in contents.events.iter().cloned() {
        metrics.event(&ev);
        for f in correlator.push(ev) {
            metrics.finding(&f);
        }
    }
    let sb = contents.events.iter().find_map(|e| e.sb.clone()).unwrap();
    metrics.tick(1, std::iter::once((&*sb, 0, true)));
    // What watch reports at start and at every tick: its hooks, and its outputs' drops (0).
    metrics.hooks(&[freeze_model::trace::ActiveHook {
        feature: "freeze".into(),
        hook: None,
        fallbacks: Vec::new(),
        limits: None,
    }]);
    metrics.output_dropped(&[("findings", 0), ("trace", 0)]);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry()).expect("encodes");
    // `# TYPE name kind`: counters' samples are name_total, histograms' name_count and so on.
    let exported: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| if kind == "counter" { format!("{name}_total") } else { name.to_owned() })
        .collect();
    assert!(exported.iter().any(|n| n == "freezewatch_frozen_seconds"), "{text}");
    let rules = std::fs::read_to_string(contrib().join("freezewatch-rules.yml")).unwrap();
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("freezewatch_"))
    {
        assert!(
            exported.iter().any(|n| n == name),
            "the rules use {name}, which watch does not export: {exported:?}"
        );
    }
}
