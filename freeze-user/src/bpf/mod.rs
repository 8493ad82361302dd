//! Loading the eBPF programs and attaching them: aya for the kernel's own functions and
//! tracepoints, raw `bpf(2)` for module functions (`module_fexit`) and for `doctor`'s probes.
pub mod loader;
pub mod module_fexit;
pub mod mount_paths;
pub mod probe;
