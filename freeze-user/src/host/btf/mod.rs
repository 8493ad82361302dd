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
    #[error(
        "field `{strukt}.{field}` is neither a one-bit bitfield nor a bool; freezewatch expects a flag there"
    )]
    NotFlag { strukt: String, field: String },
    #[error("no tracepoint `{0}` in BTF (no type btf_trace_{0})")]
    NoTracepoint(String),
    #[error("field `{strukt}.{field}` is not a struct or union, cannot descend into it")]
    NotComposite { strukt: String, field: String },
    #[error("no function `{0}` in BTF")]
    NoFunc(String),
    #[error("function `{func}` has no parameter `{param}` in BTF")]
    NoParam { func: String, param: String },
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

    /// The bit offset, from the start of struct `strukt`, of its flag `field` (a direct member or
    /// one of an anonymous member): a one-bit bitfield, or a one-byte `bool`, whose lowest bit is
    /// its value (`signal_struct.is_child_subreaper` is the one, the other from 7.x on).
    pub fn flag_bit(&self, strukt: &str, field: &str) -> Result<u32, BtfError> {
        let id = self.id_by_name(k::STRUCT, strukt).ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let no_field = || BtfError::NoField { strukt: strukt.to_owned(), field: field.to_owned() };
        let (bit_off, ty, bitfield) = self.find_member(id, field)?.ok_or_else(no_field)?;
        let whole_byte = !bitfield && bit_off % 8 == 0 && self.size_of(ty)? == 1;
        if !bitfield && !whole_byte {
            return Err(BtfError::NotFlag { strukt: strukt.to_owned(), field: field.to_owned() });
        }
        Ok(bit_off)
    }

    /// The value of enumerator `name` of enum `enum_name` (`ENUM`: 32-bit, signed when its
    /// kind flag says so).
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Result<i64, BtfError> {
        let missing = || BtfError::NoField { strukt: format!("enum {enum_name}"), field: name.to_owned() };
        let id = self.id_by_name(k::ENUM, enum_name).ok_or_else(missing)?;
        let t = *self.entry(id)?;
        for i in 0..t.vlen as usize {
            let at = t.data + 8 * i;
            if self.name(u32_at(&self.bytes, at)?) == name {
                let raw = u32_at(&self.bytes, at + 4)?;
                return Ok(if t.kind_flag { i64::from(raw as i32) } else { i64::from(raw) });
            }
        }
        Err(missing())
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

    /// The index of kernel function `func`'s parameter `param`, and how many it has.
    pub fn func_param(&self, func: &str, param: &str) -> Result<(u32, u32), BtfError> {
        let id = self.id_by_name(k::FUNC, func).ok_or_else(|| BtfError::NoFunc(func.to_owned()))?;
        let proto = self.entry(self.entry(id)?.size_or_type)?;
        if proto.kind != k::FUNC_PROTO {
            return Err(BtfError::NoFunc(func.to_owned()));
        }
        for i in 0..proto.vlen {
            if self.name(u32_at(&self.bytes, proto.data + 8 * i as usize)?) == param {
                return Ok((i, proto.vlen));
            }
        }
        Err(BtfError::NoParam { func: func.to_owned(), param: param.to_owned() })
    }

    /// The number of arguments tracepoint `name` passes its BTF programs (from the prototype of
    /// its `btf_trace_NAME` typedef, whose first argument is the tracepoint's own data).
    pub fn tracepoint_nargs(&self, name: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::NoTracepoint(name.to_owned());
        let id = self.id_by_name(k::TYPEDEF, &format!("btf_trace_{name}")).ok_or_else(missing)?;
        let ptr = self.entry(self.entry(id)?.size_or_type)?;
        if ptr.kind != k::PTR {
            return Err(missing());
        }
        let proto = self.entry(ptr.size_or_type)?;
        if proto.kind != k::FUNC_PROTO || proto.vlen == 0 {
            return Err(missing());
        }
        Ok(proto.vlen - 1)
    }
}

#[cfg(test)]
pub(crate) mod builder;
#[cfg(test)]
mod tests;
