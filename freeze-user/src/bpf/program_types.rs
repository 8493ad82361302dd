//! Probes which BPF program types this kernel accepts, by loading a two-instruction program
//! (`r0 = 0; exit`) of each type with raw `bpf(BPF_PROG_LOAD)`. The answer is the kernel's own,
//! which `bpftool feature probe` approximates but does not give for tracing and LSM programs.
use serde::Serialize;

use super::sys;
use crate::host::btf::{Btf, btf_kind};

// Program and attach types from the uapi (stable ABI numbers).
const PROG_TRACEPOINT: u32 = 5;
const PROG_RAW_TRACEPOINT: u32 = 17;
const PROG_TRACING: u32 = 26;
const PROG_LSM: u32 = 29;
const ATTACH_TRACE_RAW_TP: u32 = 23;
const ATTACH_TRACE_FENTRY: u32 = 24;
const ATTACH_LSM_MAC: u32 = 27;
const ATTACH_TRACE_ITER: u32 = 28;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The kernel refused the load (errno in the detail).
    Refused,
    /// The probe could not be made (a BTF target is missing).
    Unavailable,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    pub program_type: &'static str,
    pub status: Status,
    pub detail: String,
}

struct Spec {
    name: &'static str,
    prog_type: u32,
    attach_type: u32,
    /// (BTF kind, name) of the attach target, for BTF-attached types.
    target: Option<(u32, &'static str)>,
}

const SPECS: [Spec; 6] = [
    Spec { name: "tracepoint", prog_type: PROG_TRACEPOINT, attach_type: 0, target: None },
    Spec { name: "raw_tracepoint", prog_type: PROG_RAW_TRACEPOINT, attach_type: 0, target: None },
    Spec {
        name: "tp_btf",
        prog_type: PROG_TRACING,
        attach_type: ATTACH_TRACE_RAW_TP,
        target: Some((btf_kind::TYPEDEF, "btf_trace_sched_switch")),
    },
    Spec {
        name: "fentry",
        prog_type: PROG_TRACING,
        attach_type: ATTACH_TRACE_FENTRY,
        target: Some((btf_kind::FUNC, "freeze_super")),
    },
    // Iterators are tracing programs too, but some hosts that refuse fentry let them load.
    Spec {
        name: "iter",
        prog_type: PROG_TRACING,
        attach_type: ATTACH_TRACE_ITER,
        target: Some((btf_kind::FUNC, "bpf_iter_task_file")),
    },
    Spec {
        name: "lsm",
        prog_type: PROG_LSM,
        attach_type: ATTACH_LSM_MAC,
        target: Some((btf_kind::FUNC, "bpf_lsm_sb_mount")),
    },
];

/// Loads `r0 = 0; exit` as the given type; Ok(()) or the errno.
fn try_load(prog_type: u32, attach_type: u32, attach_btf_id: u32) -> Result<(), std::io::Error> {
    // BPF_MOV64_IMM(R0, 0); BPF_EXIT_INSN()
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = sys::zeroed_attr();
    // SAFETY: writing integer fields of the PROG_LOAD member of a zeroed union.
    let p = unsafe { &mut attr.__bindgen_anon_3 };
    p.prog_type = prog_type;
    p.insn_cnt = insns.len() as u32;
    p.insns = insns.as_ptr() as u64;
    p.license = license.as_ptr() as u64;
    for (dst, src) in p.prog_name.iter_mut().zip(b"fw_probe") {
        *dst = *src as libc::c_char;
    }
    p.expected_attach_type = attach_type;
    p.attach_btf_id = attach_btf_id;
    // The fd closes when dropped: the probe only asks whether the kernel accepts the type.
    sys::bpf(sys::bpf_cmd::BPF_PROG_LOAD, &mut attr).map(sys::owned).map(drop)
}

/// Probes every program type freezewatch may use. `btf` is None when kernel BTF is unreadable.
pub fn probe_all(btf: Option<&Btf>) -> Vec<ProbeResult> {
    sys::raise_memlock_limit();
    SPECS
        .iter()
        .map(|s| {
            let btf_id = match (s.target, btf) {
                (None, _) => 0,
                (Some(_), None) => {
                    return ProbeResult {
                        program_type: s.name,
                        status: Status::Unavailable,
                        detail: "needs kernel BTF".into(),
                    };
                }
                (Some((kind, name)), Some(btf)) => match btf.id_by_name(kind, name) {
                    Some(id) => id,
                    None => {
                        return ProbeResult {
                            program_type: s.name,
                            status: Status::Unavailable,
                            detail: format!("`{name}` is not in kernel BTF"),
                        };
                    }
                },
            };
            match try_load(s.prog_type, s.attach_type, btf_id) {
                Ok(()) => ProbeResult { program_type: s.name, status: Status::Ok, detail: "loads".into() },
                Err(e) => ProbeResult {
                    program_type: s.name,
                    status: Status::Refused,
                    detail: format!("BPF_PROG_LOAD: {e}"),
                },
            }
        })
        .collect()
}
