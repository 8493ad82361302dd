//! The page's text: HTML with inline CSS, an inline SVG timeline per filesystem, and a short
//! inline script (the findings filter, and marks that jump to their row).
use std::fmt::Write as _;

use super::{Mark, Page, WAIT_ROWS};
use crate::{
    correlate::{FindingKind, Severity},
    timeline::{Item, Track},
    units::{fmt_secs, fmt_utc},
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

pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:26px 0 6px}
.meta,.note{color:#52606d}.warn{color:#a23b00;font-weight:600}
section.fs{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:10px 12px;margin:12px 0}
section.fs h3{font-size:15px;margin:0 0 4px}
svg.timeline{width:100%;height:auto;display:block}
svg text{font:10px system-ui,sans-serif;fill:#52606d}
.axis line{stroke:#cfd6de}.lvl1{fill:#fde8b0}.lvl2{fill:#f9c96b}.lvl3{fill:#f3a43b}.lvl4{fill:#b5c9de}
.freeze{fill:#2f5d8a}.freeze.nested{fill:#7f4fb0}.freeze.left{fill:#c0392b}.drain{fill:#9fb7cf}
.wait{fill:#e08a1e}.wait.still{fill:#c0392b}
.mark{cursor:pointer}.mark.slip{fill:#c0392b}.mark.mount-while-frozen{fill:#d35400}
.mark.mount-denied{fill:#7f4fb0}.mark.freeze-failed,.mark.thaw-without-freeze{fill:#6c7a89}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e4e8ed;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef1f4;position:sticky;top:0}
tr.sev-error td.kind{color:#c0392b;font-weight:600}tr.sev-warning td.kind{color:#a23b00}
tr.hl{background:#fff3c4}
pre{margin:4px 0;font-size:12px;white-space:pre-wrap}
details summary{cursor:pointer;color:#2f5d8a}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
";

const SCRIPT: &str = "
(function(){
  var sel=document.getElementById('kind-filter');
  if(sel){sel.addEventListener('change',function(){
    var k=sel.value;
    document.querySelectorAll('tr.finding').forEach(function(r){r.hidden=k!==''&&r.getAttribute('data-kind')!==k;});
  });}
  document.querySelectorAll('svg .mark[data-row]').forEach(function(m){
    m.addEventListener('click',function(){
      var row=document.getElementById(m.getAttribute('data-row'));
      if(!row){return;}
      document.querySelectorAll('tr.hl').forEach(function(r){r.classList.remove('hl');});
      row.hidden=false;row.classList.add('hl');row.scrollIntoView({block:'center'});
    });
  });
  document.body.setAttribute('data-ready','1');
})();
";

pub(super) fn page(p: &Page) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let title = match &p.header {
        Some(h) => format!("freezewatch report: {}", fmt_utc(h.started_unix_ms)),
        None => "freezewatch report".to_owned(),
    };
    let _ = writeln!(s, "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>", esc(&title));
    let _ = writeln!(s, "<h1>{}</h1>", esc(&title));
    intro(&mut s, p);
    let _ = writeln!(s, "<h2>Timelines</h2>");
    legend(&mut s);
    for track in &p.tracks {
        timeline(&mut s, p, track);
    }
    findings(&mut s, p);
    summary(&mut s, p);
    hooks(&mut s, p);
    let _ = writeln!(s, "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>");
    s
}

fn intro(s: &mut String, p: &Page) {
    let span = fmt_secs(p.end_ns - p.start_ns);
    match &p.header {
        Some(h) => {
            let cmd = h.command.as_ref().map(|c| format!("; command <code>{}</code>", esc(&c.join(" "))));
            let _ = writeln!(
                s,
                "<p class=\"meta\">{} {} on kernel {}; recorded {} for {span}{}</p>",
                esc(&h.tool),
                esc(&h.tool_version),
                esc(&h.kernel),
                fmt_utc(h.started_unix_ms),
                cmd.unwrap_or_default()
            );
        }
        None => _ = writeln!(s, "<p class=\"warn\">The trace has no header: which hooks ran is unknown.</p>"),
    }
    for gap in p.coverage.gaps_missing() {
        let _ = writeln!(
            s,
            "<p class=\"warn\">Partial coverage: {}: what it would see is not in this trace.</p>",
            esc(&gap.to_string())
        );
    }
    match (&p.footer, p.footer.as_ref().map(|f| f.counters.lost())) {
        (Some(_), Some(0)) => _ = writeln!(s, "<p class=\"meta\">No events lost.</p>"),
        (Some(_), Some(n)) => {
            _ = writeln!(s, "<p class=\"warn\">{n} events were lost; findings may be missing.</p>")
        }
        _ => {
            _ = writeln!(
                s,
                "<p class=\"warn\">The trace has no footer (recording was cut short): losses unknown.</p>"
            )
        }
    }
}

fn legend(s: &mut String) {
    let entries = [
        ("lvl4", "level 4: frozen"),
        ("lvl2", "levels 1-3: freezing"),
        ("freeze", "a freeze, completed to thawed"),
        ("freeze nested", "a nested freeze"),
        ("drain", "drain before a freeze"),
        ("wait", "writer blocked at the gate"),
        ("mark slip", "slip"),
        ("mark mount-while-frozen", "mount while frozen"),
        ("mark mount-denied", "mount denied"),
    ];
    s.push_str("<p class=\"legend\">");
    for (class, label) in entries {
        let _ = write!(
            s,
            "<span><svg width=\"12\" height=\"10\"><rect class=\"{class}\" width=\"12\" height=\"10\"/></svg> {label}</span>"
        );
    }
    s.push_str("</p>\n");
}

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

fn timeline(s: &mut String, p: &Page, track: &Track) {
    let span = (p.end_ns - p.start_ns) as f64;
    let x = |ts: u64| LABEL + (ts.saturating_sub(p.start_ns) as f64 / span * PLOT).clamp(0.0, PLOT);
    let rel = |ts: u64| format!("+{}", fmt_secs(ts.saturating_sub(p.start_ns)));
    let items = p.items.iter().filter(|i| i.track() == track.index);

    // Freezes by nesting row; drains on the first row, under the freezes.
    let mut freeze_rows: Vec<Vec<Bar>> = Vec::new();
    let mut drains = Vec::new();
    let mut waits: Vec<(u64, u64, Bar)> = Vec::new();
    let mut levels: Vec<(u64, u32)> = Vec::new();
    for item in items {
        match item {
            Item::Frozen { nesting, holder, begin, end, by, thawed_by, left_frozen, .. } => {
                let row = nesting.saturating_sub(1);
                while freeze_rows.len() <= row {
                    freeze_rows.push(Vec::new());
                }
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
                let title = format!(
                    "frozen {} at {} by {by}{holder}; {end_text}",
                    fmt_secs(end - begin),
                    rel(*begin)
                );
                freeze_rows[row].push(Bar { x0: x(*begin), x1: x(*end), class, title, count: 1 });
            }
            Item::Freezing { begin, end, by, .. } => drains.push(Bar {
                x0: x(*begin),
                x1: x(*end),
                class: "drain".into(),
                title: format!(
                    "{by} froze: freeze_super drained writers for {} from {}",
                    fmt_secs(end - begin),
                    rel(*begin)
                ),
                count: 1,
            }),
            Item::Wait { task, begin, end, gate_level, still_blocked, .. } => {
                let gate = match gate_level {
                    Some(1) => "write",
                    Some(2) => "page-fault",
                    Some(3) => "fs-internal",
                    _ => "freeze",
                };
                let tail = if *still_blocked { ", still waiting when the trace ended" } else { "" };
                let title = format!(
                    "{task} waited {} at the {gate} gate from {}{tail}",
                    fmt_secs(end - begin),
                    rel(*begin)
                );
                let class = if *still_blocked { "wait still" } else { "wait" };
                waits.push((
                    *begin,
                    *end,
                    Bar { x0: x(*begin), x1: x(*end), class: class.into(), title, count: 1 },
                ));
            }
            Item::Level { ts, level, .. } => levels.push((*ts, *level)),
            Item::Blocked { .. } => {}
        }
    }
    if freeze_rows.is_empty() {
        freeze_rows.push(Vec::new());
    }
    // Waits packed into rows: each goes on the first row free at its start.
    waits.sort_by_key(|(b, _, _)| *b);
    let mut wait_rows: Vec<(u64, Vec<Bar>)> = Vec::new();
    for (begin, end, bar) in waits {
        let at = wait_rows.iter().position(|(free_at, _)| *free_at <= begin);
        let row = match at {
            Some(r) => r,
            None if wait_rows.len() < WAIT_ROWS => {
                wait_rows.push((0, Vec::new()));
                wait_rows.len() - 1
            }
            None => WAIT_ROWS - 1,
        };
        wait_rows[row].0 = wait_rows[row].0.max(end);
        wait_rows[row].1.push(bar);
    }
    let marks: Vec<&Mark> = p.marks.iter().filter(|m| m.track == track.index).collect();

    let top = 18.0;
    let level_y = top;
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
    if let Some((_, sum)) = p.summaries.iter().find(|(id, _)| *id == sb.id) {
        let left = if sum.left_frozen { "; <span class=\"warn\">LEFT FROZEN</span>" } else { "" };
        let _ = writeln!(
            s,
            "<p class=\"meta\">{}, {} mounts while frozen{left}</p>",
            sum.counts(),
            sum.mounts_while_frozen
        );
    }
    s.push_str("</section>\n");
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

fn findings(s: &mut String, p: &Page) {
    let listed = p.rows.len();
    let _ = writeln!(s, "<h2>Findings ({})</h2>", listed + p.rows_left_out);
    if p.exempt > 0 {
        let _ = writeln!(
            s,
            "<p class=\"note\">{} exempt events (look like slips, but are legitimate) are counted, not listed; `freezewatch report --all` lists them.</p>",
            p.exempt
        );
    }
    if p.rows_left_out > 0 {
        let _ = writeln!(
            s,
            "<p class=\"warn\">The first {listed} findings are listed; {} more are in `freezewatch report --json`.</p>",
            p.rows_left_out
        );
    }
    let mut kinds: Vec<FindingKind> = p.rows.iter().map(|(_, f)| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    s.push_str("<p><label>Show <select id=\"kind-filter\"><option value=\"\">every kind</option>");
    for k in kinds {
        let _ = write!(s, "<option value=\"{0}\">{0}</option>", k.as_str());
    }
    s.push_str("</select></label></p>\n<table id=\"findings\">\n<thead><tr><th>time</th><th>kind</th><th>filesystem</th><th>who</th><th>what</th></tr></thead>\n<tbody>\n");
    for (id, f) in &p.rows {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let stack = f
            .stack
            .as_ref()
            .map(|frames| {
                format!(
                    "<details><summary>kernel stack</summary><pre>{}</pre></details>",
                    esc(&frames.join("\n"))
                )
            })
            .unwrap_or_default();
        let who = if f.pid == 0 { String::new() } else { esc(&f.who()) };
        let _ = writeln!(
            s,
            "<tr class=\"finding sev-{sev}\" id=\"f{id}\" data-kind=\"{}\"><td>+{}</td><td class=\"kind\">{}</td><td>{}</td><td>{who}</td><td>{}{stack}</td></tr>",
            f.kind.as_str(),
            fmt_secs(f.ts_ns.saturating_sub(p.start_ns)),
            f.kind.as_str(),
            esc(&f.sb.describe()),
            esc(&f.message)
        );
    }
    s.push_str("</tbody>\n</table>\n");
}

fn summary(s: &mut String, p: &Page) {
    s.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n<thead><tr><th>filesystem</th><th>freezes</th><th>failed</th><th>thaws</th><th>frozen in total</th><th>longest</th><th>slips</th><th>blocked writers</th><th>mounts while frozen</th><th>denied mounts</th><th>left frozen</th></tr></thead>\n<tbody>\n");
    for (id, sum) in &p.summaries {
        let name = sum.sb.as_ref().map(|sb| sb.describe()).unwrap_or_else(|| id.clone());
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&name),
            sum.freezes,
            sum.failed_freezes,
            sum.thaws,
            fmt_secs(sum.total_frozen_ns),
            fmt_secs(sum.max_frozen_ns),
            sum.slips,
            sum.blocked_writers,
            sum.mounts_while_frozen,
            sum.denied_mounts + sum.would_deny_mounts,
            if sum.left_frozen { "yes" } else { "no" }
        );
    }
    s.push_str("</tbody>\n</table>\n");
}

fn hooks(s: &mut String, p: &Page) {
    let Some(h) = &p.header else { return };
    s.push_str("<h2>Hooks in use</h2>\n<table id=\"hooks\">\n<thead><tr><th>feature</th><th>hook</th><th>not used, and why</th></tr></thead>\n<tbody>\n");
    for k in &h.hooks {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.feature),
            esc(k.hook.as_deref().unwrap_or("none")),
            esc(&k.fallbacks.join("; "))
        );
    }
    s.push_str("</tbody>\n</table>\n");
}
