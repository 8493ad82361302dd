//! Writers held at the freeze gate: `lock:contention_begin/end` on `s_writers.rw_sem[]` or,
//! before 5.19, fentry/fexit on the semaphore's slow path.
use crate::{
    emit::{Emit, emit},
    maps::{GATE_LOCKS, WAITING, Waiting, bump, hit},
    read::{read_level, untyped_arg},
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, fentry, fexit, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, TracePointContext},
};
use freeze_common::tp::lock;
use freeze_common::{counter, hook, kind};

/// `LCB_F_READ`: a reader waiting. Writers held at a gate wait for reading; freeze_super itself
/// contends for writing (LCB_F_WRITE) while it drains them, and is not a blocked writer.
pub(crate) const LCB_F_READ: u32 = 1 << 1;

#[tracepoint(category = "lock", name = "contention_begin")]
pub fn fw_contention_begin(ctx: TracePointContext) -> u32 {
    // SAFETY: the offsets are inside the tracepoint's record.
    let (lock, flags) = unsafe {
        (
            ctx.read_at::<u64>(lock::ADDR.offset).unwrap_or(0),
            ctx.read_at::<u32>(lock::FLAGS.offset).unwrap_or(0),
        )
    };
    contention_begin(hook::TP_LOCK_CONTENTION, lock, flags, false);
    0
}

/// `contention_begin(void *lock, unsigned int flags)`: the same arguments, without a perf event.
#[btf_tracepoint(function = "contention_begin")]
pub fn fw_btf_contention_begin(ctx: BtfTracePointContext) -> u32 {
    let (lock, flags): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    contention_begin(hook::TP_BTF_LOCK_CONTENTION, lock, flags as u32, false);
    0
}

/// `bool __percpu_down_read(struct percpu_rw_semaphore *sem, bool try)`: a reader's slow path,
/// taken while a writer is or was recently active; it waits unless `try` or the semaphore is
/// free after all. Kernels before 5.19 have no lock contention tracepoints: this is where a
/// writer held at the gate is seen there, counted only while the gate is closed at its level.
#[fentry(function = "__percpu_down_read")]
pub fn fw_percpu_down_read_entry(ctx: FEntryContext) -> u32 {
    let (sem, try_only) = (untyped_arg(&ctx, 0), untyped_arg(&ctx, 1) as u8);
    if try_only == 0 {
        contention_begin(hook::FENTRY_PERCPU_DOWN_READ, sem, LCB_F_READ, true);
    }
    0
}

#[fexit(function = "__percpu_down_read")]
pub fn fw_percpu_down_read_exit(ctx: FExitContext) -> u32 {
    // A reader that waited has the semaphore: the wait ended (0, as contention_end's ret).
    contention_end(hook::FENTRY_PERCPU_DOWN_READ, untyped_arg(&ctx, 0), 0);
    0
}

/// A task started waiting for `lock` (`hook` says which program saw it). With `if_closed`, the
/// program saw a slow path that may not wait: only a gate closed at its level counts.
#[inline(always)]
fn contention_begin(hook: u32, lock: u64, flags: u32, if_closed: bool) {
    hit(hook);
    // SAFETY: the value is copied out at once.
    let Some(gate) = (unsafe { GATE_LOCKS.get(lock) }).copied() else {
        bump(counter::FILTERED);
        return;
    };
    if flags & LCB_F_READ == 0 || (if_closed && read_level(gate.sb) < gate.level) {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let waiting = Waiting { sb: gate.sb, lock, begin_ts_ns: ts, level: gate.level, _pad: 0 };
    if WAITING.insert(tid, waiting, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    let level = read_level(gate.sb);
    let mut e = Emit::new(kind::WRITER_BLOCKED, hook, ts, gate.sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = gate.level;
    emit(&e);
}

#[tracepoint(category = "lock", name = "contention_end")]
pub fn fw_contention_end(ctx: TracePointContext) -> u32 {
    // SAFETY: the offsets are inside the tracepoint's record.
    let (lock, ret) = unsafe {
        (
            ctx.read_at::<u64>(lock::ADDR.offset).unwrap_or(0),
            ctx.read_at::<i32>(lock::RET.offset).unwrap_or(0),
        )
    };
    contention_end(hook::TP_LOCK_CONTENTION, lock, ret);
    0
}

/// `contention_end(void *lock, int ret)`.
#[btf_tracepoint(function = "contention_end")]
pub fn fw_btf_contention_end(ctx: BtfTracePointContext) -> u32 {
    let (lock, ret): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    contention_end(hook::TP_BTF_LOCK_CONTENTION, lock, ret as i32);
    0
}

/// The wait for `lock` ended with `ret`.
#[inline(always)]
fn contention_end(hook: u32, lock: u64, ret: i32) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(w) = (unsafe { WAITING.get(tid) }).copied() else {
        return;
    };
    if lock != w.lock {
        return;
    }
    let _ = WAITING.remove(tid);
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let level = read_level(w.sb);
    let mut e = Emit::new(kind::WRITER_UNBLOCKED, hook, ts, w.sb);
    e.begin_ts_ns = w.begin_ts_ns;
    e.level_before = level;
    e.level_after = level;
    e.flags = w.level;
    e.ret = i64::from(ret);
    emit(&e);
}
