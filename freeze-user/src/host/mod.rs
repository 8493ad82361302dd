//! What the running system says: kernel version and privileges, BTF and the struct offsets
//! resolved from it, tracefs formats, mountinfo, kallsyms, btrfs member devices, cgroup paths, files' extents.
pub mod btf;
pub mod btrfs_devs;
pub mod cgroups;
pub mod dm;
pub mod fiemap;
pub mod kernel;
pub mod ksyms;
pub mod mountinfo;
pub mod offsets;
pub mod storage;
pub mod tpformat;
pub mod uevents;
