//! Keyslot unlock: from a passphrase or key file to the verified volume key and the segment it opens.
//!
//! Keyslots are tried as cryptsetup tries them: `prefer` before `normal`, ascending id within a
//! priority, `ignore` only when named. A keyslot's key is accepted only if a digest that lists
//! the keyslot verifies it, and activates only through a digest bound to a segment: a key that
//! opens nothing but an unbound keyslot is `UnboundKeyslot`, never success.

use std::cmp::Reverse;
use std::io::{self, Read, Seek, SeekFrom};

use crate::af::{self, AfError};
use crate::area::{self, AreaError};
use crate::digest::{self, DigestError};
use crate::kdf::{self, KdfError};
use crate::model::{Digest, Header, Kdf, Keyslot, KeyslotKind, Priority, Segment};
use crate::secret::Secret;

/// Mandatory requirements (LUKS2 `config.requirements.mandatory`) this build can honour. None
/// yet: reencryption in progress (`online-reencrypt*`) and anything newer refuse activation.
pub const KNOWN_REQUIREMENTS: &[&str] = &[];

/// Largest key material read from one keyslot area: LUKS2's largest keyslots area (128 MiB).
pub const MAX_AREA_READ: u64 = 128 * 1024 * 1024;

/// How to unlock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Try only this keyslot (even one with priority `ignore`), like `cryptsetup --key-slot`.
    pub keyslot: Option<u32>,
}

/// A verified volume key and what it opens.
#[derive(Debug)]
pub struct Unlocked {
    pub volume_key: Secret,
    /// The keyslot the key came from.
    pub keyslot: u32,
    /// The digest that verified it.
    pub digest: u32,
    /// The data segment to activate with the key (bound to it through the digest).
    pub segment: Segment,
}

/// Why no volume key came out. No variant carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("the header has the mandatory requirement {name:?}, which this build does not support")]
    UnsupportedRequirement { name: String },
    #[error("no keyslot opened with this key ({tried} tried)")]
    WrongKey { tried: usize },
    #[error("the key opens keyslot {keyslot}, which is bound to no data segment and cannot activate it")]
    UnboundKeyslot { keyslot: u32 },
    #[error("no keyslot to try: none is active with a usable kind and a priority other than ignore")]
    NoKeyslot,
    #[error("keyslot {keyslot} does not exist")]
    NoSuchKeyslot { keyslot: u32 },
    #[error("keyslot {keyslot} is of kind {kind:?}, which holds no volume key")]
    UnusableKeyslot { keyslot: u32, kind: String },
    #[error("keyslot {keyslot}: unsupported cipher {spec:?}")]
    UnsupportedCipher { keyslot: u32, spec: String },
    #[error("keyslot {keyslot}: unsupported hash {hash:?} ({role})")]
    UnsupportedHash { keyslot: u32, hash: String, role: HashRole },
    #[error("keyslot {keyslot}: unsupported key derivation function {name:?}")]
    UnsupportedKdf { keyslot: u32, name: String },
    #[error("keyslot {keyslot}: a key derivation salt of {len} bytes, not {}", digest::SALT_LEN)]
    Salt { keyslot: u32, len: usize },
    #[error("keyslot {keyslot}: key derivation: {source}")]
    Kdf { keyslot: u32, source: KdfError },
    #[error("keyslot {keyslot}: {source}")]
    Area { keyslot: u32, source: AreaError },
    #[error("keyslot {keyslot}: {source}")]
    Af { keyslot: u32, source: AfError },
    #[error("keyslot {keyslot}: its key material ({needed} bytes) does not fit its area ({size} bytes)")]
    AreaTooSmall { keyslot: u32, needed: u64, size: u64 },
    #[error("keyslot {keyslot}: cannot read {len} bytes of key material at offset {offset}: {source}")]
    Read { keyslot: u32, offset: u64, len: usize, source: io::Error },
    #[error("keyslot {keyslot} is listed by no digest, so no key from it can be verified")]
    NoDigest { keyslot: u32 },
    #[error("keyslot {keyslot}: {source}")]
    Digest { keyslot: u32, source: DigestError },
    #[error("digest {digest} names segment {segment}, which the header does not have")]
    MissingSegment { digest: u32, segment: u32 },
}

/// What a hash named in an error is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashRole {
    Pbkdf2,
    AntiForensic,
    Digest,
}

impl std::fmt::Display for HashRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashRole::Pbkdf2 => "keyslot PBKDF2",
            HashRole::AntiForensic => "anti-forensic splitter",
            HashRole::Digest => "volume key digest",
        })
    }
}

/// Recovers the volume key from `secret` (a passphrase or key-file bytes) through the keyslots
/// of `header`, whose areas are read from `header_device` (the device, or a detached header).
///
/// Errors: `UnsupportedRequirement` before any key derivation; `UnboundKeyslot` when the key
/// opens only keyslots bound to no segment; when some keyslot could not be tried at all
/// (unsupported cipher, hash or KDF, unreadable area) that keyslot's error; otherwise
/// `WrongKey`.
pub fn open(
    header: &Header,
    header_device: &mut (impl Read + Seek),
    secret: &[u8],
    opts: &Options,
) -> Result<Unlocked, UnlockError> {
    refuse_unknown_requirements(header)?;
    let candidates = candidates(header, opts)?;
    let mut tried = 0;
    let mut first_error = None;
    for ks in candidates {
        match try_keyslot(header, header_device, secret, ks) {
            Ok(Some(Opened { volume_key, digest, segment: Some(segment) })) => {
                return Ok(Unlocked { volume_key, keyslot: ks.id, digest, segment });
            }
            // Bound keyslots are tried first, so nothing else can still activate.
            Ok(Some(Opened { segment: None, .. })) => {
                return Err(UnlockError::UnboundKeyslot { keyslot: ks.id });
            }
            Ok(None) => {
                log::debug!("keyslot {}: not this key", ks.id);
                tried += 1;
            }
            Err(e) => {
                log::debug!("{e}");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(UnlockError::WrongKey { tried }))
}

/// The segment a volume key given directly (not through a keyslot) opens, if a bound digest
/// verifies it.
pub fn volume_key_matches(header: &Header, volume_key: &Secret) -> Option<Segment> {
    header
        .digests
        .iter()
        .filter(|d| !d.segments.is_empty())
        .find(|d| digest::verify(d, volume_key.as_bytes()) == Ok(true))
        .and_then(|d| segment_of(header, d).ok().flatten())
}

/// Whether any key at all could open `header`: no mandatory requirement this build lacks, and
/// a keyslot to try. What [`open`] refuses whatever the key; check it before asking anyone for
/// a key that cannot help.
pub fn usable(header: &Header, opts: &Options) -> Result<(), UnlockError> {
    refuse_unknown_requirements(header)?;
    candidates(header, opts).map(|_| ())
}

fn refuse_unknown_requirements(header: &Header) -> Result<(), UnlockError> {
    match header.mandatory_requirements.iter().find(|n| !KNOWN_REQUIREMENTS.contains(&n.as_str())) {
        Some(name) => Err(UnlockError::UnsupportedRequirement { name: name.clone() }),
        None => Ok(()),
    }
}

/// The keyslots to try, in order: the named one alone, or every usable keyslot with bound
/// ones first (unbound ones only tell `UnboundKeyslot` from `WrongKey`), then `prefer` before
/// `normal`, then ascending id.
fn candidates<'h>(header: &'h Header, opts: &Options) -> Result<Vec<&'h Keyslot>, UnlockError> {
    if let Some(id) = opts.keyslot {
        let ks = header.keyslot(id).ok_or(UnlockError::NoSuchKeyslot { keyslot: id })?;
        return match &ks.kind {
            KeyslotKind::Luks2 => Ok(vec![ks]),
            KeyslotKind::Reencrypt => {
                Err(UnlockError::UnusableKeyslot { keyslot: id, kind: "reencrypt".into() })
            }
            KeyslotKind::Unknown(kind) => {
                Err(UnlockError::UnusableKeyslot { keyslot: id, kind: kind.clone() })
            }
        };
    }
    let mut v: Vec<&Keyslot> = header
        .keyslots
        .iter()
        .filter(|k| k.kind == KeyslotKind::Luks2 && k.priority != Priority::Ignore)
        .collect();
    v.sort_by_key(|k| (!is_bound(header, k.id), Reverse(k.priority), k.id));
    if v.is_empty() {
        return Err(UnlockError::NoKeyslot);
    }
    Ok(v)
}

fn is_bound(header: &Header, keyslot: u32) -> bool {
    digests_of(header, keyslot).any(|d| !d.segments.is_empty())
}

fn digests_of(header: &Header, keyslot: u32) -> impl Iterator<Item = &Digest> {
    header.digests.iter().filter(move |d| d.keyslots.contains(&keyslot))
}

/// The segment a digest binds, the lowest id first; `None` for an unbound digest.
fn segment_of(header: &Header, d: &Digest) -> Result<Option<Segment>, UnlockError> {
    let Some(&first) = d.segments.iter().min() else { return Ok(None) };
    let mut ids = d.segments.clone();
    ids.sort_unstable();
    for id in ids {
        if let Some(s) = header.segment(id) {
            return Ok(Some(s.clone()));
        }
    }
    Err(UnlockError::MissingSegment { digest: d.id, segment: first })
}

/// A keyslot that opened: its verified key and, if its digest is bound, the segment.
struct Opened {
    volume_key: Secret,
    digest: u32,
    segment: Option<Segment>,
}

/// Tries one keyslot: `Ok(None)` when the key is not this keyslot's.
fn try_keyslot(
    header: &Header,
    dev: &mut (impl Read + Seek),
    secret: &[u8],
    ks: &Keyslot,
) -> Result<Option<Opened>, UnlockError> {
    let keyslot = ks.id;
    // Everything that can be refused is refused before the (slow) key derivation.
    let spec = &ks.area.encryption.0;
    if !area::is_supported(spec) {
        return Err(UnlockError::UnsupportedCipher { keyslot, spec: spec.clone() });
    }
    let unsupported_hash =
        |hash: &str, role| UnlockError::UnsupportedHash { keyslot, hash: hash.to_owned(), role };
    if ks.af.hash.output_len().is_none() {
        return Err(unsupported_hash(ks.af.hash.name(), HashRole::AntiForensic));
    }
    let salt = match &ks.kdf {
        Kdf::Pbkdf2 { hash, .. } if hash.output_len().is_none() => {
            return Err(unsupported_hash(hash.name(), HashRole::Pbkdf2));
        }
        Kdf::Unsupported { name } => return Err(UnlockError::UnsupportedKdf { keyslot, name: name.clone() }),
        Kdf::Pbkdf2 { salt, .. } | Kdf::Argon2i { salt, .. } | Kdf::Argon2id { salt, .. } => salt,
    };
    // cryptsetup refuses any other salt length before deriving anything.
    if salt.len() != digest::SALT_LEN {
        return Err(UnlockError::Salt { keyslot, len: salt.len() });
    }
    // Bound digests first: they are the ones that can activate.
    let mut digests: Vec<&Digest> = digests_of(header, keyslot).collect();
    digests.sort_by_key(|d| (d.segments.is_empty(), d.id));
    if digests.is_empty() {
        return Err(UnlockError::NoDigest { keyslot });
    }
    let digest_error = |e| match e {
        DigestError::UnsupportedHash { source, .. } => unsupported_hash(&source.name, HashRole::Digest),
        source => UnlockError::Digest { keyslot, source },
    };
    for d in &digests {
        digest::check(d).map_err(digest_error)?;
    }

    if ks.af.stripes != af::STRIPES {
        log::debug!(
            "keyslot {keyslot}: the header says {} anti-forensic stripes; {} are merged, as cryptsetup does",
            ks.af.stripes,
            af::STRIPES
        );
    }
    let material = read_material(dev, ks)?;
    let area_key = kdf::derive(&ks.kdf, secret, ks.area.key_size).map_err(|e| match e {
        KdfError::UnsupportedHash(h) => unsupported_hash(&h.name, HashRole::Pbkdf2),
        KdfError::UnsupportedKdf { name } => UnlockError::UnsupportedKdf { keyslot, name },
        source => UnlockError::Kdf { keyslot, source },
    })?;
    let mut material = material;
    area::decrypt(spec, area_key.as_bytes(), material.as_mut_bytes()).map_err(|e| match e {
        AreaError::UnsupportedCipher { spec } => UnlockError::UnsupportedCipher { keyslot, spec },
        source => UnlockError::Area { keyslot, source },
    })?;
    drop(area_key);
    let candidate =
        af::merge(material.as_bytes(), ks.key_size, af::STRIPES, &ks.af.hash).map_err(|e| match e {
            AfError::UnsupportedHash(h) => unsupported_hash(&h.name, HashRole::AntiForensic),
            source => UnlockError::Af { keyslot, source },
        })?;
    drop(material);

    for d in digests {
        let ok = digest::verify(d, candidate.as_bytes()).map_err(digest_error)?;
        if ok {
            let segment = segment_of(header, d)?;
            return Ok(Some(Opened { volume_key: candidate, digest: d.id, segment }));
        }
    }
    Ok(None)
}

/// Reads the keyslot's split key material (4000 stripes × key size, in whole sectors) from its
/// area into a secret buffer.
fn read_material(dev: &mut (impl Read + Seek), ks: &Keyslot) -> Result<Secret, UnlockError> {
    let keyslot = ks.id;
    let geometry = AfError::BadGeometry { stripes: af::STRIPES, key_size: ks.key_size };
    let len = af::split_len(ks.key_size, af::STRIPES)
        .filter(|l| *l > 0)
        .ok_or(UnlockError::Af { keyslot, source: geometry })?;
    let needed = u64::try_from(len).unwrap_or(u64::MAX);
    if needed > ks.area.size || needed > MAX_AREA_READ {
        return Err(UnlockError::AreaTooSmall { keyslot, needed, size: ks.area.size });
    }
    let offset = ks.area.offset;
    let read_error = |source| UnlockError::Read { keyslot, offset, len, source };
    let mut buf = Secret::zeroed(len);
    dev.seek(SeekFrom::Start(offset)).map_err(read_error)?;
    dev.read_exact(buf.as_mut_bytes()).map_err(read_error)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use aes::Aes256;
    use cipher::KeyInit;
    use xts_mode::{Xts128, get_tweak_default};

    use super::*;
    use crate::af::testing::split;
    use crate::hash;
    use crate::model::{AfParams, Area, CipherSpec, HashAlg, HeaderCopy, SegmentKind, SegmentSize, Version};

    const VOLUME_KEY: [u8; 32] = [0x5a; 32];

    /// A LUKS2-shaped header built in memory, with keyslots made the way cryptsetup makes
    /// them (PBKDF2 → area key, AF split in 4000 stripes, aes-xts-plain64 in 512-byte
    /// sectors), cheaply.
    struct Fixture {
        header: Header,
        image: Vec<u8>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let digest = Digest {
                id: 0,
                keyslots: vec![],
                segments: vec![0],
                hash: HashAlg::Sha256,
                iterations: 2,
                salt: vec![7; 32],
                digest: digest_of(&VOLUME_KEY, &[7; 32]),
            };
            let segment = Segment {
                id: 0,
                kind: SegmentKind::Crypt,
                offset: 16 << 20,
                size: SegmentSize::Dynamic,
                iv_tweak: 0,
                encryption: CipherSpec("aes-xts-plain64".into()),
                sector_size: 4096,
                flags: vec![],
            };
            let header = Header {
                version: Version::Luks2,
                uuid: "00000000-0000-0000-0000-000000000000".into(),
                label: None,
                subsystem: None,
                seqid: 1,
                copy: HeaderCopy::Primary,
                metadata_size: 0x8000,
                keyslots_size: 0,
                keyslots: vec![],
                segments: vec![segment],
                digests: vec![digest],
                tokens: vec![],
                flags: vec![],
                mandatory_requirements: vec![],
            };
            Fixture { header, image: vec![0; 0x8000] }
        }

        /// Adds keyslot `id` opened by `passphrase`, storing `key`, listed by digest `digest`.
        fn keyslot(&mut self, id: u32, priority: Priority, passphrase: &[u8], key: &[u8], digest: u32) {
            self.keyslot_split(id, priority, passphrase, key, digest, af::STRIPES);
        }

        /// `keyslot` with the key split into `stripes` stripes (the header says so too); the
        /// area is as large as cryptsetup's 4000 stripes need, zeros after the material.
        fn keyslot_split(
            &mut self,
            id: u32,
            priority: Priority,
            passphrase: &[u8],
            key: &[u8],
            digest: u32,
            stripes: u32,
        ) {
            let salt = vec![id as u8; 32];
            let kdf = Kdf::Pbkdf2 { hash: HashAlg::Sha256, iterations: 1, salt };
            let area_key = kdf::derive(&kdf, passphrase, 64).unwrap();
            let random: Vec<u8> =
                (0..key.len() * stripes as usize).map(|i| (i * 31 + id as usize) as u8).collect();
            let mut material = split(key, &random, stripes, &HashAlg::Sha1);
            material.resize(af::split_len(key.len(), stripes.max(af::STRIPES)).unwrap(), 0);
            let (k1, k2) = area_key.as_bytes().split_at(32);
            let xts = Xts128::new(Aes256::new_from_slice(k1).unwrap(), Aes256::new_from_slice(k2).unwrap());
            xts.encrypt_area(&mut material, 512, 0, get_tweak_default);
            let offset = self.image.len() as u64;
            self.image.extend_from_slice(&material);
            self.header.keyslots.push(Keyslot {
                id,
                kind: KeyslotKind::Luks2,
                key_size: key.len(),
                priority,
                kdf,
                af: AfParams { stripes, hash: HashAlg::Sha1 },
                area: Area {
                    offset,
                    size: material.len() as u64,
                    encryption: CipherSpec("aes-xts-plain64".into()),
                    key_size: 64,
                },
            });
            self.digest(digest).keyslots.push(id);
        }

        /// Digest `id`, created unbound (no segment) if it does not exist.
        fn digest(&mut self, id: u32) -> &mut Digest {
            if !self.header.digests.iter().any(|d| d.id == id) {
                let salt = vec![id as u8 + 100; 32];
                self.header.digests.push(Digest {
                    id,
                    keyslots: vec![],
                    segments: vec![],
                    hash: HashAlg::Sha256,
                    iterations: 2,
                    digest: digest_of(&UNBOUND_KEY, &salt),
                    salt,
                });
            }
            self.header.digests.iter_mut().find(|d| d.id == id).unwrap()
        }

        fn open(&self, passphrase: &[u8], keyslot: Option<u32>) -> Result<Unlocked, UnlockError> {
            open(&self.header, &mut Cursor::new(&self.image), passphrase, &Options { keyslot })
        }
    }

    const UNBOUND_KEY: [u8; 32] = [0x11; 32];

    fn digest_of(key: &[u8], salt: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 32];
        hash::pbkdf2(&HashAlg::Sha256, key, salt, 2, &mut out).unwrap();
        out
    }

    fn opened_keyslot(r: Result<Unlocked, UnlockError>) -> u32 {
        let u = r.unwrap();
        assert_eq!(u.volume_key.as_bytes(), VOLUME_KEY);
        assert_eq!((u.digest, u.segment.id), (0, 0));
        u.keyslot
    }

    #[test]
    fn the_right_passphrase_gives_the_volume_key_and_its_segment() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.keyslot(1, Priority::Normal, b"pw1", &VOLUME_KEY, 0);
        assert_eq!(opened_keyslot(f.open(b"pw1", None)), 1);
        let u = f.open(b"pw0", None).unwrap();
        assert_eq!(u.segment, f.header.segments[0]);
        assert_eq!(format!("{:?}", u.volume_key), "Secret(32 bytes, redacted)");
    }

    #[test]
    fn a_wrong_passphrase_counts_the_keyslots_tried() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.keyslot(3, Priority::Prefer, b"pw3", &VOLUME_KEY, 0);
        assert!(matches!(f.open(b"nope", None), Err(UnlockError::WrongKey { tried: 2 })));
        assert!(matches!(f.open(b"pw3", Some(0)), Err(UnlockError::WrongKey { tried: 1 })));
    }

    #[test]
    fn prefer_comes_before_normal_and_ids_ascend_within_a_priority() {
        let mut f = Fixture::new();
        for (id, prio) in
            [(4, Priority::Normal), (2, Priority::Normal), (5, Priority::Prefer), (6, Priority::Prefer)]
        {
            f.keyslot(id, prio, b"same", &VOLUME_KEY, 0);
        }
        assert_eq!(opened_keyslot(f.open(b"same", None)), 5);
        f.header.keyslots.retain(|k| k.priority == Priority::Normal);
        assert_eq!(opened_keyslot(f.open(b"same", None)), 2);
    }

    #[test]
    fn an_ignore_keyslot_is_tried_only_when_named() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Ignore, b"hidden", &VOLUME_KEY, 0);
        f.keyslot(1, Priority::Normal, b"pw1", &VOLUME_KEY, 0);
        assert!(matches!(f.open(b"hidden", None), Err(UnlockError::WrongKey { tried: 1 })));
        assert_eq!(opened_keyslot(f.open(b"hidden", Some(0))), 0);
        f.header.keyslots.retain(|k| k.id == 0);
        assert!(matches!(f.open(b"hidden", None), Err(UnlockError::NoKeyslot)));
    }

    #[test]
    fn a_keyslot_bound_to_no_segment_never_activates() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.keyslot(1, Priority::Prefer, b"spare", &UNBOUND_KEY, 1);
        assert!(matches!(f.open(b"spare", None), Err(UnlockError::UnboundKeyslot { keyslot: 1 })));
        assert!(matches!(f.open(b"spare", Some(1)), Err(UnlockError::UnboundKeyslot { keyslot: 1 })));
        // The bound keyslot is tried first even though the unbound one is `prefer`.
        assert!(matches!(f.open(b"nope", None), Err(UnlockError::WrongKey { tried: 2 })));
        assert_eq!(opened_keyslot(f.open(b"pw0", None)), 0);
    }

    #[test]
    fn an_unknown_mandatory_requirement_refuses_before_reading_anything() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.header.mandatory_requirements = vec!["online-reencrypt-v2".into()];
        // An empty device: any read would fail with a different error.
        let r = open(&f.header, &mut Cursor::new(Vec::new()), b"pw0", &Options::default());
        assert!(
            matches!(r, Err(UnlockError::UnsupportedRequirement { ref name }) if name == "online-reencrypt-v2")
        );
    }

    #[test]
    fn usable_tells_what_no_key_can_open() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        let opts = Options::default();
        assert!(usable(&f.header, &opts).is_ok());
        f.header.mandatory_requirements = vec!["luks3-feature".into()];
        assert!(matches!(usable(&f.header, &opts), Err(UnlockError::UnsupportedRequirement { .. })));
        f.header.mandatory_requirements.clear();
        f.header.keyslots[0].priority = Priority::Ignore;
        assert!(matches!(usable(&f.header, &opts), Err(UnlockError::NoKeyslot)));
        assert!(usable(&f.header, &Options { keyslot: Some(0) }).is_ok());
    }

    #[test]
    fn an_unsupported_keyslot_is_reported_only_when_no_other_opens() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.keyslot(1, Priority::Normal, b"pw1", &VOLUME_KEY, 0);
        f.header.keyslots[0].area.encryption = CipherSpec("aes-lrw-benbi".into());
        assert_eq!(opened_keyslot(f.open(b"pw1", None)), 1);
        let err = f.open(b"pw0", None).unwrap_err();
        assert!(
            matches!(err, UnlockError::UnsupportedCipher { keyslot: 0, ref spec } if spec == "aes-lrw-benbi")
        );
        assert_eq!(err.to_string(), "keyslot 0: unsupported cipher \"aes-lrw-benbi\"");
        f.header.keyslots[0].area.encryption = CipherSpec("aes-xts-plain64".into());
        f.header.keyslots[0].af.hash = HashAlg::from_name("md5");
        let err = f.open(b"pw0", None).unwrap_err();
        assert_eq!(err.to_string(), "keyslot 0: unsupported hash \"md5\" (anti-forensic splitter)");
        f.header.keyslots[0].af.hash = HashAlg::Sha1;
        f.header.keyslots[0].kdf = Kdf::Unsupported { name: "scrypt".into() };
        assert!(matches!(f.open(b"pw0", None), Err(UnlockError::UnsupportedKdf { keyslot: 0, .. })));
    }

    #[test]
    fn reencryption_and_unknown_keyslots_are_skipped() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.keyslot(1, Priority::Normal, b"pw1", &VOLUME_KEY, 0);
        f.header.keyslots[0].kind = KeyslotKind::Reencrypt;
        f.header.keyslots[1].kind = KeyslotKind::Unknown("luks3".into());
        assert!(matches!(f.open(b"pw0", None), Err(UnlockError::NoKeyslot)));
        assert!(matches!(f.open(b"pw0", Some(0)), Err(UnlockError::UnusableKeyslot { keyslot: 0, .. })));
        assert!(matches!(f.open(b"pw0", Some(9)), Err(UnlockError::NoSuchKeyslot { keyslot: 9 })));
    }

    #[test]
    fn key_material_must_fit_its_area_and_the_device() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.header.keyslots[0].area.size = 100;
        assert!(matches!(
            f.open(b"pw0", None),
            Err(UnlockError::AreaTooSmall { keyslot: 0, needed: 128_000, size: 100 })
        ));
        f.header.keyslots[0].area.size = 128_000;
        f.image.truncate(f.image.len() - 1);
        let err = f.open(b"pw0", None).unwrap_err();
        assert!(matches!(err, UnlockError::Read { keyslot: 0, offset: 0x8000, len: 128_000, .. }), "{err}");
    }

    #[test]
    fn the_key_is_merged_from_4000_stripes_whatever_af_stripes_says() {
        // cryptsetup's luks2_keyslot_get_key reads and merges LUKS_STRIPES (4000) stripes and
        // never looks at a LUKS2 keyslot's `af.stripes`.
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        f.header.keyslots[0].af.stripes = 2;
        assert_eq!(opened_keyslot(f.open(b"pw0", None)), 0);
        // A key split into the one stripe the header claims is not what cryptsetup recovers:
        // with 4000 stripes merged it is a wrong key, as cryptsetup finds.
        let mut f = Fixture::new();
        f.keyslot_split(1, Priority::Normal, b"pw1", &VOLUME_KEY, 0, 1);
        assert_eq!(f.header.keyslots[0].af.stripes, 1);
        assert!(matches!(f.open(b"pw1", None), Err(UnlockError::WrongKey { tried: 1 })));
    }

    #[test]
    fn a_volume_key_given_directly_is_checked_against_bound_digests() {
        let mut f = Fixture::new();
        f.keyslot(1, Priority::Normal, b"spare", &UNBOUND_KEY, 1);
        assert_eq!(
            volume_key_matches(&f.header, &Secret::from_slice(&VOLUME_KEY)),
            Some(f.header.segments[0].clone())
        );
        assert_eq!(volume_key_matches(&f.header, &Secret::from_slice(&UNBOUND_KEY)), None);
        assert_eq!(volume_key_matches(&f.header, &Secret::from_slice(&[0; 32])), None);
    }

    #[test]
    fn a_kdf_salt_of_another_length_than_32_bytes_is_refused_not_a_wrong_key() {
        // cryptsetup's luks2_keyslot_get_pbkdf_params: -EINVAL ("Keyslot open failed.").
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        let Kdf::Pbkdf2 { salt, .. } = &mut f.header.keyslots[0].kdf else { unreachable!() };
        salt.truncate(16);
        let err = f.open(b"pw0", None).unwrap_err();
        assert!(matches!(err, UnlockError::Salt { keyslot: 0, len: 16 }), "{err}");
        assert_eq!(err.to_string(), "keyslot 0: a key derivation salt of 16 bytes, not 32");
    }

    #[test]
    fn a_malformed_digest_opens_nothing_whatever_the_key() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        // The first byte of the right digest: the right key would match it, and a wrong key
        // one time in 256.
        f.header.digests[0].digest.truncate(1);
        let err = f.open(b"pw0", None).unwrap_err();
        assert!(
            matches!(err, UnlockError::Digest { keyslot: 0, source: DigestError::Length { len: 1, .. } }),
            "{err}"
        );
        assert!(matches!(f.open(b"nope", None), Err(UnlockError::Digest { keyslot: 0, .. })));
        assert_eq!(volume_key_matches(&f.header, &Secret::from_slice(&VOLUME_KEY)), None);
    }

    #[test]
    fn errors_never_show_the_passphrase() {
        let mut f = Fixture::new();
        f.keyslot(0, Priority::Normal, b"pw0", &VOLUME_KEY, 0);
        let err = f.open(b"correct horse", None).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("correct horse"));
    }
}
