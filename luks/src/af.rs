//! LUKS's anti-forensic splitter: merging `stripes` diffused blocks back into one key.

use zeroize::Zeroize;

use crate::hash::{self, MAX_DIGEST_LEN, UnsupportedHash};
use crate::model::HashAlg;
use crate::secret::Secret;

/// Bytes in the sectors the split material is stored and encrypted in.
pub const SECTOR_SIZE: usize = 512;
/// The stripes every keyslot is split into. cryptsetup reads and merges exactly this many
/// (`LUKS_STRIPES`) whatever a LUKS2 keyslot's `af.stripes` says, and LUKS1 requires it.
pub const STRIPES: u32 = 4000;

/// Why split material could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AfError {
    #[error(transparent)]
    UnsupportedHash(#[from] UnsupportedHash),
    #[error("split material of {len} bytes is shorter than {stripes} stripes of {key_size} bytes")]
    TooShort { len: usize, stripes: u32, key_size: usize },
    #[error("{stripes} stripes of {key_size} bytes is not a valid split")]
    BadGeometry { stripes: u32, key_size: usize },
}

/// Bytes the split material of a `key_size`-byte key in `stripes` stripes occupies on disk:
/// whole 512-byte sectors, as cryptsetup's `AF_split_sectors` rounds it. `None` on overflow.
pub fn split_len(key_size: usize, stripes: u32) -> Option<usize> {
    let raw = key_size.checked_mul(usize::try_from(stripes).ok()?)?;
    raw.div_ceil(SECTOR_SIZE).checked_mul(SECTOR_SIZE)
}

/// Merges `split` (at least `stripes * key_size` bytes) into the `key_size`-byte key: the
/// XOR of the first `stripes - 1` stripes, each folded in and diffused with `hash`, XORed with
/// the last stripe.
pub fn merge(split: &[u8], key_size: usize, stripes: u32, hash: &HashAlg) -> Result<Secret, AfError> {
    let geometry = AfError::BadGeometry { stripes, key_size };
    if key_size == 0 || stripes == 0 {
        return Err(geometry);
    }
    let digest_len = hash.output_len().ok_or_else(|| UnsupportedHash { name: hash.name().to_owned() })?;
    let needed = usize::try_from(stripes).ok().and_then(|s| s.checked_mul(key_size)).ok_or(geometry)?;
    let too_short = AfError::TooShort { len: split.len(), stripes, key_size };
    let material = split.get(..needed).ok_or(too_short)?;

    let mut acc = Secret::zeroed(key_size);
    let mut chunks = material.chunks_exact(key_size);
    let last = chunks.next_back().unwrap_or_default();
    for stripe in chunks {
        xor_into(acc.as_mut_bytes(), stripe);
        diffuse(acc.as_mut_bytes(), hash, digest_len)?;
    }
    xor_into(acc.as_mut_bytes(), last);
    Ok(acc)
}

/// Replaces each digest-sized piece `i` of `buf` by H(be32(i) || piece), the final short
/// piece by the matching prefix of its hash.
fn diffuse(buf: &mut [u8], hash: &HashAlg, digest_len: usize) -> Result<(), UnsupportedHash> {
    let mut tmp = [0u8; MAX_DIGEST_LEN];
    let result = (|| {
        for (i, piece) in buf.chunks_mut(digest_len).enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
            let out = tmp.get_mut(..piece.len()).unwrap_or_default();
            hash::digest_into(hash, &[&index, piece], out)?;
            piece.copy_from_slice(out);
        }
        Ok(())
    })();
    tmp.zeroize();
    result
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Test support: the inverse of `merge`, so other modules' tests can build keyslots.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The inverse of `merge`, as cryptsetup's `AF_split` does it with the random stripes
    /// given: the last stripe is the key XORed with the diffused fold of the others.
    pub(crate) fn split(key: &[u8], random: &[u8], stripes: u32, hash: &HashAlg) -> Vec<u8> {
        let n = key.len();
        let mut out = random[..n * (stripes as usize - 1)].to_vec();
        let mut acc = vec![0u8; n];
        for stripe in out.chunks_exact(n) {
            xor_into(&mut acc, stripe);
            diffuse(&mut acc, hash, hash.output_len().unwrap()).unwrap();
        }
        xor_into(&mut acc, key);
        out.extend_from_slice(&acc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::split;
    use super::*;

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn merge_undoes_split_for_every_hash_and_odd_key_sizes() {
        let hashes = [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
            HashAlg::Ripemd160,
            HashAlg::Whirlpool,
        ];
        for hash in &hashes {
            for key_size in [16, 32, 33, 64, 65] {
                let key = pseudo_random(key_size + 7)[7..].to_vec();
                let split = split(&key, &pseudo_random(key_size * 4000), 4000, hash);
                let merged = merge(&split, key_size, 4000, hash).unwrap();
                assert_eq!(merged.as_bytes(), key, "{hash:?} {key_size}");
            }
        }
    }

    #[test]
    fn merge_matches_a_fixed_result() {
        // Two stripes of 0x01.., 0x02.. (32 bytes, sha256): key = H(be32(0) || 0x01*32) ^ 0x02*32.
        let mut split = vec![1u8; 32];
        split.extend_from_slice(&[2u8; 32]);
        let merged = merge(&split, 32, 2, &HashAlg::Sha256).unwrap();
        // (printf '\0\0\0\0'; head -c 32 /dev/zero | tr '\0' '\1') | sha256sum, each byte ^ 0x02.
        let digest = "d73881357a17e616751b4a974b3f7f15ab9d85c28d34bbb760762f8bd3ece43a";
        let want: Vec<u8> =
            (0..32).map(|i| u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap() ^ 2).collect();
        assert_eq!(merged.as_bytes(), want);
    }

    #[test]
    fn one_stripe_is_the_key_itself() {
        let merged = merge(&[9u8; 20], 20, 1, &HashAlg::Sha1).unwrap();
        assert_eq!(merged.as_bytes(), [9u8; 20]);
    }

    #[test]
    fn short_material_and_bad_geometry_are_errors() {
        assert_eq!(
            merge(&[0u8; 100], 32, 4000, &HashAlg::Sha256).unwrap_err(),
            AfError::TooShort { len: 100, stripes: 4000, key_size: 32 }
        );
        assert!(matches!(merge(&[0u8; 100], 0, 4000, &HashAlg::Sha256), Err(AfError::BadGeometry { .. })));
        assert!(matches!(merge(&[0u8; 100], 32, 0, &HashAlg::Sha256), Err(AfError::BadGeometry { .. })));
        let err = merge(&[0u8; 64], 32, 2, &HashAlg::from_name("md4")).unwrap_err();
        assert!(err.to_string().contains("md4"), "{err}");
    }

    #[test]
    fn split_len_rounds_to_whole_sectors() {
        assert_eq!(split_len(32, 4000), Some(128_000));
        assert_eq!(split_len(64, 4000), Some(256_000));
        assert_eq!(split_len(16, 4000), Some(64_000));
        assert_eq!(split_len(20, 1), Some(512));
        assert_eq!(split_len(usize::MAX, 2), None);
    }
}
