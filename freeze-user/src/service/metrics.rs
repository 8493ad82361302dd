//! `watch --metrics ADDR`: the Prometheus metrics (the official `prometheus-client` crate), kept
//! up to date by the watch loop; `server.rs` serves them. Each per-filesystem family is declared
//! once (`per_filesystem!`), which registers it, makes its counters at 0 when a filesystem is
//! first seen, and drops its series when the filesystem is forgotten.
use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use freeze_model::{
    correlate::{Finding, FindingKind, SlipPath},
    event::{Event, EventKind, Superblock},
    oversight::FrozenNow,
    trace::{ActiveHook, Counters},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::Registry,
};

/// A filesystem that is not frozen and has not been seen for this long drops out of the metrics
/// (label sets stay bounded on hosts that mount and unmount all day).
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FsLabels {
    pub device: String,
    pub fstype: String,
    pub mountpoint: String,
}

impl FsLabels {
    fn of(sb: &Superblock) -> Self {
        Self {
            device: sb.dev.clone(),
            fstype: sb.fstype.clone(),
            mountpoint: sb.mountpoint.clone().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlipLabels {
    device: String,
    fstype: String,
    mountpoint: String,
    /// A `SlipPath`: `block`, `transaction` or `write`.
    path: String,
}

impl SlipLabels {
    fn of(l: &FsLabels, path: SlipPath) -> Self {
        let FsLabels { device, fstype, mountpoint } = l.clone();
        Self { device, fstype, mountpoint, path: path.as_str().into() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutputLabels {
    /// `findings` or `trace`.
    output: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    feature: String,
    hook: String,
}

type Histograms = Family<FsLabels, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    // 1 ms to about 4.4 hours, ×4 a bucket.
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// The per-filesystem families, each once: its field, type, metric name and help (and the slips,
/// labelled by path too, which the macro writes out itself). `counters` are
/// made at 0 when a filesystem is first seen (`increase()` over a series born at 1 is 0, so the
/// first slip of a filesystem would never alert); every family's series go when it is forgotten.
macro_rules! per_filesystem {
    (
        counters { $($c:ident: $cname:literal, $chelp:expr;)* }
        others { $($o:ident: $oty:ty = $omake:expr, $oname:literal, $ohelp:expr;)* }
    ) => {
        struct PerFs {
            $($c: Family<FsLabels, Counter>,)*
            $($o: $oty,)*
            /// Labelled by path too.
            slips: Family<SlipLabels, Counter>,
        }

        impl PerFs {
            fn register(r: &mut Registry) -> Self {
                $(let $c = Family::<FsLabels, Counter>::default(); r.register($cname, $chelp, $c.clone());)*
                $(let $o: $oty = $omake; r.register($oname, $ohelp, $o.clone());)*
                let slips = Family::<SlipLabels, Counter>::default();
                r.register("slips", "Writes that reached a frozen filesystem, by path", slips.clone());
                Self { $($c,)* $($o,)* slips }
            }

            /// A filesystem first seen: its counters at 0, slips of every path too.
            fn born(&self, l: &FsLabels) {
                $(let _ = self.$c.get_or_create(l);)*
                for path in SlipPath::ALL {
                    let _ = self.slips.get_or_create(&SlipLabels::of(l, *path));
                }
            }

            /// A filesystem forgotten: every series of it goes.
            fn forget(&self, l: &FsLabels) {
                $(self.$c.remove(l);)*
                $(self.$o.remove(l);)*
                for path in SlipPath::ALL {
                    self.slips.remove(&SlipLabels::of(l, *path));
                }
            }
        }
    };
}

per_filesystem! {
    counters {
        freezes: "freezes", "Freezes that completed";
        mounts_while_frozen: "mounts_while_frozen", "Mounts of the filesystem that landed while it was frozen";
        denied_mounts: "denied_mounts", "Mounts --deny-mounts refused (or in audit mode would have)";
        watchdog_thaws: "watchdog_thaws", "Thaws the watchdog made";
        watchdog_failures: "watchdog_failures",
            "Watchdog thaws that failed (each is tried again, less and less often)";
        suspends_orphaned: "suspends_orphaned",
            "Block-device freezes (device-mapper suspends) whose owner went while the device stayed \
             suspended: never thawed by the watchdog; `dmsetup resume` ends them";
        alerts: "alerts", "frozen-too-long, freezer-gone and suspend-orphaned findings raised";
    }
    others {
        level: Family<FsLabels, Gauge> = Family::default(), "freeze_level",
            "The filesystem's freeze level (0 unfrozen ... 4 frozen)";
        frozen_seconds: Family<FsLabels, Gauge<f64, AtomicU64>> = Family::default(), "frozen_seconds",
            "How long the filesystem has been frozen so far (0 when not)";
        freeze_duration: Histograms = Family::new_with_constructor(durations), "freeze_duration_seconds",
            "How long each freeze lasted, to its thaw";
        blocked: Family<FsLabels, Gauge> = Family::default(), "blocked_writers",
            "Tasks waiting at the filesystem's freeze gate now";
        wait_duration: Histograms = Family::new_with_constructor(durations), "blocked_wait_seconds",
            "How long each writer waited at the gate";
        freezer_gone: Family<FsLabels, Gauge> = Family::default(), "freezer_gone",
            "1 while the filesystem is frozen and its freezer is gone";
        suspend_orphaned: Family<FsLabels, Gauge> = Family::default(), "suspend_orphaned",
            "1 while the filesystem is frozen through its block device (a device-mapper suspend) and \
             the process that suspended it is gone: `dmsetup resume` ends it, never the watchdog";
    }
}

pub struct Metrics {
    registry: Arc<Registry>,
    fs: PerFs,
    events: Counter,
    lost: Counter,
    /// The loss total last reported (the counter grows by the difference).
    lost_seen: u64,
    hook_hits: Family<HookLabels, Gauge>,
    hook_info: Family<FeatureLabels, Gauge>,
    output_dropped: Family<OutputLabels, Counter>,
    /// Per filesystem: its labels and when it was last seen.
    seen: HashMap<String, (FsLabels, Instant)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("freezewatch");
        let fs = PerFs::register(&mut r);
        let events = Counter::default();
        r.register("events", "Events received from the kernel", events.clone());
        let lost = Counter::default();
        r.register("lost_events", "Events lost (ring buffer full or undecodable)", lost.clone());
        let hook_hits = Family::<HookLabels, Gauge>::default();
        r.register("hook_hits", "How often each hook's programs ran", hook_hits.clone());
        let hook_info = Family::<FeatureLabels, Gauge>::default();
        r.register(
            "hook_info",
            "Which hook each feature uses (1; `none` when none attached)",
            hook_info.clone(),
        );
        let output_dropped = Family::<OutputLabels, Counter>::default();
        r.register(
            "output_dropped",
            "Lines dropped from an output (findings, trace) while it was blocked and the queue full",
            output_dropped.clone(),
        );
        r.register("build", "The freezewatch build", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        Self {
            registry: Arc::new(r),
            fs,
            events,
            lost,
            lost_seen: 0,
            hook_hits,
            hook_info,
            output_dropped,
            seen: HashMap::new(),
        }
    }

    /// Lines each output has dropped in all (from the output queue).
    pub fn output_dropped(&mut self, totals: &[(&'static str, u64)]) {
        for (output, total) in totals {
            let c = self.output_dropped.get_or_create(&OutputLabels { output: (*output).into() });
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// Which hook each feature uses (known once the recorder attached).
    pub fn hooks(&mut self, hooks: &[ActiveHook]) {
        for h in hooks {
            let hook = h.hook.clone().unwrap_or_else(|| "none".into());
            self.hook_info.get_or_create(&FeatureLabels { feature: h.feature.clone(), hook }).set(1);
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The labels of `sb`, made once per filesystem (this runs for every event).
    fn labels(&mut self, sb: &Superblock) -> FsLabels {
        let now = Instant::now();
        if let Some((labels, last)) = self.seen.get_mut(&sb.id) {
            *last = now;
            // The mount point may be learnt after the first event: keep the better labels.
            if labels.mountpoint.is_empty() && sb.mountpoint.is_some() {
                *labels = FsLabels::of(sb);
            }
            return labels.clone();
        }
        let labels = FsLabels::of(sb);
        self.seen.insert(sb.id.clone(), (labels.clone(), now));
        self.fs.born(&labels);
        labels
    }

    pub fn event(&mut self, ev: &Event) {
        self.events.inc();
        let Some(sb) = ev.sb.as_ref() else { return };
        let labels = self.labels(sb);
        match ev.kind {
            EventKind::FreezeBegin | EventKind::FreezeEnd | EventKind::ThawBegin | EventKind::ThawEnd => {
                if let Some(level) = ev.level_after {
                    self.fs.level.get_or_create(&labels).set(i64::from(level));
                }
                if ev.kind == EventKind::FreezeEnd && ev.ret == Some(0) {
                    self.fs.freezes.get_or_create(&labels).inc();
                }
            }
            EventKind::WriterBlocked => _ = self.fs.blocked.get_or_create(&labels).inc(),
            EventKind::WriterUnblocked => {
                let g = self.fs.blocked.get_or_create(&labels);
                if g.get() > 0 {
                    g.dec();
                }
            }
            _ => {}
        }
    }

    pub fn finding(&mut self, f: &Finding) {
        let labels = self.labels(&f.sb);
        match f.kind {
            FindingKind::Slip => {
                if let Some(path) = f.slip_path() {
                    self.fs.slips.get_or_create(&SlipLabels::of(&labels, path)).inc();
                }
            }
            FindingKind::BlockedWriter => {
                if let Some(d) = f.duration_ns {
                    self.fs.wait_duration.get_or_create(&labels).observe(d as f64 / 1e9);
                }
            }
            FindingKind::MountWhileFrozen => _ = self.fs.mounts_while_frozen.get_or_create(&labels).inc(),
            FindingKind::MountDenied => _ = self.fs.denied_mounts.get_or_create(&labels).inc(),
            FindingKind::ThawedByWatchdog => _ = self.fs.watchdog_thaws.get_or_create(&labels).inc(),
            FindingKind::WatchdogFailed => _ = self.fs.watchdog_failures.get_or_create(&labels).inc(),
            FindingKind::FrozenTooLong | FindingKind::FreezerGone => {
                _ = self.fs.alerts.get_or_create(&labels).inc()
            }
            FindingKind::SuspendOrphaned => {
                self.fs.suspends_orphaned.get_or_create(&labels).inc();
                self.fs.alerts.get_or_create(&labels).inc();
            }
            _ => {}
        }
    }

    /// A freeze of `sb` ended after `d` ns.
    pub fn freeze_ended(&mut self, sb: &Superblock, d: u64) {
        let labels = self.labels(sb);
        self.fs.freeze_duration.get_or_create(&labels).observe(d as f64 / 1e9);
    }

    pub fn counters(&mut self, c: &Counters) {
        let total = c.lost();
        self.lost.inc_by(total.saturating_sub(self.lost_seen));
        self.lost_seen = self.lost_seen.max(total);
        for (hook, hits) in &c.hook_hits {
            self.hook_hits
                .get_or_create(&HookLabels { hook: hook.clone() })
                .set(i64::try_from(*hits).unwrap_or(i64::MAX));
        }
    }

    /// The time is `now_ns`; `frozen` are the filesystems frozen now.
    pub fn tick<'a>(&mut self, now_ns: u64, frozen: impl Iterator<Item = FrozenNow<'a>>) {
        let mut frozen_ids = Vec::new();
        for f in frozen {
            let labels = self.labels(f.sb);
            self.fs.frozen_seconds.get_or_create(&labels).set(now_ns.saturating_sub(f.since) as f64 / 1e9);
            self.fs.freezer_gone.get_or_create(&labels).set(i64::from(f.gone));
            self.fs.suspend_orphaned.get_or_create(&labels).set(i64::from(f.suspend_orphaned));
            frozen_ids.push(f.sb.id.clone());
        }
        let mut forget = Vec::new();
        for (id, (labels, last)) in &self.seen {
            if frozen_ids.contains(id) {
                continue;
            }
            self.fs.frozen_seconds.get_or_create(labels).set(0.0);
            self.fs.freezer_gone.get_or_create(labels).set(0);
            self.fs.suspend_orphaned.get_or_create(labels).set(0);
            if last.elapsed() > FORGET_AFTER {
                forget.push(id.clone());
            }
        }
        for id in forget {
            if let Some((labels, _)) = self.seen.remove(&id) {
                self.fs.forget(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use freeze_model::{
        correlate::{self, Correlator},
        trace::{Contents, read_trace},
    };
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// The recorded fixture through the metrics, as the watch loop feeds them.
    #[test]
    fn a_recording_adds_up_in_the_metrics_and_a_forgotten_filesystem_drops_out() {
        let text = include_str!("../../../tests/fixtures/cycles-ext4-xfs.ndjson");
        let contents = Contents::from_records(read_trace(text.as_bytes()).expect("fixture"));
        let mut m = Metrics::new();
        m.hooks(&contents.header.as_ref().expect("header").hooks);
        let mut correlator = Correlator::new(correlate::Options::default());
        let mut findings = Vec::new();
        for ev in contents.events.iter().cloned() {
            m.event(&ev);
            findings.extend(correlator.push(ev));
        }
        findings.extend(correlator.finish(contents.end_ns()).findings);
        for f in &findings {
            m.finding(f);
        }
        let mut text = String::new();
        encode(&mut text, &m.registry()).expect("encodes");
        let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
        let xfs = "device=\"7:1\",fstype=\"xfs\",mountpoint=\"/tmp/fwrec/b\"";
        assert_eq!(
            line(&format!("freezewatch_freezes_total{{{xfs}}}")).as_deref(),
            Some(&*format!("freezewatch_freezes_total{{{xfs}}} 30"))
        );
        assert_eq!(
            line(&format!("freezewatch_slips_total{{{xfs},path=\"block\"}}")).as_deref(),
            Some(&*format!("freezewatch_slips_total{{{xfs},path=\"block\"}} 30"))
        );
        assert!(
            line("freezewatch_blocked_wait_seconds_count{device=\"7:0\"").is_some_and(|l| l.ends_with(" 30")),
            "{text}"
        );
        assert!(
            text.contains("freezewatch_hook_info{feature=\"freeze\",hook=\"tracepoint:syscalls:ioctl\"} 1"),
            "{text}"
        );
        assert!(text.contains("freezewatch_events_total "), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text");

        // Not frozen and unseen for longer than FORGET_AFTER: its label sets go.
        for (_, last) in m.seen.values_mut() {
            *last = Instant::now() - FORGET_AFTER - Duration::from_secs(1);
        }
        m.tick(0, std::iter::empty());
        let mut after = String::new();
        encode(&mut after, &m.registry()).expect("encodes");
        assert!(!after.contains("mountpoint=\"/tmp/fwrec/b\""), "{after}");
        assert!(after.contains("freezewatch_build_info{version="), "global metrics stay");
    }
}
