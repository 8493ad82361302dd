//! Screens rendered into ratatui's TestBackend from a scripted recording (a freeze with a
//! blocked writer, a direct-device write that slipped, a mount that landed while frozen), and
//! the key handling on the pure state.
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

use super::{
    app::{Action, App, Mode, Pane},
    keys::action_for,
};
use freeze_model::{
    correlate,
    trace::{Contents, read_trace},
};

/// Recorded on the project's machine: ext4 on /tmp/fwfix/data frozen; `sh` blocked writing a
/// file; `dd` wrote the loop device directly; `mount` mounted the device again; then thaw.
const FIXTURE: &str = include_str!("../../../tests/fixtures/slip-blocked-mount.ndjson");

fn app_with(mode: Mode) -> App {
    app_with_events(mode, |_| {})
}

/// `app_with`, after `edit` has changed each event.
fn app_with_events(mode: Mode, edit: impl Fn(&mut freeze_model::event::Event)) -> App {
    let mut contents = Contents::from_records(read_trace(FIXTURE.as_bytes()).expect("fixture parses"));
    contents.events.iter_mut().for_each(edit);
    let mut app = App::new(mode, correlate::Options::default());
    app.header = contents.header.clone();
    app.counters = contents.footer.as_ref().map(|f| f.counters.clone()).unwrap_or_default();
    app.trace_file = Some("slip-blocked-mount.ndjson".into());
    for ev in contents.events.iter().cloned() {
        app.push_event(ev);
    }
    let end = contents.end_ns().expect("footer");
    app.refresh(end);
    app
}

fn replay_app() -> App {
    app_with(Mode::Replay { speed: 1.0, playing: false, position: 10, total: 10 })
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| f.render_widget(app, f.area())).expect("draws");
    let buf = terminal.backend().buffer().clone();
    (0..h).map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>()).collect()
}

fn row_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", lines.join("\n")))
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn the_status_line_says_how_mounts_are_gated() {
    use freeze_model::{deny::DenyMode, trace::DenyStatus};
    let mut app = replay_app();
    for (status, label) in [
        (Some(DenyStatus { mode: DenyMode::Enforce, active: true }), "deny mounts: enforce"),
        (Some(DenyStatus { mode: DenyMode::Audit, active: true }), "deny mounts: audit"),
        (Some(DenyStatus { mode: DenyMode::Audit, active: false }), "deny mounts: audit (inactive)"),
        (None, "deny mounts: off"),
    ] {
        app.header.as_mut().expect("replay has a header").deny_mounts = status;
        let lines = screen(&app, 200, 44);
        assert!(lines[0].contains(label), "{label}: {}", lines[0]);
    }
}

#[test]
fn main_screen_shows_the_superblock_findings_and_status() {
    let app = replay_app();
    let lines = screen(&app, 160, 44);
    let status = &lines[0];
    assert!(status.starts_with(" freezewatch  replay paused 1x, 10/10 events"), "{status}");
    assert!(status.contains("hooks: freeze=tracepoint"), "{status}");
    assert!(status.contains("deny mounts: off"), "{status}");
    assert!(status.contains("lost 0"), "{status}");
    assert!(status.contains("trace: slip-blocked-mount.ndjson"), "{status}");

    let row = row_with(&lines, "/tmp/fwfix/data        ");
    let cols: Vec<&str> = row.trim_matches(|c| c == '│' || c == ' ').split_whitespace().collect();
    // DEVICE FS MOUNTPOINT STATE FROZEN-FOR FREEZES SLIPS BLOCKED MOUNTS
    assert_eq!(cols[..9], ["7:0", "ext4", "/tmp/fwfix/data", "unfrozen", "-", "1", "1", "1", "1"], "{row}");

    assert!(row_with(&lines, "Findings (3, newest first; 1 exempt not shown)").contains('┌'));
    let slip = row_with(&lines, "ERROR slip");
    assert!(slip.contains("dd[23716] wrote 4096 bytes at sector 128000 of block device 7:0"), "{slip}");
    assert!(
        row_with(&lines, "ERROR mount-while-frozen").contains("mount of /dev/loop0 on /tmp/fwfix/snapview")
    );
    assert!(row_with(&lines, "info  blocked-writer").contains("sh[23714] waited"));
    // Newest first: the mount (+0.368s) above the slip (+0.355s) above the wait (+0.051s).
    let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).expect(needle);
    assert!(
        pos("ERROR mount-while-frozen") < pos("ERROR slip")
            && pos("ERROR slip") < pos("info  blocked-writer")
    );

    let timeline = row_with(&lines, "Timeline (last");
    assert!(timeline.contains("Timeline (last 1.000s)"), "{timeline}");
    let bar = lines.iter().find(|l| l.contains("│7:0 ") && l.contains('█')).expect("a freeze bar");
    assert!(bar.contains('!') && bar.contains('M'), "slip and mount marked on the bar: {bar}");
    assert!(row_with(&lines, "Events (10 of 10)").contains("/ to filter"));
    assert!(row_with(&lines, "block_write      dd[23716]").contains("4096B @128000 on 7:0"));
    assert!(lines[43].contains("Space play/pause  +/- speed"), "{}", lines[43]);
}

#[test]
fn a_live_frozen_superblock_shows_its_clock_running() {
    // Cut the recording right after the slip: the filesystem is frozen "now".
    let contents = Contents::from_records(read_trace(FIXTURE.as_bytes()).expect("fixture parses"));
    let mut app = App::new(Mode::Live, correlate::Options::default());
    app.header = contents.header.clone();
    let events: Vec<_> = contents.events.iter().take_while(|e| e.comm != "mount").cloned().collect();
    let freeze_end =
        events.iter().find(|e| e.kind == freeze_model::event::EventKind::FreezeEnd).expect("freeze").ts_ns;
    for ev in events {
        app.push_event(ev);
    }
    app.refresh(freeze_end + 2_500_000_000);
    let lines = screen(&app, 160, 44);
    let row = row_with(&lines, "/tmp/fwfix/data        ");
    assert!(row.contains("FROZEN       2.500s"), "{row}");
    assert!(lines[0].starts_with(" freezewatch  live"), "{}", lines[0]);
    let slip = row_with(&lines, "ERROR slip");
    assert!(slip.contains("dd[23716]"));
    assert!(!lines.iter().any(|l| l.contains("left-frozen")), "live, nothing has ended yet");
}

#[test]
fn the_details_say_who_with_parent_and_unit() {
    use freeze_model::attribution::{Cgroup, Parent};
    let mut app =
        app_with_events(Mode::Replay { speed: 1.0, playing: false, position: 10, total: 10 }, |ev| {
            if ev.comm == "dd" {
                ev.parent = Some(
                    Parent { pid: 23700, comm: "backup.sh".into(), reaper: false, exiting: false }.into(),
                );
                ev.cgroup = Some(Cgroup::at(77, "/system.slice/backup.service".into()).into());
            }
        });
    app.apply(action_for(&app, key(KeyCode::Tab)));
    app.apply(action_for(&app, key(KeyCode::Down)));
    app.apply(action_for(&app, key(KeyCode::Enter)));
    let lines = screen(&app, 160, 44);
    let task = row_with(&lines, "task:  dd[23716]");
    assert!(task.contains("dd[23716] ← backup.sh[23700] in backup.service"), "{task}");
}

#[test]
fn enter_on_a_finding_opens_its_details() {
    let mut app = replay_app();
    app.apply(action_for(&app, key(KeyCode::Tab)));
    assert_eq!(app.focus, Pane::Findings);
    app.apply(action_for(&app, key(KeyCode::Down))); // the slip (second newest)
    app.apply(action_for(&app, key(KeyCode::Enter)));
    assert!(app.detail);
    let lines = screen(&app, 160, 44);
    assert!(row_with(&lines, "Finding (Esc to close)").contains('┌'));
    assert!(row_with(&lines, "task:  dd[23716]").contains("dd[23716]"));
    assert!(row_with(&lines, "hook:  tracepoint:block:block_bio_queue").contains("hook"));
    assert!(row_with(&lines, "level: 4").contains("level"));
    assert!(row_with(&lines, "kernel stack:").contains("stack"));
    assert!(row_with(&lines, "blkdev_write_iter+").contains("+0x"));
    assert!(row_with(&lines, "> block_write      dd[23716]").contains("4096B"));
    app.apply(action_for(&app, key(KeyCode::Esc)));
    assert!(!app.detail);
}

#[test]
fn question_mark_lists_every_key() {
    let mut app = replay_app();
    app.apply(action_for(&app, key(KeyCode::Char('?'))));
    let lines = screen(&app, 160, 44);
    for (keys, _) in super::keys::HELP {
        assert!(lines.iter().any(|l| l.contains(keys)), "help lacks {keys}");
    }
    app.apply(action_for(&app, key(KeyCode::Char('?'))));
    assert!(!app.help);
}

#[test]
fn the_filter_narrows_the_event_log() {
    let mut app = replay_app();
    for k in
        [KeyCode::Char('/'), KeyCode::Char('c'), KeyCode::Char('o'), KeyCode::Char('m'), KeyCode::Char('m')]
    {
        app.apply(action_for(&app, key(k)));
    }
    // While editing, letters are text, not commands: `q` must not quit.
    app.apply(action_for(&app, key(KeyCode::Char('q'))));
    assert!(!app.should_quit);
    app.apply(action_for(&app, key(KeyCode::Backspace)));
    for c in ":dd".chars() {
        app.apply(action_for(&app, key(KeyCode::Char(c))));
    }
    app.apply(action_for(&app, key(KeyCode::Enter)));
    assert_eq!((app.filter.as_str(), app.filter_editing, app.focus), ("comm:dd", false, Pane::Events));
    let shown = app.filtered_events();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].comm, "dd");
    let lines = screen(&app, 160, 44);
    assert!(row_with(&lines, "Events (1 of 10)").contains("filter: comm:dd"));
    for (filter, n) in
        [("kind:thaw_end", 1), ("sb:7:0", 8), ("pid:23716", 1), ("snapview", 2), ("kind:nope", 0)]
    {
        app.filter = filter.into();
        assert_eq!(app.filtered_events().len(), n, "{filter}");
    }
    app.apply(action_for(&app, key(KeyCode::Char('/'))));
    app.apply(action_for(&app, key(KeyCode::Esc)));
    assert_eq!((app.filter.as_str(), app.filter_editing), ("", false));
}

#[test]
fn selection_moves_within_bounds_and_focus_cycles() {
    let mut app = replay_app();
    app.focus = Pane::Findings;
    for _ in 0..10 {
        app.apply(Action::Down);
    }
    assert_eq!(app.finding_selected, 2, "three findings");
    for _ in 0..10 {
        app.apply(Action::Up);
    }
    assert_eq!(app.finding_selected, 0);
    let order: Vec<Pane> = (0..3)
        .map(|_| {
            app.apply(action_for(&app, key(KeyCode::Tab)));
            app.focus
        })
        .collect();
    assert_eq!(order, [Pane::Events, Pane::Superblocks, Pane::Findings]);
    app.apply(action_for(&app, KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)));
    assert_eq!(app.focus, Pane::Superblocks);
}

#[test]
fn pause_holds_live_events_and_resume_applies_them() {
    let mut app = app_with(Mode::Live);
    let before = app.events.len();
    app.apply(action_for(&app, key(KeyCode::Char('p'))));
    assert!(app.paused);
    let extra = app.events[0].clone();
    app.push_event(extra);
    assert_eq!((app.events.len(), app.held.len()), (before, 1));
    assert!(screen(&app, 160, 44)[0].contains("PAUSED"));
    app.apply(action_for(&app, key(KeyCode::Char('p'))));
    assert_eq!((app.events.len(), app.held.len(), app.paused), (before + 1, 0, false));
}

#[test]
fn replay_keys_change_speed_and_play_state() {
    let mut app = replay_app();
    app.apply(action_for(&app, key(KeyCode::Char('+'))));
    app.apply(action_for(&app, key(KeyCode::Char('+'))));
    app.apply(action_for(&app, key(KeyCode::Char(' '))));
    assert_eq!(app.mode, Mode::Replay { speed: 4.0, playing: true, position: 10, total: 10 });
    app.apply(action_for(&app, key(KeyCode::Char('-'))));
    assert!(matches!(app.mode, Mode::Replay { speed: 2.0, .. }));
    // In live mode + and - mean nothing.
    let live = app_with(Mode::Live);
    assert_eq!(action_for(&live, key(KeyCode::Char('+'))), Action::None);
}

#[test]
fn q_and_ctrl_c_quit_even_over_overlays() {
    let mut app = replay_app();
    app.apply(Action::ToggleHelp);
    app.apply(action_for(&app, key(KeyCode::Char('q'))));
    assert!(app.should_quit);
    let mut app = replay_app();
    app.filter_editing = true;
    app.apply(action_for(&app, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(app.should_quit);
}

#[test]
fn the_event_log_keeps_the_newest_events_while_counts_stay_complete() {
    let contents = Contents::from_records(read_trace(FIXTURE.as_bytes()).expect("fixture parses"));
    let mut app = App::new(Mode::Live, correlate::Options::default());
    app.log_capacity = 3;
    let n = contents.events.len();
    for ev in contents.events.iter().cloned() {
        app.push_event(ev);
    }
    // Live, the newest events wait out the reorder window: the clock has passed it here.
    app.refresh(contents.end_ns().expect("footer") + correlate::DEFAULT_REORDER_NS);
    assert_eq!(app.events.len(), 3, "only the newest 3 of {n}");
    assert_eq!(app.events.back(), contents.events.last(), "the newest is kept");
    let s = app.summaries.values().find(|s| s.freezes > 0).expect("the frozen filesystem");
    assert_eq!((s.freezes, s.thaws, s.slips, s.blocked_writers, s.mounts_while_frozen), (1, 1, 1, 1, 1));
    // The same counts as with room for every event.
    let mut full = app_with(Mode::Live);
    full.refresh(contents.end_ns().expect("footer") + correlate::DEFAULT_REORDER_NS);
    assert_eq!(app.summaries, full.summaries);
    assert_eq!(app.visible_findings().len(), full.visible_findings().len());
    // Paused, held events are bounded the same way: the oldest is applied to make room.
    app.apply(Action::TogglePause);
    for ev in contents.events.iter().take(5).cloned() {
        app.push_event(ev);
    }
    assert_eq!(app.held.len(), 3);
}

#[test]
fn the_status_line_says_when_a_hook_did_not_attach() {
    let mut app = app_with(Mode::Live);
    assert!(!screen(&app, 200, 44)[0].contains("PARTIAL"), "the fixture's recording had every hook");
    let header = app.header.as_mut().expect("header");
    let xfs = header.hooks.iter_mut().find(|h| h.feature == "txn-xfs").expect("txn-xfs");
    xfs.hook = None;
    let top = &screen(&app, 200, 44)[0];
    assert!(top.contains("PARTIAL (txn-xfs)"), "{top}");
}
