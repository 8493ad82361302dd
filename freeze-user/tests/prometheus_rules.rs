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

/// The sample names watch exports once every family has a sample: a recording through the
/// metrics, a frozen filesystem whose suspender is gone, its hooks and its outputs.
fn exported() -> std::collections::BTreeSet<String> {
    let trace = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cycles-ext4-xfs.ndjson"),
    )
    .unwrap();
    let contents = freeze_model::trace::Contents::from_records(
        freeze_model::trace::read_trace(trace.as_bytes()).unwrap(),
    );
    let mut metrics = freeze_user::service::metrics::Metrics::new();
    let mut correlator = freeze_model::correlate::Correlator::new(Default::default());
    let mut findings = Vec::new();
    for ev in contents.events.iter().cloned() {
        metrics.event(&ev);
        for f in correlator.push(ev) {
            metrics.finding(&f);
            findings.push(f);
        }
    }
    let sb = contents.events.iter().find_map(|e| e.sb.clone()).unwrap();
    // A freeze that ended, a writer's wait at the gate, the hooks' hits.
    metrics.freeze_ended(&sb, 1_000_000);
    let mut waited = findings.pop().expect("the recording has findings");
    (waited.kind, waited.duration_ns) = (freeze_model::correlate::FindingKind::BlockedWriter, Some(1_000));
    metrics.finding(&waited);
    metrics.counters(&freeze_model::trace::Counters {
        hook_hits: [("fentry:freeze_super".to_owned(), 1)].into(),
        ..Default::default()
    });
    let now = freeze_model::oversight::FrozenNow { sb: &sb, since: 0, gone: true, suspend_orphaned: true };
    metrics.tick(1, std::iter::once(now));
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
    // `# TYPE name kind`: counters' samples are name_total, info's name_info; histograms are
    // named by their family.
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            "info" => format!("{name}_info"),
            _ => name.to_owned(),
        })
        .collect()
}

/// The metric names in `text`: `freezewatch_` and a lowercase word (not the package's file name).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.strip_prefix("freezewatch_").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_lowercase()))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_rules_name_only_metrics_watch_exports() {
    let exported = exported();
    assert!(exported.contains("freezewatch_frozen_seconds"), "{exported:?}");
    let rules = std::fs::read_to_string(contrib().join("freezewatch-rules.yml")).unwrap();
    for name in metric_names(&rules) {
        assert!(exported.contains(&name), "the rules use {name}, which watch does not export: {exported:?}");
    }
}

/// Every metric the README names is one watch exports, and every one watch exports is named there.
#[test]
fn the_readme_names_exactly_the_metrics_watch_exports() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    assert_eq!(metric_names(&readme), exported(), "metric names in the README vs what watch exports");
}
