//! BTRFS file systems on loop devices for the tests and the benchmark, with the `btrfs` CLI as the oracle.

#![allow(dead_code)] // each test binary uses a part

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A test that cannot run here fails under CI (CI=true) and is skipped elsewhere.
pub fn unavailable(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Why BTRFS on loop devices cannot be used here, if it cannot.
pub fn missing_capability() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root for loop devices and mounts".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (loop devices)".into());
    }
    if !fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("btrfs")) {
        let _ = Command::new("modprobe").arg("btrfs").output();
        if !fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("btrfs")) {
            return Some("the kernel has no btrfs".into());
        }
    }
    for t in ["mkfs.btrfs", "btrfs", "losetup", "mount", "umount"] {
        if !tool_path(t).is_file() {
            return Some(format!("{t} not installed (apt-get install btrfs-progs util-linux mount)"));
        }
    }
    None
}

fn tool_path(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

pub fn tool(name: &str) -> Command {
    let mut c = Command::new(tool_path(name));
    c.env("LC_ALL", "C");
    c
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lethe-btrfs-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A loop device over an image file, detached however the test ends.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    /// A sparse image of `mib` MiB at `image`, attached.
    pub fn new(image: &Path, mib: u64) -> Loop {
        Loop::attach(image, mib, false)
    }

    /// With `direct_io`, reads and writes bypass the host's page cache of the image,
    /// as a disk's would (for timings).
    pub fn attach(image: &Path, mib: u64, direct_io: bool) -> Loop {
        File::create(image).and_then(|f| f.set_len(mib << 20)).expect("image");
        let dio = if direct_io { "--direct-io=on" } else { "--direct-io=off" };
        let dev = run(tool("losetup").args(["-f", "--show", dio]).arg(image)).trim().to_owned();
        Loop { dev: PathBuf::from(dev) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // The kernel keeps a scanned btrfs device listed: forget it, so that a later
        // file system on the same loop number is not mistaken for this one.
        let _ = tool("btrfs").args(["device", "scan", "--forget"]).arg(&self.dev).output();
        let _ = tool("losetup").arg("-d").arg(&self.dev).output();
    }
}

/// A fresh btrfs on a loop device with its top level mounted at `top` (for setting up and checking).
pub struct Fs {
    pub top: PathBuf,
    mounted: bool,
    pub lo: Loop,
    _scratch: Scratch,
}

impl Fs {
    /// A new file system, or None (after the skip note) where BTRFS on loop devices is unavailable.
    pub fn new(test: &str, mib: u64) -> Option<Fs> {
        Fs::create(test, mib, false)
    }

    /// The same on a loop device doing direct I/O (see [`Loop::attach`]).
    pub fn create(test: &str, mib: u64, direct_io: bool) -> Option<Fs> {
        if let Some(why) = missing_capability() {
            unavailable(test, &why);
            return None;
        }
        let scratch = Scratch::new(test);
        let lo = Loop::attach(&scratch.0.join("disk.img"), mib, direct_io);
        run(tool("mkfs.btrfs").args(["-f", "-q"]).arg(&lo.dev));
        let top = scratch.0.join("top");
        fs::create_dir(&top).unwrap();
        let mut fs = Fs { top, mounted: false, lo, _scratch: scratch };
        fs.mount();
        Some(fs)
    }

    pub fn mount(&mut self) {
        run(tool("mount").args(["-t", "btrfs", "-o", "subvolid=5"]).arg(&self.lo.dev).arg(&self.top));
        self.mounted = true;
    }

    /// Unmounts the test's view, so the library finds the file system as a boot does: not mounted.
    pub fn unmount(&mut self) {
        run(tool("umount").arg(&self.top));
        self.mounted = false;
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.top.join(rel)
    }

    pub fn subvolume_create(&self, rel: &str) {
        fs::create_dir_all(self.path(rel).parent().unwrap()).unwrap();
        run(tool("btrfs").args(["-q", "subvolume", "create"]).arg(self.path(rel)));
    }

    pub fn snapshot_ro(&self, from: &str, to: &str) {
        run(tool("btrfs")
            .args(["-q", "subvolume", "snapshot", "-r"])
            .arg(self.path(from))
            .arg(self.path(to)));
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `btrfs subvolume list`: path (relative to the top level) → id, deleted ones left out.
    pub fn subvolumes(&self) -> BTreeMap<String, u64> {
        let out = run(tool("btrfs").args(["subvolume", "list"]).arg(&self.top));
        out.lines()
            .filter_map(|l| {
                // "ID 257 gen 9 top level 5 path root/a"
                let id = l.strip_prefix("ID ")?.split(' ').next()?.parse().ok()?;
                let (_, path) = l.split_once(" path ")?;
                Some((path.strip_prefix("<FS_TREE>/").unwrap_or(path).to_owned(), id))
            })
            .collect()
    }

    /// `btrfs subvolume show` as key → value (Generation, Creation time, Flags, Subvolume ID…).
    pub fn show(&self, rel: &str) -> BTreeMap<String, String> {
        let out = run(tool("btrfs").args(["subvolume", "show"]).arg(self.path(rel)));
        out.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// Whether `rel` is a read-only subvolume, by `btrfs property get`.
    pub fn readonly(&self, rel: &str) -> bool {
        run(tool("btrfs").args(["property", "get", "-ts"]).arg(self.path(rel)).arg("ro")).trim() == "ro=true"
    }

    pub fn is_subvolume(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok_and(|m| m.is_dir() && m.ino() == 256)
    }

    /// The names in the top level's directory `rel`.
    pub fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(rel))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A tree's content: relative path → kind, mode and content.
    pub fn tree(&self, rel: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.path(rel), Path::new(""), &mut out);
        out
    }
}

/// A subvolume mounted on a directory of its own, as a running system mounts its
/// root; unmounted when dropped (before the file system's own cleanup).
pub struct SubvolMount {
    pub at: PathBuf,
    _scratch: Scratch,
}

impl Fs {
    /// Mounts the subvolume at `rel` (relative to the top level) on a fresh directory.
    pub fn mount_subvolume(&self, rel: &str) -> SubvolMount {
        let scratch = Scratch::new("mounted-subvolume");
        let at = scratch.0.join("at");
        fs::create_dir(&at).unwrap();
        run(tool("mount")
            .args(["-t", "btrfs", "-o"])
            .arg(format!("subvol={rel}"))
            .arg(&self.lo.dev)
            .arg(&at));
        SubvolMount { at, _scratch: scratch }
    }
}

impl Drop for SubvolMount {
    fn drop(&mut self) {
        // Never leave it mounted: the scratch directory is removed recursively next.
        let out = tool("umount").arg(&self.at).output();
        if !out.is_ok_and(|o| o.status.success()) {
            let _ = tool("umount").arg("-l").arg(&self.at).output();
        }
    }
}

fn walk(dir: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = e.metadata().unwrap();
        let r = rel.join(e.file_name());
        let mode = m.permissions().mode() & 0o7777;
        let v = if m.is_dir() {
            walk(&e.path(), &r, out);
            format!("dir {mode:o}")
        } else if m.file_type().is_symlink() {
            format!("symlink -> {}", fs::read_link(e.path()).unwrap().display())
        } else {
            format!("file {mode:o} {}", fs::read_to_string(e.path()).unwrap_or_else(|_| "<binary>".into()))
        };
        out.insert(r.display().to_string(), v);
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if self.mounted {
            let out = tool("umount").arg(&self.top).output();
            if !out.is_ok_and(|o| o.status.success()) {
                let _ = tool("umount").arg("-l").arg(&self.top).output();
            }
        }
    }
}
