//! ZFS rollback through /dev/zfs: newer snapshots and bookmarks destroyed, then the dataset rolled back to its blank snapshot.
//!
//! Stub: the contract the rest of the crate is written against.

pub mod nvlist;

use serde::Serialize;

use crate::config::{DatasetName, PoolName, SnapshotName, ZfsPool};
use crate::{Mode, Outcome};

/// What to roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dataset: DatasetName,
    pub snapshot: SnapshotName,
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
    #[error("{0}: ZFS rollback is not built yet")]
    NotBuilt(String),
}

/// Rolls the dataset back (or, with [`Mode::DryRun`], only plans it).
pub fn rollback(opts: &Options, _mode: Mode) -> Result<Outcome<Step>, Error> {
    Err(Error::NotBuilt(opts.dataset.to_string()))
}

/// `zpool import -N [-f] -d DEVNODES POOL`, retried until the pool's devices are there or the timeout passes.
pub fn import(pool: &PoolName, opts: &ZfsPool) -> Result<(), Error> {
    let _ = opts;
    Err(Error::NotBuilt(pool.to_string()))
}

/// What the next rollback erases: files added or changed since the snapshot.
pub fn diff(opts: &Options) -> Result<Vec<crate::diff::Change>, Error> {
    Err(Error::NotBuilt(opts.dataset.to_string()))
}
