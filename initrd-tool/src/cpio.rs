//! The cpio newc archive format the kernel unpacks an initramfs from.
