//! The guest kernels: which Debian package each comes from, fetched with apt into
//! target/vm/cache (once) and unpacked under target/vm/NAME.
//!
//! 6.1 and 6.12 are in bookworm, which the system's apt already knows. 5.10 (bullseye) and the
//! newest 7.x (trixie-backports) come through a sources list of xtask's own under target/vm/apt,
//! with its own lists and cache directories: the system's apt configuration is never touched.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{output, root};
use crate::run;

/// Where a kernel's package is found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Archive {
    /// The suites the system's apt is configured with (bookworm).
    System,
    /// xtask's own sources list (`PRIVATE_SOURCES`).
    Private,
}

pub(super) struct Kernel {
    /// The name users pass to --kernel.
    pub name: &'static str,
    pub archive: Archive,
    /// apt-cache's regular expression for the package holding vmlinuz; the newest one that
    /// downloads is used (an archive can list a package its pool no longer has).
    pub package: &'static str,
    /// Packaging split in two since 6.17 (linux-binary-V with vmlinuz, linux-modules-V with the
    /// modules): the modules package's name, made by replacing the first string with the second.
    pub modules_package: Option<(&'static str, &'static str)>,
    /// Features whose hook on this kernel is not the one `GUEST_HOOKS` names (None: no hook
    /// attaches, the feature records nothing), with why. doctor must say exactly this, and the
    /// tests of such a feature's hook may skip here (FREEZEWATCH_ABSENT).
    pub differs: &'static [Differs],
    /// Tests that skip on this kernel for another reason, with why.
    pub skips: &'static [(&'static str, &'static str)],
    /// What this kernel does that the suite must allow for, by name (FREEZEWATCH_QUIRKS for the
    /// guest), with what: a test asks `known_quirk(NAME)`, and a skip for one says
    /// "SKIPPED TEST: quirk NAME (…".
    pub quirks: &'static [(&'static str, &'static str)],
}

pub(super) struct Differs {
    pub feature: &'static str,
    pub hook: Option<&'static str>,
    pub why: &'static str,
}

impl Kernel {
    /// FREEZEWATCH_ABSENT for the guest: the features that record nothing there.
    pub fn absent(&self) -> String {
        self.differs.iter().filter(|d| d.hook.is_none()).map(|d| d.feature).collect::<Vec<_>>().join(",")
    }

    /// FREEZEWATCH_OTHER_HOOK for the guest: the features that use another hook there.
    pub fn other_hooks(&self) -> String {
        self.differs.iter().filter(|d| d.hook.is_some()).map(|d| d.feature).collect::<Vec<_>>().join(",")
    }

    /// FREEZEWATCH_QUIRKS for the guest.
    pub fn quirk_names(&self) -> String {
        self.quirks.iter().map(|(q, _)| *q).collect::<Vec<_>>().join(",")
    }
}

/// Before 6.6 there is one freeze holder per superblock: a second freeze fails with EBUSY.
const NO_NESTED_HOLDERS: (&str, &str) =
    ("nested_holders_keep_the_gate_closed_until_the_last_thaw", "freeze holders nest from Linux 6.6 on");

pub(super) const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        archive: Archive::Private,
        package: "^linux-image-5\\.10\\.0-[0-9]+-cloud-amd64-unsigned$",
        modules_package: None,
        differs: &[
            Differs {
                feature: "block-writes",
                hook: Some("tracepoint:block:block_bio_queue"),
                why: "the raw tracepoint passes the queue before the bio until 5.11, and a bio names \
                      its disk, not its block device, until 5.12: the tracepoint's record is read",
            },
            Differs {
                feature: "blocked-writers",
                hook: Some("fentry:__percpu_down_read"),
                why: "the lock:contention_begin/end tracepoints arrived in 5.19: the gate semaphore's \
                      slow path is watched instead (fentry, so nothing where fentry is refused)",
            },
            Differs {
                feature: "txn-xfs",
                hook: Some("tracepoint:xfs:xfs_trans_alloc"),
                why: "modules have no BTF before 5.11: the raw tracepoint cannot reach the superblock \
                      through xfs's structs, and the tracepoint's record (its device) is read",
            },
            Differs {
                feature: "txn-btrfs",
                hook: Some("tracepoint:btrfs:btrfs_transaction_commit+btrfs_space_reservation"),
                why: "modules have no BTF before 5.11, so neither fexit on btrfs's functions nor the \
                      raw tracepoints (which read btrfs's structs): starts are seen where they \
                      reserve space, from the tracepoints' records",
            },
        ],
        skips: &[NO_NESTED_HOLDERS],
        quirks: &[
            (
                "xfs-getfsmap-waits-for-the-thaw",
                "xfs's GETFSMAP takes freeze protection before its empty transaction: on a frozen \
                 xfs it waits at the gate for the thaw (later kernels read the space map while frozen)",
            ),
            (
                "ext4-writeback-starts-handles-while-frozen",
                "ext4 writeback started from a close (auto_da_alloc after a truncating rewrite) can start \
             a journal handle on the frozen filesystem (the kernel warns in ext4_journal_check_start, \
             and ext4_freeze left the journal unlocked): freezewatch reports that slip as it is",
            ),
        ],
    },
    Kernel {
        name: "6.1",
        archive: Archive::System,
        package: "^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64-unsigned$",
        modules_package: None,
        differs: &[],
        skips: &[NO_NESTED_HOLDERS],
        quirks: &[],
    },
    Kernel {
        name: "6.12",
        archive: Archive::System,
        package: "^linux-image-6\\.12\\..*-cloud-amd64-unsigned$",
        modules_package: None,
        differs: &[],
        skips: &[],
        quirks: &[],
    },
    Kernel {
        name: "7.3",
        archive: Archive::Private,
        package: "^linux-binary-7\\.3\\.[0-9]+\\+deb13-cloud-amd64$",
        modules_package: Some(("linux-binary-", "linux-modules-")),
        differs: &[],
        skips: &[],
        quirks: &[(
            "btrfs-reservations-show-no-starts",
            "btrfs's btrfs_space_reservation tracepoint showed no reservation of type `transaction` \
             in the test: where fexit is refused, txn-btrfs's fallbacks see commits only",
        )],
    },
];

/// The names --kernel accepts, for messages.
pub(super) fn names() -> String {
    let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
    format!("{}, several of them separated by commas, or all", names.join(", "))
}

/// xtask's own suites. The system's Debian archive keyring signs them all.
const PRIVATE_SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
";

/// apt's options for an archive: none for the system's; for the private one, its sources list,
/// an empty sources.list.d, and lists and caches of its own.
fn apt_options(archive: Archive) -> Result<Vec<String>> {
    if archive == Archive::System {
        return Ok(Vec::new());
    }
    let dir = root().join("target/vm/apt");
    for d in ["parts", "lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let list = dir.join("sources.list");
    if std::fs::read_to_string(&list).ok().as_deref() != Some(PRIVATE_SOURCES) {
        std::fs::write(&list, PRIVATE_SOURCES)?;
    }
    let d = |p: &str| dir.join(p).display().to_string();
    Ok(vec![
        format!("-oDir::Etc::sourcelist={}", list.display()),
        format!("-oDir::Etc::sourceparts={}", d("parts")),
        format!("-oDir::State::Lists={}", d("lists")),
        format!("-oDir::Cache={}", d("cache")),
    ])
}

/// Every package matching `pattern`, newest first (by the numbers in its name).
fn candidates(archive: Archive, pattern: &str, update: bool) -> Result<Vec<String>> {
    let options = apt_options(archive)?;
    if update {
        run(Command::new("apt-get").args(&options).args(["update", "-qq"]))?;
    }
    let list = output(Command::new("apt-cache").args(&options).args(["search", "--names-only", pattern]))?;
    let mut names: Vec<String> =
        list.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
    names.sort_by_key(|n| {
        n.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok()).collect::<Vec<_>>()
    });
    names.reverse();
    Ok(names)
}

/// The .deb of `package` in `cache`, if it was downloaded before.
fn cached(cache: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(std::fs::read_dir(cache)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))))
}

/// Downloads `package` into `cache` unless it is there; Ok(None) when the archive has it listed
/// but will not serve it.
fn download(archive: Archive, cache: &Path, package: &str) -> Result<Option<PathBuf>> {
    if let Some(deb) = cached(cache, package)? {
        return Ok(Some(deb));
    }
    eprintln!("xtask: downloading {package}");
    let status = Command::new("apt-get")
        .args(apt_options(archive)?)
        // The cache is root's: apt's _apt user could not write it, and would say so.
        .args(["-oAPT::Sandbox::User=root", "download", "-qq", package])
        .current_dir(cache)
        .status()
        .context("starting apt-get download")?;
    if !status.success() {
        eprintln!("xtask: the archive did not serve {package}; trying an older one");
        return Ok(None);
    }
    cached(cache, package)?.context("apt-get download left no .deb").map(Some)
}

/// The kernel's package(s), downloaded into the cache (once) and unpacked: the unpacked tree and
/// its vmlinuz.
pub(super) fn fetch(kernel: &Kernel) -> Result<(PathBuf, PathBuf)> {
    let cache = root().join("target/vm/cache");
    std::fs::create_dir_all(&cache)?;
    let companion = |package: &str| kernel.modules_package.map(|(from, to)| package.replacen(from, to, 1));
    // The first of `packages` whose .deb (and modules .deb) `get` finds.
    let first = |packages: &[String],
                 get: &dyn Fn(&str) -> Result<Option<PathBuf>>|
     -> Result<Option<(PathBuf, Option<PathBuf>)>> {
        for package in packages {
            let Some(image) = get(package)? else { continue };
            let modules = match companion(package) {
                Some(m) => match get(&m)? {
                    Some(deb) => Some(deb),
                    None => continue,
                },
                None => None,
            };
            return Ok(Some((image, modules)));
        }
        Ok(None)
    };
    // A cached download decides, so that a second run needs neither the network nor the archive's
    // newest package (which it may list and not serve).
    let listed = candidates(kernel.archive, kernel.package, false)?;
    let mut debs = first(&listed, &|p: &str| cached(&cache, p))?;
    if debs.is_none() {
        let listed = candidates(kernel.archive, kernel.package, true)?;
        debs = first(&listed, &|p: &str| download(kernel.archive, &cache, p))?;
    }
    let Some((image, modules)) = debs else {
        bail!("no package matching {} could be downloaded for the {} guest", kernel.package, kernel.name)
    };
    let unpacked = root().join("target/vm").join(kernel.name);
    let stamp = unpacked.join(".unpacked");
    let want = format!("{}\n", image.display());
    if std::fs::read_to_string(&stamp).ok() != Some(want.clone()) {
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked)?;
        for deb in std::iter::once(&image).chain(modules.as_ref()) {
            run(Command::new("dpkg").arg("-x").arg(deb).arg(&unpacked))?;
        }
        std::fs::write(&stamp, want)?;
    }
    let vmlinuz = vmlinuz_in(&unpacked).context("no vmlinuz in the kernel package")?;
    Ok((unpacked, vmlinuz))
}

/// boot/vmlinuz-VERSION (up to 6.16) or usr/lib/modules/VERSION/vmlinuz (the split packages).
fn vmlinuz_in(tree: &Path) -> Option<PathBuf> {
    let in_boot = std::fs::read_dir(tree.join("boot")).ok().and_then(|dir| {
        dir.flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
    });
    in_boot.or_else(|| {
        std::fs::read_dir(tree.join("usr/lib/modules"))
            .ok()?
            .flatten()
            .map(|e| e.path().join("vmlinuz"))
            .find(|p| p.is_file())
    })
}
