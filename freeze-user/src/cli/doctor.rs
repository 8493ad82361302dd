//! `freezewatch doctor`: what this kernel offers, what freezewatch will use, and what is missing.
use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    bpf::loader::Loaded,
    bpf::program_types::{self, ProbeResult, Status},
    host::btf::Btf,
    host::kernel::{self, Privileges},
    host::offsets,
};
use freeze_model::{coverage::Feature, deny::DenyMode, trace::ActiveHook};

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub btf: Result<usize, String>,
    pub privileges: Privileges,
    pub tracefs: Result<String, String>,
    pub lsms: Result<Vec<String>, String>,
    pub bpf_lsm_listed: bool,
    pub program_types: Vec<ProbeResult>,
    pub offsets: Result<freeze_common_offsets::Offsets, String>,
    /// How many kernel text symbols `/proc/kallsyms` gives, or why it gives none: without them
    /// stacks are bare addresses and the caller-based exemptions (xfs's empty transactions) miss,
    /// which makes false slips. Recording still works.
    pub kernel_symbols: Result<usize, String>,
    /// What a real load of freezewatch's programs attached, per feature.
    pub features: Result<Vec<ActiveHook>, String>,
    /// The hook `watch`'s level probe attached with (what tells a filesystem frozen before it
    /// started), `None` when none did.
    pub level_probe: Result<Option<String>, String>,
    /// The storage layers under filesystems this kernel can map, and the maps of what is mounted.
    pub storage: Result<freeze_model::storage::StorageCoverage, String>,
    /// Whether `freezewatch record` can run here.
    pub can_record: bool,
    pub problems: Vec<String>,
}

/// `KernelOffsets` as JSON (freeze-common stays free of serde), by `offsets::FIELDS`' names.
mod freeze_common_offsets {
    #[derive(Debug, serde::Serialize)]
    pub struct Offsets(pub std::collections::BTreeMap<&'static str, u32>);

    impl From<freeze_common::KernelOffsets> for Offsets {
        fn from(o: freeze_common::KernelOffsets) -> Self {
            let shown = crate::host::offsets::FIELDS.iter().filter_map(|f| {
                let v = (f.get)(&o);
                (!f.optional || v != 0).then_some((f.name, v))
            });
            Offsets(shown.collect())
        }
    }
}

/// `freezewatch doctor`: exit 0 when recording can work here, 1 otherwise.
pub fn command(json: bool) -> super::exit::Outcome {
    let report = run();
    if json {
        super::args::print_json(&report)?;
    } else {
        print!("{}", report.human());
    }
    Ok(if report.can_record { super::exit::Exit::Ok } else { super::exit::Exit::Failed })
}

pub fn run() -> Report {
    let mut problems = Vec::new();
    let privileges = Privileges::current();
    if let Some(m) = privileges.missing() {
        problems.push(m);
    }
    let btf = Btf::from_sys_fs();
    let btf_status = btf.as_ref().map(Btf::len).map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"));
    let offsets = match &btf {
        Ok(b) => offsets::resolve(b)
            .map(|mut o| {
                // Best effort, as when recording: without a module's BTF only its hooks are
                // missing, which the features section reports.
                let _ = crate::bpf::module_fexit::modules(b, &mut o);
                o.into()
            })
            .map_err(|e| e.to_string()),
        Err(_) => Err("needs kernel BTF".to_owned()),
    };
    let kernel_symbols = kernel_symbols();
    let tracefs = kernel::ensure_tracefs()
        .map(|mounted| {
            if mounted { format!("{} (mounted it now)", kernel::TRACEFS) } else { kernel::TRACEFS.to_owned() }
        })
        .map_err(|e| format!("{} not mounted and mount failed: {e}", kernel::TRACEFS));
    let lsms = kernel::active_lsms().map_err(|e| format!("cannot read the LSM list: {e}"));
    let bpf_lsm_listed = lsms.as_ref().is_ok_and(|l| l.iter().any(|s| s == "bpf"));
    let program_types = program_types::probe_all(btf.as_ref().ok());
    let tracepoint_ok =
        program_types.iter().any(|p| p.program_type == "tracepoint" && p.status == Status::Ok);

    let features = if privileges.missing().is_some() {
        Err("not tried: needs privileges".to_owned())
    } else {
        // Audit mode: the mount-denial programs are tried (and reported) but never refuse anything.
        Loaded::load(Some(DenyMode::Audit))
            .map(|mut l| {
                let mounts = crate::host::mountinfo::MountTable::load().all();
                l.refresh_storage(&mounts, &crate::host::btrfs_devs::on_this_system(&mounts));
                let probe = l.level_probe.as_ref().map(|p| p.hook().as_str().to_owned());
                (l.hooks.clone(), l.storage.coverage(), probe)
            })
            .map_err(|e| e.to_string())
    };
    let (features, storage, level_probe) = match features {
        Ok((hooks, storage, probe)) => (Ok(hooks), Ok(storage), Ok(probe)),
        Err(e) => (Err(e.clone()), Err(e.clone()), Err(e)),
    };
    if let Err(e) = &btf_status {
        problems.push(format!("kernel BTF unreadable: {e}"));
    }
    if let Err(e) = &offsets {
        problems.push(format!("offsets: {e}"));
    }
    if let Err(e) = &tracefs {
        problems.push(e.clone());
    }
    if !tracepoint_ok && privileges.missing().is_none() {
        problems.push("tracepoint programs are refused: the recorder has no fallback left".into());
    }
    if let Err(e) = &features {
        problems.push(format!("loading freezewatch's programs: {e}"));
    }
    let can_record = features.is_ok() && problems.is_empty();
    Report {
        kernel: kernel::release(),
        btf: btf_status,
        privileges,
        tracefs,
        lsms,
        bpf_lsm_listed,
        program_types,
        offsets,
        kernel_symbols,
        features,
        level_probe,
        storage,
        can_record,
        problems,
    }
}

/// `Report::kernel_symbols`.
fn kernel_symbols() -> Result<usize, String> {
    let syms = crate::host::ksyms::Ksyms::load();
    if !syms.is_empty() {
        return Ok(syms.len());
    }
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .map_or("?".into(), |v| v.trim().to_owned())
    };
    Err(format!(
        "/proc/kallsyms gives no addresses (kernel.kptr_restrict {}, kernel.perf_event_paranoid {}): it \
         needs CAP_SYSLOG here (a service: add it to CapabilityBoundingSet, without ProtectKernelLogs); \
         stacks stay addresses and caller-based exemptions miss (false slips)",
        sysctl("kptr_restrict"),
        sysctl("perf_event_paranoid")
    ))
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "FAIL" }
}

impl Report {
    /// How to get `--deny-mounts=enforce` working, when it cannot work here.
    fn deny_mounts_advice(&self) -> String {
        let lsm_refused =
            self.program_types.iter().any(|p| p.program_type == "lsm" && p.status == Status::Refused);
        if !self.bpf_lsm_listed {
            let list = self.lsms.as_ref().map(|l| l.join(",")).unwrap_or_else(|_| "...".into());
            format!(
                "--deny-mounts needs the BPF LSM: boot with lsm={list},bpf on the kernel command \
                 line (CONFIG_BPF_LSM=y); until then only --deny-mounts=audit runs, flagging instead of denying"
            )
        } else if lsm_refused {
            "--deny-mounts needs BPF LSM programs, which this host refuses (a hypervisor or lockdown \
             policy); only --deny-mounts=audit runs here, flagging instead of denying"
                .into()
        } else {
            "--deny-mounts=enforce will fail here for the reason above; --deny-mounts=audit runs".into()
        }
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "freezewatch doctor — kernel {}", self.kernel);
        let _ = writeln!(s);
        self.human_checks(&mut s);
        self.human_program_types(&mut s);
        self.human_offsets(&mut s);
        self.human_features(&mut s);
        self.human_storage(&mut s);
        self.human_verdict(&mut s);
        s
    }

    /// BTF, privileges, tracefs, kernel symbols and the LSMs, one line each.
    fn human_checks(&self, s: &mut String) {
        match &self.btf {
            Ok(n) => _ = writeln!(s, "  [ok  ] kernel BTF: {n} types"),
            Err(e) => _ = writeln!(s, "  [FAIL] kernel BTF: {e}"),
        }
        let p = &self.privileges;
        let _ = writeln!(
            s,
            "  [{}] privileges: euid {}, CAP_SYS_ADMIN {}, CAP_BPF {}, CAP_PERFMON {}",
            mark(p.missing().is_none()),
            p.euid,
            p.cap_sys_admin,
            p.cap_bpf,
            p.cap_perfmon
        );
        match &self.tracefs {
            Ok(t) => _ = writeln!(s, "  [ok  ] tracefs: {t}"),
            Err(e) => _ = writeln!(s, "  [FAIL] tracefs: {e}"),
        }
        match &self.kernel_symbols {
            Ok(n) => _ = writeln!(s, "  [ok  ] kernel symbols: {n}"),
            Err(e) => _ = writeln!(s, "  [WARN] kernel symbols: {e}"),
        }
        match &self.lsms {
            Ok(l) => {
                let _ = writeln!(s, "  [info] active LSMs: {}", l.join(","));
                let _ = writeln!(
                    s,
                    "  [info] BPF LSM {} the list{}",
                    if self.bpf_lsm_listed { "is in" } else { "is NOT in" },
                    if self.bpf_lsm_listed {
                        ""
                    } else {
                        " (boot with lsm=...,bpf on the kernel command line to enable it)"
                    }
                );
            }
            Err(e) => _ = writeln!(s, "  [info] {e}"),
        }
    }

    /// What each program type did when a trivial program of it was loaded.
    fn human_program_types(&self, s: &mut String) {
        let _ = writeln!(s, "\nprogram types (probed by loading a trivial program):");
        for p in &self.program_types {
            let tag = match p.status {
                Status::Ok => "ok     ",
                Status::Refused => "REFUSED",
                Status::Unavailable => "n/a    ",
            };
            let _ = writeln!(s, "  [{tag}] {:<15} {}", p.program_type, p.detail);
        }
        if self.program_types.iter().any(|p| p.program_type == "lsm" && p.status == Status::Refused)
            && self.bpf_lsm_listed
        {
            let _ = writeln!(
                s,
                "  note: BPF LSM is listed but LSM programs are refused: the host forbids them \
                 (a hypervisor or lockdown policy), not the boot command line."
            );
        }
    }

    /// Every offset the programs read, as resolved here.
    fn human_offsets(&self, s: &mut String) {
        let _ = writeln!(s, "\nstruct offsets from BTF:");
        match &self.offsets {
            Ok(o) => {
                for (k, v) in &o.0 {
                    let _ = writeln!(s, "  {k:<38} {v}");
                }
            }
            Err(e) => _ = writeln!(s, "  FAIL: {e}"),
        }
    }

    /// The hook each feature attached, the fallbacks passed over, and their limits.
    fn human_features(&self, s: &mut String) {
        let _ = writeln!(s, "\nfeatures (what a real load attached):");
        match &self.features {
            Ok(hooks) => {
                for h in hooks {
                    let _ = writeln!(s, "  {:<17} {}", h.feature, h.hook.as_deref().unwrap_or("NONE"));
                    for f in &h.fallbacks {
                        let _ = writeln!(s, "  {:<17}   not used: {f}", "");
                    }
                    if let Some(l) = &h.limits {
                        let _ = writeln!(s, "  {:<17}   limits: {l}", "");
                    }
                }
                if hooks.iter().any(|h| h.feature == Feature::MountDenial.as_str() && h.hook.is_none()) {
                    let _ = writeln!(s, "  {:<17}   {}", "", self.deny_mounts_advice());
                }
                let probe = match &self.level_probe {
                    Ok(Some(hook)) => hook.as_str(),
                    _ => "NONE (watch cannot tell a filesystem frozen before it started)",
                };
                let _ = writeln!(s, "  {:<17} {probe} (watch's level probe, at start)", "level-probe");
            }
            Err(e) => _ = writeln!(s, "  FAIL: {e}"),
        }
    }

    /// Which storage layers are mapped, and the maps under each mounted filesystem.
    fn human_storage(&self, s: &mut String) {
        let _ = writeln!(s, "\nstorage layers (a write below the filesystem is a slip where it is mapped):");
        match &self.storage {
            Ok(c) => {
                for l in &c.layers {
                    let _ = writeln!(
                        s,
                        "  [{}] {:<20} {}",
                        if l.available { "ok  " } else { "n/a " },
                        l.layer.as_str(),
                        l.detail
                    );
                }
                for u in &c.unmapped {
                    let _ = writeln!(s, "  not mapped: {u}");
                }
                for m in &c.maps {
                    let lower: Vec<String> = m
                        .mappings
                        .iter()
                        .map(|l| {
                            format!("{} {}", l.layer, l.file.as_deref().unwrap_or_else(|| l.device_name()))
                        })
                        .collect();
                    let _ = writeln!(s, "  mounted {}: {}", m.fs_dev, lower.join(", "));
                    for limit in &m.limits {
                        let _ = writeln!(s, "  mounted {}:   limit: {limit}", m.fs_dev);
                    }
                }
            }
            Err(e) => _ = writeln!(s, "  FAIL: {e}"),
        }
    }

    /// Whether freezewatch can record here, and if not why.
    fn human_verdict(&self, s: &mut String) {
        let _ = writeln!(s);
        if self.can_record {
            let _ = writeln!(s, "verdict: freezewatch can record on this machine.");
        } else {
            let _ = writeln!(s, "verdict: freezewatch cannot record here:");
            for p in &self.problems {
                let _ = writeln!(s, "  - {p}");
            }
        }
    }
}
