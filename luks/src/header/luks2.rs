//! The LUKS2 binary headers: both copies with their checksums, which copy counts (as
//! cryptsetup's `LUKS2_disk_hdr_read` decides, without its repair), and the device size.

use std::io::{Read, Seek};

use super::HeaderError;
use super::bytes::{Fields, c_str, read_at};
use super::json::{self, JsonError};
use super::validate::{self, BIN_HDR_LEN, Metadata};
use crate::model::{HashAlg, Header, HeaderCopy, Version};

/// The magic of the secondary copy.
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";
/// Smallest and largest `hdr_size` (one copy: binary header and JSON area).
pub const HDR_SIZE_MIN: u64 = 0x4000;
pub const HDR_SIZE_MAX: u64 = 0x40_0000;
/// Where cryptsetup looks for the secondary copy when the primary tells nothing.
pub const SECONDARY_OFFSETS: [u64; 9] = validate::METADATA_SIZES;

/// Offset of the checksum in the binary header, and its room.
const CSUM_AT: usize = 448;
const CSUM_LEN: usize = 64;

/// What is wrong with one header copy; `offset` is where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("at offset {offset}: the device ends before the header does")]
    Truncated { offset: u64 },
    #[error("at offset {offset}: no {} magic", if *secondary { "SKUL\\xba\\xbe" } else { "LUKS\\xba\\xbe" })]
    Magic { offset: u64, secondary: bool },
    #[error("at offset {offset}: version {version}, not 2")]
    Version { offset: u64, version: u16 },
    #[error("at offset {offset}: the header says it lies at offset {recorded}")]
    Offset { offset: u64, recorded: u64 },
    #[error("at offset {offset}: header size {hdr_size} is not between 16 KiB and 4 MiB")]
    Size { offset: u64, hdr_size: u64 },
    #[error("at offset {offset}: a secondary header must lie at its header size, {hdr_size}")]
    SecondaryOffset { offset: u64, hdr_size: u64 },
    #[error("at offset {offset}: checksum algorithm {alg:?} is not supported")]
    ChecksumAlg { offset: u64, alg: String },
    #[error("at offset {offset}: {alg} checksum mismatch")]
    Checksum { offset: u64, alg: String },
    #[error("at offset {offset}: JSON metadata: {error}")]
    Json { offset: u64, error: JsonError },
    #[error("not found at any offset from 16 KiB to 4 MiB where it may lie")]
    NotFound,
}

/// Why a LUKS2 header is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Luks2Error {
    #[error("no valid header copy: primary {primary}; secondary {secondary}")]
    NoValidCopy { primary: CopyError, secondary: CopyError },
    #[error(
        "the {} copy (seqid {seqid}) needs {needed} bytes for metadata and keyslots, the device has {size}",
        copy_name(*copy)
    )]
    DeviceTooSmall { copy: HeaderCopy, seqid: u64, needed: u64, size: u64 },
}

fn copy_name(copy: HeaderCopy) -> &'static str {
    match copy {
        HeaderCopy::Primary => "primary",
        HeaderCopy::Secondary => "secondary",
    }
}

/// The fields of a binary header that passed its checks.
#[derive(Debug, Clone)]
struct Binary {
    hdr_size: u64,
    seqid: u64,
    label: String,
    uuid: String,
    subsystem: String,
}

/// A copy whose binary header and checksum are good (cryptsetup's `hdr_read_disk` succeeded);
/// its JSON may still be invalid.
struct RawCopy {
    offset: u64,
    binary: Binary,
    json: Result<Metadata, JsonError>,
}

/// A copy's outcome: good, or what is wrong with it.
type CopyRead = Result<RawCopy, CopyError>;

/// Reads both copies, picks the one cryptsetup would, and maps it into the model. `NotLuks`
/// when neither copy has even its magic.
pub(super) fn read<D: Read + Seek>(dev: &mut D, device_size: u64) -> Result<Header, HeaderError> {
    let primary = read_copy(dev, device_size, 0, false)?;
    let secondary = match &primary {
        // The primary's size tells where the secondary lies.
        Ok(p) => read_copy(dev, device_size, p.binary.hdr_size, true)?,
        Err(_) => scan_secondary(dev, device_size)?,
    };
    let (p_ok, s_ok) = (valid(&primary), valid(&secondary));
    // Both good: the higher sequence id; equal ones mean the primary.
    let use_secondary = match (p_ok, s_ok) {
        (Some(p), Some(s)) => s.binary.seqid > p.binary.seqid,
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (None, None) => {
            let (primary, secondary) = (failure(primary), failure(secondary));
            if matches!(primary, CopyError::Magic { offset: 0, .. } | CopyError::Truncated { offset: 0 })
                && secondary == CopyError::NotFound
            {
                return Err(HeaderError::NotLuks);
            }
            return Err(Luks2Error::NoValidCopy { primary, secondary }.into());
        }
    };
    let (copy, chosen) = match use_secondary {
        true => (HeaderCopy::Secondary, secondary),
        false => (HeaderCopy::Primary, primary),
    };
    let Ok(RawCopy { binary, json: Ok(meta), .. }) = chosen else {
        // `valid` said this copy is good.
        return Err(HeaderError::NotLuks);
    };
    let needed = meta.areas_end();
    if needed > device_size {
        let e = Luks2Error::DeviceTooSmall { copy, seqid: binary.seqid, needed, size: device_size };
        return Err(e.into());
    }
    Ok(Header {
        version: Version::Luks2,
        uuid: binary.uuid,
        label: Some(binary.label).filter(|l| !l.is_empty()),
        subsystem: Some(binary.subsystem).filter(|s| !s.is_empty()),
        seqid: binary.seqid,
        copy,
        metadata_size: 2 * meta.copy_size(),
        keyslots_size: meta.keyslots_size,
        keyslots: meta.keyslots,
        segments: meta.segments,
        digests: meta.digests,
        tokens: meta.tokens,
        flags: meta.flags,
        mandatory_requirements: meta.mandatory_requirements,
    })
}

fn valid(c: &CopyRead) -> Option<&RawCopy> {
    c.as_ref().ok().filter(|c| c.json.is_ok())
}

fn failure(c: CopyRead) -> CopyError {
    match c {
        Err(e) => e,
        Ok(RawCopy { offset, json: Err(error), .. }) => CopyError::Json { offset, error },
        // Only called on copies `valid` refused.
        Ok(RawCopy { .. }) => CopyError::NotFound,
    }
}

/// With no usable primary, the secondary is looked for at every offset it may have; the first
/// copy with a good binary header and checksum is the one (its JSON may still fail), as in
/// cryptsetup. Of the failures, the first that found the magic says the most.
fn scan_secondary<D: Read + Seek>(dev: &mut D, device_size: u64) -> Result<CopyRead, HeaderError> {
    let mut first_error = None;
    for offset in SECONDARY_OFFSETS {
        match read_copy(dev, device_size, offset, true)? {
            Ok(c) => return Ok(Ok(c)),
            Err(CopyError::Magic { .. } | CopyError::Truncated { .. }) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(Err(first_error.unwrap_or(CopyError::NotFound)))
}

/// Reads one copy at `offset`: binary header checks, then the JSON area and the checksum over
/// both, then the JSON rules. I/O errors other than the device's end are errors of the read.
fn read_copy<D: Read + Seek>(
    dev: &mut D,
    device_size: u64,
    offset: u64,
    secondary: bool,
) -> Result<CopyRead, HeaderError> {
    let Some(bin) = read_at(dev, device_size, offset, BIN_HDR_LEN as usize)? else {
        return Ok(Err(CopyError::Truncated { offset }));
    };
    let (binary, alg) = match check_binary(&bin, offset, secondary) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let json_len = binary.hdr_size - BIN_HDR_LEN;
    let Some(area) = read_at(dev, device_size, offset + BIN_HDR_LEN, json_len as usize)? else {
        return Ok(Err(CopyError::Truncated { offset }));
    };
    let Some(sum) = checksum(&alg, &bin, &area) else {
        return Ok(Err(CopyError::ChecksumAlg { offset, alg }));
    };
    let stored = bin.get(CSUM_AT..CSUM_AT + sum.len());
    if stored != Some(&sum[..]) {
        return Ok(Err(CopyError::Checksum { offset, alg }));
    }
    let json = json::parse_area(&area).and_then(|root| validate::metadata(&root, json_len));
    Ok(Ok(RawCopy { offset, binary, json }))
}

/// `hdr_disk_sanity_check_pre`: magic, version, the recorded offset, the size. Returns the
/// fields and the checksum algorithm's name.
fn check_binary(bin: &[u8], offset: u64, secondary: bool) -> Result<(Binary, String), CopyError> {
    let mut f = Fields::new(bin);
    let magic: [u8; 6] = f.array();
    let version = f.u16();
    let hdr_size = f.u64();
    let seqid = f.u64();
    let label: [u8; 48] = f.array();
    let alg: [u8; 32] = f.array();
    f.skip(64); // salt
    let uuid: [u8; 40] = f.array();
    let subsystem: [u8; 48] = f.array();
    let recorded = f.u64();
    let expected = if secondary { MAGIC_SECONDARY } else { super::MAGIC };
    if magic != expected {
        return Err(CopyError::Magic { offset, secondary });
    }
    if version != 2 {
        return Err(CopyError::Version { offset, version });
    }
    if recorded != offset {
        return Err(CopyError::Offset { offset, recorded });
    }
    if !(HDR_SIZE_MIN..=HDR_SIZE_MAX).contains(&hdr_size) {
        return Err(CopyError::Size { offset, hdr_size });
    }
    if secondary && offset != hdr_size {
        return Err(CopyError::SecondaryOffset { offset, hdr_size });
    }
    let binary =
        Binary { hdr_size, seqid, label: text(&label), uuid: text(&uuid), subsystem: text(&subsystem) };
    Ok((binary, text(&alg)))
}

/// A string field: up to its NUL, or all but its last byte (cryptsetup forces a NUL there).
fn text(field: &[u8]) -> String {
    let s = c_str(field).unwrap_or_else(|| field.get(..field.len().saturating_sub(1)).unwrap_or_default());
    String::from_utf8_lossy(s).into_owned()
}

/// The header checksum: `alg` over the binary header with its checksum zeroed, then the JSON
/// area. `None` for an algorithm this build does not have.
fn checksum(alg: &str, bin: &[u8], area: &[u8]) -> Option<Vec<u8>> {
    let mut zeroed = bin.to_vec();
    if let Some(csum) = zeroed.get_mut(CSUM_AT..CSUM_AT + CSUM_LEN) {
        csum.fill(0);
    }
    fn run<H: sha2::Digest>(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut h = H::new();
        h.update(a);
        h.update(b);
        h.finalize().to_vec()
    }
    Some(match HashAlg::from_name(alg) {
        HashAlg::Sha1 => run::<sha1::Sha1>(&zeroed, area),
        HashAlg::Sha224 => run::<sha2::Sha224>(&zeroed, area),
        HashAlg::Sha256 => run::<sha2::Sha256>(&zeroed, area),
        HashAlg::Sha384 => run::<sha2::Sha384>(&zeroed, area),
        HashAlg::Sha512 => run::<sha2::Sha512>(&zeroed, area),
        HashAlg::Ripemd160 => run::<ripemd::Ripemd160>(&zeroed, area),
        HashAlg::Whirlpool => run::<whirlpool::Whirlpool>(&zeroed, area),
        HashAlg::Unsupported(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor};

    use serde_json::{Value, json};

    use super::*;
    use crate::header::validate::tests::valid;

    const HDR: u64 = 0x4000;
    const DEVICE: u64 = 16 << 20;

    /// One copy at `offset`: binary header, JSON area, SHA-256 checksum.
    fn put_copy(dev: &mut [u8], offset: u64, secondary: bool, seqid: u64, json: &Value) {
        let mut bin = vec![0u8; BIN_HDR_LEN as usize];
        bin[..6].copy_from_slice(if secondary { &MAGIC_SECONDARY } else { &super::super::MAGIC });
        bin[6..8].copy_from_slice(&2u16.to_be_bytes());
        bin[8..16].copy_from_slice(&HDR.to_be_bytes());
        bin[16..24].copy_from_slice(&seqid.to_be_bytes());
        bin[24..30].copy_from_slice(b"a-root");
        bin[72..78].copy_from_slice(b"sha256");
        bin[168..204].copy_from_slice(b"5f1d41f8-e5a9-4f6a-9b1c-1f8f6a7e2b3c");
        bin[256..264].copy_from_slice(&offset.to_be_bytes());
        let mut area = serde_json::to_vec(json).unwrap();
        area.resize((HDR - BIN_HDR_LEN) as usize, 0);
        let sum = checksum("sha256", &bin, &area).unwrap();
        bin[CSUM_AT..CSUM_AT + sum.len()].copy_from_slice(&sum);
        let at = offset as usize;
        dev[at..at + bin.len()].copy_from_slice(&bin);
        dev[at + bin.len()..at + HDR as usize].copy_from_slice(&area);
    }

    /// A device holding both copies of `valid()` metadata with the given sequence ids.
    fn device(seqids: (u64, u64)) -> Vec<u8> {
        let mut dev = vec![0u8; DEVICE as usize];
        put_copy(&mut dev, 0, false, seqids.0, &valid());
        put_copy(&mut dev, HDR, true, seqids.1, &valid());
        dev
    }

    fn load(dev: Vec<u8>) -> Result<Header, HeaderError> {
        let size = dev.len() as u64;
        crate::header::read(&mut Cursor::new(dev), size)
    }

    #[test]
    fn both_copies_good_and_equal_the_primary_counts() {
        let h = load(device((7, 7))).unwrap();
        assert_eq!((h.version, h.copy, h.seqid), (Version::Luks2, HeaderCopy::Primary, 7));
        assert_eq!(h.uuid, "5f1d41f8-e5a9-4f6a-9b1c-1f8f6a7e2b3c");
        assert_eq!((h.label.as_deref(), h.subsystem.as_deref()), (Some("a-root"), None));
        assert_eq!((h.metadata_size, h.keyslots_size), (2 * HDR, 16744448));
        assert_eq!(h.keyslots.len(), 2);
    }

    #[test]
    fn the_higher_sequence_id_wins() {
        let h = load(device((7, 8))).unwrap();
        assert_eq!((h.copy, h.seqid), (HeaderCopy::Secondary, 8));
        let h = load(device((9, 8))).unwrap();
        assert_eq!((h.copy, h.seqid), (HeaderCopy::Primary, 9));
    }

    #[test]
    fn a_damaged_primary_leaves_the_secondary() {
        let mut dev = device((7, 7));
        dev[5000] ^= 1; // in the primary's JSON area: its checksum fails
        assert_eq!(load(dev).unwrap().copy, HeaderCopy::Secondary);
        // Without its magic the primary tells no size: the secondary is searched for.
        let mut dev = device((7, 7));
        dev[..6].fill(0);
        assert_eq!(load(dev).unwrap().copy, HeaderCopy::Secondary);
    }

    #[test]
    fn a_primary_with_a_good_checksum_but_invalid_json_leaves_the_secondary() {
        let mut dev = device((8, 7));
        let mut bad = valid();
        bad["config"]["keyslots_size"] = json!("1");
        put_copy(&mut dev, 0, false, 8, &bad);
        let h = load(dev).unwrap();
        assert_eq!((h.copy, h.seqid), (HeaderCopy::Secondary, 7));
    }

    #[test]
    fn with_both_copies_damaged_the_error_names_both() {
        let mut dev = device((7, 7));
        dev[5000] ^= 1;
        dev[HDR as usize + 5000] ^= 1;
        let e = load(dev).unwrap_err();
        let HeaderError::Luks2(l) = &e else { panic!("{e}") };
        let Luks2Error::NoValidCopy { primary, secondary } = &**l else { panic!("{e}") };
        assert_eq!(*primary, CopyError::Checksum { offset: 0, alg: "sha256".into() });
        assert_eq!(*secondary, CopyError::Checksum { offset: HDR, alg: "sha256".into() });
        assert_eq!(
            e.to_string(),
            "LUKS2 header: no valid header copy: primary at offset 0: sha256 checksum mismatch; \
             secondary at offset 16384: sha256 checksum mismatch"
        );
    }

    #[test]
    fn invalid_json_in_both_copies_names_the_json_path() {
        let mut dev = device((7, 7));
        let mut bad = valid();
        bad["segments"]["0"]["sector_size"] = json!(1000);
        put_copy(&mut dev, 0, false, 7, &bad);
        put_copy(&mut dev, HDR, true, 7, &bad);
        let msg = load(dev).unwrap_err().to_string();
        assert!(
            msg.contains("primary at offset 0: JSON metadata: segments.0.sector_size: sector size 1000 is not a multiple of 512"),
            "{msg}"
        );
    }

    #[test]
    fn no_magic_anywhere_is_no_luks_header() {
        assert!(matches!(load(vec![0u8; 1 << 20]), Err(HeaderError::NotLuks)));
        assert!(matches!(load(vec![0u8; 3]), Err(HeaderError::NotLuks)));
    }

    #[test]
    fn the_device_must_hold_the_keyslots_area() {
        let mut dev = device((7, 7));
        dev.truncate(DEVICE as usize - 512);
        let e = load(dev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LUKS2 header: the primary copy (seqid 7) needs 16777216 bytes for metadata and keyslots, \
             the device has 16776704"
        );
    }

    #[test]
    fn binary_header_fields_are_checked_before_the_checksum() {
        let mut dev = device((7, 7));
        dev[HDR as usize + 256..HDR as usize + 264].copy_from_slice(&0u64.to_be_bytes());
        dev[5000] ^= 1;
        let HeaderError::Luks2(l) = load(dev).unwrap_err() else { panic!() };
        let Luks2Error::NoValidCopy { secondary, .. } = *l else { panic!() };
        assert_eq!(secondary, CopyError::Offset { offset: HDR, recorded: 0 });
    }

    /// A device whose reads fail.
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(5))
        }
    }

    impl Seek for Failing {
        fn seek(&mut self, _: io::SeekFrom) -> io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn read_errors_are_errors_not_absent_headers() {
        let e = crate::header::read(&mut Failing, DEVICE).unwrap_err();
        assert!(matches!(e, HeaderError::Read { offset: 0, len: 8, .. }), "{e}");
    }
}
