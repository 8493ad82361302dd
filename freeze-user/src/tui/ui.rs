//! Rendering: a pure function of `App` (`impl Widget for &App`).
use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, Borders, Cell, Clear, List, ListItem, ListState, Paragraph, Row, StatefulWidget, Table,
        TableState, Widget, Wrap,
    },
};

use super::{
    app::{App, Mode, Pane, event_line},
    keys::HELP,
};
use freeze_model::{
    correlate::{FindingKind, SbState, Severity},
    coverage::Coverage,
    units::fmt_clock,
};

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Error => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Severity::Warning => Style::new().fg(Color::Yellow),
        Severity::Info => Style::new().fg(Color::Gray),
    }
}

fn state_cell(state: SbState, level: u32) -> (String, Style) {
    match state {
        SbState::Frozen => ("FROZEN".into(), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        SbState::Freezing => (format!("freezing L{level}"), Style::new().fg(Color::Yellow)),
        SbState::Thawing => ("thawing".into(), Style::new().fg(Color::Cyan)),
        SbState::Unfrozen => ("unfrozen".into(), Style::new().fg(Color::Green)),
    }
}

fn focus_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused { Style::new().fg(Color::Cyan) } else { Style::new() };
    Block::new().borders(Borders::ALL).border_style(style).title(title)
}

fn kind_label(k: FindingKind) -> &'static str {
    k.as_str()
}

impl App {
    /// "off", "enforce", "audit", or "audit (inactive)" when the BPF LSM was unavailable.
    fn deny_mounts_label(&self) -> String {
        match self.header.as_ref().and_then(|h| h.deny_mounts) {
            None => "off".into(),
            Some(d) => {
                let mode = if d.mode == freeze_model::deny::DenyMode::Enforce { "enforce" } else { "audit" };
                if d.active { mode.into() } else { format!("{mode} (inactive)") }
            }
        }
    }

    fn status_line(&self) -> Line<'_> {
        let mut spans = vec![Span::styled(" freezewatch ", Style::new().add_modifier(Modifier::REVERSED))];
        match &self.mode {
            Mode::Live => spans.push(Span::raw(" live")),
            Mode::Replay { speed, playing, position, total } => spans.push(Span::raw(format!(
                " replay {} {speed}x, {position}/{total} events",
                if *playing { "playing" } else { "paused" }
            ))),
        }
        if self.paused {
            spans.push(Span::styled(" PAUSED", Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        }
        // A recording that misses a hook cannot show what that hook would have seen.
        let coverage = Coverage::of(self.header.as_ref());
        if coverage.is_partial() {
            let missing: Vec<&str> = coverage.missing.keys().map(|f| f.as_str()).collect();
            let what = if coverage.known { missing.join(",") } else { "hooks unknown".to_owned() };
            let style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
            spans.push(Span::styled(format!(" PARTIAL ({what})"), style));
        }
        spans.push(Span::raw(format!(" │ deny mounts: {}", self.deny_mounts_label())));
        spans.push(Span::raw(format!(" │ {:.1} ev/s", self.events_per_sec)));
        let lost = self.counters.lost();
        let lost_style =
            if lost > 0 { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() };
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(format!("lost {lost}"), lost_style));
        spans.push(Span::raw(format!(" │ trace: {}", self.trace_file.as_deref().unwrap_or("none"))));
        // Last, because it is the longest: each feature's program type (the hook names are in
        // the trace header and in `freezewatch doctor`).
        if let Some(h) = &self.header {
            let hooks: Vec<String> = h
                .hooks
                .iter()
                .map(|k| {
                    let ty = k.hook.as_deref().and_then(|n| n.split(':').next()).unwrap_or("OFF");
                    format!("{}={ty}", k.feature)
                })
                .collect();
            spans.push(Span::raw(format!(" │ hooks: {}", hooks.join(" "))));
        }
        Line::from(spans)
    }

    fn render_superblocks(&self, area: Rect, buf: &mut Buffer) {
        let header = Row::new([
            "DEVICE",
            "FS",
            "MOUNTPOINT",
            "STATE",
            "FROZEN FOR",
            "FREEZES",
            "SLIPS",
            "BLOCKED",
            "MOUNTS",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows: Vec<Row> = self
            .superblock_rows()
            .into_iter()
            .map(|(id, s)| {
                let sb = s.sb.as_ref();
                let (state, style) = state_cell(s.state, s.level);
                let frozen_for = s
                    .frozen_since_ns
                    .map(|since| fmt_clock(self.now_ns.saturating_sub(since)))
                    .unwrap_or_else(|| "-".into());
                let slips_style = if s.slips > 0 {
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                } else {
                    Style::new()
                };
                Row::new(vec![
                    Cell::from(sb.map_or_else(|| id.clone(), |b| b.dev.clone())),
                    Cell::from(sb.map_or_else(String::new, |b| b.fstype.clone())),
                    Cell::from(sb.and_then(|b| b.mountpoint.clone()).unwrap_or_else(|| "?".into())),
                    Cell::from(state).style(style),
                    Cell::from(frozen_for),
                    Cell::from(s.freezes.to_string()),
                    Cell::from(s.slips.to_string()).style(slips_style),
                    Cell::from(s.blocked_writers.to_string()),
                    Cell::from(s.mounts_while_frozen.to_string()),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(6),
        ];
        let count = rows.len();
        let table = Table::new(rows, widths)
            .header(header)
            .block(focus_block(format!(" Superblocks ({count}) "), self.focus == Pane::Superblocks))
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let mut state = TableState::default().with_selected((count > 0).then_some(self.sb_selected));
        StatefulWidget::render(table, area, buf, &mut state);
    }

    /// One bar per superblock: frozen windows (█), freezing/thawing now (▒), slips (!) and mounts
    /// that landed while frozen (M) over the last span of time.
    fn render_timeline(&self, area: Rect, buf: &mut Buffer) {
        let first = self.first_ts.unwrap_or(self.now_ns);
        let span = self.now_ns.saturating_sub(first).clamp(1_000_000_000, 60_000_000_000);
        let start = self.now_ns.saturating_sub(span);
        let block =
            Block::new().borders(Borders::ALL).title(format!(" Timeline (last {}) ", fmt_clock(span)));
        let inner = block.inner(area);
        block.render(area, buf);
        let label_w = 8u16;
        let width = inner.width.saturating_sub(label_w + 1) as usize;
        if width == 0 {
            return;
        }
        let cell_of = |ts: u64| -> Option<usize> {
            (ts >= start)
                .then(|| (((ts - start) as f64 / span as f64) * (width as f64 - 1.0)).round() as usize)
        };
        let windows = self.freeze_windows();
        let mut lines = Vec::new();
        for (id, s) in self.superblock_rows() {
            let mut bar = vec![' '; width];
            for (from, to) in windows.get(id.as_str()).map(Vec::as_slice).unwrap_or_default() {
                let to = to.unwrap_or(self.now_ns);
                if to < start {
                    continue;
                }
                let (a, b) = (cell_of(*from).unwrap_or(0), cell_of(to).unwrap_or(0));
                for c in bar.iter_mut().take(b.min(width - 1) + 1).skip(a) {
                    *c = '█';
                }
            }
            if matches!(s.state, SbState::Freezing | SbState::Thawing) {
                bar[width - 1] = '▒';
            }
            for f in self.findings.iter().filter(|f| &f.sb.id == id) {
                let mark = match f.kind {
                    FindingKind::Slip => '!',
                    FindingKind::MountWhileFrozen => 'M',
                    _ => continue,
                };
                if let Some(c) = cell_of(f.ts_ns) {
                    bar[c.min(width - 1)] = mark;
                }
            }
            let label = s.sb.as_ref().map_or_else(|| id.clone(), |b| b.dev.clone());
            let spans: Vec<Span> = std::iter::once(Span::raw(format!("{label:<8} ")))
                .chain(bar.into_iter().map(|c| match c {
                    '!' | 'M' => {
                        Span::styled(c.to_string(), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
                    }
                    '█' => Span::styled("█", Style::new().fg(Color::Blue)),
                    '▒' => Span::styled("▒", Style::new().fg(Color::Yellow)),
                    c => Span::raw(c.to_string()),
                }))
                .collect();
            lines.push(Line::from(spans));
        }
        lines.push(Line::from(Span::styled(
            "█ frozen  ▒ freezing/thawing  ! slip  M mount while frozen",
            Style::new().fg(Color::DarkGray),
        )));
        Paragraph::new(lines).render(inner, buf);
    }

    fn render_findings(&self, area: Rect, buf: &mut Buffer) {
        let findings = self.visible_findings();
        let start = self.header.as_ref().map_or(0, |h| h.started_monotonic_ns);
        let items: Vec<ListItem> = findings
            .iter()
            .map(|f| {
                let sev = match f.severity {
                    Severity::Error => "ERROR",
                    Severity::Warning => "WARN ",
                    Severity::Info => "info ",
                };
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{sev} {:<19}", kind_label(f.kind)), severity_style(f.severity)),
                    Span::raw(format!(" +{:<8} ", fmt_clock(f.ts_ns.saturating_sub(start)))),
                    Span::raw(f.message.clone()),
                ]))
            })
            .collect();
        let title = format!(
            " Findings ({}, newest first; {} exempt not shown) ",
            findings.len(),
            self.exempt_count()
        );
        let list = List::new(items)
            .block(focus_block(title, self.focus == Pane::Findings))
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let mut state =
            ListState::default().with_selected((!findings.is_empty()).then_some(self.finding_selected));
        StatefulWidget::render(list, area, buf, &mut state);
    }

    fn render_events(&self, area: Rect, buf: &mut Buffer) {
        let events = self.filtered_events();
        let filter = if self.filter_editing {
            format!(" filter: {}▏ ", self.filter)
        } else if self.filter.is_empty() {
            " / to filter ".to_owned()
        } else {
            format!(" filter: {} ", self.filter)
        };
        let title = format!(" Events ({} of {}) {filter}", events.len(), self.events.len());
        let start = self.header.as_ref().map_or(0, |h| h.started_monotonic_ns);
        let lines: Vec<Line> = events
            .iter()
            .take(area.height as usize)
            .map(|e| Line::raw(format!("+{:<9} {}", fmt_clock(e.ts_ns.saturating_sub(start)), event_line(e))))
            .collect();
        Paragraph::new(lines).block(focus_block(title, self.focus == Pane::Events)).render(area, buf);
    }

    fn render_detail(&self, area: Rect, buf: &mut Buffer) {
        let findings = self.visible_findings();
        let Some(f) = findings.get(self.finding_selected) else { return };
        let popup = centered(area, 90, 80);
        Clear.render(popup, buf);
        let mut lines = vec![
            Line::from(Span::styled(
                format!("{} ({:?})", kind_label(f.kind), f.severity),
                severity_style(f.severity),
            )),
            Line::raw(f.message.clone()),
            Line::raw(""),
            Line::raw(format!("task:  {}", f.who())),
            Line::raw(format!("hook:  {}", f.hook)),
            Line::raw(format!("level: {}", f.level.map_or("?".into(), |l| l.to_string()))),
            Line::raw(format!(
                "fs:    {} {} {} (superblock {})",
                f.sb.fstype,
                f.sb.dev,
                f.sb.mountpoint.as_deref().unwrap_or("?"),
                f.sb.id
            )),
        ];
        if let Some(d) = f.duration_ns {
            lines.push(Line::raw(format!("for:   {}", fmt_clock(d))));
        }
        lines.push(Line::raw(""));
        match &f.stack {
            Some(stack) => {
                lines.push(Line::from(Span::styled(
                    "kernel stack:",
                    Style::new().add_modifier(Modifier::BOLD),
                )));
                lines.extend(stack.iter().map(|fr| Line::raw(format!("  {fr}"))));
            }
            None => lines.push(Line::raw("kernel stack: none taken for this kind")),
        }
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled("events around it:", Style::new().add_modifier(Modifier::BOLD))));
        lines.extend(self.events_around(f, 4).into_iter().map(|e| {
            let mark = if e.ts_ns == f.ts_ns { ">" } else { " " };
            Line::raw(format!("{mark} {}", event_line(e)))
        }));
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(" Finding (Esc to close) "))
            .render(popup, buf);
    }

    fn render_help(&self, area: Rect, buf: &mut Buffer) {
        let popup = centered(area, 80, 60);
        Clear.render(popup, buf);
        let lines: Vec<Line> = HELP.iter().map(|(k, what)| Line::raw(format!("{k:<18} {what}"))).collect();
        Paragraph::new(lines)
            .block(Block::new().borders(Borders::ALL).title(" Keys (? or Esc to close) "))
            .render(popup, buf);
    }
}

fn centered(area: Rect, pct_w: u16, pct_h: u16) -> Rect {
    let w = area.width * pct_w / 100;
    let h = area.height * pct_h / 100;
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [status, main, hints] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
        Paragraph::new(self.status_line()).render(status, buf);
        let [top, findings, events] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(30), Constraint::Fill(1)])
                .areas(main);
        let [table, timeline] =
            Layout::horizontal([Constraint::Percentage(62), Constraint::Fill(1)]).areas(top);
        self.render_superblocks(table, buf);
        self.render_timeline(timeline, buf);
        self.render_findings(findings, buf);
        self.render_events(events, buf);
        let keys = match self.mode {
            Mode::Live => " q quit  ? help  Tab focus  ↑↓ select  Enter details  / filter  p pause",
            Mode::Replay { .. } => {
                " q quit  ? help  Tab focus  ↑↓ select  Enter details  / filter  Space play/pause  +/- speed"
            }
        };
        Paragraph::new(Line::styled(keys, Style::new().fg(Color::DarkGray))).render(hints, buf);
        if self.detail {
            self.render_detail(main, buf);
        }
        if self.help {
            self.render_help(main, buf);
        }
    }
}
