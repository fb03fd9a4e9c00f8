//! A key device mounted read-only on a fresh private directory for as long as one key file is read, then unmounted and the directory removed.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::log;

/// Where key devices are mounted, one fresh directory each.
pub const KEYDEV_DIR: &str = "/run/lethe/keydev";

/// Nothing on a key stick is run, trusted as a device node or setuid, or written.
pub const FLAGS: MountFlags =
    MountFlags::RDONLY.union(MountFlags::NODEV).union(MountFlags::NOSUID).union(MountFlags::NOEXEC);

/// What went wrong while mounting.
#[derive(Debug)]
pub enum MountFailure {
    /// The mount point could not be made.
    Dir { dir: PathBuf, source: io::Error },
    /// No file-system type in the list mounted it; the last error.
    Mount { fs_type: &'static str, source: io::Error },
}

/// A mounted key device; dropping it unmounts it and removes its directory.
#[derive(Debug)]
pub struct KeyMount {
    dir: PathBuf,
    /// The mounted root, the anchor every key-file path is resolved beneath.
    root: Option<OwnedFd>,
}

impl KeyMount {
    /// Mounts `node` read-only under `base`, trying `fs_types` in order (ext2 and ext3 are
    /// also served by the ext4 driver, which is often the only one built).
    pub fn mount(node: &Path, fs_types: &[&'static str], base: &Path) -> Result<KeyMount, MountFailure> {
        let dir = fresh_dir(base).map_err(|(dir, source)| MountFailure::Dir { dir, source })?;
        // From here on, dropping `km` removes the directory (and unmounts once mounted).
        let mut km = KeyMount { dir, root: None };
        let mut last =
            MountFailure::Mount { fs_type: "", source: io::Error::other("no file-system type to try") };
        for &fs_type in fs_types {
            // A read-only ext3/4 mount still replays a dirty journal, writing to the stick.
            let data = matches!(fs_type, "ext3" | "ext4").then_some(c"noload");
            match rustix::mount::mount(node, &km.dir, fs_type, FLAGS, data) {
                Ok(()) => {
                    log::debug(&format!(
                        "mounted {} ({fs_type}) read-only on {}",
                        node.display(),
                        km.dir.display()
                    ));
                    let root = rustix::fs::open(
                        &km.dir,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    );
                    match root {
                        Ok(root) => km.root = Some(root),
                        Err(e) => {
                            // Drop unmounts only what it holds a root for: detach this one here.
                            let _ = rustix::mount::unmount(&km.dir, UnmountFlags::DETACH);
                            return Err(MountFailure::Mount { fs_type, source: e.into() });
                        }
                    }
                    return Ok(km);
                }
                Err(e) => last = MountFailure::Mount { fs_type, source: e.into() },
            }
        }
        Err(last)
    }

    /// Opens `path` (absolute, meaning relative to the device's root) for reading, never
    /// leaving the device: `..` beyond its root, absolute symlinks, symlinks pointing out,
    /// /proc-style magic links and other mounts all fail (EXDEV or ELOOP).
    pub fn open(&self, path: &Path) -> io::Result<File> {
        let Some(root) = &self.root else { return Err(io::Error::from(io::ErrorKind::NotConnected)) };
        let rel = relative(path);
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let fd = rustix::fs::openat2(root, &rel, flags, Mode::empty(), resolve)?;
        Ok(File::from(fd))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for KeyMount {
    fn drop(&mut self) {
        if self.root.take().is_some()
            && let Err(e) = rustix::mount::unmount(&self.dir, UnmountFlags::empty())
        {
            // Busy (a reader we do not know of): detach it, so it goes once that ends.
            log::warn(&format!("cannot unmount {}: {e}; detaching it", self.dir.display()));
            if let Err(e) = rustix::mount::unmount(&self.dir, UnmountFlags::DETACH) {
                log::warn(&format!("cannot detach {}: {e}", self.dir.display()));
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn(&format!("cannot remove {}: {e}", self.dir.display()));
        }
    }
}

/// `path` without its root, for resolving beneath the mounted root.
fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_))).collect()
}

/// A new directory only root can enter, under a `base` only root can enter.
fn fresh_dir(base: &Path) -> Result<PathBuf, (PathBuf, io::Error)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    DirBuilder::new().recursive(true).mode(0o700).create(base).map_err(|e| (base.to_owned(), e))?;
    fs::set_permissions(base, fs::Permissions::from_mode(0o700)).map_err(|e| (base.to_owned(), e))?;
    let pid = std::process::id();
    loop {
        let dir = base.join(format!("{pid}-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            // Left over by an earlier run with the same PID (stage 1 is always PID 1).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err((dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_from_the_device_root() {
        assert_eq!(relative(Path::new("/keys/root.key")), PathBuf::from("keys/root.key"));
        assert_eq!(relative(Path::new("/root.key")), PathBuf::from("root.key"));
    }
}
