//! `rollback diff`: what the next rollback erases, found by walking the live root against its blank state.
//!
//! A snapshot shares inode numbers, sizes and times with the tree it was
//! taken from, so a path is unchanged when its type, inode, size, mtime,
//! mode and owner are all equal on both sides. New directories are reported
//! once with the number of entries below them, not entry by entry. Mount
//! points below the root are skipped: what is mounted there (persisted
//! state, /nix, API file systems) is not on the root and survives.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Deepest directory nesting walked; deeper trees are reported, not followed.
const MAX_DEPTH: usize = 256;

/// How a path differs from the blank state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Not in the blank state.
    Added,
    /// In the blank state, but different now.
    Changed,
}

/// One path the next rollback erases or resets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Relative to the root (`var/lib/foo`). In JSON escaped as [`persist_bind::json::escape`]
    /// says: a byte that is not UTF-8 is `\xNN`, a backslash `\\`.
    #[serde(serialize_with = "persist_bind::json::path")]
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// `Some(n)` for an added directory: it and the `n` entries below it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Changed => '~',
        };
        write!(f, "{sign} /{}", self.path.display())?;
        match self.entries {
            Some(0) => f.write_str("/"),
            Some(1) => f.write_str("/ (1 entry)"),
            Some(n) => write!(f, "/ ({n} entries)"),
            None => Ok(()),
        }
    }
}

/// Why a diff could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
}

/// What in `current` is not in `blank` or differs from it (everything, when
/// `blank` is `None`: a tmpfs root keeps nothing). Paths are relative to
/// `current`; mount points below `current` are not entered.
pub fn compare(current: &Path, blank: Option<&Path>) -> Result<Vec<Change>, DiffError> {
    compare_skipping(current, blank, &[])
}

/// [`compare`], leaving out the entries named `skip` directly in `current`
/// (ZFS's `.zfs` control directory, listed when `snapdir=visible`).
pub fn compare_skipping(
    current: &Path,
    blank: Option<&Path>,
    skip: &[&str],
) -> Result<Vec<Change>, DiffError> {
    let mut mounts = mount_points_below(current);
    mounts.extend(skip.iter().map(|s| current.join(s)));
    let mut out = Vec::new();
    walk(current, blank, Path::new(""), &mounts, 0, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(
    current: &Path,
    blank: Option<&Path>,
    rel: &Path,
    mounts: &HashSet<PathBuf>,
    depth: usize,
    out: &mut Vec<Change>,
) -> Result<(), DiffError> {
    let dir = current.join(rel);
    let mut names: Vec<OsString> = read_dir(&dir)?;
    names.sort();
    for name in names {
        let rel_child = rel.join(&name);
        let path = current.join(&rel_child);
        if mounts.contains(&path) {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(&path) else { continue }; // gone while walking
        if md.is_dir() && is_mount_root(&path) {
            continue;
        }
        let old = blank.and_then(|b| fs::symlink_metadata(b.join(&rel_child)).ok());
        match old {
            None if md.is_dir() => {
                let entries = count(&path, mounts, depth + 1);
                out.push(Change { path: rel_child, kind: ChangeKind::Added, entries: Some(entries) });
            }
            None => out.push(Change { path: rel_child, kind: ChangeKind::Added, entries: None }),
            Some(old) if md.is_dir() && old.is_dir() => {
                if depth + 1 >= MAX_DEPTH {
                    out.push(Change { path: rel_child, kind: ChangeKind::Changed, entries: None });
                } else {
                    walk(current, blank, &rel_child, mounts, depth + 1, out)?;
                }
            }
            Some(old) => {
                if differs(&md, &old, &path, blank.map(|b| b.join(&rel_child)).as_deref()) {
                    out.push(Change { path: rel_child, kind: ChangeKind::Changed, entries: None });
                }
            }
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let rd = fs::read_dir(dir).map_err(|source| DiffError::Read { path: dir.to_path_buf(), source })?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|source| DiffError::Read { path: dir.to_path_buf(), source })?;
        names.push(e.file_name());
    }
    Ok(names)
}

/// Entries below a new directory (not entering mount points); unreadable
/// parts count as nothing rather than failing the whole report.
fn count(dir: &Path, mounts: &HashSet<PathBuf>, depth: usize) -> u64 {
    if depth >= MAX_DEPTH {
        return 0;
    }
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        if mounts.contains(&p) || e.file_type().is_ok_and(|t| t.is_dir()) && is_mount_root(&p) {
            continue;
        }
        n += 1;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            n += count(&p, mounts, depth + 1);
        }
    }
    n
}

fn differs(now: &fs::Metadata, old: &fs::Metadata, now_path: &Path, old_path: Option<&Path>) -> bool {
    let kind = |m: &fs::Metadata| {
        let t = m.file_type();
        (t.is_file(), t.is_dir(), t.is_symlink(), t.is_fifo(), t.is_socket(), t.is_block_device())
    };
    if kind(now) != kind(old)
        || now.ino() != old.ino()
        || now.size() != old.size()
        || now.mtime() != old.mtime()
        || now.mtime_nsec() != old.mtime_nsec()
        || now.mode() != old.mode()
        || now.uid() != old.uid()
        || now.gid() != old.gid()
        || now.rdev() != old.rdev()
    {
        return true;
    }
    // A symlink re-pointed within the same second and length.
    if now.file_type().is_symlink() {
        return old_path.is_none_or(|o| fs::read_link(now_path).ok() != fs::read_link(o).ok());
    }
    false
}

/// Whether `path` is where something is mounted, asked of the kernel
/// (statx's STATX_ATTR_MOUNT_ROOT, Linux 5.8): it holds however `path` is
/// spelled, through symlinks or /proc/self/fd. Older kernels rely on the
/// mountinfo list alone.
fn is_mount_root(path: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    statx(CWD, path, AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW, StatxFlags::empty()).is_ok_and(|s| {
        s.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            && s.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
    })
}

/// Mount points strictly below `root`, from /proc/self/mountinfo.
fn mount_points_below(root: &Path) -> HashSet<PathBuf> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return HashSet::new() };
    let mut out = HashSet::new();
    for line in text.lines() {
        let Some(mp) = line.split(' ').nth(4) else { continue };
        let mp = PathBuf::from(persist_bind::utab::unmangle(mp));
        if mp != root && mp.starts_with(&root) {
            // Reported beneath `root` as given, which may not be canonical.
            out.insert(mp.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(base: &Path, files: &[&str]) {
        for f in files {
            let p = base.join(f);
            if let Some(d) = f.strip_suffix('/') {
                fs::create_dir_all(base.join(d)).unwrap();
            } else {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, f).unwrap();
            }
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lethe-diff-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn added_files_and_directories_are_reported_changed_files_too() {
        let d = scratch("a");
        let (blank, now) = (d.join("blank"), d.join("now"));
        tree(&blank, &["etc/hostname", "etc/keep", "var/"]);
        // The live tree is a copy of blank (same content, own inodes), then
        // changed: the comparison must treat a copied-but-untouched file as
        // changed (different inode), so the test copies with hard links to
        // model a snapshot's shared identity.
        for f in ["etc/hostname", "etc/keep"] {
            fs::create_dir_all(now.join("etc")).unwrap();
            fs::hard_link(blank.join(f), now.join(f)).unwrap();
        }
        fs::create_dir_all(now.join("var")).unwrap();
        tree(&now, &["var/lib/app/state.db", "var/lib/app/cache/x", "etc/new.conf"]);
        fs::remove_file(now.join("etc/hostname")).unwrap();
        fs::write(now.join("etc/hostname"), "changed").unwrap();

        let got: Vec<String> = compare(&now, Some(&blank)).unwrap().iter().map(|c| c.to_string()).collect();
        assert_eq!(got, ["~ /etc/hostname", "+ /etc/new.conf", "+ /var/lib/ (4 entries)"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn without_a_blank_state_everything_is_erased() {
        let d = scratch("b");
        tree(&d, &["a", "b/c"]);
        let got: Vec<String> = compare(&d, None).unwrap().iter().map(|c| c.to_string()).collect();
        assert_eq!(got, ["+ /a", "+ /b/ (1 entry)"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn skipped_top_level_entries_are_not_listed() {
        let d = scratch("c");
        tree(&d, &[".zfs/snapshot/blank/x", "new"]);
        let got: Vec<String> =
            compare_skipping(&d, None, &[".zfs"]).unwrap().iter().map(|c| c.to_string()).collect();
        assert_eq!(got, ["+ /new"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unreadable_root_is_an_error_naming_it() {
        let e = compare(Path::new("/nonexistent/lethe"), None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/lethe"), "{e}");
    }
}
