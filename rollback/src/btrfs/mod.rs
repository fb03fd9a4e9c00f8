//! BTRFS rollback: the root subvolume re-created from a blank snapshot, in an order a power cut cannot break.
//!
//! The top level (subvolid=5) is mounted privately, the state below it read,
//! a plan made ([`plan`]) and applied step by step. At every point of the plan
//! a complete subvolume is at the root's name, or the next run's repair can
//! finish the switch (`<root>.lethe-new` is complete before the old root moves).
//! Subvolumes are deleted by id, nested ones first, found through the kernel's
//! ROOT_REF items; only the root's, lethe's temporaries and old roots are.

mod ioctl;
mod plan;
mod toplevel;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use self::plan::{State, numbered};
pub use self::plan::{Step, Why};
use self::toplevel::TopLevel;
pub use crate::config::OldRoots;
use crate::config::SubvolPath;
use crate::{Mode as RunMode, Outcome};

/// What to reset, with the device already resolved to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub device: PathBuf,
    pub subvolume: SubvolPath,
    pub blank: SubvolPath,
    pub old_roots: Option<OldRoots>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{device}: cannot mount the top level (subvolid=5) privately to reset {subvolume}: {source}")]
    Mount { device: PathBuf, subvolume: SubvolPath, source: io::Error },
    #[error("{device}: cannot inspect {path}: {source}")]
    Inspect { device: PathBuf, path: String, source: io::Error },
    #[error("{device}: cannot {step}: {source}")]
    Step { device: PathBuf, step: Box<Step>, source: io::Error },
    #[error("{device}: cannot {step}: {source}; the old root was put back at {root}")]
    Restored { device: PathBuf, step: Box<Step>, root: SubvolPath, source: io::Error },
    #[error(
        "{device}: cannot {step}: {source}; putting the old root back failed too ({restore}): \
         it is at {old}, expected at {root}"
    )]
    NotRestored {
        device: PathBuf,
        step: Box<Step>,
        root: SubvolPath,
        old: SubvolPath,
        source: io::Error,
        restore: io::Error,
    },
    #[error("{device}: cannot {action} through /dev/btrfs-control: {source}")]
    Control { device: PathBuf, action: &'static str, source: io::Error },
    #[error("{device}: cannot compare {subvolume} with the blank snapshot {blank}: {source}")]
    Diff { device: PathBuf, subvolume: SubvolPath, blank: SubvolPath, source: crate::diff::DiffError },
    /// `diff` on a layout the rollback would refuse; `reason` names the device and the path.
    #[error("nothing to compare, a rollback would keep {subvolume}: {reason}")]
    WouldKeep { device: PathBuf, subvolume: SubvolPath, reason: String },
}

/// Resets the root subvolume (or, with [`RunMode::DryRun`], only plans it).
pub fn rollback(opts: &Options, mode: RunMode) -> Result<Outcome<Step>, Error> {
    rollback_with(opts, mode, &Hooks::default())
}

/// Test hooks: a simulated power cut and a clock.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Apply only this many steps, then stop as a power cut would: no cleanup, no restore.
    pub stop_after: Option<usize>,
    /// Fail this step (counted from 0) with EIO instead of applying it, as a failing disk would.
    pub fail_at: Option<usize>,
    /// The time the run believes it is (old roots' names, pruning).
    pub now: Option<SystemTime>,
    /// Mount the top level the way kernels without fsmount (before 5.2) need.
    pub legacy_mount: bool,
}

/// Applies the first `n` steps of the plan and stops, as a power cut would.
#[doc(hidden)]
pub fn rollback_stopping_after(opts: &Options, n: usize) -> Result<Outcome<Step>, Error> {
    rollback_with(opts, RunMode::Apply, &Hooks { stop_after: Some(n), ..Hooks::default() })
}

#[doc(hidden)]
pub fn rollback_with(opts: &Options, mode: RunMode, hooks: &Hooks) -> Result<Outcome<Step>, Error> {
    let now = hooks.now.unwrap_or_else(SystemTime::now);
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let top = match hooks.legacy_mount {
        false => TopLevel::mount(&opts.device),
        true => TopLevel::mount_legacy(&opts.device),
    }
    .map_err(|source| Error::Mount {
        device: opts.device.clone(),
        subvolume: opts.subvolume.clone(),
        source,
    })?;
    // Two runs at once would take each other's temporaries for leftovers.
    if mode == RunMode::Apply
        && !top.try_lock().map_err(|source| inspect_error(opts, "the top level's lock", source))?
    {
        return Ok(Outcome::Kept(crate::Kept::new(format!(
            "{}: another rollback of this file system is running (it holds the lock on the top level): \
             expected to run alone; that one resets {}",
            opts.device.display(),
            opts.subvolume
        ))));
    }
    let state = inspect(&top, opts)?;
    let steps = match plan::plan(opts, &state, now) {
        Ok(steps) => steps,
        Err(kept) => return Ok(Outcome::Kept(kept)),
    };
    match mode {
        RunMode::DryRun => Ok(Outcome::Planned(steps)),
        RunMode::Apply => {
            let n = hooks.stop_after.unwrap_or(usize::MAX);
            apply(&top, opts, steps.into_iter().take(n), hooks.fail_at).map(Outcome::Reset)
        }
    }
}

fn inspect_error(opts: &Options, path: &str, source: io::Error) -> Error {
    Error::Inspect { device: opts.device.clone(), path: path.to_owned(), source }
}

/// Reads everything the plan depends on.
fn inspect(top: &TopLevel, opts: &Options) -> Result<State, Error> {
    let err = |path: &dyn std::fmt::Display| {
        let path = path.to_string();
        move |source| Error::Inspect { device: opts.device.clone(), path, source }
    };
    let entry = |p: &SubvolPath| top.entry(p).map_err(err(p));
    let root = &opts.subvolume;
    Ok(State {
        root: entry(root)?,
        new: entry(&root.with_suffix(plan::NEW_SUFFIX))?,
        retired: entry(&root.with_suffix(plan::OLD_SUFFIX))?,
        blank: entry(&opts.blank)?,
        old_roots: match &opts.old_roots {
            Some(o) => Some(top.old_roots(&o.path).map_err(err(&o.path))?),
            None => None,
        },
        default_subvolume: top.default_subvolume().map_err(err(&"the default subvolume"))?,
        mounted: top.mounted().map_err(err(&"the mounts (/proc/self/mountinfo)"))?,
    })
}

/// Carries out `steps` in order; returns them as done (an old root's name may
/// have moved on if it was taken meanwhile).
fn apply(
    top: &TopLevel,
    opts: &Options,
    steps: impl Iterator<Item = Step>,
    fail_at: Option<usize>,
) -> Result<Vec<Step>, Error> {
    let mut done = Vec::new();
    // Where this run moved the old root, until the new root is in place.
    let mut moved_aside: Option<SubvolPath> = None;
    for (i, step) in steps.enumerate() {
        let result = match fail_at {
            Some(f) if f == i => Err(io::Error::from(Errno::IO)),
            _ => apply_one(top, opts, &step),
        };
        let step = match result {
            Ok(step) => step,
            Err(source) => {
                let device = opts.device.clone();
                let step = Box::new(step);
                return Err(match moved_aside {
                    None => Error::Step { device, step, source },
                    Some(old) => match rename(top, &old, &opts.subvolume) {
                        Ok(()) => Error::Restored { device, step, root: opts.subvolume.clone(), source },
                        Err(restore) => Error::NotRestored {
                            device,
                            step,
                            root: opts.subvolume.clone(),
                            old,
                            source,
                            restore,
                        },
                    },
                });
            }
        };
        match &step {
            Step::Retire { to, .. } => moved_aside = Some(to.clone()),
            Step::Switch { .. } => moved_aside = None,
            _ => {}
        }
        log::info!("{}: {step}", opts.device.display());
        done.push(step);
    }
    Ok(done)
}

fn apply_one(top: &TopLevel, opts: &Options, step: &Step) -> io::Result<Step> {
    match step {
        Step::FinishSwitch { new, root } | Step::Switch { new, root } => rename(top, new, root)?,
        Step::CreateDir { path } => create_dirs(top, path)?,
        Step::Snapshot { blank, new } => {
            let source = top.open_dir(blank.as_str())?;
            let dir = top.parent_of(new)?;
            ioctl::snap_create(dir.as_fd(), new.file_name().as_bytes(), source.as_fd())?;
        }
        Step::Retire { root, to } if opts.old_roots.is_some() => return retire(top, root, to),
        Step::Retire { root, to } => rename(top, root, to)?,
        Step::Sync => ioctl::sync(top.fd())?,
        Step::Delete { id, .. } => ioctl::snap_destroy_by_id(top.fd(), *id)?,
    }
    Ok(step.clone())
}

/// Moves the old root aside. The plan picked a free name; should it have been
/// taken since, the next free number is used, never an existing entry.
fn retire(top: &TopLevel, root: &SubvolPath, to: &SubvolPath) -> io::Result<Step> {
    let mut target = to.clone();
    for n in 2..1000 {
        match rename(top, root, &target) {
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                let parent = to.parent().ok_or(e)?;
                target = parent.join(&numbered(to.file_name(), n)).map_err(io::Error::other)?;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(Step::Retire { root: root.clone(), to: target }),
        }
    }
    Err(io::Error::from(Errno::EXIST))
}

/// Renames without ever replacing what is at `to` (a rename over an empty directory would).
fn rename(top: &TopLevel, from: &SubvolPath, to: &SubvolPath) -> io::Result<()> {
    let from_dir = top.parent_of(from)?;
    let to_dir = top.parent_of(to)?;
    rustix::fs::renameat_with(&from_dir, from.file_name(), &to_dir, to.file_name(), RenameFlags::NOREPLACE)
        .map_err(io::Error::from)
}

/// `mkdir -p`, beneath the top level; new directories are 0700 (old roots hold whole roots).
fn create_dirs(top: &TopLevel, path: &SubvolPath) -> io::Result<()> {
    let mut at = top.open_dir(".")?;
    for part in path.as_str().split('/') {
        match rustix::fs::mkdirat(&at, part, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        at = rustix::fs::openat2(
            &at,
            part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
        )?;
    }
    Ok(())
}

fn control(device: &Path, action: &'static str) -> Result<std::os::fd::OwnedFd, Error> {
    rustix::fs::open("/dev/btrfs-control", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::Control { device: device.to_path_buf(), action, source: e.into() })
}

/// Registers a device with the kernel (BTRFS_IOC_SCAN_DEV), for multi-device file systems.
pub fn scan_device(device: &Path) -> Result<(), Error> {
    let action = "register the device (SCAN_DEV)";
    let fd = control(device, action)?;
    ioctl::scan_dev(&fd, device.as_os_str().as_bytes()).map_err(|source| Error::Control {
        device: device.to_path_buf(),
        action,
        source,
    })
}

/// Whether every device of the file system on `device` is known (BTRFS_IOC_DEVICES_READY).
pub fn devices_ready(device: &Path) -> Result<bool, Error> {
    let action = "ask whether all devices are there (DEVICES_READY)";
    let fd = control(device, action)?;
    ioctl::devices_ready(&fd, device.as_os_str().as_bytes()).map_err(|source| Error::Control {
        device: device.to_path_buf(),
        action,
        source,
    })
}

/// What the next rollback erases: the root's files added or changed since the blank snapshot.
pub fn diff(opts: &Options) -> Result<Vec<crate::diff::Change>, Error> {
    let top = TopLevel::mount(&opts.device).map_err(|source| Error::Mount {
        device: opts.device.clone(),
        subvolume: opts.subvolume.clone(),
        source,
    })?;
    // Judged as the rollback judges it: a layout it would refuse has no diff to
    // speak of. Except for the mounts: a diff is mostly asked for on the running
    // system, whose root is mounted.
    let mut state = inspect(&top, opts)?;
    state.mounted.clear();
    if let Err(kept) = plan::plan(opts, &state, 0) {
        return Err(Error::WouldKeep {
            device: opts.device.clone(),
            subvolume: opts.subvolume.clone(),
            reason: kept.reason,
        });
    }
    // The detached mount has no path of its own; /proc/self/fd names it while `top` lives.
    let base = top.proc_path();
    crate::diff::compare(&base.join(opts.subvolume.as_str()), Some(&base.join(opts.blank.as_str()))).map_err(
        |source| Error::Diff {
            device: opts.device.clone(),
            subvolume: opts.subvolume.clone(),
            blank: opts.blank.clone(),
            source,
        },
    )
}
