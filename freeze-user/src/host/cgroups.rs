//! Cgroup ids (what the programs read with `bpf_get_current_cgroup_id`) to paths below the cgroup2
//! root. A cgroup's id is the inode number of its directory in the cgroup2 filesystem, so one walk
//! of that tree maps every id; a miss walks again (a cgroup made after the last walk), at most
//! once a second, and what a walk does not find stays unknown until the next.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use freeze_model::attribution::Cgroup;

use super::mountinfo;

/// Walks no more often than this on misses.
const REWALK_AFTER: Duration = Duration::from_secs(1);
/// Ids remembered at most (a host that makes and removes cgroups all day must not grow us).
const IDS_KEPT: usize = 65_536;
/// Directories a walk visits at most.
const WALK_LIMIT: usize = 200_000;

/// Where the cgroup2 hierarchy is mounted (its root mounted, not a delegated subtree), from
/// mountinfo: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one.
pub fn cgroup2_root(mountinfo_text: &str) -> Option<PathBuf> {
    mountinfo::parse(mountinfo_text)
        .into_iter()
        .find(|m| m.fstype == "cgroup2" && m.root == "/")
        .map(|m| PathBuf::from(m.mountpoint))
}

pub struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    /// The cgroups events have named, with what their paths say: classified once per id, not per
    /// event (the recorder asks for every event).
    cgroups: HashMap<u64, Arc<Cgroup>>,
    last_walk: Option<Instant>,
}

impl CgroupPaths {
    /// For this system's cgroup2 mount (none: every path stays unknown).
    pub fn load() -> Self {
        let root = std::fs::read_to_string("/proc/self/mountinfo").ok().and_then(|t| cgroup2_root(&t));
        Self::at(root)
    }

    pub fn at(root: Option<PathBuf>) -> Self {
        Self { root, paths: HashMap::new(), cgroups: HashMap::new(), last_walk: None }
    }

    /// Where the cgroup2 hierarchy is mounted, when it is.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Cgroup `id` with its path and what the path names (unit, container, pod), or None when its
    /// path is unknown.
    /// One copy per cgroup, shared by every event of its tasks.
    pub fn cgroup(&mut self, id: u64) -> Option<Arc<Cgroup>> {
        if let Some(cg) = self.cgroups.get(&id) {
            return Some(cg.clone());
        }
        let cg = Arc::new(Cgroup::at(id, self.path(id)?));
        if self.cgroups.len() > IDS_KEPT {
            self.cgroups.clear();
        }
        self.cgroups.insert(id, cg.clone());
        Some(cg)
    }

    /// The path of cgroup `id` below the root ("/" for the root itself), or None when unknown.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        let due = self.last_walk.is_none_or(|t| t.elapsed() >= REWALK_AFTER);
        if due && let Some(root) = self.root.clone() {
            self.last_walk = Some(Instant::now());
            if self.paths.len() > IDS_KEPT {
                self.paths.clear();
            }
            walk(&root, &root, &mut self.paths, &mut 0);
        }
        self.paths.get(&id).cloned()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut HashMap<u64, String>, visited: &mut usize) {
    *visited += 1;
    if *visited > WALK_LIMIT {
        return;
    }
    let Ok(md) = std::fs::symlink_metadata(dir) else { return };
    let rel = dir.strip_prefix(root).map(|r| format!("/{}", r.display())).unwrap_or_else(|_| "/".into());
    out.insert(md.ino(), rel);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), out, visited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_root_comes_from_mountinfo() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let delegated = "41 31 0:38 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(delegated), None, "a subtree mount is not the root");
        assert_eq!(cgroup2_root("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
    }

    #[test]
    fn ids_are_directory_inodes_and_new_ones_are_found_on_a_miss() {
        // A directory tree stands in for the cgroup2 filesystem: same rule, inode = id.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("system.slice/backup.service")).unwrap();
        let ino = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().ino();
        let mut paths = CgroupPaths::at(Some(dir.path().to_path_buf()));
        assert_eq!(
            paths.path(ino("system.slice/backup.service")).as_deref(),
            Some("/system.slice/backup.service")
        );
        assert_eq!(paths.path(ino("")).as_deref(), Some("/"));
        std::fs::create_dir(dir.path().join("late")).unwrap();
        paths.last_walk = Some(Instant::now() - REWALK_AFTER);
        assert_eq!(paths.path(ino("late")).as_deref(), Some("/late"), "a miss walks again");
        assert_eq!(paths.path(u64::MAX), None, "an unknown id stays unknown");
        let cg = paths.cgroup(ino("system.slice/backup.service")).expect("known");
        assert_eq!(
            (cg.path.as_deref(), cg.unit.as_deref()),
            (Some("/system.slice/backup.service"), Some("backup.service"))
        );
        assert_eq!(paths.cgroup(u64::MAX), None);
        assert_eq!(CgroupPaths::at(None).path(1), None);
    }
}
