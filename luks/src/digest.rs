//! Volume-key verification: PBKDF2 of a candidate key against a header digest, compared in constant time.

use zeroize::Zeroize;

use crate::hash::{self, UnsupportedHash};
use crate::model::Digest;
use crate::secret::ct_eq;

/// Bytes of every LUKS salt (cryptsetup's `LUKS_SALTSIZE`).
pub const SALT_LEN: usize = 32;
/// Bytes of a LUKS1 digest (`LUKS_DIGESTSIZE`); a LUKS2 digest has this length or its hash's.
pub const LUKS1_DIGEST_LEN: usize = 20;

/// Why a digest cannot verify anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {digest}: {source}")]
    UnsupportedHash { digest: u32, source: UnsupportedHash },
    #[error("digest {digest} is empty or has zero iterations")]
    Empty { digest: u32 },
    #[error("digest {digest}: a salt of {len} bytes, not {SALT_LEN}")]
    Salt { digest: u32, len: usize },
    #[error("digest {digest}: {len} bytes, neither {LUKS1_DIGEST_LEN} nor the {hash_len} of {hash}")]
    Length { digest: u32, len: usize, hash: String, hash_len: usize },
}

/// Whether `digest` can verify a key at all, as cryptsetup's `PBKDF2_digest_verify` requires:
/// a supported hash, iterations, a 32-byte salt, and a stored digest of 20 bytes or the hash's
/// whole output. (A shorter one would take wrong keys now and then; cryptsetup 2.6.1 takes
/// every key for such a digest, a bug not copied here.)
pub fn check(digest: &Digest) -> Result<(), DigestError> {
    let id = digest.id;
    let hash_len = digest
        .hash
        .output_len()
        .ok_or_else(|| UnsupportedHash { name: digest.hash.name().to_owned() })
        .map_err(|source| DigestError::UnsupportedHash { digest: id, source })?;
    // An empty stored digest would match everything.
    if digest.digest.is_empty() || digest.iterations == 0 {
        return Err(DigestError::Empty { digest: id });
    }
    if digest.salt.len() != SALT_LEN {
        return Err(DigestError::Salt { digest: id, len: digest.salt.len() });
    }
    let len = digest.digest.len();
    if len != LUKS1_DIGEST_LEN && len != hash_len {
        let hash = digest.hash.name().to_owned();
        return Err(DigestError::Length { digest: id, len, hash, hash_len });
    }
    Ok(())
}

/// Whether `candidate` is the key `digest` was made from: PBKDF2 with the digest's hash,
/// salt and iterations, as long as the stored digest, compared without an early exit.
pub fn verify(digest: &Digest, candidate: &[u8]) -> Result<bool, DigestError> {
    check(digest)?;
    let mut computed = vec![0u8; digest.digest.len()];
    let result = hash::pbkdf2(&digest.hash, candidate, &digest.salt, digest.iterations, &mut computed)
        .map_err(|source| DigestError::UnsupportedHash { digest: digest.id, source })
        .map(|()| ct_eq(&computed, &digest.digest));
    computed.zeroize();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HashAlg;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Salt 00 01 .. 1f, 2 iterations: Python's `hashlib.pbkdf2_hmac`.
    const SHA1_PASSWORD: &str = "4d92e50e440e6effd137c907dc008632c0ddb66e";
    const SHA256_PASSWORD: &str = "345d34d95c29aa6c5c739f942c399545620d5d4bcfbe64e8558f89325208276f";

    fn digest(hash: HashAlg, stored: Vec<u8>) -> Digest {
        Digest {
            id: 3,
            keyslots: vec![0],
            segments: vec![0],
            hash,
            iterations: 2,
            salt: (0..32).collect(),
            digest: stored,
        }
    }

    #[test]
    fn accepts_the_key_the_digest_was_made_from_and_nothing_else() {
        let d = digest(HashAlg::Sha1, hex(SHA1_PASSWORD));
        assert_eq!(verify(&d, b"password"), Ok(true));
        assert_eq!(verify(&d, b"passwore"), Ok(false));
        assert_eq!(verify(&d, b""), Ok(false));
        // The same key under another hash is another digest.
        assert_eq!(verify(&digest(HashAlg::Sha256, hex(SHA1_PASSWORD)), b"password"), Ok(false));
        // LUKS2 stores the hash's whole output, or 20 bytes of it (LUKS1's digest size).
        assert_eq!(verify(&digest(HashAlg::Sha256, hex(SHA256_PASSWORD)), b"password"), Ok(true));
        assert_eq!(verify(&digest(HashAlg::Sha256, hex(&SHA256_PASSWORD[..40])), b"password"), Ok(true));
    }

    #[test]
    fn an_empty_digest_verifies_nothing() {
        assert_eq!(verify(&digest(HashAlg::Sha1, vec![]), b"x"), Err(DigestError::Empty { digest: 3 }));
    }

    #[test]
    fn a_digest_of_another_length_than_luks_writes_verifies_nothing() {
        // A 1-byte digest would take a wrong key one time in 256 (cryptsetup 2.6.1 even takes
        // every key: its check returns success without comparing). Only 20 bytes or the
        // hash's output length, as in cryptsetup's PBKDF2_digest_verify.
        let sha256 = hex(SHA256_PASSWORD);
        for len in [1, 19, 24, 31] {
            let d = digest(HashAlg::Sha256, sha256[..len].to_vec());
            assert_eq!(
                verify(&d, b"password"),
                Err(DigestError::Length { digest: 3, len, hash: "sha256".into(), hash_len: 32 }),
                "{len}"
            );
        }
        let mut long = sha256.clone();
        long.extend_from_slice(&sha256);
        let err = verify(&digest(HashAlg::Sha256, long), b"password").unwrap_err();
        assert_eq!(err.to_string(), "digest 3: 64 bytes, neither 20 nor the 32 of sha256");
    }

    #[test]
    fn a_salt_of_another_length_than_32_bytes_verifies_nothing() {
        let mut d = digest(HashAlg::Sha1, hex(SHA1_PASSWORD));
        d.salt.truncate(16);
        assert_eq!(verify(&d, b"password"), Err(DigestError::Salt { digest: 3, len: 16 }));
        assert_eq!(check(&d), Err(DigestError::Salt { digest: 3, len: 16 }));
    }

    #[test]
    fn an_unsupported_hash_is_named() {
        let err = verify(&digest(HashAlg::from_name("md5"), vec![0; 16]), b"x").unwrap_err();
        assert_eq!(err.to_string(), "digest 3: unsupported hash \"md5\"");
    }
}
