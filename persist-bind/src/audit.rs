//! Listing what on the ephemeral root no entry persists: what the next boot erases.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::beneath::{FsError, Kind, Root};
use crate::config::Entry;
use crate::path::RootPath;

/// Trees that are never part of the erased root's state.
pub const SKIPPED: [&str; 6] = ["/nix", "/proc", "/sys", "/dev", "/run", "/tmp"];

/// One thing the next boot erases: a file, or a whole directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub path: RootPath,
    pub kind: Kind,
    /// Files in it (1 for a file).
    pub files: u64,
    pub bytes: u64,
}

/// Walks the root's own file system (other mounts are not erased with it),
/// reporting each unpersisted directory once, as a whole.
pub fn audit(entries: &[Entry], storages: &[RootPath], root: &Root) -> Result<Vec<Item>, FsError> {
    let mut kept: BTreeSet<RootPath> = SKIPPED.iter().map(|s| RootPath::parse(s).unwrap()).collect();
    kept.extend(storages.iter().cloned());
    kept.extend(entries.iter().map(|e| e.target.clone()));
    let top = RootPath::root();
    let Some(meta) = root.lstat(&top)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    walk(root, &top, meta.dev, &kept, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Root,
    dir: &RootPath,
    dev: u64,
    kept: &BTreeSet<RootPath>,
    out: &mut Vec<Item>,
) -> Result<(), FsError> {
    let mut names = root.list(dir)?;
    names.sort();
    for name in names {
        let Ok(p) = dir.join(&name) else { continue };
        if kept.contains(&p) {
            continue;
        }
        let Some(m) = root.lstat(&p)? else { continue };
        if m.dev != dev {
            continue; // another mount: not erased with the root
        }
        match m.kind {
            Kind::Directory if kept.iter().any(|k| k.starts_with(&p)) => walk(root, &p, dev, kept, out)?,
            Kind::Directory => {
                let (files, bytes) = size(root, &p, dev)?;
                out.push(Item { path: p, kind: Kind::Directory, files, bytes });
            }
            Kind::Symlink if regenerated(&root.readlink(&p)?) => {}
            kind => out.push(Item { path: p, kind, files: 1, bytes: m.size }),
        }
    }
    Ok(())
}

/// NixOS activation recreates links into the store and /etc/static.
fn regenerated(link: &str) -> bool {
    link.starts_with("/nix/store/") || link.starts_with("/etc/static/")
}

fn size(root: &Root, dir: &RootPath, dev: u64) -> Result<(u64, u64), FsError> {
    let (mut files, mut bytes) = (0, 0);
    for name in root.list(dir)? {
        let Ok(p) = dir.join(&name) else { continue };
        let Some(m) = root.lstat(&p)? else { continue };
        if m.dev != dev {
            continue;
        }
        if m.kind == Kind::Directory {
            let (f, b) = size(root, &p, dev)?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += m.size;
        }
    }
    Ok((files, bytes))
}

/// A ready `environment.persistence` block for the audited items.
pub fn snippet(storage: &RootPath, items: &[Item]) -> String {
    let mut s = format!("environment.persistence.{} = {{\n", nix_str(storage.as_str()));
    for (field, dirs) in [("directories", true), ("files", false)] {
        let paths: Vec<_> =
            items.iter().filter(|i| (i.kind == Kind::Directory) == dirs).map(|i| i.path.as_str()).collect();
        if !paths.is_empty() {
            s.push_str(&format!("  {field} = [\n"));
            for p in paths {
                s.push_str(&format!("    {}\n", nix_str(p)));
            }
            s.push_str("  ];\n");
        }
    }
    s.push_str("};\n");
    s
}

/// A Nix double-quoted string literal.
fn nix_str(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_valid_nix_with_escapes() {
        let items = vec![
            Item { path: RootPath::parse("/var/cache").unwrap(), kind: Kind::Directory, files: 3, bytes: 10 },
            Item { path: RootPath::parse("/etc/a\"b${x}").unwrap(), kind: Kind::File, files: 1, bytes: 1 },
        ];
        let s = snippet(&RootPath::parse("/persist").unwrap(), &items);
        assert_eq!(
            s,
            "environment.persistence.\"/persist\" = {\n  directories = [\n    \"/var/cache\"\n  ];\n  files = [\n    \"/etc/a\\\"b\\${x}\"\n  ];\n};\n"
        );
    }
}
