//! Who holds a frozen filesystem: one entry per successful freeze not yet ended, and which thaw
//! ends which. The correlator (counting holders), the timeline (drawing each freeze) and `watch`
//! (judging owners) all pair thaws with freezes here, so they agree.
//!
//! Holds nest from Linux 6.6 on (a kernel and a user-space holder, a block-device freeze and a
//! FIFREEZE). A thaw ends the newest hold made the same way (`HeldBy`) by the same holder; else
//! the newest made the same way; else the newest. The kernel's level is the truth: a thaw that
//! leaves the filesystem unfrozen ends every hold (a freeze may not have been seen).
use crate::event::{Event, FreezeVia};

/// How a freeze was made, which says who may end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldBy {
    /// A FIFREEZE (a freeze_super of a user-space holder): the process that made it, or its
    /// parent, owns it; the watchdog may thaw it.
    Process,
    /// The kernel's own freeze (holder `kernel`): no process owns it.
    Kernel,
    /// A block-device freeze (`via: block-device`, device-mapper's suspend): a process owns it,
    /// but only resuming the device ends it.
    BlockDevice,
    /// Found frozen (the level probe): how, and by whom, is unknown.
    Unknown,
}

impl HeldBy {
    /// How the freeze or thaw `ev` was made.
    pub fn of(ev: &Event) -> Self {
        if ev.via == Some(FreezeVia::BlockDevice) {
            Self::BlockDevice
        } else if ev.holder.as_deref().is_some_and(|h| h.starts_with("kernel")) {
            Self::Kernel
        } else {
            Self::Process
        }
    }
}

/// The holds of one filesystem, oldest first, each with what its keeper keeps of it.
#[derive(Clone, Debug)]
pub struct Holds<T> {
    open: Vec<(HeldBy, Option<String>, T)>,
}

impl<T> Default for Holds<T> {
    fn default() -> Self {
        Self { open: Vec::new() }
    }
}

impl<T> Holds<T> {
    /// A successful freeze `ev`: a new hold, with `value`.
    pub fn freeze(&mut self, ev: &Event, value: T) {
        self.open.push((HeldBy::of(ev), ev.holder.clone(), value));
    }

    /// A hold found without its freeze being seen (frozen before recording began).
    pub fn found(&mut self, value: T) {
        self.open.push((HeldBy::Unknown, None, value));
    }

    /// A successful thaw `ev`: the holds it ends (one, or all when it left the filesystem
    /// unfrozen), oldest first.
    pub fn thaw(&mut self, ev: &Event) -> Vec<T> {
        if ev.level_after == Some(freeze_common::level::UNFROZEN) {
            return self.clear();
        }
        let (by, holder) = (HeldBy::of(ev), ev.holder.as_ref());
        let at = self
            .open
            .iter()
            .rposition(|(b, h, _)| *b == by && h.as_ref() == holder)
            .or_else(|| self.open.iter().rposition(|(b, _, _)| *b == by))
            .or_else(|| self.open.len().checked_sub(1));
        at.map(|at| self.open.remove(at).2).into_iter().collect()
    }

    /// Ends every hold; returns them, oldest first.
    pub fn clear(&mut self) -> Vec<T> {
        self.open.drain(..).map(|(_, _, v)| v).collect()
    }

    /// The newest hold, removed (what is still open at the end of a trace, newest first).
    pub fn pop(&mut self) -> Option<T> {
        self.open.pop().map(|(_, _, v)| v)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether some hold was made `by`.
    pub fn any_by(&self, by: HeldBy) -> bool {
        self.open.iter().any(|(b, _, _)| *b == by)
    }

    /// The holds, oldest first, with how each was made.
    pub fn iter(&self) -> impl Iterator<Item = (HeldBy, &T)> {
        self.open.iter().map(|(b, _, v)| (*b, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (HeldBy, &mut T)> {
        self.open.iter_mut().map(|(b, _, v)| (*b, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::{freeze, thaw};

    fn held(kind: HeldBy, holder: &str, level_after: u32) -> Event {
        let [_, mut e] = freeze(0);
        e.holder = Some(holder.into());
        e.via = (kind == HeldBy::BlockDevice).then_some(FreezeVia::BlockDevice);
        e.level_after = Some(level_after);
        e
    }

    #[test]
    fn a_thaw_ends_the_hold_made_its_way_and_an_unfrozen_level_ends_them_all() {
        let mut h = Holds::default();
        h.freeze(&held(HeldBy::Process, "userspace", 4), "fifreeze");
        h.freeze(&held(HeldBy::Kernel, "kernel", 4), "kernel");
        h.freeze(&held(HeldBy::BlockDevice, "userspace+may_nest", 4), "suspend");
        assert!(h.any_by(HeldBy::BlockDevice));
        // The resume ends the suspend, though a FIFREEZE hold is newer than nothing else.
        assert_eq!(h.thaw(&held(HeldBy::BlockDevice, "userspace+may_nest", 4)), ["suspend"]);
        // A FITHAW ends the FIFREEZE, not the kernel's newer hold.
        assert_eq!(h.thaw(&held(HeldBy::Process, "userspace", 4)), ["fifreeze"]);
        assert_eq!(h.iter().map(|(b, v)| (b, *v)).collect::<Vec<_>>(), [(HeldBy::Kernel, "kernel")]);
        // Unknown holder: the newest.
        let [_, mut unknown] = thaw(0, 4);
        unknown.holder = None;
        h.freeze(&held(HeldBy::Process, "userspace", 4), "again");
        assert_eq!(h.thaw(&unknown), ["again"]);
        // The kernel says unfrozen: everything ends.
        h.found("probed");
        assert_eq!(h.thaw(&held(HeldBy::Process, "userspace", 0)), ["kernel", "probed"]);
        assert!(h.is_empty());
        assert!(h.thaw(&held(HeldBy::Process, "userspace", 0)).is_empty());
    }
}
