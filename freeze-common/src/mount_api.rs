/// mount(2): new mounts, bind mounts, remounts.
pub const MOUNT: u32 = 1;
/// move_mount(2): attaching a mount made with fsmount(2) or open_tree(2).
pub const MOVE_MOUNT: u32 = 2;
/// fsopen(2): `fstype` holds the filesystem type.
pub const FSOPEN: u32 = 3;
/// fsconfig(2) with FSCONFIG_SET_STRING: `source` holds the key, `target` the value.
pub const FSCONFIG: u32 = 4;
/// fsmount(2): turns a configured context into a detached mount (not yet visible).
pub const FSMOUNT: u32 = 5;
/// A mount the kernel attached itself, outside any mount call: an automount, seen at
/// `finish_automount`; `arg` is its mount id.
pub const AUTOMOUNT: u32 = 6;
