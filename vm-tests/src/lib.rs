//! lethe's QEMU harness: builds an initramfs around the static `initrd-tool`, boots Debian's kernel on real disk images, and checks what the test stage 2 reports.
//!
//! `expect`, `mountinfo` and `stage2` are shared with the `lethe-stage2`
//! binary that runs inside the guest; the other modules run on the host.

pub mod artifacts;
pub mod bench;
pub mod bench_rollback;
pub mod btrfs_blank;
pub mod btrfs_tmpfs_usbkey;
pub mod chart;
pub mod dm_crypt;
pub mod error;
pub mod expect;
pub mod fixtures;
pub mod guest;
pub mod harness;
pub mod host;
pub mod images;
pub mod luks_disk;
pub mod machine;
pub mod mountinfo;
pub mod peers;
pub mod qemu;
pub mod report;
pub mod scenarios;
pub mod ssh_client;
pub mod ssh_unlock;
pub mod stage2;
pub mod zfs;
pub mod zfs_luks_blank;
