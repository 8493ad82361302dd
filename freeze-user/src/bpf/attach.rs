//! One way to attach an attempt of a feature, one way to unload it, one error type that says why
//! an attempt failed (and whether the kernel refused it, without reading error text).
use aya::{
    Ebpf,
    programs::{BtfTracePoint, FEntry, FExit, Iter, Lsm, ProgramError, RawTracePoint, TracePoint},
};

use super::{
    features::{Attempt, BtfTpProg, Programs, RawTpProg, TpProg, TracingProg},
    module_fexit::{self, FuncBtf},
};
use crate::host::{kernel, tpformat};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("skipped (FREEZEWATCH_NO_FENTRY=1)")]
    TracingDisabled,
    #[error("skipped (FREEZEWATCH_SKIP_HOOKS)")]
    Skipped,
    /// The kernel's types are not what the programs read (see `features::Need`).
    #[error("{0}")]
    Unmet(String),
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("{0}")]
    Format(String),
    #[error("{what}: {}", chain(source))]
    Program {
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error("{0}")]
    Module(String),
    #[error(
        "the BPF LSM is not active (/sys/kernel/security/lsm: {0}); boot with lsm={0},bpf on the \
         kernel command line"
    )]
    LsmInactive(String),
    #[error("cannot read the active LSMs: {0}")]
    LsmList(std::io::Error),
    #[error("cannot enable the syscall dispatcher's handlers: {0}")]
    SyscallFeatures(#[source] aya::maps::MapError),
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("{what}: {}", chain(source))]
    Link {
        what: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
}

impl AttachError {
    /// Whether the kernel refused to load the program with EPERM (hosts that forbid a program
    /// type answer so, with an empty verifier log).
    pub fn refused(&self) -> bool {
        let io = match self {
            Self::Program { source: ProgramError::LoadError { io_error, .. }, .. } => io_error,
            Self::Program { source: ProgramError::SyscallError(e), .. } => &e.io_error,
            _ => return false,
        };
        io.raw_os_error() == Some(libc::EPERM)
    }
}

/// Formats an error with its sources, which is where aya puts the errno and the verifier log.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
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
    // Verifier logs can be long; keep the first line, which names the call and errno, and the
    // log's last lines, where the verifier says why it refused; drop aya's "Verifier output:"
    // label when the log is empty (as it is for EPERM).
    let mut lines = s.lines().map(str::trim_end).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let first = first.strip_suffix("Verifier output:").unwrap_or(first).trim_end().trim_end_matches('.');
    let rest: Vec<&str> = lines.collect();
    match rest.len() {
        0 => first.to_owned(),
        n => format!("{first} [...] {}", rest[n.saturating_sub(VERIFIER_LINES_KEPT)..].join(" | ")),
    }
}

/// The verifier log's last lines kept in an attach error.
const VERIFIER_LINES_KEPT: usize = 5;

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(AttachError::MissingProgram(name))?;
    prog.try_into().map_err(|source| AttachError::Program { what: name.into(), source })
}

fn failed(what: String) -> impl FnOnce(ProgramError) -> AttachError {
    move |source| AttachError::Program { what, source }
}

/// Links taken out of their programs, so that they can be detached all at once, on many
/// threads (in Drop): a tracepoint's perf-event link waits for RCU grace periods to detach
/// (35 ms each on 6.18: docs/benchmarks.md, "start and stop"), though the kernel does those one
/// at a time whatever the threads.
#[derive(Default)]
pub struct Links {
    links: Vec<Box<dyn Send>>,
    /// The `syscall_feature` bits enabled, once the syscall dispatcher is attached.
    syscall_features: Option<u32>,
}

impl Links {
    fn push(&mut self, link: impl Send + 'static) {
        self.links.push(Box::new(link));
    }
}

impl Drop for Links {
    /// Detaches every link, each on a thread of its own, and returns when all are detached.
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|s| {
            for link in links {
                s.spawn(move || drop(link));
            }
        });
    }
}

fn attach_tracing(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    progs: &[TracingProg],
    links: &mut Links,
) -> Result<(), AttachError> {
    for p in progs {
        let kind = if p.exit { "fexit" } else { "fentry" };
        let what = format!("{kind}:{}", p.function);
        if p.exit {
            let prog: &mut FExit = program(ebpf, p.program)?;
            prog.load(p.function, btf).map_err(failed(what.clone()))?;
            let id = prog.attach().map_err(failed(what.clone()))?;
            links.push(prog.take_link(id).map_err(failed(what))?);
        } else {
            let prog: &mut FEntry = program(ebpf, p.program)?;
            prog.load(p.function, btf).map_err(failed(what.clone()))?;
            let id = prog.attach().map_err(failed(what.clone()))?;
            links.push(prog.take_link(id).map_err(failed(what))?);
        }
    }
    Ok(())
}

/// How the level probe attached (`watch` asks it for the levels of the filesystems it finds
/// mounted at start).
#[derive(Debug)]
pub enum LevelProbe {
    /// The `task_file` iterator (hook `iter:task_file`), no syscall hook: reading this file once
    /// reports the level of every directory freezewatch holds open.
    Iterator(std::fs::File),
    /// An FIGETBSZ ioctl by freezewatch reports the level of its fd's filesystem, seen by this
    /// hook (the syscall dispatcher, or the ioctl tracepoint).
    Ioctl(freeze_model::event::Hook),
}

impl LevelProbe {
    /// The hook the probe's events carry.
    pub fn hook(&self) -> freeze_model::event::Hook {
        match self {
            Self::Iterator(_) => freeze_model::event::Hook::IterTaskFile,
            Self::Ioctl(hook) => *hook,
        }
    }
}

/// Attaches the level probe: the `task_file` iterator where tracing programs are `allowed` (and
/// load), else the syscall dispatcher's ioctl probe, or else its tracepoint
/// (`features::LEVEL_PROBE`).
pub fn attach_level_probe(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    links: &mut Links,
    tracing_allowed: bool,
) -> Result<LevelProbe, AttachError> {
    use freeze_model::event::Hook;
    if tracing_allowed {
        match attach_level_iterator(ebpf, btf) {
            Ok(file) => return Ok(LevelProbe::Iterator(file)),
            Err(e) => log::debug!("the level probe's iterator: {e}"),
        }
    }
    attach_syscalls(ebpf, btf, freeze_common::syscall_feature::LEVEL_PROBE, links)
        .map(|()| LevelProbe::Ioctl(Hook::TpBtfSysIoctl))
        .inspect_err(|e| log::debug!("the dispatcher's level probe: {e:?}"))
        .or_else(|_| {
            attach_tracepoints(ebpf, std::slice::from_ref(&super::features::LEVEL_PROBE), links)
                .map(|()| LevelProbe::Ioctl(Hook::TracepointIoctl))
        })
}

/// Loads and attaches the `task_file` iterator, and opens the one read of it `watch` makes: the
/// file holds the link (and so the program) until it is closed.
fn attach_level_iterator(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<std::fs::File, AttachError> {
    const WHAT: &str = "iter:task_file";
    let prog: &mut Iter = program(ebpf, freeze_common::names::LEVEL_ITER_PROGRAM)?;
    prog.load("task_file", btf).map_err(failed(WHAT.into()))?;
    let id = prog.attach().map_err(failed(WHAT.into()))?;
    let link = prog.take_link(id).map_err(failed(WHAT.into()))?;
    link.into_file().map_err(|source| AttachError::Link { what: WHAT, source })
}

/// Points the syscall dispatcher at the syscalls of `feature` (a `syscall_feature` bit),
/// attaching it first if no feature has yet. Its links go to `links` itself: they stay for as
/// long as any feature uses them.
fn attach_syscalls(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    feature: u32,
    links: &mut Links,
) -> Result<(), AttachError> {
    let enabled = match links.syscall_features {
        Some(bits) => bits,
        None => {
            let mut own = Links::default();
            let dispatcher = super::features::SYSCALL_DISPATCHER;
            attach_btf_tracepoints(ebpf, btf, dispatcher, &mut own)
                .inspect_err(|_| unload_programs(ebpf, dispatcher.iter().map(|p| p.program)))?;
            links.links.append(&mut own.links);
            0
        }
    };
    links.syscall_features = Some(enabled);
    let name = freeze_common::names::SYSCALL_FEATURES;
    let map = ebpf.map_mut(name).ok_or(AttachError::MissingMap(name))?;
    let mut bits = aya::maps::Array::<_, u32>::try_from(map).map_err(AttachError::SyscallFeatures)?;
    bits.set(0, enabled | feature, 0).map_err(AttachError::SyscallFeatures)?;
    links.syscall_features = Some(enabled | feature);
    Ok(())
}

fn attach_tracepoints(ebpf: &mut Ebpf, progs: &[TpProg], links: &mut Links) -> Result<(), AttachError> {
    for p in progs {
        tpformat::check(p.category, p.tracepoint, p.fields).map_err(AttachError::Format)?;
        let what = format!("{}:{}", p.category, p.tracepoint);
        let prog: &mut TracePoint = program(ebpf, p.program)?;
        prog.load().map_err(failed(what.clone()))?;
        let id = prog.attach(p.category, p.tracepoint).map_err(failed(what.clone()))?;
        links.push(prog.take_link(id).map_err(failed(what))?);
    }
    Ok(())
}

fn attach_btf_tracepoints(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    progs: &[BtfTpProg],
    links: &mut Links,
) -> Result<(), AttachError> {
    for p in progs {
        let what = format!("tp_btf:{}", p.tracepoint);
        let prog: &mut BtfTracePoint = program(ebpf, p.program)?;
        prog.load(p.tracepoint, btf).map_err(failed(what.clone()))?;
        let id = prog.attach().map_err(failed(what.clone()))?;
        links.push(prog.take_link(id).map_err(failed(what))?);
    }
    Ok(())
}

fn attach_raw_tracepoints(
    ebpf: &mut Ebpf,
    progs: &[RawTpProg],
    links: &mut Links,
) -> Result<(), AttachError> {
    for p in progs {
        let what = format!("raw_tracepoint:{}", p.tracepoint);
        let prog: &mut RawTracePoint = program(ebpf, p.program)?;
        prog.load().map_err(failed(what.clone()))?;
        let id = prog.attach(p.tracepoint).map_err(failed(what.clone()))?;
        links.push(prog.take_link(id).map_err(failed(what))?);
    }
    Ok(())
}

/// BPF LSM programs attach even where the BPF LSM is not active, and then never run: the active
/// list is checked first.
fn attach_lsm(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    progs: &[super::features::LsmProg],
    links: &mut Links,
) -> Result<(), AttachError> {
    let active = kernel::active_lsms().map_err(AttachError::LsmList)?;
    if !active.iter().any(|l| l == "bpf") {
        return Err(AttachError::LsmInactive(active.join(",")));
    }
    for p in progs {
        let what = format!("lsm:{}", p.hook);
        let prog: &mut Lsm = program(ebpf, p.program)?;
        prog.load(p.hook, btf).map_err(failed(what.clone()))?;
        let id = prog.attach().map_err(failed(what.clone()))?;
        links.push(prog.take_link(id).map_err(failed(what))?);
    }
    Ok(())
}

/// Module BTF objects (looked up once, before the object is loaded, since their struct offsets go
/// into it), every map's fd for relocating module programs, and the module programs attached.
pub struct Modules<'a> {
    pub btf: std::collections::HashMap<&'static str, Result<FuncBtf<'a>, String>>,
    pub map_fds: Vec<(String, std::os::fd::OwnedFd)>,
    pub attached: Vec<module_fexit::Attached>,
}

impl Modules<'_> {
    /// The BTF `module`'s programs attach with (and its offsets were resolved from), or why not.
    fn btf_of(&self, module: &str) -> Result<&FuncBtf<'_>, String> {
        match self.btf.get(module) {
            Some(Ok(target)) => Ok(target),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("the BTF of {module} was not looked up")),
        }
    }
}

/// Attaches every program of `attempt` (their links go to `links`), or none: on failure what was
/// attached is detached and what was loaded unloaded again.
pub fn attach(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    modules: &mut Modules<'_>,
    attempt: &Attempt,
    tracing_allowed: bool,
    links: &mut Links,
) -> Result<(), AttachError> {
    if attempt.programs.is_tracing() && !tracing_allowed {
        return Err(AttachError::TracingDisabled);
    }
    // This attempt's links: dropped (detached) here if it fails half way.
    let mut own = Links::default();
    let result = match &attempt.programs {
        Programs::Tracing(progs) => attach_tracing(ebpf, btf, progs, &mut own),
        Programs::Tracepoints(progs) => attach_tracepoints(ebpf, progs, &mut own),
        Programs::BtfTracepoints(progs) => attach_btf_tracepoints(ebpf, btf, progs, &mut own),
        Programs::Lsm(progs) => attach_lsm(ebpf, btf, progs, &mut own),
        Programs::RawTracepoints { module, progs } => {
            module.map_or(Ok(()), |m| modules.btf_of(m).map(drop)).map_err(AttachError::Module)?;
            attach_raw_tracepoints(ebpf, progs, &mut own)
        }
        // Shared by the features that choose it: attached into `links` itself.
        Programs::Syscalls(feature) => attach_syscalls(ebpf, btf, *feature, links),
        Programs::ModuleFexit { module, progs, then } => {
            let pairs: Vec<(&str, &str)> = progs.iter().map(|p| (p.program, p.function)).collect();
            let links = modules
                .btf_of(module)
                .and_then(|target| module_fexit::attach_all(&modules.map_fds, super::OBJECT, target, &pairs))
                .map_err(AttachError::Module)?;
            // Module links detach when dropped: kept only when the rest attaches too.
            attach_tracepoints(ebpf, then, &mut own).map(|()| modules.attached.extend(links))
        }
    };
    match result {
        Ok(()) => links.links.append(&mut own.links),
        Err(_) => {
            drop(own);
            unload(ebpf, attempt);
        }
    }
    result
}

/// Unloads every program of `attempt` loaded through aya (which detaches their links); programs
/// that were never loaded are passed over.
pub fn unload(ebpf: &mut Ebpf, attempt: &Attempt) {
    // The dispatcher is shared: unloaded by attach_syscalls when it fails to attach, never for a
    // feature. Module programs were loaded outside aya: aya passes over them.
    if !matches!(attempt.programs, Programs::Syscalls(_)) {
        unload_programs(ebpf, attempt.programs.names());
    }
}

/// Unloads the programs named (which detaches their links), passing over those never loaded.
fn unload_programs(ebpf: &mut Ebpf, names: impl IntoIterator<Item = &'static str>) {
    for name in names {
        let Some(prog) = ebpf.program_mut(name) else { continue };
        // Errors mean it was never loaded.
        let _ = match prog {
            aya::programs::Program::FEntry(p) => p.unload(),
            aya::programs::Program::FExit(p) => p.unload(),
            aya::programs::Program::TracePoint(p) => p.unload(),
            aya::programs::Program::BtfTracePoint(p) => p.unload(),
            aya::programs::Program::Lsm(p) => p.unload(),
            aya::programs::Program::RawTracePoint(p) => p.unload(),
            _ => Ok(()),
        };
    }
}
