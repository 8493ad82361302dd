//! One way to attach an attempt of a feature, one way to unload it, one error type that says why
//! an attempt failed (and whether the kernel refused it, without reading error text).
use aya::{
    Ebpf,
    programs::{FEntry, FExit, Lsm, ProgramError, TracePoint},
};

use super::{
    features::{Attempt, Programs, TpProg, TracingProg},
    module_fexit::{self, FuncBtf},
};
use crate::host::{kernel, tpformat};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("skipped (FREEZEWATCH_NO_FENTRY=1)")]
    TracingDisabled,
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("{0}")]
    Format(String),
    #[error("{what}: {}", super::loader::chain(source))]
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

fn attach_tracing(ebpf: &mut Ebpf, btf: &aya::Btf, progs: &[TracingProg]) -> Result<(), AttachError> {
    for p in progs {
        let kind = if p.exit { "fexit" } else { "fentry" };
        let what = format!("{kind}:{}", p.function);
        if p.exit {
            let prog: &mut FExit = program(ebpf, p.program)?;
            prog.load(p.function, btf).map_err(failed(what.clone()))?;
            prog.attach().map_err(failed(what))?;
        } else {
            let prog: &mut FEntry = program(ebpf, p.program)?;
            prog.load(p.function, btf).map_err(failed(what.clone()))?;
            prog.attach().map_err(failed(what))?;
        }
    }
    Ok(())
}

/// Attaches the level probe (see `features::LEVEL_PROBE`).
pub fn attach_level_probe(ebpf: &mut Ebpf) -> Result<(), AttachError> {
    attach_tracepoints(ebpf, std::slice::from_ref(&super::features::LEVEL_PROBE))
}

fn attach_tracepoints(ebpf: &mut Ebpf, progs: &[TpProg]) -> Result<(), AttachError> {
    for p in progs {
        tpformat::check(p.category, p.tracepoint, p.fields).map_err(AttachError::Format)?;
        let what = format!("{}:{}", p.category, p.tracepoint);
        let prog: &mut TracePoint = program(ebpf, p.program)?;
        prog.load().map_err(failed(what.clone()))?;
        prog.attach(p.category, p.tracepoint).map_err(failed(what))?;
    }
    Ok(())
}

/// BPF LSM programs attach even where the BPF LSM is not active, and then never run: the active
/// list is checked first.
fn attach_lsm(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    progs: &[super::features::LsmProg],
) -> Result<(), AttachError> {
    let active = kernel::active_lsms().map_err(AttachError::LsmList)?;
    if !active.iter().any(|l| l == "bpf") {
        return Err(AttachError::LsmInactive(active.join(",")));
    }
    for p in progs {
        let what = format!("lsm:{}", p.hook);
        let prog: &mut Lsm = program(ebpf, p.program)?;
        prog.load(p.hook, btf).map_err(failed(what.clone()))?;
        prog.attach().map_err(failed(what))?;
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

/// Attaches every program of `attempt`, or none: on failure what was loaded is unloaded again.
pub fn attach(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    modules: &mut Modules<'_>,
    attempt: &Attempt,
    tracing_allowed: bool,
) -> Result<(), AttachError> {
    if attempt.programs.is_tracing() && !tracing_allowed {
        return Err(AttachError::TracingDisabled);
    }
    let result = match &attempt.programs {
        Programs::Tracing(progs) => attach_tracing(ebpf, btf, progs),
        Programs::Tracepoints(progs) => attach_tracepoints(ebpf, progs),
        Programs::Lsm(progs) => attach_lsm(ebpf, btf, progs),
        Programs::ModuleFexit { module, progs, then } => {
            let pairs: Vec<(&str, &str)> = progs.iter().map(|p| (p.program, p.function)).collect();
            let links = match modules.btf.get(module) {
                Some(Ok(target)) => {
                    module_fexit::attach_all(&modules.map_fds, super::loader::OBJECT, target, &pairs)
                }
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("the BTF of {module} was not looked up")),
            }
            .map_err(AttachError::Module)?;
            // Module links detach when dropped: kept only when the rest attaches too.
            attach_tracepoints(ebpf, then).map(|()| modules.attached.extend(links))
        }
    };
    if result.is_err() {
        unload(ebpf, attempt);
    }
    result
}

/// Unloads every program of `attempt` loaded through aya (which detaches their links); programs
/// that were never loaded are passed over.
pub fn unload(ebpf: &mut Ebpf, attempt: &Attempt) {
    let names: Vec<&'static str> = match &attempt.programs {
        Programs::Tracing(progs) => progs.iter().map(|p| p.program).collect(),
        Programs::Tracepoints(progs) | Programs::ModuleFexit { then: progs, .. } => {
            progs.iter().map(|p| p.program).collect()
        }
        Programs::Lsm(progs) => progs.iter().map(|p| p.program).collect(),
    };
    for name in names {
        let Some(prog) = ebpf.program_mut(name) else { continue };
        // Errors mean it was never loaded.
        let _ = match prog {
            aya::programs::Program::FEntry(p) => p.unload(),
            aya::programs::Program::FExit(p) => p.unload(),
            aya::programs::Program::TracePoint(p) => p.unload(),
            aya::programs::Program::Lsm(p) => p.unload(),
            _ => Ok(()),
        };
    }
}
