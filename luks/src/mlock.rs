//! mlock/munlock of secret buffers, so keys and passphrases are never written to swap.

/// Locks `buf` into memory. Failure (RLIMIT_MEMLOCK, no CAP_IPC_LOCK) is not fatal: the
/// initramfs has no swap, and a tool run by hand warns once.
pub(crate) fn lock(buf: &[u8]) -> bool {
    if buf.is_empty() {
        return true;
    }
    // SAFETY: mlock only changes the residency of the pages covering `buf`, which is a live,
    // borrowed allocation for the duration of the call; it reads or writes no memory.
    unsafe { rustix::mm::mlock(buf.as_ptr().cast_mut().cast(), buf.len()) }.is_ok()
}

/// Undoes `lock` before the buffer is freed.
pub(crate) fn unlock(buf: &[u8]) {
    if buf.is_empty() {
        return;
    }
    // SAFETY: as for `lock`: munlock touches only page residency of a live allocation.
    let _ = unsafe { rustix::mm::munlock(buf.as_ptr().cast_mut().cast(), buf.len()) };
}
