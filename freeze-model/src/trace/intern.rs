//! What a trace repeats on every event (its superblock, its stack, its task's cgroup and parent),
//! read once per distinct text: later events share the first one's copy. The tables are keyed
//! by the JSON text itself, so a repeat costs a hash and a compare, not a parse and allocations;
//! each is bounded (cleared when full), so a trace of endless distinct values cannot grow them.
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::scan::Cursor;
use serde::de::DeserializeOwned;

use crate::{
    attribution::{Cgroup, Parent},
    event::{SharedSuperblock, Stack, Superblock},
};

/// Entries one table keeps at most.
const KEPT: usize = 4096;
/// Texts compared first, as they stand on the line, before anything is hashed.
const RECENT: usize = 8;

/// Values by the JSON text they were read from (`None`: that text is `null`).
struct Table<T> {
    /// The last few distinct texts read: most events repeat one of them.
    recent: Vec<(Box<[u8]>, Option<T>)>,
    by_text: FxHashMap<Box<[u8]>, Option<T>>,
}

impl<T: Clone> Table<T> {
    fn new() -> Self {
        Self { recent: Vec::with_capacity(RECENT), by_text: FxHashMap::default() }
    }

    /// The value at the cursor: the shared copy when its text was read before, else
    /// `read(text)` (None when that fails: the line goes to the reader that names what is wrong).
    fn read(
        &mut self,
        c: &mut Cursor<'_>,
        read: impl FnOnce(&[u8]) -> Option<Option<T>>,
    ) -> Option<Option<T>> {
        if let Some(value) = c.known(&self.recent) {
            return Some(value.clone());
        }
        let text = c.value()?;
        let value = self.get(text, read)?;
        if self.recent.len() == RECENT {
            self.recent.pop();
        }
        self.recent.insert(0, (text.into(), value.clone()));
        Some(value)
    }

    fn get(&mut self, text: &[u8], read: impl FnOnce(&[u8]) -> Option<Option<T>>) -> Option<Option<T>> {
        if let Some(known) = self.by_text.get(text) {
            return Some(known.clone());
        }
        let value = read(text)?;
        if self.by_text.len() >= KEPT {
            self.by_text.clear();
        }
        self.by_text.insert(text.into(), value.clone());
        Some(value)
    }
}

fn json<T: DeserializeOwned>(text: &[u8]) -> Option<Option<T>> {
    serde_json::from_slice(text).ok()
}

pub(super) struct Interner {
    superblocks: Table<SharedSuperblock>,
    stacks: Table<Stack>,
    cgroups: Table<Arc<Cgroup>>,
    parents: Table<Arc<Parent>>,
}

impl Interner {
    pub(super) fn new() -> Self {
        Self { superblocks: Table::new(), stacks: Table::new(), cgroups: Table::new(), parents: Table::new() }
    }

    /// An event's `sb` (the zeroed superblock of older traces is none, as for serde).
    pub(super) fn superblock(&mut self, c: &mut Cursor<'_>) -> Option<Option<SharedSuperblock>> {
        self.superblocks.read(c, |t| json::<SharedSuperblock>(t).map(|sb| sb.filter(Superblock::is_known)))
    }

    pub(super) fn stack(&mut self, c: &mut Cursor<'_>) -> Option<Option<Stack>> {
        self.stacks.read(c, json)
    }

    pub(super) fn cgroup(&mut self, c: &mut Cursor<'_>) -> Option<Option<Arc<Cgroup>>> {
        self.cgroups.read(c, json)
    }

    pub(super) fn parent(&mut self, c: &mut Cursor<'_>) -> Option<Option<Arc<Parent>>> {
        self.parents.read(c, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T>(text: &[u8], f: impl FnOnce(&mut Cursor<'_>) -> Option<T>) -> Option<T> {
        let mut line = text.to_vec();
        line.push(b'}');
        let mut c = Cursor::new(&line);
        let value = f(&mut c)?;
        assert_eq!(c.peek(), Some(b'}'), "the whole value was consumed");
        Some(value)
    }

    #[test]
    fn the_same_text_gives_the_same_copy_and_bad_text_gives_none() {
        let mut i = Interner::new();
        let text = br#"{"id":"0x1","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u"}"#;
        let a = read(text, |c| i.superblock(c)).expect("reads").expect("a superblock");
        let b = read(text, |c| i.superblock(c)).expect("reads").expect("a superblock");
        assert!(Arc::ptr_eq(&a, &b), "one copy");
        assert_eq!(read(b"null", |c| i.superblock(c)), Some(None));
        let zeroed = br#"{"id":"0x0","dev":"0:0","fstype":"","s_id":"","uuid":""}"#;
        assert_eq!(read(zeroed, |c| i.superblock(c)), Some(None), "older traces' zeroed superblock is none");
        assert_eq!(read(br#"{"id":"0x1"}"#, |c| i.superblock(c)), None, "missing fields");
        let s = read(br#"["a+0x1","b+0x2"]"#, |c| i.stack(c)).expect("reads").expect("a stack");
        assert_eq!(&*s, ["a+0x1".to_owned(), "b+0x2".to_owned()]);
        // A longer text that starts like a known one is not taken for it.
        let c = read(br#"{"id":1}"#, |c| i.cgroup(c)).expect("reads").expect("a cgroup");
        assert_eq!(c.id, 1);
        let c = read(br#"{"id":12}"#, |c| i.cgroup(c)).expect("reads").expect("a cgroup");
        assert_eq!(c.id, 12);
    }

    #[test]
    fn a_table_stays_bounded() {
        let mut t = Table::<Arc<u64>>::new();
        for n in 0..(KEPT as u64 * 3) {
            let text = n.to_string();
            assert_eq!(read(text.as_bytes(), |c| t.read(c, json)).expect("reads").as_deref(), Some(&n));
            assert!(t.by_text.len() <= KEPT && t.recent.len() <= RECENT);
        }
    }
}
