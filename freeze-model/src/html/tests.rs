//! The page's structure, on the real recording and on a long one: a timeline per filesystem,
//! one row per finding, marks that link to rows, nothing fetched, and bounded size.
use super::*;
use crate::trace;

fn fixture() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/cycles-ext4-xfs.ndjson"))
        .unwrap()
}

fn html(text: &str) -> String {
    let out = write(trace::records(text.as_bytes()), Vec::new(), &correlate::Options::default(), 0).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_timeline_per_filesystem_and_a_row_per_finding() {
    let text = fixture();
    let page = html(&text);
    let contents = trace::Contents::from_records(trace::read_trace(text.as_bytes()).unwrap());
    let report = crate::report::build(&contents, &correlate::Options::default());
    assert_eq!(page.matches("<svg class=\"timeline\"").count(), report.analysis.summaries.len());
    let listed = report.analysis.findings.iter().filter(|f| f.kind != FindingKind::Exempt).count();
    assert_eq!(page.matches("<tr class=\"finding ").count(), listed, "one row per finding");
    let slips = report.analysis.count(FindingKind::Slip);
    assert!(slips > 0);
    // Each slip has a mark (none of them share a pixel here), and each mark links to a row.
    // (Counted after the legend, which shows one of each.)
    let timelines = &page[page.find("<section class=\"fs\"").unwrap()..];
    assert_eq!(timelines.matches("<path class=\"mark slip\"").count(), slips);
    for row in page.split("data-row=\"").skip(1).map(|r| &r[..r.find('"').unwrap()]) {
        assert!(page.contains(&format!("id=\"{row}\"")), "mark links to missing row {row}");
    }
    let freezes: u64 = report.analysis.summaries.values().map(|s| s.freezes).sum();
    assert_eq!(timelines.matches("<rect class=\"freeze").count() as u64, freezes, "a bar per freeze");
    assert!(timelines.contains("<rect class=\"wait\""), "blocked writers are drawn");
    assert!(page.contains("<title>frozen "), "shapes have tooltips");
    assert!(page.contains("id=\"hooks\"") && page.contains("tracepoint:block:block_bio_queue"));
}

#[test]
fn it_is_self_contained() {
    let page = html(&fixture());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing is fetched");
    assert!(!page.contains("<script src") && !page.contains("<link") && !page.contains("@import"));
    assert_eq!(page.matches("<script>").count(), 1);
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn text_from_the_trace_is_escaped() {
    let text = fixture().replacen("\"comm\":\"dd\"", "\"comm\":\"<b>dd&\"", 1);
    let page = html(&text);
    assert!(!page.contains("<b>dd&"), "a command name cannot inject markup");
}

#[test]
fn a_long_trace_stays_small_and_says_what_it_left_out() {
    // 400 copies of the recording one after another: 12,000 freezes per filesystem.
    let text = fixture();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    let span = events.iter().filter_map(|e| e["ts_ns"].as_u64()).max().unwrap() + 1_000_000_000;
    let mut long = vec![lines.iter().find(|l| l["type"] == "header").unwrap().to_string()];
    for copy in 0..400u64 {
        for e in &events {
            let mut e = (*e).clone();
            for key in ["ts_ns", "begin_ts_ns"] {
                if let Some(t) = e[key].as_u64() {
                    e[key] = (t + copy * span).into();
                }
            }
            long.push(e.to_string());
        }
    }
    let page = html(&long.join("\n"));
    assert!(page.len() < 6_000_000, "{} bytes", page.len());
    assert_eq!(page.matches("<tr class=\"finding ").count(), TABLE_ROWS);
    assert!(page.contains("more are in `freezewatch report --json`"));
    let bars = page.matches("<rect class=\"freeze").count();
    assert!(bars < 2 * 900, "freezes closer than a pixel are merged: {bars} bars");
    assert!(page.contains(" freezes here (zoom in"), "a merged bar says how many it holds");
}
