//! What a recording could see. A feature whose hook did not attach records nothing, so "nothing
//! happened" cannot be concluded from its silence: the trace header says which features ran, and
//! an assertion that needs a missing one is unproven, not passed.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{assertions::Metric, names::named_enum, trace::Header};

named_enum! {
    /// The features a recording attaches (one hook chain each); names as the trace header and
    /// `doctor` give them.
    pub enum Feature {
        Freeze = "freeze",
        BlockWrites = "block-writes",
        BlockedWriters = "blocked-writers",
        TxnExt4 = "txn-ext4",
        TxnXfs = "txn-xfs",
        TxnBtrfs = "txn-btrfs",
        Mounts = "mounts",
        CompletedWrites = "completed-writes",
        MountDenial = "mount-denial",
        BackingFiles = "backing-files",
        FreezerExits = "freezer-exits",
    }
}

impl Feature {
    /// The transaction feature of a filesystem type, where freezewatch has one.
    pub fn txn_of(fstype: &str) -> Option<Self> {
        match fstype {
            "ext4" | "ext3" => Some(Self::TxnExt4),
            "xfs" => Some(Self::TxnXfs),
            "btrfs" => Some(Self::TxnBtrfs),
            _ => None,
        }
    }
}

/// What a verdict can need from a recording: a feature's hook, or (for the task scopes `@unit=`
/// and `@cgroup=`) the tasks' cgroup paths. Serialised as its name (`txn-xfs`, `cgroup-paths`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    Hook(Feature),
    CgroupPaths,
}

impl Needed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hook(f) => f.as_str(),
            Self::CgroupPaths => "cgroup-paths",
        }
    }
}

impl std::fmt::Display for Needed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Needed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Something an assertion needed that the recording did not have, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub feature: Needed,
    pub why: String,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.feature, self.why)
    }
}

/// Which features a recording had, from its header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Features that did not attach, with why; empty for a full recording. Mount denial counts
    /// only when it was asked for.
    pub missing: BTreeMap<Feature, String>,
    /// Whether `--deny-mounts` was asked for.
    pub deny_requested: bool,
    /// Whether the trace said which hooks ran at all (a trace without a header does not).
    pub known: bool,
    /// Whether the recorder resolved the tasks' cgroup ids to paths (it had a cgroup2 mount).
    pub cgroup_paths: bool,
}

impl Coverage {
    pub fn of(header: Option<&Header>) -> Self {
        let Some(header) = header else { return Self::default() };
        let deny_requested = header.deny_mounts.is_some();
        let mut missing = BTreeMap::new();
        for feature in Feature::ALL {
            if *feature == Feature::MountDenial && !deny_requested {
                continue;
            }
            let active = header.hooks.iter().find(|h| h.feature == feature.as_str());
            // Exits only serve `watch`'s judgement of owners, no count of a trace: a trace from
            // a recorder before them lacks nothing a report or check uses.
            if *feature == Feature::FreezerExits && active.is_none() {
                continue;
            }
            let why = match active {
                Some(h) if h.hook.is_some() => continue,
                Some(h) if h.fallbacks.is_empty() => "no hook attached".to_owned(),
                Some(h) => format!("no hook attached ({})", h.fallbacks.join("; ")),
                None => "not in the trace header (a recorder that did not have it)".to_owned(),
            };
            missing.insert(*feature, why);
        }
        Self { missing, deny_requested, known: true, cgroup_paths: header.cgroup2_root.is_some() }
    }

    /// The features that did not attach, each with why.
    pub fn gaps_missing(&self) -> impl Iterator<Item = Gap> + '_ {
        self.missing.iter().map(|(feature, why)| Gap { feature: Needed::Hook(*feature), why: why.clone() })
    }

    /// Whether some feature the recording should have had is missing.
    pub fn is_partial(&self) -> bool {
        !self.known || !self.missing.is_empty()
    }

    /// The features `metric` depends on for filesystems of `fstypes`, that this recording lacked.
    pub fn gaps(&self, metric: Metric, fstypes: &[&str]) -> Vec<Gap> {
        let needed = needed(metric, fstypes);
        if !self.known {
            let why = "the trace has no header, so which hooks ran is unknown".to_owned();
            return needed.into_iter().map(|f| Gap { feature: Needed::Hook(f), why: why.clone() }).collect();
        }
        needed
            .into_iter()
            .filter_map(|feature| {
                let why = match self.missing.get(&feature) {
                    Some(why) => why.clone(),
                    None if feature == Feature::MountDenial && !self.deny_requested => {
                        "not asked for (--deny-mounts)".to_owned()
                    }
                    None => return None,
                };
                Some(Gap { feature: Needed::Hook(feature), why })
            })
            .collect()
    }
}

/// What a metric's value depends on: freezes are seen by the freeze hook, and everything that
/// happens while frozen needs both that and its own hook; slips come from three hooks, one of
/// them per filesystem type.
pub fn needed(metric: Metric, fstypes: &[&str]) -> Vec<Feature> {
    let mut out = match metric {
        Metric::LostEvents => return Vec::new(),
        Metric::Freezes
        | Metric::Thaws
        | Metric::FailedFreezes
        | Metric::LeftFrozen
        | Metric::MaxFrozen
        | Metric::TotalFrozen => Vec::new(),
        Metric::Slips => {
            let mut f = vec![Feature::BlockWrites, Feature::CompletedWrites, Feature::BackingFiles];
            f.extend(fstypes.iter().filter_map(|t| Feature::txn_of(t)));
            f
        }
        Metric::BlockedWriters => vec![Feature::BlockedWriters],
        Metric::MountsWhileFrozen => vec![Feature::Mounts],
        Metric::DeniedMounts | Metric::WouldDenyMounts => vec![Feature::MountDenial],
    };
    out.insert(0, Feature::Freeze);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ActiveHook;

    fn header(hooks: &[(&str, Option<&str>)]) -> Header {
        Header {
            tool: "freezewatch".into(),
            tool_version: "0".into(),
            kernel: "6.18".into(),
            started_unix_ms: 0,
            started_monotonic_ns: 0,
            hooks: hooks
                .iter()
                .map(|(feature, hook)| ActiveHook {
                    feature: (*feature).into(),
                    hook: hook.map(Into::into),
                    fallbacks: if hook.is_none() {
                        vec!["tracepoint:xfs:xfs_trans_alloc: no such event".into()]
                    } else {
                        vec![]
                    },
                    limits: None,
                })
                .collect(),
            command: None,
            deny_mounts: None,
            cgroup2_root: None,
            storage: None,
        }
    }

    fn full_but(missing: &str) -> Header {
        let hooks: Vec<(&str, Option<&str>)> = Feature::ALL
            .iter()
            .filter(|f| **f != Feature::MountDenial)
            .map(|f| (f.as_str(), (f.as_str() != missing).then_some("some:hook")))
            .collect();
        header(&hooks)
    }

    #[test]
    fn a_full_recording_proves_everything_but_denials_it_was_not_asked_for() {
        let c = Coverage::of(Some(&full_but("")));
        assert!(!c.is_partial());
        assert!(c.gaps(Metric::Slips, &["ext4", "xfs", "btrfs"]).is_empty());
        let gaps = c.gaps(Metric::DeniedMounts, &[]);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].feature, Needed::Hook(Feature::MountDenial));
        assert!(gaps[0].why.contains("--deny-mounts"), "{}", gaps[0]);
    }

    #[test]
    fn slips_need_the_transaction_hook_of_each_filesystem_type_in_scope() {
        let c = Coverage::of(Some(&full_but("txn-xfs")));
        assert!(c.is_partial());
        assert!(c.gaps(Metric::Slips, &["ext4"]).is_empty(), "ext4 does not need the xfs hook");
        let gaps = c.gaps(Metric::Slips, &["ext4", "xfs"]);
        assert_eq!(gaps.iter().map(|g| g.feature).collect::<Vec<_>>(), [Needed::Hook(Feature::TxnXfs)]);
        assert!(gaps[0].why.contains("no such event"), "the reason the hook failed: {}", gaps[0]);
        assert!(c.gaps(Metric::Freezes, &["xfs"]).is_empty());
    }

    #[test]
    fn without_the_freeze_hook_nothing_but_losses_is_proven() {
        let c = Coverage::of(Some(&full_but("freeze")));
        for metric in Metric::ALL.iter().filter(|m| **m != Metric::LostEvents) {
            assert!(
                c.gaps(*metric, &[]).iter().any(|g| g.feature == Needed::Hook(Feature::Freeze)),
                "{metric}"
            );
        }
        assert!(c.gaps(Metric::LostEvents, &[]).is_empty());
        let unknown = Coverage::of(None);
        assert!(unknown.is_partial());
        assert!(unknown.gaps(Metric::Slips, &[])[0].why.contains("no header"));
    }
}
