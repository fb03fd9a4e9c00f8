//! Key-file regions never panic, the seekable and the streamed reader agree, and both give exactly the bytes cryptsetup's `--keyfile-offset`/`--keyfile-size` rules select.
//!
//! Input: `flags: u8` (bit 0: a size is given), `offset: u32 LE`, `size: u32 LE`, `chunk: u8`
//! (the most bytes the streamed reader hands out per read, 0 meaning 1), then the file.
#![no_main]

use std::io::{self, Cursor, Read};
use std::path::Path;

use initrd_tool::keyfile::{Region, RegionError, read_region, read_region_stream};
use libfuzzer_sys::fuzz_target;

/// The largest key file (luks::secret::MAX_KEY_FILE).
const MAX: u64 = 8 * 1024 * 1024;

/// A reader that cannot seek and hands out at most `chunk` bytes per read, like a pipe.
struct Pipe<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len()).min(self.chunk);
        let (head, tail) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = tail;
        Ok(n)
    }
}

/// What the rules say, by variant: the region's bytes or the error's name.
fn expected(file: &[u8], region: Region) -> Result<&[u8], &'static str> {
    let len = file.len() as u64;
    if region.offset > len {
        return Err("OffsetPastEnd");
    }
    let rest = &file[region.offset as usize..];
    let key = match region.size {
        Some(size) if size > MAX => return Err("SizeOverLimit"),
        Some(size) if size > rest.len() as u64 => return Err("TooShort"),
        Some(size) => &rest[..size as usize],
        // Inputs are far smaller than the limit: TooLarge cannot happen here.
        None => rest,
    };
    if key.is_empty() { Err("Empty") } else { Ok(key) }
}

fn name(e: &RegionError) -> &'static str {
    match e {
        RegionError::OffsetPastEnd { .. } => "OffsetPastEnd",
        RegionError::TooShort { .. } => "TooShort",
        RegionError::TooLarge { .. } => "TooLarge",
        RegionError::SizeOverLimit { .. } => "SizeOverLimit",
        RegionError::Empty { .. } => "Empty",
        RegionError::Read { .. } => "Read",
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, file)) = data.split_first_chunk::<10>() else { return };
    let offset = u64::from(u32::from_le_bytes([head[1], head[2], head[3], head[4]]));
    let size = u64::from(u32::from_le_bytes([head[5], head[6], head[7], head[8]]));
    let region = Region { offset, size: (head[0] & 1 != 0).then_some(size) };
    let chunk = usize::from(head[9]).max(1);
    let what = Path::new("/fuzz.key");

    let want = expected(file, region);
    let seek = read_region(&mut Cursor::new(file), region, what);
    let stream = read_region_stream(&mut Pipe { data: file, chunk }, region, what);
    for (how, got) in [("seekable", &seek), ("streamed", &stream)] {
        match (got, &want) {
            (Ok(key), Ok(bytes)) => {
                assert_eq!(key.as_bytes(), *bytes, "{how} read other bytes for {region:?}")
            }
            (Err(e), Err(variant)) => {
                assert_eq!(name(e), *variant, "{how}: {e}");
                // Errors name the file and never carry key bytes (only numbers and the path).
                assert!(e.to_string().starts_with("key file /fuzz.key"), "{how}: {e}");
            }
            (got, want) => panic!(
                "{how} read {:?}, the rules say {want:?} for {region:?}",
                got.as_ref().map(|k| k.len())
            ),
        }
    }
});
