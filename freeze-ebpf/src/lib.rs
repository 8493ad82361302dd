//! Empty on purpose: the programs live in the `freeze-ebpf` binary (src/main.rs). This library
//! exists so that `freeze-user` can name this crate as a build dependency, which makes cargo rebuild
//! the loader when the programs change (the pattern aya's template uses).
#![no_std]
