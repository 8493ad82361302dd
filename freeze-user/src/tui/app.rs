//! The TUI's state. Every event is applied once to the same streaming correlator that `record`,
//! `report` and `check` use, so the screens never disagree with them; the event log keeps only
//! the newest events.
use std::collections::{BTreeMap, VecDeque};

use freeze_model::{
    correlate::{self, Correlator, Finding, FindingKind, SbState, Summary},
    deny::DenyMode,
    event::Event,
    trace::{Counters, Header},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Superblocks,
    Findings,
    Events,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Live,
    /// Replaying a trace: `position` events of `total` shown, at `speed` × real time.
    Replay {
        speed: f64,
        playing: bool,
        position: usize,
        total: usize,
    },
}

/// What a key asks for (see `keys.rs`); applied by `App::apply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    ToggleHelp,
    TogglePause,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    OpenDetail,
    CloseOverlay,
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterClear,
    Faster,
    Slower,
}

/// Events the log keeps by default (`--event-log`): the newest; counts, summaries and findings
/// stay complete however many drop off.
pub const DEFAULT_EVENT_LOG: usize = 100_000;

pub struct App {
    pub mode: Mode,
    pub header: Option<Header>,
    /// The newest events applied, oldest first, at most `log_capacity`.
    pub events: VecDeque<Event>,
    pub log_capacity: usize,
    /// Events that arrived while paused (live): applied on resume. Bounded like the log: under a
    /// flood the oldest held event is applied to make room, so nothing is lost.
    pub held: VecDeque<Event>,
    /// Every finding so far but the exempt ones (counted in `exempt`), in time order.
    pub findings: Vec<Finding>,
    pub exempt: usize,
    /// What ending the stream now would add: writers still waiting, filesystems still frozen.
    pub open_findings: Vec<Finding>,
    /// Per superblock, as of `now_ns`.
    pub summaries: BTreeMap<String, Summary>,
    pub counters: Counters,
    pub trace_file: Option<String>,
    /// "Now" in the events' clock (CLOCK_MONOTONIC ns): live, the real clock; replay, the
    /// replay position.
    pub now_ns: u64,
    /// The first event's time (where the timeline starts when the recording is short).
    pub first_ts: Option<u64>,
    pub focus: Pane,
    /// Selected row in the superblocks table and in the findings list.
    pub sb_selected: usize,
    pub finding_selected: usize,
    pub detail: bool,
    pub help: bool,
    pub paused: bool,
    pub filter: String,
    pub filter_editing: bool,
    pub events_per_sec: f64,
    pub should_quit: bool,
    /// Set when something was applied since the last refresh.
    dirty: bool,
    correlator: Correlator,
}

impl App {
    /// `opts` as for `report`; a replay's events come sorted, so its reorder window is not needed.
    pub fn new(mode: Mode, mut opts: correlate::Options) -> Self {
        if matches!(mode, Mode::Replay { .. }) {
            opts.reorder_window_ns = 0;
        }
        Self {
            mode,
            header: None,
            events: VecDeque::new(),
            log_capacity: DEFAULT_EVENT_LOG,
            held: VecDeque::new(),
            findings: Vec::new(),
            exempt: 0,
            open_findings: Vec::new(),
            summaries: BTreeMap::new(),
            counters: Counters::default(),
            trace_file: None,
            now_ns: 0,
            first_ts: None,
            focus: Pane::Superblocks,
            sb_selected: 0,
            finding_selected: 0,
            detail: false,
            help: false,
            paused: false,
            filter: String::new(),
            filter_editing: false,
            events_per_sec: 0.0,
            should_quit: false,
            dirty: false,
            correlator: Correlator::new(opts),
        }
    }

    pub fn push_event(&mut self, ev: Event) {
        if !self.paused {
            self.apply_event(ev);
            return;
        }
        if self.held.len() >= self.log_capacity
            && let Some(oldest) = self.held.pop_front()
        {
            self.apply_event(oldest);
        }
        self.held.push_back(ev);
    }

    fn apply_event(&mut self, ev: Event) {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.first_ts = Some(self.first_ts.map_or(ev.ts_ns, |t| t.min(ev.ts_ns)));
        if self.events.len() >= self.log_capacity {
            self.events.pop_front();
        }
        self.events.push_back(ev.clone());
        let found = self.correlator.push(ev);
        self.add_findings(found);
        self.dirty = true;
    }

    fn add_findings(&mut self, found: Vec<Finding>) {
        for f in found {
            if f.kind == FindingKind::Exempt {
                self.exempt += 1;
                continue;
            }
            // Findings arrive nearly in time order: this is an append but for the stragglers.
            let at = self.findings.partition_point(|g| g.ts_ns <= f.ts_ns);
            self.findings.insert(at, f);
        }
    }

    /// Brings the view to `now_ns`: time-based findings, and what ending now would add (a
    /// filesystem frozen right now shows as frozen, with its clock running). Nothing is
    /// re-analysed: the correlator has applied every event once.
    pub fn refresh(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
            self.dirty = true;
        }
        if self.dirty {
            let found = self.correlator.tick(self.now_ns);
            self.add_findings(found);
            let (summaries, open) = self.correlator.view_at(self.now_ns);
            self.summaries = summaries;
            self.open_findings = open;
            self.dirty = false;
            self.sb_selected = self.sb_selected.min(self.summaries.len().saturating_sub(1));
            self.finding_selected =
                self.finding_selected.min(self.visible_findings().len().saturating_sub(1));
        }
    }

    /// Superblocks, frozen ones first, then by device.
    pub fn superblock_rows(&self) -> Vec<(&String, &Summary)> {
        let mut rows: Vec<(&String, &Summary)> = self.summaries.iter().collect();
        let rank = |s: &Summary| match s.state {
            SbState::Frozen => 0,
            SbState::Freezing | SbState::Thawing => 1,
            SbState::Unfrozen => 2,
        };
        rows.sort_by(|a, b| {
            rank(a.1).cmp(&rank(b.1)).then_with(|| {
                let dev = |s: &Summary| s.sb.as_ref().map(|b| b.dev.clone()).unwrap_or_default();
                dev(a.1).cmp(&dev(b.1))
            })
        });
        rows
    }

    /// Findings, newest first, without the exempt ones (they are counted in the title). Live,
    /// `left-frozen` is left out too: the recording has not ended, and the table already shows
    /// the filesystem FROZEN with its clock running.
    pub fn visible_findings(&self) -> Vec<&Finding> {
        let live = self.mode == Mode::Live;
        let mut open: Vec<&Finding> =
            self.open_findings.iter().filter(|f| !(live && f.kind == FindingKind::LeftFrozen)).collect();
        open.sort_by_key(|f| f.ts_ns);
        // Merge the two time-ordered lists, then newest first.
        let mut out = Vec::with_capacity(self.findings.len() + open.len());
        let (mut a, mut b) = (self.findings.iter().peekable(), open.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if y.ts_ns < x.ts_ns => b.next(),
                (Some(_), _) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next);
        }
        out.reverse();
        out
    }

    pub fn exempt_count(&self) -> usize {
        self.exempt
    }

    /// Events matching the filter, newest first. The filter is space-separated terms, all of
    /// which must match: `sb:7:0` (device or mountpoint), `kind:block_write`, `pid:123`,
    /// `comm:dd`, or plain text searched in the whole line.
    pub fn filtered_events(&self) -> Vec<&Event> {
        let terms: Vec<&str> = self.filter.split_whitespace().collect();
        self.events.iter().rev().filter(|e| terms.iter().all(|t| matches_term(e, t))).collect()
    }

    /// Events of the selected finding's superblock around it (for the detail pane), from the log.
    pub fn events_around(&self, f: &Finding, n: usize) -> Vec<&Event> {
        let same: Vec<&Event> =
            self.events.iter().filter(|e| e.sb.as_ref().is_some_and(|sb| sb.id == f.sb.id)).collect();
        let at = same.partition_point(|e| e.ts_ns < f.ts_ns);
        same[at.saturating_sub(n)..(at + n).min(same.len())].to_vec()
    }

    /// Frozen windows per superblock id, (start, end or None while still frozen): the
    /// correlator's, so the timeline and the table never disagree about when it was frozen.
    pub fn freeze_windows(&self) -> BTreeMap<&str, Vec<(u64, Option<u64>)>> {
        self.correlator.windows()
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Quit => self.should_quit = true,
            Action::ToggleHelp => self.help = !self.help,
            Action::TogglePause => match &mut self.mode {
                Mode::Live => {
                    self.paused = !self.paused;
                    if !self.paused {
                        for ev in std::mem::take(&mut self.held) {
                            self.apply_event(ev);
                        }
                    }
                }
                Mode::Replay { playing, .. } => *playing = !*playing,
            },
            Action::FocusNext | Action::FocusPrev => {
                let order = [Pane::Superblocks, Pane::Findings, Pane::Events];
                let i = order.iter().position(|p| *p == self.focus).unwrap_or(0);
                let step = if action == Action::FocusNext { 1 } else { order.len() - 1 };
                self.focus = order[(i + step) % order.len()];
            }
            Action::Up | Action::Down => {
                let down = action == Action::Down;
                let (sel, len) = match self.focus {
                    Pane::Superblocks => (&mut self.sb_selected, self.summaries.len()),
                    Pane::Findings => {
                        let len = self.visible_findings().len();
                        (&mut self.finding_selected, len)
                    }
                    Pane::Events => return,
                };
                *sel = if down { (*sel + 1).min(len.saturating_sub(1)) } else { sel.saturating_sub(1) };
            }
            Action::OpenDetail => {
                if self.focus == Pane::Findings && !self.visible_findings().is_empty() {
                    self.detail = true;
                }
            }
            Action::CloseOverlay => {
                self.detail = false;
                self.help = false;
            }
            Action::FilterStart => {
                self.filter_editing = true;
                self.focus = Pane::Events;
            }
            Action::FilterChar(c) => self.filter.push(c),
            Action::FilterBackspace => {
                self.filter.pop();
            }
            Action::FilterDone => self.filter_editing = false,
            Action::FilterClear => {
                self.filter.clear();
                self.filter_editing = false;
            }
            Action::Faster | Action::Slower => {
                if let Mode::Replay { speed, .. } = &mut self.mode {
                    *speed = if action == Action::Faster {
                        (*speed * 2.0).min(1024.0)
                    } else {
                        (*speed / 2.0).max(0.125)
                    };
                }
            }
        }
    }
}

fn matches_term(e: &Event, term: &str) -> bool {
    let lower = |s: &str| s.to_lowercase();
    if let Some((key, value)) = term.split_once(':') {
        match key {
            "sb" => {
                return e.sb.as_ref().is_some_and(|sb| {
                    sb.dev == value || sb.mountpoint.as_deref() == Some(value) || sb.id == value
                });
            }
            "kind" => return e.kind.as_str() == value,
            "pid" => return e.pid.to_string() == value || e.tid.to_string() == value,
            "comm" => return lower(&e.comm).contains(&lower(value)),
            _ => {}
        }
    }
    lower(&event_line(e)).contains(&lower(term))
}

/// One line describing an event, for the log and for text search.
pub fn event_line(e: &Event) -> String {
    // mount(2) events name no superblock (the call does not know it yet).
    let fs = match &e.sb {
        Some(sb) => format!("{} {}", sb.dev, sb.mountpoint.as_deref().unwrap_or(&sb.fstype)),
        None => "-".to_owned(),
    };
    let mut s = format!("{:<16} {}[{}] {fs}", e.kind.as_str(), e.comm, e.pid);
    if let Some(l) = e.level_after {
        s.push_str(&format!(" level {l}"));
    }
    if let Some(r) = e.ret {
        s.push_str(&format!(" ret {r}"));
    }
    if let Some(err) = &e.error {
        s.push_str(&format!(" {err}"));
    }
    if let Some(b) = &e.block {
        // "write 4096B @128 on 7:0", "punch-hole 1048576B @byte 188743680 of /img (loop 7:0)".
        match (&b.mapping, b.file_offset) {
            (Some(m), Some(offset)) if b.op().is_file() => s.push_str(&format!(
                " {} {}B @byte {offset} of {} (loop {})",
                b.op(),
                b.bytes,
                m.file.as_deref().unwrap_or("?"),
                b.dev
            )),
            _ => s.push_str(&format!(" {} {}B @{} on {}", b.op(), b.bytes, b.sector, b.dev)),
        }
        if let Some(m) = b.mapping.as_ref().filter(|m| !b.op().is_file() || m.file.is_none()) {
            s.push_str(&format!(" ({})", m.layer));
        }
    }
    if let Some(m) = &e.mount {
        s.push_str(&format!(" {} {} -> {}", m.api, m.source, m.target));
    }
    if let Some(t) = &e.txn {
        s.push_str(&format!(" {}", t.caller.as_deref().unwrap_or("")));
    }
    if let Some(d) = &e.denial {
        let verdict = if d.mode == DenyMode::Enforce { "denied" } else { "would deny" };
        s.push_str(&format!(" {verdict} at {}", d.lsm_hook));
    }
    s
}
