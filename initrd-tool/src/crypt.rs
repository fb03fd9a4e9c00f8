//! Opening and closing unlocked LUKS volumes as dm-crypt mappings, as cryptsetup does: its table, its dm UUID, the key in the kernel keyring, /dev/mapper/NAME and udev's database entry.
//!
//! [`activate`] builds the one `crypt` target cryptsetup's `get_dm_crypt_params` would
//! (lib/libdevmapper.c): `<cipher> <key> <iv_offset> <major:minor> <offset> [<#opts> <opts>...]`
//! with the options in cryptsetup's order and `sector_size:<n>` only when it is not 512. The key
//! is a `logon` key in the thread keyring named `:<bytes>:logon:cryptsetup:<uuid>-d<digest>`
//! in the table; the hex key goes into the table only when the keyring or dm-crypt refuses
//! that (the reason is in [`Active::notes`]). Any failure after DM_DEV_CREATE removes the
//! mapping again.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use luks::model::{Header, Segment, SegmentKind, SegmentSize, Version};
use luks::secret::Secret;
use rustix::io::Errno;
use serde::Serialize;

use crate::dm::{self, Control, DevNum, DeviceInfo, DmError, Target};
use crate::keyring::{self, LogonKey};
use crate::udev_db;

/// A sector as device-mapper counts them.
const SECTOR: u64 = 512;
/// Largest encryption sector size dm-crypt and LUKS2 allow.
const MAX_SECTOR_SIZE: u32 = 4096;
/// The first dm-crypt target version that takes keys from the kernel keyring without the bug
/// cryptsetup works around (`DM_KERNEL_KEYRING_SUPPORTED` from 1.18.1).
const KEYRING_SINCE: [u32; 3] = [1, 18, 1];
/// How often and how long apart DM_DEV_REMOVE is tried while the device is busy (a process
/// that just closed it, udev's probe): 2 s in all.
const REMOVE_TRIES: u32 = 10;
const REMOVE_PAUSE: Duration = Duration::from_millis(200);

/// A device-mapper name that is also a safe /dev/mapper entry and udev link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MapName(String);

/// Why a mapping name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the mapping name is empty")]
    Empty,
    #[error("the mapping name {0:?} is longer than 127 bytes")]
    TooLong(String),
    #[error("the mapping name {0:?} is reserved")]
    Reserved(String),
    #[error("the mapping name {name:?} contains {ch:?}: use letters, digits and # + - . : = @ _")]
    Char { name: String, ch: char },
}

impl MapName {
    /// 1 to 127 bytes (device-mapper's limit) of the characters libdevmapper passes unmangled
    /// (`[0-9A-Za-z#+-.:=@_]`: any other it would send to the kernel as `\xNN`, so cryptsetup
    /// and dmsetup would not find the mapping by the name given), and not `.`, `..` or
    /// `control`, which are not free in /dev/mapper.
    pub fn new(name: &str) -> Result<MapName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > dm::ioctl::NAME_LEN - 1 {
            return Err(NameError::TooLong(name.to_owned()));
        }
        if let Some(ch) = name.chars().find(|c| !c.is_ascii_alphanumeric() && !"#+-.:=@_".contains(*c)) {
            return Err(NameError::Char { name: name.to_owned(), ch });
        }
        if matches!(name, "." | ".." | "control") {
            return Err(NameError::Reserved(name.to_owned()));
        }
        Ok(MapName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MapName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<MapName, NameError> {
        MapName::new(s)
    }
}

impl fmt::Display for MapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MapName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What to open: an unlocked volume's segment under a name.
#[derive(Debug, Clone, Copy)]
pub struct Activation<'a> {
    pub name: &'a MapName,
    /// The header the volume key was unlocked from (its UUID names the mapping and the key).
    pub header: &'a Header,
    /// The data segment to map (`luks::unlock`'s `Unlocked::segment`).
    pub segment: &'a Segment,
    pub volume_key: &'a Secret,
    /// The LUKS data device (for a detached header, the device without it).
    pub data_device: &'a Path,
    pub read_only: bool,
    /// Pass discards (TRIM) down (`allow_discards`); also when the LUKS2 header's persistent
    /// flags say so, as with cryptsetup.
    pub allow_discards: bool,
    pub no_read_workqueue: bool,
    pub no_write_workqueue: bool,
    /// Put the key in the kernel keyring and name it in the table (default); `false` puts the
    /// hex key in the table.
    pub use_keyring: bool,
}

impl<'a> Activation<'a> {
    /// Read-write, no optional flags, the key in the keyring.
    pub fn new(
        name: &'a MapName,
        header: &'a Header,
        segment: &'a Segment,
        volume_key: &'a Secret,
        data_device: &'a Path,
    ) -> Activation<'a> {
        Activation {
            name,
            header,
            segment,
            volume_key,
            data_device,
            read_only: false,
            allow_discards: false,
            no_read_workqueue: false,
            no_write_workqueue: false,
            use_keyring: true,
        }
    }
}

/// Whether [`activate`] made the mapping or found it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActiveState {
    Created,
    /// A mapping with this name and this volume's dm UUID was already there (a second run,
    /// or an earlier stage); it was left as it is.
    AlreadyActive,
}

/// An active mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Active {
    pub name: MapName,
    pub dev: DevNum,
    /// /dev/mapper/NAME.
    pub node: PathBuf,
    /// The dm UUID.
    pub uuid: String,
    /// The table names a keyring key rather than carrying the hex key.
    pub key_in_keyring: bool,
    pub read_only: bool,
    pub state: ActiveState,
    /// What the caller should tell: why the key is in the table, why the mapping is read-only
    /// although read-write was asked, how much of the device was left out of the mapping.
    pub notes: Vec<String>,
}

/// A failure to open, close or query a mapping; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{name}: segment {segment}: {why}")]
    Segment { name: String, segment: u32, why: String },
    #[error("{name}: {}: {source}", device.display())]
    DataDevice { name: String, device: PathBuf, source: io::Error },
    #[error("{name}: {} is not a block device", device.display())]
    NotBlockDevice { name: String, device: PathBuf },
    #[error("{name}: {} ({size} bytes) is too small for segment {segment} ({why})", device.display())]
    TooSmall { name: String, device: PathBuf, size: u64, segment: u32, why: String },
    #[error("{name}: the volume key is empty, but cipher {cipher} needs one")]
    NoKey { name: String, cipher: String },
    #[error("{name}: dm UUID {uuid:?} has characters udev would mangle")]
    Uuid { name: String, uuid: String },
    #[error("a mapping named {name:?} already exists with dm UUID {uuid:?}, not this volume's {expected:?}")]
    NameTaken { name: String, uuid: String, expected: String },
    #[error(
        "{name}: the kernel has no dm-crypt target ({source}): load the dm_crypt module and the crypto modules {cipher} needs"
    )]
    NoCryptTarget { name: String, cipher: String, source: DmError },
    #[error(
        "{name}: the kernel cannot make the cipher {cipher} ({source}): load the crypto modules it needs (for xts: xts and ecb; for essiv: essiv)"
    )]
    CipherUnavailable { name: String, cipher: String, source: DmError },
    #[error(
        "{name}: dm-crypt refused the table for {cipher} with a {key_bytes}-byte key ({source}); the kernel log says why"
    )]
    TableRefused { name: String, cipher: String, key_bytes: usize, source: DmError },
    #[error(transparent)]
    Dm(#[from] DmError),
    #[error("{name}: {}: {source}", path.display())]
    Node { name: String, path: PathBuf, source: io::Error },
    #[error("there is no mapping named {0:?}")]
    NotActive(String),
    #[error("the mapping {name:?} is not a dm-crypt mapping (dm UUID {uuid:?})")]
    NotCrypt { name: String, uuid: String },
    #[error("the mapping {name:?} is still in use after {tries} attempts to remove it: {source}")]
    Busy { name: String, tries: u32, source: DmError },
}

/// The dm-crypt options of a table, in cryptsetup's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CryptOptions {
    pub allow_discards: bool,
    pub same_cpu_crypt: bool,
    pub submit_from_crypt_cpus: bool,
    pub no_read_workqueue: bool,
    pub no_write_workqueue: bool,
    pub high_priority: bool,
    /// Encryption sector size in bytes (512, or up to 4096 for LUKS2).
    pub sector_size: u32,
}

impl CryptOptions {
    /// The optional parameters as dm-crypt takes them (empty when there are none).
    pub fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = [
            (self.allow_discards, "allow_discards"),
            (self.same_cpu_crypt, "same_cpu_crypt"),
            (self.submit_from_crypt_cpus, "submit_from_crypt_cpus"),
            (self.no_read_workqueue, "no_read_workqueue"),
            (self.no_write_workqueue, "no_write_workqueue"),
            (self.high_priority, "high_priority"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| w.to_owned())
        .collect();
        if self.sector_size != SECTOR as u32 {
            w.push(format!("sector_size:{}", self.sector_size));
        }
        w
    }
}

/// Everything of a dm-crypt table line but its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CryptTable {
    pub cipher: String,
    /// `iv_tweak`: the IV of the first sector.
    pub iv_offset: u64,
    pub device: DevNum,
    /// Where the payload starts on the device, in 512-byte sectors.
    pub offset_sectors: u64,
    /// The mapping's length in 512-byte sectors (a whole number of encryption sectors).
    pub length_sectors: u64,
    pub options: CryptOptions,
}

/// How the table gives the key.
#[derive(Debug, Clone, Copy)]
pub enum KeyArg<'a> {
    /// `:<bytes>:logon:<description>`, a key in the keyring.
    Keyring(&'a str),
    /// The key in hex.
    Hex(&'a Secret),
    /// `-`: cipher_null takes no key.
    Null,
}

impl CryptTable {
    /// The target's parameter string, in a `Secret` because it may hold the hex key.
    pub fn params(&self, key: KeyArg<'_>) -> Secret {
        let words = self.options.words();
        let key_len = match key {
            KeyArg::Keyring(r) => r.len(),
            KeyArg::Hex(k) => 2 * k.len(),
            KeyArg::Null => 1,
        };
        let rest = format!(" {} {} {}", self.iv_offset, self.device, self.offset_sectors);
        let opts =
            if words.is_empty() { String::new() } else { format!(" {} {}", words.len(), words.join(" ")) };
        let mut p = Secret::with_capacity(self.cipher.len() + 1 + key_len + rest.len() + opts.len());
        // The capacity is exact, so none of these can fail.
        let _ = p.extend_from_slice(self.cipher.as_bytes());
        let _ = p.push(b' ');
        match key {
            KeyArg::Keyring(r) => {
                let _ = p.extend_from_slice(r.as_bytes());
            }
            KeyArg::Hex(k) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for b in k.as_bytes() {
                    let _ = p.push(HEX[usize::from(b >> 4)]);
                    let _ = p.push(HEX[usize::from(b & 0xf)]);
                }
            }
            KeyArg::Null => {
                let _ = p.push(b'-');
            }
        }
        let _ = p.extend_from_slice(rest.as_bytes());
        let _ = p.extend_from_slice(opts.as_bytes());
        p
    }
}

/// What [`activate`] needs to know about the data device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDevice {
    pub dev: DevNum,
    pub size: u64,
    /// The kernel says the device is read-only.
    pub read_only: bool,
}

/// The table for `req` over a data device of `size` bytes (pure: no device is touched), and
/// notes for the caller.
pub fn crypt_table(req: &Activation<'_>, data: DataDevice) -> Result<(CryptTable, Vec<String>), CryptError> {
    let seg = req.segment;
    let name = req.name.as_str();
    let err = |why: String| CryptError::Segment { name: name.to_owned(), segment: seg.id, why };
    if seg.kind != SegmentKind::Crypt {
        return Err(err(format!("its type is {:?}, not crypt", seg.kind)));
    }
    let cipher = seg.encryption.0.as_str();
    if cipher.is_empty() || cipher.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(err(format!("cipher {cipher:?} cannot go into a table")));
    }
    let sector_size = seg.sector_size;
    if !(SECTOR as u32..=MAX_SECTOR_SIZE).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Err(err(format!(
            "encryption sector size {sector_size} is not a power of two from 512 to 4096"
        )));
    }
    if !seg.offset.is_multiple_of(SECTOR) {
        return Err(err(format!("offset {} is not a multiple of 512", seg.offset)));
    }
    let too_small = |why: String| CryptError::TooSmall {
        name: name.to_owned(),
        device: req.data_device.to_owned(),
        size: data.size,
        segment: seg.id,
        why,
    };
    let sector = u64::from(sector_size);
    let mut notes = Vec::new();
    let length = match seg.size {
        SegmentSize::Dynamic => {
            let avail = data
                .size
                .checked_sub(seg.offset)
                .ok_or_else(|| too_small(format!("the payload starts at byte {}", seg.offset)))?;
            let tail = avail % sector;
            if tail != 0 {
                notes.push(format!(
                    "the last {tail} bytes of {} are not a whole {sector_size}-byte sector and are not mapped",
                    req.data_device.display()
                ));
            }
            avail - tail
        }
        SegmentSize::Bytes(n) => {
            if !n.is_multiple_of(sector) {
                return Err(err(format!("size {n} is not a multiple of its sector size {sector_size}")));
            }
            if seg.offset.checked_add(n).is_none_or(|end| end > data.size) {
                let end = u128::from(seg.offset) + u128::from(n);
                return Err(too_small(format!("the payload spans bytes {} to {end}", seg.offset)));
            }
            n
        }
    };
    if length == 0 {
        return Err(too_small(format!("no whole sector after the payload offset {}", seg.offset)));
    }
    let persistent = |flag: &str| req.header.flags.iter().any(|f| f == flag);
    let options = CryptOptions {
        allow_discards: req.allow_discards || persistent("allow-discards"),
        same_cpu_crypt: persistent("same-cpu-crypt"),
        submit_from_crypt_cpus: persistent("submit-from-crypt-cpus"),
        no_read_workqueue: req.no_read_workqueue || persistent("no-read-workqueue"),
        no_write_workqueue: req.no_write_workqueue || persistent("no-write-workqueue"),
        high_priority: persistent("high_priority"),
        sector_size,
    };
    let table = CryptTable {
        cipher: cipher.to_owned(),
        iv_offset: seg.iv_tweak,
        device: data.dev,
        offset_sectors: seg.offset / SECTOR,
        length_sectors: length / SECTOR,
        options,
    };
    Ok((table, notes))
}

/// Whether a cipher takes no key (cryptsetup's `crypt_is_cipher_null`).
pub fn is_cipher_null(cipher: &str) -> bool {
    cipher.contains("cipher_null") || cipher == "null"
}

/// The dm UUID cryptsetup gives the mapping: `CRYPT-LUKS2-<uuid without dashes>-<name>`, cut at
/// device-mapper's 128 bytes as cryptsetup's snprintf cuts it.
pub fn dm_uuid(header: &Header, name: &MapName) -> Result<String, CryptError> {
    let mut uuid = header.dm_uuid(name.as_str());
    if uuid.len() > dm::ioctl::UUID_LEN - 1 {
        // ASCII only (checked below), so any byte is a char boundary; checked anyway.
        let cut = (0..=dm::ioctl::UUID_LEN - 1).rev().find(|i| uuid.is_char_boundary(*i)).unwrap_or(0);
        uuid.truncate(cut);
    }
    if !uuid.chars().all(|c| c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)) {
        return Err(CryptError::Uuid { name: name.to_string(), uuid });
    }
    Ok(uuid)
}

/// The id of the digest that verifies `segment`'s key (cryptsetup's `LUKS2_digest_by_segment`;
/// LUKS1's one digest).
fn digest_of(header: &Header, segment: &Segment) -> u32 {
    header.digests.iter().find(|d| d.segments.contains(&segment.id)).map_or(0, |d| d.id)
}

/// Where the live system keeps what activation touches besides the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub dev: PathBuf,
    pub sys: PathBuf,
    pub run_udev: PathBuf,
}

impl Roots {
    pub fn system() -> Roots {
        Roots {
            dev: PathBuf::from("/dev"),
            sys: PathBuf::from("/sys"),
            run_udev: PathBuf::from(udev_db::RUN_UDEV),
        }
    }
}

/// Opens the volume of `req` as /dev/mapper/NAME.
pub fn activate(req: &Activation<'_>) -> Result<Active, CryptError> {
    activate_in(&Roots::system(), req)
}

/// [`activate`] with /dev, /sys and /run/udev elsewhere.
pub fn activate_in(roots: &Roots, req: &Activation<'_>) -> Result<Active, CryptError> {
    let name = req.name;
    let uuid = dm_uuid(req.header, name)?;
    let data = data_device(roots, req)?;
    let (table, mut notes) = crypt_table(req, data)?;
    let null = is_cipher_null(&table.cipher);
    if !null && req.volume_key.is_empty() {
        return Err(CryptError::NoKey { name: name.to_string(), cipher: table.cipher });
    }
    let mut read_only = req.read_only;
    if data.read_only && !read_only {
        read_only = true;
        notes.push(format!("{} is read-only, so is the mapping", req.data_device.display()));
    }

    let ctl = Control::open()?;
    if let Some(info) = ctl.status(name.as_str())? {
        if info.uuid != uuid {
            return Err(CryptError::NameTaken { name: name.to_string(), uuid: info.uuid, expected: uuid });
        }
        if info.live_table {
            return already_active(roots, &ctl, name, info, notes);
        }
        // Ours (same dm UUID) but without a table: what a failed activation that could not
        // clean up leaves. Made again from scratch.
        notes.push(format!("removed a leftover mapping {name} without a table"));
        ctl.remove(name.as_str())?;
    }
    let crypt_version = ctl.target_versions().ok().and_then(|v| v.into_iter().find(|t| t.name == "crypt"));
    let info = ctl.create(name.as_str(), &uuid, read_only)?;
    let dev = info.dev;
    let made = (|| {
        let key_in_keyring =
            load(&ctl, req, &table, null, crypt_version.map(|t| t.version), read_only, &mut notes)?;
        ctl.resume(name.as_str())?;
        publish(roots, name, &uuid, dev)?;
        Ok(key_in_keyring)
    })();
    match made {
        Ok(key_in_keyring) => Ok(Active {
            name: name.clone(),
            dev,
            node: roots.dev.join("mapper").join(name.as_str()),
            uuid,
            key_in_keyring,
            read_only,
            state: ActiveState::Created,
            notes,
        }),
        Err(e) => {
            if let Err(r) = remove_retrying(&ctl, name.as_str()) {
                log::warn!("{name}: cannot remove the half-made mapping after the failure: {r}");
            }
            unpublish(roots, name, &uuid, dev);
            Err(e)
        }
    }
}

/// Loads the table, with the key in the keyring when it may be and the kernel takes it, else
/// in hex; the keyring key is dropped once the kernel has its copy. True when the table names
/// a keyring key.
fn load(
    ctl: &Control,
    req: &Activation<'_>,
    table: &CryptTable,
    null: bool,
    crypt_version: Option<[u32; 3]>,
    read_only: bool,
    notes: &mut Vec<String>,
) -> Result<bool, CryptError> {
    let name = req.name.as_str();
    let key_len = if null { 0 } else { req.volume_key.len() };
    let target = |params: &Secret| -> Result<(), DmError> {
        let t = Target {
            start: 0,
            length: table.length_sectors,
            target_type: "crypt",
            params: params.as_bytes(),
        };
        ctl.load_table(name, &[t], read_only)
    };
    if null {
        target(&table.params(KeyArg::Null)).map_err(|e| no_target(ctl, name, table, key_len, e))?;
        return Ok(false);
    }
    if req.use_keyring {
        let too_old = crypt_version.filter(|v| *v < KEYRING_SINCE);
        if let Some([a, b, c]) = too_old {
            notes.push(format!("dm-crypt {a}.{b}.{c} takes no keyring keys: the key is in the table"));
        } else {
            let desc = keyring::description(&req.header.uuid, digest_of(req.header, req.segment));
            match LogonKey::add(&desc, req.volume_key) {
                Err(e) => {
                    notes.push(format!("the kernel keyring refused the key ({e}): the key is in the table"))
                }
                Ok(key) => {
                    let loaded = target(&table.params(KeyArg::Keyring(&key.table_reference())));
                    if let Err(e) = key.remove() {
                        log::warn!("{name}: {e}");
                    }
                    match loaded {
                        Ok(()) => return Ok(true),
                        Err(e) if keyring_refusal(&e) => notes
                            .push(format!("dm-crypt refused the keyring key ({e}): the key is in the table")),
                        Err(e) => return Err(no_target(ctl, name, table, key_len, e)),
                    }
                }
            }
        }
    }
    target(&table.params(KeyArg::Hex(req.volume_key)))
        .map_err(|e| no_target(ctl, name, table, key_len, e))?;
    Ok(false)
}

/// A failed table load, explained: the kernel has no crypt target (EINVAL, "unknown target
/// type"), cannot make the cipher (ENOENT from the crypto API), or dm-crypt refused the table
/// (EINVAL: a key size the cipher does not take, an option the kernel does not know).
fn no_target(ctl: &Control, name: &str, table: &CryptTable, key_bytes: usize, e: DmError) -> CryptError {
    let (name, cipher) = (name.to_owned(), table.cipher.clone());
    match e.errno() {
        Some(Errno::NOENT) => CryptError::CipherUnavailable { name, cipher, source: e },
        Some(Errno::INVAL)
            if !ctl.target_versions().map(|v| v.iter().any(|t| t.name == "crypt")).unwrap_or(true) =>
        {
            CryptError::NoCryptTarget { name, cipher, source: e }
        }
        Some(Errno::INVAL) => CryptError::TableRefused { name, cipher, key_bytes, source: e },
        _ => CryptError::Dm(e),
    }
}

/// Whether a table load that named a keyring key failed because of the key, so that the hex
/// key may still work: dm-crypt answers EINVAL for a key reference it cannot parse (a kernel
/// without keyring keys reads it as a bad hex key) or a size mismatch, and the keyring's
/// errors when the lookup fails. A missing cipher or a busy device would fail again.
fn keyring_refusal(e: &DmError) -> bool {
    const REFUSALS: [Errno; 7] = [
        Errno::INVAL,
        Errno::NOKEY,
        Errno::KEYEXPIRED,
        Errno::KEYREVOKED,
        Errno::KEYREJECTED,
        Errno::ACCESS,
        Errno::PERM,
    ];
    e.errno().is_some_and(|n| REFUSALS.contains(&n))
}

/// The device of `req` as the kernel sees it.
fn data_device(roots: &Roots, req: &Activation<'_>) -> Result<DataDevice, CryptError> {
    let name = req.name.to_string();
    let path = req.data_device;
    let io_err = |source| CryptError::DataDevice { name: name.clone(), device: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.file_type().is_block_device() {
        return Err(CryptError::NotBlockDevice { name, device: path.to_owned() });
    }
    let dev = DevNum::from_rdev(meta.rdev());
    let size = File::open(path).and_then(|mut f| f.seek(SeekFrom::End(0))).map_err(io_err)?;
    let ro = std::fs::read_to_string(roots.sys.join("dev/block").join(dev.to_string()).join("ro"));
    Ok(DataDevice { dev, size, read_only: ro.is_ok_and(|t| t.trim() == "1") })
}

/// A mapping found with our dm UUID and a live table: its links and udev entry are made sure of.
fn already_active(
    roots: &Roots,
    ctl: &Control,
    name: &MapName,
    info: DeviceInfo,
    notes: Vec<String>,
) -> Result<Active, CryptError> {
    let key_in_keyring =
        ctl.table(name.as_str())?.and_then(|(_, lines)| lines.into_iter().next()).is_some_and(|l| {
            parse_crypt_params(&l.params).is_some_and(|c| matches!(c.key, KeyField::Keyring { .. }))
        });
    publish(roots, name, &info.uuid, info.dev)?;
    Ok(Active {
        name: name.clone(),
        dev: info.dev,
        node: roots.dev.join("mapper").join(name.as_str()),
        uuid: info.uuid,
        key_in_keyring,
        read_only: info.read_only,
        state: ActiveState::AlreadyActive,
        notes,
    })
}

/// /dev/mapper/NAME and the other links, and udev's database entry.
fn publish(roots: &Roots, name: &MapName, uuid: &str, dev: DevNum) -> Result<(), CryptError> {
    let links = udev_db::dm_links(name.as_str(), uuid);
    let kname = udev_db::kernel_name(&roots.sys, dev);
    let node_err = |path: PathBuf| move |source| CryptError::Node { name: name.to_string(), path, source };
    udev_db::link_nodes(&roots.dev, &kname, dev, &links).map_err(node_err(roots.dev.join("mapper")))?;
    let text = udev_db::dm_db_text(&udev_db::DmEntry {
        name: name.as_str(),
        uuid,
        links: &links,
        initialized_usec: udev_db::monotonic_usec(),
    });
    udev_db::write_db(&roots.run_udev, dev, &text).map_err(node_err(roots.run_udev.join("data")))?;
    Ok(())
}

/// Undoes [`publish`] as far as it got; what cannot be removed is only logged.
fn unpublish(roots: &Roots, name: &MapName, uuid: &str, dev: DevNum) {
    let links = udev_db::dm_links(name.as_str(), uuid);
    let kname = udev_db::kernel_name(&roots.sys, dev);
    if let Err(e) = udev_db::unlink_nodes(&roots.dev, &kname, dev, &links) {
        log::warn!("{name}: cannot remove its links: {e}");
    }
    if let Err(e) = udev_db::remove_db(&roots.run_udev, dev) {
        log::warn!("{name}: cannot remove its udev database entry: {e}");
    }
}

/// DM_DEV_REMOVE, again while the device is busy.
fn remove_retrying(ctl: &Control, name: &str) -> Result<(), CryptError> {
    let mut tries = 1;
    loop {
        match ctl.remove(name) {
            Ok(()) => return Ok(()),
            Err(e) if e.errno() == Some(Errno::BUSY) && tries < REMOVE_TRIES => {
                tries += 1;
                std::thread::sleep(REMOVE_PAUSE);
            }
            Err(e) if e.errno() == Some(Errno::BUSY) => {
                return Err(CryptError::Busy { name: name.to_owned(), tries, source: e });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Closes the dm-crypt mapping `name`: removes it (retrying while it is busy), then its links and
/// udev database entry. A mapping that is not dm-crypt's (its dm UUID does not start with
/// `CRYPT-`) is refused.
pub fn deactivate(name: &MapName) -> Result<(), CryptError> {
    deactivate_in(&Roots::system(), name)
}

/// [`deactivate`] with /dev, /sys and /run/udev elsewhere.
pub fn deactivate_in(roots: &Roots, name: &MapName) -> Result<(), CryptError> {
    let ctl = Control::open()?;
    let info = ctl.status(name.as_str())?.ok_or_else(|| CryptError::NotActive(name.to_string()))?;
    if !info.uuid.starts_with("CRYPT-") {
        return Err(CryptError::NotCrypt { name: name.to_string(), uuid: info.uuid });
    }
    // Read before the removal takes the sysfs entry away.
    let kname = udev_db::kernel_name(&roots.sys, info.dev);
    remove_retrying(&ctl, name.as_str())?;
    let links = udev_db::dm_links(name.as_str(), &info.uuid);
    let node_err = |path: PathBuf| move |source| CryptError::Node { name: name.to_string(), path, source };
    udev_db::unlink_nodes(&roots.dev, &kname, info.dev, &links)
        .map_err(node_err(roots.dev.join("mapper")))?;
    udev_db::remove_db(&roots.run_udev, info.dev).map_err(node_err(roots.run_udev.join("data")))?;
    Ok(())
}

/// How a live crypt table gives its key (the hex key itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KeyField {
    Keyring { bytes: usize, key_type: String, description: String },
    Hex { bytes: usize },
    None,
}

/// A live crypt table line, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CryptLine {
    pub cipher: String,
    pub key: KeyField,
    pub iv_offset: u64,
    /// The device as the kernel prints it (`major:minor`).
    pub device: String,
    pub offset_sectors: u64,
    pub options: Vec<String>,
}

/// One target of a live table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusTarget {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    /// For a crypt target.
    pub crypt: Option<CryptLine>,
}

/// What [`status`] tells about a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub info: DeviceInfo,
    pub targets: Vec<StatusTarget>,
}

/// The mapping `name` and its live table, without key material; `None` when there is none.
pub fn status(name: &MapName) -> Result<Option<Status>, CryptError> {
    let ctl = Control::open()?;
    let Some((info, lines)) = ctl.table(name.as_str())? else { return Ok(None) };
    let targets = lines
        .into_iter()
        .map(|l| StatusTarget {
            start: l.start,
            length: l.length,
            crypt: if l.target_type == "crypt" { parse_crypt_params(&l.params) } else { None },
            target_type: l.target_type,
        })
        .collect();
    Ok(Some(Status { info, targets }))
}

/// Parses a crypt table line as dm-crypt prints it; the key field is only measured.
pub fn parse_crypt_params(params: &Secret) -> Option<CryptLine> {
    let mut words = params.as_bytes().split(|&b| b == b' ').filter(|w| !w.is_empty());
    let text = |w: &[u8]| std::str::from_utf8(w).ok().map(str::to_owned);
    let cipher = text(words.next()?)?;
    let key_word = words.next()?;
    let key = match key_word {
        b"-" => KeyField::None,
        [b':', rest @ ..] => {
            let rest = std::str::from_utf8(rest).ok()?;
            let (bytes, rest) = rest.split_once(':')?;
            let (key_type, description) = rest.split_once(':')?;
            KeyField::Keyring {
                bytes: bytes.parse().ok()?,
                key_type: key_type.to_owned(),
                description: description.to_owned(),
            }
        }
        hex => KeyField::Hex { bytes: hex.len() / 2 },
    };
    let iv_offset = text(words.next()?)?.parse().ok()?;
    let device = text(words.next()?)?;
    let offset_sectors = text(words.next()?)?.parse().ok()?;
    let options = match words.next() {
        None => Vec::new(),
        Some(n) => {
            let n: usize = text(n)?.parse().ok()?;
            let opts: Option<Vec<String>> = words.by_ref().take(n).map(text).collect();
            opts.filter(|o| o.len() == n)?
        }
    };
    if words.next().is_some() {
        return None;
    }
    Some(CryptLine { cipher, key, iv_offset, device, offset_sectors, options })
}

/// The dm UUID prefix of a LUKS version (what `cryptsetup status` reads the type from).
pub fn uuid_prefix(version: Version) -> &'static str {
    match version {
        Version::Luks1 => "CRYPT-LUKS1-",
        Version::Luks2 => "CRYPT-LUKS2-",
    }
}

#[cfg(test)]
mod tests {
    use luks::model::{CipherSpec, Digest, HashAlg, HeaderCopy};

    use super::*;

    const UUID: &str = "5af75f63-c7ac-40f7-85fc-370c4994d14f";

    fn segment(offset: u64, size: SegmentSize, sector_size: u32, cipher: &str) -> Segment {
        Segment {
            id: 0,
            kind: SegmentKind::Crypt,
            offset,
            size,
            iv_tweak: 0,
            encryption: CipherSpec(cipher.into()),
            sector_size,
            flags: Vec::new(),
        }
    }

    fn header(version: Version, flags: &[&str], digest_id: u32) -> Header {
        Header {
            version,
            uuid: UUID.into(),
            label: None,
            subsystem: None,
            seqid: 0,
            copy: HeaderCopy::Primary,
            metadata_size: 16384,
            keyslots_size: 0,
            keyslots: Vec::new(),
            segments: Vec::new(),
            digests: vec![Digest {
                id: digest_id,
                keyslots: vec![0],
                segments: vec![0],
                hash: HashAlg::Sha256,
                iterations: 1000,
                salt: Vec::new(),
                digest: Vec::new(),
            }],
            tokens: Vec::new(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            mandatory_requirements: Vec::new(),
        }
    }

    fn text(s: &Secret) -> String {
        String::from_utf8(s.as_bytes().to_vec()).unwrap()
    }

    const MIB: u64 = 1 << 20;
    const VDA: DataDevice =
        DataDevice { dev: DevNum { major: 254, minor: 0 }, size: 64 * MIB, read_only: false };

    #[test]
    fn names_are_what_device_mapper_and_udev_take_unchanged() {
        for ok in ["cryptroot", "luks-5af75f63-c7ac", "a", "x.y:z=1@h#2+_", &"n".repeat(127)] {
            assert_eq!(MapName::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(MapName::new(""), Err(NameError::Empty));
        assert_eq!(MapName::new(&"n".repeat(128)), Err(NameError::TooLong("n".repeat(128))));
        for reserved in [".", "..", "control"] {
            assert_eq!(MapName::new(reserved), Err(NameError::Reserved(reserved.into())));
        }
        for (bad, ch) in [("a/b", '/'), ("my root", ' '), ("x\ny", '\n'), ("é", 'é'), ("a\0", '\0')] {
            assert_eq!(MapName::new(bad), Err(NameError::Char { name: bad.into(), ch }));
        }
        assert_eq!(
            MapName::new("a b").unwrap_err().to_string(),
            "the mapping name \"a b\" contains ' ': use letters, digits and # + - . : = @ _"
        );
        assert!("cryptroot".parse::<MapName>().is_ok());
    }

    #[test]
    fn the_table_is_cryptsetups_for_a_plain_luks2_volume() {
        let name = MapName::new("cryptroot").unwrap();
        let h = header(Version::Luks2, &[], 0);
        let seg = segment(16 * MIB, SegmentSize::Dynamic, 512, "aes-xts-plain64");
        let key = Secret::from_slice(&[0xab; 64]);
        let req = Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda"));
        let (t, notes) = crypt_table(&req, VDA).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(t.length_sectors, 48 * 2048);
        let reference = ":64:logon:cryptsetup:5af75f63-c7ac-40f7-85fc-370c4994d14f-d0";
        // As `dmsetup table --showkeys` shows cryptsetup 2.6's mapping of such a volume.
        assert_eq!(
            text(&t.params(KeyArg::Keyring(reference))),
            format!("aes-xts-plain64 {reference} 0 254:0 32768")
        );
        let hex = text(&t.params(KeyArg::Hex(&key)));
        assert_eq!(hex, format!("aes-xts-plain64 {} 0 254:0 32768", "ab".repeat(64)));
        assert_eq!(text(&t.params(KeyArg::Null)), "aes-xts-plain64 - 0 254:0 32768");
    }

    #[test]
    fn options_follow_cryptsetups_order_and_sector_size_only_when_not_512() {
        let name = MapName::new("c").unwrap();
        let h = header(Version::Luks2, &[], 0);
        let seg = segment(16 * MIB, SegmentSize::Dynamic, 4096, "aes-xts-plain64");
        let key = Secret::from_slice(&[1; 32]);
        let mut req = Activation::new(&name, &h, &seg, &key, Path::new("/dev/vdb"));
        req.allow_discards = true;
        req.no_read_workqueue = true;
        req.no_write_workqueue = true;
        let (t, _) = crypt_table(&req, VDA).unwrap();
        // No iv_large_sectors: cryptsetup sets it for BITLK only; LUKS2's IVs count 512-byte sectors.
        assert_eq!(
            text(&t.params(KeyArg::Null)),
            "aes-xts-plain64 - 0 254:0 32768 4 allow_discards no_read_workqueue no_write_workqueue sector_size:4096"
        );
        // The header's persistent flags count as asked for; unknown ones are ignored.
        let h = header(
            Version::Luks2,
            &["same-cpu-crypt", "no-write-workqueue", "no-journal", "high_priority"],
            0,
        );
        let req = Activation::new(&name, &h, &seg, &key, Path::new("/dev/vdb"));
        let (t, _) = crypt_table(&req, VDA).unwrap();
        assert_eq!(
            t.options.words(),
            ["same_cpu_crypt", "no_write_workqueue", "high_priority", "sector_size:4096"]
        );
    }

    #[test]
    fn the_length_covers_whole_encryption_sectors_of_the_segment() {
        let name = MapName::new("c").unwrap();
        let h = header(Version::Luks2, &[], 0);
        let key = Secret::from_slice(&[1; 32]);
        // 64 MiB + 1 KiB device, 4 KiB sectors: the odd kilobyte is left out, and said so.
        let dev = DataDevice { size: 64 * MIB + 1024, ..VDA };
        let seg = segment(16 * MIB, SegmentSize::Dynamic, 4096, "aes-xts-plain64");
        let (t, notes) =
            crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), dev).unwrap();
        assert_eq!(t.length_sectors, 48 * 2048);
        assert!(notes[0].contains("the last 1024 bytes of /dev/vda"), "{notes:?}");
        // A fixed size is taken as it is, if the device holds it.
        let seg = segment(2 * MIB, SegmentSize::Bytes(8 * MIB), 512, "aes-xts-plain64");
        let (t, _) =
            crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), VDA).unwrap();
        assert_eq!((t.offset_sectors, t.length_sectors), (4096, 8 * 2048));
        let seg = segment(60 * MIB, SegmentSize::Bytes(8 * MIB), 512, "aes-xts-plain64");
        let e = crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), VDA).unwrap_err();
        assert!(e.to_string().ends_with("(the payload spans bytes 62914560 to 71303168)"), "{e}");
        // Offset and size whose sum overflows: refused, not wrapped around.
        let seg = segment(u64::MAX - 511, SegmentSize::Bytes(u64::MAX - 511), 512, "aes-xts-plain64");
        let e = crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), VDA).unwrap_err();
        assert!(matches!(e, CryptError::TooSmall { .. }), "{e}");
        // A payload offset beyond the device, or leaving less than a sector.
        for offset in [65 * MIB, 64 * MIB] {
            let seg = segment(offset, SegmentSize::Dynamic, 512, "aes-xts-plain64");
            let e =
                crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), VDA).unwrap_err();
            assert!(
                e.to_string().starts_with("c: /dev/vda (67108864 bytes) is too small for segment 0"),
                "{e}"
            );
        }
    }

    #[test]
    fn segments_that_cannot_be_mapped_are_refused_with_the_reason() {
        let name = MapName::new("c").unwrap();
        let h = header(Version::Luks2, &[], 0);
        let key = Secret::from_slice(&[1; 32]);
        let check = |seg: Segment, want: &str| {
            let e =
                crypt_table(&Activation::new(&name, &h, &seg, &key, Path::new("/dev/vda")), VDA).unwrap_err();
            assert_eq!(e.to_string(), format!("c: segment 0: {want}"));
        };
        check(
            segment(16 * MIB + 100, SegmentSize::Dynamic, 512, "aes-xts-plain64"),
            "offset 16777316 is not a multiple of 512",
        );
        check(
            segment(16 * MIB, SegmentSize::Dynamic, 1000, "aes-xts-plain64"),
            "encryption sector size 1000 is not a power of two from 512 to 4096",
        );
        check(
            segment(16 * MIB, SegmentSize::Dynamic, 8192, "aes-xts-plain64"),
            "encryption sector size 8192 is not a power of two from 512 to 4096",
        );
        check(
            segment(16 * MIB, SegmentSize::Dynamic, 512, "aes xts"),
            "cipher \"aes xts\" cannot go into a table",
        );
        check(
            segment(0, SegmentSize::Bytes(4608), 4096, "aes-xts-plain64"),
            "size 4608 is not a multiple of its sector size 4096",
        );
        let mut linear = segment(16 * MIB, SegmentSize::Dynamic, 512, "");
        linear.kind = SegmentKind::Linear;
        check(linear, "its type is Linear, not crypt");
    }

    #[test]
    fn the_dm_uuid_is_cryptsetups_cut_at_128_bytes() {
        let h1 = header(Version::Luks1, &[], 0);
        let name = MapName::new("cryptroot").unwrap();
        assert_eq!(dm_uuid(&h1, &name).unwrap(), "CRYPT-LUKS1-5af75f63c7ac40f785fc370c4994d14f-cryptroot");
        let long = MapName::new(&"n".repeat(127)).unwrap();
        let u = dm_uuid(&header(Version::Luks2, &[], 0), &long).unwrap();
        assert_eq!(u.len(), 128);
        assert!(u.starts_with("CRYPT-LUKS2-5af75f63c7ac40f785fc370c4994d14f-nnn"));
        let mut odd = header(Version::Luks2, &[], 0);
        odd.uuid = "5af75f63 c7ac".into();
        assert!(matches!(dm_uuid(&odd, &name), Err(CryptError::Uuid { .. })));
        assert_eq!(uuid_prefix(Version::Luks2), "CRYPT-LUKS2-");
    }

    #[test]
    fn the_keyring_key_is_named_after_the_segments_digest() {
        let seg = segment(0, SegmentSize::Dynamic, 512, "aes-xts-plain64");
        assert_eq!(digest_of(&header(Version::Luks2, &[], 3), &seg), 3);
        let mut h = header(Version::Luks2, &[], 3);
        h.digests[0].segments.clear();
        assert_eq!(digest_of(&h, &seg), 0);
        assert!(
            is_cipher_null("cipher_null-ecb") && is_cipher_null("null") && !is_cipher_null("aes-xts-plain64")
        );
    }

    #[test]
    fn a_live_line_is_parsed_without_keeping_the_key() {
        let keyring = Secret::from_slice(
            b"aes-xts-plain64 :64:logon:cryptsetup:5af75f63-c7ac-40f7-85fc-370c4994d14f-d0 0 254:0 32768 \
              3 allow_discards no_read_workqueue sector_size:4096",
        );
        let l = parse_crypt_params(&keyring).unwrap();
        assert_eq!(
            l.key,
            KeyField::Keyring {
                bytes: 64,
                key_type: "logon".into(),
                description: "cryptsetup:5af75f63-c7ac-40f7-85fc-370c4994d14f-d0".into()
            }
        );
        assert_eq!((l.iv_offset, l.device.as_str(), l.offset_sectors), (0, "254:0", 32768));
        assert_eq!(l.options, ["allow_discards", "no_read_workqueue", "sector_size:4096"]);
        let hex =
            Secret::from_slice(format!("aes-cbc-essiv:sha256 {} 7 8:16 4096", "0f".repeat(32)).as_bytes());
        let l = parse_crypt_params(&hex).unwrap();
        assert_eq!(l.key, KeyField::Hex { bytes: 32 });
        assert!(!format!("{l:?}").contains("0f0f"), "the hex key is not kept");
        assert_eq!((l.cipher.as_str(), l.iv_offset, l.options.len()), ("aes-cbc-essiv:sha256", 7, 0));
        assert_eq!(parse_crypt_params(&Secret::from_slice(b"aes - 0")), None);
        assert_eq!(parse_crypt_params(&Secret::from_slice(b"aes - 0 8:1 0 2 only_one")), None);
        assert_eq!(parse_crypt_params(&Secret::from_slice(b"aes - 0 8:1 0 1 one extra")), None);
    }

    #[test]
    fn only_a_refused_key_falls_back_to_the_hex_key() {
        let e = |errno| DmError::Ioctl { cmd: "DM_TABLE_LOAD", name: "c".into(), errno };
        for refused in [Errno::INVAL, Errno::NOKEY, Errno::KEYREVOKED, Errno::PERM] {
            assert!(keyring_refusal(&e(refused)), "{refused:?}");
        }
        // A missing cipher (ENOENT), a busy or vanished device would fail the same way again.
        for other in [Errno::NOENT, Errno::BUSY, Errno::NXIO, Errno::NODEV] {
            assert!(!keyring_refusal(&e(other)), "{other:?}");
        }
    }

    #[test]
    fn errors_never_show_the_key() {
        let name = MapName::new("c").unwrap();
        let h = header(Version::Luks2, &[], 0);
        let seg = segment(0, SegmentSize::Dynamic, 512, "aes-xts-plain64");
        let key = Secret::from_slice(&[0xee; 32]);
        let req = Activation::new(&name, &h, &seg, &key, Path::new("/nonexistent/lethe-test-device"));
        let e = activate_in(&Roots::system(), &req).unwrap_err();
        assert!(matches!(e, CryptError::DataDevice { .. }), "{e}");
        assert!(!format!("{e} {e:?} {req:?}").contains("eeee"));
        let req = Activation::new(&name, &h, &seg, &key, Path::new("/dev/null"));
        assert!(matches!(activate_in(&Roots::system(), &req), Err(CryptError::NotBlockDevice { .. })));
    }
}
