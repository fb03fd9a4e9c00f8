//! The part of a key file that is the key: cryptsetup's `--keyfile-offset` and `--keyfile-size`, read straight into a [`Secret`].

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use luks::secret::{MAX_KEY_FILE, Secret};

/// Which bytes of a key file are the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// Bytes skipped at the start (`--keyfile-offset`).
    pub offset: u64,
    /// Bytes read (`--keyfile-size`); `None`: the rest of the file, at most [`MAX_KEY_FILE`].
    pub size: Option<u64>,
}

/// Why a region could not be read. Only sizes and offsets, never the bytes.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("key file {}: offset {offset} is past its end ({len} bytes)", path.display())]
    OffsetPastEnd { path: PathBuf, offset: u64, len: u64 },
    #[error(
        "key file {}: {size} bytes wanted at offset {offset}, but only {available} are there",
        path.display()
    )]
    TooShort { path: PathBuf, offset: u64, size: u64, available: u64 },
    #[error(
        "key file {} holds more than {max} bytes after offset {offset}: give the key's size",
        path.display()
    )]
    TooLarge { path: PathBuf, offset: u64, max: u64 },
    #[error("key file {}: a size of {size} bytes is over the limit of {max}", path.display())]
    SizeOverLimit { path: PathBuf, size: u64, max: u64 },
    #[error("key file {}: the key at offset {offset} is empty", path.display())]
    Empty { path: PathBuf, offset: u64 },
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The largest key file as a file offset.
const MAX: u64 = MAX_KEY_FILE as u64;

/// Reads `region` of a seekable key file (a regular file or a block device): its length is
/// known up front, so the secret is allocated once at its final size.
pub fn read_region(
    reader: &mut (impl Read + Seek),
    region: Region,
    what: &Path,
) -> Result<Secret, RegionError> {
    let io_err = |source| RegionError::Read { path: what.to_owned(), source };
    let len = reader.seek(SeekFrom::End(0)).map_err(io_err)?;
    let Some(available) = len.checked_sub(region.offset) else {
        return Err(RegionError::OffsetPastEnd { path: what.to_owned(), offset: region.offset, len });
    };
    let want = wanted(region, available, what)?;
    reader.seek(SeekFrom::Start(region.offset)).map_err(io_err)?;
    let mut key = Secret::zeroed(to_usize(want));
    let got = fill(reader, key.as_mut_bytes()).map_err(io_err)?;
    if u64::try_from(got).ok() != Some(want) {
        // The file shrank between the seek to its end and the read.
        return Err(short(region, want, got, what));
    }
    Ok(key)
}

/// Reads `region` of a key file that cannot seek (a pipe): the offset is read and discarded,
/// and without a size the key is read up to [`MAX_KEY_FILE`] bytes, one more being an error.
pub fn read_region_stream(
    reader: &mut impl Read,
    region: Region,
    what: &Path,
) -> Result<Secret, RegionError> {
    let io_err = |source| RegionError::Read { path: what.to_owned(), source };
    let skipped = skip(reader, region.offset).map_err(io_err)?;
    if skipped < region.offset {
        return Err(RegionError::OffsetPastEnd {
            path: what.to_owned(),
            offset: region.offset,
            len: skipped,
        });
    }
    let capacity = match region.size {
        Some(size) if size > MAX => {
            return Err(RegionError::SizeOverLimit { path: what.to_owned(), size, max: MAX });
        }
        Some(size) => size,
        None => MAX,
    };
    let key = fill_growing(reader, to_usize(capacity)).map_err(io_err)?;
    let got = u64::try_from(key.len()).unwrap_or(u64::MAX);
    match region.size {
        Some(size) if got < size => return Err(short(region, size, to_usize(got), what)),
        None if got == MAX => {
            let mut one = Secret::zeroed(1);
            if fill(reader, one.as_mut_bytes()).map_err(io_err)? > 0 {
                return Err(RegionError::TooLarge { path: what.to_owned(), offset: region.offset, max: MAX });
            }
        }
        _ => {}
    }
    if key.is_empty() {
        return Err(RegionError::Empty { path: what.to_owned(), offset: region.offset });
    }
    Ok(key)
}

/// Reads up to `capacity` bytes of unknown length into a secret that starts small and doubles
/// (each outgrown one wiped as it is dropped), so a short key from a pipe does not lock 8 MiB.
fn fill_growing(reader: &mut impl Read, capacity: usize) -> io::Result<Secret> {
    let mut key = Secret::zeroed(capacity.min(4096));
    let mut got = 0;
    loop {
        got += match key.as_mut_bytes().get_mut(got..) {
            Some(rest) => fill(reader, rest)?,
            None => 0,
        };
        if got < key.len() || key.len() >= capacity {
            break;
        }
        let mut bigger = Secret::zeroed(capacity.min(key.len().saturating_mul(2)));
        if let (Some(to), Some(from)) = (bigger.as_mut_bytes().get_mut(..got), key.as_bytes().get(..got)) {
            to.copy_from_slice(from);
        }
        key = bigger;
    }
    key.truncate(got);
    Ok(key)
}

/// How many bytes to read when `available` follow the offset.
fn wanted(region: Region, available: u64, what: &Path) -> Result<u64, RegionError> {
    let want = match region.size {
        Some(size) if size > MAX => {
            return Err(RegionError::SizeOverLimit { path: what.to_owned(), size, max: MAX });
        }
        Some(size) if size > available => {
            return Err(RegionError::TooShort {
                path: what.to_owned(),
                offset: region.offset,
                size,
                available,
            });
        }
        Some(size) => size,
        None if available > MAX => {
            return Err(RegionError::TooLarge { path: what.to_owned(), offset: region.offset, max: MAX });
        }
        None => available,
    };
    if want == 0 {
        return Err(RegionError::Empty { path: what.to_owned(), offset: region.offset });
    }
    Ok(want)
}

fn short(region: Region, size: u64, got: usize, what: &Path) -> RegionError {
    RegionError::TooShort {
        path: what.to_owned(),
        offset: region.offset,
        size,
        available: u64::try_from(got).unwrap_or(u64::MAX),
    }
}

/// A size already checked against [`MAX_KEY_FILE`] as a buffer length.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(MAX_KEY_FILE).min(MAX_KEY_FILE)
}

/// Reads until `buf` is full or the input ends; how many bytes came.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads and discards `n` bytes (wiped: they are key-file bytes too); how many there were.
fn skip(reader: &mut impl Read, n: u64) -> io::Result<u64> {
    let mut scratch = Secret::zeroed(4096);
    let mut left = n;
    while left > 0 {
        let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(scratch.len());
        let Some(buf) = scratch.as_mut_bytes().get_mut(..chunk) else { break };
        let got = fill(reader, buf)?;
        left -= u64::try_from(got).unwrap_or(left).min(left);
        if got < chunk {
            break;
        }
    }
    Ok(n - left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A reader that cannot seek, handing out at most 3 bytes per read like a slow pipe.
    struct Pipe<'a>(&'a [u8]);

    impl Read for Pipe<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            let (head, tail) = self.0.split_at(n);
            buf[..n].copy_from_slice(head);
            self.0 = tail;
            Ok(n)
        }
    }

    fn both(
        data: &[u8],
        offset: u64,
        size: Option<u64>,
    ) -> (Result<Vec<u8>, String>, Result<Vec<u8>, String>) {
        let region = Region { offset, size };
        let what = Path::new("/key");
        let seek = read_region(&mut Cursor::new(data), region, what);
        let stream = read_region_stream(&mut Pipe(data), region, what);
        let show =
            |r: Result<Secret, RegionError>| r.map(|s| s.as_bytes().to_vec()).map_err(|e| e.to_string());
        (show(seek), show(stream))
    }

    #[test]
    fn seekable_and_streamed_reads_agree() {
        let data = b"0123456789";
        for (offset, size, expected) in [
            (0, None, &data[..]),
            (3, None, &data[3..]),
            (3, Some(4), &data[3..7]),
            (0, Some(10), &data[..]),
            (9, Some(1), &data[9..]),
        ] {
            let (seek, stream) = both(data, offset, size);
            assert_eq!(seek, Ok(expected.to_vec()), "offset {offset}, size {size:?}");
            assert_eq!(stream, seek, "offset {offset}, size {size:?}");
        }
    }

    #[test]
    fn errors_name_the_file_offset_and_size() {
        let data = b"0123456789";
        let (seek, stream) = both(data, 8, Some(4));
        assert_eq!(seek, Err("key file /key: 4 bytes wanted at offset 8, but only 2 are there".into()));
        assert_eq!(stream, seek);
        let (seek, stream) = both(data, 11, None);
        assert_eq!(seek, Err("key file /key: offset 11 is past its end (10 bytes)".into()));
        assert_eq!(stream, seek);
        let (seek, stream) = both(data, 10, None);
        assert_eq!(seek, Err("key file /key: the key at offset 10 is empty".into()));
        assert_eq!(stream, seek);
        let (seek, stream) = both(data, 0, Some(0));
        assert_eq!(seek, Err("key file /key: the key at offset 0 is empty".into()));
        assert_eq!(stream, seek);
        let (seek, stream) = both(data, 0, Some(MAX + 1));
        assert_eq!(
            seek,
            Err(format!("key file /key: a size of {} bytes is over the limit of {MAX}", MAX + 1))
        );
        assert_eq!(stream, seek);
    }

    #[test]
    fn the_whole_rest_is_limited_to_the_largest_key_file() {
        let mut data = vec![7u8; MAX_KEY_FILE + 1];
        let (seek, stream) = both(&data, 0, None);
        let too_large =
            format!("key file /key holds more than {MAX} bytes after offset 0: give the key's size");
        assert_eq!(seek, Err(too_large.clone()));
        assert_eq!(stream, Err(too_large));
        // Exactly the limit, or the limit after an offset, is fine.
        let (seek, stream) = both(&data, 1, None);
        assert_eq!(seek.map(|k| k.len()), Ok(MAX_KEY_FILE));
        assert_eq!(stream.map(|k| k.len()), Ok(MAX_KEY_FILE));
        data.pop();
        let (seek, _) = both(&data, 0, None);
        assert_eq!(seek.map(|k| k.len()), Ok(MAX_KEY_FILE));
    }
}
