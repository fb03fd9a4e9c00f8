//! The QEMU boot harness and its scenarios (issue 3; nothing here yet).
