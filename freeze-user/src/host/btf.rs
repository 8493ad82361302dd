//! A small reader for BTF (the kernel's type information, `/sys/kernel/btf/vmlinux`).
//!
//! It answers the few questions freezewatch asks: where is a field inside a struct (following
//! anonymous structs and unions), how wide is it, how many parameters does a function take, and
//! what is the type id of a function or typedef. Pure code: it reads bytes, so it is tested on
//! hand-built blobs as well as on the running kernel's BTF.
use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

/// BTF kinds (`BTF_KIND_*`).
pub mod btf_kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}
use btf_kind as k;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF data is truncated: {0}")]
    Truncated(&'static str),
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u32 },
    #[error("no struct `{0}` in BTF")]
    NoStruct(String),
    #[error("struct `{strukt}` has no field `{field}`")]
    NoField { strukt: String, field: String },
    #[error("field `{strukt}.{field}` is a bitfield; freezewatch reads whole fields only")]
    Bitfield { strukt: String, field: String },
    #[error("field `{strukt}.{field}` is not a struct or union, cannot descend into it")]
    NotComposite { strukt: String, field: String },
    #[error("no function `{0}` in BTF")]
    NoFunc(String),
    #[error("BTF type id {0} is out of range")]
    BadId(u32),
}

#[derive(Clone, Copy, Debug)]
struct TypeEntry {
    kind: u32,
    name_off: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` for sized kinds, `type` for reference kinds.
    size_or_type: u32,
    /// Byte offset of the kind-specific data that follows the common header.
    data: usize,
}

/// A parsed BTF blob.
pub struct Btf {
    bytes: Vec<u8>,
    strings: std::ops::Range<usize>,
    /// Split BTF (a module's): where its own strings start in the string numbering (the base's
    /// string length), and where they lie in `bytes`.
    split_strings: Option<(u32, std::ops::Range<usize>)>,
    /// Index 0 is the implicit `void`.
    types: Vec<TypeEntry>,
    by_name: HashMap<(u32, String), Vec<u32>>,
}

/// Where a field lives: byte offset from the start of the outer struct, and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLoc {
    pub offset: u32,
    pub size: u32,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Truncated("type section"))
}

/// Where one BTF blob's type and string sections lie, as ranges of the buffer holding it.
struct Sections {
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
}

impl Sections {
    /// Reads the header of the blob that starts at `at` in `bytes`.
    fn read(bytes: &[u8], at: usize) -> Result<Self, BtfError> {
        let blob = &bytes[at.min(bytes.len())..];
        if blob.len() < 24 {
            return Err(BtfError::Truncated("header"));
        }
        let magic = u16::from_le_bytes([blob[0], blob[1]]);
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let field = |i: usize| u32_at(blob, i).map(|v| v as usize);
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
        let types = at + hdr_len + type_off..at + hdr_len + type_off + type_len;
        let strings = at + hdr_len + str_off..at + hdr_len + str_off + str_len;
        if types.end > bytes.len() || strings.end > bytes.len() {
            return Err(BtfError::Truncated("sections run past the end"));
        }
        Ok(Self { types, strings })
    }
}

/// Appends the types of one type section to `types` (whose length is the next type id).
fn parse_types(
    bytes: &[u8],
    section: std::ops::Range<usize>,
    types: &mut Vec<TypeEntry>,
) -> Result<(), BtfError> {
    let mut at = section.start;
    while at < section.end {
        let id = types.len() as u32;
        let name_off = u32_at(bytes, at)?;
        let info = u32_at(bytes, at + 4)?;
        let size_or_type = u32_at(bytes, at + 8)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = info & 0xffff;
        let data = at + 12;
        let extra = match kind {
            k::INT => 4,
            k::PTR
            | k::FWD
            | k::TYPEDEF
            | k::VOLATILE
            | k::CONST
            | k::RESTRICT
            | k::FUNC
            | k::FLOAT
            | k::TYPE_TAG => 0,
            k::ARRAY => 12,
            k::STRUCT | k::UNION => 12 * vlen as usize,
            k::ENUM => 8 * vlen as usize,
            k::FUNC_PROTO => 8 * vlen as usize,
            k::VAR => 4,
            k::DATASEC => 12 * vlen as usize,
            k::DECL_TAG => 4,
            k::ENUM64 => 12 * vlen as usize,
            _ => return Err(BtfError::UnknownKind { id, kind }),
        };
        types.push(TypeEntry { kind, name_off, vlen, kind_flag: info >> 31 == 1, size_or_type, data });
        at = data + extra;
    }
    if at != section.end {
        return Err(BtfError::Truncated("last type runs past the type section"));
    }
    Ok(())
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> std::io::Result<Self> {
        let bytes = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Self::parse(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub fn parse(bytes: Vec<u8>) -> Result<Self, BtfError> {
        let sections = Sections::read(&bytes, 0)?;
        let mut types =
            vec![TypeEntry { kind: 0, name_off: 0, vlen: 0, kind_flag: false, size_or_type: 0, data: 0 }];
        parse_types(&bytes, sections.types, &mut types)?;
        let mut btf =
            Btf { bytes, strings: sections.strings, split_strings: None, types, by_name: HashMap::new() };
        btf.index_names(1);
        Ok(btf)
    }

    /// Reads a kernel module's BTF (`/sys/kernel/btf/<module>`), which is split BTF on top of
    /// `base` (vmlinux): its type ids continue after the base's and its strings after the base's
    /// string section. The result answers for both, with the ids the kernel uses.
    pub fn parse_split(base: &Btf, split: &[u8]) -> Result<Self, BtfError> {
        let shift = base.bytes.len();
        let mut bytes = Vec::with_capacity(shift + split.len());
        bytes.extend_from_slice(&base.bytes);
        bytes.extend_from_slice(split);
        let sections = Sections::read(&bytes, shift)?;
        let base_str_len =
            (base.strings.len() + base.split_strings.as_ref().map_or(0, |(_, r)| r.len())) as u32;
        let mut types = base.types.clone();
        let first = types.len();
        parse_types(&bytes, sections.types, &mut types)?;
        let mut btf = Btf {
            bytes,
            strings: base.strings.clone(),
            split_strings: Some((base_str_len, sections.strings)),
            types,
            by_name: base.by_name.clone(),
        };
        btf.index_names(first);
        Ok(btf)
    }

    /// Adds the named types from id `first` on to the name index.
    fn index_names(&mut self, first: usize) {
        let mut by_name = std::mem::take(&mut self.by_name);
        for (id, t) in self.types.iter().enumerate().skip(first) {
            if t.name_off != 0 {
                let name = self.name(t.name_off).to_owned();
                by_name.entry((t.kind, name)).or_default().push(id as u32);
            }
        }
        self.by_name = by_name;
    }

    fn name(&self, off: u32) -> &str {
        let (range, off) = match &self.split_strings {
            Some((base_len, range)) if off >= *base_len => (range, off - base_len),
            _ => (&self.strings, off),
        };
        let start = range.start + off as usize;
        if start >= range.end {
            return "";
        }
        let s = &self.bytes[start..range.end];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn entry(&self, id: u32) -> Result<&TypeEntry, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadId(id))
    }

    /// Number of types, `void` excluded.
    pub fn len(&self) -> usize {
        self.types.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first type id with this kind and name.
    pub fn id_by_name(&self, kind: u32, name: &str) -> Option<u32> {
        self.by_name.get(&(kind, name.to_owned())).and_then(|ids| ids.first().copied())
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<&TypeEntry, BtfError> {
        for _ in 0..32 {
            let t = self.entry(id)?;
            match t.kind {
                k::TYPEDEF | k::VOLATILE | k::CONST | k::RESTRICT | k::TYPE_TAG => id = t.size_or_type,
                _ => return Ok(t),
            }
        }
        Err(BtfError::BadId(id))
    }

    /// Size in bytes of a type (after typedefs and qualifiers).
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let t = self.resolve(id)?;
        Ok(match t.kind {
            k::INT | k::STRUCT | k::UNION | k::ENUM | k::ENUM64 | k::FLOAT | k::DATASEC => t.size_or_type,
            k::PTR => 8,
            k::ARRAY => {
                let elem = u32_at(&self.bytes, t.data)?;
                let n = u32_at(&self.bytes, t.data + 8)?;
                self.size_of(elem)?.saturating_mul(n)
            }
            _ => 0,
        })
    }

    /// Size of a named struct.
    pub fn struct_size(&self, strukt: &str) -> Result<u32, BtfError> {
        let id = self.id_by_name(k::STRUCT, strukt).ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        self.size_of(id)
    }

    /// Finds `field` in the struct/union `id`, descending into anonymous members.
    /// Returns (bit offset, member type id).
    fn find_member(&self, id: u32, field: &str) -> Result<Option<(u32, u32, bool)>, BtfError> {
        let t = *self.resolve(id)?;
        if t.kind != k::STRUCT && t.kind != k::UNION {
            return Ok(None);
        }
        for i in 0..t.vlen as usize {
            let m = t.data + 12 * i;
            let name_off = u32_at(&self.bytes, m)?;
            let ty = u32_at(&self.bytes, m + 4)?;
            let raw = u32_at(&self.bytes, m + 8)?;
            let (bit_off, bitfield) =
                if t.kind_flag { (raw & 0x00ff_ffff, raw >> 24 != 0) } else { (raw, false) };
            if name_off == 0 {
                if let Some((inner, ty, bf)) = self.find_member(ty, field)? {
                    return Ok(Some((bit_off + inner, ty, bf)));
                }
            } else if self.name(name_off) == field {
                return Ok(Some((bit_off, ty, bitfield)));
            }
        }
        Ok(None)
    }

    /// Location of `path` (e.g. `["s_writers", "frozen"]`) inside struct `strukt`.
    pub fn field(&self, strukt: &str, path: &[&str]) -> Result<FieldLoc, BtfError> {
        let mut id =
            self.id_by_name(k::STRUCT, strukt).ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let mut bits = 0u32;
        let mut owner = strukt.to_owned();
        for (i, field) in path.iter().enumerate() {
            let (bit_off, ty, bitfield) = self
                .find_member(id, field)?
                .ok_or_else(|| BtfError::NoField { strukt: owner.clone(), field: (*field).to_owned() })?;
            if bitfield || bit_off % 8 != 0 {
                return Err(BtfError::Bitfield { strukt: owner, field: (*field).to_owned() });
            }
            bits += bit_off;
            id = ty;
            if i + 1 < path.len() {
                let kind = self.resolve(id)?.kind;
                if kind != k::STRUCT && kind != k::UNION {
                    return Err(BtfError::NotComposite { strukt: owner, field: (*field).to_owned() });
                }
            }
            owner = format!("{owner}.{field}");
        }
        Ok(FieldLoc { offset: bits / 8, size: self.size_of(id)? })
    }

    /// Number of parameters of the kernel function `func`.
    pub fn func_nargs(&self, func: &str) -> Result<u32, BtfError> {
        let id = self.id_by_name(k::FUNC, func).ok_or_else(|| BtfError::NoFunc(func.to_owned()))?;
        let proto = self.entry(self.entry(id)?.size_or_type)?;
        if proto.kind != k::FUNC_PROTO {
            return Err(BtfError::NoFunc(func.to_owned()));
        }
        Ok(proto.vlen)
    }
}

/// Builds BTF blobs for tests (here and in the offset tests).
#[cfg(test)]
pub(crate) mod builder {
    use super::btf_kind as k;

    #[derive(Default)]
    pub struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        /// For split BTF: the base's string length, where this blob's string offsets start.
        str_base: u32,
    }

    impl BtfBuilder {
        pub fn new() -> Self {
            Self { types: Vec::new(), strings: vec![0], next_id: 1, str_base: 0 }
        }

        /// A module's BTF on top of `base`: ids and string offsets continue after the base's.
        pub fn split(base: &BtfBuilder) -> Self {
            Self {
                types: Vec::new(),
                strings: Vec::new(),
                next_id: base.next_id,
                str_base: base.strings.len() as u32,
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.str_base + self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, st: u32) -> u32 {
            let name_off = self.str(name);
            let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
            for v in [name_off, info, st] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, k::INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.header("", k::PTR, 0, false, to)
        }

        pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.header("", k::ARRAY, 0, false, 0);
            for v in [elem, index, n] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, k::TYPEDEF, 0, false, to)
        }

        /// Members as (name, type, bit offset); "" for anonymous.
        pub fn composite(&mut self, kind: u32, name: &str, size: u32, m: &[(&str, u32, u32)]) -> u32 {
            let id = self.header(name, kind, m.len() as u32, false, size);
            for (mname, ty, bits) in m {
                let n = self.str(mname);
                for v in [n, *ty, *bits] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }

        pub fn func(&mut self, name: &str, ret: u32, params: &[u32]) -> u32 {
            let proto = self.header("", k::FUNC_PROTO, params.len() as u32, false, ret);
            for p in params {
                self.types.extend_from_slice(&0u32.to_le_bytes());
                self.types.extend_from_slice(&p.to_le_bytes());
            }
            self.header(name, k::FUNC, 1, false, proto)
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [24u32, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
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
            Btf::parse(module.build())
                .map(|b| b.id_by_name(k::FUNC, "btrfs_start_transaction"))
                .ok()
                .flatten(),
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
}
