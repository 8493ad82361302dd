//! Decoding the kernel's records (`RawEvent`, `RawMount`) into the event model. Pure: the
//! recorder hands over the bytes and a mount-point lookup.
use std::sync::Arc;

use freeze_common::{RawEvent, SbIdent, holder, hook, kdev, kind, level};
use rustc_hash::FxHashMap;

use crate::{
    attribution::{Cgroup, Parent},
    deny::DenyMode,
    event::{
        BlockIo, Denial, Dirtied, Event, EventKind, FreezeVia, Hook, IoOp, LsmHook, MountApi, MountCall,
        ProcessExit, SharedSuperblock, Superblock, Txn,
    },
};

impl EventKind {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            kind::FREEZE_BEGIN => Self::FreezeBegin,
            kind::FREEZE_END => Self::FreezeEnd,
            kind::THAW_BEGIN => Self::ThawBegin,
            kind::THAW_END => Self::ThawEnd,
            kind::BLOCK_WRITE => Self::BlockWrite,
            kind::WRITER_BLOCKED => Self::WriterBlocked,
            kind::WRITER_UNBLOCKED => Self::WriterUnblocked,
            kind::TXN_START => Self::TxnStart,
            kind::MOUNT_BEGIN => Self::MountBegin,
            kind::MOUNT_END => Self::MountEnd,
            kind::WRITE_DONE => Self::WriteDone,
            kind::DIRTIED => Self::Dirtied,
            kind::MOUNT_DENIED => Self::MountDenied,
            kind::LEVEL_PROBE => Self::LevelProbe,
            kind::PROCESS_EXIT => Self::ProcessExit,
            _ => return None,
        })
    }
}

impl Hook {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            hook::TP_IOCTL => Self::TracepointIoctl,
            hook::FENTRY_FREEZE => Self::FentryFreezeSuper,
            hook::TP_BLOCK_BIO_QUEUE => Self::TracepointBlockBioQueue,
            hook::TP_LOCK_CONTENTION => Self::TracepointLockContention,
            hook::TP_EXT4_JOURNAL_START => Self::TracepointExt4JournalStart,
            hook::TP_XFS_TRANS_ALLOC => Self::TracepointXfsTransAlloc,
            hook::TP_BTRFS_COMMIT => Self::TracepointBtrfsCommit,
            hook::TP_SYS_MOUNT => Self::TracepointSysMount,
            hook::TP_SYS_WRITE => Self::TracepointSysWrite,
            hook::TP_BTRFS_TXN_RESERVE => Self::TracepointBtrfsTxnReserve,
            hook::FEXIT_VFS_WRITE => Self::FexitVfsWrite,
            hook::LSM_MOUNT => Self::LsmMount,
            hook::FEXIT_BTRFS_TXN => Self::FexitBtrfsTxn,
            hook::TP_SYS_FALLOCATE => Self::TracepointSysFallocate,
            hook::TP_SYS_FTRUNCATE => Self::TracepointSysFtruncate,
            hook::TP_BTF_WRITEBACK => Self::TpBtfWriteback,
            hook::TP_BTF_SYS_IOCTL => Self::TpBtfSysIoctl,
            hook::TP_BTF_SYS_MOUNT => Self::TpBtfSysMount,
            hook::TP_BTF_SYS_FALLOCATE => Self::TpBtfSysFallocate,
            hook::TP_BTF_SYS_FTRUNCATE => Self::TpBtfSysFtruncate,
            hook::TP_BTF_LOCK_CONTENTION => Self::TpBtfLockContention,
            hook::RAW_TP_BLOCK_BIO_QUEUE => Self::RawTpBlockBioQueue,
            hook::RAW_TP_EXT4_JOURNAL_START => Self::RawTpExt4JournalStart,
            hook::RAW_TP_XFS_TRANS_ALLOC => Self::RawTpXfsTransAlloc,
            hook::RAW_TP_BTRFS_COMMIT => Self::RawTpBtrfsCommit,
            hook::RAW_TP_BTRFS_TXN_RESERVE => Self::RawTpBtrfsTxnReserve,
            hook::TP_BTF_PROCESS_EXIT => Self::TpBtfProcessExit,
            hook::TP_PROCESS_EXIT => Self::TracepointProcessExit,
            hook::FENTRY_PERCPU_DOWN_READ => Self::FentryPercpuDownRead,
            hook::FENTRY_VFS_FALLOCATE => Self::FentryVfsFallocate,
            hook::FENTRY_DO_TRUNCATE => Self::FentryDoTruncate,
            hook::ITER_TASK_FILE => Self::IterTaskFile,
            hook::FENTRY_SYS_MOUNT => Self::FentrySysMount,
            hook::FENTRY_AUTOMOUNT => Self::FentryAutomount,
            _ => return None,
        })
    }
}

impl IoOp {
    /// The op of a BLOCK_WRITE record; `None` for 0 (a recorder from before ops were told apart).
    pub fn from_raw(raw: u32) -> Option<Self> {
        use freeze_common::io_op as o;
        Some(match raw {
            o::WRITE => Self::Write,
            o::DISCARD => Self::Discard,
            o::SECURE_ERASE => Self::SecureErase,
            o::WRITE_ZEROES => Self::WriteZeroes,
            o::FILE_WRITE => Self::FileWrite,
            o::FILE_PUNCH_HOLE => Self::PunchHole,
            o::FILE_TRUNCATE => Self::Truncate,
            o::FILE_ZERO_RANGE => Self::ZeroRange,
            o::FILE_SHIFT_RANGE => Self::ShiftRange,
            _ => return None,
        })
    }
}

impl MountApi {
    /// The API of a MOUNT_* record (`flags`); an unknown value reads as mount(2).
    pub fn from_raw(api: u32) -> Self {
        use freeze_common::mount_api as m;
        match api {
            m::MOVE_MOUNT => Self::MoveMount,
            m::FSOPEN => Self::Fsopen,
            m::FSCONFIG => Self::Fsconfig,
            m::FSMOUNT => Self::Fsmount,
            m::AUTOMOUNT => Self::Automount,
            _ => Self::Mount,
        }
    }
}

impl LsmHook {
    /// The hook of a MOUNT_DENIED record (`arg`).
    pub fn from_raw(raw: u64) -> Self {
        use freeze_common::lsm_hook as h;
        match raw {
            h::SB_KERN_MOUNT => Self::SbKernMount,
            h::SB_MOUNT_BIND => Self::SbMount,
            h::MOVE_MOUNT => Self::MoveMount,
            _ => Self::Unknown,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown hook {0}")]
    Hook(u32),
}

fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The kinds a `freeze_flags::VIA_BLOCK_DEVICE` applies to.
fn is_freeze_or_thaw(kind: EventKind) -> bool {
    matches!(kind, EventKind::FreezeBegin | EventKind::FreezeEnd | EventKind::ThawBegin | EventKind::ThawEnd)
}

pub fn holder_name(bits: u32) -> Option<String> {
    let base = if bits & holder::USERSPACE != 0 {
        "userspace"
    } else if bits & holder::KERNEL != 0 {
        "kernel"
    } else {
        return None;
    };
    let mut s = base.to_owned();
    if bits & holder::MAY_NEST != 0 {
        s.push_str("+may_nest");
    }
    if bits & holder::EXCL != 0 {
        s.push_str("+excl");
    }
    Some(s)
}

/// Name of an errno value (positive), for the errors freeze and thaw return.
pub fn errno_name(errno: i64) -> String {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        9 => "EBADF",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        22 => "EINVAL",
        25 => "ENOTTY",
        30 => "EROFS",
        95 => "EOPNOTSUPP",
        _ => return format!("E{errno}"),
    }
    .to_owned()
}

fn level(raw: u32) -> Option<u32> {
    (raw != level::UNKNOWN).then_some(raw)
}

/// Copies a ring-buffer record into a `RawEvent`.
pub fn raw_from_bytes(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let want = std::mem::size_of::<RawEvent>();
    if bytes.len() < want {
        return Err(DecodeError::Size(bytes.len(), want));
    }
    // SAFETY: the length was checked above, RawEvent is plain integers (any bit pattern is
    // valid), and read_unaligned does not require the ring buffer's alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

impl Superblock {
    pub fn from_raw(sb: &SbIdent, mountpoint: Option<String>) -> Self {
        let (major, minor) = kdev::split(sb.dev);
        Self {
            id: format!("{:#x}", sb.sb),
            dev: format!("{major}:{minor}"),
            fstype: c_str(&sb.fstype),
            s_id: c_str(&sb.s_id),
            uuid: uuid_string(&sb.uuid),
            mountpoint,
        }
    }
}

/// Entries each of a decoder's caches keeps at most.
const CACHED: usize = 4096;

/// Decodes record after record, sharing what records repeat: one `Superblock` per superblock
/// (while its identity and mount point stay the same), one `Parent` per parent, one `Cgroup` per
/// cgroup id. A recorder keeps one for its life; its caches are bounded.
#[derive(Default)]
pub struct Decoder {
    superblocks: FxHashMap<u64, (SbIdent, SharedSuperblock)>,
    parents: FxHashMap<(u32, [u8; 16], u32), Arc<Parent>>,
    cgroups: FxHashMap<u64, Arc<Cgroup>>,
}

/// `map[key]`, made by `make` when absent; the map is emptied first when full.
fn cached<K: std::hash::Hash + Eq, V: Clone>(
    map: &mut FxHashMap<K, V>,
    key: K,
    make: impl FnOnce() -> V,
) -> V {
    if let Some(v) = map.get(&key) {
        return v.clone();
    }
    if map.len() >= CACHED {
        map.clear();
    }
    map.entry(key).or_insert_with(make).clone()
}

impl Decoder {
    /// The superblock a record names, seen at `mountpoint`.
    fn superblock(&mut self, sb: &SbIdent, mountpoint: Option<&str>) -> SharedSuperblock {
        if let Some((ident, shared)) = self.superblocks.get(&sb.sb)
            && ident == sb
            && shared.mountpoint.as_deref() == mountpoint
        {
            return shared.clone();
        }
        let shared = SharedSuperblock::new(Superblock::from_raw(sb, mountpoint.map(str::to_owned)));
        if self.superblocks.len() >= CACHED {
            self.superblocks.clear();
        }
        self.superblocks.insert(sb.sb, (*sb, shared.clone()));
        shared
    }

    /// Decodes a ring-buffer record; `mountpoint` is where its superblock's device is mounted.
    pub fn event(&mut self, raw: &RawEvent, mountpoint: Option<&str>) -> Result<Event, DecodeError> {
        let kind = EventKind::from_raw(raw.kind).ok_or(DecodeError::Kind(raw.kind))?;
        let hook = Hook::from_raw(raw.hook).ok_or(DecodeError::Hook(raw.hook))?;
        let ret = kind.is_end().then_some(raw.ret);
        let block = (kind == EventKind::BlockWrite).then(|| {
            let (ma, mi) = kdev::split(raw.bdev);
            let op = IoOp::from_raw(raw.io_op);
            let file = op.is_some_and(IoOp::is_file);
            BlockIo {
                dev: format!("{ma}:{mi}"),
                sector: if file { 0 } else { raw.arg },
                bytes: u64::from(raw.flags),
                op,
                file_offset: file.then_some(raw.arg),
                mapping: None,
            }
        });
        let gate_level =
            matches!(kind, EventKind::WriterBlocked | EventKind::WriterUnblocked).then_some(raw.flags);
        // The caller address is symbolized by the recorder, which has the kernel's symbols.
        let mount = matches!(kind, EventKind::MountBegin | EventKind::MountEnd).then(|| {
            let api = MountApi::from_raw(raw.flags);
            // An automount has no flags: its `arg` is the mount's id.
            let attach = api == MountApi::Automount;
            MountCall {
                api,
                source: String::new(),
                target: String::new(),
                fstype: String::new(),
                flags: if attach { 0 } else { raw.arg },
                mounted_dev: None,
                source_dev: None,
                mount_id: attach.then_some(raw.arg),
            }
        });
        let denial = (kind == EventKind::MountDenied).then(|| Denial {
            mode: DenyMode::from_raw(raw.flags).unwrap_or(DenyMode::Audit),
            lsm_hook: LsmHook::from_raw(raw.arg),
        });
        // A page (`ret`: its first byte, `flags`: its size) or the inode (`ret` -1, `flags`: its
        // I_DIRTY_* bits).
        let page = raw.ret >= 0;
        let dirtied = (kind == EventKind::Dirtied).then(|| Dirtied {
            ino: raw.arg,
            offset: page.then_some(raw.ret as u64),
            bytes: page.then_some(u64::from(raw.flags)),
            inode_flags: (!page).then_some(raw.flags),
        });
        let txn = (kind == EventKind::TxnStart)
            .then(|| Txn { flags: raw.flags, caller: (raw.arg != 0).then(|| format!("{:#x}", raw.arg)) });
        Ok(Event {
            kind,
            hook,
            ts_ns: raw.ts_ns,
            begin_ts_ns: (raw.begin_ts_ns != 0).then_some(raw.begin_ts_ns),
            pid: raw.pid,
            tid: raw.tid,
            comm: c_str(&raw.comm),
            sb: (raw.sb.sb != 0).then(|| self.superblock(&raw.sb, mountpoint)),
            level_before: level(raw.level_before),
            level_after: level(raw.level_after),
            holder: holder_name(raw.holder),
            via: (is_freeze_or_thaw(kind) && raw.flags & freeze_common::freeze_flags::VIA_BLOCK_DEVICE != 0)
                .then_some(FreezeVia::BlockDevice),
            ret,
            error: ret.filter(|r| *r < 0).map(|r| errno_name(-r)),
            block: block.map(Box::new),
            gate_level,
            txn,
            dirtied: dirtied.map(Box::new),
            mount: mount.map(Box::new),
            denial,
            exit: (kind == EventKind::ProcessExit).then(|| ProcessExit::from_code(raw.arg as u32)),
            stack: None,
            // The recorder resolves the id to a path (it needs the cgroup2 filesystem).
            cgroup: (raw.cgroup_id != 0).then(|| {
                cached(&mut self.cgroups, raw.cgroup_id, || {
                    Arc::new(Cgroup { id: raw.cgroup_id, ..Cgroup::default() })
                })
            }),
            parent: (raw.ppid != 0).then(|| {
                use freeze_common::freeze_flags as ff;
                let flags = if kind == EventKind::FreezeEnd { raw.flags } else { 0 };
                let (reaper, exiting) = (flags & ff::PARENT_REAPER != 0, flags & ff::PARENT_EXITING != 0);
                cached(&mut self.parents, (raw.ppid, raw.pcomm, flags), || {
                    Arc::new(Parent { pid: raw.ppid, comm: c_str(&raw.pcomm), reaper, exiting })
                })
            }),
        })
    }
}

impl Event {
    /// Decodes one ring-buffer record on its own (a `Decoder` shares what records repeat).
    /// `mountpoint` is where its superblock's device is mounted.
    pub fn decode(bytes: &[u8], mountpoint: Option<&str>) -> Result<Self, DecodeError> {
        let mut ev = Self::from_raw(&raw_from_bytes(bytes)?, mountpoint)?;
        ev.add_mount_strings(bytes);
        Ok(ev)
    }

    /// Decodes one record on its own.
    pub fn from_raw(raw: &RawEvent, mountpoint: Option<&str>) -> Result<Self, DecodeError> {
        Decoder::default().event(raw, mountpoint)
    }

    /// A MOUNT_BEGIN record is a `RawMount`: reads its strings into `mount`.
    pub fn add_mount_strings(&mut self, bytes: &[u8]) {
        use freeze_common::RawMount;
        let (Some(call), true) = (self.mount.as_mut(), bytes.len() >= std::mem::size_of::<RawMount>()) else {
            return;
        };
        let field = |off: usize, len: usize| c_str(&bytes[off..off + len]);
        call.source = field(std::mem::offset_of!(RawMount, source), 64);
        call.target = field(std::mem::offset_of!(RawMount, target), 128);
        call.fstype = field(std::mem::offset_of!(RawMount, fstype), 16);
    }
}

#[cfg(test)]
mod tests;
