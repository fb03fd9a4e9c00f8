//! lethe's QEMU harness: builds an initramfs around the static `initrd-tool`, boots Debian's kernel on real disk images, and checks what the test stage 2 reports.
//!
//! `expect`, `mountinfo` and `stage2` are shared with the `lethe-stage2`
//! binary that runs inside the guest; the other modules run on the host.

pub mod expect;
pub mod mountinfo;
pub mod stage2;
