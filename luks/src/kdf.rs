//! Keyslot key derivation: PBKDF2 and Argon2i/Argon2id (all lanes in parallel), output into a `Secret`.

use crate::hash::{self, UnsupportedHash};
use crate::model::Kdf;
use crate::secret::Secret;

/// cryptsetup's ceiling for Argon2 memory: 4 GiB, in KiB.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Argon2's own ceiling for lanes (`cpus`). cryptsetup formats with at most 4 but opens any
/// count, and so do we: lanes only split the work, the memory cost is what is capped.
pub const MAX_ARGON2_LANES: u32 = argon2::Params::MAX_P_COST;

/// Why a key could not be derived. None of these carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdfError {
    #[error(transparent)]
    UnsupportedHash(#[from] UnsupportedHash),
    #[error("unsupported key derivation function {name:?}")]
    UnsupportedKdf { name: String },
    #[error("{kdf} with {iterations} iterations (time cost) is not allowed")]
    ZeroIterations { kdf: &'static str, iterations: u32 },
    #[error("argon2 memory cost {memory_kib} KiB is over the {limit_kib} KiB limit")]
    MemoryLimit { memory_kib: u32, limit_kib: u32 },
    #[error("argon2 with {lanes} lanes is outside 1..={limit}")]
    LanesLimit { lanes: u32, limit: u32 },
    #[error("argon2 needs {memory_kib} KiB of memory but this machine has only {total_kib} KiB in total")]
    NotEnoughMemory { memory_kib: u32, total_kib: u64 },
    #[error("could not allocate {memory_kib} KiB for argon2")]
    OutOfMemory { memory_kib: u32 },
    #[error("argon2 refused its parameters: {reason}")]
    Argon2 { reason: String },
}

/// Derives `key_len` bytes from `secret` as `kdf` says.
pub fn derive(kdf: &Kdf, secret: &[u8], key_len: usize) -> Result<Secret, KdfError> {
    let mut out = Secret::zeroed(key_len);
    match kdf {
        Kdf::Pbkdf2 { hash, iterations, salt } => {
            if *iterations == 0 {
                return Err(KdfError::ZeroIterations { kdf: "pbkdf2", iterations: 0 });
            }
            hash::pbkdf2(hash, secret, salt, *iterations, out.as_mut_bytes())?;
        }
        Kdf::Argon2i { time, memory_kib, cpus, salt } => {
            let p =
                Argon2Params { variant: argon2::Algorithm::Argon2i, time: *time, memory_kib: *memory_kib };
            argon2(p, *cpus, secret, salt, out.as_mut_bytes())?;
        }
        Kdf::Argon2id { time, memory_kib, cpus, salt } => {
            let p =
                Argon2Params { variant: argon2::Algorithm::Argon2id, time: *time, memory_kib: *memory_kib };
            argon2(p, *cpus, secret, salt, out.as_mut_bytes())?;
        }
        Kdf::Unsupported { name } => return Err(KdfError::UnsupportedKdf { name: name.clone() }),
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Argon2Params {
    variant: argon2::Algorithm,
    time: u32,
    memory_kib: u32,
}

fn argon2(p: Argon2Params, lanes: u32, secret: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), KdfError> {
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        check_memory(p.memory_kib, &meminfo)?;
    }
    argon2_keyed(p, lanes, secret, salt, &[], &[], out)
}

/// Argon2 with its optional key ("secret") and associated data, which LUKS leaves empty; they
/// are parameters only so the RFC 9106 vectors run through this same function.
fn argon2_keyed(
    p: Argon2Params,
    lanes: u32,
    secret: &[u8],
    salt: &[u8],
    key: &[u8],
    ad: &[u8],
    out: &mut [u8],
) -> Result<(), KdfError> {
    let name = match p.variant {
        argon2::Algorithm::Argon2i => "argon2i",
        argon2::Algorithm::Argon2d => "argon2d",
        argon2::Algorithm::Argon2id => "argon2id",
    };
    if p.time == 0 {
        return Err(KdfError::ZeroIterations { kdf: name, iterations: 0 });
    }
    if p.memory_kib > MAX_ARGON2_MEMORY_KIB {
        return Err(KdfError::MemoryLimit { memory_kib: p.memory_kib, limit_kib: MAX_ARGON2_MEMORY_KIB });
    }
    if !(1..=MAX_ARGON2_LANES).contains(&lanes) {
        return Err(KdfError::LanesLimit { lanes, limit: MAX_ARGON2_LANES });
    }
    let refused = |e: argon2::Error| KdfError::Argon2 { reason: e.to_string() };
    let ad = argon2::AssociatedData::new(ad).map_err(refused)?;
    let params = argon2::ParamsBuilder::new()
        .m_cost(p.memory_kib)
        .t_cost(p.time)
        .p_cost(lanes)
        .output_len(out.len())
        .data(ad)
        .build()
        .map_err(refused)?;
    // With the `parallel` feature the lanes of each slice run on rayon's pool, one thread per
    // core.
    let ctx =
        argon2::Argon2::new_with_secret(key, p.variant, argon2::Version::V0x13, params).map_err(refused)?;
    ctx.hash_password_into(secret, salt, out).map_err(|e| match e {
        argon2::Error::OutOfMemory => KdfError::OutOfMemory { memory_kib: p.memory_kib },
        e => refused(e),
    })
}

/// Refuses a memory cost larger than all of this machine's RAM (`meminfo` is /proc/meminfo):
/// the allocation would succeed (Linux overcommits) and the OOM killer would end the boot
/// instead of an error. More than what is available now only warns, as cryptsetup does:
/// caches can still be reclaimed.
fn check_memory(memory_kib: u32, meminfo: &str) -> Result<(), KdfError> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.get(name.len()..)?.trim().trim_end_matches("kB").trim().parse().ok()
    };
    if let Some(total_kib) = field("MemTotal:")
        && u64::from(memory_kib) > total_kib
    {
        return Err(KdfError::NotEnoughMemory { memory_kib, total_kib });
    }
    if let Some(available_kib) = field("MemAvailable:")
        && u64::from(memory_kib) > available_kib
    {
        log::warn!(
            "argon2 needs {memory_kib} KiB of memory, more than the {available_kib} KiB available now; \
             unlocking may fail"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HashAlg;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn pbkdf2(hash: HashAlg, pass: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
        let kdf = Kdf::Pbkdf2 { hash, iterations, salt: salt.to_vec() };
        derive(&kdf, pass, len).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn pbkdf2_sha1_matches_rfc_6070() {
        // (password, salt, iterations, output length, expected)
        type Vector = (&'static [u8], &'static [u8], u32, usize, &'static str);
        let cases: [Vector; 5] = [
            (b"password", b"salt", 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
            (b"password", b"salt", 2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
            (b"password", b"salt", 4096, 20, "4b007901b765489abead49d926f721d065a429c1"),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                25,
                "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
            ),
            (b"pass\0word", b"sa\0lt", 4096, 16, "56fa6aa75548099dcc37d7f03425e0c3"),
        ];
        for (pass, salt, iterations, len, want) in cases {
            assert_eq!(pbkdf2(HashAlg::Sha1, pass, salt, iterations, len), hex(want), "{iterations} {len}");
        }
    }

    #[test]
    fn pbkdf2_sha256_matches_known_vectors() {
        // From RFC 7914 section 11 (PBKDF2-HMAC-SHA256 with a 64-byte output: two blocks,
        // which run on two threads when there are two cores).
        let want = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                    49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783";
        assert_eq!(pbkdf2(HashAlg::Sha256, b"passwd", b"salt", 1, 64), hex(want));
        let want = "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
                    a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d";
        assert_eq!(pbkdf2(HashAlg::Sha256, b"Password", b"NaCl", 80000, 64), hex(want));
        // The widely published 32-byte vector (one block).
        let want = "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a";
        assert_eq!(pbkdf2(HashAlg::Sha256, b"password", b"salt", 4096, 32), hex(want));
    }

    #[test]
    fn pbkdf2_output_longer_than_a_block_equals_its_prefix_extension() {
        // Each block depends only on its index: the first 20 bytes of a 100-byte output are
        // the 20-byte output, whatever threads computed the rest.
        for hash in [HashAlg::Sha1, HashAlg::Sha512, HashAlg::Ripemd160, HashAlg::Whirlpool] {
            let long = pbkdf2(hash.clone(), b"pw", b"saltsalt", 3, 100);
            let short = pbkdf2(hash.clone(), b"pw", b"saltsalt", 3, 20);
            assert_eq!(long[..20], short[..], "{hash:?}");
            assert_ne!(long[20..40], long[..20], "{hash:?}");
        }
    }

    #[test]
    fn pbkdf2_refuses_an_unsupported_hash_and_zero_iterations() {
        let kdf = Kdf::Pbkdf2 { hash: HashAlg::from_name("md5"), iterations: 1, salt: vec![0; 32] };
        let err = derive(&kdf, b"x", 32).unwrap_err();
        assert_eq!(err, KdfError::UnsupportedHash(UnsupportedHash { name: "md5".into() }));
        assert!(err.to_string().contains("md5"));
        let kdf = Kdf::Pbkdf2 { hash: HashAlg::Sha256, iterations: 0, salt: vec![0; 32] };
        assert!(matches!(derive(&kdf, b"x", 32), Err(KdfError::ZeroIterations { .. })));
    }

    // RFC 9106 section 5 test vectors use a secret and associated data, which LUKS never
    // does; these are the reference implementation's (phc-winner-argon2 `test.c`) vectors
    // without them, version 0x13, t=2, m=65536 KiB, p=1, 32-byte output.
    #[test]
    fn argon2i_matches_the_reference_implementation() {
        let kdf = Kdf::Argon2i { time: 2, memory_kib: 65536, cpus: 1, salt: b"somesalt".to_vec() };
        let want = "c1628832147d9720c5bd1cfd61367078729f6dfb6f8fea9ff98158e0d7816ed0";
        assert_eq!(derive(&kdf, b"password", 32).unwrap().as_bytes(), hex(want));
    }

    #[test]
    fn argon2id_matches_the_reference_implementation() {
        let kdf = Kdf::Argon2id { time: 2, memory_kib: 65536, cpus: 1, salt: b"somesalt".to_vec() };
        let want = "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7";
        assert_eq!(derive(&kdf, b"password", 32).unwrap().as_bytes(), hex(want));
    }

    fn rfc9106(variant: argon2::Algorithm) -> Vec<u8> {
        let p = Argon2Params { variant, time: 3, memory_kib: 32 };
        let mut out = vec![0u8; 32];
        argon2_keyed(p, 4, &[1; 32], &[2; 16], &[3; 8], &[4; 12], &mut out).unwrap();
        out
    }

    #[test]
    fn argon2i_matches_rfc_9106() {
        let want = "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8";
        assert_eq!(rfc9106(argon2::Algorithm::Argon2i), hex(want));
    }

    #[test]
    fn argon2id_matches_rfc_9106() {
        let want = "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659";
        assert_eq!(rfc9106(argon2::Algorithm::Argon2id), hex(want));
    }

    #[test]
    fn argon2_refuses_absurd_costs_before_allocating() {
        let salt = vec![0u8; 32];
        let kdf =
            Kdf::Argon2id { time: 1, memory_kib: MAX_ARGON2_MEMORY_KIB + 1, cpus: 1, salt: salt.clone() };
        assert_eq!(
            derive(&kdf, b"x", 32).unwrap_err(),
            KdfError::MemoryLimit { memory_kib: MAX_ARGON2_MEMORY_KIB + 1, limit_kib: MAX_ARGON2_MEMORY_KIB }
        );
        let kdf = Kdf::Argon2i { time: 1, memory_kib: 1024, cpus: 0, salt: salt.clone() };
        assert!(matches!(derive(&kdf, b"x", 32), Err(KdfError::LanesLimit { lanes: 0, .. })));
        let kdf = Kdf::Argon2i { time: 0, memory_kib: 1024, cpus: 1, salt };
        assert!(matches!(derive(&kdf, b"x", 32), Err(KdfError::ZeroIterations { .. })));
    }

    #[test]
    fn argon2_refuses_more_memory_than_the_machine_has() {
        let meminfo =
            "MemTotal:        1000000 kB\nMemFree:          500000 kB\nMemAvailable:     600000 kB\n";
        assert_eq!(
            check_memory(1_000_001, meminfo),
            Err(KdfError::NotEnoughMemory { memory_kib: 1_000_001, total_kib: 1_000_000 })
        );
        // Over what is available but within the total: a warning, not a refusal.
        assert_eq!(check_memory(700_000, meminfo), Ok(()));
        assert_eq!(check_memory(1024, meminfo), Ok(()));
        // Unknown layout: no basis to refuse.
        assert_eq!(check_memory(u32::MAX, ""), Ok(()));
    }

    #[test]
    fn unsupported_kdf_is_named() {
        let err = derive(&Kdf::Unsupported { name: "argon2".into() }, b"x", 32).unwrap_err();
        assert_eq!(err.to_string(), "unsupported key derivation function \"argon2\"");
    }
}
