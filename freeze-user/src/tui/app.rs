//! The TUI's state. Everything the screen shows is derived from `events` by the same correlation
//! that `report` and `check` run, so the three never disagree.
use std::collections::HashMap;

use freeze_model::{
    correlate::{self, Analysis, Finding, SbState, Summary},
    event::{Event, EventKind},
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

pub struct App {
    pub mode: Mode,
    pub header: Option<Header>,
    /// Events applied so far, in arrival order.
    pub events: Vec<Event>,
    /// Events that arrived while paused (live): applied on resume.
    pub held: Vec<Event>,
    pub analysis: Analysis,
    pub counters: Counters,
    pub trace_file: Option<String>,
    /// "Now" in the events' clock (CLOCK_MONOTONIC ns): live, the real clock; replay, the
    /// replay position.
    pub now_ns: u64,
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
    /// Set when `events` changed since the last analysis.
    dirty: bool,
    opts: correlate::Options,
}

impl App {
    pub fn new(mode: Mode, opts: correlate::Options) -> Self {
        Self {
            mode,
            header: None,
            events: Vec::new(),
            held: Vec::new(),
            analysis: Analysis::default(),
            counters: Counters::default(),
            trace_file: None,
            now_ns: 0,
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
            opts,
        }
    }

    pub fn push_event(&mut self, ev: Event) {
        if self.paused {
            self.held.push(ev);
        } else {
            self.now_ns = self.now_ns.max(ev.ts_ns);
            self.events.push(ev);
            self.dirty = true;
        }
    }

    /// Re-runs the correlation when something changed, with "now" as the end of recording (so
    /// a filesystem frozen right now shows as frozen, with its clock running).
    pub fn refresh(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
            self.dirty = true;
        }
        if self.dirty {
            self.analysis = correlate::analyze(&self.events, &self.opts, Some(self.now_ns));
            self.dirty = false;
            self.sb_selected = self.sb_selected.min(self.analysis.summaries.len().saturating_sub(1));
            self.finding_selected =
                self.finding_selected.min(self.visible_findings().len().saturating_sub(1));
        }
    }

    /// Superblocks, frozen ones first, then by device.
    pub fn superblock_rows(&self) -> Vec<(&String, &Summary)> {
        let mut rows: Vec<(&String, &Summary)> = self.analysis.summaries.iter().collect();
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
        let mut f: Vec<&Finding> = self
            .analysis
            .findings
            .iter()
            .filter(|f| f.kind != correlate::FindingKind::Exempt)
            .filter(|f| !(live && f.kind == correlate::FindingKind::LeftFrozen))
            .collect();
        f.reverse();
        f
    }

    pub fn exempt_count(&self) -> usize {
        self.analysis.findings.iter().filter(|f| f.kind == correlate::FindingKind::Exempt).count()
    }

    /// Events matching the filter, newest first. The filter is space-separated terms, all of
    /// which must match: `sb:7:0` (device or mountpoint), `kind:block_write`, `pid:123`,
    /// `comm:dd`, or plain text searched in the whole line.
    pub fn filtered_events(&self) -> Vec<&Event> {
        let terms: Vec<&str> = self.filter.split_whitespace().collect();
        self.events.iter().rev().filter(|e| terms.iter().all(|t| matches_term(e, t))).collect()
    }

    /// Events of the selected finding's superblock around it (for the detail pane).
    pub fn events_around(&self, f: &Finding, n: usize) -> Vec<&Event> {
        let same: Vec<&Event> = self.events.iter().filter(|e| e.sb.id == f.sb.id).collect();
        let at = same.partition_point(|e| e.ts_ns < f.ts_ns);
        same[at.saturating_sub(n)..(at + n).min(same.len())].to_vec()
    }

    /// Frozen windows per superblock id, (start, end or None while still frozen), in the events'
    /// clock: from a successful freeze's return to the thaw that returns the level to 0.
    pub fn freeze_windows(&self) -> HashMap<String, Vec<(u64, Option<u64>)>> {
        let mut out: HashMap<String, Vec<(u64, Option<u64>)>> = HashMap::new();
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.ts_ns);
        for e in events {
            let windows = out.entry(e.sb.id.clone()).or_default();
            let open = windows.last().is_some_and(|w| w.1.is_none());
            match e.kind {
                EventKind::FreezeEnd if e.ret == Some(0) && !open => windows.push((e.ts_ns, None)),
                EventKind::ThawEnd if e.ret == Some(0) && e.level_after == Some(0) && open => {
                    if let Some(w) = windows.last_mut() {
                        w.1 = Some(e.ts_ns);
                    }
                }
                _ => {}
            }
        }
        out
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
                            self.push_event(ev);
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
                    Pane::Superblocks => (&mut self.sb_selected, self.analysis.summaries.len()),
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
                return e.sb.dev == value || e.sb.mountpoint.as_deref() == Some(value) || e.sb.id == value;
            }
            "kind" => return kind_name(e.kind) == value,
            "pid" => return e.pid.to_string() == value || e.tid.to_string() == value,
            "comm" => return lower(&e.comm).contains(&lower(value)),
            _ => {}
        }
    }
    lower(&event_line(e)).contains(&lower(term))
}

pub fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::FreezeBegin => "freeze_begin",
        EventKind::FreezeEnd => "freeze_end",
        EventKind::ThawBegin => "thaw_begin",
        EventKind::ThawEnd => "thaw_end",
        EventKind::BlockWrite => "block_write",
        EventKind::WriterBlocked => "writer_blocked",
        EventKind::WriterUnblocked => "writer_unblocked",
        EventKind::TxnStart => "txn_start",
        EventKind::MountBegin => "mount_begin",
        EventKind::MountEnd => "mount_end",
        EventKind::WriteDone => "write_done",
        EventKind::MountDenied => "mount_denied",
    }
}

/// One line describing an event, for the log and for text search.
pub fn event_line(e: &Event) -> String {
    // mount(2) events name no superblock (the call does not know it yet).
    let fs = if e.sb.id == "0x0" {
        "-".to_owned()
    } else {
        format!("{} {}", e.sb.dev, e.sb.mountpoint.as_deref().unwrap_or(&e.sb.fstype))
    };
    let mut s = format!("{:<16} {}[{}] {fs}", kind_name(e.kind), e.comm, e.pid);
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
        s.push_str(&format!(" {}B @{} on {}", b.bytes, b.sector, b.dev));
    }
    if let Some(m) = &e.mount {
        s.push_str(&format!(" {} {} -> {}", m.api, m.source, m.target));
    }
    if let Some(t) = &e.txn {
        s.push_str(&format!(" {}", t.caller.as_deref().unwrap_or("")));
    }
    if let Some(d) = &e.denial {
        let verdict = if d.mode == freeze_model::deny::DenyMode::Enforce { "denied" } else { "would deny" };
        s.push_str(&format!(" {verdict} at {}", d.lsm_hook));
    }
    s
}
