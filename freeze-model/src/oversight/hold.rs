//! One freeze call still in force, and who owns it: the call's process, or its parent.
use crate::{
    attribution::{Cgroup, Parent},
    event::{ProcessExit, Superblock},
    units::fmt_secs,
};

use super::SETTLE_NS;

/// A process's exit, as the kernel reported it.
#[derive(Clone, Debug)]
pub(super) struct Exited {
    pub(super) at: u64,
    pub(super) how: ProcessExit,
}

/// One successful freeze call still in force.
#[derive(Clone, Debug)]
pub(super) struct Hold {
    /// For a block-device hold: the device-mapper name of the device, when known.
    pub(super) device_name: Option<String>,
    /// The process that made the call.
    pub(super) pid: u32,
    pub(super) comm: String,
    pub(super) parent: Option<std::sync::Arc<Parent>>,
    pub(super) cgroup: Option<std::sync::Arc<Cgroup>>,
    /// When the call returned.
    pub(super) returned_ns: u64,
    pub(super) caller_exit: Option<Exited>,
    pub(super) parent_exit: Option<Exited>,
}

impl Hold {
    /// When its owner went and what to say of it; `None` while it is held (its caller still
    /// runs, or ran past `SETTLE_NS` and still does, or its parent owns it and still runs).
    pub(super) fn gone(&self, sb: &Superblock) -> Option<(u64, String)> {
        let caller = format!("{}[{}]", self.comm, self.pid);
        let exit = self.caller_exit.as_ref()?;
        let after = fmt_secs(exit.at.saturating_sub(self.returned_ns));
        if exit.at >= self.returned_ns + SETTLE_NS {
            return Some((
                exit.at,
                format!("{caller} {} {after} after freezing {}", exit.how.describe(), sb.describe()),
            ));
        }
        let ran =
            format!("{caller}, which froze {} and {} {after} later", sb.describe(), exit.how.describe());
        match &self.parent {
            Some(p) if p.reaper => Some((
                exit.at,
                format!(
                    "{ran}, was started by {}[{}], an init or subreaper, which holds nothing",
                    p.comm, p.pid
                ),
            )),
            Some(p) if p.exiting => Some((
                exit.at,
                format!("{ran}, was started by {}[{}], which was exiting already", p.comm, p.pid),
            )),
            Some(p) => {
                let pe = self.parent_exit.as_ref()?;
                let at = pe.at.max(exit.at);
                Some((at, format!("{}[{}] {}; it had run {ran}", p.comm, p.pid, pe.how.describe())))
            }
            None => Some((exit.at, format!("{ran}; who started it is unknown"))),
        }
    }

    /// Takes the exit of process `pid` at `at`, when it is this hold's caller or parent.
    pub(super) fn exited(&mut self, pid: u32, at: u64, how: &ProcessExit) {
        if self.pid == pid && self.caller_exit.is_none() {
            self.caller_exit = Some(Exited { at, how: how.clone() });
        }
        if self.parent.as_ref().is_some_and(|p| p.pid == pid) && self.parent_exit.is_none() {
            self.parent_exit = Some(Exited { at, how: how.clone() });
        }
    }

    pub(super) fn recorded_owner(&self) -> String {
        match &self.parent {
            Some(p) => format!("{}[{}] ← {}[{}]", self.comm, self.pid, p.comm, p.pid),
            None => format!("{}[{}]", self.comm, self.pid),
        }
    }
}
