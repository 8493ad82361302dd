//! freezewatch eBPF programs.
//!
//! Freeze and thaw are watched by one of two hooks, chosen by the loader (best first):
//! - fentry/fexit on `freeze_super` / `thaw_super`: sees every freeze path (FIFREEZE, block-device
//!   freeze, suspend). Refused on hosts that forbid tracing programs.
//! - `syscalls:sys_{enter,exit}_ioctl` for FIFREEZE / FITHAW: the fallback that loads everywhere;
//!   the superblock is resolved from the ioctl's file descriptor.
//!
//! Both feed the same begin/end pair of events. Struct offsets come from `OFFSETS`, which user space
//! fills from the running kernel's BTF (Rust eBPF objects carry no CO-RE relocations).
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task, bpf_get_func_arg},
    },
    macros::{fentry, fexit, lsm, map, tracepoint},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, StackTrace, lpm_trie::Key},
    programs::{FEntryContext, FExitContext, LsmContext, TracePointContext, tracing::StackIdContext},
};
use freeze_common::{
    FIFREEZE, FITHAW, KernelOffsets, RawEvent, RawMount, SbIdent, counter, deny, holder, hook, kind, level,
    lsm_hook, mount_api,
};

/// Filled by user space before load (`EbpfLoader::set_global`); read-only for the programs.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

/// `--deny-mounts` mode (`freeze_common::deny`), set by user space before load.
#[unsafe(no_mangle)]
static DENY_MODE: u32 = deny::OFF;

/// 4 MiB: bursts of events while a freeze drains (journal starts of busy writers) must fit while
/// user space catches up, also on slow machines (the QEMU guests lost events with 1 MiB).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Operations that began and have not ended yet, by thread id.
#[map]
static PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(4096, 0);

/// Per-CPU counters, slots in `freeze_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Block devices of superblocks that are freezing or frozen → their superblock. Block writes to
/// any other device cost this one lookup and a counter, not a ring-buffer record.
#[map]
static WATCHED_DEVS: HashMap<u32, u64> = HashMap::with_max_entries(256, 0);

/// Member block device → the `s_dev` of the btrfs filesystem it belongs to, filled by user space
/// (btrfs has an anonymous s_dev and no s_bdev, so the programs cannot find its devices).
#[map]
static BDEV_ALIAS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// `sb->s_uuid` of watched superblocks → superblock (btrfs tracepoints name the fsid, which is it).
#[map]
static WATCHED_UUIDS: HashMap<[u8; 16], u64> = HashMap::with_max_entries(256, 0);

/// Write syscalls in flight on a watched superblock's regular file, by thread id → superblock.
#[map]
static WRITING: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);

/// Slot 0 becomes 1 at the first freeze of this recording and stays so: until then write
/// syscalls cost one array lookup, not an fd-to-superblock walk.
#[map]
static ANY_FREEZE: Array<u32> = Array::with_max_entries(1, 0);

/// Hits per hook id (`freeze_common::hook`), per CPU.
#[map]
static HOOK_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Kernel stacks of events that can become findings (block writes, transaction starts).
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);

/// `&sb->s_writers.rw_sem[i]` of watched superblocks → (superblock, gate level i + 1).
#[map]
static GATE_LOCKS: HashMap<u64, GateLock> = HashMap::with_max_entries(768, 0);

/// `s_dev` → superblock, for every superblock seen freezing while we run (entries go when it is
/// really thawed). A bind mount's source is known by path only: its `s_dev` comes from
/// `MOUNT_PATHS`, its superblock from here, and the superblock's own level decides.
#[map]
static FROZEN_SBS: HashMap<u32, u64> = HashMap::with_max_entries(256, 0);

/// Longest bind-source path a program compares, in bytes (a longer source is not matched).
const PATH_MAX_KEY: usize = 128;

/// Mount points with a trailing '/' (bit-length prefixes) → `s_dev` of the filesystem mounted
/// there, from user space's mountinfo. A longest-prefix match of a path names the filesystem it
/// lies on (for absolute, canonical paths, which is what mount(8) passes).
#[map]
static MOUNT_PATHS: LpmTrie<[u8; PATH_MAX_KEY], u32> = LpmTrie::with_max_entries(4096, 0);

/// Per-CPU room for one path key (too big for the BPF stack next to everything else).
#[map]
static PATH_SCRATCH: PerCpuArray<Key<[u8; PATH_MAX_KEY]>> = PerCpuArray::with_max_entries(1, 0);

/// Tasks waiting at a gate, by thread id.
#[map]
static WAITING: HashMap<u32, Waiting> = HashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct GateLock {
    sb: u64,
    level: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Waiting {
    sb: u64,
    /// The gate semaphore waited on: only its contention_end ends the wait (the waiter may
    /// contend other locks meanwhile, e.g. the semaphore's own waitqueue spinlock).
    lock: u64,
    begin_ts_ns: u64,
    level: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    sb: u64,
    begin_ts_ns: u64,
    level_before: u32,
    begin_kind: u32,
    holder: u32,
    hook: u32,
}

/// Reads one field of `OFFSETS`. Volatile so the compiler cannot fold the zero it was built with.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: OFFSETS is a static that lives for the whole program; the read is in bounds.
        unsafe { core::ptr::read_volatile(&raw const OFFSETS.$field) } as u64
    };
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from the map lookup and is valid for this CPU's slot.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn hit(hook: u32) {
    if let Some(p) = HOOK_HITS.get_ptr_mut(hook) {
        // SAFETY: the pointer comes from the map lookup and is valid for this CPU's slot.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> Result<u64, i32> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }
}

#[inline(always)]
fn read_u32(addr: u64) -> Result<u32, i32> {
    // SAFETY: as read_u64.
    unsafe { bpf_probe_read_kernel(addr as *const u32) }
}

/// `current->files->fdt->fd[fd]->f_inode`, or an error if any step fails.
#[inline(always)]
fn inode_from_fd(fd: u32) -> Result<u64, i32> {
    // SAFETY: the helper has no preconditions; it returns the current task's address.
    let task = unsafe { bpf_get_current_task() };
    let files = read_u64(task + off!(task_files))?;
    let fdt = read_u64(files + off!(files_fdt))?;
    let max_fds = read_u32(fdt + off!(fdtable_max_fds))?;
    if fd >= max_fds {
        return Err(-9); // EBADF: the ioctl itself will fail the same way.
    }
    let fd_array = read_u64(fdt + off!(fdtable_fd))?;
    let file = read_u64(fd_array + (fd as u64) * 8)?;
    read_u64(file + off!(file_f_inode))
}

/// The superblock of the file behind `fd`.
#[inline(always)]
fn sb_from_fd(fd: u32) -> Result<u64, i32> {
    let sb = read_u64(inode_from_fd(fd)? + off!(inode_i_sb))?;
    if sb == 0 { Err(-2) } else { Ok(sb) }
}

/// `sb->s_writers.frozen`, whose width changed from int to unsigned short in 6.6.
#[inline(always)]
fn read_level(sb: u64) -> u32 {
    if sb == 0 {
        return level::UNKNOWN;
    }
    let addr = sb + off!(sb_frozen);
    let value = if off!(sb_frozen_size) == 2 {
        // SAFETY: as read_u64.
        unsafe { bpf_probe_read_kernel(addr as *const u16) }.map(u32::from)
    } else {
        read_u32(addr)
    };
    value.unwrap_or_else(|_| {
        bump(counter::READ_FAILED);
        level::UNKNOWN
    })
}

#[inline(always)]
fn fill_ident(sb: u64, out: &mut SbIdent) {
    out.sb = sb;
    if sb == 0 {
        return;
    }
    let mut ok = true;
    match read_u32(sb + off!(sb_s_dev)) {
        Ok(dev) => out.dev = dev,
        Err(_) => ok = false,
    }
    match read_u64(sb + off!(sb_s_type)).and_then(|t| read_u64(t + off!(fstype_name))) {
        Ok(name) => {
            // SAFETY: the helper bounds the copy by the destination length.
            ok &= unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut out.fstype) }.is_ok();
        }
        Err(_) => ok = false,
    }
    let (id_addr, uuid_addr) = (sb + off!(sb_s_id), sb + off!(sb_s_uuid));
    // SAFETY: fixed-size copies into arrays of exactly that size.
    ok &= unsafe { bpf_probe_read_kernel_buf(id_addr as *const u8, &mut out.s_id) }.is_ok();
    // SAFETY: as above.
    ok &= unsafe { bpf_probe_read_kernel_buf(uuid_addr as *const u8, &mut out.uuid) }.is_ok();
    if !ok {
        bump(counter::READ_FAILED);
    }
}

/// Everything an event carries besides the task, which `emit` reads itself.
#[derive(Clone, Copy)]
struct Emit {
    kind: u32,
    hook: u32,
    ts_ns: u64,
    begin_ts_ns: u64,
    sb: u64,
    level_before: u32,
    level_after: u32,
    holder: u32,
    flags: u32,
    ret: i64,
    arg: u64,
    bdev: u32,
    stack_id: u32,
}

impl Emit {
    #[inline(always)]
    const fn new(kind: u32, hook: u32, ts_ns: u64, sb: u64) -> Self {
        Self {
            kind,
            hook,
            ts_ns,
            begin_ts_ns: 0,
            sb,
            level_before: 0,
            level_after: 0,
            holder: 0,
            flags: 0,
            ret: 0,
            arg: 0,
            bdev: 0,
            stack_id: 0,
        }
    }
}

#[inline(always)]
fn emit(e: &Emit) {
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    entry.write(RawEvent::zeroed());
    // SAFETY: the entry was just initialised by the write above.
    fill(unsafe { entry.assume_init_mut() }, e);
    entry.submit(0);
}

/// Fills the common event fields; the task's ids and comm are read here.
#[inline(always)]
fn fill(ev: &mut RawEvent, e: &Emit) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.kind = e.kind;
    ev.hook = e.hook;
    ev.ts_ns = e.ts_ns;
    ev.begin_ts_ns = e.begin_ts_ns;
    ev.pid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    ev.level_before = e.level_before;
    ev.level_after = e.level_after;
    ev.holder = e.holder;
    ev.flags = e.flags;
    ev.ret = e.ret;
    ev.arg = e.arg;
    ev.bdev = e.bdev;
    ev.stack_id = e.stack_id;
    fill_ident(e.sb, &mut ev.sb);
}

/// A MOUNT_BEGIN record with the call's strings (user memory; unreadable ones stay empty).
#[inline(always)]
fn emit_mount(e: &Emit, source: u64, target: u64, fstype: u64) {
    let Some(mut entry) = EVENTS.reserve::<RawMount>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    entry.write(RawMount { event: RawEvent::zeroed(), source: [0; 64], target: [0; 128], fstype: [0; 16] });
    // SAFETY: the entry was just initialised by the write above.
    let m = unsafe { entry.assume_init_mut() };
    fill(&mut m.event, e);
    // SAFETY: the helper bounds each copy by the destination and fails instead of faulting.
    unsafe {
        if source != 0 {
            let _ = bpf_probe_read_user_str_bytes(source as *const u8, &mut m.source);
        }
        if target != 0 {
            let _ = bpf_probe_read_user_str_bytes(target as *const u8, &mut m.target);
        }
        if fstype != 0 {
            let _ = bpf_probe_read_user_str_bytes(fstype as *const u8, &mut m.fstype);
        }
    }
    entry.submit(0);
}

#[inline(always)]
fn on_begin(begin_kind: u32, hook: u32, sb: u64, holder: u32) {
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let level_before = read_level(sb);
    let pending = Pending { sb, begin_ts_ns: ts, level_before, begin_kind, holder, hook };
    if PENDING.insert(&tid, &pending, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    if begin_kind == kind::FREEZE_BEGIN && sb != 0 {
        watch(sb);
    }
    let mut e = Emit::new(begin_kind, hook, ts, sb);
    e.level_before = level_before;
    e.level_after = level_before;
    e.holder = holder;
    emit(&e);
}

#[inline(always)]
fn on_end(hook: u32, ret: i64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once, before any other map operation.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        return;
    };
    if p.hook != hook {
        return;
    }
    let _ = PENDING.remove(&tid);
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let level_after = read_level(p.sb);
    // Once really unfrozen (whoever's thaw it was, and nested holders included), stop watching.
    if level_after == level::UNFROZEN && p.sb != 0 {
        unwatch(p.sb);
    }
    // Every *_END kind is its *_BEGIN kind + 1.
    let mut e = Emit::new(p.begin_kind + 1, hook, ts, p.sb);
    e.begin_ts_ns = p.begin_ts_ns;
    e.level_before = p.level_before;
    e.level_after = level_after;
    e.holder = p.holder;
    e.ret = ret;
    emit(&e);
}

/// The block device behind a superblock: `s_bdev->bd_dev`, or `s_dev` without a block device.
#[inline(always)]
fn sb_bdev(sb: u64) -> u32 {
    match read_u64(sb + off!(sb_s_bdev)) {
        Ok(bdev) if bdev != 0 => read_u32(bdev + off!(bdev_bd_dev)).unwrap_or(0),
        _ => read_u32(sb + off!(sb_s_dev)).unwrap_or(0),
    }
}

#[inline(always)]
fn gate_lock_addr(sb: u64, index: u64) -> u64 {
    sb + off!(sb_rw_sem) + index * off!(rw_sem_size)
}

/// Id + 1 of the current kernel stack in `STACKS`, 0 when it could not be taken.
#[inline(always)]
fn stack_of<C: StackIdContext>(ctx: &C) -> u32 {
    match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as u32 + 1,
        Err(_) => 0,
    }
}

#[inline(always)]
fn sb_uuid(sb: u64) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    let addr = sb + off!(sb_s_uuid);
    // SAFETY: a fixed-size copy into an array of that size.
    let _ = unsafe { bpf_probe_read_kernel_buf(addr as *const u8, &mut uuid) };
    uuid
}

#[inline(always)]
fn watch(sb: u64) {
    if let Some(p) = ANY_FREEZE.get_ptr_mut(0) {
        // SAFETY: the pointer comes from the map lookup; a racing store writes the same value.
        unsafe { *p = 1 };
    }
    let mut ok = WATCHED_DEVS.insert(&sb_bdev(sb), &sb, 0).is_ok();
    ok &= WATCHED_UUIDS.insert(&sb_uuid(sb), &sb, 0).is_ok();
    if let Ok(dev) = read_u32(sb + off!(sb_s_dev)) {
        ok &= FROZEN_SBS.insert(&dev, &sb, 0).is_ok();
    }
    let mut i = 0u64;
    while i < 3 {
        let gate = GateLock { sb, level: i as u32 + 1, _pad: 0 };
        ok &= GATE_LOCKS.insert(&gate_lock_addr(sb, i), &gate, 0).is_ok();
        i += 1;
    }
    if !ok {
        bump(counter::WATCH_FULL);
    }
}

#[inline(always)]
fn unwatch(sb: u64) {
    let _ = WATCHED_DEVS.remove(&sb_bdev(sb));
    let _ = WATCHED_UUIDS.remove(&sb_uuid(sb));
    if let Ok(dev) = read_u32(sb + off!(sb_s_dev)) {
        let _ = FROZEN_SBS.remove(&dev);
    }
    let mut i = 0u64;
    while i < 3 {
        let _ = GATE_LOCKS.remove(&gate_lock_addr(sb, i));
        i += 1;
    }
}

// syscalls:sys_enter_ioctl: fd at offset 16, cmd at 24 (8-byte slots, stable since syscall
// tracepoints exist). sys_exit_ioctl: ret at 16.
const IOCTL_FD: usize = 16;
const IOCTL_CMD: usize = 24;
const SYSCALL_RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn fw_ioctl_enter(ctx: TracePointContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    // SAFETY: the offsets are inside the tracepoint's record (see the format file).
    let cmd = unsafe { ctx.read_at::<u64>(IOCTL_CMD) }.unwrap_or(0) as u32;
    let begin_kind = match cmd {
        FIFREEZE => kind::FREEZE_BEGIN,
        FITHAW => kind::THAW_BEGIN,
        _ => return 0,
    };
    bump(counter::IOCTL_SEEN);
    hit(hook::TP_IOCTL);
    // SAFETY: as above.
    let fd = unsafe { ctx.read_at::<u64>(IOCTL_FD) }.unwrap_or(u64::MAX) as u32;
    let sb = match sb_from_fd(fd) {
        Ok(sb) => sb,
        Err(_) => {
            bump(counter::READ_FAILED);
            aya_log_ebpf::warn!(&ctx, "freezewatch: no superblock for ioctl fd {}", fd);
            0
        }
    };
    on_begin(begin_kind, hook::TP_IOCTL, sb, holder::USERSPACE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn fw_ioctl_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: the offset is inside the tracepoint's record.
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    on_end(hook::TP_IOCTL, ret);
    0
}

// block:block_bio_queue: dev at 8, sector at 16, nr_sector at 24, rwbs at 28. User space checks
// these against the tracepoint's format file before attaching. rwbs is char[8] up to 6.12 and
// char[10] on 6.18; only its first 8 bytes are read (the W comes first, or after F for a flush).
const BIO_DEV: usize = 8;
const BIO_SECTOR: usize = 16;
const BIO_NR_SECTOR: usize = 24;
const BIO_RWBS: usize = 28;

#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn fw_block_bio_queue(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BLOCK_BIO_QUEUE);
    // SAFETY: the offsets are inside the tracepoint's record.
    let dev = unsafe { ctx.read_at::<u32>(BIO_DEV) }.unwrap_or(0);
    // SAFETY: the key is a plain u32 and the value is copied out at once.
    let watched = unsafe { WATCHED_DEVS.get(&dev) }.copied().or_else(|| {
        // SAFETY: as above.
        let fs_dev = unsafe { BDEV_ALIAS.get(&dev) }.copied()?;
        // SAFETY: as above.
        unsafe { WATCHED_DEVS.get(&fs_dev) }.copied()
    });
    let Some(sb) = watched else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: as above.
    let rwbs = unsafe { ctx.read_at::<[u8; 8]>(BIO_RWBS) }.unwrap_or([0; 8]);
    if !rwbs.contains(&b'W') {
        return 0;
    }
    // Writes while the freeze is still syncing (levels 1-3) are the freeze's own writeback.
    let level = read_level(sb);
    if level != level::COMPLETE {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::BLOCK_WRITE, hook::TP_BLOCK_BIO_QUEUE, ts, sb);
    e.level_before = level;
    e.level_after = level;
    // SAFETY: the offsets are inside the tracepoint's record.
    e.arg = unsafe { ctx.read_at::<u64>(BIO_SECTOR) }.unwrap_or(0);
    // SAFETY: as above.
    e.flags = unsafe { ctx.read_at::<u32>(BIO_NR_SECTOR) }.unwrap_or(0).saturating_mul(512);
    e.bdev = dev;
    e.stack_id = stack_of(&ctx);
    emit(&e);
    0
}

/// A transaction start on `sb` (looked up by the caller): emitted while freezing or frozen only.
#[inline(always)]
fn on_txn<C: StackIdContext>(ctx: &C, hook: u32, sb: u64, caller: u64, flags: u32) {
    let level = read_level(sb);
    if level == level::UNFROZEN || level == level::UNKNOWN {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::TXN_START, hook, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.arg = caller;
    e.flags = flags;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

#[inline(always)]
fn watched_dev(dev: u32) -> Option<u64> {
    // SAFETY: the value is copied out at once.
    let sb = unsafe { WATCHED_DEVS.get(&dev) }.copied();
    if sb.is_none() {
        bump(counter::FILTERED);
    }
    sb
}

/// A transaction-start tracepoint whose record names the device: the fields' offsets are given
/// (`flags_at` None when the record has no flags), and user space checked them against the
/// format file before attaching.
#[inline(always)]
fn dev_txn(ctx: &TracePointContext, hook: u32, dev_at: usize, ip_at: usize, flags_at: Option<usize>) -> u32 {
    hit(hook);
    // SAFETY: the offsets are inside the tracepoint's record.
    let dev = unsafe { ctx.read_at::<u32>(dev_at) }.unwrap_or(0);
    if let Some(sb) = watched_dev(dev) {
        // SAFETY: as above.
        let ip = unsafe { ctx.read_at::<u64>(ip_at) }.unwrap_or(0);
        // SAFETY: as above.
        let flags = flags_at.map_or(0, |at| unsafe { ctx.read_at::<u32>(at) }.unwrap_or(0));
        on_txn(ctx, hook, sb, ip, flags);
    }
    0
}

// ext4:ext4_journal_start_sb: dev 8, ip 16, type 36. ext4_journal_start_inode: dev 16, ip 24, type 44.
#[tracepoint(category = "ext4", name = "ext4_journal_start_sb")]
pub fn fw_ext4_journal_start_sb(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, 8, 16, Some(36))
}

#[tracepoint(category = "ext4", name = "ext4_journal_start_inode")]
pub fn fw_ext4_journal_start_inode(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, 16, 24, Some(44))
}

// ext4:ext4_journal_start (up to 6.4, before the _sb/_inode split): dev 8, ip 16; no handle type.
#[tracepoint(category = "ext4", name = "ext4_journal_start")]
pub fn fw_ext4_journal_start(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_EXT4_JOURNAL_START, 8, 16, None)
}

// xfs:xfs_trans_alloc: dev 8, flags 16, caller_ip 24.
#[tracepoint(category = "xfs", name = "xfs_trans_alloc")]
pub fn fw_xfs_trans_alloc(ctx: TracePointContext) -> u32 {
    dev_txn(&ctx, hook::TP_XFS_TRANS_ALLOC, 8, 24, Some(16))
}

// btrfs:btrfs_space_reservation: fsid[16] at 8, type (__data_loc: offset in the low 16 bits) at
// 24, bytes at 40, reserve at 48. Only reservations of type "transaction" are transaction starts.
#[tracepoint(category = "btrfs", name = "btrfs_space_reservation")]
pub fn fw_btrfs_space_reservation(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BTRFS_TXN_RESERVE);
    // SAFETY: the offsets are inside the tracepoint's record (checked by user space).
    let (fsid, loc, reserve) = unsafe {
        (
            ctx.read_at::<[u8; 16]>(8).unwrap_or([0; 16]),
            ctx.read_at::<u32>(24).unwrap_or(0),
            ctx.read_at::<i32>(48).unwrap_or(0),
        )
    };
    if reserve == 0 {
        return 0;
    }
    // SAFETY: the value is copied out at once.
    let Some(sb) = unsafe { WATCHED_UUIDS.get(&fsid) }.copied() else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: the data_loc offset points inside the record; the read is bounded to 12 bytes.
    let ty = unsafe { ctx.read_at::<[u8; 12]>((loc & 0xffff) as usize) }.unwrap_or([0; 12]);
    if &ty != b"transaction\0" {
        return 0;
    }
    // SAFETY: as above.
    let bytes = unsafe { ctx.read_at::<u64>(40) }.unwrap_or(0);
    on_txn(&ctx, hook::TP_BTRFS_TXN_RESERVE, sb, 0, bytes.min(u64::from(u32::MAX)) as u32);
    0
}

// btrfs:btrfs_transaction_commit: fsid[16] at 8.
#[tracepoint(category = "btrfs", name = "btrfs_transaction_commit")]
pub fn fw_btrfs_transaction_commit(ctx: TracePointContext) -> u32 {
    hit(hook::TP_BTRFS_COMMIT);
    // SAFETY: as above.
    let fsid = unsafe { ctx.read_at::<[u8; 16]>(8) }.unwrap_or([0; 16]);
    // SAFETY: the value is copied out at once.
    match unsafe { WATCHED_UUIDS.get(&fsid) }.copied() {
        Some(sb) => on_txn(&ctx, hook::TP_BTRFS_COMMIT, sb, 0, 0),
        None => bump(counter::FILTERED),
    }
    0
}

/// A btrfs transaction handle returned to its caller (fexit; `nargs` is the function's parameter
/// count, the slot after the parameters holds the return value). The start functions reserve
/// space and only then wait at the freeze gate (`sb_start_intwrite`), so the exit is where a
/// start is known to have got past it: a caller still waiting returns only after the thaw.
#[inline(always)]
fn btrfs_txn_exit(ctx: &FExitContext, nargs: usize) -> u32 {
    if off!(valid) == 0 || off!(btrfs_fs_info_sb) == 0 {
        return 0;
    }
    hit(hook::FEXIT_BTRFS_TXN);
    let handle: u64 = ctx.arg(nargs);
    // NULL or ERR_PTR(-errno): no transaction was started.
    if handle == 0 || handle >= (-4095i64) as u64 {
        return 0;
    }
    let root: u64 = ctx.arg(0);
    let sb =
        match read_u64(root + off!(btrfs_root_fs_info)).and_then(|f| read_u64(f + off!(btrfs_fs_info_sb))) {
            Ok(sb) if sb != 0 => sb,
            _ => {
                bump(counter::READ_FAILED);
                return 0;
            }
        };
    // Only superblocks seen freezing while we run, like every other transaction hook.
    let dev = read_u32(sb + off!(sb_s_dev)).unwrap_or(0);
    // SAFETY: the value is only tested for presence.
    if unsafe { FROZEN_SBS.get(&dev) }.is_none() {
        bump(counter::FILTERED);
        return 0;
    }
    let items: u64 = if nargs > 1 { ctx.arg(1) } else { 0 };
    on_txn(ctx, hook::FEXIT_BTRFS_TXN, sb, 0, items as u32);
    0
}

// These three are module functions when btrfs is a module: aya attaches fexit to vmlinux BTF
// only, so user space loads them itself (`module_fexit`) with the module's BTF object.
#[fexit(function = "btrfs_start_transaction")]
pub fn fw_btrfs_start_transaction_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 2)
}

#[fexit(function = "btrfs_start_transaction_fallback_global_rsv")]
pub fn fw_btrfs_start_transaction_rsv_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 2)
}

#[fexit(function = "btrfs_join_transaction")]
pub fn fw_btrfs_join_transaction_exit(ctx: FExitContext) -> u32 {
    btrfs_txn_exit(&ctx, 1)
}

// lock:contention_begin: lock_addr at 8, flags at 16. contention_end: lock_addr at 8, ret at 16.
const LOCK_ADDR: usize = 8;
const LOCK_FLAGS: usize = 16;
const LOCK_RET: usize = 16;
/// `LCB_F_READ`: a reader waiting. Writers held at a gate wait for reading; freeze_super itself
/// contends for writing (LCB_F_WRITE) while it drains them, and is not a blocked writer.
const LCB_F_READ: u32 = 1 << 1;

#[tracepoint(category = "lock", name = "contention_begin")]
pub fn fw_contention_begin(ctx: TracePointContext) -> u32 {
    hit(hook::TP_LOCK_CONTENTION);
    // SAFETY: the offset is inside the tracepoint's record.
    let lock = unsafe { ctx.read_at::<u64>(LOCK_ADDR) }.unwrap_or(0);
    // SAFETY: the value is copied out at once.
    let Some(gate) = (unsafe { GATE_LOCKS.get(&lock) }).copied() else {
        bump(counter::FILTERED);
        return 0;
    };
    // SAFETY: the offset is inside the tracepoint's record.
    if unsafe { ctx.read_at::<u32>(LOCK_FLAGS) }.unwrap_or(0) & LCB_F_READ == 0 {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let waiting = Waiting { sb: gate.sb, lock, begin_ts_ns: ts, level: gate.level, _pad: 0 };
    if WAITING.insert(&tid, &waiting, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    let level = read_level(gate.sb);
    let mut e = Emit::new(kind::WRITER_BLOCKED, hook::TP_LOCK_CONTENTION, ts, gate.sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = gate.level;
    emit(&e);
    0
}

#[tracepoint(category = "lock", name = "contention_end")]
pub fn fw_contention_end(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(w) = (unsafe { WAITING.get(&tid) }).copied() else {
        return 0;
    };
    // SAFETY: the offset is inside the tracepoint's record.
    if unsafe { ctx.read_at::<u64>(LOCK_ADDR) }.unwrap_or(0) != w.lock {
        return 0;
    }
    let _ = WAITING.remove(&tid);
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let level = read_level(w.sb);
    let mut e = Emit::new(kind::WRITER_UNBLOCKED, hook::TP_LOCK_CONTENTION, ts, w.sb);
    e.begin_ts_ns = w.begin_ts_ns;
    e.level_before = level;
    e.level_after = level;
    e.flags = w.level;
    // SAFETY: the offset is inside the tracepoint's record.
    e.ret = i64::from(unsafe { ctx.read_at::<i32>(LOCK_RET) }.unwrap_or(0));
    emit(&e);
    0
}

/// Starts a pending MOUNT operation for this thread and emits its begin record.
#[inline(always)]
fn on_mount_begin(api: u32, sb: u64, flags: u64, source: u64, target: u64, fstype: u64) {
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let tid = bpf_get_current_pid_tgid() as u32;
    let level = read_level(sb);
    let pending = Pending {
        sb,
        begin_ts_ns: ts,
        level_before: level,
        begin_kind: kind::MOUNT_BEGIN,
        holder: 0,
        hook: hook::TP_SYS_MOUNT,
    };
    if PENDING.insert(&tid, &pending, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    let mut e = Emit::new(kind::MOUNT_BEGIN, hook::TP_SYS_MOUNT, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = api;
    e.arg = flags;
    emit_mount(&e, source, target, fstype);
}

// syscalls:sys_enter_mount: dev_name 16, dir_name 24, type 32, flags 40.
#[tracepoint(category = "syscalls", name = "sys_enter_mount")]
pub fn fw_mount_enter(ctx: TracePointContext) -> u32 {
    hit(hook::TP_SYS_MOUNT);
    if off!(valid) == 0 {
        return 0;
    }
    // SAFETY: the offsets are inside the tracepoint's record (checked by user space).
    let (source, target, fstype, flags) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(32).unwrap_or(0),
            ctx.read_at::<u64>(40).unwrap_or(0),
        )
    };
    on_mount_begin(mount_api::MOUNT, 0, flags, source, target, fstype);
    0
}

// syscalls:sys_enter_move_mount: from_dfd 16, from_pathname 24, to_pathname 40, flags 48.
#[tracepoint(category = "syscalls", name = "sys_enter_move_mount")]
pub fn fw_move_mount_enter(ctx: TracePointContext) -> u32 {
    hit(hook::TP_SYS_MOUNT);
    if off!(valid) == 0 {
        return 0;
    }
    // SAFETY: as above.
    let (from_dfd, from_path, to_path, flags) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(u64::MAX),
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(40).unwrap_or(0),
            ctx.read_at::<u64>(48).unwrap_or(0),
        )
    };
    // With an empty from_pathname (MOVE_MOUNT_F_EMPTY_PATH, how fsmount results are attached)
    // from_dfd is the mount itself: its file's superblock is the one being attached.
    let mut first = [0u8; 2];
    // SAFETY: a bounded copy from user memory.
    let empty = from_path == 0
        || unsafe { bpf_probe_read_user_str_bytes(from_path as *const u8, &mut first) }
            .map_or(true, |s| s.is_empty());
    let sb = if empty { sb_from_fd(from_dfd as u32).unwrap_or(0) } else { 0 };
    on_mount_begin(mount_api::MOVE_MOUNT, sb, flags, from_path, to_path, 0);
    0
}

// syscalls:sys_enter_fsopen: _fs_name 16. sys_enter_fsconfig: fd 16, cmd 24, _key 32, _value 40.
// sys_enter_fsmount: fs_fd 16. Their exits share on_end with mount(2).
#[tracepoint(category = "syscalls", name = "sys_enter_fsopen")]
pub fn fw_fsopen_enter(ctx: TracePointContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    hit(hook::TP_SYS_MOUNT);
    // SAFETY: the offset is inside the tracepoint's record.
    let name = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0);
    on_mount_begin(mount_api::FSOPEN, 0, 0, 0, 0, name);
    0
}

const FSCONFIG_SET_STRING: u64 = 1;

#[tracepoint(category = "syscalls", name = "sys_enter_fsconfig")]
pub fn fw_fsconfig_enter(ctx: TracePointContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    hit(hook::TP_SYS_MOUNT);
    // SAFETY: the offsets are inside the tracepoint's record.
    let (cmd, key, value) = unsafe {
        (
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(32).unwrap_or(0),
            ctx.read_at::<u64>(40).unwrap_or(0),
        )
    };
    // Only string settings have a readable value; other commands keep the key alone.
    let value = if cmd == FSCONFIG_SET_STRING { value } else { 0 };
    on_mount_begin(mount_api::FSCONFIG, 0, cmd, key, value, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_fsmount")]
pub fn fw_fsmount_enter(ctx: TracePointContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    hit(hook::TP_SYS_MOUNT);
    // SAFETY: the offset is inside the tracepoint's record.
    let flags = unsafe { ctx.read_at::<u64>(24) }.unwrap_or(0);
    on_mount_begin(mount_api::FSMOUNT, 0, flags, 0, 0, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsopen")]
pub fn fw_fsopen_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsconfig")]
pub fn fw_fsconfig_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_fsmount")]
pub fn fw_fsmount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

/// The exit of any mount-family call: ends the thread's pending MOUNT operation.
#[inline(always)]
fn mount_call_exit(ctx: &TracePointContext) -> u32 {
    // SAFETY: the offset is inside the tracepoint's record.
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    on_end(hook::TP_SYS_MOUNT, ret);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mount")]
pub fn fw_mount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_move_mount")]
pub fn fw_move_mount_exit(ctx: TracePointContext) -> u32 {
    mount_call_exit(&ctx)
}

const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;

/// The superblock of `inode` when it is a regular file on a watched (freezing or frozen)
/// superblock: writes to anything else cannot slip past a freeze.
#[inline(always)]
fn watched_regular_file(inode: u64) -> Option<u64> {
    let mode_addr = inode + off!(inode_i_mode);
    // SAFETY: as read_u64.
    let mode = unsafe { bpf_probe_read_kernel(mode_addr as *const u16) }.unwrap_or(0);
    if mode & S_IFMT != S_IFREG {
        return None;
    }
    let sb = read_u64(inode + off!(inode_i_sb)).ok()?;
    // Watched: its block device maps back to this very superblock.
    // SAFETY: the value is copied out at once.
    if unsafe { WATCHED_DEVS.get(&sb_bdev(sb)) }.copied() != Some(sb) {
        bump(counter::FILTERED);
        return None;
    }
    Some(sb)
}

/// A write syscall's fd: remembered when it is a regular file on a watched superblock.
#[inline(always)]
fn on_write_enter(ctx: &TracePointContext) -> u32 {
    if ANY_FREEZE.get(0).copied().unwrap_or(0) == 0 {
        return 0;
    }
    hit(hook::TP_SYS_WRITE);
    // SAFETY: the offset is inside the tracepoint's record (checked by user space).
    let fd = unsafe { ctx.read_at::<u64>(IOCTL_FD) }.unwrap_or(u64::MAX) as u32;
    let Some(sb) = inode_from_fd(fd).ok().and_then(watched_regular_file) else { return 0 };
    let tid = bpf_get_current_pid_tgid() as u32;
    if WRITING.insert(&tid, &sb, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
    0
}

#[inline(always)]
fn on_write_exit(ctx: &TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(sb) = unsafe { WRITING.get(&tid) }.copied() else { return 0 };
    let _ = WRITING.remove(&tid);
    // SAFETY: the offset is inside the tracepoint's record.
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    if ret > 0 {
        write_done(ctx, hook::TP_SYS_WRITE, sb, ret);
    }
    0
}

/// A write of `ret` bytes to a regular file on watched `sb` returned: it went past the gate if
/// the superblock is still at level COMPLETE.
#[inline(always)]
fn write_done<C: StackIdContext>(ctx: &C, hook: u32, sb: u64, ret: i64) {
    let level = read_level(sb);
    if level != level::COMPLETE {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::WRITE_DONE, hook, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.arg = ret as u64;
    e.ret = ret;
    e.stack_id = stack_of(ctx);
    emit(&e);
}

/// fexit on `vfs_write(file, buf, count, pos)`: the first choice for completed writes, since it
/// also sees writes that come through no write syscall (io_uring, aio, kernel writers).
#[fexit(function = "vfs_write")]
pub fn fw_vfs_write_exit(ctx: FExitContext) -> u32 {
    if off!(valid) == 0 || ANY_FREEZE.get(0).copied().unwrap_or(0) == 0 {
        return 0;
    }
    hit(hook::FEXIT_VFS_WRITE);
    let ret = ctx.ret::<i64>().unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    let Some(sb) = read_u64(file + off!(file_f_inode)).ok().and_then(watched_regular_file) else { return 0 };
    write_done(&ctx, hook::FEXIT_VFS_WRITE, sb, ret);
    0
}

macro_rules! write_syscall {
    ($enter:ident, $exit:ident, $tp_enter:literal, $tp_exit:literal) => {
        #[tracepoint(category = "syscalls", name = $tp_enter)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_write_enter(&ctx)
        }

        #[tracepoint(category = "syscalls", name = $tp_exit)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_write_exit(&ctx)
        }
    };
}

write_syscall!(fw_write_enter, fw_write_exit, "sys_enter_write", "sys_exit_write");
write_syscall!(fw_pwrite64_enter, fw_pwrite64_exit, "sys_enter_pwrite64", "sys_exit_pwrite64");
write_syscall!(fw_writev_enter, fw_writev_exit, "sys_enter_writev", "sys_exit_writev");
write_syscall!(fw_pwritev_enter, fw_pwritev_exit, "sys_enter_pwritev", "sys_exit_pwritev");
write_syscall!(fw_pwritev2_enter, fw_pwritev2_exit, "sys_enter_pwritev2", "sys_exit_pwritev2");

/// The holder (`enum freeze_holder who`, argument 1) exists from 6.6 on; before that it is unknown.
#[inline(always)]
fn holder_arg(ctx: *mut core::ffi::c_void) -> u32 {
    if off!(freeze_super_nargs) < 2 {
        return holder::UNKNOWN;
    }
    let mut who: u64 = 0;
    // SAFETY: bpf_get_func_arg checks the index against the traced function's arity.
    if unsafe { bpf_get_func_arg(ctx, 1, &raw mut who) } != 0 {
        return holder::UNKNOWN;
    }
    who as u32
}

#[fentry(function = "freeze_super")]
pub fn fw_freeze_super_entry(ctx: FEntryContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    bump(counter::FENTRY_SEEN);
    hit(hook::FENTRY_FREEZE);
    let sb: u64 = ctx.arg(0);
    on_begin(kind::FREEZE_BEGIN, hook::FENTRY_FREEZE, sb, holder_arg(ctx.as_ptr()));
    0
}

#[fexit(function = "freeze_super")]
pub fn fw_freeze_super_exit(ctx: FExitContext) -> u32 {
    let ret = ctx.ret::<i64>().unwrap_or(0) as i32;
    on_end(hook::FENTRY_FREEZE, ret as i64);
    0
}

#[fentry(function = "thaw_super")]
pub fn fw_thaw_super_entry(ctx: FEntryContext) -> u32 {
    if off!(valid) == 0 {
        return 0;
    }
    bump(counter::FENTRY_SEEN);
    hit(hook::FENTRY_FREEZE);
    let sb: u64 = ctx.arg(0);
    on_begin(kind::THAW_BEGIN, hook::FENTRY_FREEZE, sb, holder_arg(ctx.as_ptr()));
    0
}

#[fexit(function = "thaw_super")]
pub fn fw_thaw_super_exit(ctx: FExitContext) -> u32 {
    let ret = ctx.ret::<i64>().unwrap_or(0) as i32;
    on_end(hook::FENTRY_FREEZE, ret as i64);
    0
}

// ---- Mount denial (BPF LSM) -------------------------------------------------------------------
//
// Loaded only with --deny-mounts. Each program finds the superblock a mount would expose and
// reads that superblock's own freeze level: the gate is closed exactly while the kernel says it is
// freezing or frozen (nested holders included), and nothing is counted here. Every error allows
// the mount (fail open), and a verdict already given by an earlier LSM is passed on untouched.

const EPERM: i32 = 1;
const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;

#[inline(always)]
fn mount_gate(lsm: u64, sb: u64) -> i32 {
    // SAFETY: DENY_MODE is a static that lives for the whole program; volatile so that the value
    // user space set at load time is read, not the default it was compiled with.
    let mode = unsafe { core::ptr::read_volatile(&raw const DENY_MODE) };
    if mode == deny::OFF || sb == 0 || off!(valid) == 0 {
        return 0;
    }
    let level = read_level(sb);
    if level == level::UNFROZEN || level == level::UNKNOWN {
        return 0;
    }
    let verdict = if mode == deny::ENFORCE { -EPERM } else { 0 };
    // SAFETY: the helper has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut e = Emit::new(kind::MOUNT_DENIED, hook::LSM_MOUNT, ts, sb);
    e.level_before = level;
    e.level_after = level;
    e.flags = mode;
    e.arg = lsm;
    e.ret = verdict as i64;
    emit(&e);
    verdict
}

/// mount(2) of a filesystem's device (a new mount of an existing superblock) reaches here with
/// the superblock, before the mount is attached.
#[lsm(hook = "sb_kern_mount")]
pub fn fw_lsm_sb_kern_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(1);
    if retval != 0 {
        return retval;
    }
    mount_gate(lsm_hook::SB_KERN_MOUNT, ctx.arg(0))
}

/// move_mount(2) attaches a detached mount (fsmount, open_tree): its superblock is
/// `from_path->mnt->mnt_sb`.
#[lsm(hook = "move_mount")]
pub fn fw_lsm_move_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(2);
    if retval != 0 {
        return retval;
    }
    let from_path: u64 = ctx.arg(0);
    let sb = read_u64(from_path + off!(path_mnt)).and_then(|mnt| read_u64(mnt + off!(vfsmount_mnt_sb)));
    mount_gate(lsm_hook::MOVE_MOUNT, sb.unwrap_or(0))
}

/// A bind mount: the LSM sees only the source path string (the kernel resolves it afterwards),
/// so the filesystem it lies on is found by longest-prefix match against the mount points.
#[lsm(hook = "sb_mount")]
pub fn fw_lsm_sb_mount(ctx: LsmContext) -> i32 {
    hit(hook::LSM_MOUNT);
    let retval: i32 = ctx.arg(5);
    if retval != 0 {
        return retval;
    }
    let flags: u64 = ctx.arg(3);
    if flags & MS_BIND == 0 || flags & MS_REMOUNT != 0 {
        return 0;
    }
    mount_gate(lsm_hook::SB_MOUNT_BIND, bind_source_sb(ctx.arg(0)).unwrap_or(0))
}

/// The superblock (seen freezing while we run) that the absolute path `dev_name` lies on.
#[inline(always)]
fn bind_source_sb(dev_name: u64) -> Option<u64> {
    let key = PATH_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the pointer comes from the map lookup and is this CPU's slot; nothing else on this
    // CPU uses it while the program runs.
    let key = unsafe { &mut *key };
    // SAFETY: the helper bounds the copy by the destination and fails instead of faulting.
    let len = unsafe { bpf_probe_read_kernel_str_bytes(dev_name as *const u8, &mut key.data) }.ok()?.len();
    if len == 0 || key.data[0] != b'/' {
        return None; // relative source: not matched (fail open)
    }
    // Mount points are stored with a trailing '/', so "/mnt/a" matches "/mnt/a/..." only.
    let mut bytes = len;
    if key.data[(len - 1) & (PATH_MAX_KEY - 1)] != b'/' {
        if len >= PATH_MAX_KEY {
            return None;
        }
        key.data[len & (PATH_MAX_KEY - 1)] = b'/';
        bytes = len + 1;
    }
    key.prefix_len = (bytes * 8) as u32;
    let dev = *MOUNT_PATHS.get(&*key)?;
    // SAFETY: the key is a plain u32 and the value is copied out at once.
    unsafe { FROZEN_SBS.get(&dev) }.copied()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible licence: required for bpf_probe_read_kernel and for tracing programs.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
