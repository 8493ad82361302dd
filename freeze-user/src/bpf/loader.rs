//! Loads the eBPF object and attaches every feature of `features::FEATURES`, each by the first
//! attempt of its chain that attaches (`attach`). Every program detaches when the `Loaded` value
//! is dropped, and the kernel detaches them if the process dies.
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use freeze_common::{KernelOffsets, counter, maps_age, names};

use super::{
    attach::{self, AttachError, Modules},
    features::{Attempt, FEATURES, FeatureSpec, Programs, WhenNone},
    module_fexit,
};
use crate::host::{
    btf::Btf,
    kernel,
    offsets::{self, OffsetError},
    storage::Dev,
};
use freeze_model::{
    coverage::Feature,
    deny::DenyMode,
    event::Hook,
    trace::{ActiveHook, Counters},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Privileges(String),
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    #[error("cannot read kernel BTF (/sys/kernel/btf/vmlinux; the kernel needs CONFIG_DEBUG_INFO_BTF): {0}")]
    Btf(std::io::Error),
    #[error("kernel BTF lacks a field freezewatch reads: {0}")]
    Offsets(OffsetError),
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

/// How a failed attempt is listed among a feature's fallbacks: the hook, then why; a refusal by
/// the kernel says which program type it refused.
fn fallback(attempt: &Attempt, e: &AttachError) -> String {
    let why = match e {
        // The error names the hook itself when the attempt is that one program.
        AttachError::Program { what, source } if what == attempt.hook => attach::chain(source),
        _ => e.to_string(),
    };
    let refused = match (&attempt.programs, e.refused()) {
        (Programs::Lsm(_), true) => " (this kernel refuses BPF LSM programs)",
        (Programs::Tracing(_) | Programs::ModuleFexit { .. }, true) => {
            " (this kernel refuses fentry/fexit programs)"
        }
        _ => "",
    };
    format!("{}: {why}{refused}", attempt.id())
}

pub type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;

pub struct Loaded {
    /// Every link of the programs loaded through aya, detached together when dropped (first:
    /// fields drop in order).
    _links: attach::Links,
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
    /// How the level probe attached, if it did (`None`: frozen-at-start cannot be told); taken by
    /// whoever probes (`watch`).
    pub level_probe: Option<attach::LevelProbe>,
    /// The mount-point table last written to the kernel (for bind-source matching).
    mount_paths: Vec<crate::bpf::mount_paths::PathKey>,
    /// The storage under mounted filesystems, as last written to the kernel.
    pub storage: crate::bpf::storage_maps::StorageMaps,
}

/// Whether to try fentry first. `FREEZEWATCH_NO_FENTRY=1` forces the tracepoint fallback, so that
/// the fallback can be tested on kernels where fentry works.
fn fentry_allowed() -> bool {
    std::env::var_os("FREEZEWATCH_NO_FENTRY").is_none_or(|v| v != "1")
}

/// The comma-separated names in environment variable `var`.
fn env_list(var: &str) -> Vec<String> {
    std::env::var(var)
        .map(|v| v.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default()
}

/// Features `FREEZEWATCH_DISABLE` (comma-separated feature names) turns off, as if none of their
/// hooks attached: to see what a recording without them reports (coverage, unproven verdicts).
fn disabled_features() -> Vec<String> {
    env_list("FREEZEWATCH_DISABLE")
}

/// Hooks `FREEZEWATCH_SKIP_HOOKS` (comma-separated hook names, as `doctor` shows them, or one
/// attempt's own name, `hook(variant)`) passes over, so that the next attempt of their feature's
/// chain is what runs: to test and measure a fallback on a kernel where a better hook works.
fn skipped_hooks() -> Vec<String> {
    env_list("FREEZEWATCH_SKIP_HOOKS")
}

/// What the kernel's BTF says, resolved before the object loads: the types (ours and aya's
/// parse) and the offsets the programs read at (the modules' are added by
/// `module_fexit::modules`).
struct KernelTypes {
    btf: Btf,
    aya_btf: aya::Btf,
    offsets: KernelOffsets,
}

impl KernelTypes {
    fn resolve() -> Result<Self, LoadError> {
        // aya parses the kernel's BTF for itself (a sixth of a second): on another core meanwhile.
        let aya_btf = std::thread::spawn(|| aya::Btf::from_sys_fs().map_err(std::io::Error::other));
        let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
        let offsets = offsets::resolve(&btf).map_err(LoadError::Offsets)?;
        let aya_btf = aya_btf
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("parsing the kernel BTF panicked")))
            .map_err(LoadError::Btf)?;
        Ok(Self { btf, aya_btf, offsets })
    }
}

/// The user's privileges and tracefs: what loading needs before anything else.
fn check_host() -> Result<(), LoadError> {
    if let Some(missing) = kernel::Privileges::current().missing() {
        return Err(LoadError::Privileges(missing));
    }
    kernel::ensure_tracefs().map(drop).map_err(LoadError::Tracefs)
}

/// Loads the object with its globals set: the offsets, the mount-denial mode and this process's
/// id (whose FIGETBSZ ioctls are the level probe).
fn load_object(
    aya_btf: &aya::Btf,
    offsets: &KernelOffsets,
    deny: Option<DenyMode>,
) -> Result<Ebpf, LoadError> {
    let deny_raw = deny.map_or(freeze_common::deny::OFF, DenyMode::raw);
    let probe_tgid: u32 = std::process::id();
    Ok(EbpfLoader::new()
        .btf(Some(aya_btf))
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::DENY_MODE, &deny_raw, true)
        .override_global(names::PROBE_TGID, &probe_tgid, true)
        .load(super::OBJECT)?)
}

/// Walks each feature's chain: what every attempt needs to attach, and what the environment asks
/// (`FREEZEWATCH_NO_FENTRY`, `_DISABLE`, `_SKIP_HOOKS`).
struct ChainWalk<'a> {
    ebpf: &'a mut Ebpf,
    btf: &'a Btf,
    aya_btf: &'a aya::Btf,
    modules: Modules<'a>,
    links: attach::Links,
    tracing_allowed: bool,
    disabled: Vec<String>,
    skipped: Vec<String>,
}

impl ChainWalk<'_> {
    /// The first attempt of `feature`'s chain that attaches, if any, and why each one before it
    /// did not.
    fn walk(&mut self, feature: &FeatureSpec) -> (Option<&'static Attempt>, Vec<String>) {
        let mut fallbacks = Vec::new();
        if self.disabled.iter().any(|d| d == feature.name.as_str()) {
            fallbacks.push("disabled (FREEZEWATCH_DISABLE)".to_owned());
            return (None, fallbacks);
        }
        let won = feature.chain.iter().find(|attempt| match self.try_attach(attempt) {
            Ok(()) => true,
            Err(e) => {
                fallbacks.push(fallback(attempt, &e));
                false
            }
        });
        (won, fallbacks)
    }

    fn try_attach(&mut self, attempt: &Attempt) -> Result<(), AttachError> {
        if self.skipped.iter().any(|h| attempt.named(h)) {
            return Err(AttachError::Skipped);
        }
        if let Some(why) = attempt.needs.iter().find_map(|n| n.unmet(self.btf)) {
            return Err(AttachError::Unmet(why));
        }
        let (btf, modules, links) = (self.aya_btf, &mut self.modules, &mut self.links);
        attach::attach(self.ebpf, btf, modules, attempt, self.tracing_allowed, links)
            // The whole error (a verifier log can run to pages): RUST_LOG=debug.
            .inspect_err(|e| log::debug!("{}: {e:?}", attempt.hook))
    }
}

/// How `feature` is reported, given the attempt that attached (if any) and the fallbacks; an error
/// where the feature is required.
fn active_hook(
    feature: &FeatureSpec,
    won: Option<&Attempt>,
    fallbacks: Vec<String>,
) -> Result<ActiveHook, LoadError> {
    let feature_name = feature.name.as_str();
    match (won, &feature.when_none) {
        (Some(attempt), _) => Ok(ActiveHook {
            feature: feature_name.into(),
            hook: Some(attempt.hook.into()),
            fallbacks,
            limits: attempt.limits.map(Into::into),
        }),
        (None, WhenNone::Fail) => {
            Err(LoadError::NoHook { feature: feature_name, reasons: fallbacks.join("; ") })
        }
        (None, WhenNone::Record(limits)) => Ok(ActiveHook {
            feature: feature_name.into(),
            hook: None,
            fallbacks,
            limits: Some((*limits).into()),
        }),
    }
}

impl Loaded {
    /// Checks privileges, resolves offsets, loads the object and attaches every feature; with
    /// `deny`, also the mount-denial programs (where they cannot attach, enforce mode is an
    /// error and audit mode records on, flagging mounts from the mount tracepoints instead).
    pub fn load(deny: Option<DenyMode>) -> Result<Self, LoadError> {
        check_host()?;
        super::sys::raise_memlock_limit();
        let KernelTypes { btf, aya_btf, mut offsets } = KernelTypes::resolve()?;
        let module_btf = module_fexit::modules(&btf, &mut offsets);
        let mut ebpf = load_object(&aya_btf, &offsets, deny)?;
        let map_fds = module_fexit::map_fds(&ebpf);
        // The logger owns the AYA_LOGS map: it must outlive the programs that write to it.
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|e| log::debug!("eBPF logging unavailable: {e}"))
            .ok();
        let mut walk = ChainWalk {
            ebpf: &mut ebpf,
            btf: &btf,
            aya_btf: &aya_btf,
            modules: Modules { btf: module_btf, map_fds, attached: Vec::new() },
            links: attach::Links::default(),
            tracing_allowed: fentry_allowed(),
            disabled: disabled_features(),
            skipped: skipped_hooks(),
        };
        let mut hooks = Vec::new();
        let mut freeze_hook = Hook::TracepointIoctl;
        let mut denying = false;
        for feature in FEATURES.iter().filter(|f| !f.on_request || deny.is_some()) {
            let (won, fallbacks) = walk.walk(feature);
            match feature.name {
                Feature::MountDenial => {
                    denying = won.is_some();
                    if won.is_none() && deny == Some(DenyMode::Enforce) {
                        return Err(LoadError::DenyUnavailable(fallbacks.join("; ")));
                    }
                }
                Feature::Freeze => {
                    freeze_hook = won.and_then(|a| Hook::from_name(a.hook)).unwrap_or(Hook::TracepointIoctl);
                }
                _ => {}
            }
            hooks.push(active_hook(feature, won, fallbacks)?);
        }
        let level_probe = attach::attach_level_probe(walk.ebpf, &aya_btf, &mut walk.links, fentry_allowed())
            .inspect_err(|e| {
                log::warn!("the level probe did not attach ({e}): frozen-at-start cannot be told")
            })
            .ok();
        let ChainWalk { modules, links, .. } = walk;
        Ok(Self {
            _links: links,
            _module_programs: modules.attached,
            ebpf,
            logger,
            offsets,
            hooks,
            freeze_hook,
            denying,
            level_probe,
            mount_paths: Vec::new(),
            storage: Default::default(),
        })
    }

    /// Writes the mount points into the kernel, for matching the source path of a bind or move
    /// mount (mount denial, and whether a mount call at its function matters). Only changes are
    /// written.
    pub fn refresh_mount_paths(&mut self, mounts: &[crate::host::mountinfo::Mount]) {
        let keys = crate::bpf::mount_paths::path_keys(mounts);
        if keys == self.mount_paths {
            return;
        }
        let Some(map) = self.ebpf.map_mut(names::MOUNT_PATHS) else { return };
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

    /// Resolves the storage under every mounted block filesystem and btrfs's members (`btrfs`:
    /// `btrfs_devs::on_this_system`) and writes what changed into the kernel (lower devices'
    /// ranges, loop backing files).
    pub fn refresh_storage(&mut self, mounts: &[crate::host::mountinfo::Mount], btrfs: &[(Dev, Dev)]) {
        self.storage.refresh(&mut self.ebpf, mounts, btrfs);
    }

    /// How many freezes have completed, as the kernel counts them (`maps_age::FREEZES`): read
    /// before the storage layers, handed to `maps_read_after` once they are in the maps.
    pub fn freezes_completed(&self) -> u32 {
        self.maps_age().and_then(|a| a.get(&maps_age::FREEZES, 0).ok()).unwrap_or(0)
    }

    /// The storage maps now hold what was read after `freezes` freezes had completed: the
    /// kernel stops sending bios it cannot judge until the next freeze completes.
    pub fn maps_read_after(&mut self, freezes: u32) {
        let Some(map) = self.ebpf.map_mut(names::MAPS_AGE) else { return };
        if let Ok(mut age) = Array::<_, u32>::try_from(map) {
            let _ = age.set(maps_age::MAPPED, freezes, 0);
        }
    }

    fn maps_age(&self) -> Option<Array<&MapData, u32>> {
        Array::try_from(self.ebpf.map(names::MAPS_AGE)?).ok()
    }

    /// Takes the ring buffer out (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        RingBuf::try_from(self.ebpf.take_map(names::EVENTS)?).ok()
    }

    /// Tells the programs which block devices belong to which btrfs filesystem (see btrfs_devs).
    /// `pairs`: (member, filesystem), `btrfs_devs::on_this_system`. Returns how many aliases
    /// are now known.
    pub fn refresh_btrfs_aliases(&mut self, pairs: &[(Dev, Dev)]) -> usize {
        let Some(map) = self.ebpf.map_mut(names::BDEV_ALIAS) else { return 0 };
        let Ok(mut alias) = aya::maps::HashMap::<_, u32, u32>::try_from(map) else { return 0 };
        let kdev = |(ma, mi): (u32, u32)| freeze_common::kdev::make(ma, mi);
        pairs.iter().filter(|(member, fs)| alias.insert(kdev(*member), kdev(*fs), 0).is_ok()).count()
    }

    /// Takes the eBPF log reader out (once); keep it alive as long as `self`.
    pub fn take_logger(&mut self) -> Option<Logger> {
        self.logger.take()
    }

    /// The kernel stack stored under `stack_id` (as carried in events: id + 1), innermost first.
    pub fn stack(&self, stack_id: u32) -> Option<Vec<u64>> {
        let id = stack_id.checked_sub(1)?;
        let map = self.ebpf.map(names::STACKS)?;
        let stacks = aya::maps::StackTraceMap::try_from(map).ok()?;
        let trace = stacks.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).filter(|ip| *ip != 0).collect())
    }

    /// Per-hook hit counts, by hook name; hooks that never ran are left out.
    fn hook_hits(&self) -> std::collections::BTreeMap<String, u64> {
        let Some(array) =
            self.ebpf.map(names::HOOK_HITS).and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
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
        let Some(map) = self.ebpf.map(names::COUNTERS) else { return Counters::default() };
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
