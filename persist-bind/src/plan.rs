//! The plan: for each entry, the ordered steps (mkdir, chown, chmod, touch, bind, symlink) that put it in place.
//!
//! Planning only reads: it observes the tree through a [`View`] and
//! simulates its own steps in an overlay (creations, owner changes, and
//! bind mounts, which redirect later paths to their sources), so that
//! nested entries and shared parents are planned as the kernel will see
//! them once the earlier steps have run. An empty step list means the
//! entry is already in place; a second apply therefore plans nothing.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::beneath::{FsError, Kind, Meta, Root};
use crate::config::{Entry, EntryKind, FileMethod, Group, Perms};
use crate::mode::Mode;
use crate::owner::{Ids, OwnerError};
use crate::path::RootPath;

/// Read access to the tree being planned for.
pub trait View {
    /// `lstat` of `p`, `None` if it (or a parent) is missing.
    fn lstat(&self, p: &RootPath) -> Result<Option<Meta>, FsError>;
    /// The target of the symlink at `p`.
    fn readlink(&self, p: &RootPath) -> Result<String, FsError>;
}

impl View for Root {
    fn lstat(&self, p: &RootPath) -> Result<Option<Meta>, FsError> {
        Root::lstat(self, p)
    }
    fn readlink(&self, p: &RootPath) -> Result<String, FsError> {
        Root::readlink(self, p)
    }
}

/// One change to the tree. Paths are as seen after switch_root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Step {
    Mkdir {
        path: RootPath,
        owner: Owner,
        mode: Mode,
    },
    Chown {
        path: RootPath,
        owner: Owner,
    },
    Chmod {
        path: RootPath,
        mode: Mode,
    },
    /// An empty file for a bind mount to cover.
    Touch {
        path: RootPath,
    },
    /// First boot with a persisted /etc/machine-id: systemd's
    /// "uninitialized" marker, so the id it generates is committed to the
    /// persistent file.
    #[serde(rename = "init-machine-id")]
    InitMachineId {
        path: RootPath,
    },
    Bind {
        source: RootPath,
        target: RootPath,
        options: Vec<&'static str>,
    },
    Symlink {
        path: RootPath,
        target: RootPath,
    },
}

/// Numeric owner with the names it was resolved from (for display).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
}

/// The plan for all entries, in apply order.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub entries: Vec<EntryPlan>,
}

#[derive(Debug, Serialize)]
pub struct EntryPlan {
    /// JSON path of the entry in the config.
    pub origin: String,
    pub kind: &'static str,
    pub target: RootPath,
    pub source: RootPath,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Steps to run; none when the entry is already in place.
    Steps(Vec<Step>),
    /// Why this entry cannot be applied; the others still are.
    #[serde(serialize_with = "crate::plan::display")]
    Error(EntryError),
}

pub(crate) fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Why one entry cannot be put in place.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error("the persistent storage path {0} does not exist (is its file system mounted?)")]
    StorageMissing(RootPath),
    #[error("{path} is a {found:?}, expected a directory")]
    NotADirectory { path: RootPath, found: Kind },
    #[error("{persistent} is a {found:?}, expected a regular file")]
    SourceNotAFile { persistent: RootPath, found: Kind },
    #[error("a non-empty file is already at {target}: move it to {persistent} to keep it, or remove it")]
    TargetNotEmpty { target: RootPath, persistent: RootPath },
    #[error("{target} already exists as a {found:?}; the file entry needs it absent or an empty file")]
    TargetInTheWay { target: RootPath, found: Kind },
    #[error("{target} is an empty file where a symlink to {persistent} belongs; remove it to link the file")]
    EmptyFileWhereLinkBelongs { target: RootPath, persistent: RootPath },
    #[error("{target} is a symlink to {points_to:?}, not to {persistent}; remove it to persist this file")]
    ForeignSymlink { target: RootPath, points_to: String, persistent: RootPath },
}

impl Plan {
    /// Whether every entry is in place (nothing to do, nothing failed).
    pub fn is_noop(&self) -> bool {
        self.entries.iter().all(|e| matches!(&e.outcome, Outcome::Steps(s) if s.is_empty()))
    }

    pub fn failed(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.outcome, Outcome::Error(_))).count()
    }
}

/// Plans every entry (already validated and ordered by the config).
pub fn plan(entries: &[Entry], ids: &Ids, view: &dyn View) -> Plan {
    let mut p = Planner {
        view,
        ids,
        binds: Vec::new(),
        bound: HashMap::new(),
        overlay: HashMap::new(),
        seen: Default::default(),
        undo: Vec::new(),
        mirrored: HashSet::new(),
        mirrored_now: Vec::new(),
        fake_ino: 0,
    };
    let entries = entries
        .iter()
        .map(|e| {
            p.undo.clear();
            p.mirrored_now.clear();
            let binds = p.binds.len();
            let mut steps = Vec::new();
            let outcome = match p.entry(e, &mut steps) {
                Ok(()) => Outcome::Steps(steps),
                Err(err) => {
                    // Forget what this entry planned: later entries must not
                    // count on steps that will not run.
                    p.rollback(binds);
                    Outcome::Error(err)
                }
            };
            EntryPlan {
                origin: e.origin.clone(),
                kind: match e.kind {
                    EntryKind::Directory { .. } => "directory",
                    EntryKind::File { .. } => "file",
                },
                target: e.target.clone(),
                source: e.storage.concat(&e.target),
                outcome,
            }
        })
        .collect();
    Plan { entries }
}

/// The device number given to things the plan creates (no real device has it).
const PLANNED_DEV: u64 = u64::MAX;

struct Planner<'a> {
    view: &'a dyn View,
    ids: &'a Ids,
    /// Planned bind mounts (target, source), in order, and indexed by target.
    binds: Vec<(RootPath, RootPath)>,
    bound: HashMap<RootPath, RootPath>,
    /// Planned state by physical path (after following planned binds).
    overlay: HashMap<RootPath, Meta>,
    /// What the view said of each path read so far.
    seen: std::cell::RefCell<HashMap<RootPath, Option<Meta>>>,
    /// Overlay values before the current entry changed them.
    undo: Vec<(RootPath, Option<Meta>)>,
    /// Volatile directories whose owner and mode an earlier entry already
    /// mirrors from its source: the first entry through a directory
    /// decides, so storages that disagree on a shared parent neither
    /// rewrite each other's persistent directories nor flip it every run.
    mirrored: HashSet<RootPath>,
    /// What the current entry added to `mirrored`.
    mirrored_now: Vec<RootPath>,
    fake_ino: u64,
}

impl Planner<'_> {
    /// Where `p` really lives once the planned binds are mounted: the
    /// deepest bound ancestor (or `p` itself) is replaced by its source.
    fn physical(&self, p: &RootPath) -> RootPath {
        let mut p = p.clone();
        // Sources never lie under targets (the config refuses overlaps), so
        // this settles at once; the bound keeps it finite regardless.
        for _ in 0..=self.binds.len() {
            if self.bound.is_empty() {
                break;
            }
            let mut at = Some(p.clone());
            let hit = std::iter::from_fn(|| {
                let cur = at.take()?;
                at = cur.parent();
                Some(cur)
            })
            .find_map(|a| self.bound.get(&a).map(|s| (a, s)));
            match hit.and_then(|(t, s)| p.rebase(&t, s)) {
                Some(q) if q != p => p = q,
                _ => break,
            }
        }
        p
    }

    fn push_bind(&mut self, target: RootPath, source: RootPath) {
        self.bound.insert(target.clone(), source.clone());
        self.binds.push((target, source));
    }

    fn observe(&self, p: &RootPath) -> Result<Option<Meta>, FsError> {
        let q = self.physical(p);
        if let Some(m) = self.overlay.get(&q) {
            return Ok(Some(*m));
        }
        // Entries share parents: read each path once. Planning never
        // changes the tree, so what was read stays true.
        if let Some(m) = self.seen.borrow().get(&q) {
            return Ok(*m);
        }
        let m = self.view.lstat(&q)?;
        self.seen.borrow_mut().insert(q, m);
        Ok(m)
    }

    fn record(&mut self, p: &RootPath, m: Meta) {
        let q = self.physical(p);
        let old = self.overlay.insert(q.clone(), m);
        self.undo.push((q, old));
    }

    fn rollback(&mut self, binds: usize) {
        for (t, _) in self.binds.drain(binds..) {
            self.bound.remove(&t);
        }
        for d in self.mirrored_now.drain(..) {
            self.mirrored.remove(&d);
        }
        while let Some((q, old)) = self.undo.pop() {
            match old {
                Some(m) => self.overlay.insert(q, m),
                None => self.overlay.remove(&q),
            };
        }
    }

    fn planned(&mut self, kind: Kind, uid: u32, gid: u32, mode: Mode) -> Meta {
        self.fake_ino += 1;
        Meta { kind, uid, gid, mode, size: 0, dev: PLANNED_DEV, ino: self.fake_ino }
    }

    fn owner(&self, perms: &Perms) -> Result<Owner, OwnerError> {
        let uid = self.ids.uid(&perms.user)?;
        let gid = self.ids.group_id(&perms.group)?;
        let group = match &perms.group {
            Group::Named(g) => g.clone(),
            Group::PrimaryOf(_) => self.ids.group_name(gid),
        };
        Ok(Owner { uid, gid, user: perms.user.clone(), group })
    }

    fn owner_of(&self, m: &Meta) -> Owner {
        Owner { uid: m.uid, gid: m.gid, user: self.ids.user_name(m.uid), group: self.ids.group_name(m.gid) }
    }

    fn entry(&mut self, e: &Entry, steps: &mut Vec<Step>) -> Result<(), EntryError> {
        match self.observe(&e.storage)? {
            None => return Err(EntryError::StorageMissing(e.storage.clone())),
            Some(m) if m.kind != Kind::Directory => {
                return Err(EntryError::NotADirectory { path: e.storage.clone(), found: m.kind });
            }
            Some(_) => {}
        }
        match e.kind {
            EntryKind::Directory { hide, trash } => {
                self.dir_chain(e, &e.target, steps)?;
                let source = e.storage.concat(&e.target);
                if !self.same(&e.target, &source)? {
                    let mut options = Vec::new();
                    if hide {
                        options.push("x-gvfs-hide");
                    }
                    if trash {
                        options.push("x-gvfs-trash");
                    }
                    steps.push(Step::Bind { source: source.clone(), target: e.target.clone(), options });
                    self.push_bind(e.target.clone(), source);
                }
                Ok(())
            }
            EntryKind::File { method } => {
                if let Some(parent) = e.target.parent().filter(|p| !p.is_root()) {
                    self.dir_chain(e, &parent, steps)?;
                }
                self.file(e, method, steps)
            }
        }
    }

    /// Creates the persistent side of `dir` and its parents where missing,
    /// and gives the volatile side the same tree, owners and modes.
    fn dir_chain(&mut self, e: &Entry, dir: &RootPath, steps: &mut Vec<Step>) -> Result<(), EntryError> {
        let root_perms =
            Perms { user: "root".into(), group: Group::Named("root".into()), mode: Mode::DEFAULT_DIR };
        for d in dir.ancestors().into_iter().chain(std::iter::once(dir.clone())) {
            let perms = match &e.home {
                Some(h) if d == h.path => {
                    Perms { user: h.user.clone(), group: h.group.clone(), mode: Mode::HOME }
                }
                Some(h) if h.path.starts_with(&d) => root_perms.clone(),
                _ if &d == dir => e.perms.clone(),
                _ => e.parent_perms.clone(),
            };
            let src = e.storage.concat(&d);
            let src_meta = match self.observe(&src)? {
                Some(m) if m.kind == Kind::Directory => m,
                Some(m) => return Err(EntryError::NotADirectory { path: src, found: m.kind }),
                None => {
                    let owner = self.owner(&perms)?;
                    let m = self.planned(Kind::Directory, owner.uid, owner.gid, perms.mode);
                    steps.push(Step::Mkdir { path: src.clone(), owner, mode: perms.mode });
                    self.record(&src, m);
                    m
                }
            };
            match self.observe(&d)? {
                None => {
                    let m = self.planned(Kind::Directory, src_meta.uid, src_meta.gid, src_meta.mode);
                    steps.push(Step::Mkdir {
                        path: d.clone(),
                        owner: self.owner_of(&src_meta),
                        mode: src_meta.mode,
                    });
                    self.record(&d, m);
                }
                Some(m) if m.kind == Kind::Directory && self.mirrored.contains(&d) => {}
                Some(m) if m.kind == Kind::Directory => {
                    let mut n = m;
                    if (m.uid, m.gid) != (src_meta.uid, src_meta.gid) {
                        steps.push(Step::Chown { path: d.clone(), owner: self.owner_of(&src_meta) });
                        (n.uid, n.gid) = (src_meta.uid, src_meta.gid);
                    }
                    if m.mode != src_meta.mode {
                        steps.push(Step::Chmod { path: d.clone(), mode: src_meta.mode });
                        n.mode = src_meta.mode;
                    }
                    if n != m {
                        self.record(&d, n);
                    }
                }
                Some(m) if m.kind == Kind::Symlink => {
                    return Err(FsError::SymlinkOnPath { path: e.target.clone(), link: d }.into());
                }
                Some(m) => return Err(EntryError::NotADirectory { path: d, found: m.kind }),
            }
            if self.mirrored.insert(d.clone()) {
                self.mirrored_now.push(d);
            }
        }
        Ok(())
    }

    /// Whether `a` already shows `b` (same inode: bound, or inside a bound parent).
    fn same(&self, a: &RootPath, b: &RootPath) -> Result<bool, FsError> {
        if self.physical(a) == self.physical(b) {
            return Ok(true);
        }
        Ok(match (self.observe(a)?, self.observe(b)?) {
            (Some(x), Some(y)) => x.dev != PLANNED_DEV && (x.dev, x.ino) == (y.dev, y.ino),
            _ => false,
        })
    }

    fn file(&mut self, e: &Entry, method: FileMethod, steps: &mut Vec<Step>) -> Result<(), EntryError> {
        let target = &e.target;
        let source = e.storage.concat(target);
        let tgt = self.observe(target)?;
        if let Some(t) = tgt
            && t.kind == Kind::Symlink
        {
            let points_to = self.view.readlink(&self.physical(target))?;
            if points_to == source.as_str() {
                return Ok(()); // linked earlier
            }
            return Err(EntryError::ForeignSymlink { target: target.clone(), points_to, persistent: source });
        }
        if self.same(target, &source)? {
            return Ok(()); // bound earlier
        }
        match tgt {
            Some(t) if t.kind == Kind::File && t.size > 0 => {
                return Err(EntryError::TargetNotEmpty { target: target.clone(), persistent: source });
            }
            Some(t) if t.kind != Kind::File => {
                return Err(EntryError::TargetInTheWay { target: target.clone(), found: t.kind });
            }
            _ => {}
        }
        let src = self.observe(&source)?;
        if let Some(s) = src
            && s.kind != Kind::File
        {
            return Err(EntryError::SourceNotAFile { persistent: source, found: s.kind });
        }
        let machine_id = target.as_str() == "/etc/machine-id";
        let bind = match (method, src) {
            (FileMethod::Auto, Some(_)) => true,
            (FileMethod::Auto, None) if machine_id => {
                steps.push(Step::InitMachineId { path: source.clone() });
                let m = self.planned(Kind::File, 0, 0, Mode::from_bits(0o444).unwrap());
                self.record(&source, m);
                true
            }
            _ => false,
        };
        if bind {
            if tgt.is_none() {
                steps.push(Step::Touch { path: target.clone() });
                let m = self.planned(Kind::File, 0, 0, Mode::from_bits(0o644).unwrap());
                self.record(target, m);
            }
            steps.push(Step::Bind { source: source.clone(), target: target.clone(), options: Vec::new() });
            self.push_bind(target.clone(), source);
        } else {
            if tgt.is_some() {
                // An empty file where a link belongs: impermanence's `ln -s`
                // fails here too; say so instead of removing it.
                return Err(EntryError::EmptyFileWhereLinkBelongs {
                    target: target.clone(),
                    persistent: source,
                });
            }
            steps.push(Step::Symlink { path: target.clone(), target: source.clone() });
            let m = self.planned(Kind::Symlink, 0, 0, Mode::from_bits(0o777).unwrap());
            self.record(target, m);
        }
        Ok(())
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Mkdir { path, owner, mode } => write!(f, "mkdir    {path} {owner} {mode}"),
            Step::Chown { path, owner } => write!(f, "chown    {path} {owner}"),
            Step::Chmod { path, mode } => write!(f, "chmod    {path} {mode}"),
            Step::Touch { path } => write!(f, "touch    {path}"),
            Step::InitMachineId { path } => {
                write!(f, "write    {path} \"uninitialized\" (first boot of a persisted machine-id)")
            }
            Step::Bind { source, target, options } if options.is_empty() => {
                write!(f, "bind     {source} -> {target}")
            }
            Step::Bind { source, target, options } => {
                write!(f, "bind     {source} -> {target} ({})", options.join(","))
            }
            Step::Symlink { path, target } => write!(f, "symlink  {path} -> {target}"),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({}:{})", self.user, self.group, self.uid, self.gid)
    }
}
