//! Builds BTF blobs for tests (the parser's, the offsets', module_fexit's).
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

    /// A struct whose members carry bitfield sizes (the kind flag set): (name, type, bit offset,
    /// bits; 0 for a whole member).
    pub fn bitfields(&mut self, name: &str, size: u32, m: &[(&str, u32, u32, u32)]) -> u32 {
        let id = self.header(name, k::STRUCT, m.len() as u32, true, size);
        for (mname, ty, bits, width) in m {
            let n = self.str(mname);
            for v in [n, *ty, width << 24 | bits] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
        }
        id
    }

    pub fn func(&mut self, name: &str, ret: u32, params: &[u32]) -> u32 {
        let unnamed: Vec<(&str, u32)> = params.iter().map(|p| ("", *p)).collect();
        self.func_named(name, ret, &unnamed)
    }

    /// A function whose parameters have names, as vmlinux BTF gives them.
    pub fn func_named(&mut self, name: &str, ret: u32, params: &[(&str, u32)]) -> u32 {
        // Strings first: a parameter's entry is written whole, after the prototype's header.
        let params: Vec<(u32, u32)> = params.iter().map(|(n, ty)| (self.str(n), *ty)).collect();
        let proto = self.header("", k::FUNC_PROTO, params.len() as u32, false, ret);
        for (name_off, ty) in params {
            self.types.extend_from_slice(&name_off.to_le_bytes());
            self.types.extend_from_slice(&ty.to_le_bytes());
        }
        self.header(name, k::FUNC, 1, false, proto)
    }

    /// A tracepoint's `btf_trace_NAME` typedef: a pointer to a prototype whose first argument is
    /// the tracepoint's data, then `params`.
    pub fn tracepoint(&mut self, name: &str, params: &[u32]) -> u32 {
        let void_ptr = self.ptr(0);
        let proto = self.header("", k::FUNC_PROTO, params.len() as u32 + 1, false, 0);
        for p in std::iter::once(&void_ptr).chain(params) {
            self.types.extend_from_slice(&0u32.to_le_bytes());
            self.types.extend_from_slice(&p.to_le_bytes());
        }
        let ptr = self.ptr(proto);
        self.typedef(&format!("btf_trace_{name}"), ptr)
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
