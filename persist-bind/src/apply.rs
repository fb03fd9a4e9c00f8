//! Carrying out a plan against the real tree, entry by entry: one failing entry never stops the others.

use std::path::PathBuf;

use serde::Serialize;

use crate::beneath::{FsError, Root};
use crate::path::RootPath;
use crate::plan::{Outcome, Plan, Step};
use crate::utab::{self, UtabEntry};

/// What happened to each entry.
#[derive(Debug, Serialize)]
pub struct Report {
    pub entries: Vec<EntryReport>,
    /// A failure to record mount options (the mounts themselves stand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utab_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EntryReport {
    pub origin: String,
    pub target: RootPath,
    #[serde(flatten)]
    pub status: Status,
}

#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    /// Nothing to do: already in place.
    InPlace,
    Applied {
        steps: usize,
    },
    Failed {
        error: String,
    },
}

impl Report {
    pub fn failed(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.status, Status::Failed { .. })).count()
    }
    pub fn changed(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.status, Status::Applied { .. })).count()
    }
}

/// Where mount options are recorded, and how to find mount roots.
#[derive(Debug, Clone)]
pub struct UtabTarget {
    pub utab: PathBuf,
    pub mountinfo: PathBuf,
}

impl Default for UtabTarget {
    fn default() -> Self {
        UtabTarget { utab: "/run/mount/utab".into(), mountinfo: "/proc/self/mountinfo".into() }
    }
}

/// Runs every entry's steps in order; an entry stops at its first failure.
pub fn apply(plan: &Plan, root: &Root, utab: &UtabTarget) -> Report {
    let mut pending = Vec::new();
    let entries = plan
        .entries
        .iter()
        .map(|e| {
            let status = match &e.outcome {
                Outcome::Error(err) => Status::Failed { error: err.to_string() },
                Outcome::Steps(steps) if steps.is_empty() => Status::InPlace,
                Outcome::Steps(steps) => match run(steps, root, &mut pending) {
                    Ok(()) => Status::Applied { steps: steps.len() },
                    Err(err) => Status::Failed { error: err.to_string() },
                },
            };
            EntryReport { origin: e.origin.clone(), target: e.target.clone(), status }
        })
        .collect();
    let mut utab_error = None;
    if !pending.is_empty() {
        let mountinfo = std::fs::read_to_string(&utab.mountinfo).unwrap_or_default();
        for p in &mut pending {
            p.fs = utab::mount_info(&mountinfo, p.id);
        }
        if let Err(e) = utab::append(&utab.utab, &pending) {
            utab_error = Some(format!("{}: {e}", utab.utab.display()));
        }
    }
    Report { entries, utab_error }
}

fn run(steps: &[Step], root: &Root, utab: &mut Vec<UtabEntry>) -> Result<(), FsError> {
    for step in steps {
        match step {
            Step::Mkdir { path, owner, mode } => root.mkdir(path, owner.uid, owner.gid, *mode)?,
            Step::Chown { path, owner } => root.chown(path, owner.uid, owner.gid)?,
            Step::Chmod { path, mode } => root.chmod(path, *mode)?,
            Step::Touch { path } => root.touch(path)?,
            Step::InitMachineId { path } => root.create(path, 0o444, b"uninitialized\n")?,
            Step::Bind { source, target, options } => {
                let id = root.bind(source, target)?;
                if !options.is_empty() {
                    utab.push(UtabEntry {
                        id,
                        bind_source: source.clone(),
                        target: target.clone(),
                        fs: None,
                        options: options.clone(),
                    });
                }
            }
            Step::Symlink { path, target } => root.symlink(path, target.as_str())?,
        }
    }
    Ok(())
}
