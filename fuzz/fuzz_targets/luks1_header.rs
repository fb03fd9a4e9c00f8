//! The LUKS1 header parser never panics on any bytes behind the LUKS1 magic, and a header it
//! accepts keeps every keyslot area on the device and dumps.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use luks::header::{self, MAGIC};

/// The device is larger than the input: reads past the input end like a short device, and
/// the keyslot areas a small seed's header names still fit.
const DEVICE: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let mut dev = data.to_vec();
    // Keep the fuzzer in the LUKS1 parser: magic and version 1 in front.
    let prefix = [&MAGIC[..], &1u16.to_be_bytes()].concat();
    let n = prefix.len().min(dev.len());
    dev[..n].copy_from_slice(&prefix[..n]);
    let size = (dev.len() as u64).max(DEVICE);
    let Ok(h) = header::read(&mut Cursor::new(dev), size) else { return };
    for k in &h.keyslots {
        assert!(k.area.offset.checked_add(k.area.size).is_some_and(|end| end <= size), "{k:?}");
    }
    let _ = luks::dump::text(&h);
    luks::dump::json(&h).expect("a summary holds strings, numbers and lists: it always converts");
});
