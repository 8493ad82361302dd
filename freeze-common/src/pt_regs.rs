pub const R10: usize = 56;
pub const R9: usize = 64;
pub const R8: usize = 72;
pub const DX: usize = 96;
pub const SI: usize = 104;
pub const DI: usize = 112;
/// The syscall number (`sys_exit` gets the registers and the return value only).
pub const ORIG_AX: usize = 120;
pub const CS: usize = 136;
/// The six syscall arguments, in order.
pub const ARGS: [usize; 6] = [DI, SI, DX, R10, R8, R9];
/// `cs` of a task in 64-bit mode (`__USER_CS`), in the low 16 bits (from 6.9 on the upper
/// ones may hold FRED state); ia32 syscalls, numbered differently, enter with `__USER32_CS`.
pub const USER_CS: u64 = 0x33;
