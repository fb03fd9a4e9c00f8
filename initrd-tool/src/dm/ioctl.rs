//! The device-mapper ioctls on /dev/mapper/control and the `struct dm_ioctl` they carry: the only `unsafe` code of `dm`.
//!
//! Layouts follow the kernel's include/uapi/linux/dm-ioctl.h; sizes and offsets are checked at
//! compile time, opcodes against the header's values in a test. Every request is one byte
//! buffer: a `struct dm_ioctl`, then the command's data from `data_start` on. The caller owns
//! the buffer (a `Secret`, since a table load may carry the volume key); this module only
//! hands it to the kernel with `data_size` set to its exact length.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, opcode};

/// `DM_IOCTL`, the ioctl type byte.
const MAGIC: u8 = 0xfd;
/// `DM_NAME_LEN`: a name of at most 127 bytes and its NUL.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`: a dm UUID of at most 128 bytes and its NUL.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`.
pub const MAX_TYPE_NAME: usize = 16;
/// The interface version we speak: the kernel accepts any request whose major equals its own and
/// whose minor is not newer; 4.0.0 asks for nothing beyond the first v4 interface.
pub const VERSION: [u32; 3] = [4, 0, 0];

/// `struct dm_ioctl`.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout; fields are reached through their offsets
pub struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; NAME_LEN],
    uuid: [u8; UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`; the target's parameter string follows it.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout; fields are reached through their offsets
pub struct TargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; MAX_TYPE_NAME],
}

/// `struct dm_target_versions`; the target's name follows it.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout; fields are reached through their offsets
pub struct TargetVersions {
    next: u32,
    version: [u32; 3],
}

/// Bytes of the `struct dm_ioctl` header; the data of a request starts here (8-aligned).
pub const HEADER: usize = size_of::<DmIoctl>();
/// Bytes of a `struct dm_target_spec`.
pub const SPEC: usize = size_of::<TargetSpec>();
/// Bytes of a `struct dm_target_versions` before its name.
pub const VERSIONS: usize = size_of::<TargetVersions>();

/// Offsets of the `struct dm_ioctl` fields.
pub mod field {
    use super::{DmIoctl, offset_of};
    pub const VERSION: usize = offset_of!(DmIoctl, version);
    pub const DATA_SIZE: usize = offset_of!(DmIoctl, data_size);
    pub const DATA_START: usize = offset_of!(DmIoctl, data_start);
    pub const TARGET_COUNT: usize = offset_of!(DmIoctl, target_count);
    pub const OPEN_COUNT: usize = offset_of!(DmIoctl, open_count);
    pub const FLAGS: usize = offset_of!(DmIoctl, flags);
    pub const EVENT_NR: usize = offset_of!(DmIoctl, event_nr);
    pub const DEV: usize = offset_of!(DmIoctl, dev);
    pub const NAME: usize = offset_of!(DmIoctl, name);
    pub const UUID: usize = offset_of!(DmIoctl, uuid);
}

/// Offsets of the `struct dm_target_spec` fields.
pub mod spec_field {
    use super::{TargetSpec, offset_of};
    pub const SECTOR_START: usize = offset_of!(TargetSpec, sector_start);
    pub const LENGTH: usize = offset_of!(TargetSpec, length);
    pub const STATUS: usize = offset_of!(TargetSpec, status);
    pub const NEXT: usize = offset_of!(TargetSpec, next);
    pub const TARGET_TYPE: usize = offset_of!(TargetSpec, target_type);
}

/// Offsets of the `struct dm_target_versions` fields.
pub mod versions_field {
    use super::{TargetVersions, offset_of};
    pub const NEXT: usize = offset_of!(TargetVersions, next);
    pub const VERSION: usize = offset_of!(TargetVersions, version);
}

const _: () = assert!(HEADER == 312);
const _: () = assert!(HEADER.is_multiple_of(8));
const _: () = assert!(field::DATA_SIZE == 12);
const _: () = assert!(field::DATA_START == 16);
const _: () = assert!(field::TARGET_COUNT == 20);
const _: () = assert!(field::OPEN_COUNT == 24);
const _: () = assert!(field::FLAGS == 28);
const _: () = assert!(field::EVENT_NR == 32);
const _: () = assert!(field::DEV == 40);
const _: () = assert!(field::NAME == 48);
const _: () = assert!(field::UUID == 176);
const _: () = assert!(offset_of!(DmIoctl, data) == 305);
const _: () = assert!(SPEC == 40);
const _: () = assert!(spec_field::STATUS == 16);
const _: () = assert!(spec_field::NEXT == 20);
const _: () = assert!(spec_field::TARGET_TYPE == 24);
const _: () = assert!(VERSIONS == 16);

// Flags of `dm_ioctl.flags` (only those used here).
/// In/out: the table is loaded read-only; the device is read-only.
pub const READONLY_FLAG: u32 = 1 << 0;
/// In: DM_DEV_SUSPEND suspends (without it, resumes); out: the device is suspended.
pub const SUSPEND_FLAG: u32 = 1 << 1;
/// In: DM_TABLE_STATUS answers the table lines rather than the targets' status.
pub const STATUS_TABLE_FLAG: u32 = 1 << 4;
/// Out: the device has a live table.
pub const ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
/// Out: the device has a loaded table not yet resumed.
pub const INACTIVE_PRESENT_FLAG: u32 = 1 << 6;
/// Out: the answer did not fit in the buffer.
pub const BUFFER_FULL_FLAG: u32 = 1 << 8;
/// In: the kernel wipes its copy of the request and answer buffers (they may hold a key).
pub const SECURE_DATA_FLAG: u32 = 1 << 15;

/// The device-mapper commands used here (`enum { DM_VERSION_CMD = 0, ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    Version = 0,
    DevCreate = 3,
    DevRemove = 4,
    DevSuspend = 6,
    DevStatus = 7,
    TableLoad = 9,
    TableStatus = 12,
    ListVersions = 13,
}

impl Cmd {
    /// The name the kernel header gives the request, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Version => "DM_VERSION",
            Cmd::DevCreate => "DM_DEV_CREATE",
            Cmd::DevRemove => "DM_DEV_REMOVE",
            Cmd::DevSuspend => "DM_DEV_SUSPEND",
            Cmd::DevStatus => "DM_DEV_STATUS",
            Cmd::TableLoad => "DM_TABLE_LOAD",
            Cmd::TableStatus => "DM_TABLE_STATUS",
            Cmd::ListVersions => "DM_LIST_VERSIONS",
        }
    }

    /// `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)`: every command is declared with the header's
    /// size, whatever data follows it.
    pub const fn opcode(self) -> Opcode {
        opcode::read_write::<DmIoctl>(MAGIC, self as u8)
    }
}

/// One device-mapper ioctl on the control device with the request in `buf`: `data_size` is set
/// to `buf.len()` first, so the kernel reads and writes only inside `buf`. The answer (header
/// and data) is left in `buf`.
pub fn call(control: BorrowedFd<'_>, cmd: Cmd, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.len() < HEADER {
        return Err(Errno::INVAL);
    }
    let size = u32::try_from(buf.len()).map_err(|_| Errno::INVAL)?;
    let data_size = buf.get_mut(field::DATA_SIZE..field::DATA_SIZE + 4).ok_or(Errno::INVAL)?;
    data_size.copy_from_slice(&size.to_ne_bytes());
    let arg = Arg { opcode: cmd.opcode(), buf };
    // SAFETY: `buf` is an exclusively borrowed byte buffer of at least sizeof (struct dm_ioctl)
    // bytes whose `data_size` field was just set to its exact length. The kernel's copy_params
    // copies in `data_size` bytes and ctl_ioctl copies out at most that many (every command
    // bounds its answer by the size it was given and sets DM_BUFFER_FULL_FLAG instead of
    // overflowing). The request holds no pointers, only integers, names and the parameter
    // strings, so the kernel touches no memory but `buf`, which outlives the call.
    unsafe { rustix::ioctl::ioctl(control, arg) }
}

/// A `struct dm_ioctl` request passed by pointer, with the opcode of its command.
struct Arg<'a> {
    opcode: Opcode,
    buf: &'a mut [u8],
}

// SAFETY: every device-mapper ioctl takes a pointer to a `struct dm_ioctl` followed by its data,
// which it reads and writes (IS_MUTATING); `as_ptr` gives the exclusively borrowed buffer (its
// size is the `data_size` the kernel honours, see `call`), and nothing is read back through the
// pointer here: the answer is the buffer itself.
unsafe impl Ioctl for Arg<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn opcodes_match_the_kernel_header() {
        // The macros of linux/dm-ioctl.h, printed by a C program on x86_64.
        assert_eq!(Cmd::Version.opcode() as u64, 0xc138_fd00);
        assert_eq!(Cmd::DevCreate.opcode() as u64, 0xc138_fd03);
        assert_eq!(Cmd::DevRemove.opcode() as u64, 0xc138_fd04);
        assert_eq!(Cmd::DevSuspend.opcode() as u64, 0xc138_fd06);
        assert_eq!(Cmd::DevStatus.opcode() as u64, 0xc138_fd07);
        assert_eq!(Cmd::TableLoad.opcode() as u64, 0xc138_fd09);
        assert_eq!(Cmd::TableStatus.opcode() as u64, 0xc138_fd0c);
        assert_eq!(Cmd::ListVersions.opcode() as u64, 0xc138_fd0d);
    }

    #[test]
    fn layout_matches_the_kernel_header() {
        // sizeof and offsetof as gcc gives them for linux/dm-ioctl.h on x86_64.
        assert_eq!(HEADER, 312);
        assert_eq!(
            [field::DATA_SIZE, field::DATA_START, field::TARGET_COUNT, field::OPEN_COUNT, field::FLAGS],
            [12, 16, 20, 24, 28]
        );
        assert_eq!([field::EVENT_NR, field::DEV, field::NAME, field::UUID], [32, 40, 48, 176]);
        assert_eq!(SPEC, 40);
        assert_eq!([spec_field::SECTOR_START, spec_field::LENGTH, spec_field::NEXT], [0, 8, 20]);
        assert_eq!(spec_field::TARGET_TYPE, 24);
        assert_eq!((versions_field::NEXT, versions_field::VERSION, VERSIONS), (0, 4, 16));
        assert_eq!(SECURE_DATA_FLAG, 0x8000);
    }

    #[test]
    fn a_buffer_shorter_than_the_header_never_reaches_the_kernel() {
        // An fd that is not the control device: the length check must refuse first.
        let null = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&null);
        assert_eq!(call(fd, Cmd::Version, &mut [0u8; HEADER - 1]), Err(Errno::INVAL));
        // A full-size request on /dev/null reaches the kernel, which does not know the ioctl.
        assert_eq!(call(fd, Cmd::Version, &mut [0u8; HEADER]), Err(Errno::NOTTY));
    }
}
