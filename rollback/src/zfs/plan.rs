//! The rollback plan, worked out from what the pool reports, and carried out; the pool sits behind the [`Pool`] trait so that the logic is tested without a kernel module.

use super::ioctl::Errno;
use super::nvlist::{DecodeError, EncodeError};
use super::{Error, Options, Step};
use crate::{Kept, Mode, Outcome};

/// `dmu_objset_type_t`: DMU_OST_ZFS, a file system.
pub const DMU_OST_ZFS: u32 = 2;
/// DMU_OST_ZVOL, a volume.
pub const DMU_OST_ZVOL: u32 = 3;

/// The part of `dmu_objset_stats_t` the plan looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjsetStats {
    pub kind: u32,
    pub is_snapshot: bool,
    pub inconsistent: bool,
    pub createtxg: u64,
    pub num_clones: u64,
}

/// A snapshot of the dataset, by its full name (`pool/ds@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub createtxg: u64,
    pub num_clones: u64,
}

/// A bookmark of the dataset, by its full name (`pool/ds#name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub name: String,
    pub createtxg: u64,
}

/// The properties of a snapshot that can stop its destruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotProps {
    /// The `clones` property: datasets cloned from the snapshot.
    pub clones: Vec<String>,
    /// The `userrefs` property: `zfs hold`s on it.
    pub userrefs: u64,
}

/// What went wrong in one request to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Errno(Errno),
    /// A request on several names failed, with the kernel's errno for each.
    #[error("{errno}: {}", names(failed))]
    Failed { errno: Errno, failed: Vec<(String, Errno)> },
    #[error("the kernel's answer is unreadable: {0}")]
    Decode(#[from] DecodeError),
    #[error("the request cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

fn names(failed: &[(String, Errno)]) -> String {
    failed.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join(", ")
}

impl From<Errno> for Fault {
    fn from(e: Errno) -> Fault {
        Fault::Errno(e)
    }
}

/// The requests a rollback makes.
pub trait Pool {
    /// ZFS_IOC_OBJSET_STATS without properties.
    fn objset_stats(&mut self, name: &str) -> Result<ObjsetStats, Fault>;
    /// ZFS_IOC_SNAPSHOT_LIST_NEXT until ESRCH, in the kernel's order.
    fn snapshots(&mut self, dataset: &str) -> Result<Vec<Snapshot>, Fault>;
    /// ZFS_IOC_OBJSET_STATS with properties.
    fn snapshot_props(&mut self, snapshot: &str) -> Result<SnapshotProps, Fault>;
    /// ZFS_IOC_GET_BOOKMARKS.
    fn bookmarks(&mut self, dataset: &str) -> Result<Vec<Bookmark>, Fault>;
    /// ZFS_IOC_DESTROY_SNAPS, all at once (the kernel destroys all or none).
    fn destroy_snapshots(&mut self, pool: &str, snapshots: &[String]) -> Result<(), Fault>;
    /// ZFS_IOC_DESTROY_BOOKMARKS.
    fn destroy_bookmarks(&mut self, pool: &str, bookmarks: &[String]) -> Result<(), Fault>;
    /// ZFS_IOC_ROLLBACK to `target`, which must be the latest snapshot.
    fn rollback(&mut self, dataset: &str, target: &str) -> Result<(), Fault>;
}

/// Plans and, unless `mode` is a dry run, applies.
pub fn run(pool: &mut impl Pool, opts: &Options, mode: Mode) -> Result<Outcome<Step>, Error> {
    let steps = match plan(pool, opts)? {
        Ok(steps) => steps,
        Err(kept) => return Ok(Outcome::Kept(kept)),
    };
    if mode == Mode::DryRun {
        return Ok(Outcome::Planned(steps));
    }
    apply(pool, opts, &steps)?;
    Ok(Outcome::Reset(steps))
}

/// The steps that roll the dataset back, or why it is left alone.
pub fn plan(pool: &mut impl Pool, opts: &Options) -> Result<Result<Vec<Step>, Kept>, Error> {
    let ds = opts.dataset.as_str();
    let target = format!("{ds}@{}", opts.snapshot);
    let keep = |reason: String| Ok(Err(Kept::new(reason)));

    let stats = match pool.objset_stats(ds) {
        Ok(s) => s,
        Err(Fault::Errno(Errno::ENOENT)) => {
            return keep(format!(
                "the dataset {ds} does not exist (is the pool {} imported?)",
                opts.dataset.pool()
            ));
        }
        Err(fault) => return Err(Error::Stats { name: ds.to_owned(), fault }),
    };
    if stats.is_snapshot || stats.kind != DMU_OST_ZFS {
        let what = if stats.kind == DMU_OST_ZVOL { "a volume" } else { "not a file system" };
        return keep(format!("{ds} is {what}, expected a file system (type {})", stats.kind));
    }
    if stats.inconsistent {
        return keep(format!("{ds} is inconsistent (an interrupted zfs receive)"));
    }
    let blank = match pool.objset_stats(&target) {
        Ok(s) if s.is_snapshot => s,
        Ok(_) => return keep(format!("{target} is not a snapshot")),
        Err(Fault::Errno(Errno::ENOENT)) => {
            return keep(format!(
                "the snapshot {target} does not exist (take it once, right after creating {ds}: zfs snapshot {target})"
            ));
        }
        Err(fault) => return Err(Error::Stats { name: target, fault }),
    };

    let all = pool.snapshots(ds).map_err(|fault| Error::ListSnapshots { dataset: ds.to_owned(), fault })?;
    let prefix = format!("{ds}@");
    let mut newer = Vec::new();
    for s in all {
        if !s.name.starts_with(&prefix) {
            let fault = Fault::Answer(format!("{} is not a snapshot of {ds}", s.name));
            return Err(Error::ListSnapshots { dataset: ds.to_owned(), fault });
        }
        if s.createtxg > blank.createtxg && s.name != target {
            newer.push(s);
        }
    }
    newer.sort_by(|a, b| b.createtxg.cmp(&a.createtxg).then_with(|| a.name.cmp(&b.name)));
    for s in &newer {
        let props =
            pool.snapshot_props(&s.name).map_err(|fault| Error::Stats { name: s.name.clone(), fault })?;
        if s.num_clones > 0 || !props.clones.is_empty() {
            let clones = if props.clones.is_empty() {
                format!("{} clone(s)", s.num_clones)
            } else {
                format!("the clone {}", props.clones.join(", "))
            };
            return keep(format!(
                "{} is newer than {target} and has {clones}, which rolling back would have to destroy \
                 (zfs promote or destroy the clone first)",
                s.name
            ));
        }
        if props.userrefs > 0 {
            return keep(format!(
                "{} is newer than {target} and has {} user hold(s) (zfs holds {0}; zfs release them first)",
                s.name, props.userrefs
            ));
        }
    }

    let prefix = format!("{ds}#");
    let mut bookmarks = Vec::new();
    for b in pool.bookmarks(ds).map_err(|fault| Error::ListBookmarks { dataset: ds.to_owned(), fault })? {
        if !b.name.starts_with(&prefix) {
            let fault = Fault::Answer(format!("{} is not a bookmark of {ds}", b.name));
            return Err(Error::ListBookmarks { dataset: ds.to_owned(), fault });
        }
        // The kernel refuses a rollback while a bookmark is newer than the latest snapshot.
        if b.createtxg > blank.createtxg {
            bookmarks.push(b);
        }
    }
    bookmarks.sort_by(|a, b| b.createtxg.cmp(&a.createtxg).then_with(|| a.name.cmp(&b.name)));

    let mut steps: Vec<Step> = newer
        .into_iter()
        .map(|s| Step::DestroySnapshot { snapshot: s.name, createtxg: s.createtxg })
        .collect();
    steps.extend(
        bookmarks.into_iter().map(|b| Step::DestroyBookmark { bookmark: b.name, createtxg: b.createtxg }),
    );
    steps.push(Step::RollBack { dataset: ds.to_owned(), snapshot: opts.snapshot.to_string() });
    Ok(Ok(steps))
}

/// Carries out a plan: the newer snapshots in one request, then the bookmarks, then the rollback.
pub fn apply(pool: &mut impl Pool, opts: &Options, steps: &[Step]) -> Result<(), Error> {
    let ds = opts.dataset.as_str();
    let pool_name = opts.dataset.pool();
    let snapshots: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DestroySnapshot { snapshot, .. } => Some(snapshot.clone()),
            _ => None,
        })
        .collect();
    let bookmarks: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DestroyBookmark { bookmark, .. } => Some(bookmark.clone()),
            _ => None,
        })
        .collect();
    if !snapshots.is_empty() {
        log::info!("zfs: destroying {}", snapshots.join(", "));
        pool.destroy_snapshots(pool_name, &snapshots).map_err(|fault| Error::DestroySnapshots {
            dataset: ds.to_owned(),
            snapshot: opts.snapshot.to_string(),
            fault,
        })?;
    }
    if !bookmarks.is_empty() {
        log::info!("zfs: destroying {}", bookmarks.join(", "));
        pool.destroy_bookmarks(pool_name, &bookmarks).map_err(|fault| Error::DestroyBookmarks {
            dataset: ds.to_owned(),
            snapshot: opts.snapshot.to_string(),
            fault,
        })?;
    }
    for step in steps {
        if let Step::RollBack { dataset, snapshot } = step {
            log::info!("zfs: {step}");
            pool.rollback(dataset, &format!("{dataset}@{snapshot}")).map_err(|fault| Error::Rollback {
                dataset: dataset.clone(),
                snapshot: snapshot.clone(),
                fault,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory pool that behaves like the kernel for the requests a rollback makes.

    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Clone, Default)]
    pub struct FakePool {
        pub datasets: BTreeMap<String, ObjsetStats>,
        /// By full name.
        pub snapshots: BTreeMap<String, (ObjsetStats, SnapshotProps)>,
        pub bookmarks: BTreeMap<String, u64>,
        /// Datasets whose content was rolled back, in order.
        pub rolled_back: Vec<String>,
        /// Every request that changed something, in order.
        pub log: Vec<String>,
        /// Errnos to answer a request with, by request name.
        pub fail: BTreeMap<&'static str, Errno>,
    }

    impl FakePool {
        pub fn new() -> FakePool {
            FakePool::default()
        }

        pub fn filesystem(mut self, name: &str) -> FakePool {
            let s = ObjsetStats { kind: DMU_OST_ZFS, createtxg: 1, ..Default::default() };
            self.datasets.insert(name.to_owned(), s);
            self
        }

        pub fn snapshot(mut self, name: &str, txg: u64) -> FakePool {
            let s =
                ObjsetStats { kind: DMU_OST_ZFS, is_snapshot: true, createtxg: txg, ..Default::default() };
            self.snapshots.insert(name.to_owned(), (s, SnapshotProps::default()));
            self
        }

        pub fn clone_of(mut self, snapshot: &str, clone: &str) -> FakePool {
            if let Some((s, p)) = self.snapshots.get_mut(snapshot) {
                s.num_clones += 1;
                p.clones.push(clone.to_owned());
            }
            self.filesystem(clone)
        }

        pub fn bookmark(mut self, name: &str, txg: u64) -> FakePool {
            self.bookmarks.insert(name.to_owned(), txg);
            self
        }

        fn check(&self, request: &'static str) -> Result<(), Fault> {
            self.fail.get(request).map_or(Ok(()), |e| Err(Fault::Errno(*e)))
        }

        fn latest_snapshot_txg(&self, ds: &str) -> u64 {
            let prefix = format!("{ds}@");
            self.snapshots
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, s)| s.0.createtxg)
                .max()
                .unwrap_or(0)
        }
    }

    impl Pool for FakePool {
        fn objset_stats(&mut self, name: &str) -> Result<ObjsetStats, Fault> {
            self.check("objset_stats")?;
            self.datasets
                .get(name)
                .or_else(|| self.snapshots.get(name).map(|s| &s.0))
                .cloned()
                .ok_or(Fault::Errno(Errno::ENOENT))
        }

        fn snapshots(&mut self, dataset: &str) -> Result<Vec<Snapshot>, Fault> {
            self.check("snapshots")?;
            let prefix = format!("{dataset}@");
            // The kernel lists in ZAP hash order: anything but creation order.
            let mut v: Vec<Snapshot> = self
                .snapshots
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, (s, _))| Snapshot {
                    name: n.clone(),
                    createtxg: s.createtxg,
                    num_clones: s.num_clones,
                })
                .collect();
            v.reverse();
            Ok(v)
        }

        fn snapshot_props(&mut self, snapshot: &str) -> Result<SnapshotProps, Fault> {
            self.check("snapshot_props")?;
            self.snapshots.get(snapshot).map(|s| s.1.clone()).ok_or(Fault::Errno(Errno::ENOENT))
        }

        fn bookmarks(&mut self, dataset: &str) -> Result<Vec<Bookmark>, Fault> {
            self.check("bookmarks")?;
            let prefix = format!("{dataset}#");
            Ok(self
                .bookmarks
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, t)| Bookmark { name: n.clone(), createtxg: *t })
                .collect())
        }

        fn destroy_snapshots(&mut self, pool: &str, snapshots: &[String]) -> Result<(), Fault> {
            self.check("destroy_snapshots")?;
            let mut failed = Vec::new();
            for s in snapshots {
                if !s.starts_with(&format!("{pool}/")) && !s.starts_with(&format!("{pool}@")) {
                    return Err(Fault::Errno(Errno(18)));
                }
                match self.snapshots.get(s) {
                    Some((st, _)) if st.num_clones > 0 => failed.push((s.clone(), Errno::EEXIST)),
                    Some((_, p)) if p.userrefs > 0 => failed.push((s.clone(), Errno::EBUSY)),
                    _ => {}
                }
            }
            if let Some((_, e)) = failed.first() {
                return Err(Fault::Failed { errno: *e, failed });
            }
            for s in snapshots {
                self.snapshots.remove(s);
                self.log.push(format!("destroy {s}"));
            }
            Ok(())
        }

        fn destroy_bookmarks(&mut self, _pool: &str, bookmarks: &[String]) -> Result<(), Fault> {
            self.check("destroy_bookmarks")?;
            for b in bookmarks {
                self.bookmarks.remove(b);
                self.log.push(format!("destroy {b}"));
            }
            Ok(())
        }

        fn rollback(&mut self, dataset: &str, target: &str) -> Result<(), Fault> {
            self.check("rollback")?;
            let txg = self.snapshots.get(target).ok_or(Fault::Errno(Errno::ESRCH))?.0.createtxg;
            // dsl_dataset_rollback_check: the target must be the latest snapshot, and no
            // bookmark may be newer than it.
            let prefix = format!("{dataset}#");
            let newer_bookmark = self.bookmarks.iter().any(|(n, t)| n.starts_with(&prefix) && *t > txg);
            if self.latest_snapshot_txg(dataset) != txg || newer_bookmark {
                return Err(Fault::Errno(Errno::EEXIST));
            }
            self.rolled_back.push(dataset.to_owned());
            self.log.push(format!("rollback {dataset} to {target}"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakePool;
    use super::*;
    use crate::config::{DatasetName, SnapshotName};

    fn opts() -> Options {
        Options {
            dataset: DatasetName::parse("rpool/local/root").unwrap(),
            snapshot: SnapshotName::parse("blank").unwrap(),
        }
    }

    /// rpool/local/root with @blank (txg 10) and snapshots on either side of it, a sibling and a child.
    fn pool() -> FakePool {
        FakePool::new()
            .filesystem("rpool/local/root")
            .filesystem("rpool/local/root/child")
            .filesystem("rpool/safe/persist")
            .snapshot("rpool/local/root@older", 5)
            .snapshot("rpool/local/root@blank", 10)
            .snapshot("rpool/local/root@a", 30)
            .snapshot("rpool/local/root@z", 20)
            .snapshot("rpool/local/root@same-txg", 30)
            .snapshot("rpool/local/root/child@a", 40)
            .snapshot("rpool/safe/persist@a", 50)
            .bookmark("rpool/local/root#old", 5)
            .bookmark("rpool/local/root#at-blank", 10)
            .bookmark("rpool/local/root#new", 25)
            .bookmark("rpool/safe/persist#new", 60)
    }

    fn shown(o: &Outcome<Step>) -> Vec<String> {
        match o {
            Outcome::Reset(s) | Outcome::Planned(s) => s.iter().map(|s| s.to_string()).collect(),
            Outcome::Kept(k) => vec![k.to_string()],
        }
    }

    #[test]
    fn newer_snapshots_newest_first_then_bookmarks_then_the_rollback() {
        let mut p = pool();
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        assert_eq!(
            shown(&o),
            [
                "destroy snapshot rpool/local/root@a",
                "destroy snapshot rpool/local/root@same-txg",
                "destroy snapshot rpool/local/root@z",
                "destroy bookmark rpool/local/root#new",
                "roll back rpool/local/root to @blank",
            ]
        );
        assert!(matches!(o, Outcome::Reset(_)));
        assert_eq!(p.rolled_back, ["rpool/local/root"]);
        // Older snapshots and bookmarks, the child's and the sibling's are all still there.
        let left: Vec<&str> = p.snapshots.keys().map(String::as_str).collect();
        assert_eq!(
            left,
            [
                "rpool/local/root/child@a",
                "rpool/local/root@blank",
                "rpool/local/root@older",
                "rpool/safe/persist@a"
            ]
        );
        let left: Vec<&str> = p.bookmarks.keys().map(String::as_str).collect();
        assert_eq!(left, ["rpool/local/root#at-blank", "rpool/local/root#old", "rpool/safe/persist#new"]);
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let mut p = pool();
        let o = run(&mut p, &opts(), Mode::DryRun).unwrap();
        assert!(matches!(&o, Outcome::Planned(s) if s.len() == 5), "{o:?}");
        assert!(p.log.is_empty());
    }

    #[test]
    fn nothing_newer_is_just_the_rollback() {
        let mut p = FakePool::new().filesystem("rpool/local/root").snapshot("rpool/local/root@blank", 10);
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        assert_eq!(shown(&o), ["roll back rpool/local/root to @blank"]);
        assert_eq!(p.log, ["rollback rpool/local/root to rpool/local/root@blank"]);
    }

    #[test]
    fn a_clone_of_a_newer_snapshot_keeps_everything() {
        let mut p = pool().clone_of("rpool/local/root@z", "rpool/other");
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        let Outcome::Kept(k) = &o else { panic!("{o:?}") };
        assert!(k.reason.contains("rpool/local/root@z") && k.reason.contains("rpool/other"), "{k}");
        assert!(p.log.is_empty());
        // A clone of the blank itself or of an older snapshot is no obstacle.
        let mut p = pool()
            .clone_of("rpool/local/root@blank", "rpool/c1")
            .clone_of("rpool/local/root@older", "rpool/c2");
        assert!(matches!(run(&mut p, &opts(), Mode::Apply).unwrap(), Outcome::Reset(_)));
    }

    #[test]
    fn a_held_newer_snapshot_keeps_everything() {
        let mut p = pool();
        p.snapshots.get_mut("rpool/local/root@a").unwrap().1.userrefs = 2;
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        assert!(matches!(&o, Outcome::Kept(k) if k.reason.contains("2 user hold")), "{o:?}");
        assert!(p.log.is_empty());
    }

    #[test]
    fn missing_dataset_or_snapshot_keeps_the_old_root() {
        let mut p = FakePool::new();
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        assert!(
            matches!(&o, Outcome::Kept(k) if k.reason.contains("rpool/local/root does not exist")),
            "{o:?}"
        );
        let mut p = FakePool::new().filesystem("rpool/local/root").snapshot("rpool/local/root@other", 3);
        let o = run(&mut p, &opts(), Mode::Apply).unwrap();
        assert!(
            matches!(&o, Outcome::Kept(k) if k.reason.contains("rpool/local/root@blank does not exist")),
            "{o:?}"
        );
        assert!(p.log.is_empty());
    }

    #[test]
    fn a_volume_or_an_inconsistent_dataset_is_left_alone() {
        let mut p = pool();
        p.datasets.get_mut("rpool/local/root").unwrap().kind = DMU_OST_ZVOL;
        assert!(
            matches!(run(&mut p, &opts(), Mode::Apply).unwrap(), Outcome::Kept(k) if k.reason.contains("volume"))
        );
        let mut p = pool();
        p.datasets.get_mut("rpool/local/root").unwrap().inconsistent = true;
        assert!(matches!(run(&mut p, &opts(), Mode::Apply).unwrap(), Outcome::Kept(_)));
        assert!(p.log.is_empty());
    }

    #[test]
    fn unexpected_errnos_are_errors_naming_what() {
        let mut p = pool();
        p.fail.insert("objset_stats", Errno(5));
        let e = run(&mut p, &opts(), Mode::Apply).unwrap_err().to_string();
        assert!(e.contains("rpool/local/root") && e.contains("EIO"), "{e}");

        let mut p = pool();
        p.fail.insert("rollback", Errno::EBUSY);
        let e = run(&mut p, &opts(), Mode::Apply).unwrap_err().to_string();
        assert!(e.contains("rpool/local/root") && e.contains("@blank") && e.contains("EBUSY"), "{e}");

        let mut p = pool();
        p.fail.insert("bookmarks", Errno::EINVAL);
        let e = run(&mut p, &opts(), Mode::DryRun).unwrap_err().to_string();
        assert!(e.contains("bookmarks of rpool/local/root") && e.contains("EINVAL"), "{e}");
    }

    #[test]
    fn steps_serialize_for_json_output() {
        let s = Step::DestroySnapshot { snapshot: "p/d@x".into(), createtxg: 7 };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"step":"destroy-snapshot","snapshot":"p/d@x","createtxg":7}"#
        );
    }
}
