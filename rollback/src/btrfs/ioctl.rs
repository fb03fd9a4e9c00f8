//! The BTRFS ioctls rollback needs, as small safe wrappers: the only `unsafe` code of the BTRFS backend.
//!
//! Layouts follow the kernel's include/uapi/linux/btrfs.h; each struct's size
//! is checked at compile time, each opcode against the header's value in a test.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::ioctl::{self, Getter, Ioctl, IoctlOutput, NoArg, Opcode, opcode};

const MAGIC: u8 = 0x94;

/// `BTRFS_SUBVOL_RDONLY`: in `vol_args_v2.flags` and the `SUBVOL_GETFLAGS` word.
const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_SUBVOL_SPEC_BY_ID`: `SNAP_DESTROY_V2` takes a subvolume id instead of a name.
const SUBVOL_SPEC_BY_ID: u64 = 1 << 4;

/// `struct btrfs_ioctl_vol_args`: a device path for /dev/btrfs-control.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2`; the trailing union (name, devid, subvolid) is kept as bytes.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchKey {
    pub tree_id: u64,
    pub min_objectid: u64,
    pub max_objectid: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub min_transid: u64,
    pub max_transid: u64,
    pub min_type: u32,
    pub max_type: u32,
    pub nr_items: u32,
    unused: u32,
    unused1: [u64; 4],
}

impl SearchKey {
    /// The items of `tree` keyed (objectid, kind, offset >= min_offset), as many as fit.
    pub fn items(tree: u64, objectid: u64, kind: u32, min_offset: u64) -> SearchKey {
        SearchKey {
            tree_id: tree,
            min_objectid: objectid,
            max_objectid: objectid,
            min_offset,
            max_offset: u64::MAX,
            min_transid: 0,
            max_transid: u64::MAX,
            min_type: kind,
            max_type: kind,
            nr_items: u32::MAX,
            ..SearchKey::default()
        }
    }
}

/// Room for items after the key in `struct btrfs_ioctl_search_args` (BTRFS_SEARCH_ARGS_BUFSIZE).
pub const SEARCH_BUF: usize = 4096 - size_of::<SearchKey>();

/// `struct btrfs_ioctl_search_args`: the key in, then headers and items out.
#[repr(C)]
pub struct SearchArgs {
    pub key: SearchKey,
    pub buf: [u8; SEARCH_BUF],
}

/// `struct btrfs_ioctl_search_header` (read from the buffer byte-wise: items are not aligned).
pub const SEARCH_HEADER: usize = 32;

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// `struct btrfs_ioctl_timespec` (16 bytes with its tail padding).
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct Timespec {
    sec: u64,
    nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args`.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct SubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

/// `struct btrfs_ioctl_fs_info_args`.
#[repr(C)]
#[allow(dead_code)] // the kernel's whole layout, read or not
struct FsInfoArgs {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    nodesize: u32,
    sectorsize: u32,
    clone_alignment: u32,
    csum_type: u16,
    csum_size: u16,
    flags: u64,
    generation: u64,
    metadata_uuid: [u8; 16],
    reserved: [u8; 944],
}

const _: () = assert!(size_of::<FsInfoArgs>() == 1024);
const _: () = assert!(std::mem::offset_of!(FsInfoArgs, fsid) == 16);
const _: () = assert!(std::mem::offset_of!(FsInfoArgs, flags) == 48);
const _: () = assert!(size_of::<VolArgs>() == 4096);
const _: () = assert!(size_of::<VolArgsV2>() == 4096);
const _: () = assert!(std::mem::offset_of!(VolArgsV2, name) == 56);
const _: () = assert!(size_of::<SearchKey>() == 104);
const _: () = assert!(size_of::<SearchArgs>() == 4096);
const _: () = assert!(size_of::<InoLookupArgs>() == 4096);
const _: () = assert!(size_of::<Timespec>() == 16);
const _: () = assert!(size_of::<SubvolInfoArgs>() == 504);
const _: () = assert!(std::mem::offset_of!(SubvolInfoArgs, generation) == 280);
const _: () = assert!(std::mem::offset_of!(SubvolInfoArgs, otime) == 392);

const SCAN_DEV: Opcode = opcode::write::<VolArgs>(MAGIC, 4);
const SYNC: Opcode = opcode::none(MAGIC, 8);
const TREE_SEARCH: Opcode = opcode::read_write::<SearchArgs>(MAGIC, 17);
const INO_LOOKUP: Opcode = opcode::read_write::<InoLookupArgs>(MAGIC, 18);
const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 23);
const SUBVOL_GETFLAGS: Opcode = opcode::read::<u64>(MAGIC, 25);
const FS_INFO: Opcode = opcode::read::<FsInfoArgs>(MAGIC, 31);
const DEVICES_READY: Opcode = opcode::read::<VolArgs>(MAGIC, 39);
const GET_SUBVOL_INFO: Opcode = opcode::read::<SubvolInfoArgs>(MAGIC, 60);
const SNAP_DESTROY_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 63);

/// An ioctl whose argument is one `T` the kernel may read and write, and whose
/// return value is wanted (DEVICES_READY answers through it).
struct Call<'a, T> {
    opcode: Opcode,
    arg: &'a mut T,
}

// SAFETY: `as_ptr` points at a live, exclusively borrowed `T`, and every
// `Call` below pairs an opcode with the `T` the kernel's header declares for
// it; IS_MUTATING is true because several of them write into `T`.
unsafe impl<T> Ioctl for Call<'_, T> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (self.arg as *mut T).cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut std::ffi::c_void) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// Zeroed plain-old-data ioctl arguments.
trait Zeroed: Sized {
    fn zeroed() -> Self {
        // SAFETY: only implemented for the #[repr(C)] structs above, made of
        // integers and byte arrays, for which all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
}
impl Zeroed for VolArgs {}
impl Zeroed for VolArgsV2 {}
impl Zeroed for InoLookupArgs {}
impl Zeroed for SubvolInfoArgs {}
impl Zeroed for SearchArgs {}
impl Zeroed for FsInfoArgs {}

/// Copies `s` into a fixed name field, NUL-terminated; too long is EINVAL, an inner NUL too.
fn put_name(field: &mut [u8], s: &[u8]) -> io::Result<()> {
    if s.len() >= field.len() || s.contains(&0) {
        return Err(io::Error::from(rustix::io::Errno::INVAL));
    }
    field[..s.len()].copy_from_slice(s);
    field[s.len()] = 0;
    Ok(())
}

/// The bytes of a NUL-terminated name field.
fn get_name(field: &[u8]) -> &[u8] {
    CStr::from_bytes_until_nul(field).map(CStr::to_bytes).unwrap_or(field)
}

/// Snapshots the subvolume of `source` as a writable subvolume `name` inside the directory `dir`.
pub fn snap_create(dir: BorrowedFd<'_>, name: &[u8], source: BorrowedFd<'_>) -> io::Result<()> {
    let mut args = VolArgsV2::zeroed();
    args.fd = i64::from(std::os::fd::AsRawFd::as_raw_fd(&source));
    put_name(&mut args.name, name)?;
    // SAFETY: SNAP_CREATE_V2 takes a `struct btrfs_ioctl_vol_args_v2`; `args`
    // lives across the call and `args.fd` is a descriptor borrowed for it.
    unsafe { ioctl::ioctl(dir, Call { opcode: SNAP_CREATE_V2, arg: &mut args }) }?;
    Ok(())
}

/// Deletes the subvolume `id` (it must have no nested subvolumes left); `fs` is any descriptor on the file system.
pub fn snap_destroy_by_id(fs: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let mut args = VolArgsV2::zeroed();
    args.flags = SUBVOL_SPEC_BY_ID;
    args.name[..8].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: SNAP_DESTROY_V2 takes a `struct btrfs_ioctl_vol_args_v2` whose
    // union holds `subvolid` with BTRFS_SUBVOL_SPEC_BY_ID; `args` outlives the call.
    unsafe { ioctl::ioctl(fs, Call { opcode: SNAP_DESTROY_V2, arg: &mut args }) }?;
    Ok(())
}

/// Whether the subvolume of `fd` is read-only (SUBVOL_GETFLAGS & BTRFS_SUBVOL_RDONLY).
pub fn subvol_readonly(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: SUBVOL_GETFLAGS writes one __u64, the type Getter provides.
    let flags = unsafe { ioctl::ioctl(fd, Getter::<SUBVOL_GETFLAGS, u64>::new()) }?;
    Ok(flags & SUBVOL_RDONLY != 0)
}

/// What GET_SUBVOL_INFO tells about the subvolume holding a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolInfo {
    pub id: u64,
    pub parent_id: u64,
    pub generation: u64,
    pub uuid: [u8; 16],
    pub parent_uuid: [u8; 16],
    /// Creation time, seconds since the epoch.
    pub otime: i64,
    pub otime_nsec: u32,
}

/// GET_SUBVOL_INFO on `fd`: the subvolume `fd` lies in.
pub fn subvol_info(fd: BorrowedFd<'_>) -> io::Result<SubvolInfo> {
    let mut args = SubvolInfoArgs::zeroed();
    // SAFETY: GET_SUBVOL_INFO fills a `struct btrfs_ioctl_get_subvol_info_args`,
    // which `args` is and which outlives the call.
    unsafe { ioctl::ioctl(fd, Call { opcode: GET_SUBVOL_INFO, arg: &mut args }) }?;
    Ok(SubvolInfo {
        id: args.treeid,
        parent_id: args.parent_id,
        generation: args.generation,
        uuid: args.uuid,
        parent_uuid: args.parent_uuid,
        otime: i64::try_from(args.otime.sec).unwrap_or(i64::MAX),
        otime_nsec: args.otime.nsec,
    })
}

/// FS_INFO on `fd`: the UUID of the file system `fd` lies on (the same through every mount of it).
pub fn fsid(fd: BorrowedFd<'_>) -> io::Result<[u8; 16]> {
    let mut args = FsInfoArgs::zeroed();
    // SAFETY: FS_INFO fills a `struct btrfs_ioctl_fs_info_args` (reading only its
    // `flags`, zero here), which `args` is and which outlives the call.
    unsafe { ioctl::ioctl(fd, Call { opcode: FS_INFO, arg: &mut args }) }?;
    Ok(args.fsid)
}

/// A zeroed search argument block, to fill the key of.
pub fn search_args() -> Box<SearchArgs> {
    Box::new(SearchArgs::zeroed())
}

/// One TREE_SEARCH call: the kernel fills `args.buf` with `args.key.nr_items` headers and items.
pub fn tree_search(fd: BorrowedFd<'_>, args: &mut SearchArgs) -> io::Result<()> {
    // SAFETY: TREE_SEARCH reads and writes a `struct btrfs_ioctl_search_args`
    // (4096 bytes), which `args` is; the kernel writes no more than its buffer.
    unsafe { ioctl::ioctl(fd, Call { opcode: TREE_SEARCH, arg: args }) }?;
    Ok(())
}

/// INO_LOOKUP: the path of directory `dirid` inside subvolume `tree`, relative to
/// the subvolume's top, with a trailing `/` (empty for the top itself).
pub fn ino_lookup(fd: BorrowedFd<'_>, tree: u64, dirid: u64) -> io::Result<Vec<u8>> {
    let mut args = InoLookupArgs::zeroed();
    args.treeid = tree;
    args.objectid = dirid;
    // SAFETY: INO_LOOKUP reads and writes a `struct btrfs_ioctl_ino_lookup_args`,
    // which `args` is; the kernel NUL-terminates the name within its 4080 bytes.
    unsafe { ioctl::ioctl(fd, Call { opcode: INO_LOOKUP, arg: &mut args }) }?;
    Ok(get_name(&args.name).to_vec())
}

/// BTRFS_IOC_SYNC: commits the current transaction of the file system of `fd`.
pub fn sync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_SYNC takes no argument.
    unsafe { ioctl::ioctl(fd, NoArg::<SYNC>::new()) }?;
    Ok(())
}

/// SCAN_DEV on /dev/btrfs-control: registers the device at `path` with the kernel.
pub fn scan_dev(control: impl AsFd, path: &[u8]) -> io::Result<()> {
    let mut args = VolArgs::zeroed();
    put_name(&mut args.name, path)?;
    // SAFETY: SCAN_DEV reads a `struct btrfs_ioctl_vol_args`, which `args` is,
    // NUL-terminated by put_name; it outlives the call.
    unsafe { ioctl::ioctl(control.as_fd(), Call { opcode: SCAN_DEV, arg: &mut args }) }?;
    Ok(())
}

/// DEVICES_READY on /dev/btrfs-control: whether all devices of the file system on `path` are registered.
pub fn devices_ready(control: impl AsFd, path: &[u8]) -> io::Result<bool> {
    let mut args = VolArgs::zeroed();
    put_name(&mut args.name, path)?;
    // SAFETY: DEVICES_READY reads a `struct btrfs_ioctl_vol_args` (declared
    // _IOR, but the kernel copies it in), which `args` is; it outlives the call.
    let missing = unsafe { ioctl::ioctl(control.as_fd(), Call { opcode: DEVICES_READY, arg: &mut args }) }?;
    // The kernel answers 0 when every device is there, 1 when some are missing.
    Ok(missing == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn opcodes_match_the_kernel_header() {
        // Values of the macros in linux/btrfs.h, printed by a C program on x86_64.
        assert_eq!(SCAN_DEV as u64, 0x5000_9404);
        assert_eq!(SYNC as u64, 0x9408);
        assert_eq!(TREE_SEARCH as u64, 0xd000_9411);
        assert_eq!(INO_LOOKUP as u64, 0xd000_9412);
        assert_eq!(SNAP_CREATE_V2 as u64, 0x5000_9417);
        assert_eq!(SUBVOL_GETFLAGS as u64, 0x8008_9419);
        assert_eq!(FS_INFO as u64, 0x8400_941f);
        assert_eq!(DEVICES_READY as u64, 0x9000_9427);
        assert_eq!(GET_SUBVOL_INFO as u64, 0x81f8_943c);
        assert_eq!(SNAP_DESTROY_V2 as u64, 0x5000_943f);
    }

    #[test]
    fn names_are_nul_terminated_and_bounded() {
        let mut f = [0xffu8; 8];
        put_name(&mut f, b"abc").unwrap();
        assert_eq!(get_name(&f), b"abc");
        assert!(put_name(&mut f, b"12345678").is_err());
        assert!(put_name(&mut f, b"a\0b").is_err());
    }
}
