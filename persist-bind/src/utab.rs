//! Records userspace mount options (`x-gvfs-hide`, `x-gvfs-trash`) in libmount's utab, where file managers look for them.

use std::io::{self, Write};
use std::path::Path;

use crate::path::RootPath;

/// One utab line for a bind mount, as `mount --bind -o x-gvfs-hide`
/// writes it. libmount pairs it with the kernel's mount by TARGET and
/// ROOT, so TARGET is the path seen after switch_root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtabEntry {
    /// The mount id, which survives switch_root (libmount 2.39+ reads it).
    pub id: u64,
    /// The bind source, as seen after switch_root.
    pub bind_source: RootPath,
    pub target: RootPath,
    /// The file system's source and the mount's root within it.
    pub fs: Option<MountInfo>,
    pub options: Vec<&'static str>,
}

/// What mountinfo says of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub root: String,
    pub source: String,
}

impl UtabEntry {
    pub fn line(&self) -> String {
        let mut s = format!("ID={}", self.id);
        if let Some(fs) = &self.fs {
            s.push_str(&format!(" SRC={}", mangle(&fs.source)));
        }
        s.push_str(&format!(" TARGET={}", mangle(self.target.as_str())));
        if let Some(fs) = &self.fs {
            s.push_str(&format!(" ROOT={}", mangle(&fs.root)));
        }
        let opts = self.options.join(",");
        s.push_str(&format!(" BINDSRC={} OPTS={opts}\n", mangle(self.bind_source.as_str())));
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

/// The root and source of mount `id` in a mountinfo text.
pub fn mount_info(mountinfo: &str, id: u64) -> Option<MountInfo> {
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.first()?.parse::<u64>().ok()? != id {
            return None;
        }
        // id parent dev root mountpoint options [optional...] - fstype source superopts
        let dash = f.iter().position(|x| *x == "-")?;
        Some(MountInfo { root: unmangle(f.get(3)?), source: unmangle(f.get(dash + 2)?) })
    })
}

/// Undoes the kernel's and libmount's octal escapes in mount tables
/// (`\040` for a space, `\011`, `\012`, `\134`); anything that is not
/// such an escape (at most `\377`) stays as it is.
pub fn unmangle(s: &str) -> String {
    let b = s.as_bytes();
    let octal = |c: u8| (b'0'..=b'7').contains(&c);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && octal(b[i + 2])
            && octal(b[i + 3])
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
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
            bind_source: RootPath::parse("/persist/My Docs").unwrap(),
            target: RootPath::parse("/home/a/My Docs").unwrap(),
            fs: Some(MountInfo { root: "/My Docs".into(), source: "/dev/sda2".into() }),
            options: vec!["x-gvfs-hide", "x-gvfs-trash"],
        };
        assert_eq!(
            e.line(),
            "ID=42 SRC=/dev/sda2 TARGET=/home/a/My\\040Docs ROOT=/My\\040Docs BINDSRC=/persist/My\\040Docs OPTS=x-gvfs-hide,x-gvfs-trash\n"
        );
    }

    #[test]
    fn finds_the_root_and_source_of_a_mount_id() {
        let mi = "22 1 0:21 / / rw - tmpfs tmpfs rw\n\
                  97 22 0:21 /persist/etc\\040x /etc rw shared:5 - btrfs /dev/vda2 rw\n";
        let want = MountInfo { root: "/persist/etc x".into(), source: "/dev/vda2".into() };
        assert_eq!(mount_info(mi, 97), Some(want));
        assert_eq!(mount_info(mi, 5), None);
        assert_eq!(mount_info("97 truncated", 97), None);
    }

    #[test]
    fn unmangle_undoes_octal_escapes_only() {
        assert_eq!(unmangle("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unmangle("\\777 \\04 end\\"), "\\777 \\04 end\\");
    }
}
