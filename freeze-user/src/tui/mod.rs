//! The live TUI and trace replay (`freezewatch tui`): state in `app`, key handling in `keys`,
//! rendering in `ui`, the loops and the terminal guard in `run`.
pub mod app;
pub mod keys;
pub mod run;
pub mod ui;

#[cfg(test)]
mod tests;
