//! Fixed-capacity, heap-pinned, mlocked, zeroized buffers for passphrases, key files and keys.
//!
//! A `Secret` never reallocates (so no stale copy is left in freed memory), never moves its
//! bytes (the box is allocated once), is locked against swap, and is wiped on drop. It has no
//! `Debug` or `Display` that shows its contents, so it cannot leak into logs or errors.

use std::fmt;

use zeroize::Zeroize;

/// Largest passphrase accepted (cryptsetup's default limit is 512 characters).
pub const MAX_PASSPHRASE: usize = 512;
/// Largest key file accepted (cryptsetup's default `--keyfile-size` limit is 8 MiB).
pub const MAX_KEY_FILE: usize = 8 * 1024 * 1024;
/// Largest volume or keyslot-area key (LUKS2 allows up to 512 bytes of key).
pub const MAX_KEY: usize = 512;

/// Bytes that must not be copied, swapped or logged.
pub struct Secret {
    buf: Box<[u8]>,
    len: usize,
    locked: bool,
}

/// The input that opens a keyslot: a passphrase or a key file's bytes.
pub type Passphrase = Secret;
/// A recovered volume key (or a keyslot-area key).
pub type Key = Secret;

/// The buffer is full: the secret is longer than its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("secret longer than {capacity} bytes")]
pub struct CapacityError {
    pub capacity: usize,
}

impl Secret {
    /// An empty secret that can hold up to `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Secret {
        let buf = vec![0u8; capacity].into_boxed_slice();
        let locked = crate::mlock::lock(&buf);
        Secret { buf, len: 0, locked }
    }

    /// A zero-filled secret of exactly `len` bytes (for a key about to be computed in place).
    pub fn zeroed(len: usize) -> Secret {
        let mut s = Secret::with_capacity(len);
        s.len = len;
        s
    }

    /// Copies `bytes` into a new secret of exactly that size.
    pub fn from_slice(bytes: &[u8]) -> Secret {
        let mut s = Secret::zeroed(bytes.len());
        s.buf.copy_from_slice(bytes);
        s
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer is locked against swap.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Appends one byte (typed input).
    pub fn push(&mut self, b: u8) -> Result<(), CapacityError> {
        self.extend_from_slice(&[b])
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), CapacityError> {
        let end = self.len.checked_add(bytes.len()).filter(|e| *e <= self.buf.len());
        let Some(end) = end else { return Err(CapacityError { capacity: self.buf.len() }) };
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Removes the last byte (backspace), wiping it.
    pub fn pop(&mut self) {
        if self.len > 0 {
            self.len -= 1;
            self.buf[self.len] = 0;
        }
    }

    /// Shortens to `len` bytes, wiping the rest.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.buf[len..self.len].zeroize();
            self.len = len;
        }
    }

    /// Wipes the contents; the capacity stays.
    pub fn clear(&mut self) {
        self.buf.zeroize();
        self.len = 0;
    }

    /// A second secret with the same bytes (for "the passphrase that worked is tried first on the
    /// next device").
    pub fn duplicate(&self) -> Secret {
        let mut s = Secret::with_capacity(self.buf.len());
        s.buf[..self.len].copy_from_slice(self.as_bytes());
        s.len = self.len;
        s
    }
}

impl PartialEq for Secret {
    /// Constant-time in the contents for equal lengths.
    fn eq(&self, other: &Secret) -> bool {
        ct_eq(self.as_bytes(), other.as_bytes())
    }
}

impl Eq for Secret {}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.buf.zeroize();
        if self.locked {
            crate::mlock::unlock(&self.buf);
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity() {
        let mut s = Secret::with_capacity(4);
        s.extend_from_slice(b"abc").unwrap();
        assert_eq!(s.push(b'd'), Ok(()));
        assert_eq!(s.push(b'e'), Err(CapacityError { capacity: 4 }));
        assert_eq!(s.as_bytes(), b"abcd");
    }

    #[test]
    fn pop_and_truncate_wipe_what_they_remove() {
        let mut s = Secret::from_slice(b"secret");
        s.pop();
        s.truncate(2);
        assert_eq!(s.as_bytes(), b"se");
        assert!(s.buf[2..].iter().all(|b| *b == 0));
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::from_slice(b"hunter2");
        assert_eq!(format!("{s:?}"), "Secret(7 bytes, redacted)");
    }

    #[test]
    fn equality_is_by_content() {
        assert_eq!(Secret::from_slice(b"ab"), Secret::from_slice(b"ab"));
        assert_ne!(Secret::from_slice(b"ab"), Secret::from_slice(b"ac"));
        assert_ne!(Secret::from_slice(b"ab"), Secret::from_slice(b"abc"));
    }
}
