//! Bounded reads from the device, and the fixed-size fields of the binary headers.

use std::io::{self, Read, Seek, SeekFrom};

use super::HeaderError;

/// Reads `len` bytes at `offset`; `None` when they lie (partly) beyond the device's end, as
/// cryptsetup's short read means "no header here".
pub(crate) fn read_at<D: Read + Seek>(
    dev: &mut D,
    device_size: u64,
    offset: u64,
    len: usize,
) -> Result<Option<Vec<u8>>, HeaderError> {
    let len64 = len as u64;
    if offset.checked_add(len64).is_none_or(|end| end > device_size) {
        return Ok(None);
    }
    let err = |source| HeaderError::Read { offset, len: len64, source };
    dev.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf = vec![0u8; len];
    match dev.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// Consecutive fields of a binary header, read front to back. A field past the end of the
/// buffer reads as zeros; callers hand in buffers at least as long as the layout they walk.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.pos.checked_add(N).and_then(|end| self.buf.get(self.pos..end)) {
            out.copy_from_slice(s);
        }
        self.pos = self.pos.saturating_add(N);
        out
    }

    pub(crate) fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n);
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
}

/// The bytes of a NUL-terminated string field before its NUL; `None` when the field has no NUL.
pub(crate) fn c_str(field: &[u8]) -> Option<&[u8]> {
    field.iter().position(|b| *b == 0).and_then(|n| field.get(..n))
}

/// A string field as text: printable ASCII only (cipher, mode and hash names, UUIDs).
pub(crate) fn printable(field: &[u8]) -> Option<String> {
    let s = c_str(field)?;
    s.iter().all(|b| b.is_ascii_graphic()).then(|| String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_device_end_are_absent_not_errors() {
        let mut dev = io::Cursor::new(vec![7u8; 100]);
        assert_eq!(read_at(&mut dev, 100, 96, 4).unwrap(), Some(vec![7; 4]));
        assert_eq!(read_at(&mut dev, 100, 97, 4).unwrap(), None);
        assert_eq!(read_at(&mut dev, 100, u64::MAX, 4).unwrap(), None);
        // A device that claims more than it holds is cut off as well.
        assert_eq!(read_at(&mut dev, 200, 150, 4).unwrap(), None);
    }

    #[test]
    fn fields_are_big_endian_and_zero_beyond_the_buffer() {
        let mut f = Fields::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(f.u16(), 1);
        assert_eq!(f.u32(), 2);
        assert_eq!(f.u16(), 0);
    }

    #[test]
    fn string_fields_need_their_nul() {
        assert_eq!(c_str(b"aes\0\0"), Some(&b"aes"[..]));
        assert_eq!(c_str(b"aes"), None);
        assert_eq!(printable(b"sha256\0"), Some("sha256".to_owned()));
        assert_eq!(printable(b"sha 256\0"), None);
        assert_eq!(printable(b"\xffsha\0"), None);
    }
}
