//! What the mount findings need from the mount calls around them: the call each thread is in (a
//! denial names the superblock, the call names the paths), the device each thread last gave
//! fsconfig, and which fsconfig creates audit mode already judged. Every map is bounded: a
//! thread whose call never ends (its end was lost) is forgotten after `CALLS_KEPT` newer ones.
use std::collections::HashMap;

use crate::{
    deny::DenyMode,
    event::{Event, MountApi, MountCall},
};

/// Entries each map keeps at most.
const CALLS_KEPT: usize = 4096;

/// A map that forgets its oldest entry when it grows past `CALLS_KEPT`.
struct Recent<V> {
    map: HashMap<u32, (u64, V)>,
    next: u64,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), next: 0 }
    }
}

impl<V> Recent<V> {
    fn insert(&mut self, tid: u32, value: V) {
        self.next += 1;
        self.map.insert(tid, (self.next, value));
        if self.map.len() > CALLS_KEPT
            && let Some(oldest) = self.map.iter().min_by_key(|(_, (seq, _))| *seq).map(|(k, _)| *k)
        {
            self.map.remove(&oldest);
        }
    }

    fn get(&self, tid: u32) -> Option<&V> {
        self.map.get(&tid).map(|(_, v)| v)
    }

    fn remove(&mut self, tid: u32) -> Option<V> {
        self.map.remove(&tid).map(|(_, v)| v)
    }
}

#[derive(Default)]
pub(super) struct MountCalls {
    /// The mount call each thread is in.
    calls: Recent<MountCall>,
    /// The "source" each thread last gave fsconfig (the new mount API's device).
    fs_sources: Recent<String>,
    /// Audit mode: threads whose fsconfig create was already judged, with the superblock id.
    /// Their move_mount of the same superblock is the same mount, judged once.
    judged_creates: Recent<Option<String>>,
}

impl MountCalls {
    pub(super) fn len(&self) -> usize {
        self.calls.map.len() + self.fs_sources.map.len() + self.judged_creates.map.len()
    }

    pub(super) fn begin(&mut self, ev: &Event) {
        let Some(call) = &ev.mount else { return };
        if call.api == MountApi::Fsconfig && call.source == "source" {
            self.fs_sources.insert(ev.tid, call.target.clone());
        }
        self.calls.insert(ev.tid, (**call).clone());
    }

    /// The call returned: the thread is in no call any more.
    pub(super) fn end(&mut self, ev: &Event) {
        self.calls.remove(ev.tid);
    }

    /// What a denial event refused, named for people ("mount of /dev/loop0 on /m1"); None when
    /// it repeats a judgement already made (audit mode: fsconfig create, then its move_mount).
    pub(super) fn denied(&mut self, ev: &Event) -> Option<String> {
        let call = self.calls.get(ev.tid);
        let api = call.map(|c| c.api);
        let audit = ev.denial.as_ref().is_some_and(|d| d.mode == DenyMode::Audit);
        let sb_id = ev.sb.as_ref().map(|sb| sb.id.clone());
        if audit && api == Some(MountApi::Fsconfig) {
            self.judged_creates.insert(ev.tid, sb_id);
        } else if audit && api == Some(MountApi::MoveMount) && self.judged_creates.get(ev.tid) == Some(&sb_id)
        {
            self.judged_creates.remove(ev.tid);
            return None;
        }
        Some(match call {
            Some(c) if c.api == MountApi::Fsconfig => {
                format!("fsconfig create of {}", self.fs_sources.get(ev.tid).map_or("?", String::as_str))
            }
            Some(c) => c.describe(),
            None => format!("a mount ({})", ev.denial.as_ref().map_or("?", |d| d.lsm_hook.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first_when_full() {
        let mut r = Recent::default();
        for tid in 0..=CALLS_KEPT as u32 {
            r.insert(tid, tid);
        }
        assert_eq!(r.map.len(), CALLS_KEPT);
        assert_eq!(r.get(0), None, "the oldest was forgotten");
        assert_eq!(r.get(1), Some(&1));
        r.insert(1, 10); // refreshed: now the newest
        r.insert(CALLS_KEPT as u32 + 1, 0);
        assert_eq!((r.get(1), r.get(2)), (Some(&10), None));
    }
}
