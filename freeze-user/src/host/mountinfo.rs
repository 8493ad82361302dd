//! Maps a superblock's device number to where it is mounted, from /proc/self/mountinfo.
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (mountinfo's first field).
    pub id: u32,
    pub dev: (u32, u32),
    /// Root of the mount within the filesystem ("/" for a whole-fs mount).
    pub root: String,
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped (the kernel writes this file, but a reader
/// must not crash on a line it does not understand).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(Mount {
                id: f.first()?.parse().ok()?,
                dev: (maj.parse().ok()?, min.parse().ok()?),
                root: unescape(f.get(3)?),
                mountpoint: unescape(f.get(4)?),
                fstype: (*r.first()?).to_owned(),
                source: unescape(r.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// Device → mount table, refreshed on a miss (filesystems get mounted while we record).
#[derive(Default)]
pub struct MountTable {
    by_dev: HashMap<(u32, u32), Vec<Mount>>,
    /// In mountinfo order: the last entry at a mountpoint is the one on top.
    in_order: Vec<Mount>,
    /// The mountinfo text last read: an unchanged table is not parsed again.
    text: String,
    /// How often a refresh found the table changed: what was derived from it at one count is
    /// current while the count stays.
    changes: u64,
}

impl MountTable {
    pub fn load() -> Self {
        let mut t = Self::default();
        t.refresh();
        t
    }

    pub fn from_mounts(mounts: Vec<Mount>) -> Self {
        let mut by_dev: HashMap<(u32, u32), Vec<Mount>> = HashMap::new();
        for m in &mounts {
            by_dev.entry(m.dev).or_default().push(m.clone());
        }
        Self { by_dev, in_order: mounts, text: String::new(), changes: 0 }
    }

    /// How often a refresh found the table changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn all(&self) -> Vec<Mount> {
        self.in_order.clone()
    }

    /// The device of the mount on top at `mountpoint`.
    pub fn dev_at(&self, mountpoint: &str) -> Option<(u32, u32)> {
        self.in_order.iter().rev().find(|m| m.mountpoint == mountpoint).map(|m| m.dev)
    }

    /// The filesystem type mounted from `dev`.
    pub fn fstype(&self, dev: (u32, u32)) -> Option<&str> {
        self.by_dev.get(&dev)?.first().map(|m| m.fstype.as_str())
    }

    /// The mount with id `id`.
    pub fn by_id(&self, id: u32) -> Option<&Mount> {
        self.in_order.iter().find(|m| m.id == id)
    }

    /// Reads the table again (parsed only when it changed).
    pub fn refresh(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if text == self.text {
            return;
        }
        let changes = self.changes + 1;
        let table = Self::from_mounts(parse(&text));
        *self = Self { text, changes, ..table };
    }

    /// The mountpoint of the whole filesystem on `dev` (root "/" preferred, else the first).
    pub fn mountpoint(&self, dev: (u32, u32)) -> Option<&str> {
        let mounts = self.by_dev.get(&dev)?;
        mounts.iter().find(|m| m.root == "/").or(mounts.first()).map(|m| m.mountpoint.as_str())
    }

    pub fn mountpoint_refreshing(&mut self, dev: (u32, u32)) -> Option<&str> {
        if self.mountpoint(dev).is_none() {
            self.refresh();
        }
        self.mountpoint(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 7:0 / /tmp/fw\\040test/mnt rw,relatime shared:20 - ext4 /dev/loop0 rw
41 22 7:0 /sub /srv/bind rw,relatime shared:20 - ext4 /dev/loop0 rw
42 22 0:55 / /tmp/b rw - btrfs /dev/loop1 rw,space_cache=v2
garbage line without separator
";

    #[test]
    fn parses_devices_mountpoints_and_escapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].dev, (7, 0));
        assert_eq!((m[0].id, m[1].id), (22, 40));
        assert_eq!(MountTable::from_mounts(m.clone()).by_id(41).map(|m| m.root.as_str()), Some("/sub"));
        assert_eq!(m[1].mountpoint, "/tmp/fw test/mnt");
        assert_eq!(m[3].fstype, "btrfs");
        assert_eq!(m[3].source, "/dev/loop1");
    }

    #[test]
    fn prefers_the_whole_filesystem_mount() {
        let mut mounts = parse(SAMPLE);
        mounts.swap(1, 2); // the bind mount first
        let t = MountTable::from_mounts(mounts);
        assert_eq!(t.mountpoint((7, 0)), Some("/tmp/fw test/mnt"));
        assert_eq!(t.mountpoint((0, 55)), Some("/tmp/b"));
        assert_eq!(t.mountpoint((9, 9)), None);
        assert_eq!(t.dev_at("/tmp/b"), Some((0, 55)));
        assert_eq!(t.dev_at("/nowhere"), None);
    }
}
