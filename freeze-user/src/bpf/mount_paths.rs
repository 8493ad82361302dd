//! The mount-point table the kernel matches a bind or move mount's source path against (mount
//! denial, and whether a mount call seen at its function can matter). Pure code; the loader
//! writes the table into the kernel's `MOUNT_PATHS` trie.
use freeze_common::{PATH_KEY_BYTES, kdev};

use crate::host::mountinfo::Mount;

/// One entry of the mount-point trie: the mount point with a trailing '/', NUL padded, its length
/// in bits, and the kernel `dev_t` (`major << 20 | minor`) of the filesystem mounted there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathKey {
    pub data: [u8; PATH_KEY_BYTES],
    pub prefix_bits: u32,
    pub kdev: u32,
}

/// The trie entries for a mount table. Where several mounts share a mount point, the last one
/// (the one on top) wins, as it does for path lookups. Mount points that do not fit are skipped:
/// a bind from below them is not matched, which allows it (fail open).
pub fn path_keys(mounts: &[Mount]) -> Vec<PathKey> {
    let mut by_path: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    for m in mounts {
        by_path.insert(m.mountpoint.as_str(), m.dev);
    }
    by_path
        .into_iter()
        .filter_map(|(path, (major, minor))| {
            let mut bytes = path.as_bytes().to_vec();
            if !bytes.ends_with(b"/") {
                bytes.push(b'/');
            }
            if bytes.len() > PATH_KEY_BYTES || !bytes.starts_with(b"/") {
                return None;
            }
            let mut data = [0u8; PATH_KEY_BYTES];
            data[..bytes.len()].copy_from_slice(&bytes);
            Some(PathKey { data, prefix_bits: bytes.len() as u32 * 8, kdev: kdev::make(major, minor) })
        })
        .collect()
}

/// What the kernel's longest-prefix match returns for `source` (the same rules as the eBPF
/// program: absolute paths only, a trailing '/' appended): for tests and for explaining a verdict.
pub fn lookup(keys: &[PathKey], source: &str) -> Option<u32> {
    if !source.starts_with('/') {
        return None;
    }
    let mut probe = source.as_bytes().to_vec();
    if !probe.ends_with(b"/") {
        probe.push(b'/');
    }
    keys.iter()
        .filter(|k| {
            let n = (k.prefix_bits / 8) as usize;
            probe.len() >= n && probe[..n] == k.data[..n]
        })
        .max_by_key(|k| k.prefix_bits)
        .map(|k| k.kdev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dev: (u32, u32), mountpoint: &str) -> Mount {
        Mount {
            id: 0,
            dev,
            root: "/".into(),
            mountpoint: mountpoint.into(),
            fstype: "ext4".into(),
            source: "/dev/x".into(),
        }
    }

    #[test]
    fn a_path_belongs_to_the_deepest_mount_point_above_it() {
        let keys = path_keys(&[mount((8, 1), "/"), mount((7, 0), "/mnt/a"), mount((7, 1), "/mnt/a/b")]);
        assert_eq!(lookup(&keys, "/mnt/a"), Some(7 << 20));
        assert_eq!(lookup(&keys, "/mnt/a/"), Some(7 << 20));
        assert_eq!(lookup(&keys, "/mnt/a/sub/dir"), Some(7 << 20));
        assert_eq!(lookup(&keys, "/mnt/a/b/c"), Some((7 << 20) | 1));
        // A sibling whose name starts the same is not inside /mnt/a.
        assert_eq!(lookup(&keys, "/mnt/ab"), Some(8 << 20 | 1));
        assert_eq!(lookup(&keys, "/etc"), Some((8 << 20) | 1));
        assert_eq!(lookup(&keys, "relative/path"), None);
    }

    #[test]
    fn the_mount_on_top_wins_and_long_paths_are_left_out() {
        let long = format!("/{}", "x".repeat(PATH_KEY_BYTES));
        let keys = path_keys(&[mount((7, 0), "/mnt"), mount((7, 5), "/mnt"), mount((7, 9), &long)]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kdev, (7 << 20) | 5);
        assert_eq!(keys[0].prefix_bits, 5 * 8);
        assert_eq!(&keys[0].data[..6], b"/mnt/\0");
    }
}
