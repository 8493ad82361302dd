//! Reading a trace in time order while correlating it, for the views that draw it (the Perfetto
//! export, the HTML report): each event in order, then the findings it made certain, then at the
//! end the findings still open and the summaries. Nothing is held but the reorder window.
use std::io::BufRead;

use crate::{
    correlate::{self, Analysis, Correlator, Finding, Reorder},
    event::Event,
    trace::{self, Footer, Header, Record, TraceError},
};

/// What a walk hands its visitor, in order.
pub enum Step<'a> {
    Event(&'a Event),
    Finding(&'a Finding),
}

/// What the walk found besides the steps: the trace's header and footer, its end, and the
/// per-superblock summaries (with no findings: those were stepped through).
pub struct Walked {
    pub header: Option<Header>,
    pub footer: Option<Footer>,
    pub end_ns: Option<u64>,
    pub analysis: Analysis,
}

/// Why a walk stopped: the trace, or the visitor (e.g. its output failed).
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Visitor(E),
}

/// Why a view of a trace (an export, a report file) could not be written: the trace, or the output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("writing the output: {0}")]
    Write(#[from] std::io::Error),
}

impl From<WalkError<std::io::Error>> for OutputError {
    fn from(e: WalkError<std::io::Error>) -> Self {
        match e {
            WalkError::Trace(e) => Self::Trace(e),
            WalkError::Visitor(e) => Self::Write(e),
        }
    }
}

/// Walks `records`, whose events are at most `window_ns` out of time order (`trace::disorder_ns`
/// measures a file; sorted input takes 0).
pub fn walk<E: std::error::Error + 'static>(
    records: impl Iterator<Item = Result<Record, TraceError>>,
    opts: &correlate::Options,
    window_ns: u64,
    mut visit: impl FnMut(Step<'_>) -> Result<(), E>,
) -> Result<Walked, WalkError<E>> {
    let mut order = Reorder::new(window_ns);
    // The events reach the correlator in order already.
    let mut correlator = Correlator::new(correlate::Options { reorder_window_ns: 0, ..opts.clone() });
    let (mut header, mut footer) = (None, None);
    let mut apply = |correlator: &mut Correlator, ev: Event| -> Result<(), E> {
        visit(Step::Event(&ev))?;
        for f in correlator.push(ev) {
            visit(Step::Finding(&f))?;
        }
        Ok(())
    };
    for record in records {
        match record? {
            Record::Header(h) => header = Some(h),
            Record::Footer(f) => footer = Some(f),
            Record::Event(ev) => {
                order.push(ev);
                while let Some(ev) = order.pop() {
                    apply(&mut correlator, ev).map_err(WalkError::Visitor)?;
                }
            }
            Record::Finding(_) | Record::Summary(_) => {}
        }
    }
    for ev in order.drain() {
        apply(&mut correlator, ev).map_err(WalkError::Visitor)?;
    }
    let end_ns = trace::end_ns(header.as_ref(), footer.as_ref());
    let mut analysis = correlator.finish(end_ns);
    for f in &analysis.findings {
        visit(Step::Finding(f)).map_err(WalkError::Visitor)?;
    }
    analysis.findings.clear();
    Ok(Walked { header, footer, end_ns, analysis })
}

/// The records of a trace read whole (stdin), its events sorted by time: walk them with window 0.
pub fn sorted_records(input: impl BufRead) -> Result<Vec<Record>, TraceError> {
    let mut records = trace::read_trace(input)?;
    records.sort_by_key(|r| match r {
        Record::Header(_) => (0, 0),
        Record::Event(e) => (1, e.ts_ns),
        _ => (2, 0),
    });
    Ok(records)
}
