//! Kernel symbols from /proc/kallsyms, to name stack frames and callers ("xfs_trans_alloc+0x2f").
pub struct Ksyms {
    /// Sorted by address.
    syms: Vec<(u64, String)>,
}

impl Ksyms {
    /// Reads /proc/kallsyms (as root the addresses are real; otherwise they read as 0 and every
    /// lookup misses).
    pub fn load() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms").unwrap_or_default())
    }

    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let ty = f.next()?;
                let name = f.next()?;
                // Text symbols only: t/T (and w/W for weak functions).
                (addr != 0 && matches!(ty, "t" | "T" | "w" | "W")).then(|| (addr, name.to_owned()))
            })
            .collect();
        syms.sort_unstable_by_key(|(a, _)| *a);
        Self { syms }
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// `name+0xoff` for an address, or the hex address when nothing covers it.
    pub fn name(&self, addr: u64) -> String {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        match i.checked_sub(1).and_then(|i| self.syms.get(i)) {
            Some((start, name)) if addr - start < 1 << 20 => format!("{name}+{:#x}", addr - start),
            _ => format!("{addr:#x}"),
        }
    }

    /// The bare function name for an address (no offset), if known.
    pub fn function(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        let (start, name) = self.syms.get(i.checked_sub(1)?)?;
        (addr - start < 1 << 20).then_some(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _text
ffffffff81200000 t xfs_trans_alloc [xfs]
ffffffff81200400 T xfs_trans_alloc_empty [xfs]
ffffffff81300000 d some_data
0000000000000000 T hidden
";

    #[test]
    fn names_addresses_by_the_enclosing_function() {
        let k = Ksyms::parse(SAMPLE);
        assert_eq!(k.name(0xffffffff8120002f), "xfs_trans_alloc+0x2f");
        assert_eq!(k.name(0xffffffff81200400), "xfs_trans_alloc_empty+0x0");
        assert_eq!(k.function(0xffffffff81200410), Some("xfs_trans_alloc_empty"));
        // Data symbols do not name code; below the first symbol there is no name.
        assert_eq!(k.name(0xffffffff81300010), "xfs_trans_alloc_empty+0xffc10");
        assert_eq!(k.name(0x1000), "0x1000");
        assert_eq!(k.function(0x1000), None);
    }
}
