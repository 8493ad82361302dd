//! Key handling: a pure function from the state and a key to an action.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App, Mode};

/// Every key, for the `?` screen: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit (the terminal is restored)"),
    ("?", "show or hide this help"),
    ("Tab / Shift-Tab", "move focus: superblocks → findings → events"),
    ("↑ ↓ / k j", "select in the focused table"),
    ("Enter", "details of the selected finding: task, hook, level, stack, events around it"),
    ("Esc", "close details or help; clear the filter while editing it"),
    ("/", "filter the event log: sb:7:0  kind:block_write  pid:123  comm:dd  or any text"),
    ("p, Space", "live: pause/resume the event stream; replay: play/pause"),
    ("+ / -", "replay: twice / half as fast"),
];

pub fn action_for(app: &App, key: KeyEvent) -> Action {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if app.filter_editing {
        return match key.code {
            KeyCode::Enter => Action::FilterDone,
            KeyCode::Esc => Action::FilterClear,
            KeyCode::Backspace => Action::FilterBackspace,
            KeyCode::Char(c) => Action::FilterChar(c),
            _ => Action::None,
        };
    }
    if app.help || app.detail {
        return match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') => Action::CloseOverlay,
            KeyCode::Char('q') => Action::Quit,
            _ => Action::None,
        };
    }
    let replay = matches!(app.mode, Mode::Replay { .. });
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('p') | KeyCode::Char(' ') => Action::TogglePause,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::BackTab => Action::FocusPrev,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Enter => Action::OpenDetail,
        KeyCode::Esc => Action::CloseOverlay,
        KeyCode::Char('/') => Action::FilterStart,
        KeyCode::Char('+') | KeyCode::Char('=') if replay => Action::Faster,
        KeyCode::Char('-') if replay => Action::Slower,
        _ => Action::None,
    }
}
