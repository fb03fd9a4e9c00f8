//! The LUKS1 header (the 592-byte `phdr`): fields, cryptsetup's keyslot layout checks, the model.

use std::io::{Read, Seek};

use super::HeaderError;
use super::bytes::{Fields, printable, read_at};
use crate::model::{
    AfParams, Area, CipherSpec, Digest, HashAlg, Header, HeaderCopy, Kdf, Keyslot, KeyslotKind, Priority,
    Segment, SegmentKind, SegmentSize, Version,
};
use crate::secret::MAX_KEY;

/// Bytes of the on-disk header, including its padding to 1024 bytes is not needed: cryptsetup
/// reads exactly `sizeof(struct luks_phdr)`.
pub const PHDR_LEN: usize = 592;
/// Keyslots in a LUKS1 header.
pub const NUM_KEYSLOTS: usize = 8;
/// The only anti-forensic stripe count LUKS1 allows.
pub const STRIPES: u32 = 4000;
/// `active` of a keyslot holding a key.
pub const KEY_ENABLED: u32 = 0x00AC_71F3;
/// `active` of an empty keyslot.
pub const KEY_DISABLED: u32 = 0x0000_DEAD;

const SECTOR: u64 = 512;
/// Bytes of the volume-key digest (SHA-1's output, whatever the header's hash).
const DIGEST_LEN: usize = 20;
const SALT_LEN: usize = 32;

/// What is wrong with a LUKS1 header; keyslots are numbered 0 to 7, offsets are in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Luks1Error {
    #[error("the device is {size} bytes, shorter than the {PHDR_LEN}-byte header")]
    Truncated { size: u64 },
    #[error("field {field} is not a NUL-terminated printable name")]
    Name { field: &'static str },
    #[error("hash {hash:?} gives {len} bytes, fewer than the {DIGEST_LEN} the digest needs")]
    HashTooShort { hash: String, len: usize },
    #[error("key size {key_bytes} bytes is not between 1 and {MAX_KEY}")]
    KeyBytes { key_bytes: u32 },
    #[error("keyslot {slot}: state 0x{state:08x} is neither active (0x00ac71f3) nor disabled (0x0000dead)")]
    KeyslotState { slot: usize, state: u32 },
    #[error("keyslot {slot}: {stripes} anti-forensic stripes, LUKS1 requires {STRIPES}")]
    Stripes { slot: usize, stripes: u32 },
    #[error("keyslot {slot}: key material at offset {offset} lies inside the {PHDR_LEN}-byte header")]
    KeyslotInHeader { slot: usize, offset: u64 },
    #[error(
        "keyslot {slot}: key material at offset {offset} (to {end}) reaches past the payload at offset {payload}"
    )]
    KeyslotOverPayload { slot: usize, offset: u64, end: u64, payload: u64 },
    #[error(
        "keyslot {slot}: key material at offset {offset} (to {end}) overlaps keyslot {next} at offset {next_offset}"
    )]
    KeyslotsOverlap { slot: usize, offset: u64, end: u64, next: usize, next_offset: u64 },
    #[error("the device is {size} bytes, but the keyslots need {needed}")]
    DeviceTooSmall { size: u64, needed: u64 },
}

/// One keyslot as stored (after byte-order conversion).
#[derive(Debug, Clone, Copy)]
struct RawSlot {
    active: u32,
    iterations: u32,
    salt: [u8; SALT_LEN],
    /// In 512-byte sectors.
    material_offset: u32,
    stripes: u32,
}

/// Reads the LUKS1 header at offset 0 and maps it into the model.
pub(super) fn read<D: Read + Seek>(dev: &mut D, device_size: u64) -> Result<Header, HeaderError> {
    let buf = read_at(dev, device_size, 0, PHDR_LEN)?.ok_or(Luks1Error::Truncated { size: device_size })?;
    Ok(parse(&buf, device_size)?)
}

/// Validates a 592-byte LUKS1 header on a device of `device_size` bytes, as cryptsetup's
/// `LUKS_read_phdr` does (without its repair), and maps it into the model.
pub(super) fn parse(buf: &[u8], device_size: u64) -> Result<Header, Luks1Error> {
    if buf.len() < PHDR_LEN {
        return Err(Luks1Error::Truncated { size: buf.len() as u64 });
    }
    let mut f = Fields::new(buf);
    f.skip(6 + 2); // magic and version, checked by the caller
    let cipher_name: [u8; 32] = f.array();
    let cipher_mode: [u8; 32] = f.array();
    let hash_spec: [u8; 32] = f.array();
    let payload_offset = f.u32();
    let key_bytes = f.u32();
    let mk_digest: [u8; DIGEST_LEN] = f.array();
    let mk_salt: [u8; SALT_LEN] = f.array();
    let mk_iterations = f.u32();
    let uuid: [u8; 40] = f.array();
    let slots: [RawSlot; NUM_KEYSLOTS] = std::array::from_fn(|_| RawSlot {
        active: f.u32(),
        iterations: f.u32(),
        salt: f.array(),
        material_offset: f.u32(),
        stripes: f.u32(),
    });

    let cipher_name = printable(&cipher_name).ok_or(Luks1Error::Name { field: "cipherName" })?;
    let cipher_mode = printable(&cipher_mode).ok_or(Luks1Error::Name { field: "cipherMode" })?;
    let hash_name = printable(&hash_spec).ok_or(Luks1Error::Name { field: "hashSpec" })?;
    // A UUID is printable text too; an empty one is allowed (cryptsetup does not check it).
    let uuid = super::bytes::c_str(&uuid)
        .filter(|s| s.iter().all(|b| b.is_ascii_graphic()))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .ok_or(Luks1Error::Name { field: "uuid" })?;
    let hash = HashAlg::from_name(&hash_name);
    check_hash(&hash_name, &hash)?;
    // cryptsetup refuses a zero key size; the upper bound is what a key buffer holds.
    if key_bytes == 0 || key_bytes as usize > MAX_KEY {
        return Err(Luks1Error::KeyBytes { key_bytes });
    }
    for (slot, s) in slots.iter().enumerate() {
        if s.active != KEY_ENABLED && s.active != KEY_DISABLED {
            return Err(Luks1Error::KeyslotState { slot, state: s.active });
        }
    }
    let area_sectors = af_sectors(key_bytes);
    check_keyslots(&slots, payload_offset, area_sectors)?;
    // Every keyslot area, used or not, must lie on the (header) device: cryptsetup's
    // LUKS_check_device_size.
    let first = slots.iter().map(|s| u64::from(s.material_offset)).min().unwrap_or(0);
    let end_sectors = slots.iter().map(|s| u64::from(s.material_offset)).max().unwrap_or(0) + area_sectors;
    let needed = end_sectors * SECTOR;
    if needed > device_size / SECTOR * SECTOR {
        return Err(Luks1Error::DeviceTooSmall { size: device_size, needed });
    }

    let spec = CipherSpec(format!("{cipher_name}-{cipher_mode}"));
    let key_size = key_bytes as usize;
    let keyslots: Vec<Keyslot> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active == KEY_ENABLED)
        .map(|(id, s)| Keyslot {
            id: id as u32,
            kind: KeyslotKind::Luks2,
            key_size,
            priority: Priority::Normal,
            kdf: Kdf::Pbkdf2 { hash: hash.clone(), iterations: s.iterations, salt: s.salt.to_vec() },
            af: AfParams { stripes: s.stripes, hash: hash.clone() },
            area: Area {
                offset: u64::from(s.material_offset) * SECTOR,
                size: area_sectors * SECTOR,
                encryption: spec.clone(),
                key_size,
            },
        })
        .collect();
    let digest = Digest {
        id: 0,
        keyslots: keyslots.iter().map(|k| k.id).collect(),
        segments: vec![0],
        hash: hash.clone(),
        iterations: mk_iterations,
        salt: mk_salt.to_vec(),
        digest: mk_digest.to_vec(),
    };
    let segment = Segment {
        id: 0,
        kind: SegmentKind::Crypt,
        offset: u64::from(payload_offset) * SECTOR,
        size: SegmentSize::Dynamic,
        iv_tweak: 0,
        encryption: spec,
        sector_size: SECTOR as u32,
        flags: Vec::new(),
    };
    Ok(Header {
        version: Version::Luks1,
        uuid,
        label: None,
        subsystem: None,
        seqid: 0,
        copy: HeaderCopy::Primary,
        metadata_size: needed,
        keyslots_size: (end_sectors - first) * SECTOR,
        keyslots,
        segments: vec![segment],
        digests: vec![digest],
        tokens: Vec::new(),
        flags: Vec::new(),
        mandatory_requirements: Vec::new(),
    })
}

/// cryptsetup refuses a hash whose HMAC is shorter than the 20-byte digest. A name this build
/// does not know loads (unlock names it); the short hashes cryptsetup's backends know are
/// refused here as cryptsetup refuses them.
fn check_hash(name: &str, hash: &HashAlg) -> Result<(), Luks1Error> {
    let len = match hash.output_len() {
        Some(len) => len,
        None => match name.to_ascii_lowercase().as_str() {
            "md4" | "md5" | "rmd128" | "ripemd128" | "crc32" => 16,
            _ => return Ok(()),
        },
    };
    if len < DIGEST_LEN {
        return Err(Luks1Error::HashTooShort { hash: name.to_owned(), len });
    }
    Ok(())
}

/// Sectors of one keyslot's split key material: `key_bytes * 4000` rounded up to a sector
/// (cryptsetup's `AF_split_sectors`, which uses 4000 stripes whatever the header says).
fn af_sectors(key_bytes: u32) -> u64 {
    (u64::from(key_bytes) * u64::from(STRIPES)).div_ceil(SECTOR)
}

/// cryptsetup's `LUKS_check_keyslots`, over all eight keyslots, active or not: 4000 stripes,
/// key material after the header and before the payload (unless the header is detached,
/// payload offset 0), and no two areas overlapping.
fn check_keyslots(
    slots: &[RawSlot; NUM_KEYSLOTS],
    payload: u32,
    area_sectors: u64,
) -> Result<(), Luks1Error> {
    let payload = u64::from(payload);
    for (slot, s) in slots.iter().enumerate() {
        let start = u64::from(s.material_offset);
        let end = start + area_sectors;
        if s.stripes != STRIPES {
            return Err(Luks1Error::Stripes { slot, stripes: s.stripes });
        }
        if start * SECTOR < PHDR_LEN as u64 {
            return Err(Luks1Error::KeyslotInHeader { slot, offset: start * SECTOR });
        }
        if payload != 0 && (payload <= start || payload < end) {
            return Err(Luks1Error::KeyslotOverPayload {
                slot,
                offset: start * SECTOR,
                end: end * SECTOR,
                payload: payload * SECTOR,
            });
        }
    }
    // Sorted by offset (stable, as cryptsetup's insertion sort), each area must end before
    // the next one starts.
    let mut order: [usize; NUM_KEYSLOTS] = std::array::from_fn(|i| i);
    order.sort_by_key(|i| slots.get(*i).map_or(0, |s| s.material_offset));
    for pair in order.windows(2) {
        let (Some(&slot), Some(&next)) = (pair.first(), pair.get(1)) else { continue };
        let (Some(a), Some(b)) = (slots.get(slot), slots.get(next)) else { continue };
        let (start, next_start) = (u64::from(a.material_offset), u64::from(b.material_offset));
        if next_start < start + area_sectors {
            return Err(Luks1Error::KeyslotsOverlap {
                slot,
                offset: start * SECTOR,
                end: (start + area_sectors) * SECTOR,
                next,
                next_offset: next_start * SECTOR,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid header as `cryptsetup luksFormat --type luks1` lays it out for a 32-byte key:
    /// keyslots 4 KiB apart from sector 8, payload at 4096 sectors (2 MiB).
    pub(crate) fn phdr() -> Vec<u8> {
        let mut b = Vec::with_capacity(PHDR_LEN);
        b.extend_from_slice(&super::super::MAGIC);
        b.extend_from_slice(&1u16.to_be_bytes());
        for name in [&b"aes"[..], b"xts-plain64", b"sha256"] {
            let mut field = [0u8; 32];
            field[..name.len()].copy_from_slice(name);
            b.extend_from_slice(&field);
        }
        b.extend_from_slice(&4096u32.to_be_bytes());
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[0xd1; DIGEST_LEN]);
        b.extend_from_slice(&[0x5a; SALT_LEN]);
        b.extend_from_slice(&1000u32.to_be_bytes());
        let mut uuid = [0u8; 40];
        uuid[..36].copy_from_slice(b"0b4a6a2e-4d3d-4c55-9c43-2b8f4d1e6f10");
        b.extend_from_slice(&uuid);
        for slot in 0..NUM_KEYSLOTS as u32 {
            let active = if slot == 0 || slot == 5 { KEY_ENABLED } else { KEY_DISABLED };
            b.extend_from_slice(&active.to_be_bytes());
            b.extend_from_slice(&(if active == KEY_ENABLED { 2000u32 } else { 0 }).to_be_bytes());
            b.extend_from_slice(&[slot as u8 + 1; SALT_LEN]);
            b.extend_from_slice(&(8 + slot * 256).to_be_bytes());
            b.extend_from_slice(&STRIPES.to_be_bytes());
        }
        b.resize(PHDR_LEN, 0);
        b
    }

    const DEVICE: u64 = 4 << 20;

    fn put_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Byte offset of a keyslot field: `active` +0, iterations +4, salt +8, offset +40, stripes +44.
    fn slot_field(slot: usize, field: usize) -> usize {
        208 + slot * 48 + field
    }

    #[test]
    fn a_valid_header_maps_into_the_model() {
        let h = parse(&phdr(), DEVICE).unwrap();
        assert_eq!(h.version, Version::Luks1);
        assert_eq!(h.uuid, "0b4a6a2e-4d3d-4c55-9c43-2b8f4d1e6f10");
        assert_eq!(h.keyslots.iter().map(|k| k.id).collect::<Vec<_>>(), [0, 5]);
        let k = h.keyslot(5).unwrap();
        assert_eq!(k.kind, KeyslotKind::Luks2);
        assert_eq!(k.key_size, 32);
        assert_eq!(k.kdf, Kdf::Pbkdf2 { hash: HashAlg::Sha256, iterations: 2000, salt: vec![6; 32] });
        assert_eq!(k.af, AfParams { stripes: 4000, hash: HashAlg::Sha256 });
        assert_eq!(
            k.area,
            Area {
                offset: (8 + 5 * 256) * 512,
                size: 128_000,
                encryption: CipherSpec("aes-xts-plain64".into()),
                key_size: 32
            }
        );
        assert_eq!(h.digests.len(), 1);
        let d = &h.digests[0];
        assert_eq!((d.keyslots.clone(), d.segments.clone()), (vec![0, 5], vec![0]));
        assert_eq!((d.iterations, d.digest.len(), d.salt.len()), (1000, 20, 32));
        let s = h.segment(0).unwrap();
        assert_eq!((s.offset, s.size, s.sector_size, s.iv_tweak), (2 << 20, SegmentSize::Dynamic, 512, 0));
        assert_eq!(s.encryption.0, "aes-xts-plain64");
        // Slot 7 ends at sector 8 + 7 * 256 + 250.
        assert_eq!(h.metadata_size, (8 + 7 * 256 + 250) * 512);
        assert_eq!(h.keyslots_size, (7 * 256 + 250) * 512);
    }

    #[test]
    fn a_keyslot_state_other_than_active_or_disabled_is_refused() {
        let mut b = phdr();
        put_u32(&mut b, slot_field(3, 0), 0xCAFE);
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::KeyslotState { slot: 3, state: 0xCAFE }));
    }

    #[test]
    fn every_keyslot_needs_4000_stripes_even_a_disabled_one() {
        let mut b = phdr();
        put_u32(&mut b, slot_field(6, 44), 3999);
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::Stripes { slot: 6, stripes: 3999 }));
    }

    #[test]
    fn key_material_may_not_start_inside_the_header() {
        let mut b = phdr();
        put_u32(&mut b, slot_field(0, 40), 1);
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::KeyslotInHeader { slot: 0, offset: 512 }));
    }

    #[test]
    fn key_material_may_not_reach_the_payload() {
        let mut b = phdr();
        // Slot 7 ends at sector 8 + 1792 + 250 = 2050.
        put_u32(&mut b, 104, 2049);
        assert!(matches!(parse(&b, DEVICE), Err(Luks1Error::KeyslotOverPayload { slot: 7, .. })));
        put_u32(&mut b, 104, 2050);
        assert!(parse(&b, DEVICE).is_ok());
    }

    #[test]
    fn a_detached_header_has_payload_offset_zero_and_no_payload_check() {
        let mut b = phdr();
        put_u32(&mut b, 104, 0);
        let h = parse(&b, 2050 * 512).unwrap();
        assert_eq!(h.segments[0].offset, 0);
    }

    #[test]
    fn overlapping_keyslots_are_refused_whichever_order_they_are_in() {
        let mut b = phdr();
        put_u32(&mut b, slot_field(2, 40), 8 + 256 + 249);
        assert_eq!(
            parse(&b, DEVICE),
            Err(Luks1Error::KeyslotsOverlap {
                slot: 1,
                offset: (8 + 256) * 512,
                end: (8 + 256 + 250) * 512,
                next: 2,
                next_offset: (8 + 256 + 249) * 512
            })
        );
    }

    #[test]
    fn the_device_must_hold_every_keyslot_area() {
        let end = (8 + 7 * 256 + 250) * 512;
        assert!(parse(&phdr(), end).is_ok());
        assert_eq!(parse(&phdr(), end - 1), Err(Luks1Error::DeviceTooSmall { size: end - 1, needed: end }));
    }

    #[test]
    fn names_must_be_terminated_and_printable() {
        let mut b = phdr();
        b[8..40].fill(b'a');
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::Name { field: "cipherName" }));
        let mut b = phdr();
        b[40] = b'\n';
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::Name { field: "cipherMode" }));
    }

    #[test]
    fn hashes_shorter_than_the_digest_are_refused_unknown_ones_load() {
        let mut b = phdr();
        b[72..104].fill(0);
        b[72..75].copy_from_slice(b"md5");
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::HashTooShort { hash: "md5".into(), len: 16 }));
        b[72..80].copy_from_slice(b"sha3-256");
        let h = parse(&b, DEVICE).unwrap();
        assert_eq!(h.digests[0].hash, HashAlg::Unsupported("sha3-256".into()));
    }

    #[test]
    fn key_size_zero_or_beyond_a_key_buffer_is_refused() {
        let mut b = phdr();
        put_u32(&mut b, 108, 0);
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::KeyBytes { key_bytes: 0 }));
        put_u32(&mut b, 108, u32::MAX);
        assert_eq!(parse(&b, DEVICE), Err(Luks1Error::KeyBytes { key_bytes: u32::MAX }));
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        assert_eq!(parse(&phdr()[..100], DEVICE), Err(Luks1Error::Truncated { size: 100 }));
    }
}
