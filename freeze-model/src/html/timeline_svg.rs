//! The SVG timeline of one filesystem: lanes of bars (freezes, drains, blocked writers), the
//! freeze level over time, finding marks, and the time axis.
use std::fmt::Write as _;

use super::{Mark, Page, WAIT_ROWS, render::esc};
use crate::{
    timeline::{Item, Track},
    units::fmt_secs,
};

/// The SVG's user units: labels on the left, then the plot.
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 120.0;
const PLOT: f64 = WIDTH - LABEL - 10.0;
const ROW: f64 = 16.0;
const WAIT_ROW: f64 = 9.0;
/// Shapes whose gap is below this many units are drawn as one.
const MERGE_GAP: f64 = 1.0;
/// Marks of a kind within this many units share one mark.
const MARK_BUCKET: f64 = 4.0;

/// A bar on a row, possibly standing for several shapes merged.
struct Bar {
    x0: f64,
    x1: f64,
    class: String,
    title: String,
    count: usize,
}

/// Merges bars (sorted by x0) that overlap or nearly touch; a merged bar says how many it holds.
fn merge(mut bars: Vec<Bar>, what: &str) -> Vec<Bar> {
    bars.sort_by(|a, b| a.x0.total_cmp(&b.x0));
    let mut out: Vec<Bar> = Vec::new();
    for bar in bars {
        match out.last_mut() {
            Some(last) if bar.x0 - last.x1 < MERGE_GAP => {
                last.x1 = last.x1.max(bar.x1);
                last.count += bar.count;
                if bar.class != last.class && !last.class.contains(" many") {
                    last.class.push_str(" many");
                }
            }
            _ => out.push(bar),
        }
    }
    for bar in &mut out {
        if bar.count > 1 {
            bar.title = format!(
                "{} {what} here (zoom in with the Perfetto export); the first: {}",
                bar.count, bar.title
            );
        }
    }
    out
}

/// What one filesystem's timeline shows, by lane: freezes by nesting row, the drains under the
/// first, writers' waits packed into rows, and the freeze level over time.
struct Lanes {
    freeze_rows: Vec<Vec<Bar>>,
    drains: Vec<Bar>,
    wait_rows: Vec<(u64, Vec<Bar>)>,
    levels: Vec<(u64, u32)>,
}

/// Positions and labels on the plot.
struct Scale<'a> {
    p: &'a Page,
    span: f64,
}

impl Scale<'_> {
    fn x(&self, ts: u64) -> f64 {
        LABEL + (ts.saturating_sub(self.p.start_ns) as f64 / self.span * PLOT).clamp(0.0, PLOT)
    }

    fn rel(&self, ts: u64) -> String {
        format!("+{}", fmt_secs(ts.saturating_sub(self.p.start_ns)))
    }
}

fn freeze_bar(scale: &Scale, item: &Item) -> Option<(usize, Bar)> {
    let Item::Frozen { nesting, holder, begin, end, by, thawed_by, left_frozen, .. } = item else {
        return None;
    };
    let mut class = String::from("freeze");
    if *nesting > 1 {
        class.push_str(" nested");
    }
    if *left_frozen {
        class.push_str(" left");
    }
    let holder = holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
    let end_text = match thawed_by {
        Some(t) => format!("thawed by {t}"),
        None => "still frozen when the trace ended".to_owned(),
    };
    let title =
        format!("frozen {} at {} by {by}{holder}; {end_text}", fmt_secs(end - begin), scale.rel(*begin));
    let bar = Bar { x0: scale.x(*begin), x1: scale.x(*end), class, title, count: 1 };
    Some((nesting.saturating_sub(1), bar))
}

fn drain_bar(scale: &Scale, begin: u64, end: u64, by: &str) -> Bar {
    Bar {
        x0: scale.x(begin),
        x1: scale.x(end),
        class: "drain".into(),
        title: format!(
            "{by} froze: freeze_super drained writers for {} from {}",
            fmt_secs(end - begin),
            scale.rel(begin)
        ),
        count: 1,
    }
}

fn wait_bar(
    scale: &Scale,
    task: &str,
    begin: u64,
    end: u64,
    gate_level: Option<u32>,
    still_blocked: bool,
) -> Bar {
    let gate = match gate_level {
        Some(1) => "write",
        Some(2) => "page-fault",
        Some(3) => "fs-internal",
        _ => "freeze",
    };
    let tail = if still_blocked { ", still waiting when the trace ended" } else { "" };
    let title =
        format!("{task} waited {} at the {gate} gate from {}{tail}", fmt_secs(end - begin), scale.rel(begin));
    let class = if still_blocked { "wait still" } else { "wait" };
    Bar { x0: scale.x(begin), x1: scale.x(end), class: class.into(), title, count: 1 }
}

/// Waits packed into rows: each goes on the first row free at its start (the last row takes the
/// rest once there are `WAIT_ROWS`).
fn pack_waits(mut waits: Vec<(u64, u64, Bar)>) -> Vec<(u64, Vec<Bar>)> {
    waits.sort_by_key(|(b, _, _)| *b);
    let mut rows: Vec<(u64, Vec<Bar>)> = Vec::new();
    for (begin, end, bar) in waits {
        let row = match rows.iter().position(|(free_at, _)| *free_at <= begin) {
            Some(r) => r,
            None if rows.len() < WAIT_ROWS => {
                rows.push((0, Vec::new()));
                rows.len() - 1
            }
            None => WAIT_ROWS - 1,
        };
        rows[row].0 = rows[row].0.max(end);
        rows[row].1.push(bar);
    }
    rows
}

fn lanes(scale: &Scale, track: &Track) -> Lanes {
    let mut lanes =
        Lanes { freeze_rows: Vec::new(), drains: Vec::new(), wait_rows: Vec::new(), levels: Vec::new() };
    let mut waits = Vec::new();
    for item in scale.p.items.iter().filter(|i| i.track() == track.index) {
        match item {
            Item::Frozen { .. } => {
                let Some((row, bar)) = freeze_bar(scale, item) else { continue };
                while lanes.freeze_rows.len() <= row {
                    lanes.freeze_rows.push(Vec::new());
                }
                lanes.freeze_rows[row].push(bar);
            }
            Item::Freezing { begin, end, by, .. } => lanes.drains.push(drain_bar(scale, *begin, *end, by)),
            Item::Wait { task, begin, end, gate_level, still_blocked, .. } => {
                waits.push((*begin, *end, wait_bar(scale, task, *begin, *end, *gate_level, *still_blocked)));
            }
            Item::Level { ts, level, .. } => lanes.levels.push((*ts, *level)),
            Item::Blocked { .. } => {}
        }
    }
    if lanes.freeze_rows.is_empty() {
        lanes.freeze_rows.push(Vec::new());
    }
    lanes.wait_rows = pack_waits(waits);
    lanes
}

/// One filesystem's section: its timeline (freeze level, freezes and drains, blocked writers,
/// findings) and its summary line.
pub(super) fn timeline(s: &mut String, p: &Page, track: &Track) {
    let scale = Scale { p, span: (p.end_ns - p.start_ns) as f64 };
    let Lanes { freeze_rows, drains, wait_rows, levels } = lanes(&scale, track);
    let marks: Vec<&Mark> = p.marks.iter().filter(|m| m.track == track.index).collect();
    let x = |ts: u64| scale.x(ts);
    let rel = |ts: u64| scale.rel(ts);

    let level_y = 18.0;
    let freeze_y = level_y + ROW;
    let wait_y = freeze_y + ROW * freeze_rows.len() as f64 + 4.0;
    let mark_y = wait_y + WAIT_ROW * wait_rows.len() as f64 + 6.0;
    let height = mark_y + ROW + 4.0;

    let sb = &track.sb;
    let _ =
        writeln!(s, "<section class=\"fs\" data-sb=\"{}\">\n<h3>{}</h3>", esc(&sb.id), esc(&sb.describe()));
    let _ = writeln!(
        s,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" aria-label=\"timeline of {}\">",
        esc(&sb.describe())
    );
    axis(s, p, height);
    let label = |s: &mut String, y: f64, text: &str| {
        let _ = writeln!(s, "<text x=\"4\" y=\"{:.1}\">{}</text>", y + 11.0, esc(text));
    };
    label(s, level_y, "freeze level");
    level_band(s, p, &levels, level_y, &x);
    label(s, freeze_y, "freezes");
    for bar in merge(drains, "drains") {
        rect(s, &bar, freeze_y + 3.0, ROW - 6.0);
    }
    for (row, bars) in freeze_rows.into_iter().enumerate() {
        if row > 0 {
            label(s, freeze_y + ROW * row as f64, &format!("nested ({})", row + 1));
        }
        for bar in merge(bars, "freezes") {
            rect(s, &bar, freeze_y + ROW * row as f64 + 1.0, ROW - 2.0);
        }
    }
    if !wait_rows.is_empty() {
        label(s, wait_y - 2.0, "blocked writers");
    }
    for (row, (_, bars)) in wait_rows.into_iter().enumerate() {
        for bar in merge(bars, "waits") {
            rect(s, &bar, wait_y + WAIT_ROW * row as f64, WAIT_ROW - 2.0);
        }
    }
    label(s, mark_y, "findings");
    mark_row(s, &marks, mark_y, &x, &rel);
    s.push_str("</svg>\n");
    summary_line(s, p, &sb.id);
    s.push_str("</section>\n");
}

/// The counts under a filesystem's timeline.
fn summary_line(s: &mut String, p: &Page, sb_id: &str) {
    let Some((_, sum)) = p.summaries.iter().find(|(id, _)| id == sb_id) else { return };
    let left = if sum.left_frozen { "; <span class=\"warn\">LEFT FROZEN</span>" } else { "" };
    let _ = writeln!(
        s,
        "<p class=\"meta\">{}, {} mounts while frozen{left}</p>",
        sum.counts(),
        sum.mounts_while_frozen
    );
}

fn rect(s: &mut String, bar: &Bar, y: f64, h: f64) {
    let w = (bar.x1 - bar.x0).max(0.8);
    let _ = writeln!(
        s,
        "<rect class=\"{}\" x=\"{:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{h:.1}\"><title>{}</title></rect>",
        bar.class,
        bar.x0,
        esc(&bar.title)
    );
}

/// Time ticks across the plot.
fn axis(s: &mut String, p: &Page, height: f64) {
    let span = (p.end_ns - p.start_ns) as f64;
    let step = nice_step(span / 8.0);
    s.push_str("<g class=\"axis\">");
    let mut t = 0.0;
    while t <= span {
        let x = LABEL + t / span * PLOT;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"12\" x2=\"{x:.1}\" y2=\"{height:.0}\"/><text x=\"{:.1}\" y=\"10\">+{}</text>",
            x + 2.0,
            fmt_secs(t as u64)
        );
        t += step;
    }
    s.push_str("</g>\n");
}

/// 1, 2 or 5 times a power of ten, at least `raw` nanoseconds.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|v| *v >= raw).unwrap_or(10.0 * mag)
}

/// The level as shading, one column per plot unit (the highest level reached in it), drawn as
/// runs of equal level.
fn level_band(s: &mut String, p: &Page, levels: &[(u64, u32)], y: f64, x: &dyn Fn(u64) -> f64) {
    let columns = PLOT.ceil() as usize;
    let mut col = vec![0u32; columns + 1];
    let column = |ts: u64| ((x(ts) - LABEL).floor().max(0.0) as usize).min(columns);
    for (i, (ts, level)) in levels.iter().enumerate() {
        let until = levels.get(i + 1).map(|(t, _)| *t).unwrap_or(p.end_ns);
        for c in &mut col[column(*ts)..=column(until)] {
            *c = (*c).max(*level);
        }
    }
    let mut start = 0;
    while start <= columns {
        let level = col[start];
        let mut end = start;
        while end < columns && col[end + 1] == level {
            end += 1;
        }
        if level > 0 {
            let _ = writeln!(
                s,
                "<rect class=\"lvl{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{}\" height=\"{:.1}\"><title>level {level}</title></rect>",
                level.min(4),
                LABEL + start as f64,
                end - start + 1,
                ROW - 4.0
            );
        }
        start = end + 1;
    }
}

fn mark_row(s: &mut String, marks: &[&Mark], y: f64, x: &dyn Fn(u64) -> f64, rel: &dyn Fn(u64) -> String) {
    // One mark per kind and bucket; it names the first finding in it and how many there are.
    let mut buckets: std::collections::BTreeMap<(i64, &str), (usize, &Mark)> = Default::default();
    for m in marks {
        let key = ((x(m.ts) / MARK_BUCKET).floor() as i64, m.kind.as_str());
        buckets.entry(key).and_modify(|(n, _)| *n += 1).or_insert((1, m));
    }
    for ((_, kind), (n, m)) in buckets {
        let cx = x(m.ts);
        let text = if n > 1 {
            format!("{n} × {kind} from {}; the first: {}", rel(m.ts), m.text)
        } else {
            format!("{kind} at {}: {}", rel(m.ts), m.text)
        };
        let row = m.row.map(|r| format!(" data-row=\"f{r}\"")).unwrap_or_default();
        let _ = writeln!(
            s,
            "<path class=\"mark {kind}\"{row} data-count=\"{n}\" d=\"M{cx:.2} {:.1} l-5 10 h10 z\"><title>{}</title></path>",
            y + 2.0,
            esc(&text)
        );
    }
}
