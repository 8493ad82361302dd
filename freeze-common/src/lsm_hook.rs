/// `sb_kern_mount(sb)`: mount(2) of a new mount of the superblock (its device).
pub const SB_KERN_MOUNT: u64 = 1;
/// `sb_mount(dev_name, …, MS_BIND)`: a bind mount whose source path lies on the superblock.
pub const SB_MOUNT_BIND: u64 = 2;
/// `move_mount(from, to)`: attaching a mount of the superblock (fsmount, open_tree).
pub const MOVE_MOUNT: u64 = 3;
