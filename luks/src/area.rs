//! Keyslot-area decryption: the cipher specs LUKS encrypts split keys with, in 512-byte sectors.
//!
//! The area is encrypted as dm-crypt would encrypt a device starting at the area: sector `n`
//! of the area (counted from 0, 512 bytes each, whatever the data segment's sector size) has
//! IV `n`. Specs are `cipher-chainmode-ivgen[:ivopts]`: ciphers aes, serpent and twofish;
//! chain modes xts, cbc and ecb; IV generators plain, plain64, plain64be, null and
//! essiv:HASH. Anything else is an `UnsupportedCipher` naming the spec.

use aes::{Aes128, Aes192, Aes256};
use cipher::consts::U16;
use cipher::{
    Array, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockSizeUser, InnerIvInit, KeyInit,
};
use serpent::Serpent;
use twofish::Twofish;
use xts_mode::Xts128;
use zeroize::Zeroize;

use crate::hash;
use crate::model::HashAlg;
use crate::secret::Secret;

/// Keyslot areas are always encrypted in 512-byte sectors.
pub const SECTOR_SIZE: usize = 512;

/// Why an area could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    #[error("unsupported keyslot cipher {spec:?}")]
    UnsupportedCipher { spec: String },
    #[error("keyslot cipher {spec:?} cannot take a {key_size}-byte key")]
    KeySize { spec: String, key_size: usize },
    #[error("keyslot area of {len} bytes is not a whole number of 512-byte sectors")]
    NotWholeSectors { len: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CipherName {
    Aes,
    Serpent,
    Twofish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainMode {
    Xts,
    Cbc,
    Ecb,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IvGen {
    /// No IV (ECB).
    None,
    /// Sector number, 32-bit little-endian.
    Plain,
    /// Sector number, 64-bit little-endian.
    Plain64,
    /// Sector number, 64-bit big-endian, right-aligned in the block.
    Plain64Be,
    /// All zeros.
    Null,
    /// The sector number (64-bit little-endian) encrypted with the cipher keyed by the hash of
    /// the whole key, truncated to `len` bytes (the kernel's `wp256` is Whirlpool cut to 32).
    Essiv { hash: HashAlg, len: usize },
}

/// A parsed keyslot-area cipher spec.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    cipher: CipherName,
    mode: ChainMode,
    iv: IvGen,
}

impl Spec {
    fn parse(spec: &str) -> Option<Spec> {
        let (cipher, rest) = spec.split_once('-').unwrap_or((spec, ""));
        let cipher = match cipher {
            "aes" => CipherName::Aes,
            "serpent" => CipherName::Serpent,
            "twofish" => CipherName::Twofish,
            _ => return None,
        };
        let (mode, iv) = rest.split_once('-').map_or((rest, None), |(m, iv)| (m, Some(iv)));
        let mode = match mode {
            "xts" => ChainMode::Xts,
            "cbc" => ChainMode::Cbc,
            "ecb" => ChainMode::Ecb,
            _ => return None,
        };
        let iv = match (mode, iv) {
            (ChainMode::Ecb, None) => IvGen::None,
            (ChainMode::Ecb, Some(_)) | (_, None) => return None,
            (_, Some(iv)) => parse_iv(iv)?,
        };
        Some(Spec { cipher, mode, iv })
    }
}

fn parse_iv(iv: &str) -> Option<IvGen> {
    Some(match iv.split_once(':') {
        None => match iv {
            "plain" => IvGen::Plain,
            "plain64" => IvGen::Plain64,
            "plain64be" => IvGen::Plain64Be,
            "null" => IvGen::Null,
            _ => return None,
        },
        Some(("essiv", hash_name)) => {
            let (hash, len) = match hash_name {
                "wp256" => (HashAlg::Whirlpool, 32),
                "wp384" => (HashAlg::Whirlpool, 48),
                "wp512" => (HashAlg::Whirlpool, 64),
                name => {
                    let hash = HashAlg::from_name(name);
                    let len = hash.output_len()?;
                    (hash, len)
                }
            };
            IvGen::Essiv { hash, len }
        }
        Some(_) => return None,
    })
}

/// Whether `spec` is one `decrypt` implements (the key size is checked only when decrypting).
pub fn is_supported(spec: &str) -> bool {
    Spec::parse(spec).is_some()
}

/// Decrypts `data` (whole 512-byte sectors, sector 0 first) in place with `key`.
pub fn decrypt(spec: &str, key: &[u8], data: &mut [u8]) -> Result<(), AreaError> {
    let parsed = Spec::parse(spec).ok_or_else(|| AreaError::UnsupportedCipher { spec: spec.to_owned() })?;
    if !data.len().is_multiple_of(SECTOR_SIZE) {
        return Err(AreaError::NotWholeSectors { len: data.len() });
    }
    let key_error = || AreaError::KeySize { spec: spec.to_owned(), key_size: key.len() };
    let ivs = SectorIvs::new(&parsed, key).ok_or_else(key_error)?;
    let done = match parsed.mode {
        ChainMode::Xts => {
            if !key.len().is_multiple_of(2) {
                return Err(key_error());
            }
            let (k1, k2) = key.split_at(key.len() / 2);
            with_cipher(parsed.cipher, k1.len(), XtsJob { k1, k2, ivs: &ivs, data })
        }
        ChainMode::Cbc => with_cipher(parsed.cipher, key.len(), CbcJob { key, ivs: &ivs, data }),
        ChainMode::Ecb => with_cipher(parsed.cipher, key.len(), EcbJob { key, data }),
    };
    match done {
        Some(Ok(())) => Ok(()),
        Some(Err(Invalid)) | None => Err(key_error()),
    }
}

/// A key was refused by a cipher (wrong length for it).
struct Invalid;

/// Work that needs the concrete cipher type; `with_cipher` picks it from the name and key size.
trait Job {
    fn run<C: Cipher>(self) -> Result<(), Invalid>;
}

/// What the modes need of a block cipher: 16-byte blocks, both directions (ESSIV encrypts).
trait Cipher: BlockSizeUser<BlockSize = U16> + BlockCipherDecrypt + BlockCipherEncrypt + KeyInit {}
impl<C: BlockSizeUser<BlockSize = U16> + BlockCipherDecrypt + BlockCipherEncrypt + KeyInit> Cipher for C {}

/// Runs `job` with the cipher `name` names at `key_len` bytes; `None` if no such variant.
fn with_cipher<J: Job>(name: CipherName, key_len: usize, job: J) -> Option<Result<(), Invalid>> {
    Some(match (name, key_len) {
        (CipherName::Aes, 16) => job.run::<Aes128>(),
        (CipherName::Aes, 24) => job.run::<Aes192>(),
        (CipherName::Aes, 32) => job.run::<Aes256>(),
        (CipherName::Serpent, 16..=32) => job.run::<Serpent>(),
        (CipherName::Twofish, 16 | 24 | 32) => job.run::<Twofish>(),
        _ => return None,
    })
}

fn new_cipher<C: Cipher>(key: &[u8]) -> Result<C, Invalid> {
    C::new_from_slice(key).map_err(|_| Invalid)
}

/// Makes each sector's IV.
struct SectorIvs<'a> {
    iv: &'a IvGen,
    essiv: Option<EssivCipher>,
}

impl<'a> SectorIvs<'a> {
    /// `None` when ESSIV's hash is unknown or the cipher cannot take the hash as a key.
    fn new(spec: &'a Spec, key: &[u8]) -> Option<SectorIvs<'a>> {
        let essiv = match &spec.iv {
            IvGen::Essiv { hash, len } => {
                // ESSIV's key is the hash of the whole key (both XTS halves); the cipher
                // is the same algorithm at the hash's size (AES-256 for sha256).
                let mut salt = Secret::zeroed(*len);
                hash::digest_into(hash, &[key], salt.as_mut_bytes()).ok()?;
                Some(EssivCipher::new(spec.cipher, salt.as_bytes())?)
            }
            _ => None,
        };
        Some(SectorIvs { iv: &spec.iv, essiv })
    }

    fn iv(&self, sector: u64) -> Array<u8, U16> {
        let mut iv = Array::<u8, U16>::default();
        match self.iv {
            IvGen::None | IvGen::Null => {}
            IvGen::Plain => {
                // Truncation to 32 bits is what `plain` means.
                let low = (sector & 0xffff_ffff) as u32;
                if let Some(dst) = iv.get_mut(..4) {
                    dst.copy_from_slice(&low.to_le_bytes());
                }
            }
            IvGen::Plain64 => {
                if let Some(dst) = iv.get_mut(..8) {
                    dst.copy_from_slice(&sector.to_le_bytes());
                }
            }
            IvGen::Plain64Be => {
                if let Some(dst) = iv.get_mut(8..) {
                    dst.copy_from_slice(&sector.to_be_bytes());
                }
            }
            IvGen::Essiv { .. } => {
                if let Some(dst) = iv.get_mut(..8) {
                    dst.copy_from_slice(&sector.to_le_bytes());
                }
                if let Some(c) = &self.essiv {
                    c.encrypt(&mut iv);
                }
            }
        }
        iv
    }
}

/// ESSIV's cipher, whose key size follows the hash rather than the data key.
enum EssivCipher {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
    Serpent(Serpent),
    Twofish(Twofish),
}

impl EssivCipher {
    fn new(name: CipherName, key: &[u8]) -> Option<EssivCipher> {
        Some(match (name, key.len()) {
            (CipherName::Aes, 16) => EssivCipher::Aes128(new_cipher(key).ok()?),
            (CipherName::Aes, 24) => EssivCipher::Aes192(new_cipher(key).ok()?),
            (CipherName::Aes, 32) => EssivCipher::Aes256(new_cipher(key).ok()?),
            (CipherName::Serpent, _) => EssivCipher::Serpent(new_cipher(key).ok()?),
            (CipherName::Twofish, _) => EssivCipher::Twofish(new_cipher(key).ok()?),
            _ => return None,
        })
    }

    fn encrypt(&self, block: &mut Array<u8, U16>) {
        match self {
            EssivCipher::Aes128(c) => c.encrypt_block(block),
            EssivCipher::Aes192(c) => c.encrypt_block(block),
            EssivCipher::Aes256(c) => c.encrypt_block(block),
            EssivCipher::Serpent(c) => c.encrypt_block(block),
            EssivCipher::Twofish(c) => c.encrypt_block(block),
        }
    }
}

fn sectors(data: &mut [u8]) -> impl Iterator<Item = (u64, &mut [u8])> {
    data.chunks_exact_mut(SECTOR_SIZE).zip(0u64..).map(|(s, n)| (n, s))
}

struct XtsJob<'a> {
    k1: &'a [u8],
    k2: &'a [u8],
    ivs: &'a SectorIvs<'a>,
    data: &'a mut [u8],
}

impl Job for XtsJob<'_> {
    fn run<C: Cipher>(self) -> Result<(), Invalid> {
        let xts = Xts128::new(new_cipher::<C>(self.k1)?, new_cipher::<C>(self.k2)?);
        let ivs = self.ivs;
        for (n, sector) in sectors(self.data) {
            // The IV is XTS's tweak input; xts-mode encrypts it with the second key half.
            let mut tweak = ivs.iv(n);
            xts.decrypt_sector(sector, tweak);
            tweak.zeroize();
        }
        Ok(())
    }
}

struct CbcJob<'a> {
    key: &'a [u8],
    ivs: &'a SectorIvs<'a>,
    data: &'a mut [u8],
}

impl Job for CbcJob<'_> {
    fn run<C: Cipher>(self) -> Result<(), Invalid> {
        let c = new_cipher::<C>(self.key)?;
        let ivs = self.ivs;
        for (n, sector) in sectors(self.data) {
            let mut iv = ivs.iv(n);
            let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(sector);
            cbc::Decryptor::<&C>::inner_iv_init(&c, &iv).decrypt_blocks(blocks);
            iv.zeroize();
        }
        Ok(())
    }
}

struct EcbJob<'a> {
    key: &'a [u8],
    data: &'a mut [u8],
}

impl Job for EcbJob<'_> {
    fn run<C: Cipher>(self) -> Result<(), Invalid> {
        let c = new_cipher::<C>(self.key)?;
        let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(self.data);
        c.decrypt_blocks(blocks);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// Two sectors of a fixed pattern, as a ciphertext.
    fn ciphertext() -> Vec<u8> {
        (0..1024u32).map(|i| ((i * 7 + 3) % 256) as u8).collect()
    }

    fn key(len: u8) -> Vec<u8> {
        (0..len).collect()
    }

    #[test]
    fn aes_modes_match_an_independent_implementation() {
        // SHA-256 of the two decrypted sectors, computed with Python's `cryptography` (OpenSSL)
        // with the IVs spelled out by hand: plain/plain64 = sector number little-endian,
        // essiv:sha256 = AES-256-ECB under sha256(key) of the little-endian sector number.
        let cases = [
            ("aes-xts-plain64", 64, "a592aa3e163efb74856aaa27e236df4d9baa308ebecc36329597f077abadb619"),
            ("aes-xts-plain64", 32, "00020abc93d6314d1da9e9fbaa883bfeafd3e42ffbbd9aa1a48d0bd9881eec34"),
            ("aes-xts-plain", 64, "a592aa3e163efb74856aaa27e236df4d9baa308ebecc36329597f077abadb619"),
            ("aes-xts-essiv:sha256", 64, "ab28c4076cf9e10c07acf8fc01d365a38093b8ba2767adb95b47391224fcb094"),
            ("aes-cbc-essiv:sha256", 32, "77b77c54bbfc6760e25c42de6eb6ead9a6cf2bf3f990cdb0fb4133ae97ef5da0"),
            ("aes-cbc-essiv:sha256", 16, "f138a38be61619410890ba26b153067ff188b2425f4e1119ad4e45acde1459da"),
            ("aes-cbc-plain", 32, "14802a6aa6be46319b80eefc20a55da242b797c1f5d6f92bc1033466d7d59f33"),
            ("aes-cbc-plain64", 16, "6aedb9f516a9576b2cf2480c766e1e70a4ba3d712ba1399ddcab204d2ac05cf5"),
            ("aes-ecb", 32, "20cccefd07f42d21ee250b479d7ee707f3e9452609744b6f38f0533a4fadd773"),
        ];
        let mut failures = Vec::new();
        for (spec, key_len, want) in cases {
            let mut data = ciphertext();
            decrypt(spec, &key(key_len), &mut data).unwrap();
            let got: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
            if got != want {
                failures.push(format!("{spec} with a {key_len}-byte key: {got}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn the_iv_counts_sectors_from_the_area_start() {
        // Decrypting sector 1 alone (as sector 0) differs from decrypting it in place.
        let mut whole = ciphertext();
        decrypt("aes-xts-plain64", &key(64), &mut whole).unwrap();
        let mut second = ciphertext()[512..].to_vec();
        decrypt("aes-xts-plain64", &key(64), &mut second).unwrap();
        assert_ne!(second, whole[512..]);
        let mut first = ciphertext()[..512].to_vec();
        decrypt("aes-xts-plain64", &key(64), &mut first).unwrap();
        assert_eq!(first, whole[..512]);
    }

    #[test]
    fn serpent_and_twofish_decrypt_with_their_key_sizes() {
        // Their correctness against cryptsetup is the corpus's LUKS1 serpent/twofish images.
        for spec in
            ["serpent-xts-plain64", "twofish-xts-plain64", "serpent-cbc-essiv:sha256", "twofish-cbc-plain"]
        {
            let key_len = if spec.contains("xts") { 64 } else { 32 };
            let mut data = ciphertext();
            decrypt(spec, &key(key_len), &mut data).unwrap();
            assert_ne!(data, ciphertext(), "{spec}");
        }
    }

    #[test]
    fn unsupported_specs_are_named() {
        for spec in [
            "aes-lrw-plain64",
            "aes-cbc-benbi",
            "camellia-xts-plain64",
            "aes-xts",
            "aes-ecb-plain",
            "capi:xts(aes)-plain64",
            "aes-cbc-essiv:md5",
            "",
        ] {
            let err = decrypt(spec, &key(32), &mut ciphertext()).unwrap_err();
            assert_eq!(err, AreaError::UnsupportedCipher { spec: spec.to_owned() });
            assert!(err.to_string().contains(&format!("{spec:?}")), "{err}");
            assert!(!is_supported(spec));
        }
    }

    #[test]
    fn every_cipher_wipes_its_key_schedule_on_drop() {
        // A key schedule is key material: each cipher an area key is expanded into must wipe
        // it when dropped (for serpent and twofish only with their own `zeroize` feature).
        fn wiped_on_drop<T: cipher::zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Aes128>();
        wiped_on_drop::<Aes192>();
        wiped_on_drop::<Aes256>();
        wiped_on_drop::<Serpent>();
        wiped_on_drop::<Twofish>();
    }

    #[test]
    fn wrong_key_sizes_and_partial_sectors_are_errors() {
        let err = decrypt("aes-cbc-plain", &key(20), &mut ciphertext()).unwrap_err();
        assert_eq!(err, AreaError::KeySize { spec: "aes-cbc-plain".into(), key_size: 20 });
        let err = decrypt("aes-xts-plain64", &key(33), &mut ciphertext()).unwrap_err();
        assert_eq!(err, AreaError::KeySize { spec: "aes-xts-plain64".into(), key_size: 33 });
        let err = decrypt("aes-xts-plain64", &key(64), &mut ciphertext()[..100]).unwrap_err();
        assert_eq!(err, AreaError::NotWholeSectors { len: 100 });
    }
}
