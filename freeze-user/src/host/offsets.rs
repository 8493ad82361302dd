//! Resolves the struct field offsets the eBPF programs need from BTF.
//!
//! The programs get no CO-RE relocations, so this is what makes one binary right on every kernel
//! from 5.10 to 7.3, whose `super_block`, `sb_writers`, `bio`, `signal_struct` and `freeze_super`
//! differ.
use freeze_common::KernelOffsets;

use crate::host::btf::{Btf, BtfError, FieldLoc};

/// One offset the programs read, as `doctor` names it (`struct.field`, or what it is), and where
/// it is in `KernelOffsets`.
pub struct Shown {
    pub name: &'static str,
    pub get: fn(&KernelOffsets) -> u32,
    /// From a module's BTF (0 where the module has none, or is not loaded) or optional in the
    /// kernel (`bio.bi_bdev` before 5.12): shown only when resolved.
    pub optional: bool,
}

const fn shown(name: &'static str, get: fn(&KernelOffsets) -> u32) -> Shown {
    Shown { name, get, optional: false }
}

const fn optional(name: &'static str, get: fn(&KernelOffsets) -> u32) -> Shown {
    Shown { name, get, optional: true }
}

/// Every field of `KernelOffsets` but `valid`, once: what `doctor` shows (a test ties the two).
pub const FIELDS: &[Shown] = &[
    shown("task_struct.files", |o| o.task_files),
    shown("task_struct.real_parent", |o| o.task_real_parent),
    shown("task_struct.tgid", |o| o.task_tgid),
    shown("task_struct.comm", |o| o.task_comm),
    shown("task_struct.group_leader", |o| o.task_group_leader),
    shown("task_struct.start_time", |o| o.task_start_time),
    shown("task_struct.exit_code", |o| o.task_exit_code),
    shown("task_struct.signal", |o| o.task_signal),
    shown("signal_struct.live", |o| o.signal_live),
    shown("signal_struct.flags", |o| o.signal_flags),
    shown("signal_struct.is_child_subreaper(bit)", |o| o.signal_subreaper_bit),
    shown("files_struct.fdt", |o| o.files_fdt),
    shown("fdtable.max_fds", |o| o.fdtable_max_fds),
    shown("fdtable.fd", |o| o.fdtable_fd),
    shown("file.f_inode", |o| o.file_f_inode),
    shown("file.f_pos", |o| o.file_f_pos),
    shown("inode.i_sb", |o| o.inode_i_sb),
    shown("inode.i_mode", |o| o.inode_i_mode),
    shown("inode.i_ino", |o| o.inode_i_ino),
    shown("super_block.s_dev", |o| o.sb_s_dev),
    shown("super_block.s_type", |o| o.sb_s_type),
    shown("super_block.s_writers.frozen", |o| o.sb_frozen),
    shown("super_block.s_writers.frozen(size)", |o| o.sb_frozen_size),
    shown("super_block.s_id", |o| o.sb_s_id),
    shown("super_block.s_uuid", |o| o.sb_s_uuid),
    shown("super_block.s_bdev", |o| o.sb_s_bdev),
    shown("super_block.s_writers.rw_sem", |o| o.sb_rw_sem),
    shown("percpu_rw_semaphore(size)", |o| o.rw_sem_size),
    shown("file_system_type.name", |o| o.fstype_name),
    shown("freeze_super(nargs)", |o| o.freeze_super_nargs),
    shown("block_device.bd_dev", |o| o.bdev_bd_dev),
    shown("block_device.bd_holder", |o| o.bdev_bd_holder),
    shown("path.mnt", |o| o.path_mnt),
    shown("vfsmount.mnt_sb", |o| o.vfsmount_mnt_sb),
    shown("address_space.host", |o| o.mapping_host),
    shown("folio.index", |o| o.folio_index),
    shown("page(shift)", |o| o.page_shift),
    optional("bio.bi_bdev", |o| o.bio_bi_bdev),
    shown("bio.bi_opf", |o| o.bio_bi_opf),
    shown("bio.bi_iter.bi_sector", |o| o.bio_bi_sector),
    shown("bio.bi_iter.bi_size", |o| o.bio_bi_size),
    optional("btrfs_root.fs_info", |o| o.btrfs_root_fs_info),
    optional("btrfs_fs_info.sb", |o| o.btrfs_fs_info_sb),
    optional("xfs_trans.t_mountp", |o| o.xfs_trans_t_mountp),
    optional("xfs_trans.t_flags", |o| o.xfs_trans_t_flags),
    optional("xfs_mount.m_super", |o| o.xfs_mount_m_super),
    shown("block_device.bd_disk", |o| o.bdev_bd_disk),
    shown("gendisk.private_data", |o| o.gendisk_private_data),
    optional("loop_device.lo_offset", |o| o.loop_lo_offset),
    optional("loop_device.lo_backing_file", |o| o.loop_lo_backing_file),
    shown("dentry.d_inode", |o| o.dentry_d_inode),
    optional("do_truncate(nargs)", |o| o.do_truncate_nargs),
    shown("do_truncate(dentry arg)", |o| o.do_truncate_dentry_arg),
    optional("mount.mnt", |o| o.mount_mnt),
    optional("mount.mnt_id", |o| o.mount_mnt_id),
];

/// `SB_FREEZE_LEVELS`: `s_writers.rw_sem[]` has one semaphore per gate level.
const FREEZE_LEVELS: u32 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffsetError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("`{what}` is {got} bytes wide; freezewatch expects {expected}")]
    UnexpectedSize { what: String, got: u32, expected: &'static str },
}

fn sized(
    btf: &Btf,
    strukt: &str,
    path: &[&str],
    ok: &[u32],
    expected: &'static str,
) -> Result<FieldLoc, OffsetError> {
    let loc = btf.field(strukt, path)?;
    if !ok.contains(&loc.size) {
        return Err(OffsetError::UnexpectedSize {
            what: format!("{strukt}.{}", path.join(".")),
            got: loc.size,
            expected,
        });
    }
    Ok(loc)
}

fn ptr(btf: &Btf, strukt: &str, path: &[&str]) -> Result<u32, OffsetError> {
    Ok(sized(btf, strukt, path, &[8], "8 (a pointer)")?.offset)
}

/// Resolves every offset; the first missing or surprising field is the error.
pub fn resolve(btf: &Btf) -> Result<KernelOffsets, OffsetError> {
    let frozen = sized(btf, "super_block", &["s_writers", "frozen"], &[2, 4], "2 or 4")?;
    let s_id = sized(btf, "super_block", &["s_id"], &[32], "32 (char[32])")?;
    let s_uuid = sized(btf, "super_block", &["s_uuid"], &[16], "16 (uuid_t)")?;
    let rw_sem = btf.field("super_block", &["s_writers", "rw_sem"])?;
    if rw_sem.size == 0 || rw_sem.size % FREEZE_LEVELS != 0 {
        return Err(OffsetError::UnexpectedSize {
            what: "super_block.s_writers.rw_sem".into(),
            got: rw_sem.size,
            expected: "a multiple of 3 (one semaphore per freeze level)",
        });
    }
    let (do_truncate_dentry_arg, do_truncate_nargs) = do_truncate(btf);
    Ok(KernelOffsets {
        valid: 1,
        task_files: ptr(btf, "task_struct", &["files"])?,
        files_fdt: ptr(btf, "files_struct", &["fdt"])?,
        fdtable_max_fds: sized(btf, "fdtable", &["max_fds"], &[4], "4")?.offset,
        fdtable_fd: ptr(btf, "fdtable", &["fd"])?,
        file_f_inode: ptr(btf, "file", &["f_inode"])?,
        inode_i_sb: ptr(btf, "inode", &["i_sb"])?,
        sb_s_dev: sized(btf, "super_block", &["s_dev"], &[4], "4 (dev_t)")?.offset,
        sb_s_type: ptr(btf, "super_block", &["s_type"])?,
        sb_frozen: frozen.offset,
        sb_frozen_size: frozen.size,
        sb_s_id: s_id.offset,
        sb_s_uuid: s_uuid.offset,
        fstype_name: ptr(btf, "file_system_type", &["name"])?,
        freeze_super_nargs: btf.func_nargs("freeze_super")?,
        sb_s_bdev: ptr(btf, "super_block", &["s_bdev"])?,
        bdev_bd_dev: sized(btf, "block_device", &["bd_dev"], &[4], "4 (dev_t)")?.offset,
        bdev_bd_holder: ptr(btf, "block_device", &["bd_holder"])?,
        sb_rw_sem: rw_sem.offset,
        rw_sem_size: rw_sem.size / FREEZE_LEVELS,
        inode_i_mode: sized(btf, "inode", &["i_mode"], &[2], "2 (umode_t)")?.offset,
        path_mnt: ptr(btf, "path", &["mnt"])?,
        vfsmount_mnt_sb: ptr(btf, "vfsmount", &["mnt_sb"])?,
        // btrfs's own structs are described by its module's BTF: `resolve_btrfs` fills these.
        btrfs_root_fs_info: 0,
        btrfs_fs_info_sb: 0,
        task_real_parent: ptr(btf, "task_struct", &["real_parent"])?,
        task_tgid: sized(btf, "task_struct", &["tgid"], &[4], "4 (pid_t)")?.offset,
        task_comm: sized(btf, "task_struct", &["comm"], &[16], "16 (char[16])")?.offset,
        file_f_pos: sized(btf, "file", &["f_pos"], &[8], "8 (loff_t)")?.offset,
        inode_i_ino: sized(btf, "inode", &["i_ino"], &[8], "8 (unsigned long)")?.offset,
        mapping_host: ptr(btf, "address_space", &["host"])?,
        folio_index: page_cache_index(btf)?,
        page_shift: crate::host::kernel::page_size().trailing_zeros(),
        bio_bi_bdev: bio_bdev(btf)?,
        bio_bi_opf: sized(btf, "bio", &["bi_opf"], &[4], "4 (blk_opf_t)")?.offset,
        bio_bi_sector: sized(btf, "bio", &["bi_iter", "bi_sector"], &[8], "8 (sector_t)")?.offset,
        bio_bi_size: sized(btf, "bio", &["bi_iter", "bi_size"], &[4], "4 (unsigned int)")?.offset,
        // xfs's structs are described by its module's BTF: `resolve_xfs` fills these.
        xfs_trans_t_mountp: 0,
        xfs_trans_t_flags: 0,
        xfs_mount_m_super: 0,
        task_group_leader: ptr(btf, "task_struct", &["group_leader"])?,
        task_start_time: sized(btf, "task_struct", &["start_time"], &[8], "8 (u64)")?.offset,
        task_exit_code: sized(btf, "task_struct", &["exit_code"], &[4], "4 (int)")?.offset,
        task_signal: ptr(btf, "task_struct", &["signal"])?,
        signal_live: sized(btf, "signal_struct", &["live"], &[4], "4 (atomic_t)")?.offset,
        signal_flags: sized(btf, "signal_struct", &["flags"], &[4], "4 (unsigned int)")?.offset,
        signal_subreaper_bit: btf.flag_bit("signal_struct", "is_child_subreaper")?,
        bdev_bd_disk: ptr(btf, "block_device", &["bd_disk"])?,
        gendisk_private_data: ptr(btf, "gendisk", &["private_data"])?,
        // loop's struct is described by its module's BTF: `resolve_loop` fills these.
        loop_lo_offset: 0,
        loop_lo_backing_file: 0,
        dentry_d_inode: ptr(btf, "dentry", &["d_inode"])?,
        do_truncate_nargs,
        do_truncate_dentry_arg,
        // The mount-attach programs need these; where they are missing the attempt's needs say
        // so and the programs stay unattached.
        mount_mnt: offset_or_zero(btf.field("mount", &["mnt"])),
        mount_mnt_id: sized(btf, "mount", &["mnt_id"], &[4], "4 (int)").map_or(0, |l| l.offset),
    })
}

/// A field's offset, or 0 where it is missing (only for fields an attempt's needs check).
fn offset_or_zero(loc: Result<crate::host::btf::FieldLoc, BtfError>) -> u32 {
    loc.map_or(0, |l| l.offset)
}

/// Where `do_truncate` has its `dentry` (and, next, its `length`), and how many parameters:
/// `(0, 0)` where BTF has no such function, or one whose `dentry` and `length` are not the first
/// two parameters after an optional idmap (its programs then do not attach: see the
/// backing-files chain's needs).
fn do_truncate(btf: &Btf) -> (u32, u32) {
    match (btf.func_param("do_truncate", "dentry"), btf.func_param("do_truncate", "length")) {
        (Ok((dentry, nargs)), Ok((length, _))) if dentry <= 1 && length == dentry + 1 => (dentry, nargs),
        _ => (0, 0),
    }
}

/// `folio.index`, or `page.index` on kernels without folios (before 5.16): the writeback
/// tracepoint of those passes a page, whose index is where a folio's is.
fn page_cache_index(btf: &Btf) -> Result<u32, OffsetError> {
    match sized(btf, "folio", &["index"], &[8], "8 (pgoff_t)") {
        Err(OffsetError::Btf(BtfError::NoStruct(_))) => {
            Ok(sized(btf, "page", &["index"], &[8], "8 (pgoff_t)")?.offset)
        }
        other => Ok(other?.offset),
    }
}

/// `bio.bi_bdev`, or 0 where a bio has none (before 5.12: `bi_disk` instead); the attempts that
/// read it need the field. Any other surprise in it is an error, as for every field.
fn bio_bdev(btf: &Btf) -> Result<u32, OffsetError> {
    match ptr(btf, "bio", &["bi_bdev"]) {
        Err(OffsetError::Btf(BtfError::NoField { .. })) => Ok(0),
        other => other,
    }
}

/// Fills the xfs fields from the BTF that describes xfs (vmlinux when xfs is built in, its
/// module's split BTF otherwise): all or, on error, none.
pub fn resolve_xfs(btf: &Btf, offsets: &mut KernelOffsets) -> Result<(), OffsetError> {
    let mountp = ptr(btf, "xfs_trans", &["t_mountp"])?;
    let flags = sized(btf, "xfs_trans", &["t_flags"], &[4], "4 (unsigned int)")?.offset;
    offsets.xfs_mount_m_super = ptr(btf, "xfs_mount", &["m_super"])?;
    (offsets.xfs_trans_t_mountp, offsets.xfs_trans_t_flags) = (mountp, flags);
    Ok(())
}

/// Fills the btrfs fields from the BTF that describes btrfs (vmlinux when btrfs is built in,
/// its module's split BTF otherwise): both or, on error, neither.
pub fn resolve_btrfs(btf: &Btf, offsets: &mut KernelOffsets) -> Result<(), OffsetError> {
    let root_fs_info = ptr(btf, "btrfs_root", &["fs_info"])?;
    offsets.btrfs_fs_info_sb = ptr(btf, "btrfs_fs_info", &["sb"])?;
    offsets.btrfs_root_fs_info = root_fs_info;
    Ok(())
}

/// Fills the loop fields from the BTF that describes the loop driver (vmlinux when it is built
/// in, its module's split BTF otherwise): both or, on error, neither.
pub fn resolve_loop(btf: &Btf, offsets: &mut KernelOffsets) -> Result<(), OffsetError> {
    let lo_offset = sized(btf, "loop_device", &["lo_offset"], &[8], "8 (loff_t)")?.offset;
    offsets.loop_lo_backing_file = ptr(btf, "loop_device", &["lo_backing_file"])?;
    offsets.loop_lo_offset = lo_offset;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FIELDS` names every offset once: with each field of a `KernelOffsets` set to its own
    /// index, the getters give every index but `valid`'s (0), each once.
    #[test]
    fn the_shown_fields_are_every_offset_once() {
        const N: usize = size_of::<KernelOffsets>() / 4;
        let numbered: [u32; N] = std::array::from_fn(|i| i as u32);
        // SAFETY: KernelOffsets is #[repr(C)] with N u32 fields and nothing else (the layout test
        // in freeze-common checks its size), so every bit pattern of [u32; N] is one.
        let o: KernelOffsets = unsafe { std::mem::transmute(numbered) };
        let mut got: Vec<u32> = FIELDS.iter().map(|f| (f.get)(&o)).collect();
        got.sort_unstable();
        assert_eq!(got, (1..N as u32).collect::<Vec<_>>());
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len(), "names are unique");
    }
    use crate::host::btf::btf_kind as k;
    use crate::host::btf::builder::BtfBuilder;

    /// A miniature kernel with the 6.1 shapes: `int frozen`, one-argument freeze_super.
    fn kernel_6_1_like() -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        let uint = b.int("unsigned int", 4);
        let ch = b.int("char", 1);
        let pch = b.ptr(ch);
        let fst = b.composite(k::STRUCT, "file_system_type", 16, &[("name", pch, 0)]);
        let sem = b.composite(k::STRUCT, "percpu_rw_semaphore", 48, &[("x", int, 0)]);
        let sems = b.array(sem, int, 3);
        let sbw = b.composite(k::STRUCT, "sb_writers", 152, &[("frozen", int, 0), ("rw_sem", sems, 64)]);
        b.composite(k::STRUCT, "gendisk", 256, &[("private_data", pch, 8 * 200)]);
        let bdev = b.composite(
            k::STRUCT,
            "block_device",
            64,
            &[("bd_dev", uint, 32), ("bd_holder", pch, 128), ("bd_disk", pch, 192)],
        );
        let pbdev = b.ptr(bdev);
        let uuid = b.composite(
            k::STRUCT,
            "uuid_t",
            16,
            &[("b0", int, 0), ("b1", int, 32), ("b2", int, 64), ("b3", int, 96)],
        );
        let sid = b.composite(k::STRUCT, "s_id_t", 32, &[]);
        let pfst = b.ptr(fst);
        let sb = b.composite(
            k::STRUCT,
            "super_block",
            400,
            &[
                ("s_dev", uint, 128),
                ("s_type", pfst, 320),
                ("s_bdev", pbdev, 384),
                ("s_writers", sbw, 640),
                ("s_id", sid, 2048),
                ("s_uuid", uuid, 2304),
            ],
        );
        let psb = b.ptr(sb);
        let umode = b.int("unsigned short", 2);
        let ulong = b.int("unsigned long", 8);
        b.composite(
            k::STRUCT,
            "inode",
            64,
            &[("i_mode", umode, 0), ("i_sb", psb, 320), ("i_ino", ulong, 384)],
        );
        let inode = b.ptr(sb);
        let loff = b.int("long long", 8);
        b.composite(k::STRUCT, "file", 64, &[("f_inode", inode, 256), ("f_pos", loff, 448)]);
        let pp = b.ptr(inode);
        b.composite(k::STRUCT, "fdtable", 32, &[("max_fds", uint, 0), ("fd", pp, 64)]);
        let fdt = b.ptr(int);
        b.composite(k::STRUCT, "files_struct", 64, &[("fdt", fdt, 256)]);
        let files = b.ptr(int);
        let comm = b.array(ch, int, 16);
        let u64t = b.int("u64", 8);
        let atomic = b.composite(k::STRUCT, "atomic_t", 4, &[("counter", int, 0)]);
        let signal = b.bitfields(
            "signal_struct",
            512,
            &[
                ("live", atomic, 8 * 4, 0),
                ("flags", uint, 8 * 100, 0),
                ("is_child_subreaper", uint, 8 * 104 + 2, 1),
            ],
        );
        let psignal = b.ptr(signal);
        b.composite(
            k::STRUCT,
            "task_struct",
            4096,
            &[
                ("tgid", int, 8 * 1000),
                ("real_parent", files, 8 * 1008),
                ("group_leader", files, 8 * 1016),
                ("start_time", u64t, 8 * 1024),
                ("exit_code", int, 8 * 1032),
                ("signal", psignal, 8 * 1040),
                ("comm", comm, 8 * 1500),
                ("files", files, 8 * 2000),
            ],
        );
        let vfsmount = b.composite(k::STRUCT, "vfsmount", 32, &[("mnt_sb", psb, 64)]);
        let pvfsmount = b.ptr(vfsmount);
        b.composite(k::STRUCT, "path", 16, &[("mnt", pvfsmount, 0), ("dentry", fdt, 64)]);
        b.func("freeze_super", int, &[psb]);
        let dentry = b.composite(k::STRUCT, "dentry", 64, &[("d_inode", inode, 8 * 48)]);
        let pdentry = b.ptr(dentry);
        let pint = b.ptr(int);
        b.func_named(
            "do_truncate",
            int,
            &[("idmap", pint), ("dentry", pdentry), ("length", loff), ("time_attrs", uint), ("filp", fdt)],
        );
        b.composite(k::STRUCT, "address_space", 200, &[("host", inode, 0)]);
        // `index` sits in an anonymous struct in an anonymous union, as the kernel declares it.
        let page_part = b.composite(k::STRUCT, "", 32, &[("flags", ulong, 0), ("index", ulong, 192)]);
        let head = b.composite(k::UNION, "", 64, &[("", page_part, 0)]);
        b.composite(k::STRUCT, "folio", 64, &[("", head, 0)]);
        let iter = b.composite(k::STRUCT, "bvec_iter", 16, &[("bi_sector", ulong, 0), ("bi_size", uint, 64)]);
        b.composite(
            k::STRUCT,
            "bio",
            128,
            &[("bi_bdev", pbdev, 64), ("bi_opf", uint, 128), ("bi_iter", iter, 256)],
        );
        Btf::parse(b.build()).expect("BTF builds")
    }

    #[test]
    fn resolves_a_6_1_shaped_kernel() {
        let o = resolve(&kernel_6_1_like()).expect("all fields present");
        assert_eq!(o.valid, 1);
        assert_eq!(o.sb_s_dev, 16);
        assert_eq!(o.sb_s_type, 40);
        assert_eq!(o.sb_frozen, 80);
        assert_eq!(o.sb_frozen_size, 4);
        assert_eq!(o.sb_s_id, 256);
        assert_eq!(o.sb_s_uuid, 288);
        assert_eq!(o.sb_s_bdev, 48);
        assert_eq!((o.bdev_bd_dev, o.bdev_bd_holder, o.bdev_bd_disk), (4, 16, 24));
        assert_eq!(o.gendisk_private_data, 200);
        // No loop driver BTF in this kernel: its offsets stay 0 and the bio programs skip that test.
        assert_eq!((o.loop_lo_offset, o.loop_lo_backing_file), (0, 0));
        assert_eq!((o.sb_rw_sem, o.rw_sem_size), (88, 48));
        assert_eq!(o.inode_i_mode, 0);
        assert_eq!(o.inode_i_sb, 40);
        // Bits: bi_bdev at 64, bi_opf at 128, bi_iter at 256 holding bi_sector at 0, bi_size at 64.
        assert_eq!((o.bio_bi_bdev, o.bio_bi_opf, o.bio_bi_sector, o.bio_bi_size), (8, 16, 32, 40));
        assert_eq!(o.file_f_inode, 32);
        assert_eq!((o.file_f_pos, o.inode_i_ino), (56, 48));
        assert_eq!(o.fdtable_max_fds, 0);
        assert_eq!(o.fdtable_fd, 8);
        assert_eq!(o.files_fdt, 32);
        assert_eq!(o.task_files, 2000);
        assert_eq!((o.task_tgid, o.task_real_parent, o.task_comm), (1000, 1008, 1500));
        assert_eq!(
            (o.task_group_leader, o.task_start_time, o.task_exit_code, o.task_signal),
            (1016, 1024, 1032, 1040)
        );
        assert_eq!((o.signal_live, o.signal_flags, o.signal_subreaper_bit), (4, 100, 8 * 104 + 2));
        assert_eq!(o.freeze_super_nargs, 1);
        assert_eq!((o.path_mnt, o.vfsmount_mnt_sb), (0, 8));
        assert_eq!((o.mapping_host, o.folio_index), (0, 24));
        assert_eq!((o.dentry_d_inode, o.do_truncate_dentry_arg, o.do_truncate_nargs), (48, 1, 5));
        // No `struct mount` in this miniature: 0, and no error.
        assert_eq!((o.mount_mnt, o.mount_mnt_id), (0, 0));
        assert_eq!(1u32 << o.page_shift, crate::host::kernel::page_size());
    }

    #[test]
    fn a_missing_field_is_named() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        b.composite(k::STRUCT, "super_block", 8, &[("s_dev", int, 0)]);
        let err = resolve(&Btf::parse(b.build()).expect("parses")).unwrap_err();
        assert_eq!(err.to_string(), "struct `super_block` has no field `s_writers`");
    }

    /// The running kernel's BTF: every field resolves, and the numbers hang together. On the 6.18
    /// kernel this project's machines run, they must equal what was measured there.
    #[test]
    fn resolves_the_running_kernels_btf() {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(e) if std::env::var_os("FREEZEWATCH_REQUIRE_KERNEL").is_none_or(|v| v != "1") => {
                eprintln!("SKIPPED resolves_the_running_kernels_btf: no kernel BTF ({e})");
                return;
            }
            Err(e) => panic!("FREEZEWATCH_REQUIRE_KERNEL is set but kernel BTF is unreadable: {e}"),
        };
        let o = resolve(&btf).expect("every field the programs read exists in this kernel");
        let sb_size = btf.struct_size("super_block").expect("super_block");
        for off in [o.sb_s_dev, o.sb_s_type, o.sb_frozen, o.sb_s_id, o.sb_s_uuid] {
            assert!(off < sb_size, "offset {off} outside super_block ({sb_size} bytes)");
        }
        assert!((1..=3).contains(&o.freeze_super_nargs));
        assert_eq!(btf.func_nargs("thaw_super").ok(), Some(o.freeze_super_nargs));
        // do_truncate: (dentry, length, time_attrs, filp), after an idmap from 5.12 on.
        assert_eq!(o.do_truncate_nargs, o.do_truncate_dentry_arg + 4, "{o:?}");
        // The bio ops the raw block tracepoint tells apart, as this kernel numbers them.
        use freeze_common::req_op as op;
        for (name, value) in [
            ("REQ_OP_READ", op::READ),
            ("REQ_OP_WRITE", op::WRITE),
            ("REQ_OP_FLUSH", op::FLUSH),
            ("REQ_OP_DISCARD", op::DISCARD),
            ("REQ_OP_SECURE_ERASE", op::SECURE_ERASE),
            ("REQ_OP_WRITE_ZEROES", op::WRITE_ZEROES),
        ] {
            assert_eq!(btf.enum_value("req_op", name).ok(), Some(i64::from(value)), "{name}");
        }
        // The syscall dispatcher's registers (constants: the verifier checks them at load too).
        use freeze_common::pt_regs as r;
        for (field, offset) in [
            ("di", r::DI),
            ("si", r::SI),
            ("dx", r::DX),
            ("r10", r::R10),
            ("r8", r::R8),
            ("r9", r::R9),
            ("orig_ax", r::ORIG_AX),
            ("cs", r::CS),
        ] {
            let loc = btf.field("pt_regs", &[field]).expect("pt_regs field");
            assert_eq!(loc.offset as usize, offset, "pt_regs.{field}");
            // From 6.9 on `cs` is the u16 of a union with the 8-byte `csx` (FRED).
            let sizes: &[u32] = if field == "cs" { &[2, 8] } else { &[8] };
            assert!(sizes.contains(&loc.size), "pt_regs.{field}: {} bytes", loc.size);
        }
        let release = crate::host::kernel::release();
        if release.starts_with("6.18.") {
            // The 6.18 kernel of this project's CI machines, as its BTF lays these out.
            assert_eq!(sb_size, 1472);
            assert_eq!((o.sb_s_dev, o.sb_s_type, o.sb_s_id, o.sb_s_uuid), (16, 40, 936, 968));
            let writers = btf.field("super_block", &["s_writers"]).expect("s_writers").offset;
            assert_eq!(writers, 576);
            assert_eq!((o.sb_frozen, o.sb_frozen_size), (576, 2));
            assert_eq!(o.freeze_super_nargs, 3);
            assert_eq!((o.do_truncate_dentry_arg, o.do_truncate_nargs), (1, 5));
            assert!(o.mount_mnt > 0 && o.mount_mnt_id > o.mount_mnt, "{o:?}");
        }
    }
}
