//! Volume-key verification: PBKDF2 of a candidate key against a header digest, compared in constant time.

use zeroize::Zeroize;

use crate::hash::{self, UnsupportedHash};
use crate::model::Digest;
use crate::secret::ct_eq;

/// Why a digest cannot verify anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {digest}: {source}")]
    UnsupportedHash { digest: u32, source: UnsupportedHash },
    #[error("digest {digest} is empty or has zero iterations")]
    Empty { digest: u32 },
}

/// Whether `candidate` is the key `digest` was made from: PBKDF2 with the digest's hash,
/// salt and iterations, as long as the stored digest, compared without an early exit.
pub fn verify(digest: &Digest, candidate: &[u8]) -> Result<bool, DigestError> {
    // An empty stored digest would match everything.
    if digest.digest.is_empty() || digest.iterations == 0 {
        return Err(DigestError::Empty { digest: digest.id });
    }
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

    fn digest(hash: HashAlg, stored: Vec<u8>) -> Digest {
        Digest {
            id: 3,
            keyslots: vec![0],
            segments: vec![0],
            hash,
            iterations: 2,
            salt: b"salt".to_vec(),
            digest: stored,
        }
    }

    #[test]
    fn accepts_the_key_the_digest_was_made_from_and_nothing_else() {
        // PBKDF2-HMAC-SHA1("password", "salt", 2, 20), RFC 6070.
        let stored: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(&"ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"[2 * i..2 * i + 2], 16).unwrap()
            })
            .collect();
        let d = digest(HashAlg::Sha1, stored.clone());
        assert_eq!(verify(&d, b"password"), Ok(true));
        assert_eq!(verify(&d, b"passwore"), Ok(false));
        assert_eq!(verify(&d, b""), Ok(false));
        // The same key under another hash is another digest.
        assert_eq!(verify(&digest(HashAlg::Sha256, stored), b"password"), Ok(false));
    }

    #[test]
    fn an_empty_digest_verifies_nothing() {
        assert_eq!(verify(&digest(HashAlg::Sha1, vec![]), b"x"), Err(DigestError::Empty { digest: 3 }));
    }

    #[test]
    fn an_unsupported_hash_is_named() {
        let err = verify(&digest(HashAlg::from_name("md5"), vec![0; 16]), b"x").unwrap_err();
        assert_eq!(err.to_string(), "digest 3: unsupported hash \"md5\"");
    }
}
