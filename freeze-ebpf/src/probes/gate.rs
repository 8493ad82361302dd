//! Writers held at the freeze gate: `lock:contention_begin/end` on `s_writers.rw_sem[]`.
use crate::{emit::*, maps::*, read::*};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use freeze_common::tp::lock;
use freeze_common::{counter, hook, kind};

/// `LCB_F_READ`: a reader waiting. Writers held at a gate wait for reading; freeze_super itself
/// contends for writing (LCB_F_WRITE) while it drains them, and is not a blocked writer.
pub(crate) const LCB_F_READ: u32 = 1 << 1;

#[tracepoint(category = "lock", name = "contention_begin")]
pub fn fw_contention_begin(ctx: TracePointContext) -> u32 {
    hit(hook::TP_LOCK_CONTENTION);
    // SAFETY: the offset is inside the tracepoint's record.
    let lock = unsafe { ctx.read_at::<u64>(lock::ADDR.offset) }.unwrap_or(0);
    // SAFETY: the value is copied out at once.
    let Some(gate) = (unsafe { GATE_LOCKS.get(&lock) }).copied() else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: the offset is inside the tracepoint's record.
    if unsafe { ctx.read_at::<u32>(lock::FLAGS.offset) }.unwrap_or(0) & LCB_F_READ == 0 {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let waiting = Waiting { sb: gate.sb, lock, begin_ts_ns: ts, level: gate.level, _pad: 0 };
    if WAITING.insert(&tid, &waiting, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    let level = read_level(gate.sb);
    let mut e = Emit::new(kind::WRITER_BLOCKED, hook::TP_LOCK_CONTENTION, ts, gate.sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = gate.level;
    emit(&e);
    0
}

#[tracepoint(category = "lock", name = "contention_end")]
pub fn fw_contention_end(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(w) = (unsafe { WAITING.get(&tid) }).copied() else {
        return 0;
    };
    // SAFETY: the offset is inside the tracepoint's record.
    if unsafe { ctx.read_at::<u64>(lock::ADDR.offset) }.unwrap_or(0) != w.lock {
        return 0;
    }
    let _ = WAITING.remove(&tid);
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let level = read_level(w.sb);
    let mut e = Emit::new(kind::WRITER_UNBLOCKED, hook::TP_LOCK_CONTENTION, ts, w.sb);
    e.begin_ts_ns = w.begin_ts_ns;
    e.level_before = level;
    e.level_after = level;
    e.flags = w.level;
    // SAFETY: the offset is inside the tracepoint's record.
    e.ret = i64::from(unsafe { ctx.read_at::<i32>(lock::RET.offset) }.unwrap_or(0));
    emit(&e);
    0
}
