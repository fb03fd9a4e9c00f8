//! The superblock probe, the ZFS label decoder and the partition-table parsers never panic on any device contents, and agree with themselves.
#![no_main]

use std::io;

use initrd_tool::probe::{self, MAX_READ, Source};
use libfuzzer_sys::fuzz_target;

/// A device described by the input, so that a small input can put a superblock at 64 KiB or a
/// ZFS label at 16 KiB:
///
/// ```text
/// mode: u8          bit 0: the size below is known; bit 1: 4096-byte sectors
/// size: u32 LE      in 512-byte units
/// records: (offset: u32 LE, len: u16 LE, bytes[len])*   zero everywhere else
/// ```
///
/// A short last record keeps the bytes it has.
struct Sparse<'a> {
    size: Option<u64>,
    records: Vec<(u64, &'a [u8])>,
}

impl<'a> Sparse<'a> {
    fn parse(data: &'a [u8]) -> (Self, u32) {
        let mode = data.first().copied().unwrap_or(0);
        let size = data.get(1..5).map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])) * 512);
        let mut records = Vec::new();
        let mut rest = data.get(5..).unwrap_or_default();
        while rest.len() >= 6 {
            let offset = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
            let len = usize::from(u16::from_le_bytes([rest[4], rest[5]]));
            let body = &rest[6..];
            let take = len.min(body.len());
            records.push((offset, &body[..take]));
            rest = &body[take..];
        }
        let sector_size = if mode & 2 != 0 { 4096 } else { 512 };
        (Sparse { size: size.filter(|_| mode & 1 != 0), records }, sector_size)
    }
}

impl Source for Sparse<'_> {
    fn size(&self) -> Option<u64> {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len.min(MAX_READ) as u64).min(self.size.unwrap_or(u64::MAX));
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        for &(at, bytes) in &self.records {
            let from = at.max(offset);
            let to = (at + bytes.len() as u64).min(end);
            if from < to {
                let (f, t) = ((from - offset) as usize, (to - offset) as usize);
                buf[f..t].copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
            }
        }
        Ok(buf)
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut dev, sector_size) = Sparse::parse(data);
    let all = probe::probe_all(&mut dev).expect("a sparse device reads without errors");
    let one = probe::probe_source(&mut dev).expect("reads");
    // The single answer is the one signature found, or nothing when there are several.
    assert_eq!(one.as_ref(), if all.len() == 1 { all.first() } else { None });
    for p in &all {
        for text in [&p.uuid, &p.label, &p.uuid_sub].into_iter().flatten() {
            assert!(!text.is_empty() && !text.ends_with([' ', '\t', '\n']), "{p:?}");
        }
    }
    if let Some(t) = probe::partition_table(&mut dev, sector_size).expect("reads") {
        let limit = match t.kind {
            probe::TableKind::Gpt => 8192, // 1 MiB of 128-byte entries
            probe::TableKind::Dos => 256 + 4,
        };
        assert!(t.partitions.len() <= limit);
        assert!(t.partitions.windows(2).all(|w| w[0].number < w[1].number), "{t:?}");
    }

    // The raw input as the head of a device, and as a ZFS label region.
    std::hint::black_box(probe::probe_bytes(data));
    std::hint::black_box(probe::partuuids(data, 512));
    std::hint::black_box(probe::zfs_label(data));
});
