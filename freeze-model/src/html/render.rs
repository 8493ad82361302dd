//! The page's text: HTML with inline CSS, an inline SVG timeline per filesystem, and a short
//! inline script (the findings filter, and marks that jump to their row).
use std::fmt::Write as _;

use super::Page;
use crate::{
    correlate::{FindingKind, Severity},
    units::{fmt_secs, fmt_utc},
};

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
        super::timeline_svg::timeline(&mut s, p, track);
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
