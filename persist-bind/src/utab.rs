//! Records userspace mount options (`x-gvfs-hide`, `x-gvfs-trash`) in libmount's utab, where file managers look for them.

use std::io::{self, Write};
use std::path::Path;

use crate::path::RootPath;

/// One utab line for a bind mount, as libmount writes it. Paths are the
/// ones seen after switch_root; `id` is the mount id, which survives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtabEntry {
    pub id: u64,
    pub source: RootPath,
    pub target: RootPath,
    /// The mount's root within its file system (mountinfo field 4).
    pub fs_root: Option<String>,
    pub options: Vec<&'static str>,
}

impl UtabEntry {
    pub fn line(&self) -> String {
        let mut s = format!(
            "ID={} SRC={} TARGET={}",
            self.id,
            mangle(self.source.as_str()),
            mangle(self.target.as_str())
        );
        if let Some(r) = &self.fs_root {
            s.push_str(&format!(" ROOT={}", mangle(r)));
        }
        s.push_str(&format!(" OPTS={}\n", self.options.join(",")));
        s
    }
}

/// libmount's escaping: space, tab, newline and backslash as octal.
fn mangle(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Appends `entries` to the utab at `path`, creating it (and its
/// directory) when missing. Lines already there are not repeated.
pub fn append(path: &Path, entries: &[UtabEntry]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    for e in entries {
        let line = e.line();
        if !existing.lines().any(|l| format!("{l}\n") == line) {
            f.write_all(line.as_bytes())?;
        }
    }
    f.sync_data()
}

/// The root (field 4) of mount `id` in a mountinfo text.
pub fn mount_root(mountinfo: &str, id: u64) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.next()?.parse::<u64>().ok()? == id).then(|| ())?;
        f.nth(2).map(unmangle)
    })
}

fn unmangle(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 0 && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_libmount_format_with_escapes() {
        let e = UtabEntry {
            id: 42,
            source: RootPath::parse("/persist/My Docs").unwrap(),
            target: RootPath::parse("/home/a/My Docs").unwrap(),
            fs_root: Some("/My Docs".into()),
            options: vec!["x-gvfs-hide", "x-gvfs-trash"],
        };
        assert_eq!(
            e.line(),
            "ID=42 SRC=/persist/My\\040Docs TARGET=/home/a/My\\040Docs ROOT=/My\\040Docs OPTS=x-gvfs-hide,x-gvfs-trash\n"
        );
    }

    #[test]
    fn finds_the_root_of_a_mount_id() {
        let mi =
            "22 1 0:21 / / rw - tmpfs tmpfs rw\n97 22 0:21 /persist/etc\\040x /etc rw - tmpfs tmpfs rw\n";
        assert_eq!(mount_root(mi, 97).as_deref(), Some("/persist/etc x"));
        assert_eq!(mount_root(mi, 5), None);
    }
}
