//! Loads the eBPF object and attaches each feature's hook chain. The only module that uses aya.
//!
//! Chain for freeze/thaw: fentry/fexit on `freeze_super`/`thaw_super` (sees every freeze path),
//! then the `syscalls:sys_{enter,exit}_ioctl` tracepoints (FIFREEZE/FITHAW only). Every program
//! detaches when the `Loaded` value is dropped, and the kernel detaches them if the process dies.
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, Lsm, ProgramError, TracePoint},
};
use freeze_common::{KernelOffsets, counter};

use freeze_common::tp::{self, TpField};

use crate::{
    bpf::module_fexit::{self, FuncBtf},
    host::btf::Btf,
    host::kernel,
    host::offsets::{self, OffsetError},
};
use freeze_model::{
    deny::DenyMode,
    event::Hook,
    trace::{ActiveHook, Counters},
};

/// The eBPF object, built by build.rs (aya-build) for bpfel-unknown-none.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/freeze-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Privileges(String),
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    #[error("cannot read kernel BTF (/sys/kernel/btf/vmlinux; the kernel needs CONFIG_DEBUG_INFO_BTF): {0}")]
    Btf(std::io::Error),
    #[error("kernel BTF lacks a field freezewatch reads: {0}")]
    Offsets(#[from] OffsetError),
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("no hook could attach for {feature}: {reasons}")]
    NoHook { feature: &'static str, reasons: String },
    #[error(
        "--deny-mounts=enforce cannot deny mounts here: {0}. Use --deny-mounts=audit to record \
         anyway (mounts of frozen filesystems are then flagged, not refused); `freezewatch doctor` \
         tells what this kernel allows"
    )]
    DenyUnavailable(String),
}

/// Formats an error with its sources, which is where aya puts the errno and the verifier log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    // Verifier logs can be long; keep the first line, which names the problem, and drop aya's
    // "Verifier output:" label when the log is empty (as it is for EPERM).
    let first = s.lines().next().unwrap_or_default().trim_end();
    first.strip_suffix("Verifier output:").unwrap_or(first).trim_end().trim_end_matches('.').to_owned()
}

pub type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;

pub struct Loaded {
    /// Programs on module functions, loaded outside aya (`module_fexit`); detached on drop.
    _module_programs: Vec<module_fexit::Attached>,
    // Field order matters: programs (in `ebpf`) are dropped before the log map they write to.
    ebpf: Ebpf,
    logger: Option<Logger>,
    pub offsets: KernelOffsets,
    pub hooks: Vec<ActiveHook>,
    pub freeze_hook: Hook,
    /// Whether the mount-denial programs are attached (their mode is in the trace header's hooks).
    pub denying: bool,
    /// The mount-point table last written to the kernel (for bind-source matching).
    mount_paths: Vec<crate::bpf::mount_paths::PathKey>,
}

const LSM_PROGS: [(&str, &str); 3] = [
    ("fw_lsm_sb_kern_mount", "sb_kern_mount"),
    ("fw_lsm_sb_mount", "sb_mount"),
    ("fw_lsm_move_mount", "move_mount"),
];

/// Attaches the mount-denial programs, all or none. BPF LSM programs attach even where the BPF
/// LSM is not active, and then never run: the active list is checked first.
fn attach_lsm(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<(), String> {
    match kernel::active_lsms() {
        Ok(list) if !list.iter().any(|l| l == "bpf") => {
            return Err(format!(
                "the BPF LSM is not active (/sys/kernel/security/lsm: {}); boot with \
                 lsm={},bpf on the kernel command line",
                list.join(","),
                list.join(",")
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the active LSMs: {e}")),
    }
    let result = LSM_PROGS.iter().try_for_each(|(name, hook)| {
        let p: &mut Lsm = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the object"))?
            .try_into()
            .map_err(|e: ProgramError| chain(&e))?;
        p.load(hook, btf).map_err(|e| format!("lsm:{hook}: {}", chain(&e)))?;
        p.attach().map_err(|e| format!("lsm:{hook}: {}", chain(&e)))?;
        Ok::<(), String>(())
    });
    if result.is_err() {
        for (name, _) in LSM_PROGS {
            if let Some(p) = ebpf.program_mut(name).and_then(|p| <&mut Lsm>::try_from(p).ok()) {
                let _ = p.unload();
            }
        }
    }
    result.map_err(|e| {
        if e.contains("Operation not permitted") || e.contains("EPERM") {
            format!("{e} (this kernel refuses BPF LSM programs)")
        } else {
            e
        }
    })
}

const FENTRY_PROGS: [(&str, &str, bool); 4] = [
    ("fw_freeze_super_entry", "freeze_super", true),
    ("fw_freeze_super_exit", "freeze_super", false),
    ("fw_thaw_super_entry", "thaw_super", true),
    ("fw_thaw_super_exit", "thaw_super", false),
];

fn attach_fentry(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<(), ProgramError> {
    for (name, func, entry) in FENTRY_PROGS {
        let prog = ebpf.program_mut(name).ok_or(ProgramError::UnexpectedProgramType)?;
        if entry {
            let p: &mut FEntry = prog.try_into()?;
            p.load(func, btf)?;
            p.attach()?;
        } else {
            let p: &mut FExit = prog.try_into()?;
            p.load(func, btf)?;
            p.attach()?;
        }
    }
    Ok(())
}

fn detach_fentry(ebpf: &mut Ebpf) {
    for (name, _, entry) in FENTRY_PROGS {
        let Some(prog) = ebpf.program_mut(name) else { continue };
        // Unloading detaches every link of the program; errors mean it was never loaded.
        let _ = if entry {
            <&mut FEntry>::try_from(prog).map(|p| p.unload())
        } else {
            <&mut FExit>::try_from(prog).map(|p| p.unload())
        };
    }
}

fn attach_ioctl_tracepoints(ebpf: &mut Ebpf) -> Result<(), ProgramError> {
    for (name, tp) in [("fw_ioctl_enter", "sys_enter_ioctl"), ("fw_ioctl_exit", "sys_exit_ioctl")] {
        let prog = ebpf.program_mut(name).ok_or(ProgramError::UnexpectedProgramType)?;
        let p: &mut TracePoint = prog.try_into()?;
        p.load()?;
        p.attach("syscalls", tp)?;
    }
    Ok(())
}

/// A feature made of tracepoint programs, optionally preceded by an fexit program that is tried
/// first where the kernel allows it. When nothing attaches, the feature is reported as
/// unavailable and recording goes on.
struct TpFeature {
    feature: &'static str,
    /// An fexit program to try first, as (program, kernel function), where fentry is allowed.
    fexit_first: Option<(&'static str, &'static str)>,
    /// fexit programs on a module's functions (see `module_fexit`), all required, attached
    /// before `progs`; where they cannot attach the entry fails and the next one is tried.
    module_fexit: Option<ModuleFexit>,
    /// The hook name in traces and `doctor`.
    hook: &'static str,
    progs: &'static [TpProg],
}

/// fexit programs on functions of `module` (or of vmlinux when it is built in).
struct ModuleFexit {
    module: &'static str,
    /// (program, kernel function) pairs.
    progs: &'static [(&'static str, &'static str)],
}

const BTRFS_TXN_FEXIT: &[(&str, &str)] = &[
    ("fw_btrfs_start_transaction_exit", "btrfs_start_transaction"),
    ("fw_btrfs_start_transaction_rsv_exit", "btrfs_start_transaction_fallback_global_rsv"),
    ("fw_btrfs_join_transaction_exit", "btrfs_join_transaction"),
];

/// One tracepoint program and the record fields it reads, as (name, offset, size).
struct TpProg {
    program: &'static str,
    category: &'static str,
    tracepoint: &'static str,
    fields: &'static [TpField],
}

const TRACEPOINT_FEATURES: &[TpFeature] = &[
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "block-writes",
        hook: "tracepoint:block:block_bio_queue",
        progs: &[TpProg {
            program: "fw_block_bio_queue",
            category: "block",
            tracepoint: "block_bio_queue",
            fields: tp::block_bio_queue::FIELDS,
        }],
    },
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "blocked-writers",
        hook: "tracepoint:lock:contention",
        progs: &[
            TpProg {
                program: "fw_contention_begin",
                category: "lock",
                tracepoint: "contention_begin",
                fields: tp::lock::BEGIN,
            },
            TpProg {
                program: "fw_contention_end",
                category: "lock",
                tracepoint: "contention_end",
                fields: tp::lock::END,
            },
        ],
    },
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "txn-ext4",
        hook: "tracepoint:ext4:ext4_journal_start",
        progs: &[
            TpProg {
                program: "fw_ext4_journal_start_sb",
                category: "ext4",
                tracepoint: "ext4_journal_start_sb",
                fields: tp::ext4::JOURNAL_START_SB,
            },
            TpProg {
                program: "fw_ext4_journal_start_inode",
                category: "ext4",
                tracepoint: "ext4_journal_start_inode",
                fields: tp::ext4::JOURNAL_START_INODE,
            },
        ],
    },
    // Before 6.5 ext4 has one journal-start tracepoint, without the handle type.
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "txn-ext4",
        hook: "tracepoint:ext4:ext4_journal_start",
        progs: &[TpProg {
            program: "fw_ext4_journal_start",
            category: "ext4",
            tracepoint: "ext4_journal_start",
            fields: tp::ext4::JOURNAL_START,
        }],
    },
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "txn-xfs",
        hook: "tracepoint:xfs:xfs_trans_alloc",
        progs: &[TpProg {
            program: "fw_xfs_trans_alloc",
            category: "xfs",
            tracepoint: "xfs_trans_alloc",
            fields: tp::xfs::TRANS_ALLOC,
        }],
    },
    // btrfs transaction handles at fexit (a start that got past the gate), commits from the
    // tracepoint; without fexit, starts are seen where they reserve space, before the gate.
    TpFeature {
        fexit_first: None,
        module_fexit: Some(ModuleFexit { module: "btrfs", progs: BTRFS_TXN_FEXIT }),
        feature: "txn-btrfs",
        hook: "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit",
        progs: &[TpProg {
            program: "fw_btrfs_transaction_commit",
            category: "btrfs",
            tracepoint: "btrfs_transaction_commit",
            fields: tp::btrfs::TRANSACTION_COMMIT,
        }],
    },
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "txn-btrfs",
        hook: "tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
        progs: &[
            TpProg {
                program: "fw_btrfs_transaction_commit",
                category: "btrfs",
                tracepoint: "btrfs_transaction_commit",
                fields: tp::btrfs::TRANSACTION_COMMIT,
            },
            TpProg {
                program: "fw_btrfs_space_reservation",
                category: "btrfs",
                tracepoint: "btrfs_space_reservation",
                fields: tp::btrfs::SPACE_RESERVATION,
            },
        ],
    },
    TpFeature {
        fexit_first: None,
        module_fexit: None,
        feature: "mounts",
        hook: "tracepoint:syscalls:mount",
        progs: &[
            TpProg {
                program: "fw_mount_enter",
                category: "syscalls",
                tracepoint: "sys_enter_mount",
                fields: tp::sys::MOUNT_ENTER,
            },
            TpProg {
                program: "fw_mount_exit",
                category: "syscalls",
                tracepoint: "sys_exit_mount",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_move_mount_enter",
                category: "syscalls",
                tracepoint: "sys_enter_move_mount",
                fields: tp::sys::MOVE_MOUNT_ENTER,
            },
            TpProg {
                program: "fw_move_mount_exit",
                category: "syscalls",
                tracepoint: "sys_exit_move_mount",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_fsopen_enter",
                category: "syscalls",
                tracepoint: "sys_enter_fsopen",
                fields: tp::sys::FSOPEN_ENTER,
            },
            TpProg {
                program: "fw_fsopen_exit",
                category: "syscalls",
                tracepoint: "sys_exit_fsopen",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_fsconfig_enter",
                category: "syscalls",
                tracepoint: "sys_enter_fsconfig",
                fields: tp::sys::FSCONFIG_ENTER,
            },
            TpProg {
                program: "fw_fsconfig_exit",
                category: "syscalls",
                tracepoint: "sys_exit_fsconfig",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_fsmount_enter",
                category: "syscalls",
                tracepoint: "sys_enter_fsmount",
                fields: tp::sys::FSMOUNT_ENTER,
            },
            TpProg {
                program: "fw_fsmount_exit",
                category: "syscalls",
                tracepoint: "sys_exit_fsmount",
                fields: tp::sys::EXIT,
            },
        ],
    },
    TpFeature {
        fexit_first: Some(("fw_vfs_write_exit", "vfs_write")),
        module_fexit: None,
        feature: "completed-writes",
        hook: "tracepoint:syscalls:write",
        progs: &[
            TpProg {
                program: "fw_write_enter",
                category: "syscalls",
                tracepoint: "sys_enter_write",
                fields: tp::sys::WRITE_ENTER,
            },
            TpProg {
                program: "fw_write_exit",
                category: "syscalls",
                tracepoint: "sys_exit_write",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_pwrite64_enter",
                category: "syscalls",
                tracepoint: "sys_enter_pwrite64",
                fields: tp::sys::WRITE_ENTER,
            },
            TpProg {
                program: "fw_pwrite64_exit",
                category: "syscalls",
                tracepoint: "sys_exit_pwrite64",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_writev_enter",
                category: "syscalls",
                tracepoint: "sys_enter_writev",
                fields: tp::sys::WRITE_ENTER,
            },
            TpProg {
                program: "fw_writev_exit",
                category: "syscalls",
                tracepoint: "sys_exit_writev",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_pwritev_enter",
                category: "syscalls",
                tracepoint: "sys_enter_pwritev",
                fields: tp::sys::WRITE_ENTER,
            },
            TpProg {
                program: "fw_pwritev_exit",
                category: "syscalls",
                tracepoint: "sys_exit_pwritev",
                fields: tp::sys::EXIT,
            },
            TpProg {
                program: "fw_pwritev2_enter",
                category: "syscalls",
                tracepoint: "sys_enter_pwritev2",
                fields: tp::sys::WRITE_ENTER,
            },
            TpProg {
                program: "fw_pwritev2_exit",
                category: "syscalls",
                tracepoint: "sys_exit_pwritev2",
                fields: tp::sys::EXIT,
            },
        ],
    },
];

/// What module programs need: each module's BTF (looked up once, before the object is loaded,
/// since its struct offsets go into it) and the programs attached so far, which `Loaded` keeps.
struct Modules<'a> {
    btf: std::collections::HashMap<&'static str, Result<FuncBtf<'a>, String>>,
    /// Every map's fd, for relocating the module programs (see `module_fexit::map_fds`).
    map_fds: Vec<(String, std::os::fd::OwnedFd)>,
    attached: Vec<module_fexit::Attached>,
}

fn attach_tracepoint_feature(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    spec: &TpFeature,
    modules: &mut Modules<'_>,
) -> ActiveHook {
    let mut fallbacks = Vec::new();
    let mut module_links = Vec::new();
    if let Some(m) = &spec.module_fexit {
        let name = spec.hook.split('+').next().unwrap_or(spec.hook);
        let tried = if !fentry_allowed() {
            Err("skipped (FREEZEWATCH_NO_FENTRY=1)".to_owned())
        } else {
            match modules.btf.get(m.module) {
                Some(Ok(target)) => module_fexit::attach_all(&modules.map_fds, OBJECT, target, m.progs),
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("the BTF of {} was not looked up", m.module)),
            }
        };
        match tried {
            Ok(links) => module_links = links,
            Err(e) => {
                return ActiveHook {
                    feature: spec.feature.into(),
                    hook: None,
                    fallbacks: vec![format!("{name}: {e}")],
                    limits: Some("unavailable: this feature records nothing".into()),
                };
            }
        }
    }
    if let Some((prog, func)) = spec.fexit_first {
        if !fentry_allowed() {
            fallbacks.push(format!("fexit:{func}: skipped (FREEZEWATCH_NO_FENTRY=1)"));
        } else {
            let attached = ebpf
                .program_mut(prog)
                .ok_or(ProgramError::UnexpectedProgramType)
                .and_then(<&mut FExit>::try_from)
                .and_then(|p| {
                    p.load(func, btf)?;
                    p.attach().map(|_| ())
                });
            match attached {
                Ok(()) => {
                    return ActiveHook {
                        feature: spec.feature.into(),
                        hook: Some(format!("fexit:{func}")),
                        fallbacks,
                        limits: None,
                    };
                }
                Err(e) => {
                    if let Some(p) = ebpf.program_mut(prog).and_then(|p| <&mut FExit>::try_from(p).ok()) {
                        let _ = p.unload();
                    }
                    fallbacks.push(format!("fexit:{func}: {}", chain(&e)));
                }
            }
        }
    }
    let result =
        spec.progs.iter().try_for_each(|TpProg { program: prog, category, tracepoint: tp, fields }| {
            crate::host::tpformat::check(category, tp, fields)?;
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| format!("program {prog} missing from the object"))?
                .try_into()
                .map_err(|e: ProgramError| chain(&e))?;
            p.load().map_err(|e| chain(&e))?;
            p.attach(category, tp).map_err(|e| chain(&e))?;
            Ok::<(), String>(())
        });
    let feature = spec.feature.to_owned();
    match result {
        Ok(()) => {
            modules.attached.append(&mut module_links);
            ActiveHook { feature, hook: Some(spec.hook.into()), fallbacks, limits: None }
        }
        Err(e) => {
            // Nothing of a feature that did not fully attach stays loaded.
            for TpProg { program, .. } in spec.progs {
                if let Some(p) = ebpf.program_mut(program).and_then(|p| <&mut TracePoint>::try_from(p).ok()) {
                    let _ = p.unload();
                }
            }
            fallbacks.push(format!("{}: {e}", spec.hook));
            ActiveHook {
                feature,
                hook: None,
                fallbacks,
                limits: Some("unavailable: this feature records nothing".into()),
            }
        }
    }
}

/// Whether to try fentry first. `FREEZEWATCH_NO_FENTRY=1` forces the tracepoint fallback, so that
/// the fallback can be tested on kernels where fentry works.
fn fentry_allowed() -> bool {
    std::env::var_os("FREEZEWATCH_NO_FENTRY").is_none_or(|v| v != "1")
}

impl Loaded {
    /// Checks privileges, resolves offsets, loads the object and attaches every feature; with
    /// `deny`, also the mount-denial programs (where they cannot attach, enforce mode is an
    /// error and audit mode records on, flagging mounts from the mount tracepoints instead).
    pub fn load(deny: Option<DenyMode>) -> Result<Self, LoadError> {
        if let Some(missing) = kernel::Privileges::current().missing() {
            return Err(LoadError::Privileges(missing));
        }
        kernel::ensure_tracefs().map_err(LoadError::Tracefs)?;
        let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
        let mut offsets = offsets::resolve(&btf)?;
        let btrfs = module_fexit::btrfs(&btf, &mut offsets);
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| LoadError::Btf(std::io::Error::other(e)))?;
        let deny_raw = deny.map_or(freeze_common::deny::OFF, DenyMode::raw);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global("OFFSETS", &offsets, true)
            .override_global("DENY_MODE", &deny_raw, true)
            .load(OBJECT)?;
        let mut modules = Modules {
            btf: [("btrfs", btrfs)].into_iter().collect(),
            map_fds: module_fexit::map_fds(&ebpf),
            attached: Vec::new(),
        };
        // The logger owns the AYA_LOGS map: it must outlive the programs that write to it.
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|e| log::debug!("eBPF logging unavailable: {e}"))
            .ok();

        let mut fallbacks = Vec::new();
        let freeze_hook = if !fentry_allowed() {
            fallbacks.push("fentry/fexit freeze_super: skipped (FREEZEWATCH_NO_FENTRY=1)".to_owned());
            None
        } else {
            match attach_fentry(&mut ebpf, &aya_btf) {
                Ok(()) => Some(Hook::FentryFreezeSuper),
                Err(e) => {
                    detach_fentry(&mut ebpf);
                    fallbacks.push(format!("fentry/fexit freeze_super: {}", chain(&e)));
                    None
                }
            }
        };
        let freeze_hook = match freeze_hook {
            Some(h) => h,
            None => match attach_ioctl_tracepoints(&mut ebpf) {
                Ok(()) => Hook::TracepointIoctl,
                Err(e) => {
                    fallbacks.push(format!("tracepoint syscalls:sys_*_ioctl: {}", chain(&e)));
                    return Err(LoadError::NoHook { feature: "freeze", reasons: fallbacks.join("; ") });
                }
            },
        };
        let limits = (freeze_hook == Hook::TracepointIoctl).then(|| {
            "sees FIFREEZE/FITHAW ioctls only; kernel-internal freezes (block-device freeze, \
             device-mapper, suspend) are not seen"
                .to_owned()
        });
        let hook_name = Some(freeze_hook.as_str().to_owned());
        let mut hooks = vec![ActiveHook { feature: "freeze".into(), hook: hook_name, fallbacks, limits }];
        for spec in TRACEPOINT_FEATURES {
            // Entries of one feature stand in a row, best first: the first that attaches wins,
            // and the reasons the earlier ones failed are kept as its fallbacks.
            if let Some(last) = hooks.last_mut().filter(|h| h.feature == spec.feature) {
                if last.hook.is_none() {
                    let mut next = attach_tracepoint_feature(&mut ebpf, &aya_btf, spec, &mut modules);
                    let mut fallbacks = std::mem::take(&mut last.fallbacks);
                    fallbacks.append(&mut next.fallbacks);
                    next.fallbacks = fallbacks;
                    *last = next;
                }
                continue;
            }
            hooks.push(attach_tracepoint_feature(&mut ebpf, &aya_btf, spec, &mut modules));
        }
        let mut denying = false;
        if let Some(mode) = deny {
            match attach_lsm(&mut ebpf, &aya_btf) {
                Ok(()) => {
                    denying = true;
                    hooks.push(ActiveHook {
                        feature: "mount-denial".into(),
                        hook: Some("lsm:sb_kern_mount+sb_mount+move_mount".into()),
                        fallbacks: Vec::new(),
                        limits: Some(
                            "bind mounts are matched by their source path: relative sources and \
                             paths through symlinks are allowed"
                                .into(),
                        ),
                    });
                }
                Err(e) if mode == DenyMode::Enforce => return Err(LoadError::DenyUnavailable(e)),
                Err(e) => hooks.push(ActiveHook {
                    feature: "mount-denial".into(),
                    hook: None,
                    fallbacks: vec![e],
                    limits: Some(
                        "nothing is denied; mounts of frozen filesystems are flagged from the mount \
                         tracepoints (mount-while-frozen)"
                            .into(),
                    ),
                }),
            }
        }
        Ok(Self {
            _module_programs: modules.attached,
            ebpf,
            logger,
            offsets,
            hooks,
            freeze_hook,
            denying,
            mount_paths: Vec::new(),
        })
    }

    /// Writes the mount points (for matching bind-mount sources) into the kernel, when the
    /// mount-denial programs are attached. Only changes are written.
    pub fn refresh_mount_paths(&mut self, mounts: &[crate::host::mountinfo::Mount]) {
        if !self.denying {
            return;
        }
        let keys = crate::bpf::mount_paths::path_keys(mounts);
        if keys == self.mount_paths {
            return;
        }
        let Some(map) = self.ebpf.map_mut("MOUNT_PATHS") else { return };
        let Ok(mut trie) = aya::maps::LpmTrie::<_, [u8; freeze_common::PATH_KEY_BYTES], u32>::try_from(map)
        else {
            return;
        };
        for old in self.mount_paths.iter().filter(|k| !keys.iter().any(|n| n.data == k.data)) {
            let _ = trie.remove(&aya::maps::lpm_trie::Key::new(old.prefix_bits, old.data));
        }
        for k in &keys {
            if let Err(e) = trie.insert(&aya::maps::lpm_trie::Key::new(k.prefix_bits, k.data), k.kdev, 0) {
                log::warn!("mount-denial: cannot add a mount point: {e}");
            }
        }
        self.mount_paths = keys;
    }

    /// Takes the ring buffer out (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        RingBuf::try_from(self.ebpf.take_map("EVENTS")?).ok()
    }

    /// Tells the programs which block devices belong to which btrfs filesystem (see btrfs_devs).
    /// Returns how many aliases are now known.
    pub fn refresh_btrfs_aliases(&mut self, mounts: &[crate::host::mountinfo::Mount]) -> usize {
        let pairs = crate::host::btrfs_devs::aliases(std::path::Path::new("/sys/fs/btrfs"), mounts);
        let Some(map) = self.ebpf.map_mut("BDEV_ALIAS") else { return 0 };
        let Ok(mut alias) = aya::maps::HashMap::<_, u32, u32>::try_from(map) else { return 0 };
        let kdev = |(ma, mi): (u32, u32)| (ma << 20) | mi;
        pairs.iter().filter(|(member, fs)| alias.insert(kdev(*member), kdev(*fs), 0).is_ok()).count()
    }

    /// Takes the eBPF log reader out (once); keep it alive as long as `self`.
    pub fn take_logger(&mut self) -> Option<Logger> {
        self.logger.take()
    }

    /// The kernel stack stored under `stack_id` (as carried in events: id + 1), innermost first.
    pub fn stack(&self, stack_id: u32) -> Option<Vec<u64>> {
        let id = stack_id.checked_sub(1)?;
        let map = self.ebpf.map("STACKS")?;
        let stacks = aya::maps::StackTraceMap::try_from(map).ok()?;
        let trace = stacks.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).filter(|ip| *ip != 0).collect())
    }

    /// Per-hook hit counts, by hook name; hooks that never ran are left out.
    fn hook_hits(&self) -> std::collections::BTreeMap<String, u64> {
        let Some(array) = self.ebpf.map("HOOK_HITS").and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
        else {
            return Default::default();
        };
        (0..freeze_common::hook::COUNT)
            .filter_map(|id| {
                let hits: u64 = array.get(&id, 0).map(|v| v.iter().sum()).unwrap_or(0);
                let hook = Hook::from_raw(id)?;
                let name = hook.as_str().to_owned();
                (hits > 0).then_some((name, hits))
            })
            .collect()
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Counters {
        let Some(map) = self.ebpf.map("COUNTERS") else { return Counters::default() };
        let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else { return Counters::default() };
        let read = |slot: u32| -> u64 { array.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        Counters {
            lost_ringbuf_full: read(counter::RINGBUF_FULL),
            lost_undecodable: 0,
            read_failed: read(counter::READ_FAILED),
            pending_full: read(counter::PENDING_FULL),
            ioctl_seen: read(counter::IOCTL_SEEN),
            fentry_seen: read(counter::FENTRY_SEEN),
            filtered: read(counter::FILTERED),
            watch_full: read(counter::WATCH_FULL),
            hook_hits: self.hook_hits(),
        }
    }
}
