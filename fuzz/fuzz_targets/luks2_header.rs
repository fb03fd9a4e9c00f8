//! The LUKS2 reader never panics on any bytes: both binary headers, the secondary scan and
//! the JSON rules. The primary's checksum is recomputed over the mutated bytes so that the
//! fuzzer gets past it into the JSON; the secondary's is left as it is. A header it accepts
//! keeps every keyslot area inside the keyslots area and the device, and dumps.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use luks::header;
use sha2::{Digest, Sha256};

/// The device is larger than the input, as a truncated seed's keyslots area needs.
const DEVICE: u64 = 64 << 20;
const BIN_HDR: usize = 4096;
const CSUM: std::ops::Range<usize> = 448..480;

/// Rewrites the primary copy's SHA-256 checksum, when it names sha256 and its size fits.
fn seal_primary(dev: &mut [u8]) {
    let Some(size) = dev.get(8..16).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))) else {
        return;
    };
    let Ok(size) = usize::try_from(size) else { return };
    if size < BIN_HDR || size > dev.len() || dev.get(72..79) != Some(&b"sha256\0"[..]) {
        return;
    }
    let mut bin = dev[..BIN_HDR].to_vec();
    bin[CSUM].fill(0);
    let mut h = Sha256::new();
    h.update(&bin);
    h.update(&dev[BIN_HDR..size]);
    dev[CSUM].copy_from_slice(&h.finalize());
}

fuzz_target!(|data: &[u8]| {
    let mut dev = data.to_vec();
    seal_primary(&mut dev);
    let size = (dev.len() as u64).max(DEVICE);
    let Ok(h) = header::read(&mut Cursor::new(dev), size) else { return };
    if h.version == luks::model::Version::Luks2 {
        let end = h.metadata_size + h.keyslots_size;
        assert!(end <= size, "metadata and keyslots end at {end}, past the device");
        for k in &h.keyslots {
            assert!(k.area.offset >= h.metadata_size, "{k:?}");
            assert!(k.area.offset.checked_add(k.area.size).is_some_and(|e| e <= end), "{k:?}");
        }
    }
    let _ = luks::dump::text(&h);
    luks::dump::json(&h).expect("a summary holds strings, numbers and lists: it always converts");
});
