//! Reads a LUKS1 or LUKS2 header from a device, read-only, and validates it as cryptsetup does.
//!
//! The version is told as cryptsetup tells it: the LUKS magic at offset 0 with version 1 is
//! LUKS1; anything else (version 2, a damaged primary header, no magic at all) is tried as
//! LUKS2, whose secondary copy may still be found. Nothing is ever written back.

mod base64;
mod bytes;
mod json;
mod luks1;
mod luks2;
mod validate;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::model::Header;

pub use json::{JsonError, Problem as JsonProblem};
pub use luks1::Luks1Error;
pub use luks2::{CopyError, Luks2Error};

/// The magic of a LUKS1 header and of a LUKS2 primary header.
pub const MAGIC: [u8; 6] = *b"LUKS\xba\xbe";

/// Why a header could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot read {len} bytes at offset {offset}: {source}")]
    Read { offset: u64, len: u64, source: io::Error },
    #[error("unsupported LUKS version {version} at offset 0")]
    UnsupportedVersion { version: u16 },
    #[error("LUKS1 header: {0}")]
    Luks1(#[from] Luks1Error),
    #[error("LUKS2 header: {0}")]
    Luks2(Box<Luks2Error>),
    #[error("no LUKS header: no LUKS magic at offset 0 and no LUKS2 secondary header at any known offset")]
    NotLuks,
}

impl From<Luks2Error> for HeaderError {
    fn from(e: Luks2Error) -> HeaderError {
        HeaderError::Luks2(Box::new(e))
    }
}

/// Why a header could not be read from a path.
#[derive(Debug, thiserror::Error)]
pub enum ReadPathError {
    #[error("{}: cannot open read-only: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: cannot tell its size: {source}", path.display())]
    Size { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Header { path: PathBuf, source: HeaderError },
}

/// Reads and validates the header at the start of `dev`, a device (or header file) of
/// `device_size` bytes. Reads are bounded by `device_size` and by the largest header LUKS
/// allows; nothing is written.
pub fn read<D: Read + Seek>(dev: &mut D, device_size: u64) -> Result<Header, HeaderError> {
    let start = bytes::read_at(dev, device_size, 0, 8)?;
    let version = match start {
        Some(b) if b.starts_with(&MAGIC) => {
            let mut f = bytes::Fields::new(&b);
            f.skip(MAGIC.len());
            f.u16()
        }
        // No primary magic: only a LUKS2 secondary copy can still be found.
        _ => 0,
    };
    match version {
        1 => Ok(luks1::read(dev, device_size)?),
        0 | 2 => luks2::read(dev, device_size),
        version => Err(HeaderError::UnsupportedVersion { version }),
    }
}

/// [`read`] on a block device or a (detached) header file, opened read-only; the size is the
/// block device's or the file's.
pub fn read_path(path: &Path) -> Result<Header, ReadPathError> {
    let mut f = File::open(path).map_err(|source| ReadPathError::Open { path: path.to_owned(), source })?;
    // SEEK_END gives a block device's size as well as a file's.
    let size =
        f.seek(SeekFrom::End(0)).map_err(|source| ReadPathError::Size { path: path.to_owned(), source })?;
    read(&mut f, size).map_err(|source| ReadPathError::Header { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_version_after_the_magic_picks_the_parser() {
        let mut dev = luks1::tests::phdr();
        dev.resize(4 << 20, 0);
        assert!(read(&mut Cursor::new(dev.clone()), 4 << 20).is_ok());
        dev[7] = 3;
        assert!(matches!(
            read(&mut Cursor::new(dev.clone()), 4 << 20),
            Err(HeaderError::UnsupportedVersion { version: 3 })
        ));
        // Version 2 with a LUKS1 body is no valid LUKS2 primary, and nothing else is there.
        dev[7] = 2;
        let e = read(&mut Cursor::new(dev), 4 << 20).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "LUKS2 header: no valid header copy: primary at offset 0: the header says it lies at"
            ),
            "{e}"
        );
    }

    #[test]
    fn read_path_names_the_path() {
        let e = read_path(Path::new("/nonexistent/lethe-luks")).unwrap_err();
        assert!(matches!(e, ReadPathError::Open { .. }));
        assert!(e.to_string().starts_with("/nonexistent/lethe-luks: cannot open read-only: "), "{e}");
        let e = read_path(Path::new("/dev/null")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/null: no LUKS header: no LUKS magic at offset 0 and no LUKS2 secondary header at any known offset"
        );
    }
}
