//! The reader's fast path for event lines, the bulk of every trace: fields are read straight off
//! the line with `scan::Cursor`, what repeats comes from the `Interner`, and the rare nested parts
//! (block I/O, transaction, mount call, denial) are handed to serde_json one by one. Anything
//! this path does not expect (escapes, whitespace, an unknown or repeated key, a missing field)
//! makes it answer `None`, and the line takes the general path, which reads any JSON the same
//! way serde does and names what is wrong: the tests hold the two paths to the same result.
use serde::de::DeserializeOwned;

use super::{intern::Interner, scan::Cursor};
use crate::event::{Event, EventKind, FreezeVia, Hook};

/// The keys an event line may have, each with the bit it takes in the set of keys seen (a
/// repeated key is an error serde names).
#[derive(Clone, Copy)]
enum Key {
    V,
    Type,
    Kind,
    Hook,
    TsNs,
    BeginTsNs,
    Pid,
    Tid,
    Comm,
    Sb,
    LevelBefore,
    LevelAfter,
    Holder,
    Via,
    Ret,
    Error,
    Block,
    GateLevel,
    Txn,
    Dirtied,
    Mount,
    Denial,
    Exit,
    Stack,
    Cgroup,
    Parent,
}

impl Key {
    /// The key named so on the line: `Event`'s field names (serde's, since it derives them).
    fn of(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"v" => Self::V,
            b"type" => Self::Type,
            b"kind" => Self::Kind,
            b"hook" => Self::Hook,
            b"ts_ns" => Self::TsNs,
            b"begin_ts_ns" => Self::BeginTsNs,
            b"pid" => Self::Pid,
            b"tid" => Self::Tid,
            b"comm" => Self::Comm,
            b"sb" => Self::Sb,
            b"level_before" => Self::LevelBefore,
            b"level_after" => Self::LevelAfter,
            b"holder" => Self::Holder,
            b"via" => Self::Via,
            b"ret" => Self::Ret,
            b"error" => Self::Error,
            b"block" => Self::Block,
            b"gate_level" => Self::GateLevel,
            b"txn" => Self::Txn,
            b"dirtied" => Self::Dirtied,
            b"mount" => Self::Mount,
            b"denial" => Self::Denial,
            b"exit" => Self::Exit,
            b"stack" => Self::Stack,
            b"cgroup" => Self::Cgroup,
            b"parent" => Self::Parent,
            _ => return None,
        })
    }
}

fn nested<T: DeserializeOwned>(c: &mut Cursor<'_>) -> Option<T> {
    serde_json::from_slice(c.value()?).ok()
}

fn owned(c: &mut Cursor<'_>) -> Option<String> {
    c.string().map(str::to_owned)
}

/// The event on `line` (`{"v":1,"type":"event",...}`), or `None` for the general path.
pub(super) fn event(line: &[u8], interner: &mut Interner) -> Option<Event> {
    let mut c = Cursor::new(line);
    let mut seen = 0u32;
    let (mut kind, mut hook, mut ts_ns, mut pid, mut tid, mut comm) = (None, None, None, None, None, None);
    // The fields every event has are filled in last, once the line has given them all.
    let mut ev = Event::new(EventKind::FreezeBegin, Hook::TracepointIoctl, 0, 0, 0, String::new());
    c.eat(b'{')?;
    loop {
        let key = Key::of(c.string()?.as_bytes())?;
        if seen & (1 << key as u32) != 0 {
            return None;
        }
        seen |= 1 << key as u32;
        c.eat(b':')?;
        match key {
            Key::V => (c.u64()? == u64::from(super::SCHEMA_VERSION)).then_some(())?,
            Key::Type => (c.string()? == "event").then_some(())?,
            Key::Kind => kind = Some(EventKind::from_name(c.string()?)?),
            Key::Hook => hook = Some(Hook::from_name(c.string()?)?),
            Key::TsNs => ts_ns = Some(c.u64()?),
            Key::BeginTsNs => ev.begin_ts_ns = c.opt(Cursor::u64)?,
            Key::Pid => pid = Some(c.u32()?),
            Key::Tid => tid = Some(c.u32()?),
            Key::Comm => comm = Some(owned(&mut c)?),
            Key::Sb => ev.sb = interner.superblock(&mut c)?,
            Key::LevelBefore => ev.level_before = c.opt(Cursor::u32)?,
            Key::LevelAfter => ev.level_after = c.opt(Cursor::u32)?,
            Key::Holder => ev.holder = c.opt(owned)?,
            Key::Via => ev.via = c.opt(|c| FreezeVia::from_name(c.string()?))?,
            Key::Ret => ev.ret = c.opt(Cursor::i64)?,
            Key::Error => ev.error = c.opt(owned)?,
            Key::Block => ev.block = nested(&mut c)?,
            Key::GateLevel => ev.gate_level = c.opt(Cursor::u32)?,
            Key::Txn => ev.txn = nested(&mut c)?,
            Key::Dirtied => ev.dirtied = nested(&mut c)?,
            Key::Mount => ev.mount = nested(&mut c)?,
            Key::Denial => ev.denial = nested(&mut c)?,
            Key::Exit => ev.exit = nested(&mut c)?,
            Key::Stack => ev.stack = interner.stack(&mut c)?,
            Key::Cgroup => ev.cgroup = interner.cgroup(&mut c)?,
            Key::Parent => ev.parent = interner.parent(&mut c)?,
        }
        if c.eat(b',').is_none() {
            break;
        }
    }
    c.eat(b'}')?;
    if !c.at_end() {
        return None;
    }
    (ev.kind, ev.hook, ev.ts_ns, ev.pid, ev.tid, ev.comm) = (kind?, hook?, ts_ns?, pid?, tid?, comm?);
    Some(ev)
}
