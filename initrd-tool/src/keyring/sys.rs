//! The kernel keyring syscalls `add_key` and `keyctl` through `libc::syscall`: the only `unsafe` code of `keyring`.

#![allow(unsafe_code)]

use std::ffi::CStr;

use rustix::io::Errno;

/// A key's serial number (`key_serial_t`).
pub type KeySerial = i32;

/// `KEY_SPEC_THREAD_KEYRING`: the calling thread's keyring, created on first use.
pub const THREAD_KEYRING: KeySerial = -1;
/// `KEYCTL_REVOKE`.
const KEYCTL_REVOKE: libc::c_long = 3;
/// `KEYCTL_UNLINK`.
const KEYCTL_UNLINK: libc::c_long = 9;

/// The errno of the syscall that just failed.
fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
}

/// `add_key(type, description, payload, plen, keyring)`: adds a key to `keyring` (or updates the
/// one of the same type and description there); returns its serial.
pub fn add_key(
    key_type: &CStr,
    description: &CStr,
    payload: &[u8],
    keyring: KeySerial,
) -> Result<KeySerial, Errno> {
    // SAFETY: add_key reads two NUL-terminated strings, both borrowed `CStr`s alive for the
    // call, and `plen` bytes from `payload`, whose pointer and exact length are passed; it
    // writes no user memory. The remaining argument is a plain integer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            key_type.as_ptr(),
            description.as_ptr(),
            payload.as_ptr().cast::<libc::c_void>(),
            payload.len(),
            libc::c_long::from(keyring),
        )
    };
    if r < 0 {
        return Err(last_errno());
    }
    KeySerial::try_from(r).map_err(|_| Errno::RANGE)
}

/// `keyctl(KEYCTL_REVOKE, key)`: the key can no longer be found or read by anyone.
pub fn revoke(key: KeySerial) -> Result<(), Errno> {
    // SAFETY: KEYCTL_REVOKE takes one integer argument and touches no user memory.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_REVOKE, libc::c_long::from(key)) };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

/// `keyctl(KEYCTL_UNLINK, key, keyring)`: drops the keyring's link to the key.
pub fn unlink(key: KeySerial, keyring: KeySerial) -> Result<(), Errno> {
    // SAFETY: KEYCTL_UNLINK takes two integer arguments and touches no user memory.
    let r = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_UNLINK, libc::c_long::from(key), libc::c_long::from(keyring))
    };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}
