//! The BTF parser on blobs built by `builder`.
use super::builder::BtfBuilder;
use super::*;

fn sample() -> Btf {
    let mut b = BtfBuilder::new();
    let u16t = b.int("unsigned short", 2);
    let int = b.int("int", 4);
    let u32t = b.typedef("u32", int);
    let inner = b.composite(k::STRUCT, "sb_writers", 16, &[("frozen", u16t, 0), ("kcount", int, 32)]);
    let anon = b.composite(k::UNION, "", 8, &[("s_dev", u32t, 0), ("alias", int, 0)]);
    let p = b.ptr(inner);
    b.composite(
        k::STRUCT,
        "super_block",
        64,
        &[("pad", int, 0), ("", anon, 64), ("s_writers", inner, 128), ("w", p, 256)],
    );
    b.func("freeze_super", int, &[p, int, int]);
    b.func_named("do_truncate", int, &[("idmap", p), ("dentry", p), ("length", int), ("filp", p)]);
    Btf::parse(b.build()).expect("sample BTF parses")
}

#[test]
fn nested_and_anonymous_fields_resolve() {
    let btf = sample();
    assert_eq!(btf.field("super_block", &["s_dev"]), Ok(FieldLoc { offset: 8, size: 4 }));
    assert_eq!(btf.field("super_block", &["s_writers", "frozen"]), Ok(FieldLoc { offset: 16, size: 2 }));
    assert_eq!(btf.field("super_block", &["s_writers", "kcount"]), Ok(FieldLoc { offset: 20, size: 4 }));
    assert_eq!(btf.field("super_block", &["w"]), Ok(FieldLoc { offset: 32, size: 8 }));
    assert_eq!(btf.struct_size("super_block"), Ok(64));
    assert_eq!(btf.func_nargs("freeze_super"), Ok(3));
    assert_eq!(btf.func_param("do_truncate", "dentry"), Ok((1, 4)));
    assert_eq!(btf.func_param("do_truncate", "filp"), Ok((3, 4)));
}

#[test]
fn missing_things_are_named_in_errors() {
    let btf = sample();
    assert_eq!(btf.field("nope", &["x"]), Err(BtfError::NoStruct("nope".into())));
    assert_eq!(
        btf.field("super_block", &["s_writers", "missing"]),
        Err(BtfError::NoField { strukt: "super_block.s_writers".into(), field: "missing".into() })
    );
    assert_eq!(
        btf.field("super_block", &["pad", "x"]),
        Err(BtfError::NotComposite { strukt: "super_block".into(), field: "pad".into() })
    );
    assert_eq!(btf.func_nargs("thaw_super"), Err(BtfError::NoFunc("thaw_super".into())));
    assert_eq!(
        btf.func_param("do_truncate", "time_attrs"),
        Err(BtfError::NoParam { func: "do_truncate".into(), param: "time_attrs".into() })
    );
}

#[test]
fn garbage_is_rejected_not_panicked_on() {
    assert_eq!(Btf::parse(vec![0; 10]).err(), Some(BtfError::Truncated("header")));
    assert_eq!(Btf::parse(vec![0; 64]).err(), Some(BtfError::BadMagic(0)));
    let mut blob = BtfBuilder::new();
    blob.int("int", 4);
    let mut bytes = blob.build();
    bytes.truncate(bytes.len() - 3);
    assert!(Btf::parse(bytes).is_err());
}

#[test]
fn split_btf_continues_the_base_ids_and_strings() {
    let mut base = BtfBuilder::new();
    let int = base.int("int", 4);
    let sb = base.composite(k::STRUCT, "super_block", 64, &[("s_dev", int, 0)]);
    let psb = base.ptr(sb);
    let base_btf = Btf::parse(base.build()).expect("base parses");

    let mut module = BtfBuilder::split(&base);
    let fs_info = module.composite(k::STRUCT, "btrfs_fs_info", 128, &[("pad", int, 0), ("sb", psb, 512)]);
    let pfs = module.ptr(fs_info);
    let root = module.composite(k::STRUCT, "btrfs_root", 64, &[("fs_info", pfs, 64)]);
    let proot = module.ptr(root);
    let func = module.func("btrfs_start_transaction", proot, &[proot, int]);
    let btf = Btf::parse_split(&base_btf, &module.build()).expect("split parses");

    assert_eq!(btf.id_by_name(k::FUNC, "btrfs_start_transaction"), Some(func));
    assert!(func > base_btf.len() as u32, "module ids come after the base's");
    assert_eq!(btf.field("btrfs_root", &["fs_info"]), Ok(FieldLoc { offset: 8, size: 8 }));
    assert_eq!(btf.field("btrfs_fs_info", &["sb"]), Ok(FieldLoc { offset: 64, size: 8 }));
    assert_eq!(btf.func_nargs("btrfs_start_transaction"), Ok(2));
    // Base types still answer, by their own ids.
    assert_eq!(btf.field("super_block", &["s_dev"]), Ok(FieldLoc { offset: 0, size: 4 }));
    assert_eq!(btf.id_by_name(k::STRUCT, "super_block"), Some(sb));
    // A module blob is not complete on its own: alone, its strings point past its end.
    assert_eq!(
        Btf::parse(module.build()).map(|b| b.id_by_name(k::FUNC, "btrfs_start_transaction")).ok().flatten(),
        None
    );
}

#[test]
fn every_truncation_of_a_valid_blob_fails_cleanly() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4);
    b.composite(k::STRUCT, "s", 8, &[("a", int, 0), ("b", int, 32)]);
    let full = b.build();
    for len in 0..full.len() {
        assert!(Btf::parse(full[..len].to_vec()).is_err(), "truncated to {len} bytes");
    }
}

#[test]
fn a_flag_is_a_one_bit_bitfield_or_a_bool() {
    let mut b = BtfBuilder::new();
    let uint = b.int("unsigned int", 4);
    let boolean = b.int("_Bool", 1);
    b.bitfields("old_signal", 16, &[("flags", uint, 0, 0), ("is_child_subreaper", uint, 8 * 8 + 2, 1)]);
    b.composite(k::STRUCT, "new_signal", 16, &[("flags", uint, 0), ("is_child_subreaper", boolean, 8 * 5)]);
    let btf = Btf::parse(b.build()).unwrap();
    assert_eq!(btf.flag_bit("old_signal", "is_child_subreaper"), Ok(8 * 8 + 2));
    assert_eq!(
        btf.flag_bit("new_signal", "is_child_subreaper"),
        Ok(8 * 5),
        "a bool's value is its lowest bit"
    );
    assert_eq!(
        btf.flag_bit("new_signal", "flags"),
        Err(BtfError::NotFlag { strukt: "new_signal".into(), field: "flags".into() }),
        "a whole int is not a flag"
    );
}

#[test]
fn a_tracepoint_counts_its_arguments_without_its_data() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4);
    let q = b.ptr(int);
    let bio = b.ptr(int);
    b.tracepoint("block_bio_queue", &[q, bio]);
    b.tracepoint("sched_process_exit", &[q]);
    let btf = Btf::parse(b.build()).unwrap();
    assert_eq!(btf.tracepoint_nargs("block_bio_queue"), Ok(2));
    assert_eq!(btf.tracepoint_nargs("sched_process_exit"), Ok(1));
    assert_eq!(
        btf.tracepoint_nargs("contention_begin"),
        Err(BtfError::NoTracepoint("contention_begin".into()))
    );
}
