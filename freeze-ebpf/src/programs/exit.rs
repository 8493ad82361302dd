//! Process exits: the end of a process that made a freeze call, or of its parent (`OWNERS`), so
//! that `watch` knows from the kernel when a freeze's owner is gone and how it ended. The
//! tracepoint fires in the exiting thread; only the last thread of a listed process, with the
//! start time recorded at the freeze, is reported.
use crate::{
    emit::{Emit, emit},
    maps::{OWNERS, hit, offsets_valid},
    read::{group_exiting, process_start, read_u32, signal_of},
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_current_task},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use freeze_common::{hook, kind};

/// `sched_process_exit(struct task_struct *p, ...)`: `p` is the current task, which is what is read.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn fw_btf_process_exit(_ctx: BtfTracePointContext) -> u32 {
    process_exit(hook::TP_BTF_PROCESS_EXIT);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn fw_process_exit(_ctx: TracePointContext) -> u32 {
    process_exit(hook::TP_PROCESS_EXIT);
    0
}

#[inline(always)]
fn process_exit(hook: u32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let Some(start) = (unsafe { OWNERS.get(tgid) }).copied() else { return };
    hit(hook);
    if !offsets_valid() {
        return;
    }
    // SAFETY: the helper has no preconditions; it returns the current task's address.
    let task = unsafe { bpf_get_current_task() };
    // `signal->live` drops before the tracepoint: 0 once the process's last thread is exiting.
    if !signal_of(task).is_some_and(group_exiting) {
        return;
    }
    let _ = OWNERS.remove(tgid);
    if process_start(task) != Some(start) {
        // Another process with that pid: the one recorded exited unseen (the map was full).
        return;
    }
    // SAFETY: the helper has no preconditions.
    let mut e = Emit::new(kind::PROCESS_EXIT, hook, unsafe { bpf_ktime_get_ns() }, 0);
    e.begin_ts_ns = start;
    e.arg = u64::from(read_u32(task + off!(task_exit_code)).unwrap_or(0));
    emit(&e);
}
