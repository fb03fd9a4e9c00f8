//! Device-mapper through /dev/mapper/control: create a mapping, load its table, resume, query and remove it, and list the kernel's target versions.
//!
//! A safe layer over [`ioctl`]: requests are built into and answers parsed out of one byte
//! buffer per call, a `Secret` (mlocked, wiped on drop) because a table load carries the
//! volume key when the keyring is refused and a table status may answer with it. Every request
//! carries `DM_SECURE_DATA_FLAG` so the kernel wipes its copies too. Answers are parsed with
//! bounds checks only: a short or odd answer is an error, never a panic.

#![deny(unsafe_code)]

pub mod ioctl;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use luks::secret::Secret;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use self::ioctl::{Cmd, HEADER, NAME_LEN, SPEC, UUID_LEN, VERSIONS, field, spec_field, versions_field};

/// The control device.
pub const CONTROL: &str = "/dev/mapper/control";
/// Where sysfs tells the control device's numbers (a misc device, normally 10:236).
const CONTROL_SYSFS: &str = "/sys/class/misc/device-mapper/dev";
/// `MAPPER_CTRL_MINOR` on misc's major 10, when sysfs does not say.
const CONTROL_DEVNUM: DevNum = DevNum { major: 10, minor: 236 };
/// First answer buffer for table status and target versions (libdevmapper starts at 16 KiB too);
/// doubled while the kernel says it is full, up to `MAX_ANSWER`.
const FIRST_ANSWER: usize = 16 * 1024;
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    pub fn new(major: u32, minor: u32) -> DevNum {
        DevNum { major, minor }
    }

    /// The kernel's `huge_encode_dev`, the form of `dm_ioctl.dev`: minor bits 0-7, major bits
    /// 8-19, the rest of the minor from bit 20.
    pub fn encode(self) -> u64 {
        let (major, minor) = (u64::from(self.major), u64::from(self.minor));
        (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
    }

    /// The kernel's `huge_decode_dev`.
    pub fn decode(dev: u64) -> DevNum {
        let dev = dev & 0xffff_ffff;
        let major = (dev & 0xfff00) >> 8;
        let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
        // Both fit in 20 bits.
        DevNum { major: major as u32, minor: minor as u32 }
    }

    /// From a `st_rdev`.
    pub fn from_rdev(rdev: u64) -> DevNum {
        DevNum { major: rustix::fs::major(rdev), minor: rustix::fs::minor(rdev) }
    }

    pub fn to_rdev(self) -> u64 {
        rustix::fs::makedev(self.major, self.minor)
    }

    /// Parses `MAJOR:MINOR` (sysfs `dev` files, table lines).
    pub fn parse(s: &str) -> Option<DevNum> {
        let (major, minor) = s.trim().split_once(':')?;
        Some(DevNum { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A device-mapper failure, naming the request and the mapping.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("cannot open {}: {source}{hint}", path.display())]
    Control { path: PathBuf, source: io::Error, hint: &'static str },
    #[error("{cmd}{}: {errno}", for_name(name))]
    Ioctl { cmd: &'static str, name: String, errno: Errno },
    #[error("{cmd}{}: unexpected answer from the kernel: {why}", for_name(name))]
    Answer { cmd: &'static str, name: String, why: String },
    #[error("{what} {value:?} is longer than device-mapper's {max} bytes")]
    TooLong { what: &'static str, value: String, max: usize },
    #[error("{what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
}

fn for_name(name: &str) -> String {
    if name.is_empty() { String::new() } else { format!(" on {name:?}") }
}

impl DmError {
    /// The kernel's errno, for a failed ioctl.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            DmError::Ioctl { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// What DM_DEV_STATUS (and every command answering with the header) tells about a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub name: String,
    /// The dm UUID; empty when the mapping has none.
    pub uuid: String,
    pub dev: DevNum,
    pub open_count: i32,
    pub target_count: u32,
    pub read_only: bool,
    pub suspended: bool,
    /// A live table is loaded.
    pub live_table: bool,
    /// A table is loaded but not yet resumed.
    pub inactive_table: bool,
    pub event_nr: u32,
}

/// One target of a table to load.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// First sector (512 bytes) of the mapping the target covers.
    pub start: u64,
    /// Sectors it covers.
    pub length: u64,
    /// `crypt`, `linear`, ...
    pub target_type: &'a str,
    /// The parameter string, without NUL; may hold a key.
    pub params: &'a [u8],
}

/// One line of a live table as DM_TABLE_STATUS answers it.
#[derive(Debug)]
pub struct TableLine {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    /// The parameters as the kernel prints them; a crypt target's may hold its key in hex.
    pub params: Secret,
}

/// A target type the kernel has loaded, with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetVersion {
    pub name: String,
    pub version: [u32; 3],
}

/// An open control device.
#[derive(Debug)]
pub struct Control {
    fd: OwnedFd,
}

impl Control {
    /// Opens /dev/mapper/control, first creating the node (from sysfs's numbers) when devtmpfs
    /// has not: an initramfs may mount /dev before dm_mod is loaded, or not mount devtmpfs.
    pub fn open() -> Result<Control, DmError> {
        let path = Path::new(CONTROL);
        match open_rw(path) {
            Ok(fd) => return Ok(Control { fd }),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(control_error(path, e)),
            Err(_) => {}
        }
        let devnum = match std::fs::read_to_string(CONTROL_SYSFS) {
            Ok(text) => DevNum::parse(&text).unwrap_or(CONTROL_DEVNUM),
            Err(e) => {
                return Err(DmError::Control {
                    path: PathBuf::from(CONTROL_SYSFS),
                    source: e,
                    hint: " (device-mapper is not in the kernel: load the dm_mod module)",
                });
            }
        };
        make_char_node(path, devnum).map_err(|e| control_error(path, e))?;
        open_rw(path).map(|fd| Control { fd }).map_err(|e| control_error(path, e))
    }

    /// Opens a control device at another path (tests).
    pub fn open_at(path: &Path) -> Result<Control, DmError> {
        open_rw(path).map(|fd| Control { fd }).map_err(|e| control_error(path, e))
    }

    /// The kernel's device-mapper interface version.
    pub fn version(&self) -> Result<[u32; 3], DmError> {
        let mut buf = request(0, "", 0)?;
        self.call(Cmd::Version, "", &mut buf)?;
        let b = buf.as_bytes();
        Ok([u32_at(b, field::VERSION), u32_at(b, field::VERSION + 4), u32_at(b, field::VERSION + 8)])
    }

    /// The target types the kernel has loaded (`crypt` only once dm_crypt is).
    pub fn target_versions(&self) -> Result<Vec<TargetVersion>, DmError> {
        let cmd = Cmd::ListVersions;
        let buf = self.call_growing(cmd, "", 0)?;
        let b = buf.as_bytes();
        let (data, _) = answer_data(cmd, "", b)?;
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let rec = data.get(at..).unwrap_or_default();
            if rec.len() < VERSIONS {
                return Err(answer(cmd, "", format!("target version record at {at} is cut short")));
            }
            let version = [
                u32_at(rec, versions_field::VERSION),
                u32_at(rec, versions_field::VERSION + 4),
                u32_at(rec, versions_field::VERSION + 8),
            ];
            let name = c_str(rec.get(VERSIONS..).unwrap_or_default())
                .ok_or_else(|| answer(cmd, "", format!("target name at {at} is not terminated")))?;
            out.push(TargetVersion { name, version });
            let next = u32_at(rec, versions_field::NEXT) as usize;
            if next == 0 {
                break;
            }
            if next < VERSIONS {
                return Err(answer(cmd, "", format!("record at {at} points back ({next})")));
            }
            at = at.saturating_add(next);
        }
        Ok(out)
    }

    /// DM_DEV_CREATE: a mapping `name` with dm UUID `uuid` and no table yet.
    pub fn create(&self, name: &str, uuid: &str, read_only: bool) -> Result<DeviceInfo, DmError> {
        let flags = if read_only { ioctl::READONLY_FLAG } else { 0 };
        let mut buf = request(0, name, flags)?;
        put_str(buf.as_mut_bytes(), field::UUID, UUID_LEN, "dm UUID", uuid)?;
        self.call(Cmd::DevCreate, name, &mut buf)?;
        device_info(Cmd::DevCreate, name, buf.as_bytes())
    }

    /// DM_TABLE_LOAD: `targets` as the inactive table of `name` (live after [`Control::resume`]).
    pub fn load_table(&self, name: &str, targets: &[Target<'_>], read_only: bool) -> Result<(), DmError> {
        let mut buf = table_request(name, targets, read_only)?;
        self.call(Cmd::TableLoad, name, &mut buf)
    }

    /// DM_DEV_SUSPEND without the suspend flag: makes the loaded table live.
    pub fn resume(&self, name: &str) -> Result<DeviceInfo, DmError> {
        let mut buf = request(0, name, 0)?;
        self.call(Cmd::DevSuspend, name, &mut buf)?;
        device_info(Cmd::DevSuspend, name, buf.as_bytes())
    }

    /// DM_DEV_REMOVE: once; EBUSY while the device is open.
    pub fn remove(&self, name: &str) -> Result<(), DmError> {
        let mut buf = request(0, name, 0)?;
        self.call(Cmd::DevRemove, name, &mut buf)
    }

    /// DM_DEV_STATUS of `name`; `None` when there is no such mapping.
    pub fn status(&self, name: &str) -> Result<Option<DeviceInfo>, DmError> {
        let mut buf = request(0, name, 0)?;
        match self.call(Cmd::DevStatus, name, &mut buf) {
            Ok(()) => device_info(Cmd::DevStatus, name, buf.as_bytes()).map(Some),
            Err(e) if e.errno() == Some(Errno::NXIO) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG: the live table of `name`; `None` when there
    /// is no such mapping.
    pub fn table(&self, name: &str) -> Result<Option<(DeviceInfo, Vec<TableLine>)>, DmError> {
        let cmd = Cmd::TableStatus;
        let buf = match self.call_growing(cmd, name, ioctl::STATUS_TABLE_FLAG) {
            Ok(buf) => buf,
            Err(e) if e.errno() == Some(Errno::NXIO) => return Ok(None),
            Err(e) => return Err(e),
        };
        let b = buf.as_bytes();
        let info = device_info(cmd, name, b)?;
        let (data, _) = answer_data(cmd, name, b)?;
        let mut lines = Vec::new();
        let mut at = 0usize;
        for i in 0..info.target_count {
            let spec = data.get(at..).unwrap_or_default();
            if spec.len() < SPEC {
                return Err(answer(cmd, name, format!("target {i} at {at} is cut short")));
            }
            let type_field = spec.get(spec_field::TARGET_TYPE..SPEC).unwrap_or_default();
            let target_type = c_str(type_field).unwrap_or_else(|| String::from_utf8_lossy(type_field).into());
            let rest = spec.get(SPEC..).unwrap_or_default();
            let end = rest
                .iter()
                .position(|&c| c == 0)
                .ok_or_else(|| answer(cmd, name, format!("parameters of target {i} are not terminated")))?;
            let params = Secret::from_slice(rest.get(..end).unwrap_or_default());
            lines.push(TableLine {
                start: u64_at(spec, spec_field::SECTOR_START),
                length: u64_at(spec, spec_field::LENGTH),
                target_type,
                params,
            });
            // For a status answer, `next` counts from the start of the data.
            let next = u32_at(spec, spec_field::NEXT) as usize;
            if i + 1 < info.target_count && next <= at {
                return Err(answer(cmd, name, format!("target {i} points back ({next})")));
            }
            at = next;
        }
        Ok(Some((info, lines)))
    }

    fn call(&self, cmd: Cmd, name: &str, buf: &mut Secret) -> Result<(), DmError> {
        ioctl::call(self.fd.as_fd(), cmd, buf.as_mut_bytes()).map_err(|errno| DmError::Ioctl {
            cmd: cmd.name(),
            name: name.to_owned(),
            errno,
        })
    }

    /// A command whose answer may not fit: repeated with a buffer twice as large while the
    /// kernel sets DM_BUFFER_FULL_FLAG.
    fn call_growing(&self, cmd: Cmd, name: &str, flags: u32) -> Result<Secret, DmError> {
        let mut size = FIRST_ANSWER;
        loop {
            let mut buf = request(size, name, flags)?;
            self.call(cmd, name, &mut buf)?;
            if u32_at(buf.as_bytes(), field::FLAGS) & ioctl::BUFFER_FULL_FLAG == 0 {
                return Ok(buf);
            }
            if size >= MAX_ANSWER {
                return Err(answer(cmd, name, format!("the answer does not fit in {MAX_ANSWER} bytes")));
            }
            size *= 2;
        }
    }
}

fn open_rw(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?)
}

fn control_error(path: &Path, source: io::Error) -> DmError {
    let hint = match source.kind() {
        io::ErrorKind::NotFound => " (load the dm_mod module)",
        _ if source.raw_os_error() == Some(Errno::NODEV.raw_os_error()) => " (load the dm_mod module)",
        _ => "",
    };
    DmError::Control { path: path.to_owned(), source, hint }
}

/// A character node `path` (mode 0600) with its parent directories.
fn make_char_node(path: &Path, devnum: DevNum) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        devnum.to_rdev(),
    ) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Bytes of a target spec in a load request: the spec, the parameters, their NUL, padded to 8.
fn spec_len(t: &Target<'_>) -> usize {
    (SPEC + t.params.len() + 1).next_multiple_of(8)
}

/// A DM_TABLE_LOAD request: each target spec followed by its parameters and their NUL, padded
/// to 8 bytes, `next` counting from one spec to the next.
fn table_request(name: &str, targets: &[Target<'_>], read_only: bool) -> Result<Secret, DmError> {
    let data_len = targets.iter().map(spec_len).fold(0usize, usize::saturating_add);
    let flags = if read_only { ioctl::READONLY_FLAG } else { 0 };
    let mut buf = request(data_len, name, flags)?;
    let b = buf.as_mut_bytes();
    put_u32(b, field::TARGET_COUNT, u32::try_from(targets.len()).unwrap_or(u32::MAX));
    let mut at = HEADER;
    for t in targets {
        if t.params.contains(&0) {
            // The parameters are not echoed: they may hold a key.
            return Err(DmError::Nul { what: "the table parameters of", value: name.to_owned() });
        }
        let len = spec_len(t);
        put_u64(b, at + spec_field::SECTOR_START, t.start);
        put_u64(b, at + spec_field::LENGTH, t.length);
        put_u32(b, at + spec_field::NEXT, u32::try_from(len).unwrap_or(u32::MAX));
        put_str(b, at + spec_field::TARGET_TYPE, ioctl::MAX_TYPE_NAME, "target type", t.target_type)?;
        if let Some(dst) = b.get_mut(at + SPEC..at + SPEC + t.params.len()) {
            dst.copy_from_slice(t.params);
        }
        at += len;
    }
    Ok(buf)
}

/// A zeroed request of `data_len` bytes of data after the header, for mapping `name` (empty:
/// none), with the interface version, `data_start` and `flags` plus DM_SECURE_DATA_FLAG set.
fn request(data_len: usize, name: &str, flags: u32) -> Result<Secret, DmError> {
    let mut buf = Secret::zeroed(HEADER.saturating_add(data_len));
    let b = buf.as_mut_bytes();
    for (i, v) in ioctl::VERSION.iter().enumerate() {
        put_u32(b, field::VERSION + 4 * i, *v);
    }
    put_u32(b, field::DATA_START, HEADER as u32);
    put_u32(b, field::FLAGS, flags | ioctl::SECURE_DATA_FLAG);
    put_str(b, field::NAME, NAME_LEN, "dm name", name)?;
    Ok(buf)
}

/// The header fields of an answer.
fn device_info(cmd: Cmd, name: &str, b: &[u8]) -> Result<DeviceInfo, DmError> {
    if b.len() < HEADER {
        return Err(answer(cmd, name, format!("{} bytes, shorter than the header", b.len())));
    }
    let flags = u32_at(b, field::FLAGS);
    let text = |at: usize, len: usize| {
        let f = b.get(at..at + len).unwrap_or_default();
        c_str(f).unwrap_or_else(|| String::from_utf8_lossy(f).into())
    };
    Ok(DeviceInfo {
        name: text(field::NAME, NAME_LEN),
        uuid: text(field::UUID, UUID_LEN),
        dev: DevNum::decode(u64_at(b, field::DEV)),
        open_count: u32_at(b, field::OPEN_COUNT) as i32,
        target_count: u32_at(b, field::TARGET_COUNT),
        read_only: flags & ioctl::READONLY_FLAG != 0,
        suspended: flags & ioctl::SUSPEND_FLAG != 0,
        live_table: flags & ioctl::ACTIVE_PRESENT_FLAG != 0,
        inactive_table: flags & ioctl::INACTIVE_PRESENT_FLAG != 0,
        event_nr: u32_at(b, field::EVENT_NR),
    })
}

/// The data part of an answer (from `data_start` to `data_size`, within the buffer) and its
/// offset in the buffer.
fn answer_data<'b>(cmd: Cmd, name: &str, b: &'b [u8]) -> Result<(&'b [u8], usize), DmError> {
    let start = u32_at(b, field::DATA_START) as usize;
    let size = (u32_at(b, field::DATA_SIZE) as usize).min(b.len());
    if start < HEADER || start > size {
        return Err(answer(cmd, name, format!("data from {start} to {size}")));
    }
    Ok((b.get(start..size).unwrap_or_default(), start))
}

fn answer(cmd: Cmd, name: &str, why: String) -> DmError {
    DmError::Answer { cmd: cmd.name(), name: name.to_owned(), why }
}

/// A NUL-terminated string in a fixed field: at most `max - 1` bytes, no inner NUL.
fn put_str(b: &mut [u8], at: usize, max: usize, what: &'static str, s: &str) -> Result<(), DmError> {
    if s.len() >= max {
        return Err(DmError::TooLong { what, value: s.to_owned(), max: max - 1 });
    }
    if s.as_bytes().contains(&0) {
        return Err(DmError::Nul { what, value: s.to_owned() });
    }
    if let Some(dst) = b.get_mut(at..at + s.len()) {
        dst.copy_from_slice(s.as_bytes());
    }
    Ok(())
}

/// The string before the first NUL of `field`; `None` without one or when not UTF-8.
fn c_str(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&c| c == 0)?;
    String::from_utf8(field.get(..end)?.to_vec()).ok()
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = b.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_ne_bytes());
    }
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = b.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_ne_bytes());
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(src) = b.get(at..at + 4) {
        a.copy_from_slice(src);
    }
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(src) = b.get(at..at + 8) {
        a.copy_from_slice(src);
    }
    u64::from_ne_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_travel_as_the_kernel_encodes_them() {
        // huge_encode_dev(MKDEV(254, 3)) and a minor above 255 (its high bits from bit 20).
        assert_eq!(DevNum::new(254, 3).encode(), 0xfe03);
        assert_eq!(DevNum::new(254, 0x1234).encode(), 0x0120_fe34);
        for d in
            [DevNum::new(254, 0), DevNum::new(253, 0x1234), DevNum::new(8, 17), DevNum::new(4095, 0xfffff)]
        {
            assert_eq!(DevNum::decode(d.encode()), d);
            // The same as glibc's makedev for numbers of this size.
            assert_eq!(d.encode(), d.to_rdev());
        }
        assert_eq!(DevNum::parse("254:7\n"), Some(DevNum::new(254, 7)));
        assert_eq!(DevNum::parse("254"), None);
        assert_eq!(DevNum::new(254, 7).to_string(), "254:7");
    }

    #[test]
    fn a_request_carries_the_version_the_data_start_and_secure_data() {
        let buf = request(0, "cryptroot", ioctl::READONLY_FLAG).unwrap();
        let b = buf.as_bytes();
        assert_eq!(b.len(), 312);
        assert_eq!([u32_at(b, 0), u32_at(b, 4), u32_at(b, 8)], [4, 0, 0]);
        assert_eq!(u32_at(b, field::DATA_START), 312);
        assert_eq!(u32_at(b, field::FLAGS), ioctl::READONLY_FLAG | ioctl::SECURE_DATA_FLAG);
        assert_eq!(&b[field::NAME..field::NAME + 10], b"cryptroot\0");
    }

    #[test]
    fn names_and_uuids_must_fit_their_fields() {
        assert!(request(0, &"n".repeat(127), 0).is_ok());
        let e = request(0, &"n".repeat(128), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("dm name {:?} is longer than device-mapper's 127 bytes", "n".repeat(128))
        );
        assert!(matches!(request(0, "a\0b", 0), Err(DmError::Nul { .. })));
        let mut b = [0u8; HEADER];
        assert!(put_str(&mut b, field::UUID, UUID_LEN, "dm UUID", &"u".repeat(128)).is_ok());
        assert!(put_str(&mut b, field::UUID, UUID_LEN, "dm UUID", &"u".repeat(129)).is_err());
    }

    #[test]
    fn a_table_load_lays_out_each_target_after_the_header() {
        // Re-read the way the kernel's populate_table does: the first spec at data_start, each
        // next one `next` bytes after the previous, parameters NUL-terminated.
        let targets = [
            Target { start: 0, length: 100, target_type: "linear", params: b"8:1 0" },
            Target { start: 100, length: 50, target_type: "crypt", params: b"aes-xts-plain64 - 0 8:2 0" },
        ];
        let buf = table_request("t", &targets, true).unwrap();
        let b = buf.as_bytes();
        assert_eq!(b.len(), HEADER + 48 + 72);
        assert_eq!(u32_at(b, field::TARGET_COUNT), 2);
        assert_eq!(u32_at(b, field::FLAGS), ioctl::READONLY_FLAG | ioctl::SECURE_DATA_FLAG);
        let first = u32_at(b, field::DATA_START) as usize;
        assert_eq!((u64_at(b, first), u64_at(b, first + 8)), (0, 100));
        assert_eq!(c_str(&b[first + 24..first + 40]).as_deref(), Some("linear"));
        assert_eq!(c_str(&b[first + 40..]).as_deref(), Some("8:1 0"));
        let second = first + u32_at(b, first + spec_field::NEXT) as usize;
        assert_eq!(second % 8, 0);
        assert_eq!((u64_at(b, second), u64_at(b, second + 8)), (100, 50));
        assert_eq!(c_str(&b[second + 24..second + 40]).as_deref(), Some("crypt"));
        assert_eq!(c_str(&b[second + 40..]).as_deref(), Some("aes-xts-plain64 - 0 8:2 0"));
        let nul = Target { start: 0, length: 1, target_type: "crypt", params: b"secret\0key" };
        let e = table_request("t", &[nul], false).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let long_type = Target { start: 0, length: 1, target_type: "sixteen-letters!", params: b"" };
        assert!(table_request("t", &[long_type], false).is_err());
    }

    #[test]
    fn answers_are_read_within_bounds() {
        let mut b = vec![0u8; HEADER + 8];
        put_u32(&mut b, field::DATA_START, HEADER as u32);
        put_u32(&mut b, field::DATA_SIZE, 10_000); // more than the buffer: clamped
        assert_eq!(answer_data(Cmd::TableStatus, "x", &b).unwrap().0.len(), 8);
        put_u32(&mut b, field::DATA_START, 7);
        assert!(answer_data(Cmd::TableStatus, "x", &b).is_err());
        assert!(device_info(Cmd::DevStatus, "x", &b[..100]).is_err());
        put_u32(&mut b, field::FLAGS, ioctl::READONLY_FLAG | ioctl::ACTIVE_PRESENT_FLAG);
        put_u64(&mut b, field::DEV, DevNum::new(254, 2).encode());
        b[field::NAME..field::NAME + 4].copy_from_slice(b"root");
        b[field::UUID..field::UUID + 5].copy_from_slice(b"CRYPT");
        let info = device_info(Cmd::DevStatus, "root", &b).unwrap();
        assert_eq!(
            (info.name.as_str(), info.uuid.as_str(), info.dev),
            ("root", "CRYPT", DevNum::new(254, 2))
        );
        assert!(info.read_only && info.live_table && !info.suspended && !info.inactive_table);
    }

    #[test]
    fn a_missing_control_device_names_the_module() {
        let e = Control::open_at(Path::new("/nonexistent/mapper/control")).unwrap_err();
        assert!(e.to_string().contains("load the dm_mod module"), "{e}");
    }
}
