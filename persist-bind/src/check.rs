//! Verifying the live state: is every entry mounted from its source or linked to it?

use serde::Serialize;

use crate::beneath::{FsError, Kind, Root};
use crate::config::{Entry, EntryKind};
use crate::path::RootPath;

#[derive(Debug, Serialize)]
pub struct CheckEntry {
    pub origin: String,
    pub target: RootPath,
    pub source: RootPath,
    #[serde(flatten)]
    pub state: State,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum State {
    /// The target shows the source (a bind mount, or inside one).
    Mounted,
    /// The target is a symlink to the source.
    Linked,
    /// Not in place, and why.
    Differs(String),
}

/// The state of every entry, in config order.
pub fn check(entries: &[Entry], root: &Root) -> Vec<CheckEntry> {
    entries
        .iter()
        .map(|e| {
            let source = e.storage.concat(&e.target);
            let state = match state(e, &source, root) {
                Ok(s) => s,
                Err(err) => State::Differs(err.to_string()),
            };
            CheckEntry { origin: e.origin.clone(), target: e.target.clone(), source, state }
        })
        .collect()
}

fn state(e: &Entry, source: &RootPath, root: &Root) -> Result<State, FsError> {
    let t = root.lstat(&e.target)?;
    let s = root.lstat(source)?;
    let Some(t) = t else {
        // A file inside a bound directory of the same storage already is its
        // persistent path, present or not: the planner has nothing to do.
        if let EntryKind::File { .. } = e.kind
            && let (Some(tp), Some(sp)) = (e.target.parent(), source.parent())
            && let (Some(a), Some(b)) = (root.lstat(&tp)?, root.lstat(&sp)?)
            && a.kind == Kind::Directory
            && (a.dev, a.ino) == (b.dev, b.ino)
        {
            return Ok(State::Mounted);
        }
        return Ok(State::Differs(format!("{} is missing", e.target)));
    };
    if t.kind == Kind::Symlink {
        let to = root.readlink(&e.target)?;
        return Ok(match e.kind {
            EntryKind::File { .. } if to == source.as_str() => State::Linked,
            _ => State::Differs(format!("{} is a symlink to {to:?}", e.target)),
        });
    }
    let Some(s) = s else { return Ok(State::Differs(format!("the source {source} is missing"))) };
    if (t.dev, t.ino) == (s.dev, s.ino) {
        Ok(State::Mounted)
    } else {
        Ok(State::Differs(format!("{} is not mounted from {source}", e.target)))
    }
}
