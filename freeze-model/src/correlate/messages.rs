//! Every finding the correlator raises, with the sentence a person reads. The state machine
//! decides *whether*; this file says *what*.
use freeze_common::{XFS_TRANS_NO_WRITECOUNT, level};

use super::{Finding, FindingKind};
use crate::{
    deny::DenyMode,
    event::{BlockIo, Event, Hook, IoOp, MountCall, SharedSuperblock},
    storage::{Layer, Mapping},
    units::fmt_ms,
};

fn finding(kind: FindingKind, ev: &Event, sb: &SharedSuperblock, message: String) -> Finding {
    Finding {
        kind,
        severity: kind.severity(),
        ts_ns: ev.ts_ns,
        sb: sb.clone(),
        pid: ev.pid,
        comm: ev.comm.clone(),
        hook: ev.hook.as_str().into(),
        level: ev.level_after,
        duration_ns: None,
        message,
        stack: ev.stack.clone(),
        exempt_reason: None,
        cgroup: ev.cgroup.clone(),
        parent: ev.parent.clone(),
        block: ev.block.clone(),
    }
}

/// An exempt event: `what` happened, and `reason` says why it is legitimate.
fn exempt(ev: &Event, sb: &SharedSuperblock, what: String, reason: String) -> Finding {
    let mut f = finding(FindingKind::Exempt, ev, sb, format!("{what}: {reason}"));
    f.exempt_reason = Some(reason);
    f
}

fn gate_name(level: Option<u32>) -> &'static str {
    match level {
        Some(level::WRITE) => "write",
        Some(level::PAGEFAULT) => "page-fault",
        Some(level::FS) => "fs-internal",
        _ => "freeze",
    }
}

pub(super) fn freeze_failed(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let err = ev.error.clone().unwrap_or_else(|| format!("{:?}", ev.ret));
    let why = if ev.level_before == Some(level::COMPLETE) { " (it was already frozen)" } else { "" };
    finding(
        FindingKind::FreezeFailed,
        ev,
        sb,
        format!("freeze of {} by {}[{}] failed: {err}{why}", sb.describe(), ev.comm, ev.pid),
    )
}

pub(super) fn thaw_without_freeze(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let err = ev.error.clone().unwrap_or_else(|| format!("{:?}", ev.ret));
    finding(
        FindingKind::ThawWithoutFreeze,
        ev,
        sb,
        format!("{}[{}] thawed {}, which was not frozen ({err})", ev.comm, ev.pid, sb.describe()),
    )
}

/// A freeze window that closed longer than the threshold (the thaw is `ev`).
pub(super) fn long_freeze(ev: &Event, sb: &SharedSuperblock, since: u64, d: u64, threshold: u64) -> Finding {
    let mut f = finding(
        FindingKind::LongFreeze,
        ev,
        sb,
        format!("{} stayed frozen for {} (threshold {})", sb.describe(), fmt_ms(d), fmt_ms(threshold)),
    );
    f.ts_ns = since;
    f.duration_ns = Some(d);
    f
}

/// A finding about a filesystem's state rather than an event: no task, the level COMPLETE,
/// beginning `since` and lasting `d`.
pub(crate) fn state_finding(
    kind: FindingKind,
    sb: &SharedSuperblock,
    since: u64,
    d: u64,
    message: String,
) -> Finding {
    Finding {
        kind,
        severity: kind.severity(),
        ts_ns: since,
        sb: sb.clone(),
        pid: 0,
        comm: String::new(),
        hook: "".into(),
        level: Some(level::COMPLETE),
        duration_ns: Some(d),
        message,
        stack: None,
        exempt_reason: None,
        cgroup: None,
        parent: None,
        block: None,
    }
}

/// A filesystem that has been frozen longer than the threshold and still is (raised live).
pub(super) fn long_freeze_ongoing(sb: &SharedSuperblock, since: u64, so_far: u64, threshold: u64) -> Finding {
    let message = format!(
        "{} has been frozen for {} so far (threshold {}) and still is",
        sb.describe(),
        fmt_ms(so_far),
        fmt_ms(threshold)
    );
    state_finding(FindingKind::LongFreeze, sb, since, so_far, message)
}

pub(super) fn left_frozen(sb: &SharedSuperblock, since: u64, d: u64) -> Finding {
    let message =
        format!("{} was still frozen when recording ended (frozen for {})", sb.describe(), fmt_ms(d));
    state_finding(FindingKind::LeftFrozen, sb, since, d, message)
}

pub(super) fn own_thaw_write(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let below = ev.block.as_ref().filter(|b| b.dev != sb.dev).map(|b| format!(" (on {} below it)", b.dev));
    exempt(
        ev,
        sb,
        format!(
            "{}[{}] wrote {} bytes to {}{}",
            ev.comm,
            ev.pid,
            ev.block.as_ref().map_or(0, |b| b.bytes),
            sb.describe(),
            below.unwrap_or_default()
        ),
        "written during its own thaw (unfreeze_fs writing the superblock before the level drops)".into(),
    )
}

pub(super) fn loop_worker_write(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let (at, bytes) = ev.block.as_ref().map_or((0, 0), |b| (b.position(), b.bytes));
    exempt(
        ev,
        sb,
        format!(
            "{}[{}] wrote {bytes} bytes at byte {at} of a backing file of {}",
            ev.comm,
            ev.pid,
            sb.describe()
        ),
        "the loop device's worker carrying out a bio queued to the loop device, judged there".into(),
    )
}

/// A kernel thread's bio to the blocks of a frozen filesystem's backing file: the lower
/// filesystem writing back the file's pages (or a direct-I/O loop worker), whose change was judged
/// where the file was written.
pub(super) fn backing_file_writeback(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let (sector, bytes, file) = ev.block.as_ref().map_or((0, 0, String::new()), |b| {
        let file = b.mapping.as_ref().and_then(|m| m.file.clone()).unwrap_or_default();
        (b.sector, b.bytes, file)
    });
    exempt(
        ev,
        sb,
        format!(
            "{}[{}] wrote {bytes} bytes at sector {sector} in the blocks of {file}, the backing file of {}",
            ev.comm,
            ev.pid,
            sb.describe()
        ),
        "a kernel thread carrying a write of the backing file down (writeback, a loop worker): \
         judged where the file was written"
            .into(),
    )
}

/// A kernel thread's write to a device under the filesystem that is watched whole.
pub(super) fn layer_io(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let (io, m) = match ev.block.as_ref().and_then(|io| io.mapping.as_ref().map(|m| (io, m))) {
        Some(both) => both,
        None => return block_slip(ev, sb),
    };
    let op = io.op();
    let message = format!(
        "{}[{}], a kernel thread, {} {} bytes at {} of {}, which holds part of {}, while it was \
         frozen: the layer's own I/O ({}; md resync or recovery, a snapshot's copy-out, kcopyd), \
         which leaves what the filesystem reads as it was. A user task's write there would be a slip",
        ev.comm,
        ev.pid,
        op.verb(),
        io.bytes,
        position(io),
        lower_name(m),
        sb.describe(),
        layer_path(m)
    );
    finding(FindingKind::LayerIo, ev, sb, message)
}

pub(super) fn block_slip(ev: &Event, sb: &SharedSuperblock) -> Finding {
    let Some(io) = ev.block.as_ref() else {
        return finding(
            FindingKind::Slip,
            ev,
            sb,
            format!("{}[{}] wrote to the storage of {} while it was frozen", ev.comm, ev.pid, sb.describe()),
        );
    };
    let op = io.op();
    let what = if op == IoOp::Write { "a write".to_owned() } else { format!("a {op}") };
    let message = match &io.mapping {
        // The filesystem's own device.
        None if io.dev == sb.dev => format!(
            "{}[{}] {} {} bytes at sector {} of block device {} while {} was frozen: {what} that \
             bypassed the freeze gate",
            ev.comm,
            ev.pid,
            op.verb(),
            io.bytes,
            io.sector,
            io.dev,
            sb.describe()
        ),
        None => format!(
            "{}[{}] {} {} bytes at {} of {} {} under {} while it was frozen: {what} below the \
             filesystem that bypassed the freeze gate",
            ev.comm,
            ev.pid,
            op.verb(),
            io.bytes,
            position(io),
            if op.is_file() { "the backing file of loop device" } else { "block device" },
            io.dev,
            sb.describe()
        ),
        Some(m) => format!(
            "{}[{}] {} {} bytes at {} of {}, which holds {}, while it was frozen: {what} below \
             the filesystem ({}) that bypassed the freeze gate",
            ev.comm,
            ev.pid,
            op.verb(),
            io.bytes,
            position(io),
            lower_name(m),
            held_part(io, m, sb),
            layer_path(m)
        ),
    };
    finding(FindingKind::Slip, ev, sb, message)
}

/// "sector 2048" of a bio, "byte 1048576" of a backing-file op.
fn position(io: &BlockIo) -> String {
    let unit = if io.op().is_file() && io.file_offset.is_some() { "byte" } else { "sector" };
    format!("{unit} {}", io.position())
}

/// "block device 7:0 (loop0)", or "/tmp/d.img, the backing file of loop device 7:0 (loop0)".
fn lower_name(m: &Mapping) -> String {
    let dev = match &m.name {
        Some(name) => format!("{} ({name})", m.dev),
        None => m.dev.clone(),
    };
    match (m.layer, &m.file, &m.via) {
        (Layer::LoopAlias, Some(file), Some(via)) => {
            format!("loop device {dev}, over {file} as loop device {via} is")
        }
        // file-extents, and the layers below them.
        (_, Some(file), Some(via)) => {
            format!("block device {dev}, in the blocks of {file} (the backing file of loop device {via})")
        }
        (_, Some(file), None) => format!("{file}, the backing file of loop device {dev}"),
        (_, None, _) => format!("block device {dev}"),
    }
}

/// "ext4 7:0 (/mnt) from its sector 800 on", exactly where the layers are sector for sector;
/// "part of ext4 7:0 (/mnt)" where they are not (striped, whole devices).
fn held_part(io: &BlockIo, m: &Mapping, sb: &SharedSuperblock) -> String {
    match m.fs_sector_of(io.position().max(m.first)) {
        Some(sector) => format!("{} from its sector {sector} on", sb.describe()),
        None => format!("part of {}", sb.describe()),
    }
}

/// "partition", "dm-linear through 253:0", "dm-whole-device (snapshot)".
fn layer_path(m: &Mapping) -> String {
    let mut s = m.layer.as_str().to_owned();
    if let (Some(target), Layer::DmWhole) = (&m.target, m.layer) {
        s.push_str(&format!(" ({target})"));
    }
    if !m.through.is_empty() {
        s.push_str(&format!(" through {}", m.through.join(", ")));
    }
    if m.under_whole {
        s.push_str(", under a device watched whole");
    }
    s
}

/// What kind of transaction a TXN_START event is, by the hook that saw it.
fn txn_what(hook: Hook) -> &'static str {
    match hook {
        Hook::TracepointBtrfsCommit | Hook::RawTpBtrfsCommit => "btrfs transaction commit",
        Hook::TracepointBtrfsTxnReserve | Hook::RawTpBtrfsTxnReserve => {
            "btrfs transaction (space reservation)"
        }
        Hook::FexitBtrfsTxn => "btrfs transaction",
        Hook::TracepointXfsTransAlloc | Hook::RawTpXfsTransAlloc => "xfs transaction",
        _ => "ext4 journal handle",
    }
}

fn txn_caller(ev: &Event) -> String {
    ev.txn.as_ref().and_then(|t| t.caller.as_ref()).map(|c| format!(" from {c}")).unwrap_or_default()
}

/// Why a transaction start on a freezing or frozen superblock is legitimate, if it is.
pub(super) fn txn_exemption(ev: &Event, thawing_tid: Option<u32>) -> Option<String> {
    let txn = ev.txn.as_ref();
    let caller = txn.and_then(|t| t.caller.as_deref()).unwrap_or("");
    if let Some(l) = ev.level_after.filter(|l| *l < level::COMPLETE) {
        return Some(format!(
            "started at level {l} while freeze_super was still draining and syncing, before the gate closed"
        ));
    }
    if thawing_tid == Some(ev.tid) {
        return Some("started by the thawing task during its own thaw".into());
    }
    if matches!(ev.hook, Hook::TracepointXfsTransAlloc | Hook::RawTpXfsTransAlloc) {
        if txn.is_some_and(|t| t.flags & XFS_TRANS_NO_WRITECOUNT != 0) {
            return Some("xfs NO_WRITECOUNT transaction: it takes no freeze protection by design".into());
        }
        if caller.starts_with("xfs_trans_alloc_empty") {
            return Some(
                "xfs empty transaction (no log reservation: a read such as GETFSMAP or scrub)".into(),
            );
        }
    }
    None
}

pub(super) fn txn_exempt(ev: &Event, sb: &SharedSuperblock, reason: String) -> Finding {
    let what =
        format!("{} by {}[{}]{} on {}", txn_what(ev.hook), ev.comm, ev.pid, txn_caller(ev), sb.describe());
    exempt(ev, sb, what, reason)
}

pub(super) fn txn_slip(ev: &Event, sb: &SharedSuperblock) -> Finding {
    finding(
        FindingKind::Slip,
        ev,
        sb,
        format!(
            "{} started by {}[{}]{} while {} was frozen: it modifies the filesystem behind the freeze",
            txn_what(ev.hook),
            ev.comm,
            ev.pid,
            txn_caller(ev),
            sb.describe()
        ),
    )
}

pub(super) fn write_slip(ev: &Event, sb: &SharedSuperblock) -> Finding {
    finding(
        FindingKind::Slip,
        ev,
        sb,
        format!(
            "{}[{}] completed a {}-byte write to a regular file on {} while it was frozen: the write went \
             past the gate",
            ev.comm,
            ev.pid,
            ev.ret.unwrap_or(0),
            sb.describe()
        ),
    )
}

/// "the page at byte 8192 (4096 bytes) of inode 12" (or its metadata) of a `dirtied` event.
fn what_dirtied(ev: &Event) -> String {
    ev.dirtied.as_ref().map_or_else(|| "a file".into(), |d| d.describe())
}

pub(super) fn dirtied_slip(ev: &Event, sb: &SharedSuperblock) -> Finding {
    finding(
        FindingKind::Slip,
        ev,
        sb,
        format!(
            "{}[{}] dirtied {} on {} while it was frozen: the file was modified past the gate",
            ev.comm,
            ev.pid,
            what_dirtied(ev),
            sb.describe()
        ),
    )
}

pub(super) fn own_thaw_dirtied(ev: &Event, sb: &SharedSuperblock) -> Finding {
    exempt(
        ev,
        sb,
        format!("{}[{}] dirtied {} on {}", ev.comm, ev.pid, what_dirtied(ev), sb.describe()),
        "dirtied during its own thaw (unfreeze_fs runs before the level drops)".into(),
    )
}

/// A wait at the gate that ended (`ev`), which began at `begin`.
pub(super) fn blocked_writer(ev: &Event, sb: &SharedSuperblock, begin: u64) -> Finding {
    let d = ev.ts_ns.saturating_sub(begin);
    let mut f = finding(
        FindingKind::BlockedWriter,
        ev,
        sb,
        format!(
            "{}[{}] waited {} at the {} gate of {}",
            ev.comm,
            ev.pid,
            fmt_ms(d),
            gate_name(ev.gate_level),
            sb.describe()
        ),
    );
    f.ts_ns = begin;
    f.duration_ns = Some(d);
    f
}

/// A wait that had not ended when recording did (`start` began it).
pub(super) fn still_waiting(start: &Event, sb: &SharedSuperblock, end_ns: u64) -> Finding {
    let d = end_ns.saturating_sub(start.ts_ns);
    let mut f = finding(
        FindingKind::BlockedWriter,
        start,
        sb,
        format!(
            "{}[{}] was still waiting at the {} gate of {} when recording ended ({} so far)",
            start.comm,
            start.pid,
            gate_name(start.gate_level),
            sb.describe(),
            fmt_ms(d)
        ),
    );
    f.duration_ns = Some(d);
    f
}

pub(super) fn enforced(ev: &Event) -> bool {
    ev.denial.as_ref().is_some_and(|d| d.mode == DenyMode::Enforce)
}

/// A mount the gate refused (enforce) or would have refused (audit); `what` names the mount,
/// `sb` the frozen superblock.
pub(super) fn mount_denied(ev: &Event, what: &str, sb: &SharedSuperblock, enforced: bool) -> Finding {
    let message = if enforced {
        format!("{what} by {}[{}] was denied (EPERM): {} is frozen", ev.comm, ev.pid, sb.describe())
    } else {
        format!(
            "{what} by {}[{}] would have been denied (audit mode; it went ahead): {} is frozen",
            ev.comm,
            ev.pid,
            sb.describe()
        )
    };
    finding(FindingKind::MountDenied, ev, sb, message)
}

pub(super) fn mount_while_frozen(ev: &Event, call: &MountCall, sb: &SharedSuperblock) -> Finding {
    let mut f = finding(
        FindingKind::MountWhileFrozen,
        ev,
        sb,
        format!(
            "{} by {}[{}] landed while {} was frozen: the snapshot's source is exposed mid-snapshot",
            call.describe(),
            ev.comm,
            ev.pid,
            sb.describe()
        ),
    );
    f.level = Some(level::COMPLETE);
    f
}
