//! The maps and globals every program shares, and the values they hold.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, StackTrace, lpm_trie::Key},
};
use freeze_common::{
    Extent, ExtentKey, InodeKey, KernelOffsets, LOOPS_MAPPED_MAX, PATH_KEY_BYTES, counter, deny, hook,
    maps_age, mount_api,
};

/// Filled by user space before load (`EbpfLoader::override_global`); read-only for the programs.
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

/// `--deny-mounts` mode (`freeze_common::deny`), set by user space before load.
#[unsafe(no_mangle)]
pub(crate) static DENY_MODE: u32 = deny::OFF;

/// `DENY_MODE` as user space set it.
#[inline(always)]
pub(crate) fn deny_mode() -> u32 {
    // SAFETY: DENY_MODE is a static that lives for the whole program; volatile so that the value
    // user space set at load time is read, not the default it was compiled with.
    unsafe { core::ptr::read_volatile(&raw const DENY_MODE) }
}

/// freezewatch's own thread group id: only its FIGETBSZ ioctls are level probes.
#[unsafe(no_mangle)]
pub(crate) static PROBE_TGID: u32 = 0;

/// 4 MiB: bursts of events while a freeze drains (journal starts of busy writers) must fit while
/// user space catches up, also on slow machines (the QEMU guests lost events with 1 MiB).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Operations that began and have not ended yet, by thread id.
#[map]
pub(crate) static PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(4096, 0);

/// Per-CPU counters, slots in `freeze_common::counter`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Block devices of superblocks that are freezing or frozen → their superblock. Block writes to
/// any other device cost this one lookup and a counter, not a ring-buffer record.
#[map]
pub(crate) static WATCHED_DEVS: HashMap<u32, u64> = HashMap::with_max_entries(256, 0);

/// Member block device → the `s_dev` of the btrfs filesystem it belongs to, filled by user space
/// (btrfs has an anonymous s_dev and no s_bdev, so the programs cannot find its devices).
#[map]
pub(crate) static BDEV_ALIAS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// `sb->s_uuid` of watched superblocks → superblock (btrfs tracepoints name the fsid, which is it).
#[map]
pub(crate) static WATCHED_UUIDS: HashMap<[u8; 16], u64> = HashMap::with_max_entries(256, 0);

/// Write syscalls in flight on a watched superblock's regular file or on a frozen filesystem's
/// backing file, by thread id.
#[map]
pub(crate) static WRITING: HashMap<u32, Writing> = HashMap::with_max_entries(4096, 0);

/// The lower block devices of mounted filesystems (partitions' disks, device-mapper targets'
/// devices), filled by user space: (device, slot) → the sectors of it that hold the filesystem.
#[map]
pub(crate) static LOWER_EXTENTS: HashMap<ExtentKey, Extent> = HashMap::with_max_entries(4096, 0);

/// Loop devices' backing files under mounted filesystems, filled by user space: (s_dev, inode)
/// → the byte range the loop device maps.
#[map]
pub(crate) static BACKING_FILES: HashMap<InodeKey, Extent> = HashMap::with_max_entries(256, 0);

/// Whether the storage maps are older than the newest completed freeze (`freeze_common::maps_age`).
#[map]
pub(crate) static MAPS_AGE: Array<u32> = Array::with_max_entries(maps_age::SLOTS, 0);

/// Loop devices bound when user space last read the storage layers → 1.
#[map]
pub(crate) static LOOPS_MAPPED: HashMap<u32, u8> = HashMap::with_max_entries(LOOPS_MAPPED_MAX, 0);

/// Whether a freeze completed since user space last read the storage layers.
#[inline(always)]
pub(crate) fn maps_behind() -> bool {
    MAPS_AGE.get(maps_age::FREEZES).copied() != MAPS_AGE.get(maps_age::MAPPED).copied()
}

/// Counts a completed freeze: the storage maps are behind it until user space reads them again.
#[inline(always)]
pub(crate) fn freeze_completed() {
    if let Some(p) = MAPS_AGE.get_ptr_mut(maps_age::FREEZES) {
        // As `WATCHING`'s count: BPF's atomic add, the only write to this slot in the kernel.
        // SAFETY: the pointer comes from the map lookup and points at an aligned u32 that lives
        // as long as the map.
        unsafe {
            core::intrinsics::atomic_xadd::<u32, u32, { core::intrinsics::AtomicOrdering::Relaxed }>(p, 1)
        };
    }
}

/// Slot 0: how many superblocks are freezing or frozen now (in `WATCHED_DEVS`). While it is 0,
/// write syscalls cost one array lookup, not an fd-to-superblock walk: in the steady state
/// between freezes nothing more runs per syscall.
#[map]
pub(crate) static WATCHING: Array<u32> = Array::with_max_entries(1, 0);

/// Slot 0: the `freeze_common::syscall_feature` bits of the features whose chain chose the
/// syscall dispatcher (`programs::syscalls`); written by user space as each attaches.
#[map]
pub(crate) static SYSCALL_FEATURES: Array<u32> = Array::with_max_entries(1, 0);

/// Whether some superblock is freezing or frozen (see `WATCHING`).
#[inline(always)]
pub(crate) fn any_watched() -> bool {
    WATCHING.get(0).copied().unwrap_or(0) != 0
}

/// Hits per hook id (`freeze_common::hook`), per CPU.
#[map]
pub(crate) static HOOK_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Kernel stacks of events that can become findings (block writes, transaction starts).
#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);

/// `&sb->s_writers.rw_sem[i]` of watched superblocks → (superblock, gate level i + 1).
#[map]
pub(crate) static GATE_LOCKS: HashMap<u64, GateLock> = HashMap::with_max_entries(768, 0);

/// `s_dev` → superblock, for every superblock seen freezing while we run (entries go when it is
/// really thawed). A bind mount's source is known by path only: its `s_dev` comes from
/// `MOUNT_PATHS`, its superblock from here, and the superblock's own level decides.
#[map]
pub(crate) static FROZEN_SBS: HashMap<u32, u64> = HashMap::with_max_entries(256, 0);

/// Mount points with a trailing '/' (bit-length prefixes) → `s_dev` of the filesystem mounted
/// there, from user space's mountinfo. A longest-prefix match of a path names the filesystem it
/// lies on (for absolute, canonical paths, which is what mount(8) passes).
#[map]
pub(crate) static MOUNT_PATHS: LpmTrie<[u8; PATH_KEY_BYTES], u32> = LpmTrie::with_max_entries(4096, 0);

/// Per-CPU room for one path key (too big for the BPF stack next to everything else).
#[map]
pub(crate) static PATH_SCRATCH: PerCpuArray<Key<[u8; PATH_KEY_BYTES]>> = PerCpuArray::with_max_entries(1, 0);

/// Processes that made a successful freeze call, and their parents, by thread group id → their
/// start time: `programs::exit` reports the exit of exactly these processes (a later process that
/// reuses the pid starts at another time). Least recently used entries go first when it is full:
/// a host freezes far fewer processes than this between their exits.
#[map]
pub(crate) static OWNERS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Threads inside a block-device freeze or thaw (`bdev_freeze`/`bdev_thaw`, before 6.8
/// `freeze_bdev`/`thaw_bdev`: device-mapper suspend and resume), by thread id: the
/// `freeze_super`/`thaw_super` they call is marked `freeze_flags::VIA_BLOCK_DEVICE`.
#[map]
pub(crate) static BDEV_CALLS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Values of `BDEV_CALLS`.
pub(crate) mod bdev_call {
    /// Inside the block-device freeze or thaw: the `freeze_super`/`thaw_super` it calls reports
    /// the freeze, marked as made through the block device.
    pub const MARKS: u32 = 1;
    /// Inside the filesystem's block-device holder operation (`fs_bdev_freeze`/`fs_bdev_thaw`,
    /// 6.8 on), which reports the freeze itself: the `freeze_super`/`thaw_super` it calls stays
    /// silent (a kernel may call an inlined or split copy of those, which fentry never sees).
    pub const REPORTS: u32 = 2;
}

/// Mount calls whose begin record is held back, by thread id: between freezes none is sent (a
/// mount then cannot land on a frozen filesystem, and a mount loop costs user space nothing), and
/// at the mount calls' functions none is sent until the call shows it touched a freezing or
/// frozen superblock. Sent with the end when the call turns out to matter (`emit::on_end`).
#[map]
pub(crate) static HELD_MOUNTS: HashMap<u32, HeldMount> = HashMap::with_max_entries(4096, 0);

/// What a held-back MOUNT_BEGIN record needs besides its `Pending`: the call's user-memory
/// strings (read when it is sent, still the caller's), its `flags`, and its api.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct HeldMount {
    pub(crate) source: u64,
    pub(crate) target: u64,
    pub(crate) fstype: u64,
    pub(crate) flags: u64,
    pub(crate) api: u32,
    /// Set by the relevance programs (`programs::mount`): the call reached a superblock that
    /// is not unfrozen, or a path they cannot place.
    pub(crate) matters: u32,
}

/// Whether the relevance programs judge a call of `api` begun at `hook`: mount(2) and
/// move_mount at their functions (the same attempt attaches both). Other calls, and every call
/// seen elsewhere, matter when something is freezing or frozen at their end.
#[inline(always)]
pub(crate) fn judged_by_relevance(hook: u32, api: u32) -> bool {
    hook == hook::FENTRY_SYS_MOUNT && (api == mount_api::MOUNT || api == mount_api::MOVE_MOUNT)
}

/// Tasks waiting at a gate, by thread id.
#[map]
pub(crate) static WAITING: HashMap<u32, Waiting> = HashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GateLock {
    pub(crate) sb: u64,
    pub(crate) level: u32,
    pub(crate) _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Waiting {
    pub(crate) sb: u64,
    /// The gate semaphore waited on: only its contention_end ends the wait (the waiter may
    /// contend other locks meanwhile, e.g. the semaphore's own waitqueue spinlock).
    pub(crate) lock: u64,
    pub(crate) begin_ts_ns: u64,
    pub(crate) level: u32,
    pub(crate) _pad: u32,
}

/// A write in flight: to a regular file of watched `sb` (`via_dev` 0), or a modification of the
/// backing file of loop device `via_dev` under frozen `sb`, at byte `pos` of it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Writing {
    pub(crate) sb: u64,
    pub(crate) pos: u64,
    /// Bytes from `pos`; 0 for "to the end" (a truncate).
    pub(crate) len: u64,
    /// The backing file's mapped byte range (`Extent::first`, `end`).
    pub(crate) first: u64,
    pub(crate) end: u64,
    pub(crate) via_dev: u32,
    pub(crate) io_op: u32,
}

impl Writing {
    /// A modification of `len` bytes (0: to the end) at `pos` of the backing file `extent`
    /// describes, under frozen `sb`.
    #[inline(always)]
    pub(crate) fn backing(sb: u64, extent: &Extent, pos: u64, len: u64, io_op: u32) -> Self {
        Self { sb, pos, len, first: extent.first, end: extent.end, via_dev: extent.via_dev, io_op }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) sb: u64,
    pub(crate) begin_ts_ns: u64,
    pub(crate) level_before: u32,
    pub(crate) begin_kind: u32,
    pub(crate) holder: u32,
    pub(crate) hook: u32,
    /// `freeze_flags` known at the call (`VIA_BLOCK_DEVICE`).
    pub(crate) flags: u32,
    pub(crate) _pad: u32,
}

/// Counts an event of the kind `slot` names (`counter::*`) on this CPU.
#[inline(always)]
pub(crate) fn bump(slot: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from the map lookup and is valid for this CPU's slot.
        unsafe { *p += 1 };
    }
}

/// Counts a run of the program of `hook` (`hook::*`) on this CPU.
#[inline(always)]
pub(crate) fn hit(hook: u32) {
    if let Some(p) = HOOK_HITS.get_ptr_mut(hook) {
        // SAFETY: the pointer comes from the map lookup and is valid for this CPU's slot.
        unsafe { *p += 1 };
    }
}

/// Whether user space filled in the kernel offsets (from BTF): programs that follow their
/// arguments into kernel structs (raw tracepoints) do nothing without them.
#[inline(always)]
pub(crate) fn offsets_valid() -> bool {
    off!(valid) != 0
}
