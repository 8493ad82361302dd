//! A device-mapper device's table (`DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG`, what
//! `dmsetup table` prints), read through `/dev/mapper/control`, without dmsetup.
use std::os::fd::AsRawFd as _;

/// One target line: `start length type params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmTarget {
    pub start: u64,
    pub len: u64,
    pub kind: String,
    pub params: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("opening /dev/mapper/control: {0}")]
    Control(std::io::Error),
    #[error("DM_TABLE_STATUS: {0}")]
    Ioctl(std::io::Error),
    #[error("the kernel's answer is malformed")]
    Malformed,
}

/// `struct dm_ioctl` (uapi linux/dm-ioctl.h), 312 bytes.
#[repr(C)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

const HEADER: usize = std::mem::size_of::<DmIoctl>();
/// `struct dm_target_spec`: sector_start, length, status, next, target_type[16].
const SPEC: usize = 40;
/// `_IOWR(0xfd, DM_TABLE_STATUS_CMD = 12, struct dm_ioctl)`.
const DM_TABLE_STATUS: libc::c_ulong = (3 << 30) | ((HEADER as libc::c_ulong) << 16) | (0xfd << 8) | 12;
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;

/// The kernel's `huge_encode_dev`: what `dm_ioctl.dev` holds.
fn huge_encode_dev((major, minor): (u32, u32)) -> u64 {
    u64::from((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The table of device-mapper device `dev` (major, minor).
pub fn table(dev: (u32, u32)) -> Result<Vec<DmTarget>, DmError> {
    let control = std::fs::File::open("/dev/mapper/control").map_err(DmError::Control)?;
    let mut size = 16 << 10;
    loop {
        // A u64 buffer keeps the header aligned for the ioctl.
        let mut buf = vec![0u64; size / 8];
        let header = DmIoctl {
            version: [4, 0, 0],
            data_size: size as u32,
            data_start: HEADER as u32,
            target_count: 0,
            open_count: 0,
            flags: DM_STATUS_TABLE_FLAG,
            event_nr: 0,
            padding: 0,
            dev: huge_encode_dev(dev),
            name: [0; 128],
            uuid: [0; 129],
            data: [0; 7],
        };
        // SAFETY: the buffer is at least HEADER bytes, 8-aligned, and DmIoctl is plain data.
        unsafe { std::ptr::write(buf.as_mut_ptr().cast::<DmIoctl>(), header) };
        // SAFETY: the ioctl reads and writes at most `data_size` bytes of the buffer, which is
        // that long; the fd is open for the whole call.
        let rc = unsafe { libc::ioctl(control.as_raw_fd(), DM_TABLE_STATUS as _, buf.as_mut_ptr()) };
        if rc != 0 {
            return Err(DmError::Ioctl(std::io::Error::last_os_error()));
        }
        // SAFETY: as above; the kernel filled the header in place.
        let out = unsafe { std::ptr::read(buf.as_ptr().cast::<DmIoctl>()) };
        if out.flags & DM_BUFFER_FULL_FLAG != 0 && size < (16 << 20) {
            size *= 4;
            continue;
        }
        // SAFETY: the Vec<u64> owns size bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), size) };
        return parse_targets(bytes, out.data_start as usize, out.target_count as usize);
    }
}

/// Walks the target specs the kernel wrote after `data_start`.
fn parse_targets(bytes: &[u8], data_start: usize, count: usize) -> Result<Vec<DmTarget>, DmError> {
    let mut out = Vec::with_capacity(count);
    let mut at = data_start;
    for _ in 0..count {
        let spec = bytes.get(at..at + SPEC).ok_or(DmError::Malformed)?;
        let u64_at = |o: usize| u64::from_ne_bytes(spec[o..o + 8].try_into().unwrap_or_default());
        let next = u32::from_ne_bytes(spec[20..24].try_into().unwrap_or_default()) as usize;
        let cstr = |b: &[u8]| {
            let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        let params_end = if next > SPEC { at + next } else { bytes.len() };
        let params = bytes.get(at + SPEC..params_end.min(bytes.len())).ok_or(DmError::Malformed)?;
        out.push(DmTarget {
            start: u64_at(0),
            len: u64_at(8),
            kind: cstr(&spec[24..40]),
            params: cstr(params),
        });
        if next == 0 {
            break;
        }
        at += next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_header_has_the_uapi_size_and_number() {
        assert_eq!(HEADER, 312);
        assert_eq!(DM_TABLE_STATUS, 0xc138_fd0c);
        // The new dev_t encoding: 253:0 and a minor above 255.
        assert_eq!(huge_encode_dev((253, 0)), 0xfd00);
        assert_eq!(huge_encode_dev((8, 0x123)), 0x0010_0823);
    }

    #[test]
    fn target_specs_are_walked_by_their_next_offsets() {
        let mut bytes = vec![0u8; 400];
        let mut spec = |at: usize, start: u64, len: u64, next: u32, kind: &str, params: &str| {
            bytes[at..at + 8].copy_from_slice(&start.to_ne_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&len.to_ne_bytes());
            bytes[at + 20..at + 24].copy_from_slice(&next.to_ne_bytes());
            bytes[at + 24..at + 24 + kind.len()].copy_from_slice(kind.as_bytes());
            bytes[at + SPEC..at + SPEC + params.len()].copy_from_slice(params.as_bytes());
        };
        spec(0, 0, 2048, 56, "linear", "7:0 0");
        spec(56, 2048, 4096, 0, "striped", "2 8 7:1 0 7:2 0");
        let t = parse_targets(&bytes, 0, 2).expect("parses");
        assert_eq!(t[0], DmTarget { start: 0, len: 2048, kind: "linear".into(), params: "7:0 0".into() });
        assert_eq!(
            (t[1].start, t[1].kind.as_str(), t[1].params.as_str()),
            (2048, "striped", "2 8 7:1 0 7:2 0")
        );
        assert!(matches!(parse_targets(&bytes, 390, 1), Err(DmError::Malformed)));
    }
}
