//! Superblock probing: which file system or container a block device holds, with its UUID and label.
//!
//! The rules follow libblkid's low-level probe (`blkid -p`), so a UUID or label matches what udev
//! would have linked under /dev/disk/by-*: the same magic numbers and sanity checks (checksums
//! included), the same order (LUKS first, then vfat, ext, zfs_member, btrfs), the same refusal of a
//! device that carries more than one file-system signature, and the same text formatting.
//!
//! Everything here is pure parsing over a [`Source`]: a device is read only in bounded regions,
//! and short or hostile input yields `None`, never a panic.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

// ---------------------------------------------------------------------------------------------
// Results

/// A file system or container recognised on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Luks1,
    Luks2,
    Btrfs,
    Ext2,
    Ext3,
    Ext4,
    /// ext4 with the "test file system" flag: blkid names it `ext4dev`.
    Ext4Dev,
    Vfat,
    /// One member device of a ZFS pool.
    ZfsMember,
}

impl FsKind {
    /// The name `blkid` prints as TYPE (and `mount -t` understands, where it is a file system).
    pub fn fs_type(self) -> &'static str {
        match self {
            FsKind::Luks1 | FsKind::Luks2 => "crypto_LUKS",
            FsKind::Btrfs => "btrfs",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Ext4Dev => "ext4dev",
            FsKind::Vfat => "vfat",
            FsKind::ZfsMember => "zfs_member",
        }
    }

    /// Whether several devices legitimately share one UUID (multi-device btrfs, pool members).
    pub fn is_multi_device(self) -> bool {
        matches!(self, FsKind::Btrfs | FsKind::ZfsMember)
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fs_type())
    }
}

/// What a superblock says about its device, formatted as `blkid -p -o export` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: FsKind,
    /// blkid's UUID: dashed lowercase for ext and btrfs, `XXXX-XXXX` for vfat, the header's
    /// string for LUKS, the pool GUID in decimal for a ZFS member.
    pub uuid: Option<String>,
    /// blkid's LABEL (for ZFS the pool name). Bytes that are not UTF-8 are replaced.
    pub label: Option<String>,
    /// blkid's UUID_SUB: the btrfs device UUID, or the ZFS vdev GUID in decimal.
    pub uuid_sub: Option<String>,
    /// blkid's VERSION: "1"/"2" for LUKS, "rev.minor" for ext, FAT12/16/32, the ZFS pool version.
    pub version: Option<String>,
}

impl Probe {
    fn new(kind: FsKind) -> Self {
        Probe { kind, uuid: None, label: None, uuid_sub: None, version: None }
    }
}

impl fmt::Display for Probe {
    /// `ext4 UUID=... LABEL=nix`, for console messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.fs_type())?;
        if let Some(u) = &self.uuid {
            write!(f, " UUID={u}")?;
        }
        if let Some(l) = &self.label {
            write!(f, " LABEL={l}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sources

/// Random access to the bytes of a device, or of a sample of one (tests, fuzzing).
pub trait Source {
    /// The device size in bytes, when known. Checks that need it (minimum sizes, the ZFS labels
    /// and the GPT copy at the end of the device) are skipped when it is not.
    fn size(&self) -> Option<u64>;

    /// Up to `len` bytes from `offset`: fewer only where the device (or sample) ends.
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// The largest region any prober asks for; a reader never allocates more for one read.
pub const MAX_READ: usize = 1 << 20;

/// Bytes in memory: the head of a device of unknown size, or a whole device.
#[derive(Debug, Clone, Copy)]
pub struct SliceSource<'a> {
    bytes: &'a [u8],
    size: Option<u64>,
}

impl<'a> SliceSource<'a> {
    /// The first bytes of a device whose size is unknown.
    pub fn head(bytes: &'a [u8]) -> Self {
        SliceSource { bytes, size: None }
    }

    /// A whole device held in memory.
    pub fn whole(bytes: &'a [u8]) -> Self {
        SliceSource { bytes, size: u64::try_from(bytes.len()).ok() }
    }
}

impl Source for SliceSource<'_> {
    fn size(&self) -> Option<u64> {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let rest = usize::try_from(offset).ok().and_then(|o| self.bytes.get(o..)).unwrap_or_default();
        Ok(rest.iter().take(len.min(MAX_READ)).copied().collect())
    }
}

/// A seekable reader (a block device, an image file); its size is where its end is.
#[derive(Debug)]
pub struct ReaderSource<R> {
    inner: R,
    size: u64,
}

impl<R: Read + Seek> ReaderSource<R> {
    pub fn new(mut inner: R) -> io::Result<Self> {
        let size = inner.seek(SeekFrom::End(0))?;
        Ok(ReaderSource { inner, size })
    }
}

impl<R: Read + Seek> Source for ReaderSource<R> {
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        if offset >= self.size {
            return Ok(buf);
        }
        let len = u64::try_from(len.min(MAX_READ)).unwrap_or(0).min(self.size - offset);
        self.inner.seek(SeekFrom::Start(offset))?;
        (&mut self.inner).take(len).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Reads exactly `len` bytes, or `None` when the device ends first (blkid then sees no signature).
fn region(src: &mut (impl Source + ?Sized), offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    let buf = src.read_at(offset, len)?;
    Ok((buf.len() == len).then_some(buf))
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Probes a device or image: the one signature it carries, or `None` (nothing known, or several
/// signatures that contradict each other, which blkid refuses too).
pub fn probe(r: &mut (impl Read + Seek)) -> io::Result<Option<Probe>> {
    probe_source(&mut ReaderSource::new(r)?)
}

/// [`probe`] over the first bytes of a device (size unknown): the pure core, for fuzzing.
pub fn probe_bytes(head: &[u8]) -> Option<Probe> {
    probe_source(&mut SliceSource::head(head)).ok().flatten()
}

/// [`probe`] over any [`Source`].
pub fn probe_source(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    let mut all = probe_all(src)?;
    Ok(if all.len() == 1 { all.pop() } else { None })
}

/// Every signature found, in blkid's order. A LUKS header ends the search (what is behind it is
/// ciphertext); more than one entry means the device is ambiguous.
pub fn probe_all(src: &mut (impl Source + ?Sized)) -> io::Result<Vec<Probe>> {
    if let Some(p) = luks(src)? {
        return Ok(vec![p]);
    }
    let mut found = Vec::new();
    for prober in [vfat, ext, zfs, btrfs] {
        if let Some(p) = prober(src)? {
            found.push(p);
            // blkid takes the first hit on floppy-sized devices without looking for conflicts.
            if is_tiny(src) {
                break;
            }
        }
    }
    Ok(found)
}

/// blkid's "tiny" device: up to a 1.44 MB floppy.
fn is_tiny(src: &(impl Source + ?Sized)) -> bool {
    src.size().is_some_and(|s| s <= 1440 * 1024)
}

// ---------------------------------------------------------------------------------------------
// Byte helpers: every read is checked, so garbage and short input end in `None`.

fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_le_bytes)
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    array(b, off).map(u32::from_le_bytes)
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    array(b, off).map(u64::from_le_bytes)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_be_bytes)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    array(b, off).map(u32::from_be_bytes)
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    array(b, off).map(u64::from_be_bytes)
}

fn byte(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

fn field(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// C's isspace(), which blkid uses to trim values.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A text field as blkid stores it: up to the first NUL, trailing white space removed, absent
/// when nothing is left.
fn text(raw: &[u8]) -> Option<String> {
    let s = raw.split(|&b| b == 0).next().unwrap_or_default();
    let end = s.iter().rposition(|&b| !is_c_space(b))?;
    s.get(..=end).map(|t| String::from_utf8_lossy(t).into_owned())
}

/// A big-endian 16-byte UUID in the usual dashed lowercase form; blkid omits an all-zero one.
fn uuid(raw: [u8; 16]) -> Option<String> {
    (raw != [0; 16]).then(|| dashed(raw))
}

fn dashed(b: [u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// An EFI GUID (little-endian first three fields) in the same form as [`uuid`].
fn guid(raw: [u8; 16]) -> String {
    let mut b = raw;
    b[..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    dashed(b)
}

// ---------------------------------------------------------------------------------------------
// Checksums (table-driven, tables built at compile time)

const fn crc_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc_table(0x82F6_3B78);
static CRC32_TABLE: [u32; 256] = crc_table(0xEDB8_8320);

/// The raw reflected CRC update, without the customary final inversion (ext4 stores it so).
fn crc_update(table: &[u32; 256], crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |c, &b| table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

/// Standard CRC-32C (Castagnoli), as btrfs stores it.
fn crc32c(data: &[u8]) -> u32 {
    !crc_update(&CRC32C_TABLE, !0, data)
}

/// Standard CRC-32 (IEEE), as GPT stores it.
fn crc32(data: &[u8]) -> u32 {
    !crc_update(&CRC32_TABLE, !0, data)
}

// ---------------------------------------------------------------------------------------------
// LUKS

const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
/// Both header versions fit in the first 512 bytes (LUKS2's binary header is exactly that).
const LUKS_HEADER_LEN: usize = 512;

/// LUKS1 and LUKS2 primary headers. Like `blkid -p` (a "safe" probe), a device whose primary
/// header is gone is not recognised by its secondary LUKS2 header.
fn luks(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    let Some(h) = region(src, 0, LUKS_HEADER_LEN)? else { return Ok(None) };
    Ok(luks_header(&h))
}

fn luks_header(h: &[u8]) -> Option<Probe> {
    if field(h, 0, LUKS_MAGIC.len())? != LUKS_MAGIC {
        return None;
    }
    // Both versions keep the UUID string at 168..208; LUKS2 adds a label at 24..72 and says
    // where it sits (a primary header must say 0).
    let mut p = match be16(h, 6)? {
        1 => Probe::new(FsKind::Luks1),
        2 if be64(h, 256)? == 0 => {
            let mut p = Probe::new(FsKind::Luks2);
            p.label = text(field(h, 24, 48)?);
            p
        }
        _ => return None,
    };
    p.uuid = text(field(h, 168, 40)?);
    p.version = Some(if p.kind == FsKind::Luks1 { "1" } else { "2" }.to_owned());
    Some(p)
}

// ---------------------------------------------------------------------------------------------
// ext2/3/4

const EXT_SB_OFFSET: u64 = 1024;
const EXT_SB_LEN: usize = 1024;

const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const EXT_RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
/// What ext2 and ext3 understand; anything beyond makes it ext4 (libblkid's *_SUPP masks).
const EXT2_RO_COMPAT_SUPP: u32 = 0x0007;
const EXT2_INCOMPAT_SUPP: u32 = 0x0012;
const EXT3_RO_COMPAT_SUPP: u32 = 0x0007;
const EXT3_INCOMPAT_SUPP: u32 = 0x0016;
const EXT_FLAGS_TEST_FILESYS: u32 = 0x0004;

fn ext(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    let Some(sb) = region(src, EXT_SB_OFFSET, EXT_SB_LEN)? else { return Ok(None) };
    Ok(ext_superblock(&sb))
}

fn ext_superblock(sb: &[u8]) -> Option<Probe> {
    if field(sb, 0x38, 2)? != [0x53, 0xEF] {
        return None;
    }
    let compat = le32(sb, 0x5C)?;
    let incompat = le32(sb, 0x60)?;
    let ro_compat = le32(sb, 0x64)?;
    if ro_compat & EXT_RO_COMPAT_METADATA_CSUM != 0 {
        // ext4 checksums its superblock (raw CRC-32C seeded with ~0, not inverted).
        if crc_update(&CRC32C_TABLE, !0, field(sb, 0, 0x3FC)?) != le32(sb, 0x3FC)? {
            return None;
        }
    } else if le32(sb, 0x18)? >= 256 {
        // Without a checksum, an absurd block size marks a false positive.
        return None;
    }
    let kind = ext_kind(compat, incompat, ro_compat, le32(sb, 0x160)?)?;
    let mut p = Probe::new(kind);
    if byte(sb, 0x78)? != 0 {
        p.label = text(field(sb, 0x78, 16)?);
    }
    p.uuid = uuid(array(sb, 0x68)?);
    p.version = Some(format!("{}.{}", le32(sb, 0x4C)?, le16(sb, 0x3E)?));
    Some(p)
}

/// blkid's ext4dev/ext4/ext3/ext2 tests, in its order; an external journal device is none.
fn ext_kind(compat: u32, incompat: u32, ro_compat: u32, flags: u32) -> Option<FsKind> {
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return None;
    }
    let test_fs = flags & EXT_FLAGS_TEST_FILESYS != 0;
    let beyond_ext3 = ro_compat & !EXT3_RO_COMPAT_SUPP != 0 || incompat & !EXT3_INCOMPAT_SUPP != 0;
    let beyond_ext2 = ro_compat & !EXT2_RO_COMPAT_SUPP != 0 || incompat & !EXT2_INCOMPAT_SUPP != 0;
    let journal = compat & EXT_COMPAT_HAS_JOURNAL != 0;
    if test_fs {
        Some(FsKind::Ext4Dev)
    } else if beyond_ext3 {
        Some(FsKind::Ext4)
    } else if journal {
        Some(FsKind::Ext3)
    } else if !beyond_ext2 {
        Some(FsKind::Ext2)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// vfat

const FAT12_MAX: u64 = 0xFF4;
const FAT16_MAX: u64 = 0xFFF4;
const FAT32_MAX: u64 = 0x0FFF_FFF6;
const FAT_DIR_ENTRY: usize = 32;
/// The largest piece of a FAT directory read at once: a label is almost always the first entry.
const FAT_DIR_READ_MAX: usize = 64 * 1024;
/// FAT32 root-directory clusters followed at most (blkid's loop bound).
const FAT32_ROOT_HOPS: u32 = 99;

/// A FAT boot sector's geometry, once it passed blkid's sanity checks.
#[derive(Debug, Clone, Copy)]
struct FatGeometry {
    sector_size: u64,
    cluster_sectors: u64,
    reserved: u64,
    /// Sectors of all FAT copies together.
    fat_size: u64,
    cluster_count: u64,
    /// FAT12/16: sectors per FAT in the classic BPB; zero on FAT32.
    fat_length16: u16,
    fat32_length: u32,
}

/// The magic strings blkid looks for; without one, only the jump byte or 55AA identify it.
fn fat_has_strong_magic(bs: &[u8]) -> bool {
    let at = |off: usize, m: &[u8]| field(bs, off, m.len()) == Some(m);
    at(0x52, b"MSWIN")
        || at(0x52, b"FAT32   ")
        || at(0x36, b"MSDOS")
        || at(0x36, b"FAT16   ")
        || at(0x36, b"FAT12   ")
        || at(0x36, b"FAT     ")
}

fn fat_has_weak_magic(bs: &[u8]) -> bool {
    // blkid also accepts a jump instruction (0xEB, 0xE9) as the magic, but then still wants the
    // 55AA signature (old floppies), so the signature decides; and OS/2's pseudo-BPB on JFS or
    // HPFS must not pass for FAT.
    let sig = field(bs, 0x1FE, 2) == Some(&[0x55, 0xAA][..]);
    let fs_name = field(bs, 0x36, 8);
    sig && fs_name != Some(b"JFS     ") && fs_name != Some(b"HPFS    ")
}

/// BitLocker volumes begin like FAT boot sectors.
fn is_bitlocker(bs: &[u8]) -> bool {
    let head = field(bs, 0, 11);
    head == Some(b"\xeb\x52\x90-FVE-FS-") || head == Some(b"\xeb\x58\x90-FVE-FS-")
}

/// blkid's fat_valid_superblock(): the boot sector of a FAT file system, not an MBR or another
/// file system's pseudo-BPB. `bs` is the first 512 bytes.
fn fat_geometry(bs: &[u8]) -> Option<FatGeometry> {
    if !fat_has_strong_magic(bs) && !fat_has_weak_magic(bs) {
        return None;
    }
    let cluster_sectors = byte(bs, 0x0D)?;
    let reserved = le16(bs, 0x0E)?;
    let fats = byte(bs, 0x10)?;
    let media = byte(bs, 0x15)?;
    let sector_size = le16(bs, 0x0B)?;
    if fats == 0 || reserved == 0 || !(media >= 0xF8 || media == 0xF0) {
        return None;
    }
    if !cluster_sectors.is_power_of_two() || !sector_size.is_power_of_two() {
        return None;
    }
    if !(512..=4096).contains(&sector_size) {
        return None;
    }
    let dir_entries = u64::from(le16(bs, 0x11)?);
    let sectors = match le16(bs, 0x13)? {
        0 => u64::from(le32(bs, 0x20)?),
        n => u64::from(n),
    };
    let fat_length16 = le16(bs, 0x16)?;
    let fat32_length = le32(bs, 0x24)?;
    let fat_length = if fat_length16 == 0 { u64::from(fat32_length) } else { u64::from(fat_length16) };
    let fat_size = fat_length * u64::from(fats);
    let sector_size = u64::from(sector_size);
    let dir_size = (dir_entries * FAT_DIR_ENTRY as u64).div_ceil(sector_size);
    let data_sectors = sectors.checked_sub(u64::from(reserved) + fat_size + dir_size)?;
    let cluster_count = data_sectors / u64::from(cluster_sectors);
    let max = if fat_length16 == 0 && fat32_length != 0 { FAT32_MAX } else { FAT16_MAX };
    if cluster_count > max || is_bitlocker(bs) {
        return None;
    }
    Some(FatGeometry {
        sector_size,
        cluster_sectors: u64::from(cluster_sectors),
        reserved: u64::from(reserved),
        fat_size,
        cluster_count,
        fat_length16,
        fat32_length,
    })
}

fn vfat(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    let Some(bs) = region(src, 0, 512)? else { return Ok(None) };
    let Some(g) = fat_geometry(&bs) else { return Ok(None) };
    let mut p = Probe::new(FsKind::Vfat);
    let serial: Option<[u8; 4]>;
    if g.fat_length16 != 0 {
        let root_start = (g.reserved + g.fat_size) * g.sector_size;
        let entries = usize::from(le16(&bs, 0x11).unwrap_or(0));
        p.label = fat_dir_label(src, root_start, entries)?;
        serial = match byte(&bs, 0x26) {
            Some(0x28 | 0x29) => array(&bs, 0x27),
            _ => None,
        };
        p.version = if g.cluster_count < FAT12_MAX {
            Some("FAT12".to_owned())
        } else if g.cluster_count < FAT16_MAX {
            Some("FAT16".to_owned())
        } else {
            None
        };
    } else if g.fat32_length != 0 {
        p.label = fat32_root_label(src, &bs, g)?;
        serial = array(&bs, 0x43);
        p.version = Some("FAT32".to_owned());
        if !fat32_fsinfo_ok(src, &bs, g)? {
            return Ok(None);
        }
    } else {
        serial = None;
    }
    // blkid takes LABEL from the root directory's volume-label entry only; the boot sector's
    // copy is its separate LABEL_FATBOOT.
    p.uuid =
        serial.filter(|s| *s != [0; 4]).map(|s| format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0]));
    Ok(Some(p))
}

/// Follows the FAT32 root directory's cluster chain looking for the volume label.
fn fat32_root_label(
    src: &mut (impl Source + ?Sized),
    bs: &[u8],
    g: FatGeometry,
) -> io::Result<Option<String>> {
    let cluster_bytes = g.cluster_sectors * g.sector_size;
    let entries_per_cluster = usize::try_from(cluster_bytes).unwrap_or(0) / FAT_DIR_ENTRY;
    let fat_entries = u64::from(g.fat32_length) * g.sector_size / 4;
    let data_start = g.reserved + g.fat_size;
    let mut next = u64::from(le32(bs, 0x2C).unwrap_or(0));
    for _ in 0..FAT32_ROOT_HOPS {
        // Clusters 0 and 1 do not exist; 0 also ends the chain.
        if next < 2 || next >= fat_entries {
            break;
        }
        let offset = (data_start + (next - 2) * g.cluster_sectors) * g.sector_size;
        if let Some(label) = fat_dir_label(src, offset, entries_per_cluster)? {
            return Ok(Some(label));
        }
        let fat_entry = g.reserved * g.sector_size + next * 4;
        let Some(e) = region(src, fat_entry, 4)? else { break };
        next = u64::from(le32(&e, 0).unwrap_or(0) & 0x0FFF_FFFF);
    }
    Ok(None)
}

/// FAT32's FSInfo sector must carry its signatures, or be all zero where they go.
fn fat32_fsinfo_ok(src: &mut (impl Source + ?Sized), bs: &[u8], g: FatGeometry) -> io::Result<bool> {
    let sector = u64::from(le16(bs, 0x30).unwrap_or(0));
    if sector == 0 {
        return Ok(true);
    }
    let Some(fsinfo) = region(src, sector * g.sector_size, 512)? else { return Ok(false) };
    let sig1 = field(&fsinfo, 0, 4);
    let sig2 = field(&fsinfo, 484, 4);
    let ok1 = [b"RRaA", b"RRdA", b"\0\0\0\0"].iter().any(|m| sig1 == Some(&m[..]));
    let ok2 = [b"rrAa", b"\0\0\0\0"].iter().any(|m| sig2 == Some(&m[..]));
    Ok(ok1 && ok2)
}

/// The volume-label entry among the first `entries` entries of a directory at `offset`.
fn fat_dir_label(
    src: &mut (impl Source + ?Sized),
    offset: u64,
    entries: usize,
) -> io::Result<Option<String>> {
    let len = entries.saturating_mul(FAT_DIR_ENTRY).min(FAT_DIR_READ_MAX);
    let dir = src.read_at(offset, len)?;
    Ok(fat_label_in(&dir))
}

fn fat_label_in(dir: &[u8]) -> Option<String> {
    const ATTR_VOLUME_ID: u8 = 0x08;
    const ATTR_DIR: u8 = 0x10;
    const ATTR_LONG_NAME: u8 = 0x0F;
    for ent in dir.chunks_exact(FAT_DIR_ENTRY) {
        let first = byte(ent, 0)?;
        if first == 0 {
            return None; // end of directory
        }
        let attr = byte(ent, 11)?;
        let has_cluster = le16(ent, 20)? != 0 || le16(ent, 26)? != 0;
        if first == 0xE5 || has_cluster || attr & 0x3F == ATTR_LONG_NAME {
            continue; // deleted entry, a file or directory, or a long-name piece
        }
        if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
            let mut name: [u8; 11] = array(ent, 0)?;
            // 0x05 stands for a leading 0xE5, which would otherwise mean "deleted".
            if name[0] == 0x05 {
                name[0] = 0xE5;
            }
            return text(&name);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// btrfs

const BTRFS_SB_OFFSET: u64 = 64 * 1024;
const BTRFS_SB_LEN: usize = 4096;
const BTRFS_MIN_SIZE: u64 = 1024 * 1024;

fn btrfs(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    if src.size().is_some_and(|s| s < BTRFS_MIN_SIZE) {
        return Ok(None);
    }
    let Some(sb) = region(src, BTRFS_SB_OFFSET, BTRFS_SB_LEN)? else { return Ok(None) };
    Ok(btrfs_superblock(&sb))
}

fn btrfs_superblock(sb: &[u8]) -> Option<Probe> {
    if field(sb, 0x40, 8)? != b"_BHRfS_M" {
        return None;
    }
    // Checksum type 0 is CRC-32C over everything after the checksum field. blkid also verifies
    // xxhash64 and sha256; those (rare) superblocks are taken on the magic alone here.
    if le16(sb, 0xC4)? == 0 && crc32c(sb.get(0x20..)?) != le32(sb, 0)? {
        return None;
    }
    if le32(sb, 0x90)? == 0 {
        return None; // no sector size: not a usable superblock
    }
    let mut p = Probe::new(FsKind::Btrfs);
    if byte(sb, 0x12B)? != 0 {
        p.label = text(field(sb, 0x12B, 256)?);
    }
    p.uuid = uuid(array(sb, 0x20)?);
    p.uuid_sub = uuid(array(sb, 0x10B)?);
    Some(p)
}

// ---------------------------------------------------------------------------------------------
// ZFS

const ZFS_LABEL_SIZE: u64 = 256 * 1024;
/// The vdev_phys_t (the XDR-encoded nvlist) starts 16 KiB into each label and is 112 KiB long.
const ZFS_PHYS_OFFSET: u64 = 16 * 1024;
pub const ZFS_PHYS_SIZE: usize = 112 * 1024;
const ZFS_MIN_SIZE: u64 = 64 * 1024 * 1024;

/// The four vdev labels: two at the start, two at the (256 KiB-aligned) end.
fn zfs_label_offsets(size: Option<u64>) -> Vec<u64> {
    let mut v = vec![0, ZFS_LABEL_SIZE];
    if let Some(end) = size.map(|s| s - s % ZFS_LABEL_SIZE)
        && let Some(l2) = end.checked_sub(2 * ZFS_LABEL_SIZE)
    {
        v.extend([l2, l2 + ZFS_LABEL_SIZE]);
    }
    v
}

fn zfs(src: &mut (impl Source + ?Sized)) -> io::Result<Option<Probe>> {
    if src.size().is_some_and(|s| s < ZFS_MIN_SIZE) {
        return Ok(None);
    }
    for label in zfs_label_offsets(src.size()) {
        let phys_at = label + ZFS_PHYS_OFFSET;
        // Look at the 16-byte stream header before reading 112 KiB.
        let Some(head) = region(src, phys_at, 16)? else { continue };
        if nvlist_header_ok(&head) {
            let phys = src.read_at(phys_at, ZFS_PHYS_SIZE)?;
            if let Some(p) = zfs_label(&phys) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// An nvlist stream header: XDR encoding (1), an endianness byte of 0 or 1, and a non-empty
/// first pair.
fn nvlist_header_ok(h: &[u8]) -> bool {
    byte(h, 0) == Some(1) && byte(h, 1).is_some_and(|e| e <= 1) && be32(h, 12).is_some_and(|n| n != 0)
}

/// Reads a vdev label's nvlist (the `vdev_phys_t`: XDR stream header first). A label counts
/// when it names a vdev GUID and a plausible pool state, as blkid requires; UUID is then the
/// pool GUID in decimal and LABEL the pool name.
pub fn zfs_label(phys: &[u8]) -> Option<Probe> {
    const POOL_STATE_SPARE: u64 = 3;
    const POOL_STATE_L2CACHE: u64 = 4;
    const POOL_STATE_MAX: u64 = 7;
    if !nvlist_header_ok(phys) {
        return None;
    }
    let pairs = nvlist_top_level(phys.get(4..)?);
    let guid = pairs.uint64("guid").filter(|&g| g != 0)?;
    let state = pairs.uint64("state").filter(|&s| s <= POOL_STATE_MAX)?;
    let txg = pairs.uint64("txg").unwrap_or(0);
    if !(state == POOL_STATE_SPARE || state == POOL_STATE_L2CACHE || txg > 0) {
        return None;
    }
    let mut p = Probe::new(FsKind::ZfsMember);
    p.label = pairs.string("name").and_then(text);
    p.uuid = pairs.uint64("pool_guid").filter(|&g| g != 0).map(|g| g.to_string());
    p.uuid_sub = Some(guid.to_string());
    p.version = pairs.uint64("version").map(|v| v.to_string());
    Some(p)
}

/// The values of interest from the top level of an XDR nvlist (first occurrence of each name).
#[derive(Debug, Default)]
struct NvPairs<'a> {
    strings: BTreeMap<&'a [u8], &'a [u8]>,
    uint64s: BTreeMap<&'a [u8], u64>,
}

impl NvPairs<'_> {
    fn uint64(&self, name: &str) -> Option<u64> {
        self.uint64s.get(name.as_bytes()).copied()
    }

    fn string(&self, name: &str) -> Option<&[u8]> {
        self.strings.get(name.as_bytes()).copied()
    }
}

const NV_DATA_TYPE_UINT64: u32 = 8;
const NV_DATA_TYPE_STRING: u32 = 9;
/// Encoded size, decoded size, name length, type, element count: the smallest possible pair.
const NV_PAIR_MIN: usize = 20;

/// Decodes the top level of an XDR nvlist (`nvl_version`, `nvl_nvflag`, then the pairs up to the
/// two-zero terminator). Each pair records its own encoded size, embedded nvlists included, so
/// other types are stepped over whole. Malformed input ends the walk with what was read so far.
fn nvlist_top_level(list: &[u8]) -> NvPairs<'_> {
    let mut out = NvPairs::default();
    let mut pos: usize = 8; // nvl_version, nvl_nvflag
    while let Some(encoded) = be32(list, pos).and_then(|n| usize::try_from(n).ok()) {
        let Some(pair) = pos.checked_add(encoded).and_then(|end| list.get(pos..end)) else { break };
        if encoded < NV_PAIR_MIN {
            break; // the terminator (0) or garbage: either way nothing more to read
        }
        nvpair_into(pair, &mut out);
        pos += encoded;
    }
    out
}

/// Stores one pair's value if it is a string or a uint64; `pair` spans its encoded size.
fn nvpair_into<'a>(pair: &'a [u8], out: &mut NvPairs<'a>) -> Option<()> {
    let name_len = usize::try_from(be32(pair, 8)?).ok()?;
    let name = field(pair, 12, name_len)?;
    let after_name = 12usize.checked_add(name_len.checked_next_multiple_of(4)?)?;
    let data_type = be32(pair, after_name)?;
    let value_at = after_name + 8; // type, element count
    match data_type {
        NV_DATA_TYPE_UINT64 => {
            let v = be64(pair, value_at)?;
            out.uint64s.entry(name).or_insert(v);
        }
        NV_DATA_TYPE_STRING => {
            let len = usize::try_from(be32(pair, value_at)?).ok()?;
            let s = field(pair, value_at + 4, len)?;
            out.strings.entry(name).or_insert(s);
        }
        _ => {}
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------
// Partition tables (for PARTUUID)

/// Which partition table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Gpt,
    /// MBR, with logical partitions from 5 on.
    Dos,
}

/// One partition as the kernel numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    /// Byte offset and length on the disk.
    pub start: u64,
    pub size: u64,
    /// blkid's PARTUUID: the GPT unique partition GUID, or `SSSSSSSS-NN` (disk signature,
    /// partition number) on MBR; absent on an MBR disk without a signature.
    pub partuuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub kind: TableKind,
    /// blkid's PTUUID: the GPT disk GUID or the MBR signature.
    pub id: Option<String>,
    pub partitions: Vec<Partition>,
}

impl PartitionTable {
    /// The PARTUUID of partition `number` (1-based, as in /sys/block/*/*/partition).
    pub fn partuuid(&self, number: u32) -> Option<&str> {
        self.partitions.iter().find(|p| p.number == number)?.partuuid.as_deref()
    }
}

/// The partition table of a disk with logical sectors of `sector_size` bytes: GPT (behind a
/// protective MBR; the backup header at the end when the primary is damaged), else MBR.
pub fn partition_table(
    src: &mut (impl Source + ?Sized),
    sector_size: u32,
) -> io::Result<Option<PartitionTable>> {
    if !(512..=65536).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Ok(None);
    }
    let Some(mbr) = region(src, 0, 512)? else { return Ok(None) };
    if field(&mbr, 510, 2) != Some(&[0x55, 0xAA][..]) {
        return Ok(None);
    }
    if mbr_entries(&mbr).any(|e| e.sys_ind == MBR_GPT_PROTECTIVE) {
        return gpt(src, u64::from(sector_size));
    }
    dos(src, &mbr, u64::from(sector_size))
}

/// [`partition_table`] over the first bytes of a disk (size unknown, so no backup GPT).
pub fn partition_table_bytes(disk_head: &[u8], sector_size: u32) -> Option<PartitionTable> {
    partition_table(&mut SliceSource::head(disk_head), sector_size).ok().flatten()
}

/// Partition number -> PARTUUID, from the first bytes of a disk.
pub fn partuuids(disk_head: &[u8], sector_size: u32) -> BTreeMap<u32, String> {
    let parts = partition_table_bytes(disk_head, sector_size).map(|t| t.partitions).unwrap_or_default();
    parts.into_iter().filter_map(|p| Some((p.number, p.partuuid?))).collect()
}

const MBR_GPT_PROTECTIVE: u8 = 0xEE;
/// Partition limit, as the kernel's; also bounds the walk down an EBR chain.
const MAX_PARTITIONS: usize = 256;
/// GPT entry arrays beyond this (8192 entries of 128 bytes) are refused rather than read.
const GPT_ENTRIES_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    boot_ind: u8,
    sys_ind: u8,
    start_lba: u32,
    sectors: u32,
}

impl MbrEntry {
    fn is_extended(self) -> bool {
        matches!(self.sys_ind, 0x05 | 0x0F | 0x85)
    }
}

/// The four entries of an MBR or EBR sector (zeroed where the sector is short).
fn mbr_entries(sector: &[u8]) -> impl Iterator<Item = MbrEntry> + '_ {
    (0..4).map(move |i| {
        let at = 446 + 16 * i;
        MbrEntry {
            boot_ind: byte(sector, at).unwrap_or(0),
            sys_ind: byte(sector, at + 4).unwrap_or(0),
            start_lba: le32(sector, at + 8).unwrap_or(0),
            sectors: le32(sector, at + 12).unwrap_or(0),
        }
    })
}

fn gpt(src: &mut (impl Source + ?Sized), ss: u64) -> io::Result<Option<PartitionTable>> {
    let last_lba = match src.size() {
        Some(size) if size < ss => return Ok(None),
        Some(size) => Some(size / ss - 1),
        None => None,
    };
    let mut found = gpt_header(src, ss, 1, last_lba)?;
    if found.is_none()
        && let Some(last) = last_lba
    {
        found = gpt_header(src, ss, last, last_lba)?;
    }
    let Some((hdr, entries)) = found else { return Ok(None) };
    let partitions = entries
        .chunks_exact(128)
        .zip(1u32..)
        .filter_map(|(e, number)| gpt_partition(e, number, &hdr, ss))
        .collect();
    Ok(Some(PartitionTable { kind: TableKind::Gpt, id: Some(guid(hdr.disk_guid)), partitions }))
}

#[derive(Debug, Clone, Copy)]
struct GptHeader {
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
}

/// A GPT header at `lba` that passes blkid's checks (CRCs, position, usable range), with its
/// entry array.
fn gpt_header(
    src: &mut (impl Source + ?Sized),
    ss: u64,
    lba: u64,
    last_lba: Option<u64>,
) -> io::Result<Option<(GptHeader, Vec<u8>)>> {
    let Some(offset) = lba.checked_mul(ss) else { return Ok(None) };
    let Some(h) = region(src, offset, usize::try_from(ss).unwrap_or(0))? else { return Ok(None) };
    let Some((hdr, entries_lba, entries_len, entries_crc)) = gpt_header_fields(&h, lba, last_lba) else {
        return Ok(None);
    };
    let Some(entries_at) = entries_lba.checked_mul(ss) else { return Ok(None) };
    let Some(entries) = region(src, entries_at, entries_len)? else { return Ok(None) };
    Ok((crc32(&entries) == entries_crc).then_some((hdr, entries)))
}

/// Checks a header sector; returns it with where its entries are, their length and CRC.
fn gpt_header_fields(h: &[u8], lba: u64, last_lba: Option<u64>) -> Option<(GptHeader, u64, usize, u32)> {
    if field(h, 0, 8)? != b"EFI PART" {
        return None;
    }
    let header_size = usize::try_from(le32(h, 12)?).ok()?;
    if header_size < 92 || header_size > h.len() {
        return None;
    }
    let mut copy = field(h, 0, header_size)?.to_vec();
    copy.get_mut(16..20)?.fill(0); // the CRC covers the header with its own field zeroed
    if crc32(&copy) != le32(h, 16)? || le64(h, 24)? != lba {
        return None;
    }
    let first_usable = le64(h, 40)?;
    let last_usable = le64(h, 48)?;
    if last_usable < first_usable || last_lba.is_some_and(|l| first_usable > l || last_usable > l) {
        return None;
    }
    if first_usable < lba && lba < last_usable {
        return None; // a header inside the usable area is not one
    }
    let count = u64::from(le32(h, 80)?);
    let entry_size = le32(h, 84)?;
    let total = count * u64::from(entry_size);
    if entry_size != 128 || total == 0 || total > GPT_ENTRIES_MAX {
        return None;
    }
    let hdr = GptHeader { first_usable, last_usable, disk_guid: array(h, 56)? };
    Some((hdr, le64(h, 72)?, usize::try_from(total).ok()?, le32(h, 88)?))
}

/// One GPT entry: unused entries and those outside the usable area keep their number but are
/// not partitions.
fn gpt_partition(e: &[u8], number: u32, hdr: &GptHeader, ss: u64) -> Option<Partition> {
    if array::<16>(e, 0)? == [0; 16] {
        return None;
    }
    let start = le64(e, 32)?;
    let end = le64(e, 40)?;
    if end < start || start < hdr.first_usable || end > hdr.last_usable {
        return None;
    }
    Some(Partition {
        number,
        start: start.checked_mul(ss)?,
        size: (end - start + 1).checked_mul(ss)?,
        partuuid: Some(guid(array(e, 16)?)),
    })
}

fn dos(src: &mut (impl Source + ?Sized), mbr: &[u8], ss: u64) -> io::Result<Option<PartitionTable>> {
    // AIX disks, and boot sectors of FAT, exFAT or NTFS (which also end in 55AA), are not MBRs.
    if field(mbr, 0, 4) == Some(b"\xC9\xC2\xD4\xC1")
        || mbr_entries(mbr).any(|e| e.boot_ind != 0 && e.boot_ind != 0x80)
        || fat_geometry(mbr).is_some()
        || matches!(field(mbr, 3, 8), Some(b"EXFAT   " | b"NTFS    "))
    {
        return Ok(None);
    }
    let id = le32(mbr, 440).filter(|&i| i != 0).map(|i| format!("{i:08x}"));
    let mut table = PartitionTable { kind: TableKind::Dos, id, partitions: Vec::new() };
    let primaries: Vec<MbrEntry> = mbr_entries(mbr).collect();
    for (e, number) in primaries.iter().zip(1u32..) {
        // An empty slot still uses up its number.
        if e.sectors != 0 {
            table.push(number, u64::from(e.start_lba) * ss, u64::from(e.sectors) * ss);
        }
    }
    let mut next_number = 5;
    for e in primaries.iter().filter(|e| e.sectors != 0 && e.is_extended()) {
        let area = (u64::from(e.start_lba) * ss, u64::from(e.sectors) * ss);
        logical_partitions(src, area, ss, &mut table, &mut next_number)?;
    }
    Ok(Some(table))
}

impl PartitionTable {
    fn push(&mut self, number: u32, start: u64, size: u64) {
        let partuuid = self.id.as_ref().map(|id| format!("{id}-{number:02x}"));
        self.partitions.push(Partition { number, start, size, partuuid });
    }
}

/// Walks the EBR chain of an extended partition (`area`: byte start and length) the way blkid
/// and the kernel do: data partitions must lie inside the area, links must move forward.
fn logical_partitions(
    src: &mut (impl Source + ?Sized),
    (ex_start, ex_size): (u64, u64),
    ss: u64,
    table: &mut PartitionTable,
    next_number: &mut u32,
) -> io::Result<()> {
    if ex_start == 0 {
        return Ok(());
    }
    let ex_end = ex_start.saturating_add(ex_size);
    let mut starts: BTreeSet<u64> = table.partitions.iter().map(|p| p.start).collect();
    let (mut cur_start, mut cur_size) = (ex_start, ex_size);
    let mut without_data = 0;
    while table.partitions.len() < MAX_PARTITIONS {
        without_data += 1;
        if without_data > 100 {
            break;
        }
        let Some(ebr) = region(src, cur_start, 512)? else { break };
        if field(&ebr, 510, 2) != Some(&[0x55, 0xAA][..]) {
            break;
        }
        let entries: Vec<MbrEntry> = mbr_entries(&ebr).collect();
        for (i, e) in entries.iter().enumerate() {
            let (start, size) = (u64::from(e.start_lba) * ss, u64::from(e.sectors) * ss);
            let abs = cur_start.saturating_add(start);
            let outside = abs < ex_start || abs.saturating_add(size) > ex_end;
            // The 3rd and 4th entries often hold garbage; they count only if they fit.
            let garbage = i >= 2 && start.saturating_add(size) > cur_size;
            if size == 0 || e.is_extended() || outside || garbage || !starts.insert(abs) {
                continue;
            }
            table.push(*next_number, abs, size);
            *next_number += 1;
            without_data = 0;
        }
        let link = entries.iter().find(|e| e.sectors != 0 && e.is_extended() && e.start_lba != 0);
        let Some(link) = link else { break };
        let next = ex_start.saturating_add(u64::from(link.start_lba) * ss);
        let size = u64::from(link.sectors) * ss;
        if next.saturating_add(size) > ex_end || next <= cur_start {
            break;
        }
        (cur_start, cur_size) = (next, size);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_reference_vectors() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn text_fields_are_trimmed_like_blkid() {
        assert_eq!(text(b"nix\0garbage"), Some("nix".into()));
        assert_eq!(text(b"BOOT       "), Some("BOOT".into()));
        assert_eq!(text(b"  a b \t\n"), Some("  a b".into()));
        assert_eq!(text(b"   \0x"), None);
        assert_eq!(text(b""), None);
    }

    #[test]
    fn uuids_and_guids_are_formatted_like_blkid() {
        let raw =
            [0x0f, 0x6a, 0x8e, 0x2c, 0x3d, 0x5b, 0x4c, 0x1a, 0x9e, 0x7f, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
        assert_eq!(uuid(raw).as_deref(), Some("0f6a8e2c-3d5b-4c1a-9e7f-112233445566"));
        assert_eq!(uuid([0; 16]), None);
        assert_eq!(guid(raw), "2c8e6a0f-5b3d-1a4c-9e7f-112233445566");
    }

    /// Every prober and parser on garbage of every short length, and on a few fill patterns.
    #[test]
    fn garbage_and_short_input_is_nothing() {
        for fill in [0u8, 0xFF, 0x55, 0xAA] {
            let big = vec![fill; 300 * 1024];
            for len in (0..600).chain([1023, 1024, 2047, 2048, 65 * 1024, 69 * 1024, big.len()]) {
                let head = &big[..len];
                assert_eq!(probe_bytes(head), None, "fill {fill:#x} len {len}");
                assert_eq!(probe_source(&mut SliceSource::whole(head)).ok().flatten(), None);
                assert!(partuuids(head, 512).is_empty());
                assert_eq!(zfs_label(head), None);
            }
        }
    }

    fn luks2_header() -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[..6].copy_from_slice(LUKS_MAGIC);
        h[6..8].copy_from_slice(&2u16.to_be_bytes());
        h[24..33].copy_from_slice(b"cryptroot");
        h[168..204].copy_from_slice(b"5e1f0c8a-1111-4222-8333-444455556666");
        h
    }

    #[test]
    fn luks_headers_are_read_and_truncations_refused() {
        let h = luks2_header();
        let p = probe_bytes(&h).expect("luks2");
        assert_eq!(p.kind, FsKind::Luks2);
        assert_eq!(p.uuid.as_deref(), Some("5e1f0c8a-1111-4222-8333-444455556666"));
        assert_eq!(p.label.as_deref(), Some("cryptroot"));
        for len in 0..LUKS_HEADER_LEN {
            assert_eq!(probe_bytes(&h[..len]), None, "len {len}");
        }
        let mut moved = h.clone();
        moved[256..264].copy_from_slice(&16384u64.to_be_bytes());
        assert_eq!(probe_bytes(&moved), None, "a secondary header is not a primary one");
        let mut v3 = h;
        v3[6..8].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(probe_bytes(&v3), None);
    }

    fn ext4_superblock_image() -> Vec<u8> {
        let mut img = vec![0u8; 2048];
        let sb = &mut img[1024..];
        sb[0x38..0x3A].copy_from_slice(&[0x53, 0xEF]);
        sb[0x4C..0x50].copy_from_slice(&1u32.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&0x2C2u32.to_le_bytes()); // filetype, extents, 64bit, flex_bg
        sb[0x64..0x68].copy_from_slice(&EXT_RO_COMPAT_METADATA_CSUM.to_le_bytes());
        sb[0x68..0x78].copy_from_slice(&[7; 16]);
        sb[0x78..0x7B].copy_from_slice(b"nix");
        let csum = crc_update(&CRC32C_TABLE, !0, &sb[..0x3FC]);
        sb[0x3FC..].copy_from_slice(&csum.to_le_bytes());
        img
    }

    #[test]
    fn ext4_superblock_needs_its_checksum() {
        let img = ext4_superblock_image();
        let p = probe_bytes(&img).expect("ext4");
        assert_eq!((p.kind, p.label.as_deref()), (FsKind::Ext4, Some("nix")));
        assert_eq!(p.uuid.as_deref(), Some("07070707-0707-0707-0707-070707070707"));
        let mut bad = img.clone();
        bad[1024 + 0x79] ^= 1;
        assert_eq!(probe_bytes(&bad), None);
        for len in 0..img.len() {
            assert_eq!(probe_bytes(&img[..len]), None, "len {len}");
        }
    }

    #[test]
    fn ext_generations_follow_the_feature_flags() {
        assert_eq!(ext_kind(0, 0x2, 0x3, 0), Some(FsKind::Ext2));
        assert_eq!(ext_kind(EXT_COMPAT_HAS_JOURNAL, 0x2, 0x3, 0), Some(FsKind::Ext3));
        assert_eq!(ext_kind(EXT_COMPAT_HAS_JOURNAL, 0x42, 0x3, 0), Some(FsKind::Ext4));
        assert_eq!(ext_kind(0, 0x42, 0, 0), Some(FsKind::Ext4), "ext4 without a journal");
        assert_eq!(ext_kind(0, 0x42, 0, EXT_FLAGS_TEST_FILESYS), Some(FsKind::Ext4Dev));
        assert_eq!(ext_kind(EXT_COMPAT_HAS_JOURNAL, EXT_INCOMPAT_JOURNAL_DEV, 0, 0), None);
        assert_eq!(ext_kind(0, 0x4, 0, 0), None, "needs recovery but has no journal");
    }

    /// Appends one XDR nvpair (name, type, one element, value) with its encoded size.
    fn nvpair(out: &mut Vec<u8>, name: &str, data_type: u32, value: &[u8]) {
        let pad = |n: usize| n.next_multiple_of(4);
        let size = 4 + 4 + 4 + pad(name.len()) + 4 + 4 + value.len();
        out.extend((size as u32).to_be_bytes());
        out.extend((size as u32).to_be_bytes());
        out.extend((name.len() as u32).to_be_bytes());
        out.extend(name.as_bytes());
        out.resize(out.len() + pad(name.len()) - name.len(), 0);
        out.extend(data_type.to_be_bytes());
        out.extend(1u32.to_be_bytes());
        out.extend(value);
    }

    fn xdr_string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend(s.as_bytes());
        v.resize(4 + s.len().next_multiple_of(4), 0);
        v
    }

    fn zfs_phys() -> Vec<u8> {
        let mut v = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        nvpair(&mut v, "version", NV_DATA_TYPE_UINT64, &5000u64.to_be_bytes());
        nvpair(&mut v, "name", NV_DATA_TYPE_STRING, &xdr_string("rpool"));
        nvpair(&mut v, "state", NV_DATA_TYPE_UINT64, &0u64.to_be_bytes());
        nvpair(&mut v, "txg", NV_DATA_TYPE_UINT64, &4u64.to_be_bytes());
        nvpair(&mut v, "pool_guid", NV_DATA_TYPE_UINT64, &1234567890123u64.to_be_bytes());
        nvpair(&mut v, "weird", 99, &[0; 12]);
        nvpair(&mut v, "guid", NV_DATA_TYPE_UINT64, &42u64.to_be_bytes());
        v.extend([0; 8]);
        v
    }

    #[test]
    fn zfs_label_nvlist_is_decoded_and_truncations_tolerated() {
        let phys = zfs_phys();
        let p = zfs_label(&phys).expect("label");
        assert_eq!(p.kind, FsKind::ZfsMember);
        assert_eq!(p.uuid.as_deref(), Some("1234567890123"));
        assert_eq!(p.label.as_deref(), Some("rpool"));
        assert_eq!(p.uuid_sub.as_deref(), Some("42"));
        assert_eq!(p.version.as_deref(), Some("5000"));
        for len in 0..phys.len() {
            // The guid comes last: a truncation loses it, unless it cuts the terminator only.
            let expected = (len >= phys.len() - 8).then(|| p.clone());
            assert_eq!(zfs_label(&phys[..len]), expected, "len {len}");
        }
        let mut head = vec![0u8; ZFS_PHYS_OFFSET as usize];
        head.extend(&phys);
        assert_eq!(probe_bytes(&head), Some(p), "found at 16 KiB into label 0");
    }

    #[test]
    fn zfs_label_needs_a_plausible_state() {
        let mut phys = zfs_phys();
        let at = phys.windows(5).position(|w| w == b"state").expect("state") + 8 + 8;
        phys[at..at + 8].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(zfs_label(&phys), None);
    }

    fn gpt_disk() -> Vec<u8> {
        let mut d = vec![0u8; 34 * 512];
        d[446 + 4] = MBR_GPT_PROTECTIVE;
        d[446 + 12..446 + 16].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        d[510..512].copy_from_slice(&[0x55, 0xAA]);
        let e = &mut d[1024..1024 + 128];
        e[..16].copy_from_slice(&[1; 16]);
        e[16..32].copy_from_slice(&[0x0c, 0xc3, 0x9e, 0xf9, 0xab, 0xdd, 0x5f, 0x4f, 1, 2, 3, 4, 5, 6, 7, 8]);
        e[32..40].copy_from_slice(&2048u64.to_le_bytes());
        e[40..48].copy_from_slice(&4095u64.to_le_bytes());
        let entries_crc = crc32(&d[1024..1024 + 128 * 128]);
        let h = &mut d[512..1024];
        h[..8].copy_from_slice(b"EFI PART");
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&100_000u64.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn gpt_partuuids_are_mixed_endian_guids() {
        let d = gpt_disk();
        let t = partition_table_bytes(&d, 512).expect("gpt");
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(t.partuuid(1), Some("f99ec30c-ddab-4f5f-0102-030405060708"));
        assert_eq!(t.partitions[0].start, 2048 * 512);
        for len in 0..d.len() {
            assert_eq!(partition_table_bytes(&d[..len], 512), None, "len {len}");
        }
        let mut bad = d.clone();
        bad[1024 + 40] ^= 1;
        assert_eq!(partition_table_bytes(&bad, 512), None, "entry CRC");
    }

    #[test]
    fn mbr_partuuids_use_the_disk_signature_and_ebr_chain() {
        let mut d = vec![0u8; 4096 * 512];
        let entry = |d: &mut [u8], sector: usize, slot: usize, sys: u8, start: u32, len: u32| {
            let at = sector * 512 + 446 + 16 * slot;
            d[at + 4] = sys;
            d[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            d[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
            d[sector * 512 + 510..sector * 512 + 512].copy_from_slice(&[0x55, 0xAA]);
        };
        d[440..444].copy_from_slice(&0x0e2c_5a11u32.to_le_bytes());
        entry(&mut d, 0, 0, 0x83, 2048, 1000);
        entry(&mut d, 0, 2, 0x05, 3072, 1024);
        entry(&mut d, 3072, 0, 0x83, 1, 100); // logical 5
        entry(&mut d, 3072, 1, 0x05, 512, 512); // link to the next EBR
        entry(&mut d, 3584, 0, 0x83, 1, 100); // logical 6
        let t = partition_table_bytes(&d, 512).expect("dos");
        let numbers: Vec<(u32, Option<&str>)> =
            t.partitions.iter().map(|p| (p.number, p.partuuid.as_deref())).collect();
        assert_eq!(
            numbers,
            [
                (1, Some("0e2c5a11-01")),
                (3, Some("0e2c5a11-03")),
                (5, Some("0e2c5a11-05")),
                (6, Some("0e2c5a11-06"))
            ]
        );
        let mut looped = d.clone();
        looped[3584 * 512 + 446 + 16 + 4] = 0x05; // an EBR linking back to itself
        looped[3584 * 512 + 446 + 16 + 8..3584 * 512 + 446 + 16 + 12].copy_from_slice(&512u32.to_le_bytes());
        looped[3584 * 512 + 446 + 16 + 12..3584 * 512 + 446 + 16 + 16].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(partition_table_bytes(&looped, 512).map(|t| t.partitions.len()), Some(4));
    }
}
