//! freezewatch eBPF programs, one file per program family under `programs/`:
//! - `freeze`: freeze and thaw, by fentry/fexit on `freeze_super` / `thaw_super` (every freeze
//!   path; refused on hosts that forbid tracing programs) or the FIFREEZE/FITHAW ioctls (through
//!   `syscalls`, or their tracepoints, the fallback that loads everywhere; the superblock is
//!   resolved from the ioctl's fd);
//! - `block`, `gate`, `txn`, `write`: what reaches a freezing or frozen superblock;
//! - `mount`: mount calls; `lsm`: mount denial;
//! - `exit`: the exits of processes that froze something, and of their parents;
//! - `syscalls`: one `tp_btf` program on `raw_syscalls:sys_enter` and one on `sys_exit` that call
//!   the syscall handlers of `freeze`, `mount` and `backing` (whose `syscalls:*` tracepoint
//!   programs are the fallback), without a perf event to detach.
//!
//! Shared: `maps` (maps and globals), `read` (kernel reads at offsets from `OFFSETS`, which user
//! space fills from the running kernel's BTF: Rust eBPF objects carry no CO-RE relocations), and
//! `emit` (events, counters, the watch maps).
#![no_std]
// `atomic_xadd` (see emit::count_watched): the BPF target has no atomic types.
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

/// Reads one field of `OFFSETS`. Volatile so the compiler cannot fold the zero it was built with.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: OFFSETS is a static that lives for the whole program; the read is in bounds.
        unsafe { core::ptr::read_volatile(&raw const crate::maps::OFFSETS.$field) } as u64
    };
}

mod emit;
mod maps;
mod programs;
mod read;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible licence: required for bpf_probe_read_kernel and for tracing programs.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
