//! The exit-code policy of every command, in one place:
//! 0 done (every assertion holds; doctor: recording can work), 1 failed (an assertion failed, the
//! output could not be written; doctor: recording cannot work), 2 unreadable input (usage, a bad
//! assertion, a malformed trace: clap uses 2 for usage errors too), 3 the tracer could not run
//! (privileges, BTF, programs refused). `run --propagate-exit` may end with the command's status.
use std::process::ExitCode;

use crate::bpf::loader::LoadError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Failed,
    Input,
    Tracer,
    /// The traced command's own non-zero status.
    Command(u8),
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Input => 2,
            Exit::Tracer => 3,
            Exit::Command(code) => code,
        })
    }
}

/// Why a command stopped early: the message for stderr and the exit it means.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    /// Unreadable input (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self { exit: Exit::Input, message: message.into() }
    }

    /// The command could not finish (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self { exit: Exit::Failed, message: message.into() }
    }
}

impl From<anyhow::Error> for Failure {
    /// A top-level error: exit 3 when the tracer itself could not run (a `LoadError` anywhere in
    /// the chain), else 1.
    fn from(e: anyhow::Error) -> Self {
        let tracer = e.chain().any(|c| c.downcast_ref::<LoadError>().is_some());
        Self { exit: if tracer { Exit::Tracer } else { Exit::Failed }, message: format!("{e:#}") }
    }
}

/// What a command handler returns.
pub type Outcome = Result<Exit, Failure>;

/// Prints a failure and turns the outcome into the process's exit code.
pub fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(exit) => exit.into(),
        Err(f) => {
            eprintln!("freezewatch: {}", f.message);
            f.exit.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_error_anywhere_in_the_chain_is_exit_3() {
        let load = anyhow::Error::new(LoadError::Privileges("root needed".into())).context("recording");
        assert_eq!(Failure::from(load).exit, Exit::Tracer);
        assert_eq!(Failure::from(anyhow::anyhow!("disk full")).exit, Exit::Failed);
        assert_eq!(ExitCode::from(Exit::Input), ExitCode::from(2));
    }
}
