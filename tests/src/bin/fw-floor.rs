//! The floor of any syscall hook, for `cargo xtask bench`: an empty `tp_btf` program (two
//! instructions, `return 0`) on `raw_syscalls:sys_enter` and one on `sys_exit`, attached until
//! stdin closes or a signal ends the process (the programs detach when their fds close). Prints
//! `fw-floor: attached` once both run. What freezewatch's syscall dispatcher costs above this is
//! its own work; this is what the kernel charges every syscall for having a program there at all.
//!
//! Loaded with bpf(2) directly: a type id from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux, the typedef `btf_trace_<tracepoint>`) is all the load needs.
use std::{io::Read as _, os::fd::RawFd};

/// `BPF_PROG_LOAD`, `BPF_RAW_TRACEPOINT_OPEN` (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
/// `BPF_PROG_TYPE_TRACING`, attached as `BPF_TRACE_RAW_TP` (what `tp_btf` is).
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_RAW_TP: u32 = 23;
/// `BTF_KIND_TYPEDEF`.
const BTF_KIND_TYPEDEF: u32 = 8;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD, up to `attach_btf_id`; the kernel
/// takes the size given and zero beyond it.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

/// `union bpf_attr` for BPF_RAW_TRACEPOINT_OPEN: no name (the program's BTF says where).
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpen {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// bpf(2), for a command that returns a descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<RawFd> {
    // SAFETY: the attributes built here point at buffers (instructions, licence) that outlive
    // the call, and the kernel only reads them.
    unsafe { freezewatch_tests::bpf_call(cmd, attr) }.map(|fd| fd as RawFd)
}

/// The id of the type named `name` of kind `kind` in a raw BTF blob (header, types, strings).
fn btf_type_id(btf: &[u8], kind_wanted: u32, name: &str) -> Option<u32> {
    let u32_at = |at: usize| btf.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let (types, strings) = (hdr_len + type_off, hdr_len + str_off);
    let (mut at, end, mut id) = (types, types + type_len, 1u32);
    while at + 12 <= end {
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == kind_wanted {
            let s = btf.get(strings + name_off..)?;
            let n = s.iter().position(|b| *b == 0)?;
            if &s[..n] == name.as_bytes() {
                return Some(id);
            }
        }
        // What follows each kind's 12-byte head (Documentation/bpf/btf.rst).
        at += 12
            + match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                _ => 0,
            };
        id += 1;
    }
    None
}

/// Loads the empty program for `tracepoint` and attaches it; returns the attachment's fd.
fn attach_empty(btf: &[u8], tracepoint: &str) -> Result<RawFd, String> {
    let typedef = format!("btf_trace_{tracepoint}");
    let id =
        btf_type_id(btf, BTF_KIND_TYPEDEF, &typedef).ok_or(format!("no {typedef} in the kernel's BTF"))?;
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"fw_floor_");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_TRACE_RAW_TP,
        attach_btf_id: id,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &attr).map_err(|e| format!("loading the program for {tracepoint}: {e}"))?;
    bpf(BPF_RAW_TRACEPOINT_OPEN, &RawTracepointOpen { prog_fd: prog as u32, ..Default::default() })
        .map_err(|e| format!("attaching to {tracepoint}: {e}"))
}

fn main() -> std::process::ExitCode {
    let btf = match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fw-floor: /sys/kernel/btf/vmlinux: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut links = Vec::new();
    for tracepoint in ["sys_enter", "sys_exit"] {
        match attach_empty(&btf, tracepoint) {
            Ok(fd) => links.push(fd),
            Err(e) => {
                eprintln!("fw-floor: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    eprintln!("fw-floor: attached");
    // Until stdin closes (or a signal ends the process): the kernel drops the programs with the fds.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(links);
    std::process::ExitCode::SUCCESS
}
