//! `freezewatch report --html FILE`: one self-contained HTML file (no network: inline CSS, inline
//! SVG, a few lines of inline script) that reads offline and can be attached to a CI run.
//!
//! Per filesystem, an SVG timeline: the freeze level as shading, each freeze as a bar on the row
//! of its nesting (a kernel freeze inside a user-space one sits below it), the drain before it,
//! blocked writers as bars on rows of their own, and slips, mounts while frozen, denied mounts and
//! failed freezes as marks; every shape has a tooltip. Then the findings table (who, message,
//! stack), the per-filesystem summary and the hooks in use.
//!
//! Usable on long traces: shapes closer than a pixel are drawn as one (its tooltip says how many),
//! the level band is drawn per pixel column, waits are packed into at most `WAIT_ROWS` rows, and
//! the table lists the first `TABLE_ROWS` findings (the count says how many more there are).
mod render;
#[cfg(test)]
mod tests;
mod timeline_svg;

use std::io::Write;

use crate::{
    correlate::{self, Finding, FindingKind, Summary},
    coverage::Coverage,
    timeline::{Item, Timeline, Track, is_moment},
    trace::{Footer, Header, Record, TraceError},
    walk::{OutputError, Step, Walked, walk},
};

/// Findings listed in the table at most.
pub const TABLE_ROWS: usize = 2_000;
/// Rows of blocked writers per filesystem at most; later waits share the last row.
pub const WAIT_ROWS: usize = 12;

/// Everything the page shows, gathered in one walk of the trace.
pub(crate) struct Page {
    pub header: Option<Header>,
    pub footer: Option<Footer>,
    pub coverage: Coverage,
    pub start_ns: u64,
    pub end_ns: u64,
    pub tracks: Vec<Track>,
    pub items: Vec<Item>,
    /// Findings worth a mark on a timeline: (track, kind, time, row id in the table or None,
    /// sentence).
    pub marks: Vec<Mark>,
    /// The table's findings (not exempt ones: those are counted), the first `TABLE_ROWS`, in
    /// time order, each with its row id (marks link to it).
    pub rows: Vec<(usize, Finding)>,
    /// Findings not listed (past `TABLE_ROWS`).
    pub rows_left_out: usize,
    pub exempt: usize,
    pub summaries: Vec<(String, Summary)>,
}

pub(crate) struct Mark {
    pub track: u32,
    pub kind: FindingKind,
    pub ts: u64,
    /// The table row it links to (`f12`), when the finding is listed.
    pub row: Option<usize>,
    pub text: String,
}

/// Writes the HTML report of `records` (at most `window_ns` out of time order; see `walk`).
pub fn write<W: Write>(
    records: impl Iterator<Item = Result<Record, TraceError>>,
    mut out: W,
    opts: &correlate::Options,
    window_ns: u64,
) -> Result<W, OutputError> {
    let mut timeline = Timeline::new();
    let (mut items, mut marks, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rows_left_out, mut exempt) = (0, 0);
    let (mut first_ts, mut last_ts) = (None::<u64>, 0u64);
    let walked: Walked = walk(records, opts, window_ns, |step| -> Result<(), std::io::Error> {
        match step {
            Step::Event(ev) => {
                first_ts = Some(first_ts.map_or(ev.ts_ns, |t| t.min(ev.ts_ns)));
                last_ts = last_ts.max(ev.ts_ns);
                items.extend(timeline.push(ev));
            }
            Step::Finding(f) if f.kind == FindingKind::Exempt => exempt += 1,
            Step::Finding(f) => {
                let row = (rows.len() < TABLE_ROWS).then_some(rows.len());
                if is_moment(f.kind) {
                    let track = timeline.track(&f.sb);
                    marks.push(Mark { track, kind: f.kind, ts: f.ts_ns, row, text: f.message.clone() });
                }
                match row {
                    Some(id) => rows.push((id, f.clone())),
                    None => rows_left_out += 1,
                }
            }
        }
        Ok(())
    })?;
    items.extend(timeline.finish(walked.end_ns));
    let start_ns = walked.header.as_ref().map(|h| h.started_monotonic_ns).or(first_ts).unwrap_or(0);
    let end_ns = walked.end_ns.unwrap_or(last_ts).max(last_ts).max(start_ns + 1);
    rows.sort_by_key(|(_, f)| f.ts_ns);
    let page = Page {
        coverage: Coverage::of(walked.header.as_ref()),
        header: walked.header,
        footer: walked.footer,
        start_ns,
        end_ns,
        tracks: timeline.tracks().cloned().collect(),
        items,
        marks,
        rows,
        rows_left_out,
        exempt,
        summaries: walked.analysis.summaries.into_iter().collect(),
    };
    out.write_all(render::page(&page).as_bytes())?;
    out.flush()?;
    Ok(out)
}
