//! Every feature freezewatch records, as a chain of attempts, best first: the first attempt that
//! attaches in full wins, the reasons the ones before it failed become its fallbacks, and
//! `when_none` says what happens when none attaches. The loader walks this table; nothing else
//! decides which program goes where.
//!
//! Longer than 500 lines on purpose: the table of every chain is read (and reviewed) in one piece,
//! as the README's hook table is; what it is made of and its tests take the rest.
use freeze_common::syscall_feature;
use freeze_common::tp::{self, TpField};
use freeze_model::coverage::Feature;

/// A tracepoint program and the record fields it reads (checked against tracefs first).
pub(super) struct TpProg {
    pub program: &'static str,
    pub category: &'static str,
    pub tracepoint: &'static str,
    pub fields: &'static [TpField],
}

/// An fentry or fexit program on a kernel function.
#[derive(Clone, Copy)]
pub(super) struct TracingProg {
    pub program: &'static str,
    pub function: &'static str,
    pub exit: bool,
}

/// A BTF-typed raw tracepoint program (`tp_btf`): no perf event, so detaching it waits for no
/// RCU grace period.
pub(super) struct BtfTpProg {
    pub program: &'static str,
    /// The tracepoint, as its BTF typedef names it (`btf_trace_<this>`).
    pub tracepoint: &'static str,
}

/// A raw tracepoint program (`raw_tp`): the tracepoint's arguments, untyped; no perf event,
/// and module tracepoints attach by name like any other.
pub(super) struct RawTpProg {
    pub program: &'static str,
    pub tracepoint: &'static str,
}

/// A BPF LSM program on an LSM hook.
pub(super) struct LsmProg {
    pub program: &'static str,
    pub hook: &'static str,
}

/// How one attempt attaches: all of its programs, or none of them stay loaded.
pub(super) enum Programs {
    /// fentry/fexit on vmlinux functions (aya); needs the tracing program types.
    Tracing(&'static [TracingProg]),
    /// Tracepoints (aya).
    Tracepoints(&'static [TpProg]),
    /// BTF-typed raw tracepoints (aya).
    BtfTracepoints(&'static [BtfTpProg]),
    /// fexit on a module's functions, loaded outside aya (`module_fexit`: aya 0.14 attaches to
    /// vmlinux BTF only), then tracepoints.
    ModuleFexit { module: &'static str, progs: &'static [TracingProg], then: &'static [TpProg] },
    /// BPF LSM (aya), where the BPF LSM is active.
    Lsm(&'static [LsmProg]),
    /// Raw tracepoints (aya); with a module, only where the offsets into that module's structs
    /// resolved (see `module_fexit`).
    RawTracepoints { module: Option<&'static str>, progs: &'static [RawTpProg] },
    /// The syscall dispatcher (`SYSCALL_DISPATCHER`, attached once for every feature that
    /// chooses it), handling this `freeze_common::syscall_feature` bit's syscalls.
    Syscalls(u32),
}

impl Programs {
    /// The names of every program of this attempt in the eBPF object (for the syscall dispatcher,
    /// its shared pair).
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            Self::Tracing(p) => p.iter().map(|p| p.program).collect(),
            Self::Tracepoints(p) => p.iter().map(|p| p.program).collect(),
            Self::BtfTracepoints(p) => p.iter().map(|p| p.program).collect(),
            Self::ModuleFexit { progs, then, .. } => {
                progs.iter().map(|p| p.program).chain(then.iter().map(|p| p.program)).collect()
            }
            Self::Lsm(p) => p.iter().map(|p| p.program).collect(),
            Self::Syscalls(_) => SYSCALL_DISPATCHER.iter().map(|p| p.program).collect(),
            Self::RawTracepoints { progs, .. } => progs.iter().map(|p| p.program).collect(),
        }
    }

    /// Whether this attempt uses tracing programs (fentry/fexit), which
    /// `FREEZEWATCH_NO_FENTRY=1` turns off so that the fallbacks can be tested anywhere.
    pub fn is_tracing(&self) -> bool {
        matches!(self, Self::Tracing(_) | Self::ModuleFexit { .. })
    }
}

pub(super) struct Attempt {
    /// The hook's name in traces and `doctor` (for freeze/thaw, an `event::Hook` name).
    pub hook: &'static str,
    /// What tells this attempt from others with the same hook (the kernel generation it is
    /// for): `FREEZEWATCH_SKIP_HOOKS` and the fallbacks name it as `hook(variant)`.
    pub variant: Option<&'static str>,
    pub programs: Programs,
    /// What this hook cannot see, when it attached.
    pub limits: Option<&'static str>,
    /// What the programs need of the kernel's types beyond loading: some load and attach on a
    /// kernel whose types differ, and would read the wrong thing there.
    pub needs: &'static [Need],
}

/// A kernel type an attempt's programs rely on, checked in BTF before they attach.
#[derive(Clone, Copy, Debug)]
pub(super) enum Need {
    /// A struct field they read.
    Field { strukt: &'static str, path: &'static [&'static str] },
    /// A tracepoint's arguments, as the program reads them (after the tracepoint's own data).
    TracepointArgs { tracepoint: &'static str, args: u32 },
    /// A function's parameters `params`, one after the other, the first of them at one of the
    /// indexes `at` (where the programs read them; more than one: `OFFSETS` says which).
    Params { func: &'static str, params: &'static [&'static str], at: &'static [u32] },
}

impl Attempt {
    /// The attempt's own name: its hook, with its variant where it has one.
    pub fn id(&self) -> String {
        match self.variant {
            Some(v) => format!("{}({v})", self.hook),
            None => self.hook.to_owned(),
        }
    }

    /// Whether `name` (from `FREEZEWATCH_SKIP_HOOKS`) picks this attempt: its hook (every
    /// attempt with that hook) or its own name.
    pub fn named(&self, name: &str) -> bool {
        name == self.hook || name == self.id()
    }

    /// The same attempt, told from the others with its hook by `variant`.
    const fn variant(self, variant: &'static str) -> Self {
        Self { variant: Some(variant), ..self }
    }
}

impl Need {
    /// Why `btf` does not meet this need, if it does not.
    pub(super) fn unmet(&self, btf: &crate::host::btf::Btf) -> Option<String> {
        match *self {
            Need::Field { strukt, path } => {
                btf.field(strukt, path).err().map(|e| format!("needs {strukt}.{} ({e})", path.join(".")))
            }
            Need::TracepointArgs { tracepoint, args } => match btf.tracepoint_nargs(tracepoint) {
                Ok(n) if n == args => None,
                Ok(n) => Some(format!(
                    "needs tracepoint {tracepoint} with {args} argument(s); this kernel's has {n}"
                )),
                Err(e) => Some(format!("needs tracepoint {tracepoint} ({e})")),
            },
            Need::Params { func, params, at } => {
                let wanted = || format!("needs {func}({}, ...) from argument {at:?}", params.join(", "));
                let mut first = None;
                for (i, param) in params.iter().enumerate() {
                    match btf.func_param(func, param) {
                        Ok((index, _)) if first.is_none() && at.contains(&index) => first = Some(index),
                        Ok((index, _)) if first.is_some_and(|f| index == f + i as u32) => {}
                        Ok(_) => return Some(wanted()),
                        Err(e) => return Some(format!("{} ({e})", wanted())),
                    }
                }
                None
            }
        }
    }
}

/// What happens when no attempt of a feature attaches.
pub(super) enum WhenNone {
    /// Recording cannot do its job without it: loading fails.
    Fail,
    /// Recording goes on; the feature is reported with this limit.
    Record(&'static str),
}

pub(super) struct FeatureSpec {
    pub name: Feature,
    pub chain: &'static [Attempt],
    pub when_none: WhenNone,
    /// Attached only when `--deny-mounts` asks for it.
    pub on_request: bool,
}

/// One pair of `tp_btf` programs on the raw syscall tracepoints that dispatch on the syscall
/// number, for every feature that watches syscalls: the `syscalls:*` tracepoints' perf events
/// each wait for RCU grace periods to detach (see docs/benchmarks.md, start and stop).
pub(super) const SYSCALL_DISPATCHER: &[BtfTpProg] = &[
    BtfTpProg { program: "fw_sys_enter", tracepoint: "sys_enter" },
    BtfTpProg { program: "fw_sys_exit", tracepoint: "sys_exit" },
];

/// What the ioctl hooks cannot see.
const IOCTL_LIMITS: &str = "sees FIFREEZE/FITHAW ioctls only; kernel-internal freezes (block-device freeze, \
                            device-mapper, suspend) are not seen";

/// What the writeback tracepoints cannot see.
const WRITEBACK_LIMITS: &str = "a loop device's backing file is seen when a page of it turns dirty: writes to a page of \
     it not yet written back, and writes to one on tmpfs (whose pages turn dirty without the \
     tracepoint) are not seen; an O_DIRECT write to it is seen as a bio over its blocks (file-extents) \
     where they were mapped";

const MARK_INODE_DIRTY: BtfTpProg =
    BtfTpProg { program: "fw_mark_inode_dirty", tracepoint: "writeback_mark_inode_dirty" };

/// The writeback tracepoints' attempt, with the page-cache tracepoint of one kernel generation.
const fn writeback(programs: &'static [BtfTpProg]) -> Attempt {
    Attempt {
        hook: "tp_btf:writeback",
        variant: None,
        programs: Programs::BtfTracepoints(programs),
        limits: Some(WRITEBACK_LIMITS),
        needs: &[],
    }
}

/// What the fallocate/ftruncate syscall hooks cannot see.
const BACKING_LIMITS: &str = "truncate(2) by path, O_TRUNC opens and fallocates from inside the kernel (nfsd, ksmbd) \
                              of a backing file are not seen";

/// What every feature that records nothing says.
const RECORDS_NOTHING: &str = "unavailable: this feature records nothing";

/// The level probe (`watch` at start), attached on its own: it is no feature's hook, and a
/// recording without it only lacks `frozen-at-start`.
pub(super) const LEVEL_PROBE: TpProg =
    tp(freeze_common::names::LEVEL_PROBE_PROGRAM, "syscalls", "sys_enter_ioctl", tp::sys::IOCTL_ENTER);

const fn tp(
    program: &'static str,
    category: &'static str,
    tracepoint: &'static str,
    fields: &'static [TpField],
) -> TpProg {
    TpProg { program, category, tracepoint, fields }
}

const fn raw(program: &'static str, tracepoint: &'static str) -> RawTpProg {
    RawTpProg { program, tracepoint }
}

const fn fexit(program: &'static str, function: &'static str) -> TracingProg {
    TracingProg { program, function, exit: true }
}

const fn fentry(program: &'static str, function: &'static str) -> TracingProg {
    TracingProg { program, function, exit: false }
}

const fn attempt(hook: &'static str, programs: Programs) -> Attempt {
    Attempt { hook, variant: None, programs, limits: None, needs: &[] }
}

const fn feature(name: Feature, chain: &'static [Attempt]) -> FeatureSpec {
    FeatureSpec { name, chain, when_none: WhenNone::Record(RECORDS_NOTHING), on_request: false }
}

const BTRFS_COMMIT: TpProg =
    tp("fw_btrfs_transaction_commit", "btrfs", "btrfs_transaction_commit", tp::btrfs::TRANSACTION_COMMIT);

/// fentry/fexit on the superblock's freeze and thaw: every freeze path.
const FREEZE_SUPER: [TracingProg; 4] = [
    fentry("fw_freeze_super_entry", "freeze_super"),
    fexit("fw_freeze_super_exit", "freeze_super"),
    fentry("fw_thaw_super_entry", "thaw_super"),
    fexit("fw_thaw_super_exit", "thaw_super"),
];

/// fentry/fexit on the block-device freeze and thaw (`bdev_freeze`/`bdev_thaw`, before 6.8
/// `freeze_bdev`/`thaw_bdev`): they mark the thread for the freeze_super/thaw_super they call.
const fn bdev_calls(freeze: &'static str, thaw: &'static str) -> [TracingProg; 4] {
    [
        fentry("fw_bdev_freeze_entry", freeze),
        fexit("fw_bdev_freeze_exit", freeze),
        fentry("fw_bdev_thaw_entry", thaw),
        fexit("fw_bdev_thaw_exit", thaw),
    ]
}

const fn with_freeze_super(bdev: [TracingProg; 4]) -> [TracingProg; 8] {
    let f = FREEZE_SUPER;
    [bdev[0], bdev[1], bdev[2], bdev[3], f[0], f[1], f[2], f[3]]
}

/// From 6.8: the block-device calls, the filesystem's holder operations (which report the
/// block-device freezes and thaws themselves), and freeze_super/thaw_super.
const WITH_HOLDER_OPS: [TracingProg; 12] = {
    let b = with_freeze_super(bdev_calls("bdev_freeze", "bdev_thaw"));
    [
        b[0],
        b[1],
        b[2],
        b[3],
        fentry("fw_fs_bdev_freeze_entry", "fs_bdev_freeze"),
        fexit("fw_fs_bdev_freeze_exit", "fs_bdev_freeze"),
        fentry("fw_fs_bdev_thaw_entry", "fs_bdev_thaw"),
        fexit("fw_fs_bdev_thaw_exit", "fs_bdev_thaw"),
        b[4],
        b[5],
        b[6],
        b[7],
    ]
};

pub(super) const FEATURES: &[FeatureSpec] = &[
    FeatureSpec {
        name: Feature::Freeze,
        chain: &[
            // Every freeze, told apart from block-device freezes (device-mapper suspend) by the
            // block-device freeze around it: the watchdog must never thaw one of those. The
            // block-device functions come first, so a kernel without them fails fast. From 6.8
            // the block-device freeze reaches the filesystem through its holder operations,
            // whose programs report those freezes and thaws themselves: the freeze_super and
            // thaw_super they call may be inlined or split (7.3), unseen by fentry. Before 6.8
            // the block-device functions had other names.
            attempt("fentry:freeze_super", Programs::Tracing(&WITH_HOLDER_OPS)).variant("fs_bdev_freeze"),
            attempt(
                "fentry:freeze_super",
                Programs::Tracing(&with_freeze_super(bdev_calls("bdev_freeze", "bdev_thaw"))),
            )
            .variant("bdev_freeze"),
            attempt(
                "fentry:freeze_super",
                Programs::Tracing(&with_freeze_super(bdev_calls("freeze_bdev", "thaw_bdev"))),
            )
            .variant("freeze_bdev"),
            Attempt {
                hook: "tp_btf:raw_syscalls:ioctl",
                variant: None,
                programs: Programs::Syscalls(syscall_feature::FREEZE),
                limits: Some(IOCTL_LIMITS),
                needs: &[],
            },
            Attempt {
                hook: "tracepoint:syscalls:ioctl",
                variant: None,
                programs: Programs::Tracepoints(&[
                    tp("fw_ioctl_enter", "syscalls", "sys_enter_ioctl", tp::sys::IOCTL_ENTER),
                    tp("fw_ioctl_exit", "syscalls", "sys_exit_ioctl", tp::sys::EXIT),
                ]),
                limits: Some(IOCTL_LIMITS),
                needs: &[],
            },
        ],
        when_none: WhenNone::Fail,
        on_request: false,
    },
    feature(
        Feature::BlockWrites,
        &[
            // The bio is the tracepoint's only argument from 5.11 on (before, the queue came
            // first), and names its block device from 5.12 on (before, its disk).
            Attempt {
                hook: "raw_tracepoint:block:block_bio_queue",
                variant: None,
                programs: Programs::RawTracepoints {
                    module: None,
                    progs: &[raw("fw_raw_block_bio_queue", "block_bio_queue")],
                },
                limits: None,
                needs: &[
                    Need::TracepointArgs { tracepoint: "block_bio_queue", args: 1 },
                    Need::Field { strukt: "bio", path: &["bi_bdev"] },
                ],
            },
            attempt(
                "tracepoint:block:block_bio_queue",
                Programs::Tracepoints(&[tp(
                    "fw_block_bio_queue",
                    "block",
                    "block_bio_queue",
                    tp::block_bio_queue::FIELDS,
                )]),
            ),
        ],
    ),
    feature(
        Feature::BlockedWriters,
        &[
            attempt(
                "tp_btf:lock:contention",
                Programs::BtfTracepoints(&[
                    BtfTpProg { program: "fw_btf_contention_begin", tracepoint: "contention_begin" },
                    BtfTpProg { program: "fw_btf_contention_end", tracepoint: "contention_end" },
                ]),
            ),
            attempt(
                "tracepoint:lock:contention",
                Programs::Tracepoints(&[
                    tp("fw_contention_begin", "lock", "contention_begin", tp::lock::BEGIN),
                    tp("fw_contention_end", "lock", "contention_end", tp::lock::END),
                ]),
            ),
            // Before 5.19 (no lock contention tracepoints): the gate semaphore's slow path.
            attempt(
                "fentry:__percpu_down_read",
                Programs::Tracing(&[
                    fentry("fw_percpu_down_read_entry", "__percpu_down_read"),
                    fexit("fw_percpu_down_read_exit", "__percpu_down_read"),
                ]),
            ),
        ],
    ),
    feature(
        Feature::TxnExt4,
        &[
            attempt(
                "raw_tracepoint:ext4:ext4_journal_start",
                Programs::RawTracepoints {
                    module: None,
                    progs: &[
                        raw("fw_raw_ext4_journal_start_sb", "ext4_journal_start_sb"),
                        raw("fw_raw_ext4_journal_start_inode", "ext4_journal_start_inode"),
                    ],
                },
            )
            .variant("ext4_journal_start_sb"),
            // Before 6.5 ext4 has one journal-start tracepoint, without the handle type.
            attempt(
                "raw_tracepoint:ext4:ext4_journal_start",
                Programs::RawTracepoints {
                    module: None,
                    progs: &[raw("fw_raw_ext4_journal_start", "ext4_journal_start")],
                },
            )
            .variant("ext4_journal_start"),
            attempt(
                "tracepoint:ext4:ext4_journal_start",
                Programs::Tracepoints(&[
                    tp(
                        "fw_ext4_journal_start_sb",
                        "ext4",
                        "ext4_journal_start_sb",
                        tp::ext4::JOURNAL_START_SB,
                    ),
                    tp(
                        "fw_ext4_journal_start_inode",
                        "ext4",
                        "ext4_journal_start_inode",
                        tp::ext4::JOURNAL_START_INODE,
                    ),
                ]),
            )
            .variant("ext4_journal_start_sb"),
            // Before 6.5 ext4 has one journal-start tracepoint, without the handle type.
            attempt(
                "tracepoint:ext4:ext4_journal_start",
                Programs::Tracepoints(&[tp(
                    "fw_ext4_journal_start",
                    "ext4",
                    "ext4_journal_start",
                    tp::ext4::JOURNAL_START,
                )]),
            )
            .variant("ext4_journal_start"),
        ],
    ),
    feature(
        Feature::TxnXfs,
        &[
            attempt(
                "raw_tracepoint:xfs:xfs_trans_alloc",
                Programs::RawTracepoints {
                    module: Some("xfs"),
                    progs: &[raw("fw_raw_xfs_trans_alloc", "xfs_trans_alloc")],
                },
            ),
            attempt(
                "tracepoint:xfs:xfs_trans_alloc",
                Programs::Tracepoints(&[tp(
                    "fw_xfs_trans_alloc",
                    "xfs",
                    "xfs_trans_alloc",
                    tp::xfs::TRANS_ALLOC,
                )]),
            ),
        ],
    ),
    // btrfs transaction handles at fexit (a start that got past the gate), commits from the
    // tracepoint; without fexit, starts are seen where they reserve space, before the gate.
    feature(
        Feature::TxnBtrfs,
        &[
            attempt(
                "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit",
                Programs::ModuleFexit {
                    module: "btrfs",
                    progs: &[
                        fexit("fw_btrfs_start_transaction_exit", "btrfs_start_transaction"),
                        fexit(
                            "fw_btrfs_start_transaction_rsv_exit",
                            "btrfs_start_transaction_fallback_global_rsv",
                        ),
                        fexit("fw_btrfs_join_transaction_exit", "btrfs_join_transaction"),
                    ],
                    then: &[BTRFS_COMMIT],
                },
            ),
            attempt(
                "raw_tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
                Programs::RawTracepoints {
                    module: Some("btrfs"),
                    progs: &[
                        raw("fw_raw_btrfs_transaction_commit", "btrfs_transaction_commit"),
                        raw("fw_raw_btrfs_space_reservation", "btrfs_space_reservation"),
                    ],
                },
            ),
            attempt(
                "tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
                Programs::Tracepoints(&[
                    BTRFS_COMMIT,
                    tp(
                        "fw_btrfs_space_reservation",
                        "btrfs",
                        "btrfs_space_reservation",
                        tp::btrfs::SPACE_RESERVATION,
                    ),
                ]),
            ),
        ],
    ),
    feature(
        Feature::Mounts,
        &[
            // The mount calls at their syscall functions (no syscall tracepoint: other syscalls
            // pay nothing), and the mounts the kernel attaches itself (finish_automount: a global
            // function, which no kernel inlines, unlike attach_recursive_mnt in 7.3). The
            // security_* functions every mount(2) and move_mount pass tell whether the call
            // reached a superblock that is not unfrozen: only those calls are recorded.
            Attempt {
                hook: "fentry:sys_mount+finish_automount",
                variant: None,
                programs: Programs::Tracing(&[
                    fentry("fw_sys_mount_entry", "__x64_sys_mount"),
                    fexit("fw_sys_mount_exit", "__x64_sys_mount"),
                    fentry("fw_sys_move_mount_entry", "__x64_sys_move_mount"),
                    fexit("fw_sys_move_mount_exit", "__x64_sys_move_mount"),
                    fentry("fw_sys_fsopen_entry", "__x64_sys_fsopen"),
                    fexit("fw_sys_fsopen_exit", "__x64_sys_fsopen"),
                    fentry("fw_sys_fsconfig_entry", "__x64_sys_fsconfig"),
                    fexit("fw_sys_fsconfig_exit", "__x64_sys_fsconfig"),
                    fentry("fw_sys_fsmount_entry", "__x64_sys_fsmount"),
                    fexit("fw_sys_fsmount_exit", "__x64_sys_fsmount"),
                    fentry("fw_automount_entry", "finish_automount"),
                    fexit("fw_automount_exit", "finish_automount"),
                    fentry("fw_mount_reaches_path", "security_sb_mount"),
                    fentry("fw_mount_reaches_sb", "security_sb_kern_mount"),
                    fentry("fw_move_mount_reaches", "security_move_mount"),
                ]),
                limits: Some(
                    "an automount's mount point is named when it is in freezewatch's mount namespace",
                ),
                needs: &[
                    // (vfsmount, path): the mount, then where it goes (`m`, `__m` from 6.17).
                    Need::Params { func: "finish_automount", params: &["path"], at: &[1] },
                    Need::Field { strukt: "mount", path: &["mnt", "mnt_sb"] },
                    Need::Field { strukt: "mount", path: &["mnt_id"] },
                    Need::Params { func: "security_sb_mount", params: &["dev_name", "path"], at: &[0] },
                    Need::Params { func: "security_sb_mount", params: &["flags"], at: &[3] },
                    Need::Params { func: "security_sb_kern_mount", params: &["sb"], at: &[0] },
                    Need::Params { func: "security_move_mount", params: &["from_path", "to_path"], at: &[0] },
                    Need::Field { strukt: "path", path: &["mnt"] },
                    Need::Field { strukt: "vfsmount", path: &["mnt_sb"] },
                ],
            },
            attempt("tp_btf:raw_syscalls:mount", Programs::Syscalls(syscall_feature::MOUNTS)),
            attempt(
                "tracepoint:syscalls:mount",
                Programs::Tracepoints(&[
                    tp("fw_mount_enter", "syscalls", "sys_enter_mount", tp::sys::MOUNT_ENTER),
                    tp("fw_mount_exit", "syscalls", "sys_exit_mount", tp::sys::EXIT),
                    tp("fw_move_mount_enter", "syscalls", "sys_enter_move_mount", tp::sys::MOVE_MOUNT_ENTER),
                    tp("fw_move_mount_exit", "syscalls", "sys_exit_move_mount", tp::sys::EXIT),
                    tp("fw_fsopen_enter", "syscalls", "sys_enter_fsopen", tp::sys::FSOPEN_ENTER),
                    tp("fw_fsopen_exit", "syscalls", "sys_exit_fsopen", tp::sys::EXIT),
                    tp("fw_fsconfig_enter", "syscalls", "sys_enter_fsconfig", tp::sys::FSCONFIG_ENTER),
                    tp("fw_fsconfig_exit", "syscalls", "sys_exit_fsconfig", tp::sys::EXIT),
                    tp("fw_fsmount_enter", "syscalls", "sys_enter_fsmount", tp::sys::FSMOUNT_ENTER),
                    tp("fw_fsmount_exit", "syscalls", "sys_exit_fsmount", tp::sys::EXIT),
                ]),
            ),
        ],
    ),
    // A clean page or inode of a frozen filesystem turning dirty, rather than every write
    // syscall: a freeze cleans them all, so every modification passes there, and between freezes
    // a write costs nothing (see docs/benchmarks.md for what each hook sees and costs).
    feature(
        Feature::CompletedWrites,
        &[
            writeback(&[
                BtfTpProg { program: "fw_dirty_folio", tracepoint: "writeback_dirty_folio" },
                MARK_INODE_DIRTY,
            ])
            .variant("writeback_dirty_folio"),
            // The same hook before folios (5.17), when the tracepoint passed a page: the two never
            // exist on one kernel, so FREEZEWATCH_SKIP_HOOKS=tp_btf:writeback skips whichever does.
            writeback(&[
                BtfTpProg { program: "fw_dirty_page", tracepoint: "writeback_dirty_page" },
                MARK_INODE_DIRTY,
            ])
            .variant("writeback_dirty_page"),
            attempt(
                "tracepoint:syscalls:write",
                Programs::Tracepoints(&[
                    tp("fw_write_enter", "syscalls", "sys_enter_write", tp::sys::WRITE_ENTER),
                    tp("fw_write_exit", "syscalls", "sys_exit_write", tp::sys::EXIT),
                    tp("fw_pwrite64_enter", "syscalls", "sys_enter_pwrite64", tp::sys::PWRITE_ENTER),
                    tp("fw_pwrite64_exit", "syscalls", "sys_exit_pwrite64", tp::sys::EXIT),
                    tp("fw_writev_enter", "syscalls", "sys_enter_writev", tp::sys::WRITE_ENTER),
                    tp("fw_writev_exit", "syscalls", "sys_exit_writev", tp::sys::EXIT),
                    tp("fw_pwritev_enter", "syscalls", "sys_enter_pwritev", tp::sys::PWRITEV_ENTER),
                    tp("fw_pwritev_exit", "syscalls", "sys_exit_pwritev", tp::sys::EXIT),
                    tp("fw_pwritev2_enter", "syscalls", "sys_enter_pwritev2", tp::sys::PWRITEV_ENTER),
                    tp("fw_pwritev2_exit", "syscalls", "sys_exit_pwritev2", tp::sys::EXIT),
                ]),
            ),
        ],
    ),
    FeatureSpec {
        name: Feature::MountDenial,
        chain: &[Attempt {
            hook: "lsm:sb_kern_mount+sb_mount+move_mount",
            variant: None,
            programs: Programs::Lsm(&[
                LsmProg { program: "fw_lsm_sb_kern_mount", hook: "sb_kern_mount" },
                LsmProg { program: "fw_lsm_sb_mount", hook: "sb_mount" },
                LsmProg { program: "fw_lsm_move_mount", hook: "move_mount" },
            ]),
            limits: Some(
                "bind mounts are matched by their source path: relative sources and paths through \
                 symlinks are allowed",
            ),
            needs: &[],
        }],
        when_none: WhenNone::Record(
            "nothing is denied; mounts of frozen filesystems are flagged from the mount tracepoints \
             (mount-while-frozen)",
        ),
        on_request: true,
    },
    // Writes to backing files come with completed-writes; these are the other ways to change one.
    FeatureSpec {
        name: Feature::BackingFiles,
        chain: &[
            // The functions every way in reaches: no syscall hook.
            Attempt {
                hook: "fentry:vfs_fallocate+do_truncate",
                variant: None,
                programs: Programs::Tracing(&[
                    fentry("fw_vfs_fallocate_entry", "vfs_fallocate"),
                    fexit("fw_vfs_fallocate_exit", "vfs_fallocate"),
                    fentry("fw_do_truncate_entry", "do_truncate"),
                    fexit("fw_do_truncate_exit", "do_truncate"),
                ]),
                limits: None,
                needs: &[
                    Need::Params {
                        func: "vfs_fallocate",
                        params: &["file", "mode", "offset", "len"],
                        at: &[0],
                    },
                    // Before 5.12 without the idmap (user namespace) in front.
                    Need::Params { func: "do_truncate", params: &["dentry", "length"], at: &[0, 1] },
                ],
            },
            Attempt {
                hook: "tp_btf:raw_syscalls:fallocate+ftruncate",
                variant: None,
                programs: Programs::Syscalls(syscall_feature::BACKING),
                limits: Some(BACKING_LIMITS),
                needs: &[],
            },
            Attempt {
                hook: "tracepoint:syscalls:fallocate+ftruncate",
                variant: None,
                programs: Programs::Tracepoints(&[
                    tp("fw_fallocate_enter", "syscalls", "sys_enter_fallocate", tp::sys::FALLOCATE_ENTER),
                    tp("fw_fallocate_exit", "syscalls", "sys_exit_fallocate", tp::sys::EXIT),
                    tp("fw_ftruncate_enter", "syscalls", "sys_enter_ftruncate", tp::sys::FTRUNCATE_ENTER),
                    tp("fw_ftruncate_exit", "syscalls", "sys_exit_ftruncate", tp::sys::EXIT),
                ]),
                limits: Some(BACKING_LIMITS),
                needs: &[],
            },
        ],
        when_none: WhenNone::Record(RECORDS_NOTHING),
        on_request: false,
    },
    // Who holds a freeze: the exits of the processes that froze something and of their parents.
    FeatureSpec {
        name: Feature::FreezerExits,
        chain: &[
            attempt(
                "tp_btf:sched:sched_process_exit",
                Programs::BtfTracepoints(&[BtfTpProg {
                    program: "fw_btf_process_exit",
                    tracepoint: "sched_process_exit",
                }]),
            ),
            attempt(
                "tracepoint:sched:sched_process_exit",
                Programs::Tracepoints(&[tp("fw_process_exit", "sched", "sched_process_exit", &[])]),
            ),
        ],
        when_none: WhenNone::Record(
            "no exit is seen: watch cannot tell when a freezer is gone (no freezer-gone, no --thaw-orphans)",
        ),
        on_request: false,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The table and the built object name the same programs, and every map user space opens by
    /// name is in the object: a renamed program or map fails here, not at load time.
    #[test]
    fn the_table_and_the_names_match_the_built_object() {
        let obj = aya_obj::Object::parse(crate::bpf::OBJECT).expect("the object parses");
        let in_object: BTreeSet<&str> = obj.programs.keys().map(String::as_str).collect();
        let in_table: BTreeSet<&str> = FEATURES
            .iter()
            .flat_map(|f| f.chain)
            .flat_map(|a| a.programs.names())
            .chain([LEVEL_PROBE.program, freeze_common::names::LEVEL_ITER_PROGRAM])
            .collect();
        assert_eq!(in_table, in_object, "programs in the table (and the level probe) vs in the object");
        for map in freeze_common::names::MAPS {
            assert!(obj.maps.contains_key(*map), "map {map} is not in the object");
        }
        // The globals are checked by every load: `override_global(name, _, must_exist = true)`.
    }

    /// Every attempt has a name of its own, so that `FREEZEWATCH_SKIP_HOOKS` can pick any one; its
    /// hook is one the model knows (events carry it), or one of the few that name several.
    #[test]
    fn every_attempt_has_its_own_name_and_a_known_hook() {
        let attempts = || FEATURES.iter().flat_map(|f| f.chain);
        let ids: BTreeSet<String> = attempts().map(Attempt::id).collect();
        assert_eq!(ids.len(), attempts().count(), "attempt names are unique: {ids:?}");
        // Hooks of several programs that report under other hooks' names, or record nothing.
        const SEVERAL: &[&str] = &[
            "lsm:sb_kern_mount+sb_mount+move_mount",
            "fentry:vfs_fallocate+do_truncate",
            "fentry:sys_mount+finish_automount",
            "tp_btf:raw_syscalls:fallocate+ftruncate",
            "tracepoint:syscalls:fallocate+ftruncate",
            "fexit:btrfs_transaction+tracepoint:btrfs:btrfs_transaction_commit",
            "raw_tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
            "tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation",
        ];
        for a in attempts() {
            assert!(
                freeze_model::event::Hook::from_name(a.hook).is_some() || SEVERAL.contains(&a.hook),
                "{}: not a hook of the model",
                a.hook
            );
        }
    }

    #[test]
    fn every_feature_has_a_chain_and_only_freeze_is_required() {
        let named: Vec<Feature> = FEATURES.iter().map(|f| f.name).collect();
        assert_eq!(named, Feature::ALL, "one entry per feature, in the model's order");
        for f in FEATURES {
            assert!(!f.chain.is_empty(), "{}", f.name);
            assert_eq!(matches!(f.when_none, WhenNone::Fail), f.name == Feature::Freeze, "{}", f.name);
        }
    }
}
