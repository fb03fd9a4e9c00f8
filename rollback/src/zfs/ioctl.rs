//! The /dev/zfs ioctl and the `zfs_cmd_t` it takes, laid out for OpenZFS 2.1 to 2.4: the only `unsafe` code of the ZFS backend.
//!
//! Every ZFS ioctl passes a pointer to one `zfs_cmd_t`; the kernel copies
//! `sizeof (zfs_cmd_t)` bytes in and out, and that size differs between
//! releases (13744 bytes in 2.1 to 2.3.0 and again in 2.4, 13760 in 2.3.1 to
//! 2.3.x, whose `zinject_record_t` grew). So the command lives in a zeroed
//! buffer larger than any of them, and only fields below offset 13296 are
//! used: from `zc_inject_record` on, 2.3.1 moved everything (`zc_simple`,
//! `zc_cleanup_fd`, `zc_defer_destroy`, …); everything before is the same in
//! every release from 2.1.0 to 2.4.x (checked with offsetof against each
//! tag's include/sys/zfs_ioctl.h).

use std::ffi::c_void;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

/// The control device.
pub const DEVICE: &str = "/dev/zfs";

/// `zfs_ioc_t` request numbers: on Linux the raw enum values, `ZFS_IOC_FIRST` = `'Z' << 8`
/// plus the position in include/sys/fs/zfs.h (identical from 2.1.0 to 2.4.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Request {
    /// 0x5a05, legacy: a pool's config, to tell whether it is imported.
    PoolStats = 0x5a05,
    /// 0x5a12, legacy: `zc_objset_stats` (and with a buffer the properties) of a dataset or snapshot.
    ObjsetStats = 0x5a12,
    /// 0x5a15, legacy: the next snapshot after `zc_cookie`, its name in `zc_name`.
    SnapshotListNext = 0x5a15,
    /// 0x5a19, new-style: roll back to the latest snapshot, `{"target": "ds@snap"}`.
    Rollback = 0x5a19,
    /// 0x5a3b, new-style, `zc_name` the pool: `{"snaps": {"ds@snap": boolean…}}`.
    DestroySnaps = 0x5a3b,
    /// 0x5a44, new-style: a dataset's bookmarks with the properties asked for.
    GetBookmarks = 0x5a44,
    /// 0x5a45, new-style, `zc_name` the pool: `{"ds#bookmark": boolean…}`.
    DestroyBookmarks = 0x5a45,
}

// zfs_cmd_t offsets, x86_64 and every other LP64 Linux (MAXPATHLEN 4096, MAXNAMELEN 256):
//
//   zc_name              char[4096]                 0
//   zc_nvlist_src        uint64_t                4096
//   zc_nvlist_src_size   uint64_t                4104
//   zc_nvlist_dst        uint64_t                4112
//   zc_nvlist_dst_size   uint64_t                4120
//   zc_nvlist_dst_filled boolean_t (int)         4128, zc_pad2 int 4132
//   zc_history           uint64_t                4136
//   zc_value             char[2 * 4096]          4144
//   zc_string            char[256]              12336
//   zc_guid, zc_nvlist_conf, zc_nvlist_conf_size 12592, 12600, 12608
//   zc_cookie            uint64_t               12616
//   zc_objset_type … zc_iflags, 6 × uint64_t     12624 … 12664
//   zc_share             4 × uint64_t           12672
//   zc_objset_stats      dmu_objset_stats_t     12704 (288 bytes: 3 × uint64_t, an enum,
//                                                      3 × uint8_t, char[256], 2.2+ one more
//                                                      uint8_t, padded to 8)
//   zc_begin_record      struct drr_begin       12992 (304 bytes)
//   zc_inject_record     (moved in 2.3.1)       13296
pub const ZC_NAME: usize = 0;
pub const ZC_NAME_LEN: usize = 4096;
pub const ZC_NVLIST_SRC: usize = ZC_NAME + ZC_NAME_LEN;
pub const ZC_NVLIST_SRC_SIZE: usize = ZC_NVLIST_SRC + 8;
pub const ZC_NVLIST_DST: usize = ZC_NVLIST_SRC_SIZE + 8;
pub const ZC_NVLIST_DST_SIZE: usize = ZC_NVLIST_DST + 8;
pub const ZC_NVLIST_DST_FILLED: usize = ZC_NVLIST_DST_SIZE + 8;
pub const ZC_HISTORY: usize = ZC_NVLIST_DST_FILLED + 4 + 4;
pub const ZC_VALUE: usize = ZC_HISTORY + 8;
pub const ZC_STRING: usize = ZC_VALUE + 2 * 4096;
pub const ZC_GUID: usize = ZC_STRING + 256;
pub const ZC_COOKIE: usize = ZC_GUID + 3 * 8;
pub const ZC_SHARE: usize = ZC_COOKIE + 8 + 6 * 8;
pub const ZC_OBJSET_STATS: usize = ZC_SHARE + 4 * 8;
pub const DMU_OBJSET_STATS_SIZE: usize = 288;
pub const ZC_BEGIN_RECORD: usize = ZC_OBJSET_STATS + DMU_OBJSET_STATS_SIZE;
pub const DRR_BEGIN_SIZE: usize = 304;
/// `zc_inject_record`: nothing from here on is used (2.3.1 moved it all).
pub const FIRST_MOVED: usize = ZC_BEGIN_RECORD + DRR_BEGIN_SIZE;

// dmu_objset_stats_t, inside zc_objset_stats.
pub const DDS_NUM_CLONES: usize = 0;
pub const DDS_CREATION_TXG: usize = 8;
// dds_guid at 16 is not needed.
pub const DDS_TYPE: usize = 24;
pub const DDS_IS_SNAPSHOT: usize = 28;
pub const DDS_INCONSISTENT: usize = 29;

/// The largest `sizeof (zfs_cmd_t)` of 2.1 to 2.4 (2.3.1's).
pub const LARGEST_ZFS_CMD: usize = 13760;
/// The buffer handed to the kernel: room for any of them, with a margin for growth.
pub const CMD_SIZE: usize = 32 * 1024;
const _: () = assert!(CMD_SIZE >= LARGEST_ZFS_CMD + 4096);
const _: () = assert!(ZC_OBJSET_STATS + DMU_OBJSET_STATS_SIZE <= FIRST_MOVED);

/// An errno from the kernel; ZFS adds its own from 1024 (`zfs_errno_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const ENOMEM: Errno = Errno(12);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const EINVAL: Errno = Errno(22);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            22 => "EINVAL",
            25 => "ENOTTY",
            28 => "ENOSPC",
            30 => "EROFS",
            95 => "ENOTSUP",
            122 => "EDQUOT",
            1029 => "ZFS_ERR_IOC_CMD_UNAVAIL",
            1030 => "ZFS_ERR_IOC_ARG_UNAVAIL",
            1031 => "ZFS_ERR_IOC_ARG_REQUIRED",
            1032 => "ZFS_ERR_IOC_ARG_BADTYPE",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) if self.0 < 1024 => {
                let text = std::io::Error::from_raw_os_error(self.0).to_string();
                let text = text.split(" (os error").next().unwrap_or(&text);
                write!(f, "{name} ({text})")
            }
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Errno {
        Errno(e.raw_os_error())
    }
}

/// Opens /dev/zfs.
pub fn open() -> Result<OwnedFd, Errno> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(DEVICE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?)
}

/// The 8-aligned bytes of a `zfs_cmd_t`, with room to spare.
#[repr(C, align(8))]
struct Raw([u8; CMD_SIZE]);

/// One `zfs_cmd_t` with the input and output nvlist buffers its pointers refer to.
pub struct ZfsCmd {
    raw: Box<Raw>,
    /// What `zc_nvlist_src` points to; owned here so it outlives the call.
    src: Vec<u8>,
    /// What `zc_nvlist_dst` points to.
    dst: Vec<u8>,
}

impl ZfsCmd {
    /// A zeroed command for `name` (a pool, dataset, snapshot or bookmark).
    pub fn new(name: &str) -> Result<ZfsCmd, Errno> {
        if name.len() >= ZC_NAME_LEN || name.contains('\0') {
            return Err(Errno::EINVAL);
        }
        let mut raw = Box::new(Raw([0; CMD_SIZE]));
        raw.0[ZC_NAME..ZC_NAME + name.len()].copy_from_slice(name.as_bytes());
        Ok(ZfsCmd { raw, src: Vec::new(), dst: Vec::new() })
    }

    /// The input nvlist (XDR-packed).
    pub fn set_src(&mut self, packed: Vec<u8>) {
        self.src = packed;
    }

    /// Room for the kernel's answer nvlist; new-style ioctls need it even when they answer nothing
    /// much (an answer that does not fit is ENOMEM, after the work is done).
    pub fn set_dst(&mut self, capacity: usize) {
        self.dst = vec![0; capacity];
    }

    pub fn set_cookie(&mut self, cookie: u64) {
        self.put_u64(ZC_COOKIE, cookie);
    }

    pub fn cookie(&self) -> u64 {
        self.u64_at(ZC_COOKIE)
    }

    /// `zc_name` as the kernel left it (SNAPSHOT_LIST_NEXT writes `ds@snap` there).
    pub fn name(&self) -> Option<String> {
        let field = self.raw.0.get(ZC_NAME..ZC_NAME + ZC_NAME_LEN)?;
        let end = field.iter().position(|&b| b == 0)?;
        String::from_utf8(field.get(..end)?.to_vec()).ok()
    }

    /// `zc_nvlist_dst_size`: the answer's size, or on ENOMEM the size it needs.
    pub fn dst_size(&self) -> u64 {
        self.u64_at(ZC_NVLIST_DST_SIZE)
    }

    /// The packed answer, when the kernel wrote one into the buffer.
    pub fn dst(&self) -> Option<&[u8]> {
        // boolean_t: an int in the machine's byte order.
        let filled = self.raw.0.get(ZC_NVLIST_DST_FILLED..ZC_NVLIST_DST_FILLED + 4)?;
        if filled.iter().all(|&b| b == 0) {
            return None;
        }
        let n = usize::try_from(self.dst_size()).ok()?;
        self.dst.get(..n)
    }

    /// A field of `zc_objset_stats`.
    pub fn stats_u64(&self, field: usize) -> u64 {
        self.u64_at(ZC_OBJSET_STATS + field)
    }

    pub fn stats_u32(&self, field: usize) -> u32 {
        let at = ZC_OBJSET_STATS + field;
        self.raw.0.get(at..at + 4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn stats_u8(&self, field: usize) -> u8 {
        self.raw.0.get(ZC_OBJSET_STATS + field).copied().unwrap_or(0)
    }

    fn u64_at(&self, at: usize) -> u64 {
        self.raw.0.get(at..at + 8).map_or(0, |b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_ne_bytes(a)
        })
    }

    fn put_u64(&mut self, at: usize, v: u64) {
        debug_assert!(at + 8 <= FIRST_MOVED, "zfs_cmd_t field at {at} moved in 2.3.1");
        if let Some(b) = self.raw.0.get_mut(at..at + 8) {
            b.copy_from_slice(&v.to_ne_bytes());
        }
    }

    /// Points `zc_nvlist_src`/`zc_nvlist_dst` at the owned buffers, right before a call.
    fn wire_buffers(&mut self) {
        let (src, src_len) =
            if self.src.is_empty() { (0, 0) } else { (self.src.as_ptr() as u64, self.src.len()) };
        let (dst, dst_len) =
            if self.dst.is_empty() { (0, 0) } else { (self.dst.as_ptr() as u64, self.dst.len()) };
        self.put_u64(ZC_NVLIST_SRC, src);
        self.put_u64(ZC_NVLIST_SRC_SIZE, src_len as u64);
        self.put_u64(ZC_NVLIST_DST, dst);
        self.put_u64(ZC_NVLIST_DST_SIZE, dst_len as u64);
        if let Some(b) = self.raw.0.get_mut(ZC_NVLIST_DST_FILLED..ZC_NVLIST_DST_FILLED + 4) {
            b.fill(0);
        }
    }
}

/// One ioctl on /dev/zfs with the command's buffers. EINTR (a signal while the kernel waited) is
/// retried; the ioctls used here are all safe to repeat.
pub fn call(fd: impl AsFd, request: Request, cmd: &mut ZfsCmd) -> Result<(), Errno> {
    let fd = fd.as_fd();
    let mut tries = 0;
    loop {
        cmd.wire_buffers();
        let arg = Arg { request: request as Opcode, raw: &mut cmd.raw };
        // SAFETY: the argument is a zeroed, 8-aligned buffer of CMD_SIZE bytes, larger than
        // sizeof (zfs_cmd_t) of any OpenZFS release (at most LARGEST_ZFS_CMD), so the kernel's
        // copyin and copyout of the struct stay inside it. The only pointers in it are
        // zc_nvlist_src and zc_nvlist_dst, just set by `wire_buffers` to `cmd.src` and `cmd.dst`
        // (or 0) with their exact lengths; both vectors are borrowed through `cmd` for the whole
        // call, so they stay alive and unmoved, and the kernel writes at most
        // zc_nvlist_dst_size bytes to dst. All other fields are plain integers and chars.
        match unsafe { rustix::ioctl::ioctl(fd, arg) } {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INTR && tries < 10 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A `zfs_cmd_t` passed by pointer, with a request number chosen at run time.
struct Arg<'a> {
    request: Opcode,
    raw: &'a mut Raw,
}

// SAFETY: the ioctl takes a pointer to a zfs_cmd_t that it reads and writes (IS_MUTATING);
// `as_ptr` gives the exclusively borrowed buffer, large enough for every release's struct (see
// `call`), and nothing is read back through the pointer here: the output is the buffer itself.
unsafe impl Ioctl for Arg<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.request
    }

    fn as_ptr(&mut self) -> *mut c_void {
        std::ptr::from_mut::<Raw>(self.raw).cast()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets as offsetof() gives them for the headers of 2.1.11, 2.3.0, 2.3.1 and 2.4.4.
    #[test]
    fn offsets_match_the_headers() {
        assert_eq!(ZC_NVLIST_SRC, 4096);
        assert_eq!(ZC_NVLIST_SRC_SIZE, 4104);
        assert_eq!(ZC_NVLIST_DST, 4112);
        assert_eq!(ZC_NVLIST_DST_SIZE, 4120);
        assert_eq!(ZC_NVLIST_DST_FILLED, 4128);
        assert_eq!(ZC_HISTORY, 4136);
        assert_eq!(ZC_VALUE, 4144);
        assert_eq!(ZC_STRING, 12336);
        assert_eq!(ZC_GUID, 12592);
        assert_eq!(ZC_COOKIE, 12616);
        assert_eq!(ZC_OBJSET_STATS, 12704);
        assert_eq!(ZC_BEGIN_RECORD, 12992);
        assert_eq!(FIRST_MOVED, 13296);
        // dmu_objset_stats_t: clones, txg, guid, type, is_snapshot, inconsistent, redacted, origin.
        assert_eq!((DDS_NUM_CLONES, DDS_CREATION_TXG, DDS_TYPE), (0, 8, 24));
        assert_eq!((DDS_IS_SNAPSHOT, DDS_INCONSISTENT), (28, 29));
        assert_eq!(DMU_OBJSET_STATS_SIZE, (31 + 256 + 1usize).next_multiple_of(8));
    }

    #[test]
    fn every_field_used_is_before_the_moved_part() {
        for end in [ZC_NVLIST_DST_FILLED + 4, ZC_COOKIE + 8, ZC_OBJSET_STATS + DDS_INCONSISTENT + 1] {
            assert!(end <= FIRST_MOVED);
        }
    }

    #[test]
    fn request_numbers_are_zfs_ioc_first_plus_their_position() {
        let first = u32::from(b'Z') << 8;
        assert_eq!(Request::PoolStats as u32, first + 5);
        assert_eq!(Request::ObjsetStats as u32, first + 0x12);
        assert_eq!(Request::SnapshotListNext as u32, first + 0x15);
        assert_eq!(Request::Rollback as u32, first + 0x19);
        assert_eq!(Request::DestroySnaps as u32, first + 0x3b);
        assert_eq!(Request::GetBookmarks as u32, first + 0x44);
        assert_eq!(Request::DestroyBookmarks as u32, first + 0x45);
    }

    /// `zc_nvlist_dst_filled` is a boolean_t, an int in the machine's byte order, as the
    /// kernel's put_nvlist sets it (its 1 is in the last byte on a big-endian machine).
    #[test]
    fn the_answer_is_there_when_the_kernel_says_it_filled_it() {
        let mut c = ZfsCmd::new("rpool").unwrap();
        c.set_dst(64);
        c.wire_buffers();
        c.dst[..4].copy_from_slice(&[1, 2, 3, 4]);
        c.put_u64(ZC_NVLIST_DST_SIZE, 4);
        assert_eq!(c.dst(), None, "not filled");
        c.raw.0[ZC_NVLIST_DST_FILLED..ZC_NVLIST_DST_FILLED + 4].copy_from_slice(&1i32.to_ne_bytes());
        assert_eq!(c.dst(), Some(&[1u8, 2, 3, 4][..]));
        // On ENOMEM the kernel sets it too, with the size it needed: more than there is.
        c.put_u64(ZC_NVLIST_DST_SIZE, 65);
        assert_eq!(c.dst(), None);
    }

    #[test]
    fn the_command_carries_its_name_and_buffers() {
        let mut c = ZfsCmd::new("rpool/local/root").unwrap();
        assert_eq!(c.name().as_deref(), Some("rpool/local/root"));
        c.set_src(vec![1, 2, 3]);
        c.set_dst(64);
        c.set_cookie(7);
        c.wire_buffers();
        assert_eq!(c.u64_at(ZC_NVLIST_SRC), c.src.as_ptr() as u64);
        assert_eq!(c.u64_at(ZC_NVLIST_SRC_SIZE), 3);
        assert_eq!(c.u64_at(ZC_NVLIST_DST_SIZE), 64);
        assert_eq!(c.cookie(), 7);
        assert!(c.dst().is_none(), "nothing filled yet");
        assert!(ZfsCmd::new(&"x".repeat(ZC_NAME_LEN)).is_err());
        assert_eq!(Errno::ENOENT.to_string(), "ENOENT (No such file or directory)");
        assert_eq!(Errno(1031).to_string(), "ZFS_ERR_IOC_ARG_REQUIRED");
    }
}
