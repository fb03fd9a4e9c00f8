//! ZFS rollback through /dev/zfs: newer snapshots and bookmarks destroyed, then the dataset rolled back to its blank snapshot.
//!
//! Natively, without libzfs or the zfs CLI: the requests are ioctls on
//! /dev/zfs ([`ioctl`]), their arguments XDR-packed nvlists ([`nvlist`]).
//! Only the configured dataset is touched: its own snapshots and bookmarks
//! newer than the blank one, then the dataset itself (what `zfs rollback -r`
//! does, minus the clones, which make it refuse instead). Children and
//! siblings are never looked at. Pool import stays `zpool import -N`.

mod import;
mod ioctl;
mod kernel;
pub mod nvlist;
mod plan;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use ioctl::Errno;
pub use plan::Fault;

use crate::config::{DatasetName, PoolName, SnapshotName, ZfsPool};
use crate::{Kept, Mode, Outcome};

/// What to roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dataset: DatasetName,
    pub snapshot: SnapshotName,
}

/// One step of the plan, in the order they are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// A snapshot of the dataset newer than the blank one (all go in one request).
    DestroySnapshot { snapshot: String, createtxg: u64 },
    /// A bookmark of the dataset newer than the blank snapshot.
    DestroyBookmark { bookmark: String, createtxg: u64 },
    /// ZFS_IOC_ROLLBACK to `dataset@snapshot`.
    RollBack { dataset: String, snapshot: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DestroySnapshot { snapshot, .. } => write!(f, "destroy snapshot {snapshot}"),
            Step::DestroyBookmark { bookmark, .. } => write!(f, "destroy bookmark {bookmark}"),
            Step::RollBack { dataset, snapshot } => write!(f, "roll back {dataset} to @{snapshot}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {}: {errno} (expected the zfs kernel module to be loaded)", ioctl::DEVICE)]
    Open { errno: Errno },
    #[error("cannot read the properties of {name}: {fault}")]
    Stats { name: String, fault: Fault },
    #[error("cannot list the snapshots of {dataset}: {fault}")]
    ListSnapshots { dataset: String, fault: Fault },
    #[error("cannot list the bookmarks of {dataset}: {fault}")]
    ListBookmarks { dataset: String, fault: Fault },
    #[error("cannot destroy the snapshots of {dataset} newer than @{snapshot}: {fault}")]
    DestroySnapshots { dataset: String, snapshot: String, fault: Fault },
    #[error("cannot destroy the bookmarks of {dataset} newer than @{snapshot}: {fault}")]
    DestroyBookmarks { dataset: String, snapshot: String, fault: Fault },
    #[error("cannot roll {dataset} back to @{snapshot}: {fault}")]
    Rollback { dataset: String, snapshot: String, fault: Fault },
    #[error("cannot import the ZFS pool {pool}: no zpool command in PATH, /sbin, /usr/sbin or /bin")]
    NoZpool { pool: String },
    #[error(
        "cannot import the ZFS pool {pool} (zpool import -N{} -d {}): {last}",
        if *force { " -f" } else { "" },
        dev_nodes.display()
    )]
    Import { pool: String, dev_nodes: PathBuf, force: bool, last: String },
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(std::io::Error),
    #[error(
        "{dataset} is not mounted, so it cannot be compared with @{snapshot} (expected a zfs mount of it)"
    )]
    NotMounted { dataset: String, snapshot: String },
    #[error("cannot open the snapshot {dataset}@{snapshot} at {}: {source}", path.display())]
    SnapshotDir { dataset: String, snapshot: String, path: PathBuf, source: std::io::Error },
    #[error("comparing {dataset} with @{snapshot}: {source}")]
    Diff { dataset: String, snapshot: String, source: crate::diff::DiffError },
}

/// Rolls the dataset back (or, with [`Mode::DryRun`], only plans it).
///
/// A missing dataset or snapshot, a newer snapshot with clones or holds, or a
/// dataset that is not a file system is `Ok(Outcome::Kept(..))`: the old root
/// stays and the boot goes on. An errno nobody expects is an error.
pub fn rollback(opts: &Options, mode: Mode) -> Result<Outcome<Step>, Error> {
    if mode == Mode::Apply
        && let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo")
        && let Some(kept) = mounted(&mountinfo, opts)
    {
        return Ok(Outcome::Kept(kept));
    }
    let mut k = kernel::Kernel::open().map_err(|errno| Error::Open { errno })?;
    plan::run(&mut k, opts, mode)
}

/// Why a dataset mounted here is not rolled back: the rollback belongs before the root is
/// mounted, and a mounted one is a running system's.
fn mounted(mountinfo: &str, opts: &Options) -> Option<Kept> {
    let at = mount_point(mountinfo, opts.dataset.as_str())?;
    Some(Kept::new(format!(
        "{} is mounted at {}: expected it unmounted (the rollback runs in stage 1, before the root \
         is mounted); --dry-run shows what a rollback would do",
        opts.dataset,
        at.display()
    )))
}

/// `zpool import -N [-f] -d DEVNODES POOL`, retried until the pool's devices are there or the
/// timeout passes; with [`Mode::DryRun`] read-only (`-o readonly=on`), so that a dry run can
/// plan the rollback and writes nothing.
pub fn import(pool: &PoolName, opts: &ZfsPool, mode: Mode) -> Result<(), Error> {
    import::import(pool, opts, mode)
}

/// What the next rollback erases: files added or changed since the snapshot.
pub fn diff(opts: &Options) -> Result<Vec<crate::diff::Change>, Error> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::Mountinfo)?;
    let dataset = opts.dataset.to_string();
    let snapshot = opts.snapshot.to_string();
    let Some(root) = mount_point(&mountinfo, opts.dataset.as_str()) else {
        return Err(Error::NotMounted { dataset, snapshot });
    };
    let blank = root.join(".zfs/snapshot").join(opts.snapshot.as_str());
    // Looking into the snapshot directory mounts the snapshot there (ZFS automounts them);
    // doing it before the walk lists mount points keeps the walk out of it.
    if let Err(source) = std::fs::read_dir(&blank) {
        return Err(Error::SnapshotDir { dataset, snapshot, path: blank, source });
    }
    crate::diff::compare_skipping(&root, Some(&blank), &[".zfs"]).map_err(|source| Error::Diff {
        dataset,
        snapshot,
        source,
    })
}

/// Where `dataset` is mounted, from /proc/self/mountinfo: the first zfs mount whose source is it.
fn mount_point(mountinfo: &str, dataset: &str) -> Option<PathBuf> {
    use persist_bind::utab::unmangle;
    mountinfo.lines().find_map(|line| {
        // id parent dev root mountpoint options [optional…] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fstype, source) = (right.next()?, right.next()?);
        if fstype != "zfs" || unmangle(source) != dataset {
            return None;
        }
        let mp = left.split(' ').nth(4)?;
        Some(Path::new(&unmangle(mp)).to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_one_line_each() {
        let s = [
            Step::DestroySnapshot { snapshot: "rpool/local/root@later".into(), createtxg: 9 },
            Step::DestroyBookmark { bookmark: "rpool/local/root#mark".into(), createtxg: 8 },
            Step::RollBack { dataset: "rpool/local/root".into(), snapshot: "blank".into() },
        ];
        let s: Vec<String> = s.iter().map(Step::to_string).collect();
        assert_eq!(
            s,
            [
                "destroy snapshot rpool/local/root@later",
                "destroy bookmark rpool/local/root#mark",
                "roll back rpool/local/root to @blank"
            ]
        );
    }

    #[test]
    fn the_mount_point_comes_from_mountinfo() {
        let mi = "22 1 0:21 / / rw,relatime - zfs rpool/local/root rw,xattr\n\
                  23 22 0:22 / /nix rw - zfs rpool/local/nix rw\n\
                  24 22 0:23 / /my\\040home rw shared:5 - zfs rpool/safe/home rw\n\
                  25 22 0:24 / /other rw - ext4 rpool/safe/x rw\n";
        assert_eq!(mount_point(mi, "rpool/local/root"), Some(PathBuf::from("/")));
        assert_eq!(mount_point(mi, "rpool/safe/home"), Some(PathBuf::from("/my home")));
        assert_eq!(mount_point(mi, "rpool/safe/x"), None);
        assert_eq!(mount_point(mi, "rpool/local"), None);
    }

    /// The rollback runs before the root is mounted. A mounted dataset is a running system's
    /// root (a `rollback zfs` typed without --dry-run): pulling it from under it is refused.
    #[test]
    fn a_mounted_dataset_is_not_rolled_back() {
        let opts = Options {
            dataset: DatasetName::parse("rpool/local/root").unwrap(),
            snapshot: SnapshotName::parse("blank").unwrap(),
        };
        let mi = "22 1 0:21 / / rw,relatime - zfs rpool/local/root rw,xattr\n\
                  23 22 0:22 / /nix rw - zfs rpool/local/nix rw\n";
        let k = mounted(mi, &opts).unwrap();
        assert!(k.reason.contains("rpool/local/root is mounted at /"), "{k}");
        assert!(k.reason.contains("--dry-run"), "{k}");
        let mi = "23 22 0:22 / /nix rw - zfs rpool/local/nix rw\n\
                  24 22 0:23 / /sysroot/var rw - zfs rpool/local/root/var rw\n";
        assert_eq!(mounted(mi, &opts), None, "a child or a sibling mounted is no obstacle");
    }

    #[test]
    fn errors_name_what_and_the_errno() {
        let e = Error::Rollback {
            dataset: "rpool/local/root".into(),
            snapshot: "blank".into(),
            fault: Fault::Errno(Errno::EBUSY),
        };
        assert_eq!(
            e.to_string(),
            "cannot roll rpool/local/root back to @blank: EBUSY (Device or resource busy)"
        );
        let e = Error::Import {
            pool: "rpool".into(),
            dev_nodes: "/dev/disk/by-id".into(),
            force: false,
            last: "cannot import 'rpool': no such pool available".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot import the ZFS pool rpool (zpool import -N -d /dev/disk/by-id): \
             cannot import 'rpool': no such pool available"
        );
    }
}
