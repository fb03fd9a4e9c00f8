//! /proc/self/mountinfo as stage 2 reads it: mount point, root within the file system, device, type and options.

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the file system.
    pub device: String,
    /// The directory of the file system that is mounted here (`/` unless a bind mount).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Super-block options.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether `option` is among the per-mount or super-block options.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options.iter().chain(&self.super_options).any(|o| o == option)
    }
}

/// Parses the whole table; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let f: Vec<&str> = before.split(' ').collect();
    let a: Vec<&str> = after.split(' ').collect();
    if f.len() < 6 || a.len() < 3 {
        return None;
    }
    Some(MountEntry {
        device: f[2].to_owned(),
        root: unescape(f[3]),
        mount_point: unescape(f[4]),
        mount_options: f[5].split(',').map(str::to_owned).collect(),
        fs_type: a[0].to_owned(),
        source: unescape(a[1]),
        super_options: a[2].split(',').map(str::to_owned).collect(),
    })
}

/// The topmost mount at `target` (the last one listed), if any.
pub fn topmost<'a>(table: &'a [MountEntry], target: &str) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == target)
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    persist_bind::utab::unmangle(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:20 / / rw,relatime - tmpfs none rw,size=262144k,mode=755
23 22 253:16 / /persist rw,relatime - ext4 /dev/vdb rw
24 22 253:0 / /nix ro,relatime - ext4 /dev/vda ro
25 22 253:16 /etc/machine-id /etc/machine-id rw,relatime - ext4 /dev/vdb rw
26 22 253:16 /home/alice/my\\040docs /home/alice/my\\040docs rw,relatime shared:1 - ext4 /dev/vdb rw
27 22 0:21 / /nix ro - tmpfs none ro
garbage
";

    #[test]
    fn parses_fields_escapes_and_the_topmost_mount() {
        let t = parse(TABLE);
        assert_eq!(t.len(), 6);
        assert_eq!(t[1].device, "253:16");
        assert_eq!(t[3].root, "/etc/machine-id");
        assert_eq!(t[4].mount_point, "/home/alice/my docs");
        assert_eq!(topmost(&t, "/nix").unwrap().fs_type, "tmpfs");
        assert!(t[2].has_option("ro"));
        assert!(t[0].has_option("mode=755"));
        assert!(topmost(&t, "/var").is_none());
    }
}
