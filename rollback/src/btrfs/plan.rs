//! The pure planner: from what the top level holds to the steps that reset the root, or the reason to keep it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::Options;
use crate::Kept;
use crate::config::SubvolPath;

/// Suffix of the new root while it is being put together.
pub const NEW_SUFFIX: &str = ".lethe-new";
/// Suffix of a retired root waiting to be deleted (no oldRoots).
pub const OLD_SUFFIX: &str = ".lethe-old";

const DAY: i64 = 24 * 60 * 60;

/// What a path below the top level is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    Subvolume(Subvol),
    /// A directory that is not a subvolume's top.
    Directory,
    /// Anything else, described ("a symlink", "a regular file").
    Other(&'static str),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Missing => "missing",
            Entry::Subvolume(_) => "a subvolume",
            Entry::Directory => "a plain directory",
            Entry::Other(what) => what,
        }
    }
}

/// A subvolume as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvol {
    pub id: u64,
    pub readonly: bool,
    /// Creation time, seconds since the epoch.
    pub otime: i64,
    /// The subvolumes inside it at any depth, deepest first (the order they can be deleted in).
    pub nested: Vec<Nested>,
}

/// A subvolume nested inside another, with its path relative to that one's top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nested {
    pub id: u64,
    pub path: String,
}

/// A subvolume directly inside the old-roots directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldRoot {
    pub name: String,
    pub subvol: Subvol,
}

/// The old-roots directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldRootsDir {
    pub entry: Entry,
    /// Every name in it, whatever it is: a new old root must not take one.
    pub names: BTreeSet<String>,
    /// The subvolumes directly in it: the only candidates for pruning.
    pub subvolumes: Vec<OldRoot>,
}

/// Everything the plan depends on, read from the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub root: Entry,
    pub new: Entry,
    pub retired: Entry,
    pub blank: Entry,
    pub old_roots: Option<OldRootsDir>,
    /// The file system's default subvolume (5 when never set).
    pub default_subvolume: u64,
    /// Subvolumes mounted somewhere: id -> a mount point.
    pub mounted: BTreeMap<u64, String>,
}

/// Why a subvolume is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Why {
    /// Left by an interrupted run.
    Leftover,
    /// The root this run retired.
    Retired,
    /// Nested in a subvolume being deleted.
    Nested,
    /// An old root past keepDays and not among the newest keepAtLeast.
    Pruned { created: String, keep_days: u32 },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// An earlier run was cut off after moving the old root aside: its new root goes in place.
    FinishSwitch { new: SubvolPath, root: SubvolPath },
    /// The old-roots directory (and its missing parents).
    CreateDir { path: SubvolPath },
    /// A writable snapshot of the blank one: the next root.
    Snapshot { blank: SubvolPath, new: SubvolPath },
    /// The current root moves aside: into old roots, or to a temporary name to be deleted.
    Retire { root: SubvolPath, to: SubvolPath },
    /// The new root takes the root's name.
    Switch { new: SubvolPath, root: SubvolPath },
    /// A transaction commit: the switch is on disk before anything is deleted.
    Sync,
    /// A subvolume deleted by id.
    Delete { path: String, id: u64, why: Why },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::FinishSwitch { new, root } => {
                write!(f, "rename {new} -> {root} (finishing an interrupted rollback)")
            }
            Step::CreateDir { path } => write!(f, "create directory {path}"),
            Step::Snapshot { blank, new } => write!(f, "snapshot {blank} -> {new}"),
            Step::Retire { root, to } => write!(f, "move {root} -> {to}"),
            Step::Switch { new, root } => write!(f, "rename {new} -> {root}"),
            Step::Sync => f.write_str("sync"),
            Step::Delete { path, id, why } => {
                write!(f, "delete subvolume {path} (id {id}")?;
                match why {
                    Why::Leftover => f.write_str(", left by an interrupted rollback)"),
                    Why::Retired => f.write_str(", the old root)"),
                    Why::Nested => f.write_str(")"),
                    Why::Pruned { created, keep_days } => {
                        write!(f, ", an old root created {created}, more than {keep_days} days ago)")
                    }
                }
            }
        }
    }
}

/// Plans a rollback at `now` (seconds since the epoch), or says why the old root must stay.
pub fn plan(opts: &Options, state: &State, now: i64) -> Result<Vec<Step>, Kept> {
    let dev = opts.device.display();
    let root = &opts.subvolume;
    let blank = &opts.blank;
    let new = root.with_suffix(NEW_SUFFIX);
    let retired = root.with_suffix(OLD_SUFFIX);
    let kept = |why: String| Kept::new(format!("{dev}: {why}"));

    // Layouts in which a deletion could reach what must stay.
    let overlap = |a: &SubvolPath, b: &SubvolPath| a == b || a.starts_with(b) || b.starts_with(a);
    if blank == root || blank.starts_with(root) {
        return Err(kept(format!(
            "the blank snapshot {blank} is inside the root subvolume {root}: expected it outside"
        )));
    }
    if let Some(o) = &opts.old_roots {
        let p = &o.path;
        if overlap(p, root) {
            return Err(kept(format!("old roots ({p}) and the root subvolume {root} overlap")));
        }
        if overlap(p, blank) {
            return Err(kept(format!("old roots ({p}) and the blank snapshot {blank} overlap")));
        }
    }
    // lethe's temporaries are deleted as leftovers: nothing configured may live there.
    let configured = std::iter::once(("the blank snapshot", blank))
        .chain(opts.old_roots.as_ref().map(|o| ("old roots", &o.path)));
    for (what, path) in configured {
        if let Some(temp) = [&new, &retired].into_iter().find(|t| overlap(path, t)) {
            return Err(kept(format!(
                "{what} ({path}) and {temp}, the name this rollback uses for its temporary, overlap: \
                 expected {what} elsewhere"
            )));
        }
    }

    let unexpected = |path: &SubvolPath, entry: &Entry| {
        kept(format!(
            "{path} is {}: expected nothing there, or a subvolume left by an interrupted rollback",
            entry.kind()
        ))
    };
    if matches!(state.new, Entry::Directory | Entry::Other(_)) {
        return Err(unexpected(&new, &state.new));
    }
    let root_sv = match &state.root {
        Entry::Subvolume(s) => Some(s),
        Entry::Missing if matches!(state.new, Entry::Subvolume(_)) => None,
        Entry::Missing => {
            return Err(kept(format!(
                "the root subvolume {root} does not exist, nor a {new} to finish a switch with: expected the root subvolume"
            )));
        }
        other => {
            return Err(kept(format!("{root} is {}: expected the root subvolume", other.kind())));
        }
    };
    // The blank and the retired root's name matter only for a new snapshot:
    // finishing an interrupted switch needs neither, and leaving no root at all
    // would be the worst outcome.
    if let Some(r) = root_sv {
        if matches!(state.retired, Entry::Directory | Entry::Other(_)) {
            return Err(unexpected(&retired, &state.retired));
        }
        let blank_sv = match &state.blank {
            Entry::Subvolume(s) => s,
            Entry::Missing => {
                return Err(kept(format!(
                    "the blank snapshot {blank} does not exist: expected a read-only snapshot to re-create {root} from"
                )));
            }
            other => {
                return Err(kept(format!(
                    "{blank} is {}, not a subvolume: expected a read-only snapshot to re-create {root} from",
                    other.kind()
                )));
            }
        };
        if !blank_sv.readonly {
            return Err(kept(format!(
                "the blank snapshot {blank} is writable, so it may have been changed: expected a read-only snapshot"
            )));
        }
        if r.nested.iter().any(|n| n.id == blank_sv.id) {
            return Err(kept(format!("the blank snapshot {blank} is nested in the root subvolume {root}")));
        }
    }
    if let Some(dir) = &state.old_roots
        && matches!(dir.entry, Entry::Other(_))
        && root_sv.is_some()
    {
        let path = opts.old_roots.as_ref().map(|o| o.path.to_string()).unwrap_or_default();
        return Err(kept(format!(
            "the old-roots path {path} is {}: expected a directory or a subvolume",
            dir.entry.kind()
        )));
    }

    let mut steps = Vec::new();
    let mut retired_now = None;
    match root_sv {
        None => {
            // An earlier run was cut off with the old root moved aside: finish its switch;
            // the root it put together is fresh, so this run retires nothing more.
            steps.push(Step::FinishSwitch { new: new.clone(), root: root.clone() });
            steps.push(Step::Sync);
            if let Entry::Subvolume(r) = &state.retired {
                delete_tree(&mut steps, retired.as_str(), r, Why::Leftover);
            }
        }
        Some(r) => {
            // Leftovers of an interrupted run first: they hold the names this run needs.
            if let Entry::Subvolume(n) = &state.new {
                delete_tree(&mut steps, new.as_str(), n, Why::Leftover);
            }
            if let Entry::Subvolume(d) = &state.retired {
                delete_tree(&mut steps, retired.as_str(), d, Why::Leftover);
            }
            let to = match (&opts.old_roots, &state.old_roots) {
                (Some(o), Some(dir)) => {
                    if dir.entry == Entry::Missing {
                        steps.push(Step::CreateDir { path: o.path.clone() });
                    }
                    let name = unique_name(now, &dir.names);
                    o.path.join(&name).map_err(|e| kept(format!("cannot name the old root: {e}")))?
                }
                _ => retired.clone(),
            };
            steps.push(Step::Snapshot { blank: blank.clone(), new: new.clone() });
            steps.push(Step::Retire { root: root.clone(), to: to.clone() });
            steps.push(Step::Switch { new: new.clone(), root: root.clone() });
            steps.push(Step::Sync);
            if opts.old_roots.is_none() {
                delete_tree(&mut steps, to.as_str(), r, Why::Retired);
            }
            retired_now = Some(r);
        }
    }

    if let (Some(o), Some(dir)) = (&opts.old_roots, &state.old_roots) {
        for old in prune(&dir.subvolumes, retired_now.is_some(), o.keep_days, o.keep_at_least, now) {
            let path = format!("{}/{}", o.path, old.name);
            let why = Why::Pruned { created: utc(old.subvol.otime), keep_days: o.keep_days };
            delete_tree(&mut steps, &path, &old.subvol, why);
        }
    }

    // What this run deletes or moves, each by its present path.
    let mut touched: Vec<(u64, String)> = Vec::new();
    if let Some(r) = retired_now {
        touched.push((r.id, root.to_string()));
        touched.extend(r.nested.iter().map(|n| (n.id, format!("{root}/{}", n.path))));
    }
    for s in &steps {
        if let Step::Delete { id, path, .. } = s
            && !touched.iter().any(|(t, _)| t == id)
        {
            touched.push((*id, path.clone()));
        }
    }
    // The kernel refuses to delete the default subvolume; worse, mounts without
    // subvol= would keep following it to the old root. A mounted subvolume is in
    // use (the rollback runs before the root is mounted): deleting it would pull
    // the files from under whoever uses it. Say so before touching anything.
    let default = touched.iter().find(|(id, _)| *id == state.default_subvolume).map(|(id, _)| {
        format!(
            "subvolume {id} is the file system's default subvolume and this rollback would retire it: \
             expected the default to stay the top level (5) and the root mounted with subvol={root}"
        )
    });
    let mounted = touched.iter().find_map(|(id, path)| {
        let at = state.mounted.get(id)?;
        Some(format!(
            "subvolume {path} (id {id}) is mounted at {at}: expected nothing this rollback deletes \
             or moves to be mounted (it runs before the root is mounted)"
        ))
    });
    if let Some(why) = default.or(mounted) {
        if root_sv.is_none() {
            // Finishing a switch matters more than the deletions: keep only those steps.
            steps.retain(|s| !matches!(s, Step::Delete { .. }));
            return Ok(steps);
        }
        return Err(kept(why));
    }
    Ok(steps)
}

/// Deletion steps for `sv` at `path`: its nested subvolumes deepest first, then itself.
fn delete_tree(steps: &mut Vec<Step>, path: &str, sv: &Subvol, why: Why) {
    for n in &sv.nested {
        steps.push(Step::Delete { path: format!("{path}/{}", n.path), id: n.id, why: Why::Nested });
    }
    steps.push(Step::Delete { path: path.to_owned(), id: sv.id, why });
}

/// The old roots to delete: created more than `keep_days` ago, and not among
/// the newest `keep_at_least`. With `retiring`, the root this run moves in is
/// the newest and takes one of the kept places.
///
/// "Newest" is the order of creation, which the subvolume ids give (a new
/// subvolume's id is above every existing one's), not the creation times: a
/// machine whose clock was in 1970 or in the future on some boots would
/// otherwise count the wrong ones as newest and delete the real newest.
pub fn prune(old: &[OldRoot], retiring: bool, keep_days: u32, keep_at_least: u32, now: i64) -> Vec<&OldRoot> {
    let mut by_age: Vec<&OldRoot> = old.iter().collect();
    by_age.sort_by_key(|o| std::cmp::Reverse(o.subvol.id));
    let keep = (keep_at_least.max(1) as usize).saturating_sub(usize::from(retiring));
    let cutoff = now.saturating_sub(i64::from(keep_days).saturating_mul(DAY));
    by_age.into_iter().skip(keep).filter(|o| o.subvol.otime < cutoff).collect()
}

/// A name for an old root retired at `now`: its UTC time, with `-2`, `-3`… when taken.
pub fn unique_name(now: i64, taken: &BTreeSet<String>) -> String {
    let base = utc(now);
    (1..=u32::MAX).map(|n| numbered(&base, n)).find(|n| !taken.contains(n)).unwrap_or(base)
}

/// `base` for the first, `base-n` for the n-th.
pub fn numbered(base: &str, n: u32) -> String {
    if n <= 1 { base.to_owned() } else { format!("{base}-{n}") }
}

/// `2024-05-17T08:03:00Z` for seconds since the epoch.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::OldRoots;

    fn p(s: &str) -> SubvolPath {
        SubvolPath::parse(s).unwrap()
    }

    fn sv(id: u64, otime: i64) -> Subvol {
        Subvol { id, readonly: false, otime, nested: vec![] }
    }

    fn opts(old_roots: bool) -> Options {
        Options {
            device: PathBuf::from("/dev/vda2"),
            subvolume: p("root"),
            blank: p("blank"),
            old_roots: old_roots.then(|| OldRoots { path: p("old"), keep_days: 30, keep_at_least: 2 }),
        }
    }

    fn state() -> State {
        State {
            root: Entry::Subvolume(Subvol {
                nested: vec![Nested { id: 259, path: "a/b".into() }, Nested { id: 258, path: "a".into() }],
                ..sv(257, 100)
            }),
            new: Entry::Missing,
            retired: Entry::Missing,
            blank: Entry::Subvolume(Subvol { readonly: true, ..sv(256, 0) }),
            old_roots: None,
            default_subvolume: 5,
            mounted: BTreeMap::new(),
        }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::to_string).collect()
    }

    #[test]
    fn deletion_plan_is_crash_safe_and_deletes_nested_first() {
        let steps = plan(&opts(false), &state(), 0).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "snapshot blank -> root.lethe-new",
                "move root -> root.lethe-old",
                "rename root.lethe-new -> root",
                "sync",
                "delete subvolume root.lethe-old/a/b (id 259)",
                "delete subvolume root.lethe-old/a (id 258)",
                "delete subvolume root.lethe-old (id 257, the old root)",
            ]
        );
    }

    #[test]
    fn old_roots_get_a_dated_unique_name_and_a_directory() {
        let mut s = state();
        let names = ["1970-01-01T00:00:00Z".to_owned()].into();
        s.old_roots = Some(OldRootsDir { entry: Entry::Missing, names, subvolumes: vec![] });
        let steps = plan(&opts(true), &s, 0).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "create directory old",
                "snapshot blank -> root.lethe-new",
                "move root -> old/1970-01-01T00:00:00Z-2",
                "rename root.lethe-new -> root",
                "sync",
            ]
        );
    }

    #[test]
    fn repairs_come_first() {
        // Cut off between moving the old root aside and renaming the new one in.
        let mut s = state();
        s.root = Entry::Missing;
        s.new = Entry::Subvolume(sv(300, 0));
        s.retired = Entry::Subvolume(sv(257, 0));
        assert_eq!(
            lines(&plan(&opts(false), &s, 0).unwrap()),
            [
                "rename root.lethe-new -> root (finishing an interrupted rollback)",
                "sync",
                "delete subvolume root.lethe-old (id 257, left by an interrupted rollback)",
            ]
        );
        // The switch is finished even when the blank is gone meanwhile: there is no root otherwise.
        let mut s2 = s.clone();
        s2.blank = Entry::Missing;
        assert_eq!(plan(&opts(false), &s2, 0).unwrap()[0], plan(&opts(false), &s, 0).unwrap()[0]);
        // Nor does anything unexpected at the retired root's name stop it (it is left alone).
        for stray in [Entry::Directory, Entry::Other("a regular file")] {
            let mut s3 = s.clone();
            s3.retired = stray;
            assert_eq!(
                lines(&plan(&opts(false), &s3, 0).unwrap()),
                ["rename root.lethe-new -> root (finishing an interrupted rollback)", "sync"]
            );
        }
        // Cut off after the snapshot: the stale copy goes, then a whole rollback.
        let mut s = state();
        s.new = Entry::Subvolume(sv(300, 0));
        let l = lines(&plan(&opts(false), &s, 0).unwrap());
        assert_eq!(l[0], "delete subvolume root.lethe-new (id 300, left by an interrupted rollback)");
        assert_eq!(l[1], "snapshot blank -> root.lethe-new");
    }

    #[test]
    fn unsure_states_keep_the_old_root() {
        let reason = |s: &State| plan(&opts(false), s, 0).unwrap_err().reason;
        let mut s = state();
        s.blank = Entry::Missing;
        assert!(
            reason(&s).starts_with("/dev/vda2: the blank snapshot blank does not exist"),
            "{}",
            reason(&s)
        );
        s.blank = Entry::Directory;
        assert!(reason(&s).contains("blank is a plain directory, not a subvolume"));
        s.blank = Entry::Subvolume(sv(256, 0));
        assert!(reason(&s).contains("writable"));
        let mut s = state();
        s.root = Entry::Directory;
        assert!(reason(&s).contains("root is a plain directory: expected the root subvolume"));
        s.root = Entry::Missing;
        assert!(reason(&s).contains("does not exist"));
        let mut s = state();
        s.retired = Entry::Other("a regular file");
        assert!(reason(&s).contains("root.lethe-old is a regular file"));
        let mut s = state();
        s.default_subvolume = 257;
        assert!(reason(&s).contains("default subvolume"));
        let mut s = state();
        if let Entry::Subvolume(r) = &mut s.root {
            r.nested.push(Nested { id: 256, path: "blank".into() });
        }
        assert!(reason(&s).contains("nested"));
        let mut o = opts(false);
        o.blank = p("root/blank");
        assert!(plan(&o, &state(), 0).unwrap_err().reason.contains("inside the root"));
    }

    #[test]
    fn nothing_mounted_is_deleted_or_moved() {
        let reason = |s: &State, o: &Options| plan(o, s, 0).unwrap_err().reason;
        for (id, path) in [(257, "root"), (259, "root/a/b")] {
            let mut s = state();
            s.mounted.insert(id, "/sysroot".into());
            for o in [opts(false), opts(true)] {
                let mut s = s.clone();
                if o.old_roots.is_some() {
                    s.old_roots =
                        Some(OldRootsDir { entry: Entry::Missing, names: [].into(), subvolumes: vec![] });
                }
                assert_eq!(
                    reason(&s, &o),
                    format!(
                        "/dev/vda2: subvolume {path} (id {id}) is mounted at /sysroot: expected nothing this \
                         rollback deletes or moves to be mounted (it runs before the root is mounted)"
                    )
                );
            }
        }
        // The blank, the top level and others may be.
        let mut s = state();
        s.mounted = [(256, "/blank".into()), (5, "/top".into()), (400, "/persist".into())].into();
        assert!(plan(&opts(false), &s, 0).is_ok());
        // An interrupted switch is still finished; what is mounted stays.
        s.root = Entry::Missing;
        s.new = Entry::Subvolume(sv(300, 0));
        s.retired = Entry::Subvolume(sv(257, 0));
        s.mounted.insert(257, "/mnt".into());
        assert_eq!(
            lines(&plan(&opts(false), &s, 0).unwrap()),
            ["rename root.lethe-new -> root (finishing an interrupted rollback)", "sync"]
        );
    }

    #[test]
    fn configured_paths_never_overlap_the_temporaries() {
        // Else the leftover cleanup would delete the blank, or old roots, as its own.
        let mut s = state();
        s.retired = Entry::Subvolume(sv(300, 0));
        for (blank, old_roots) in [
            ("root.lethe-new", "old"),
            ("root.lethe-old/blank", "old"),
            ("blank", "root.lethe-old"),
            ("blank", "root.lethe-new/old"),
            ("blank", "root.lethe-old/x"),
        ] {
            let mut o = opts(true);
            o.blank = p(blank);
            o.old_roots.as_mut().unwrap().path = p(old_roots);
            s.old_roots =
                Some(OldRootsDir { entry: Entry::Missing, names: BTreeSet::new(), subvolumes: vec![] });
            let reason = plan(&o, &s, 0).unwrap_err().reason;
            assert!(
                reason.contains("overlap") && reason.contains("temporary"),
                "{blank} {old_roots}: {reason}"
            );
        }
        // Names that only share a prefix are fine.
        let mut o = opts(true);
        o.old_roots.as_mut().unwrap().path = p("root.lethe-older");
        s.old_roots = Some(OldRootsDir { entry: Entry::Missing, names: BTreeSet::new(), subvolumes: vec![] });
        assert!(plan(&o, &s, 0).is_ok());
    }

    fn old(name: &str, otime: i64) -> OldRoot {
        OldRoot { name: name.into(), subvol: sv(otime as u64 + 1000, otime) }
    }

    fn names(v: Vec<&OldRoot>) -> Vec<&str> {
        v.into_iter().map(|o| o.name.as_str()).collect()
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_young() {
        let now = 100 * DAY;
        let roots = [old("a", 10 * DAY), old("b", 20 * DAY), old("c", 80 * DAY), old("d", 90 * DAY)];
        // 30 days: a and b are old; c and d are young.
        assert_eq!(names(prune(&roots, false, 30, 1, now)), ["b", "a"]);
        // The newest 3 stay however old.
        assert_eq!(names(prune(&roots, false, 30, 3, now)), ["a"]);
        assert_eq!(names(prune(&roots, false, 0, 1, now)), ["c", "b", "a"]);
        // A root retired now is the newest and takes a kept place.
        assert_eq!(names(prune(&roots, true, 0, 2, now)), ["c", "b", "a"]);
        assert_eq!(names(prune(&roots, true, 0, 1, now)), ["d", "c", "b", "a"]);
        // keepAtLeast below 1 still keeps the newest.
        assert_eq!(names(prune(&roots, false, 0, 0, now)), ["c", "b", "a"]);
        assert!(prune(&[], false, 0, 1, now).is_empty());
    }

    #[test]
    fn the_newest_are_the_last_created_whatever_the_clock_said() {
        // Subvolume ids grow with each subvolume created; creation times follow the clock.
        let at = |name: &str, id: u64, otime: i64| OldRoot { name: name.into(), subvol: sv(id, otime) };
        let now = 20_000 * DAY; // 2024
        let roots = [
            at("a", 300, 19_700 * DAY),
            at("b", 310, 19_800 * DAY),
            at("c", 320, 10 * DAY), // created on boots with the RTC in 1970
            at("d", 330, 20 * DAY),
        ];
        // The root retired now and the two created before it (d, c) are the newest 3.
        assert_eq!(names(prune(&roots, true, 30, 3, now)), ["b", "a"]);
        assert_eq!(names(prune(&roots, false, 30, 2, now)), ["b", "a"]);
        // A root created while the RTC was in the future is young until then, but
        // takes no place from the newest.
        let roots = [at("a", 300, 19_700 * DAY), at("x", 310, 40_000 * DAY), at("c", 320, 19_800 * DAY)];
        assert_eq!(names(prune(&roots, true, 30, 2, now)), ["a"]);
        assert_eq!(names(prune(&roots, false, 30, 1, now)), ["a"]);
    }

    #[test]
    fn names_are_utc_and_unique() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        let mut taken = BTreeSet::new();
        for want in ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z-2", "1970-01-01T00:00:00Z-3"] {
            let n = unique_name(0, &taken);
            assert_eq!(n, want);
            taken.insert(n);
        }
    }
}
