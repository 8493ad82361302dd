//! The event model: what the kernel reported, with named fields (a `"type":"event"` line of a
//! trace). Decoding from the kernel's `RawEvent` is in `decode`.
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{Cgroup, Parent},
    deny::DenyMode,
};

mod kinds;
pub use kinds::*;

/// A superblock as events and findings hold it: one copy per filesystem, shared (a trace reader
/// interns them, so a million events of two filesystems hold two).
pub type SharedSuperblock = std::sync::Arc<Superblock>;

/// A kernel stack, innermost frame first: one copy per distinct stack, shared by the events and
/// findings that carry it.
pub type Stack = std::sync::Arc<[String]>;

/// Identity of a superblock, as the kernel named it plus where user space sees it mounted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Superblock {
    /// Kernel address of the superblock as hex: stable while the filesystem stays mounted.
    pub id: String,
    /// `major:minor` of `sb->s_dev` (btrfs uses an anonymous device, `0:NN`).
    pub dev: String,
    pub fstype: String,
    /// `sb->s_id`: the block device name for block filesystems.
    pub s_id: String,
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
}

/// How traces before schema 1.1 wrote "no superblock": a zeroed one with this id.
const ZERO_SUPERBLOCK_ID: &str = "0x0";

/// Reads an event's `sb`: absent, null, or (older traces) the zeroed superblock mean none.
fn known_superblock<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SharedSuperblock>, D::Error> {
    Ok(Option::<SharedSuperblock>::deserialize(d)?.filter(Superblock::is_known))
}

impl Superblock {
    /// False for the zeroed superblock older traces wrote for "none".
    pub(crate) fn is_known(sb: &SharedSuperblock) -> bool {
        sb.id != ZERO_SUPERBLOCK_ID
    }

    /// "ext4 7:0 (/mnt/data)": how messages name a filesystem.
    pub fn describe(&self) -> String {
        let mp = self.mountpoint.as_deref().unwrap_or("?");
        format!("{} {} ({mp})", self.fstype, self.dev)
    }
}

/// One decoded event (a `"type":"event"` line of a trace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub hook: Hook,
    /// CLOCK_MONOTONIC nanoseconds (the trace header maps it to wall time).
    pub ts_ns: u64,
    /// For *_end: when the operation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_ts_ns: Option<u64>,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The superblock it happened to; absent on mount(2) calls, which do not know it yet (their
    /// `mount.mounted_dev` / `source_dev` say which filesystem it was).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "known_superblock")]
    pub sb: Option<SharedSuperblock>,
    /// `sb->s_writers.frozen` when the operation began (0 unfrozen … 4 complete); null if unread.
    pub level_before: Option<u32>,
    /// The level when the event was emitted (after the operation, for *_end).
    pub level_after: Option<u32>,
    /// Freeze holder: "kernel", "userspace", with "+may_nest"/"+excl"; null when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// freeze_* / thaw_*: the path the call came by, when it is not a plain FIFREEZE/FITHAW
    /// (`block-device`: device-mapper's suspend or resume). Known with the fentry hook only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<FreezeVia>,
    /// Return value, for *_end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    /// errno name of a negative return (e.g. "EBUSY").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// block_write: the write that bypassed the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Box<BlockIo>>,
    /// writer_blocked / writer_unblocked: the gate level waited on (1 write, 2 page fault, 3 fs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_level: Option<u32>,
    /// txn_start: the transaction's details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<Txn>,
    /// dirtied: the page or inode that turned dirty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirtied: Option<Box<Dirtied>>,
    /// mount_begin / mount_end: the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Box<MountCall>>,
    /// mount_denied: what the mount gate decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// process_exit: how the process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ProcessExit>,
    /// Kernel stack, innermost frame first, symbolized from /proc/kallsyms (events that can
    /// become findings: block writes and transaction starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
    /// The task's cgroup, with the unit, container or pod its path names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::sync::Arc<Cgroup>>,
    /// The task's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<std::sync::Arc<Parent>>,
}

impl Event {
    /// An event of `kind` from `hook` at `ts_ns` by task `pid`/`tid` named `comm`, with nothing
    /// else known yet: what its maker fills in comes after.
    pub fn new(kind: EventKind, hook: Hook, ts_ns: u64, pid: u32, tid: u32, comm: String) -> Self {
        Self {
            kind,
            hook,
            ts_ns,
            begin_ts_ns: None,
            pid,
            tid,
            comm,
            sb: None,
            level_before: None,
            level_after: None,
            holder: None,
            via: None,
            ret: None,
            error: None,
            block: None,
            gate_level: None,
            txn: None,
            dirtied: None,
            mount: None,
            denial: None,
            exit: None,
            stack: None,
            cgroup: None,
            parent: None,
        }
    }

    /// "fsfreeze[8812] ← backup.sh[8790] in backup.service".
    pub fn who(&self) -> String {
        crate::attribution::describe(&self.comm, self.pid, self.parent.as_deref(), self.cgroup.as_deref())
    }
}

/// A mount call. `sb` of the event is the superblock being attached when the kernel knows it
/// (move_mount of an fsmount/open_tree fd); for mount(2) `mounted_dev` says where it landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountCall {
    pub api: MountApi,
    /// mount(2): the source (device, or directory for a bind); move_mount: from_pathname;
    /// fsconfig: the key (e.g. "source").
    pub source: String,
    /// mount(2): the target directory; move_mount: to_pathname; fsconfig: a string value.
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fstype: String,
    /// MS_* (mount) or MOVE_MOUNT_* (move_mount) flags.
    pub flags: u64,
    /// On a successful mount_end: `major:minor` of the superblock now mounted at `target`, from
    /// mountinfo (the same number as a superblock's `dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounted_dev: Option<String>,
    /// `major:minor` of the superblock the source belongs to, resolved when the call began: a
    /// block device's number (a btrfs member maps to its filesystem), or a bind source's st_dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_dev: Option<String>,
    /// An automount: the mount's id, as mountinfo numbers it (its `target` and
    /// `mounted_dev` are found there by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_id: Option<u64>,
}

impl MountCall {
    /// "mount of /dev/loop0 on /mnt", "bind mount of /a/sub on /b", "move_mount to /c".
    pub fn describe(&self) -> String {
        if self.api == MountApi::Automount {
            let on = if self.target.is_empty() {
                "a mount point not in this mount namespace"
            } else {
                &self.target
            };
            format!("automount ({}) on {on}", if self.fstype.is_empty() { "?" } else { &self.fstype })
        } else if self.api == MountApi::MoveMount {
            format!("move_mount to {}", self.target)
        } else if self.flags & freeze_common::mount_flags::MS_BIND != 0 {
            format!("bind mount of {} on {}", self.source, self.target)
        } else {
            format!("mount of {} on {}", self.source, self.target)
        }
    }
}

/// How a process ended, from its exit code (the wait(2) status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExit {
    /// Its exit status, when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// The signal that killed it ("SIGKILL"), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Killed by a signal that dumped its core.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

impl ProcessExit {
    /// From the kernel's `exit_code`: the signal in the low 7 bits, 0x80 for a core dump, the
    /// status in bits 8–15.
    pub fn from_code(code: u32) -> Self {
        let signal = code & 0x7f;
        if signal == 0 {
            return Self { status: Some((code >> 8) & 0xff), signal: None, core_dumped: false };
        }
        Self { status: None, signal: Some(crate::units::signal_name(signal)), core_dumped: code & 0x80 != 0 }
    }

    /// "was killed by SIGKILL", "exited with status 0".
    pub fn describe(&self) -> String {
        match (&self.signal, self.status) {
            (Some(sig), _) if self.core_dumped => format!("was killed by {sig} (core dumped)"),
            (Some(sig), _) => format!("was killed by {sig}"),
            (None, Some(status)) => format!("exited with status {status}"),
            (None, None) => "exited".to_owned(),
        }
    }
}

/// A mount the gate refused (enforce) or would have refused (audit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub mode: DenyMode,
    /// The LSM hook that saw it.
    pub lsm_hook: LsmHook,
}

/// What turned dirty on a frozen filesystem: a page of a regular file, or its inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dirtied {
    /// The file's inode number.
    pub ino: u64,
    /// A page: its first byte in the file. Absent: the inode itself (its metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// A page: its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The inode: the kernel's `I_DIRTY_*` bits it was marked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode_flags: Option<u32>,
}

impl Dirtied {
    /// "the page at byte 8192 (4096 bytes) of inode 12", "the metadata of inode 12".
    pub fn describe(&self) -> String {
        match (self.offset, self.bytes) {
            (Some(at), Some(n)) => format!("the page at byte {at} ({n} bytes) of inode {}", self.ino),
            (Some(at), None) => format!("the page at byte {at} of inode {}", self.ino),
            _ => format!("the metadata of inode {}", self.ino),
        }
    }
}

/// A transaction start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Filesystem-specific flags: xfs `t_flags` (0x40 = NO_WRITECOUNT), ext4 handle type.
    pub flags: u32,
    /// The function that started it (symbolized caller address), when the tracepoint gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

/// A modification of a frozen filesystem's storage: a bio on its device or on a lower layer, or a
/// change to the backing file of a loop device under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIo {
    /// `major:minor` of the block device written to (for backing-file ops: the loop device).
    pub dev: String,
    /// 512-byte sector of `dev` (for backing-file ops: 0; `file_offset` says where).
    pub sector: u64,
    pub bytes: u64,
    /// What it did; traces from before ops were told apart have none (they were writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<IoOp>,
    /// Backing-file ops: the byte offset in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_offset: Option<u64>,
    /// When `dev` is not the filesystem's own device: the layer that maps it there (the
    /// recorder's storage map at the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Box<crate::storage::Mapping>>,
}

impl Event {
    /// Whether the task is a kernel thread: kthreadd (pid 2) started it. Without attribution
    /// (older traces), a `kworker/` name says so.
    pub fn is_kernel_thread(&self) -> bool {
        match &self.parent {
            Some(p) => p.pid == 2 || self.pid == 2,
            None => self.comm.starts_with("kworker/"),
        }
    }
}

impl BlockIo {
    /// A bio of `bytes` at `sector` of `dev`, with no mapping (the filesystem's own device).
    pub fn new(dev: &str, sector: u64, bytes: u64, op: IoOp) -> Self {
        Self { dev: dev.into(), sector, bytes, op: Some(op), file_offset: None, mapping: None }
    }

    /// The op, with traces from before ops were told apart read as writes.
    pub fn op(&self) -> IoOp {
        self.op.unwrap_or(IoOp::Write)
    }

    /// Where it starts, in the unit of what it went to: a byte of the backing file for a
    /// backing-file op, a 512-byte sector of `dev` otherwise.
    pub fn position(&self) -> u64 {
        match self.file_offset {
            Some(offset) if self.op().is_file() => offset,
            _ => self.sector,
        }
    }

    /// Its length in the unit of `position`: bytes, or sectors (rounded up).
    pub fn span(&self) -> u64 {
        if self.op().is_file() { self.bytes } else { self.bytes.div_ceil(512) }
    }
}
