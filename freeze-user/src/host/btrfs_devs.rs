//! btrfs superblocks carry an anonymous `s_dev` (0:NN) and no `s_bdev`, so the kernel side cannot
//! tell which block devices belong to a frozen btrfs. This reads that from sysfs
//! (`/sys/fs/btrfs/<fsid>/devices/<name>/dev`) and pairs every member device with the `s_dev`
//! mountinfo shows for the filesystem.
use std::path::Path;

use crate::host::{mountinfo::Mount, storage::Dev};

/// Where btrfs lists its filesystems and their member devices.
const SYSFS_BTRFS: &str = "/sys/fs/btrfs";

/// `aliases` of this system's mounted btrfs filesystems.
pub fn on_this_system(mounts: &[Mount]) -> Vec<(Dev, Dev)> {
    aliases(Path::new(SYSFS_BTRFS), mounts)
}

/// Each mounted btrfs's anonymous `s_dev` with its member devices, from `aliases`' pairs.
pub fn members_by_filesystem(pairs: &[(Dev, Dev)]) -> Vec<(Dev, Vec<Dev>)> {
    let mut out: Vec<(Dev, Vec<Dev>)> = Vec::new();
    for &(member, fs) in pairs {
        match out.iter_mut().find(|(f, _)| *f == fs) {
            Some((_, members)) => members.push(member),
            None => out.push((fs, vec![member])),
        }
    }
    out
}

/// (member block device, filesystem s_dev) pairs, both as (major, minor).
pub fn aliases(sysfs_btrfs: &Path, mounts: &[Mount]) -> Vec<(Dev, Dev)> {
    let mut out = Vec::new();
    let Ok(fsids) = std::fs::read_dir(sysfs_btrfs) else { return out };
    for fsid in fsids.flatten() {
        let Ok(devices) = std::fs::read_dir(fsid.path().join("devices")) else { continue };
        let members: Vec<Dev> = devices
            .flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join("dev")).ok())
            .filter_map(|s| {
                let (ma, mi) = s.trim().split_once(':')?;
                Some((ma.parse().ok()?, mi.parse().ok()?))
            })
            .collect();
        // The mount whose source is one of the members is this filesystem.
        let fs_dev = mounts.iter().filter(|m| m.fstype == "btrfs").find_map(|m| {
            let rdev = rdev_of(&m.source)?;
            members.contains(&rdev).then_some(m.dev)
        });
        if let Some(fs_dev) = fs_dev {
            out.extend(members.iter().map(|&member| (member, fs_dev)));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn rdev_of(path: &str) -> Option<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let md = std::fs::metadata(path).ok()?;
    if !md.file_type().is_block_device() {
        return None;
    }
    let rdev = md.rdev();
    Some((libc::major(rdev), libc::minor(rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_grouped_by_filesystem_in_the_order_found() {
        let pairs = [((7, 1), (0, 45)), ((7, 2), (0, 46)), ((7, 3), (0, 45))];
        assert_eq!(
            members_by_filesystem(&pairs),
            vec![((0, 45), vec![(7, 1), (7, 3)]), ((0, 46), vec![(7, 2)])]
        );
    }

    #[test]
    fn without_btrfs_there_are_no_aliases() {
        let dir = std::env::temp_dir().join(format!("fw-btrfs-none-{}", std::process::id()));
        assert!(aliases(&dir, &[]).is_empty());
    }

    #[test]
    fn members_are_paired_with_the_mounted_filesystem() {
        // A fake sysfs whose member is a real block device node if the machine has one.
        let Some(node) = ["/dev/loop0", "/dev/vda", "/dev/sda"].into_iter().find(|p| rdev_of(p).is_some())
        else {
            assert!(
                std::env::var_os("FREEZEWATCH_REQUIRE_KERNEL").is_none_or(|v| v != "1"),
                "FREEZEWATCH_REQUIRE_KERNEL=1 but no block device node (/dev/loop0, vda, sda) to point a fake mount at"
            );
            eprintln!(
                "SKIPPED members_are_paired_with_the_mounted_filesystem: no block device node to point a fake mount at"
            );
            return;
        };
        let rdev = rdev_of(node).expect("block device");
        let dir = std::env::temp_dir().join(format!("fw-btrfs-{}", std::process::id()));
        let member = dir.join("abcd-fsid/devices/member0");
        std::fs::create_dir_all(&member).expect("mkdir");
        std::fs::write(member.join("dev"), format!("{}:{}\n", rdev.0, rdev.1)).expect("write");
        let mounts = vec![
            Mount {
                id: 0,
                dev: (0, 55),
                root: "/".into(),
                mountpoint: "/m".into(),
                fstype: "btrfs".into(),
                source: node.into(),
            },
            Mount {
                id: 0,
                dev: (0, 56),
                root: "/".into(),
                mountpoint: "/o".into(),
                fstype: "ext4".into(),
                source: node.into(),
            },
        ];
        assert_eq!(aliases(&dir, &mounts), vec![(rdev, (0, 55))]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
