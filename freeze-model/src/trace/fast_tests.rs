//! The fast path and the general path read every line alike: whatever the writer writes is taken
//! by the fast path and read back as written, and on any line, broken or not, the fast path either
//! steps aside or gives exactly what serde gives reading an `Event` (and the general path, where
//! that reads the line: it reads a `Value` first, which refuses a few things typed reading lets
//! by, such as a number beyond f64 in a field nobody reads).
use proptest::prelude::*;

use super::{Record, TraceWriter, fast, intern::Interner, parse_line};
use crate::{
    attribution::{Cgroup, Parent},
    deny::DenyMode,
    event::{
        BlockIo, Denial, Dirtied, Event, EventKind, FreezeVia, Hook, IoOp, LsmHook, MountApi, MountCall,
        ProcessExit, Superblock, Txn,
    },
    storage::{Layer, Mapping},
};

fn one_of<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    (0..all.len()).prop_map(move |i| all[i])
}

/// Text as traces hold it: mostly plain, sometimes with what JSON must escape, or non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "[a-z0-9/:._+-]{0,12}",
        1 => "[ -~]{0,8}",
        1 => "\\PC{0,6}",
        1 => Just("a\"b\\c\n\u{1}".to_owned()),
    ]
}

fn superblock() -> impl Strategy<Value = Superblock> {
    (text(), text(), text(), text(), text(), proptest::option::of(text())).prop_map(
        |(id, dev, fstype, s_id, uuid, mountpoint)| Superblock { id, dev, fstype, s_id, uuid, mountpoint },
    )
}

fn mapping() -> impl Strategy<Value = Mapping> {
    (
        one_of(Layer::ALL),
        text(),
        proptest::option::of(text()),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(|(layer, dev, file, first, len, under_whole)| Mapping {
            layer,
            dev,
            name: None,
            via: file.clone(),
            file,
            target: None,
            first,
            len,
            fs_sector: len,
            through: vec!["253:0".into()],
            under_whole,
        })
}

fn block() -> impl Strategy<Value = BlockIo> {
    (
        text(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(one_of(IoOp::ALL)),
        proptest::option::of(any::<u64>()),
        proptest::option::of(mapping()),
    )
        .prop_map(|(dev, sector, bytes, op, file_offset, mapping)| BlockIo {
            dev,
            sector,
            bytes,
            op,
            file_offset,
            mapping: mapping.map(Box::new),
        })
}

fn mount() -> impl Strategy<Value = MountCall> {
    (
        one_of(MountApi::ALL),
        text(),
        text(),
        text(),
        any::<u64>(),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(api, source, target, fstype, flags, mounted_dev, mount_id)| MountCall {
            api,
            source,
            target,
            fstype,
            flags,
            mounted_dev,
            source_dev: None,
            mount_id,
        })
}

/// The parts of an event most lines lack.
#[derive(Clone, Debug)]
struct Rare {
    holder: Option<String>,
    via: Option<FreezeVia>,
    ret: Option<i64>,
    error: Option<String>,
    block: Option<BlockIo>,
    gate_level: Option<u32>,
    txn: Option<Txn>,
    dirtied: Option<Dirtied>,
    mount: Option<MountCall>,
    denial: Option<Denial>,
}

fn rare() -> impl Strategy<Value = Rare> {
    use proptest::option::of;
    (
        of(text()),
        of(one_of(FreezeVia::ALL)),
        of(any::<i64>()),
        of(text()),
        of(block()),
        of(any::<u32>()),
        of((any::<u32>(), of(text())).prop_map(|(flags, caller)| Txn { flags, caller })),
        of((any::<u64>(), of(any::<u64>()), of(any::<u64>()), of(any::<u32>()))
            .prop_map(|(ino, offset, bytes, inode_flags)| Dirtied { ino, offset, bytes, inode_flags })),
        of(mount()),
        of((one_of(DenyMode::ALL), one_of(LsmHook::ALL))
            .prop_map(|(mode, lsm_hook)| Denial { mode, lsm_hook })),
    )
        .prop_map(|(holder, via, ret, error, block, gate_level, txn, dirtied, mount, denial)| Rare {
            holder,
            via,
            ret,
            error,
            block,
            gate_level,
            txn,
            dirtied,
            mount,
            denial,
        })
}

fn event() -> impl Strategy<Value = Event> {
    use proptest::option::of;
    (
        (
            one_of(EventKind::ALL),
            one_of(Hook::ALL),
            any::<u64>(),
            of(any::<u64>()),
            any::<u32>(),
            any::<u32>(),
        ),
        (text(), of(superblock()), of(0u32..5), of(any::<u32>())),
        rare(),
        of(prop::collection::vec(text(), 0..4)),
        of((any::<u64>(), of(text())).prop_map(|(id, path)| Cgroup { id, path, ..Cgroup::default() })),
        of((any::<u32>(), text(), any::<bool>(), any::<bool>())
            .prop_map(|(pid, comm, reaper, exiting)| Parent { pid, comm, reaper, exiting })),
        of(any::<u32>().prop_map(ProcessExit::from_code)),
    )
        .prop_map(
            |(
                (kind, hook, ts_ns, begin_ts_ns, pid, tid),
                (comm, sb, level_before, level_after),
                r,
                stack,
                cgroup,
                parent,
                exit,
            )| {
                Event {
                    kind,
                    hook,
                    ts_ns,
                    begin_ts_ns,
                    pid,
                    tid,
                    comm,
                    // The zeroed superblock of older traces reads as none: not one to write.
                    sb: sb.filter(|sb| sb.id != "0x0").map(Into::into),
                    level_before,
                    level_after,
                    holder: r.holder,
                    via: r.via,
                    ret: r.ret,
                    error: r.error,
                    block: r.block.map(Box::new),
                    gate_level: r.gate_level,
                    txn: r.txn,
                    dirtied: r.dirtied.map(Box::new),
                    mount: r.mount.map(Box::new),
                    denial: r.denial,
                    exit,
                    stack: stack.map(Into::into),
                    cgroup: cgroup.map(Into::into),
                    parent: parent.map(Into::into),
                }
            },
        )
}

fn written(ev: &Event) -> String {
    let mut out = Vec::new();
    TraceWriter::new(&mut out).write_event(ev).expect("writes");
    String::from_utf8(out).expect("UTF-8").trim_end().to_owned()
}

/// What the general path makes of `line`: an event, or None for an error or another record.
fn general(line: &str) -> Option<Event> {
    match parse_line(1, line) {
        Ok(Record::Event(e)) => Some(e),
        _ => None,
    }
}

/// Whether JSON has to escape something in the text the event carries.
fn escapes(line: &str) -> bool {
    line.contains('\\')
}

/// An edit of a line: delete, insert or replace a byte, at any position or (more often, where
/// parsers go wrong) just after a structural one (`:`, `,`, a quote or a bracket).
#[derive(Clone, Debug)]
struct Edit {
    op: Op,
    at: usize,
    after_structural: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Delete,
    Insert(u8),
    Replace(u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        Just(b'"'),
        Just(b','),
        Just(b':'),
        Just(b'{'),
        Just(b'}'),
        Just(b'['),
        Just(b']'),
        Just(b' '),
        Just(b'\\'),
        Just(b'0'),
        Just(b'7'),
        Just(b'-'),
        Just(b'.'),
        Just(b'e'),
        Just(b'n'),
        Just(b'\t'),
        Just(0xff),
        any::<u8>(),
    ];
    let op = prop_oneof![Just(Op::Delete), byte.clone().prop_map(Op::Insert), byte.prop_map(Op::Replace)];
    (op, any::<usize>(), prop::bool::weighted(0.7)).prop_map(|(op, at, after_structural)| Edit {
        op,
        at,
        after_structural,
    })
}

fn apply(line: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = line.as_bytes().to_vec();
    for e in edits {
        let structural: Vec<usize> = (0..bytes.len())
            .filter(|&i| matches!(bytes[i], b':' | b',' | b'"' | b'{' | b'}' | b'[' | b']'))
            .map(|i| i + 1)
            .collect();
        let at = match (e.after_structural && !structural.is_empty(), bytes.len()) {
            (true, _) => structural[e.at % structural.len()],
            (false, 0) => 0,
            (false, len) => e.at % len,
        };
        match e.op {
            Op::Insert(b) => bytes.insert(at.min(bytes.len()), b),
            Op::Delete if at < bytes.len() => {
                bytes.remove(at);
            }
            Op::Replace(b) if at < bytes.len() => bytes[at] = b,
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn what_the_writer_writes_the_fast_path_reads_back(ev in event()) {
        let line = written(&ev);
        let fast = fast::event(line.as_bytes(), &mut Interner::new());
        if !escapes(&line) {
            prop_assert_eq!(fast.as_ref(), Some(&ev), "{}", line);
        }
        prop_assert_eq!(general(&line), Some(ev), "{}", line);
    }

    #[test]
    fn on_any_edit_of_a_line_the_fast_path_steps_aside_or_agrees(ev in event(), edits in prop::collection::vec(edit(), 1..4)) {
        let original = written(&ev);
        let line = apply(&original, &edits);
        // The interner has read the line before the edit: what it remembers must not mislead it.
        let mut interner = Interner::new();
        let _ = fast::event(original.as_bytes(), &mut interner);
        let fast = fast::event(&line, &mut interner);
        let general = std::str::from_utf8(&line).ok().and_then(general);
        if let Some(fast) = fast {
            let typed: Option<Event> = serde_json::from_slice(&line).ok();
            prop_assert_eq!(Some(&fast), typed.as_ref(), "{}", String::from_utf8_lossy(&line));
            // Where the general path reads the line too, it reads the same event.
            if general.is_some() {
                prop_assert_eq!(Some(fast), general, "{}", String::from_utf8_lossy(&line));
            }
        }
    }
}

/// The interner shares one copy between lines, and a shared copy is what a fresh read gives.
#[test]
fn lines_of_one_filesystem_share_its_superblock_and_stack() {
    let first = r#"{"v":1,"type":"event","kind":"block_write","hook":"tracepoint:block:block_bio_queue","ts_ns":5,"pid":7,"tid":7,"comm":"dd","sb":{"id":"0x1","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u"},"level_before":4,"level_after":4,"block":{"dev":"7:0","sector":8,"bytes":4096},"stack":["submit_bio+0x1","vfs_write+0x2"]}"#;
    let second = first.replace(r#""ts_ns":5"#, r#""ts_ns":6"#);
    let mut interner = Interner::new();
    let a = fast::event(first.as_bytes(), &mut interner).expect("fast");
    let b = fast::event(second.as_bytes(), &mut interner).expect("fast");
    let (Some(sa), Some(sb)) = (&a.sb, &b.sb) else { panic!("superblocks") };
    assert!(std::sync::Arc::ptr_eq(sa, sb));
    let (Some(ka), Some(kb)) = (&a.stack, &b.stack) else { panic!("stacks") };
    assert!(std::sync::Arc::ptr_eq(ka, kb));
    assert_eq!((Some(a), Some(b)), (general(first), general(&second)));
}
