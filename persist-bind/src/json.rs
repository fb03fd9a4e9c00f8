//! `--json` output: paths that are not UTF-8, and serialisation or write errors that must not pass for an empty document.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

/// A file name's bytes as a JSON string, reversibly: UTF-8 stays as it is, each byte that
/// is not part of UTF-8 is written `\xNN` (two lowercase hex digits) and a literal backslash
/// `\\`. Reading it back: `\\` is a backslash, `\xNN` the byte NN, everything else itself.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if !bytes.contains(&b'\\')
        && let Ok(s) = std::str::from_utf8(bytes)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// `#[serde(serialize_with = "persist_bind::json::path")]`: a path as [`escape`] writes it
/// (serde's own form fails on a path that is not UTF-8).
pub fn path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape(p.as_os_str().as_bytes()))
}

/// Prints `value` as one JSON document and a newline on stdout; an error (a value that does
/// not serialise, a closed stdout) is returned, never an empty or half document passed off
/// as the output.
pub fn print<T: Serialize + ?Sized>(value: &T, pretty: bool) -> io::Result<()> {
    let mut text = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) }
        .map_err(io::Error::other)?;
    text.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&text)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_and_backslashes_are_escaped_reversibly() {
        assert_eq!(escape(b"var/lib/caf\xc3\xa9"), "var/lib/caf\u{e9}");
        assert_eq!(escape(b"caf\xe9 \xff\xfe"), r"caf\xe9 \xff\xfe");
        assert_eq!(escape(br"a\b"), r"a\\b");
        // A name that is literally `\xe9` and the byte 0xE9 come out differently.
        assert_eq!(escape(br"\xe9"), r"\\xe9");
        assert_eq!(escape(b"\xe9"), r"\xe9");
    }
}
