//! BTRFS rollback: the root subvolume re-created from a blank snapshot, in an order a power cut cannot break.
//!
//! Stub: the contract the rest of the crate is written against.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::config::OldRoots;
use crate::config::SubvolPath;
use crate::{Mode, Outcome};

/// What to reset, with the device already resolved to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub device: PathBuf,
    pub subvolume: SubvolPath,
    pub blank: SubvolPath,
    pub old_roots: Option<OldRoots>,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {}

impl std::fmt::Display for Step {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{device}: BTRFS rollback is not built yet")]
    NotBuilt { device: PathBuf },
}

/// Resets the root subvolume (or, with [`Mode::DryRun`], only plans it).
pub fn rollback(opts: &Options, _mode: Mode) -> Result<Outcome<Step>, Error> {
    Err(Error::NotBuilt { device: opts.device.clone() })
}

/// Registers a device with the kernel (BTRFS_IOC_SCAN_DEV), for multi-device file systems.
pub fn scan_device(device: &Path) -> Result<(), Error> {
    Err(Error::NotBuilt { device: device.to_path_buf() })
}

/// Whether every device of the file system on `device` is known (BTRFS_IOC_DEVICES_READY).
pub fn devices_ready(device: &Path) -> Result<bool, Error> {
    Err(Error::NotBuilt { device: device.to_path_buf() })
}

/// What the next rollback erases: the root's files added or changed since the blank snapshot.
pub fn diff(opts: &Options) -> Result<Vec<crate::diff::Change>, Error> {
    Err(Error::NotBuilt { device: opts.device.clone() })
}
