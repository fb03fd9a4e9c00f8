//! The cpio newc archive format the kernel unpacks an initramfs from.
//!
//! Only what an initramfs needs: directories, regular files, symlinks and
//! character devices, owned by root, mtime 0, no hard links (every entry has
//! its own inode number), written in sorted path order so that the same
//! inputs give the same bytes. Parents are added before their children
//! because the kernel's unpacker does not create missing directories.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// newc header magic (no checksums).
const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
/// Mode of directories created as parents of other entries.
const PARENT_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    #[error("{path:?}: not a usable archive path (relative to /, no empty, `.` or `..` components)")]
    BadPath { path: String },
    #[error("{path:?} is in the archive twice")]
    Duplicate { path: String },
    #[error("{path:?} needs {parent:?} to be a directory, and it is not")]
    NotADirectory { path: String, parent: String },
    #[error("{path:?} is {size} bytes; newc holds at most 4 GiB per file")]
    TooLarge { path: String, size: usize },
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits (`0o755`); the file type comes from [`Kind`].
    pub perm: u32,
    pub kind: Kind,
}

impl Entry {
    fn mode(&self) -> u32 {
        let ty = match self.kind {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::CharDev { .. } => S_IFCHR,
        };
        ty | (self.perm & 0o7777)
    }

    fn data(&self) -> &[u8] {
        match &self.kind {
            Kind::File(d) => d,
            Kind::Symlink(t) => t.as_bytes(),
            Kind::Dir | Kind::CharDev { .. } => &[],
        }
    }
}

/// An archive being assembled; paths are relative to the root (`bin/init`; a leading `/` is dropped).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// A directory; adding one that exists (say, as a parent) only sets its mode.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        let p = normalise(path)?;
        self.parents(&p)?;
        match self.entries.get_mut(&p) {
            Some(Entry { kind: Kind::Dir, perm: old }) => *old = perm,
            Some(_) => return Err(CpioError::Duplicate { path: p }),
            None => {
                self.entries.insert(p, Entry { perm, kind: Kind::Dir });
            }
        }
        Ok(())
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge { path: path.to_owned(), size: data.len() });
        }
        self.insert(path, Entry { perm, kind: Kind::File(data) })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.insert(path, Entry { perm: 0o777, kind: Kind::Symlink(target.to_owned()) })
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), CpioError> {
        self.insert(path, Entry { perm, kind: Kind::CharDev { major, minor } })
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), CpioError> {
        let p = normalise(path)?;
        self.parents(&p)?;
        if self.entries.contains_key(&p) {
            return Err(CpioError::Duplicate { path: p });
        }
        self.entries.insert(p, entry);
        Ok(())
    }

    /// Adds the missing parents of `p` as directories; an existing non-directory parent is an error.
    fn parents(&mut self, p: &str) -> Result<(), CpioError> {
        for (i, _) in p.match_indices('/') {
            let parent = &p[..i];
            match self.entries.get(parent) {
                Some(Entry { kind: Kind::Dir, .. }) => {}
                Some(_) => {
                    return Err(CpioError::NotADirectory { path: p.to_owned(), parent: parent.to_owned() });
                }
                None => {
                    self.entries.insert(parent.to_owned(), Entry { perm: PARENT_MODE, kind: Kind::Dir });
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        normalise(path).ok().and_then(|p| self.entries.get(&p))
    }

    /// Entries in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the archive (entries sorted by path, so parents first) and its trailer; returns the bytes written.
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<u64> {
        let mut n = 0;
        // Inode 0 is avoided: some unpackers take it for "no inode".
        for (ino, (path, e)) in (1u32..).zip(&self.entries) {
            let data = e.data();
            let nlink = if matches!(e.kind, Kind::Dir) { 2 } else { 1 };
            let (rmaj, rmin) = match e.kind {
                Kind::CharDev { major, minor } => (major, minor),
                _ => (0, 0),
            };
            let h = Header { ino, mode: e.mode(), nlink, size: len32(data.len())?, rdev: (rmaj, rmin) };
            n += write_entry(w, &h, path, data)?;
        }
        let trailer = Header { ino: 0, mode: 0, nlink: 1, size: 0, rdev: (0, 0) };
        n += write_entry(w, &trailer, TRAILER, &[])?;
        Ok(n)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec only fails on a file over 4 GiB, which `file` refused already.
        if self.write_to(&mut v).is_err() {
            v.clear();
        }
        v
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))
}

/// Header, NUL-terminated name padded to 4, data padded to 4.
fn write_entry<W: Write>(w: &mut W, h: &Header, name: &str, data: &[u8]) -> io::Result<u64> {
    let namesize = len32(name.len() + 1)?;
    let (uid, gid, mtime, devmajor, devminor, check) = (0, 0, 0, 0, 0, 0);
    let fields = [
        h.ino, h.mode, uid, gid, h.nlink, mtime, h.size, devmajor, devminor, h.rdev.0, h.rdev.1, namesize,
        check,
    ];
    let mut head = Vec::with_capacity(110 + name.len() + 4);
    head.extend_from_slice(MAGIC);
    for f in fields {
        head.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    head.extend_from_slice(name.as_bytes());
    head.push(0);
    head.resize(head.len().next_multiple_of(4), 0);
    w.write_all(&head)?;
    w.write_all(data)?;
    let pad = data.len().next_multiple_of(4) - data.len();
    w.write_all(&[0; 3][..pad])?;
    Ok((head.len() + data.len() + pad) as u64)
}

/// `/bin//x` -> `bin/x`; refuses `.`, `..`, NUL and the empty path.
fn normalise(path: &str) -> Result<String, CpioError> {
    let bad = || CpioError::BadPath { path: path.to_owned() };
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() || path.contains('\0') || parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(bad());
    }
    // Doubled and trailing slashes are dropped: one spelling per entry.
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("/bin/tool", 0o755, b"#!binary\n".to_vec()).unwrap();
        a.symlink("/init", "bin/tool").unwrap();
        a.symlink("bin/alias", "tool").unwrap();
        a.dir("/proc", 0o555).unwrap();
        a.file("etc/lethe/config.json", 0o644, b"{\"version\": 1}".to_vec()).unwrap();
        a.file("empty", 0o600, Vec::new()).unwrap();
        a.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        a
    }

    /// `cpio` on the host, or None (a skip) when absent outside CI.
    fn cpio_tool() -> Option<()> {
        if Command::new("cpio").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return Some(());
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "cpio is not installed (apt-get install cpio)");
        eprintln!("skipped: cpio is not installed");
        None
    }

    fn run_cpio(args: &[&str], dir: &Path, input: &[u8]) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lethe-cpio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn layout_is_sorted_aligned_and_terminated() {
        let bytes = sample().to_bytes();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(bytes, sample().to_bytes(), "deterministic");
        // The first entry is `bin` (created as a parent), inode 1, a directory 0755.
        assert_eq!(&bytes[6..14], b"00000001");
        assert_eq!(&bytes[14..22], b"000041ED");
        assert_eq!(&bytes[110..114], b"bin\0");
        let tail = String::from_utf8_lossy(&bytes[bytes.len() - 124..]);
        assert!(tail.contains("TRAILER!!!"), "{tail}");
        let a = sample();
        let names: Vec<&str> = a.entries().map(|(p, _)| p).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/alias",
                "bin/tool",
                "dev",
                "dev/console",
                "empty",
                "etc",
                "etc/lethe",
                "etc/lethe/config.json",
                "init",
                "proc"
            ]
        );
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut a = sample();
        assert!(matches!(a.file("/", 0o644, vec![]), Err(CpioError::BadPath { .. })));
        assert!(matches!(a.file("a/../b", 0o644, vec![]), Err(CpioError::BadPath { .. })));
        assert!(matches!(a.file("./b", 0o644, vec![]), Err(CpioError::BadPath { .. })));
        assert_eq!(a.symlink("/init", "x"), Err(CpioError::Duplicate { path: "init".into() }));
        assert!(matches!(a.file("init/x", 0o644, vec![]), Err(CpioError::NotADirectory { .. })));
        assert!(a.dir("bin", 0o700).is_ok());
        assert_eq!(a.get("/bin").unwrap().perm, 0o700);
        assert!(a.dir("//etc//lethe/", 0o755).is_ok());
        assert!(a.get("etc/lethe").is_some());
    }

    #[test]
    fn round_trip_through_the_cpio_tool() {
        if cpio_tool().is_none() {
            return;
        }
        let a = sample();
        let bytes = a.to_bytes();
        let dir = temp("roundtrip");
        let listed = run_cpio(&["-it", "--quiet"], &dir, &bytes);
        let want: Vec<&str> = a.entries().map(|(p, _)| p).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), want);
        let verbose = run_cpio(&["-itv", "--quiet"], &dir, &bytes);
        let console = verbose.lines().find(|l| l.ends_with(" dev/console")).unwrap();
        assert!(console.starts_with("crw-------"), "{console}");
        assert!(
            console.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["5,", "1"]),
            "{console}"
        );
        // Extract everything but the device node (mknod needs root).
        run_cpio(&["-idm", "--quiet", "--no-absolute-filenames", "-f", "dev/console"], &dir, &bytes);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::read(dir.join("bin/tool")).unwrap(), b"#!binary\n");
        assert_eq!(std::fs::metadata(dir.join("bin/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read(dir.join("etc/lethe/config.json")).unwrap(), b"{\"version\": 1}");
        assert_eq!(std::fs::read(dir.join("empty")).unwrap(), b"");
        assert_eq!(std::fs::read_link(dir.join("init")).unwrap(), Path::new("bin/tool"));
        assert_eq!(std::fs::read_link(dir.join("bin/alias")).unwrap(), Path::new("tool"));
        assert!(std::fs::metadata(dir.join("proc")).unwrap().is_dir());
        assert!(std::fs::metadata(dir.join("dev")).unwrap().is_dir());
        assert_eq!(
            std::fs::metadata(dir.join("bin/tool")).unwrap().modified().unwrap(),
            std::time::UNIX_EPOCH
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
