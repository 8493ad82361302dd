//! Kernel symbols from /proc/kallsyms, to name stack frames and callers ("xfs_trans_alloc+0x2f").
#[derive(Default)]
pub struct Ksyms {
    /// (address, start of the name in `names`, its length), sorted by address: one allocation
    /// for all names rather than one each (a kernel has over 100,000 text symbols; `watch` holds
    /// them for its whole life).
    syms: Vec<(u64, u32, u32)>,
    names: String,
}

impl Ksyms {
    /// Reads /proc/kallsyms line by line (as root the addresses are real; otherwise they read as
    /// 0 and every lookup misses).
    pub fn load() -> Self {
        use std::io::BufRead as _;
        let mut k = Self::default();
        let Ok(file) = std::fs::File::open("/proc/kallsyms") else { return k };
        let mut reader = std::io::BufReader::with_capacity(64 << 10, file);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            k.add(&line);
            line.clear();
        }
        k.finish()
    }

    pub fn parse(text: &str) -> Self {
        let mut k = Self::default();
        text.lines().for_each(|l| k.add(l));
        k.finish()
    }

    /// Keeps a text symbol's line (t/T, and w/W for weak functions).
    fn add(&mut self, line: &str) {
        let mut f = line.split_whitespace();
        let (Some(addr), Some(ty), Some(name)) = (f.next(), f.next(), f.next()) else { return };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { return };
        if addr == 0 || !matches!(ty, "t" | "T" | "w" | "W") {
            return;
        }
        let (Ok(at), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len())) else { return };
        self.names.push_str(name);
        self.syms.push((addr, at, len));
    }

    fn finish(mut self) -> Self {
        self.syms.sort_unstable_by_key(|(a, ..)| *a);
        self.syms.shrink_to_fit();
        self.names.shrink_to_fit();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// The symbol covering `addr`: its start and name.
    fn covering(&self, addr: u64) -> Option<(u64, &str)> {
        let i = self.syms.partition_point(|(a, ..)| *a <= addr);
        let &(start, at, len) = self.syms.get(i.checked_sub(1)?)?;
        let name = self.names.get(at as usize..(at + len) as usize)?;
        (addr - start < 1 << 20).then_some((start, name))
    }

    /// `name+0xoff` for an address, or the hex address when nothing covers it.
    pub fn name(&self, addr: u64) -> String {
        match self.covering(addr) {
            Some((start, name)) => format!("{name}+{:#x}", addr - start),
            None => format!("{addr:#x}"),
        }
    }

    /// The bare function name for an address (no offset), if known.
    pub fn function(&self, addr: u64) -> Option<&str> {
        self.covering(addr).map(|(_, name)| name)
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
