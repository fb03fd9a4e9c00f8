//! initrd-tool: lethe's stage 1 as one static multi-call binary (`init`, `persist-bind`, `mkinitrd`, `check-config`).

pub mod askpass;
/// One kernel command-line parser for stage 1 and the `rollback` binary: rollback's.
pub use rollback::cmdline;
pub mod config;
pub mod cpio;
pub mod crypt;
pub mod devices;
pub mod devspec;
pub mod dm;
pub mod init;
pub mod keyfile;
pub mod keyring;
pub mod kmod;
pub mod log;
pub mod mkinitrd;
pub mod modprobe;
pub mod mountopts;
pub mod net;
pub mod probe;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod switch_root;
pub mod udev_db;
pub mod unlock;
