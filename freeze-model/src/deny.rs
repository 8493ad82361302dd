//! The mount-denial mode (`--deny-mounts`), as the trace and the eBPF global spell it. The CLI
//! wraps it for clap; the mount-point trie the LSM programs use lives with the loader.
use crate::names::named_enum;

named_enum! {
    /// What `--deny-mounts` does while a filesystem is frozen.
    pub enum DenyMode {
        /// Let the mount proceed and record that it would have been denied.
        Audit = "audit",
        /// Refuse the mount with EPERM.
        Enforce = "enforce",
    }
}

impl DenyMode {
    /// The value of the eBPF global `DENY_MODE` and of a mount_denied event's flags.
    pub fn raw(self) -> u32 {
        match self {
            Self::Audit => freeze_common::deny::AUDIT,
            Self::Enforce => freeze_common::deny::ENFORCE,
        }
    }

    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            freeze_common::deny::AUDIT => Some(Self::Audit),
            freeze_common::deny::ENFORCE => Some(Self::Enforce),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_their_raw_values() {
        for m in DenyMode::ALL {
            assert_eq!(DenyMode::from_raw(m.raw()), Some(*m));
        }
        assert_eq!(DenyMode::from_raw(0), None);
    }
}
