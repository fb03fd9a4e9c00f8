//! Absolute, normalised paths inside the managed root, as seen after switch_root.

use std::fmt;
use std::path::{Path, PathBuf};

/// An absolute path with no `.`, `..`, empty or NUL-carrying components.
///
/// Every path the planner emits is one of these, so "no step outside the
/// root" holds by construction: joining it beneath a root cannot climb out.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootPath(String);

/// Why a string is not a usable path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("`..` is not allowed in {0:?}")]
    DotDot(String),
    #[error("NUL byte in path {0:?}")]
    Nul(String),
}

impl RootPath {
    /// The root itself, `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Normalises `s` as impermanence's `concatPaths` does: a relative path is
    /// taken from `/`, duplicate and trailing slashes and `.` are dropped.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        Self::root().join(s)
    }

    /// `self` followed by the components of `rel` (a leading `/` in `rel` is
    /// ignored, as in impermanence's `concatPaths [ home dir ]`).
    pub fn join(&self, rel: &str) -> Result<Self, PathError> {
        if rel.contains('\0') {
            return Err(PathError::Nul(rel.to_owned()));
        }
        let mut out = self.0.clone();
        for c in rel.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(PathError::DotDot(rel.to_owned())),
                c => {
                    if !out.ends_with('/') {
                        out.push('/');
                    }
                    out.push_str(c);
                }
            }
        }
        Ok(Self(out))
    }

    /// `self` with all components of `other` appended (`/persist` + `/etc/ssh`).
    pub fn concat(&self, other: &RootPath) -> RootPath {
        if other.is_root() {
            return self.clone();
        }
        if self.is_root() {
            return other.clone();
        }
        RootPath(format!("{}{}", self.0, other.0))
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (`.` for the root), for `*at` calls.
    pub fn relative(&self) -> &str {
        if self.is_root() { "." } else { &self.0[1..] }
    }

    /// The parent, or `None` for the root.
    pub fn parent(&self) -> Option<RootPath> {
        if self.is_root() {
            return None;
        }
        let i = self.0.rfind('/').expect("a RootPath starts with '/'");
        Some(RootPath(if i == 0 { "/".to_owned() } else { self.0[..i].to_owned() }))
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &str {
        let i = self.0.rfind('/').expect("a RootPath starts with '/'");
        &self.0[i + 1..]
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// Every proper ancestor except `/`, outermost first.
    pub fn ancestors(&self) -> Vec<RootPath> {
        let mut v = Vec::new();
        let mut p = self.parent();
        while let Some(q) = p {
            if q.is_root() {
                break;
            }
            p = q.parent();
            v.push(q);
        }
        v.reverse();
        v
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RootPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// `self` with the prefix `from` replaced by `to`; `None` unless `self`
    /// starts with `from`.
    pub fn rebase(&self, from: &RootPath, to: &RootPath) -> Option<RootPath> {
        if !self.starts_with(from) {
            return None;
        }
        let rest = if from.is_root() { &self.0[..] } else { &self.0[from.0.len()..] };
        Some(to.join(rest).expect("a suffix of a RootPath is a valid path"))
    }

    /// Where this path is on the host: `root` followed by the path.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(self.relative())
    }

    /// Ordering that puts parents before their children and is otherwise
    /// stable: compare component lists, not strings (`/a/b` < `/a-b`).
    pub fn tree_cmp(&self, other: &RootPath) -> std::cmp::Ordering {
        self.components().cmp(other.components())
    }
}

impl fmt::Display for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl serde::Serialize for RootPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_impermanence_concat_paths() {
        assert_eq!(RootPath::parse("var/log").unwrap().as_str(), "/var/log");
        assert_eq!(RootPath::parse("//etc/./ssh/").unwrap().as_str(), "/etc/ssh");
        let home = RootPath::parse("/home/alice").unwrap();
        assert_eq!(home.join("/.ssh").unwrap().as_str(), "/home/alice/.ssh");
        assert_eq!(RootPath::parse("/").unwrap(), RootPath::root());
    }

    #[test]
    fn refuses_dot_dot_and_nul() {
        assert_eq!(RootPath::parse("/etc/../x"), Err(PathError::DotDot("/etc/../x".into())));
        assert!(matches!(RootPath::parse("a\0b"), Err(PathError::Nul(_))));
    }

    #[test]
    fn parents_ancestors_and_prefixes() {
        let p = RootPath::parse("/var/lib/nixos").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/var/lib");
        assert_eq!(p.file_name(), "nixos");
        let a: Vec<_> = p.ancestors().iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["/var", "/var/lib"]);
        assert!(p.starts_with(&RootPath::parse("/var").unwrap()));
        assert!(!p.starts_with(&RootPath::parse("/va").unwrap()));
        let r = p.rebase(&RootPath::parse("/var/lib").unwrap(), &RootPath::parse("/p/var/lib").unwrap());
        assert_eq!(r.unwrap().as_str(), "/p/var/lib/nixos");
        assert_eq!(RootPath::parse("/persist").unwrap().concat(&p).as_str(), "/persist/var/lib/nixos");
    }

    #[test]
    fn tree_order_puts_parents_first() {
        let mut v: Vec<RootPath> =
            ["/a-b", "/a/b", "/a"].iter().map(|s| RootPath::parse(s).unwrap()).collect();
        v.sort_by(|x, y| x.tree_cmp(y));
        let s: Vec<_> = v.iter().map(|p| p.as_str()).collect();
        assert_eq!(s, ["/a", "/a/b", "/a-b"]);
    }
}
