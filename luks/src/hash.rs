//! The hashes LUKS headers name, dispatched at run time: PBKDF2-HMAC over each, and plain digests.

use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, KeyInit};
use sha2::digest::{Digest, FixedOutput, Update};
use zeroize::Zeroize;

use crate::model::HashAlg;

/// Largest digest of any supported hash (SHA-512, Whirlpool).
pub const MAX_DIGEST_LEN: usize = 64;

/// The header names a hash this build does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported hash {name:?}")]
pub struct UnsupportedHash {
    pub name: String,
}

/// Runs `$body` with the type alias `$d` bound to the hash type `$alg` names.
macro_rules! with_hash {
    ($alg:expr, $d:ident => $body:expr) => {
        match $alg {
            HashAlg::Sha1 => {
                type $d = sha1::Sha1;
                Ok($body)
            }
            HashAlg::Sha224 => {
                type $d = sha2::Sha224;
                Ok($body)
            }
            HashAlg::Sha256 => {
                type $d = sha2::Sha256;
                Ok($body)
            }
            HashAlg::Sha384 => {
                type $d = sha2::Sha384;
                Ok($body)
            }
            HashAlg::Sha512 => {
                type $d = sha2::Sha512;
                Ok($body)
            }
            HashAlg::Ripemd160 => {
                type $d = ripemd::Ripemd160;
                Ok($body)
            }
            HashAlg::Whirlpool => {
                type $d = whirlpool::Whirlpool;
                Ok($body)
            }
            HashAlg::Unsupported(name) => Err(UnsupportedHash { name: name.clone() }),
        }
    };
}

/// Hashes the concatenation of `parts` and writes the first `out.len()` bytes of the digest
/// to `out` (the rest of `out`, if it is longer than the digest, is left as it was).
/// Truncation is what the AF diffuser and the kernel's `wp256`-style names need.
pub fn digest_into(alg: &HashAlg, parts: &[&[u8]], out: &mut [u8]) -> Result<(), UnsupportedHash> {
    with_hash!(alg, D => digest_into_with::<D>(parts, out))
}

fn digest_into_with<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
    let mut h = D::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    let mut full = h.finalize();
    let n = out.len().min(full.len());
    if let (Some(dst), Some(src)) = (out.get_mut(..n), full.get(..n)) {
        dst.copy_from_slice(src);
    }
    full.as_mut_slice().zeroize();
}

/// PBKDF2 (RFC 8018) with HMAC over `alg`, filling all of `out`.
///
/// When `out` spans several hash-sized blocks (a 64-byte key from SHA-1 or SHA-256) the
/// blocks are independent, so they are computed on parallel threads: cryptsetup computes them
/// one after the other, and at boot every core is idle while we wait.
pub fn pbkdf2(
    alg: &HashAlg,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out: &mut [u8],
) -> Result<(), UnsupportedHash> {
    with_hash!(alg, D => pbkdf2_with::<D>(password, salt, iterations, out))
}

fn pbkdf2_with<D>(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8])
where
    D: hmac::EagerHash,
    Hmac<D>: Send + Sync,
{
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let Ok(prf) = <Hmac<D> as KeyInit>::new_from_slice(password) else {
        return;
    };
    let block_len = <D as sha2::digest::OutputSizeUser>::output_size();
    let blocks: Vec<(u32, &mut [u8])> =
        out.chunks_mut(block_len).enumerate().map(|(i, c)| (block_index(i), c)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(blocks.len());
    // A shared queue of blocks: each worker takes the next until none is left, so a thread
    // that cannot be spawned only means fewer workers, never a missing block.
    let queue = Mutex::new(blocks);
    let work = || {
        loop {
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some((i, chunk)) = next else { break };
            pbkdf2_block(&prf, salt, iterations, i, chunk);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            if std::thread::Builder::new().name("pbkdf2".into()).spawn_scoped(s, work).is_err() {
                log::debug!("pbkdf2: could not spawn a thread; fewer blocks run in parallel");
                break;
            }
        }
        work();
    });
}

/// PBKDF2 numbers its blocks from 1, as a 32-bit big-endian integer.
fn block_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1)
}

/// One PBKDF2 block: T_i = U_1 ^ ... ^ U_c, U_1 = PRF(P, S || INT(i)), U_j = PRF(P, U_{j-1}).
fn pbkdf2_block<M>(prf: &M, salt: &[u8], iterations: u32, index: u32, chunk: &mut [u8])
where
    M: Update + FixedOutput + Clone,
{
    let mut mac = prf.clone();
    mac.update(salt);
    mac.update(&index.to_be_bytes());
    let mut u = mac.finalize_fixed();
    xor_into(chunk, &u);
    for _ in 1..iterations {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize_fixed();
        xor_into(chunk, &u);
    }
    u.as_mut_slice().zeroize();
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}
