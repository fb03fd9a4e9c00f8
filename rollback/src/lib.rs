//! Resetting the root before it is mounted: ZFS rollback to a blank snapshot, BTRFS re-creation from a blank snapshot, or a fresh tmpfs.
//!
//! Each backend plans first (pure data, what `--dry-run` prints) and then
//! applies the plan. A state the plan cannot be sure of (no blank snapshot,
//! a half-known layout, `lethe.rollback=0`, a hibernation image) keeps the
//! old root: [`Outcome::Kept`], a warning, and the boot goes on.

pub mod btrfs;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod diff;
pub mod resume;
pub mod tmpfs;
pub mod zfs;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Carry the plan out, or only show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

/// What a rollback did, with `S` the backend's step type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "detail")]
pub enum Outcome<S> {
    /// The root was reset by these steps.
    Reset(Vec<S>),
    /// `--dry-run`: these steps would reset the root; nothing was changed.
    Planned(Vec<S>),
    /// Nothing was changed and the old root stays, for this reason.
    Kept(Kept),
}

/// Why the old root was kept. The boot goes on with it; the console says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub reason: String,
}

impl Kept {
    pub fn new(reason: impl Into<String>) -> Kept {
        Kept { reason: reason.into() }
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keeping the old root: {}", self.reason)
    }
}

/// A rollback to carry out, with every device resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Zfs(zfs::Options),
    Btrfs(btrfs::Options),
    Tmpfs(tmpfs::Options),
}

impl Target {
    /// The target of a `rollback` config section; `btrfs_device` is the
    /// node its `device` resolved to, `tmpfs_root` where a tmpfs root goes.
    pub fn from_config(method: &config::Rollback, btrfs_device: PathBuf, tmpfs_root: PathBuf) -> Target {
        match method {
            config::Rollback::Zfs(z) => {
                Target::Zfs(zfs::Options { dataset: z.dataset.clone(), snapshot: z.snapshot.clone() })
            }
            config::Rollback::Btrfs(b) => Target::Btrfs(btrfs::Options {
                device: btrfs_device,
                subvolume: b.subvolume.clone(),
                blank: b.blank.clone(),
                old_roots: b.old_roots.clone(),
            }),
            config::Rollback::Tmpfs(t) => {
                Target::Tmpfs(tmpfs::Options { target: tmpfs_root, size: t.size.clone(), mode: t.mode })
            }
        }
    }

    /// What is being reset, for messages (`rpool/local/root@blank`, `/dev/vda2 root from blank`).
    pub fn describe(&self) -> String {
        match self {
            Target::Zfs(z) => format!("ZFS dataset {} to @{}", z.dataset, z.snapshot),
            Target::Btrfs(b) => {
                format!("BTRFS subvolume {} on {} from {}", b.subvolume, b.device.display(), b.blank)
            }
            Target::Tmpfs(t) => format!("tmpfs at {}", t.target.display()),
        }
    }
}

/// What a rollback did, per backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    Zfs(Outcome<zfs::Step>),
    Btrfs(Outcome<btrfs::Step>),
    Tmpfs(Outcome<tmpfs::Step>),
}

impl Report {
    /// Why the old root was kept, when it was.
    pub fn kept(&self) -> Option<&Kept> {
        match self {
            Report::Zfs(Outcome::Kept(k))
            | Report::Btrfs(Outcome::Kept(k))
            | Report::Tmpfs(Outcome::Kept(k)) => Some(k),
            _ => None,
        }
    }

    /// Whether the steps were only planned.
    pub fn planned(&self) -> bool {
        matches!(
            self,
            Report::Zfs(Outcome::Planned(_))
                | Report::Btrfs(Outcome::Planned(_))
                | Report::Tmpfs(Outcome::Planned(_))
        )
    }

    /// The steps, one line each.
    pub fn steps(&self) -> Vec<String> {
        fn lines<S: fmt::Display>(o: &Outcome<S>) -> Vec<String> {
            match o {
                Outcome::Reset(s) | Outcome::Planned(s) => s.iter().map(ToString::to_string).collect(),
                Outcome::Kept(_) => Vec::new(),
            }
        }
        match self {
            Report::Zfs(o) => lines(o),
            Report::Btrfs(o) => lines(o),
            Report::Tmpfs(o) => lines(o),
        }
    }
}

/// A rollback that failed part-way or could not start for a reason other
/// than a state it refuses to touch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Zfs(#[from] zfs::Error),
    #[error(transparent)]
    Btrfs(#[from] btrfs::Error),
    #[error(transparent)]
    Tmpfs(#[from] tmpfs::Error),
    #[error(transparent)]
    Diff(#[from] diff::DiffError),
}

/// Resets the root as `target` says (or plans it).
pub fn run(target: &Target, mode: Mode) -> Result<Report, Error> {
    Ok(match target {
        Target::Zfs(o) => Report::Zfs(zfs::rollback(o, mode)?),
        Target::Btrfs(o) => Report::Btrfs(btrfs::rollback(o, mode)?),
        Target::Tmpfs(o) => Report::Tmpfs(tmpfs::rollback(o, mode)?),
    })
}

/// What the next rollback of `target` erases. For a tmpfs root everything
/// on it that is not a mount point, below `target`'s directory.
pub fn diff(target: &Target) -> Result<Vec<diff::Change>, Error> {
    Ok(match target {
        Target::Zfs(o) => zfs::diff(o)?,
        Target::Btrfs(o) => btrfs::diff(o)?,
        Target::Tmpfs(o) => diff::compare(&o.target, None)?,
    })
}
