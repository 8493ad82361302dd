//! Writes the storage maps of mounted filesystems (`host::storage`) into the kernel's
//! `LOWER_EXTENTS` and `BACKING_FILES` and the loop devices bound into `LOOPS_MAPPED`, changes
//! only, and keeps them for naming the layer of an event (`StorageMaps::mapping`) and judging
//! the bios the kernel could not (`StorageMaps::holders`).
use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use freeze_common::{EXTENTS_PER_DEV, Extent, ExtentKey, InodeKey, LOOPS_MAPPED_MAX, kdev};
use freeze_model::storage::{Mapping, StorageMap};

use crate::host::{
    btrfs_devs,
    mountinfo::Mount,
    storage::{self, Dev, Resolved, Sources},
};

/// What is in the kernel now, and the maps it came from.
#[derive(Default)]
pub struct StorageMaps {
    /// By the filesystem's own device (`major:minor`).
    maps: HashMap<String, StorageMap>,
    extents: HashMap<ExtentKey, Extent>,
    backing: HashMap<InodeKey, Extent>,
    /// The loop devices bound at the last refresh (`LOOPS_MAPPED`).
    loops: HashMap<u32, u8>,
    /// Lower devices whose extents did not all fit (said once each).
    overflow_said: Vec<Dev>,
}

/// The block-device filesystems among `mounts`, each once (anonymous devices, major 0, have no
/// block storage of their own: tmpfs, overlay, btrfs, whose members are aliased instead).
fn block_filesystems(mounts: &[Mount]) -> Vec<Dev> {
    let mut devs: Vec<Dev> = mounts.iter().map(|m| m.dev).filter(|d| d.0 != 0).collect();
    devs.sort_unstable();
    devs.dedup();
    devs
}

impl StorageMaps {
    /// Resolves every mounted block filesystem's storage, and what lies under each mounted btrfs's
    /// members (`btrfs`: (member, filesystem) pairs, `btrfs_devs::on_this_system`), and writes
    /// what changed.
    pub fn refresh(&mut self, ebpf: &mut aya::Ebpf, mounts: &[Mount], btrfs: &[(Dev, Dev)]) {
        let src = Sources::system();
        // Read before the layers: a loop device bound between the two reads is then left out of
        // `LOOPS_MAPPED` (its bios go to user space), never in it without its layer mapped.
        let loops: HashMap<u32, u8> = storage::bound_loops(&src)
            .into_iter()
            .take(LOOPS_MAPPED_MAX as usize)
            .map(|(ma, mi)| (kdev::make(ma, mi), 1))
            .collect();
        let mut resolved: Vec<Resolved> =
            block_filesystems(mounts).into_iter().map(|d| storage::resolve(&src, d)).collect();
        resolved.extend(
            btrfs_devs::members_by_filesystem(btrfs)
                .into_iter()
                .map(|(fs, members)| storage::resolve_members(&src, fs, &members)),
        );
        self.apply(ebpf, resolved);
        if loops != self.loops {
            sync(ebpf, freeze_common::names::LOOPS_MAPPED, &self.loops, &loops);
            self.loops = loops;
        }
    }

    fn apply(&mut self, ebpf: &mut aya::Ebpf, resolved: Vec<Resolved>) {
        let mut extents = HashMap::new();
        let mut backing = HashMap::new();
        let mut slots: HashMap<Dev, u32> = HashMap::new();
        let mut maps = HashMap::new();
        for r in resolved {
            for (dev, extent) in &r.extents {
                let slot = slots.entry(*dev).or_default();
                if *slot >= EXTENTS_PER_DEV {
                    if !self.overflow_said.contains(dev) {
                        self.overflow_said.push(*dev);
                        log::warn!(
                            "device {}:{} holds more than {EXTENTS_PER_DEV} ranges of mounted filesystems: \
                             writes to the others are not watched",
                            dev.0,
                            dev.1
                        );
                    }
                    continue;
                }
                extents.insert(ExtentKey { dev: kdev::make(dev.0, dev.1), slot: *slot }, *extent);
                *slot += 1;
            }
            backing.extend(r.backing.iter().copied());
            maps.insert(r.map.fs_dev.clone(), r.map);
        }
        self.maps = maps;
        if extents != self.extents {
            sync(ebpf, freeze_common::names::LOWER_EXTENTS, &self.extents, &extents);
            self.extents = extents;
        }
        if backing != self.backing {
            sync(ebpf, freeze_common::names::BACKING_FILES, &self.backing, &backing);
            self.backing = backing;
        }
    }

    /// The mapping an event's modification went through, for the filesystem on `fs_dev`.
    pub fn mapping(&self, fs_dev: &str, dev: &str, file: bool, at: u64, len: u64) -> Option<Mapping> {
        self.maps.get(fs_dev)?.lookup(dev, file, at, len).cloned()
    }

    /// The filesystems (`major:minor`) whose maps have a block range of `dev` overlapping `len`
    /// sectors at `sector`.
    pub fn holders(&self, dev: &str, sector: u64, len: u64) -> Vec<String> {
        self.maps
            .values()
            .filter(|m| m.lookup(dev, false, sector, len).is_some())
            .map(|m| m.fs_dev.clone())
            .collect()
    }

    /// What this kernel's layers allow, with the maps of the filesystems that have layers under
    /// them (for the trace header and `doctor`).
    pub fn coverage(&self) -> freeze_model::storage::StorageCoverage {
        let mut maps: Vec<StorageMap> =
            self.maps.values().filter(|m| !m.mappings.is_empty() || !m.limits.is_empty()).cloned().collect();
        maps.sort_by(|a, b| a.fs_dev.cmp(&b.fs_dev));
        storage::coverage(std::path::Path::new(storage::SYSFS), maps)
    }
}

/// Makes kernel map `name` hold `new` instead of `old`.
fn sync<K, V>(ebpf: &mut aya::Ebpf, name: &str, old: &HashMap<K, V>, new: &HashMap<K, V>)
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let Some(map) = ebpf.map_mut(name) else { return };
    let Ok(mut kernel) = BpfHashMap::<&mut MapData, K, V>::try_from(map) else { return };
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        let _ = kernel.remove(key);
    }
    for (key, value) in new.iter().filter(|(k, v)| old.get(*k) != Some(*v)) {
        if let Err(e) = kernel.insert(key, value, 0) {
            log::warn!("{name}: cannot add an entry ({e}): that storage is not watched");
        }
    }
}
