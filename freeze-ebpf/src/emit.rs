//! Building and sending events: the begin/end pairing of operations, stacks, and the
//! watch maps that let the hot paths filter by superblock.
use crate::{
    maps::{
        BDEV_CALLS, EVENTS, FROZEN_SBS, GATE_LOCKS, GateLock, HELD_MOUNTS, OWNERS, PENDING, Pending, STACKS,
        WATCHED_DEVS, WATCHED_UUIDS, WATCHING, any_watched, bump, freeze_completed, judged_by_relevance,
    },
    read::{
        fill_ident, gate_lock_addr, group_exiting, is_reaper, process_start, read_level, read_u32, read_u64,
        sb_bdev, sb_uuid, signal_of,
    },
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_kernel_buf, bpf_probe_read_user_str_bytes, generated::bpf_get_current_task,
    },
    programs::tracing::StackIdContext,
};
use freeze_common::{RawEvent, RawMount, counter, freeze_flags, kind, level};

/// Everything an event carries besides the task, which `emit` reads itself.
#[derive(Clone, Copy)]
pub(crate) struct Emit {
    pub(crate) kind: u32,
    pub(crate) hook: u32,
    pub(crate) ts_ns: u64,
    pub(crate) begin_ts_ns: u64,
    pub(crate) sb: u64,
    pub(crate) level_before: u32,
    pub(crate) level_after: u32,
    pub(crate) holder: u32,
    pub(crate) flags: u32,
    pub(crate) ret: i64,
    pub(crate) arg: u64,
    pub(crate) bdev: u32,
    pub(crate) stack_id: u32,
    pub(crate) io_op: u32,
}

impl Emit {
    #[inline(always)]
    pub(crate) const fn new(kind: u32, hook: u32, ts_ns: u64, sb: u64) -> Self {
        Self {
            kind,
            hook,
            ts_ns,
            begin_ts_ns: 0,
            sb,
            level_before: 0,
            level_after: 0,
            holder: 0,
            flags: 0,
            ret: 0,
            arg: 0,
            bdev: 0,
            stack_id: 0,
            io_op: 0,
        }
    }
}

impl Emit {
    /// An event of `kind` on `sb` stamped now, when `sb` is frozen (level COMPLETE, before and
    /// after): the only level at which a modification of it is a slip.
    #[inline(always)]
    pub(crate) fn if_frozen(kind: u32, hook: u32, sb: u64) -> Option<Self> {
        if read_level(sb) != level::COMPLETE {
            return None;
        }
        // SAFETY: the helper has no preconditions.
        let mut e = Self::new(kind, hook, unsafe { bpf_ktime_get_ns() }, sb);
        e.level_before = level::COMPLETE;
        e.level_after = level::COMPLETE;
        Some(e)
    }
}

#[inline(always)]
pub(crate) fn emit(e: &Emit) {
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    entry.write(RawEvent::zeroed());
    // SAFETY: the entry was just initialised by the write above.
    fill(unsafe { entry.assume_init_mut() }, e);
    entry.submit(0);
}

/// Fills the common event fields; the task's ids and comm are read here.
#[inline(always)]
pub(crate) fn fill(ev: &mut RawEvent, e: &Emit) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.kind = e.kind;
    ev.hook = e.hook;
    ev.ts_ns = e.ts_ns;
    ev.begin_ts_ns = e.begin_ts_ns;
    ev.pid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    ev.level_before = e.level_before;
    ev.level_after = e.level_after;
    ev.holder = e.holder;
    ev.flags = e.flags;
    ev.ret = e.ret;
    ev.arg = e.arg;
    ev.bdev = e.bdev;
    ev.stack_id = e.stack_id;
    ev.io_op = e.io_op;
    fill_ident(e.sb, &mut ev.sb);
    fill_attribution(ev);
}

/// Who the task is beyond its pid: its cgroup (user space resolves the id to a path) and its
/// parent (`real_parent`: the process that started it, not a tracer). Fields it cannot read stay 0.
#[inline(always)]
fn fill_attribution(ev: &mut RawEvent) {
    // SAFETY: the helpers have no preconditions.
    ev.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: as above; the result is the current task's address.
    let task = unsafe { bpf_get_current_task() };
    let Ok(parent) = read_u64(task + off!(task_real_parent)) else { return };
    if parent == 0 {
        return;
    }
    ev.ppid = read_u32(parent + off!(task_tgid)).unwrap_or(0);
    let comm = parent + off!(task_comm);
    // SAFETY: the helper bounds the copy by the destination and fails instead of faulting.
    let _ = unsafe { bpf_probe_read_kernel_buf(comm as *const u8, &mut ev.pcomm) };
}

/// A MOUNT_BEGIN record with the call's strings (user memory; unreadable ones stay empty).
#[inline(always)]
pub(crate) fn emit_mount(e: &Emit, source: u64, target: u64, fstype: u64) {
    let Some(mut entry) = EVENTS.reserve::<RawMount>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    entry.write(RawMount { event: RawEvent::zeroed(), source: [0; 64], target: [0; 128], fstype: [0; 16] });
    // SAFETY: the entry was just initialised by the write above.
    let m = unsafe { entry.assume_init_mut() };
    fill(&mut m.event, e);
    // SAFETY: the helper bounds each copy by the destination and fails instead of faulting.
    unsafe {
        if source != 0 {
            let _ = bpf_probe_read_user_str_bytes(source as *const u8, &mut m.source);
        }
        if target != 0 {
            let _ = bpf_probe_read_user_str_bytes(target as *const u8, &mut m.target);
        }
        if fstype != 0 {
            let _ = bpf_probe_read_user_str_bytes(fstype as *const u8, &mut m.fstype);
        }
    }
    entry.submit(0);
}

/// A mount call of this thread (`p`) ends: when its begin record was held back, sends it if the
/// call matters (see `HELD_MOUNTS`). Returns whether its end record is to be sent.
#[inline(always)]
fn send_held_mount(tid: u32, p: &Pending) -> bool {
    // SAFETY: the value is copied out at once.
    let Some(held) = (unsafe { HELD_MOUNTS.get(tid) }).copied() else { return true };
    let _ = HELD_MOUNTS.remove(tid);
    let matters = if judged_by_relevance(p.hook, held.api) { held.matters != 0 } else { any_watched() };
    if !matters {
        return false;
    }
    let mut e = Emit::new(kind::MOUNT_BEGIN, p.hook, p.begin_ts_ns, p.sb);
    e.level_before = p.level_before;
    e.level_after = p.level_before;
    e.flags = held.api;
    e.arg = held.flags;
    emit_mount(&e, held.source, held.target, held.fstype);
    true
}

#[inline(always)]
pub(crate) fn on_begin(begin_kind: u32, hook: u32, sb: u64, holder: u32) {
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let level_before = read_level(sb);
    // SAFETY: a lookup whose value is only tested for presence.
    let flags = if unsafe { BDEV_CALLS.get(tid) }.is_some() { freeze_flags::VIA_BLOCK_DEVICE } else { 0 };
    let pending = Pending { sb, begin_ts_ns: ts, level_before, begin_kind, holder, hook, flags, _pad: 0 };
    if PENDING.insert(tid, pending, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    if begin_kind == kind::FREEZE_BEGIN && sb != 0 {
        watch(sb);
    }
    let mut e = Emit::new(begin_kind, hook, ts, sb);
    e.level_before = level_before;
    e.level_after = level_before;
    e.holder = holder;
    e.flags = flags;
    emit(&e);
}

#[inline(always)]
pub(crate) fn on_end(hook: u32, ret: i64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once, before any other map operation.
    let Some(p) = (unsafe { PENDING.get(tid) }).copied() else {
        return;
    };
    if p.hook != hook {
        return;
    }
    let _ = PENDING.remove(tid);
    if p.begin_kind == kind::MOUNT_BEGIN && !send_held_mount(tid, &p) {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let level_after = read_level(p.sb);
    // Once really unfrozen (whoever's thaw it was, and nested holders included), stop watching.
    if level_after == level::UNFROZEN && p.sb != 0 {
        unwatch(p.sb);
    }
    // Every *_END kind is its *_BEGIN kind + 1.
    let mut e = Emit::new(p.begin_kind + 1, hook, ts, p.sb);
    e.begin_ts_ns = p.begin_ts_ns;
    e.level_before = p.level_before;
    e.level_after = level_after;
    e.holder = p.holder;
    e.ret = ret;
    e.flags = p.flags;
    if p.begin_kind == kind::FREEZE_BEGIN && ret == 0 {
        e.flags |= note_owners();
    }
    if p.begin_kind == kind::FREEZE_BEGIN && level_after == level::COMPLETE {
        freeze_completed();
    }
    emit(&e);
}

/// After a successful freeze call: puts the caller's process and its parent in `OWNERS`, so that
/// their exits are reported, and returns the `freeze_flags` of the FREEZE_END record. A parent
/// that is an init or a subreaper is left out: it never exits in a way that ends a freeze.
#[inline(always)]
fn note_owners() -> u32 {
    // SAFETY: the helper has no preconditions; it returns the current task's address.
    let task = unsafe { bpf_get_current_task() };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(start) = process_start(task) {
        let _ = OWNERS.insert(tgid, start, 0);
    }
    let Ok(parent) = read_u64(task + off!(task_real_parent)) else { return 0 };
    if parent == 0 {
        return 0;
    }
    if let Some(signal) = signal_of(parent) {
        if is_reaper(signal) {
            return freeze_flags::PARENT_REAPER;
        }
        if group_exiting(signal) {
            return freeze_flags::PARENT_EXITING;
        }
    }
    if let (Ok(ppid), Some(start)) = (read_u32(parent + off!(task_tgid)), process_start(parent)) {
        let _ = OWNERS.insert(ppid, start, 0);
    }
    0
}

/// Id + 1 of the current kernel stack in `STACKS`, 0 when it could not be taken.
#[inline(always)]
pub(crate) fn stack_of<C: StackIdContext>(ctx: &C) -> u32 {
    match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as u32 + 1,
        Err(_) => 0,
    }
}

/// Adds `delta` (1, or u32::MAX for -1) to `WATCHING`, atomically: freezes on other CPUs count too.
#[inline(always)]
fn count_watched(delta: u32) {
    if let Some(p) = WATCHING.get_ptr_mut(0) {
        // The BPF target has no `AtomicU32`; the intrinsic is its `fetch_add`, and with the result
        // unused LLVM emits BPF's atomic add (`lock +=`), which every kernel here has.
        // SAFETY: the pointer comes from the map lookup and points at an aligned u32 that lives
        // as long as the map; every write to it is this atomic add.
        unsafe {
            core::intrinsics::atomic_xadd::<u32, u32, { core::intrinsics::AtomicOrdering::Relaxed }>(p, delta)
        };
    }
}

#[inline(always)]
pub(crate) fn watch(sb: u64) {
    let dev = sb_bdev(sb);
    // SAFETY: the value is only tested for presence.
    if unsafe { WATCHED_DEVS.get(dev) }.is_none() {
        count_watched(1);
    }
    let mut ok = WATCHED_DEVS.insert(dev, sb, 0).is_ok();
    ok &= WATCHED_UUIDS.insert(sb_uuid(sb), sb, 0).is_ok();
    if let Ok(dev) = read_u32(sb + off!(sb_s_dev)) {
        ok &= FROZEN_SBS.insert(dev, sb, 0).is_ok();
    }
    let mut i = 0u64;
    while i < 3 {
        let gate = GateLock { sb, level: i as u32 + 1, _pad: 0 };
        ok &= GATE_LOCKS.insert(gate_lock_addr(sb, i), gate, 0).is_ok();
        i += 1;
    }
    if !ok {
        bump(counter::WATCH_FULL);
    }
}

#[inline(always)]
pub(crate) fn unwatch(sb: u64) {
    if WATCHED_DEVS.remove(sb_bdev(sb)).is_ok() {
        count_watched(u32::MAX);
    }
    let _ = WATCHED_UUIDS.remove(sb_uuid(sb));
    if let Ok(dev) = read_u32(sb + off!(sb_s_dev)) {
        let _ = FROZEN_SBS.remove(dev);
    }
    let mut i = 0u64;
    while i < 3 {
        let _ = GATE_LOCKS.remove(gate_lock_addr(sb, i));
        i += 1;
    }
}
