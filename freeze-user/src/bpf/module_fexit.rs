//! fexit programs on functions of a kernel module (btrfs), which aya cannot attach.
//!
//! A module's functions are described by the module's own BTF object (split BTF on top of
//! vmlinux), and the kernel needs that object's fd next to the function's type id when the
//! program is loaded (`attach_btf_obj_fd`). aya 0.14 only ever attaches to vmlinux BTF (aya-rs/aya
//! issue 301). So this module takes the program from the same eBPF object, relocates it against
//! the maps aya already created (so it writes to the same ring buffer and counters and reads the
//! same offsets), loads it with `BPF_PROG_LOAD` itself and attaches it with
//! `BPF_RAW_TRACEPOINT_OPEN`. Both fds are owned: dropping them (or the process dying) detaches.
//! When the function is in vmlinux (btrfs built in) the same path is taken with vmlinux BTF.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
};

use aya::maps::{Map, MapData};
use aya_obj::generated::{
    bpf_attach_type::BPF_TRACE_FEXIT, bpf_btf_info, bpf_insn, bpf_prog_type::BPF_PROG_TYPE_TRACING,
};

use super::sys::{bpf, bpf_cmd, owned, zeroed_attr};
use crate::host::btf::{Btf, btf_kind};

/// Where a function's type lives: vmlinux (built in) or a module's BTF.
pub enum FuncBtf<'a> {
    Vmlinux(&'a Btf),
    Module { name: String, btf: Btf },
}

impl FuncBtf<'_> {
    pub fn btf(&self) -> &Btf {
        match self {
            FuncBtf::Vmlinux(b) => b,
            FuncBtf::Module { btf, .. } => btf,
        }
    }
}

/// The BTF that describes `module`'s functions: vmlinux when `probe_func` is built in, else the
/// module's split BTF from /sys/kernel/btf (present while the module is loaded).
pub fn btf_of_module<'a>(vmlinux: &'a Btf, module: &str, probe_func: &str) -> Result<FuncBtf<'a>, String> {
    if vmlinux.id_by_name(btf_kind::FUNC, probe_func).is_some() {
        return Ok(FuncBtf::Vmlinux(vmlinux));
    }
    let path = format!("/sys/kernel/btf/{module}");
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        // A module without BTF (kernels before 5.11) is loaded and still has none.
        std::io::ErrorKind::NotFound if std::path::Path::new("/sys/module").join(module).exists() => format!(
            "{module} is loaded but has no BTF ({path} does not exist: modules have BTF from Linux 5.11 on)"
        ),
        std::io::ErrorKind::NotFound => {
            format!("{module} is neither built in nor loaded as a module ({path} does not exist)")
        }
        _ => format!("cannot read {path}: {e}"),
    })?;
    let btf = Btf::parse_split(vmlinux, &bytes).map_err(|e| format!("{path}: {e}"))?;
    Ok(FuncBtf::Module { name: module.to_owned(), btf })
}

/// btrfs's BTF, with the btrfs struct offsets the programs read filled into `offsets`. Where
/// it fails, those offsets stay 0, which keeps the btrfs fexit programs inert.
pub fn btrfs<'a>(
    vmlinux: &'a Btf,
    offsets: &mut freeze_common::KernelOffsets,
) -> Result<FuncBtf<'a>, String> {
    let target = btf_of_module(vmlinux, "btrfs", "btrfs_start_transaction")?;
    crate::host::offsets::resolve_btrfs(target.btf(), offsets).map_err(|e| e.to_string())?;
    Ok(target)
}

/// xfs's BTF, with the xfs struct offsets the raw xfs tracepoint reads filled into `offsets`.
/// Where it fails, those offsets stay 0 and that tracepoint's attempt is passed over.
pub fn xfs<'a>(vmlinux: &'a Btf, offsets: &mut freeze_common::KernelOffsets) -> Result<FuncBtf<'a>, String> {
    let target = btf_of_module(vmlinux, "xfs", "xfs_trans_alloc")?;
    crate::host::offsets::resolve_xfs(target.btf(), offsets).map_err(|e| e.to_string())?;
    Ok(target)
}

/// The loop driver's BTF, with the `loop_device` offsets the raw block tracepoint reads (to
/// judge a bio to any loop device over a watched backing file) filled into `offsets`. Where it
/// fails, those offsets stay 0 and loop devices are judged by the storage maps alone.
pub fn loop_driver<'a>(
    vmlinux: &'a Btf,
    offsets: &mut freeze_common::KernelOffsets,
) -> Result<FuncBtf<'a>, String> {
    let target = btf_of_module(vmlinux, "loop", "loop_configure")?;
    crate::host::offsets::resolve_loop(target.btf(), offsets).map_err(|e| e.to_string())?;
    Ok(target)
}

/// The BTF of every module whose functions or structs programs use (or why not), by module
/// name, with the offsets into their structs filled into `offsets`: what loading and `doctor`
/// both resolve.
pub fn modules<'a>(
    vmlinux: &'a Btf,
    offsets: &mut freeze_common::KernelOffsets,
) -> std::collections::HashMap<&'static str, Result<FuncBtf<'a>, String>> {
    [
        ("btrfs", btrfs(vmlinux, offsets)),
        ("xfs", xfs(vmlinux, offsets)),
        ("loop", loop_driver(vmlinux, offsets)),
    ]
    .into_iter()
    .collect()
}

/// One attached program: the link keeps it attached, the program fd keeps it loaded.
pub struct Attached {
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// The fd of the kernel BTF object named `name` ("btrfs"), found by walking the loaded BTF ids.
fn kernel_btf_fd(name: &str) -> Result<OwnedFd, String> {
    let mut id = 0u32;
    loop {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
        match bpf(bpf_cmd::BPF_BTF_GET_NEXT_ID, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(format!("no BTF object named {name} is loaded"));
            }
            Err(e) => return Err(format!("BPF_BTF_GET_NEXT_ID: {e}")),
        }
        // SAFETY: the kernel filled next_id.
        id = unsafe { attr.__bindgen_anon_6.next_id };
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.btf_id = id;
        let fd = match bpf(bpf_cmd::BPF_BTF_GET_FD_BY_ID, &mut attr) {
            Ok(fd) => owned(fd),
            // Unloaded between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(format!("BPF_BTF_GET_FD_BY_ID {id}: {e}")),
        };
        let mut buf = [0u8; 64];
        // SAFETY: bpf_btf_info is plain integers.
        let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
        info.name = buf.as_mut_ptr() as u64;
        info.name_len = buf.len() as u32;
        let mut attr = zeroed_attr();
        attr.info.bpf_fd = fd.as_raw_fd() as u32;
        attr.info.info_len = size_of::<bpf_btf_info>() as u32;
        attr.info.info = &raw mut info as u64;
        bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)
            .map_err(|e| format!("BPF_OBJ_GET_INFO_BY_FD: {e}"))?;
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if info.kernel_btf != 0 && &buf[..len] == name.as_bytes() {
            return Ok(fd);
        }
    }
}

/// Every map aya created, whatever its type: a map left out here is "no fd" for the module
/// programs (an LRU map once was), so the match names every variant and a new one fails to build.
fn map_data(map: &Map) -> &MapData {
    match map {
        Map::Array(m)
        | Map::ArrayOfMaps(m)
        | Map::BloomFilter(m)
        | Map::CgroupArray(m)
        | Map::CgroupStorage(m)
        | Map::CgrpStorage(m)
        | Map::CpuMap(m)
        | Map::DevMap(m)
        | Map::DevMapHash(m)
        | Map::HashMap(m)
        | Map::HashOfMaps(m)
        | Map::InodeStorage(m)
        | Map::LpmTrie(m)
        | Map::LruHashMap(m)
        | Map::PerCpuArray(m)
        | Map::PerCpuCgroupStorage(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m)
        | Map::PerfEventArray(m)
        | Map::ProgramArray(m)
        | Map::Queue(m)
        | Map::ReusePortSockArray(m)
        | Map::RingBuf(m)
        | Map::SockHash(m)
        | Map::SockMap(m)
        | Map::SkStorage(m)
        | Map::Stack(m)
        | Map::StackTraceMap(m)
        | Map::Unsupported(m)
        | Map::XskMap(m) => m,
    }
}

/// The instructions of `programs` from `object`, with map references pointing at the maps that
/// `maps` (aya's, already created) holds and calls to other functions linked in.
fn relocated(
    object: &[u8],
    maps: &[(String, RawFd)],
    programs: &[&str],
) -> Result<HashMap<String, (Vec<bpf_insn>, String)>, String> {
    let mut obj = aya_obj::Object::parse(object).map_err(|e| format!("parsing the eBPF object: {e}"))?;
    // Same rule as aya: every section with functions may hold call targets.
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    let wanted: HashSet<(usize, u64)> = obj
        .programs
        .iter()
        .filter(|(n, _)| programs.contains(&n.as_str()))
        .map(|(_, p)| p.function_key())
        .collect();
    // Only the wanted programs and what they may call (functions outside any program's section,
    // i.e. .text): the other programs use maps that may not be passed here.
    let program_sections: HashSet<usize> = obj.programs.values().map(|p| p.function_key().0).collect();
    obj.programs.retain(|n, _| programs.contains(&n.as_str()));
    obj.functions.retain(|key, _| wanted.contains(key) || !program_sections.contains(&key.0));
    let obj_maps = std::mem::take(&mut obj.maps);
    let fds: HashMap<&str, RawFd> = maps.iter().map(|(n, fd)| (n.as_str(), *fd)).collect();
    // aya-obj falls back to matching a missing map by its section, which holds every map: it
    // would point the program at another map. So every map must be here.
    let mut missing: Vec<&str> =
        obj_maps.keys().map(String::as_str).filter(|n| !fds.contains_key(n)).collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(format!("relocating maps: no fd for {}", missing.join(", ")));
    }
    let pairs =
        obj_maps.iter().filter_map(|(name, m)| fds.get(name.as_str()).map(|fd| (name.as_str(), *fd, m)));
    obj.relocate_maps(pairs, &text_sections).map_err(|e| format!("relocating maps: {e}"))?;
    obj.relocate_calls(&text_sections).map_err(|e| format!("relocating calls: {e}"))?;
    // aya would also rewrite helpers that old kernels lack (sanitize_functions): not needed, as
    // fexit itself needs a kernel that has every helper these programs call.
    let license = obj.license.to_str().unwrap_or("GPL").to_owned();
    let mut out = HashMap::new();
    for (name, prog) in &obj.programs {
        let f = obj.functions.get(&prog.function_key()).ok_or_else(|| format!("{name}: no function"))?;
        out.insert(name.clone(), (f.instructions.clone(), license.clone()));
    }
    Ok(out)
}

/// Loads `insns` as an fexit program on the function `btf_id` of `btf_obj` (None: vmlinux).
fn load_fexit(
    name: &str,
    insns: &[bpf_insn],
    license: &str,
    btf_id: u32,
    btf_obj: Option<&OwnedFd>,
) -> Result<OwnedFd, String> {
    let license = CString::new(license).map_err(|_| "license has a NUL".to_owned())?;
    let mut log = vec![0u8; 256 * 1024];
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = zeroed_attr();
        // SAFETY: writing fields of the PROG_LOAD member of a zeroed union.
        let p = unsafe { &mut attr.__bindgen_anon_3 };
        p.prog_type = BPF_PROG_TYPE_TRACING as u32;
        p.expected_attach_type = BPF_TRACE_FEXIT as u32;
        p.insns = insns.as_ptr() as u64;
        p.insn_cnt = insns.len() as u32;
        p.license = license.as_ptr() as u64;
        p.attach_btf_id = btf_id;
        p.__bindgen_anon_1.attach_btf_obj_fd = btf_obj.map_or(0, |fd| fd.as_raw_fd() as u32);
        for (dst, src) in p.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if let Some(log) = log {
            p.log_level = 1;
            p.log_buf = log.as_mut_ptr() as u64;
            p.log_size = log.len() as u32;
        }
        bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr).map(owned)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Again with the verifier log, which says why.
            let _ = attempt(Some(&mut log));
            let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())])
                .into_owned();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("processed"))
                .unwrap_or("");
            Err(if last.is_empty() {
                format!("BPF_PROG_LOAD: {e}")
            } else {
                format!("BPF_PROG_LOAD: {e}: {last}")
            })
        }
    }
}

fn attach(prog: &OwnedFd) -> Result<OwnedFd, String> {
    let mut attr = zeroed_attr();
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(owned).map_err(|e| format!("attaching: {e}"))
}

/// Copies of the fds of every map aya created, by name: taken right after the object is loaded,
/// before anything (the logger) takes a map out of the `Ebpf`.
pub fn map_fds(ebpf: &aya::Ebpf) -> Vec<(String, OwnedFd)> {
    ebpf.maps()
        .filter_map(|(name, m)| {
            let fd = map_data(m).fd().as_fd().try_clone_to_owned().ok()?;
            Some((name.to_owned(), fd))
        })
        .collect()
}

/// Loads and attaches each (program, function) pair as fexit, all or none. `maps` is what
/// `map_fds` returned.
pub fn attach_all(
    maps: &[(String, OwnedFd)],
    object: &[u8],
    target: &FuncBtf<'_>,
    pairs: &[(&str, &str)],
) -> Result<Vec<Attached>, String> {
    let maps: Vec<(String, RawFd)> = maps.iter().map(|(n, fd)| (n.clone(), fd.as_raw_fd())).collect();
    let names: Vec<&str> = pairs.iter().map(|(p, _)| *p).collect();
    let programs = relocated(object, &maps, &names)?;
    let btf_obj = match target {
        FuncBtf::Vmlinux(_) => None,
        FuncBtf::Module { name, .. } => Some(kernel_btf_fd(name)?),
    };
    let mut attached = Vec::new();
    for (prog, func) in pairs {
        let id =
            target.btf().id_by_name(btf_kind::FUNC, func).ok_or_else(|| format!("{func}: not in BTF"))?;
        let (insns, license) =
            programs.get(*prog).ok_or_else(|| format!("program {prog} missing from the object"))?;
        let fd =
            load_fexit(prog, insns, license, id, btf_obj.as_ref()).map_err(|e| format!("{func}: {e}"))?;
        let link = attach(&fd).map_err(|e| format!("{func}: {e}"))?;
        attached.push(Attached { _link: link, _prog: fd });
    }
    Ok(attached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use freeze_common::names;

    use crate::host::btf::builder::BtfBuilder;

    const BTRFS: [&str; 3] = [
        "fw_btrfs_start_transaction_exit",
        "fw_btrfs_start_transaction_rsv_exit",
        "fw_btrfs_join_transaction_exit",
    ];

    /// Every map of the real object, with a made-up fd each.
    fn fake_maps() -> Vec<(String, RawFd)> {
        let obj = aya_obj::Object::parse(crate::bpf::OBJECT).expect("object parses");
        let mut names: Vec<String> = obj.maps.keys().cloned().collect();
        names.sort();
        names.into_iter().enumerate().map(|(i, n)| (n, 1000 + i as RawFd)).collect()
    }

    /// (src_reg, imm) of every 64-bit immediate load that names a map.
    fn map_refs(insns: &[bpf_insn]) -> Vec<(u8, i32)> {
        const LD_IMM64: u8 = 0x18;
        insns
            .iter()
            .filter(|i| i.code == LD_IMM64 && matches!(i.src_reg(), 1 | 2))
            .map(|i| (i.src_reg(), i.imm))
            .collect()
    }

    #[test]
    fn the_btrfs_programs_relocate_against_the_maps_aya_created() {
        let maps = fake_maps();
        let fd_of = |name: &str| maps.iter().find(|(n, _)| n == name).map(|(_, fd)| *fd).expect(name);
        let programs = relocated(crate::bpf::OBJECT, &maps, &BTRFS).expect("relocation succeeds");
        assert_eq!(programs.len(), 3);
        for name in BTRFS {
            let (insns, license) = &programs[name];
            // The kernel's GPL-compatible list has "Dual MIT/GPL"; probe_read_kernel needs one.
            assert!(license.contains("GPL"), "probe_read_kernel needs a GPL-compatible program: {license}");
            let refs = map_refs(insns);
            let fds: HashSet<i32> = maps.iter().map(|(_, fd)| *fd).collect();
            assert!(
                refs.iter().all(|(_, imm)| fds.contains(imm)),
                "{name}: a map reference was left unrelocated: {refs:?}"
            );
            // It writes events to the shared ring buffer, checks the frozen superblocks and reads
            // the offsets user space wrote into .rodata (a map-value reference).
            for map in [names::EVENTS, names::FROZEN_SBS, names::COUNTERS] {
                assert!(
                    refs.iter().any(|(src, imm)| *src == 1 && *imm == fd_of(map)),
                    "{name} does not use {map}"
                );
            }
            assert!(
                refs.iter().any(|(src, imm)| *src == 2 && *imm == fd_of(".rodata")),
                "{name}: no OFFSETS read"
            );
            // No call to a function that was not linked in: every pseudo call stays inside.
            for (at, i) in insns.iter().enumerate() {
                if i.code == 0x85 && i.src_reg() == 1 {
                    let target = at as i64 + 1 + i64::from(i.imm);
                    assert!(
                        (0..insns.len() as i64).contains(&target),
                        "{name}: call out of the program at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_map_aya_did_not_create_is_an_error_not_a_zero_fd() {
        let maps: Vec<(String, RawFd)> =
            fake_maps().into_iter().filter(|(n, _)| n != names::EVENTS).collect();
        let err =
            relocated(crate::bpf::OBJECT, &maps, &BTRFS).map(|p| p.len()).expect_err("relocation must fail");
        assert!(err.contains("relocating maps"), "{err}");
    }

    #[test]
    fn a_module_that_is_not_there_is_named() {
        let mut b = BtfBuilder::new();
        b.int("int", 4);
        let vmlinux = Btf::parse(b.build()).expect("parses");
        let err = btf_of_module(&vmlinux, "freezewatch_no_such_module", "nope").err().expect("an error");
        assert!(err.contains("neither built in nor loaded"), "{err}");
    }

    #[test]
    fn a_built_in_function_uses_vmlinux() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        b.func("btrfs_start_transaction", int, &[int]);
        let vmlinux = Btf::parse(b.build()).expect("parses");
        let target = btf_of_module(&vmlinux, "btrfs", "btrfs_start_transaction").expect("found");
        assert!(matches!(target, FuncBtf::Vmlinux(_)));
    }
}
