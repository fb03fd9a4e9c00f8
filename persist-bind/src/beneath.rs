//! File-system operations confined beneath a root directory (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
//!
//! No path is ever resolved through a symlink: a symlink planted on any
//! component of a path makes the operation fail with
//! [`FsError::SymlinkOnPath`] instead of being followed out of the root.
//! The final component is never followed either: it is examined with
//! `O_PATH | O_NOFOLLOW`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode as RMode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use crate::mode::Mode;
use crate::path::RootPath;

/// A root directory that every path is resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    host: PathBuf,
}

/// What kind of file is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Other,
}

/// The metadata the planner needs, from `lstat` beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    pub mode: Mode,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
}

/// A failed file-system operation, with the path (as seen after switch_root).
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path} has a symlink on its path ({link}); refusing to follow it")]
    SymlinkOnPath { path: RootPath, link: RootPath },
    #[error("{path}: {op}: {source}")]
    Io { path: RootPath, op: &'static str, source: io::Error },
    #[error("{path}: expected {expected}, found {found:?}")]
    WrongKind { path: RootPath, expected: &'static str, found: Kind },
}

impl FsError {
    fn io(path: &RootPath, op: &'static str, e: Errno) -> FsError {
        FsError::Io { path: path.clone(), op, source: io::Error::from(e) }
    }
}

const RESOLVE: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens `host` (a directory) as the root of every later path.
    pub fn open(host: &Path) -> io::Result<Root> {
        let fd = rfs::open(host, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, RMode::empty())?;
        Ok(Root { fd, host: host.to_owned() })
    }

    /// The root's path on the host.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where `p` is on the host (for messages and external tools).
    pub fn host_path(&self, p: &RootPath) -> PathBuf {
        p.under(&self.host)
    }

    fn openat(&self, p: &RootPath, flags: OFlags, op: &'static str) -> Result<OwnedFd, FsError> {
        rfs::openat2(
            &self.fd,
            p.relative(),
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            RMode::empty(),
            RESOLVE,
        )
        .map_err(|e| self.explain(p, op, e))
    }

    /// Turns ELOOP/EXDEV into the symlink that caused it.
    fn explain(&self, p: &RootPath, op: &'static str, e: Errno) -> FsError {
        if e == Errno::LOOP || e == Errno::XDEV {
            for a in p.ancestors().into_iter().chain(std::iter::once(p.clone())) {
                if let Ok(fd) = rfs::openat2(
                    &self.fd,
                    a.relative(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    RMode::empty(),
                    RESOLVE,
                ) && rfs::fstat(&fd).map(|s| FileType::from_raw_mode(s.st_mode)) == Ok(FileType::Symlink)
                    && &a != p
                {
                    return FsError::SymlinkOnPath { path: p.clone(), link: a };
                }
            }
            return FsError::SymlinkOnPath { path: p.clone(), link: p.clone() };
        }
        FsError::io(p, op, e)
    }

    fn parent(&self, p: &RootPath, op: &'static str) -> Result<OwnedFd, FsError> {
        let parent = p.parent().ok_or_else(|| FsError::io(p, op, Errno::INVAL))?;
        self.openat(&parent, OFlags::PATH | OFlags::DIRECTORY, op).map_err(|e| match e {
            FsError::Io { source, .. } => FsError::Io { path: p.clone(), op, source },
            e => e,
        })
    }

    /// `lstat` beneath the root; `None` when `p` (or a parent) is missing.
    pub fn lstat(&self, p: &RootPath) -> Result<Option<Meta>, FsError> {
        match self.openat(p, OFlags::PATH, "stat") {
            Ok(fd) => fstat(&fd).map(Some).map_err(|e| FsError::io(p, "stat", e)),
            Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The target of the symlink at `p`.
    pub fn readlink(&self, p: &RootPath) -> Result<String, FsError> {
        let dir = self.parent(p, "readlink")?;
        let t =
            rfs::readlinkat(&dir, p.file_name(), Vec::new()).map_err(|e| FsError::io(p, "readlink", e))?;
        Ok(t.to_string_lossy().into_owned())
    }

    /// Creates the directory `p` owned by `uid:gid` with exactly `mode`.
    ///
    /// The directory is made under a temporary name, given its owner and
    /// mode, then renamed into place: a power cut never leaves a
    /// half-made directory (root's, 0700) that later boots would take as
    /// the persistent truth.
    pub fn mkdir(&self, p: &RootPath, uid: u32, gid: u32, mode: Mode) -> Result<(), FsError> {
        let dir = self.parent(p, "mkdir")?;
        let tmp = format!(".{}.lethe-new", p.file_name());
        // A leftover of an interrupted run is an empty directory we made.
        let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::REMOVEDIR);
        // Private until handed over: never briefly wider than asked.
        rfs::mkdirat(&dir, tmp.as_str(), RMode::from_raw_mode(0o700))
            .map_err(|e| FsError::io(p, "mkdir", e))?;
        let made = (|| {
            let fd = rfs::openat(
                &dir,
                tmp.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                RMode::empty(),
            )
            .map_err(|e| FsError::io(p, "mkdir", e))?;
            rfs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(|e| FsError::io(p, "chown", e))?;
            rfs::fchmod(&fd, RMode::from_raw_mode(mode.bits())).map_err(|e| FsError::io(p, "chmod", e))?;
            match rfs::renameat_with(&dir, tmp.as_str(), &dir, p.file_name(), rfs::RenameFlags::NOREPLACE) {
                // ZFS before 2.2 refuses every rename flag. Without the
                // flag, rename would replace an empty directory made
                // there meanwhile; only stage 1 runs at this point, and
                // the name is checked to be free just before.
                Err(Errno::INVAL) => match rfs::statat(&dir, p.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => rfs::renameat(&dir, tmp.as_str(), &dir, p.file_name())
                        .map_err(|e| FsError::io(p, "mkdir", e)),
                    Ok(_) => Err(FsError::io(p, "mkdir", Errno::EXIST)),
                    Err(e) => Err(FsError::io(p, "mkdir", e)),
                },
                r => r.map_err(|e| FsError::io(p, "mkdir", e)),
            }
        })();
        if made.is_err() {
            let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::REMOVEDIR);
        }
        made
    }

    /// Changes the owner of the directory `p` (never through a symlink).
    pub fn chown(&self, p: &RootPath, uid: u32, gid: u32) -> Result<(), FsError> {
        let fd = self.open_dir(p, "chown")?;
        rfs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(|e| FsError::io(p, "chown", e))
    }

    /// Sets the mode of the directory `p` (never through a symlink).
    pub fn chmod(&self, p: &RootPath, mode: Mode) -> Result<(), FsError> {
        let fd = self.open_dir(p, "chmod")?;
        rfs::fchmod(&fd, RMode::from_raw_mode(mode.bits())).map_err(|e| FsError::io(p, "chmod", e))
    }

    /// Opens the directory `p` for fchown/fchmod. O_DIRECTORY refuses
    /// anything else before it is opened, so a file, FIFO or device put
    /// there after planning (a hard link to /etc/shadow, say) is never
    /// opened, chowned or chmodded.
    fn open_dir(&self, p: &RootPath, op: &'static str) -> Result<OwnedFd, FsError> {
        self.openat(p, OFlags::RDONLY | OFlags::DIRECTORY, op).map_err(|e| match e {
            FsError::Io { source, .. } if source.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                match self.lstat(p) {
                    Ok(Some(m)) => {
                        FsError::WrongKind { path: p.clone(), expected: "a directory", found: m.kind }
                    }
                    _ => FsError::Io { path: p.clone(), op, source },
                }
            }
            e => e,
        })
    }

    /// Creates an empty regular file at `p` (fails if anything is there).
    pub fn touch(&self, p: &RootPath) -> Result<(), FsError> {
        self.create(p, 0o644, b"")
    }

    /// Creates a new file at `p` holding `data`, owned by root.
    pub fn create(&self, p: &RootPath, mode: u32, data: &[u8]) -> Result<(), FsError> {
        let dir = self.parent(p, "create")?;
        let fd = rfs::openat(
            &dir,
            p.file_name(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            RMode::from_raw_mode(mode),
        )
        .map_err(|e| FsError::io(p, "create", e))?;
        let mut rest = data;
        while !rest.is_empty() {
            let n = rustix::io::write(&fd, rest).map_err(|e| FsError::io(p, "write", e))?;
            rest = &rest[n..];
        }
        rfs::fchmod(&fd, RMode::from_raw_mode(mode)).map_err(|e| FsError::io(p, "chmod", e))
    }

    /// Creates the symlink `p` -> `target` (the target is stored verbatim).
    pub fn symlink(&self, p: &RootPath, target: &str) -> Result<(), FsError> {
        let dir = self.parent(p, "symlink")?;
        rfs::symlinkat(target, &dir, p.file_name()).map_err(|e| FsError::io(p, "symlink", e))
    }

    /// Reads a whole regular file of at most `limit` bytes.
    pub fn read(&self, p: &RootPath, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        // Look before opening: opening a device or FIFO can have effects.
        match self.lstat(p)? {
            None => return Ok(None),
            Some(m) if m.kind != Kind::File => {
                return Err(FsError::WrongKind {
                    path: p.clone(),
                    expected: "a regular file",
                    found: m.kind,
                });
            }
            Some(_) => {}
        }
        let fd = match self.openat(p, OFlags::RDONLY | OFlags::NONBLOCK, "read") {
            Ok(fd) => fd,
            Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let m = fstat(&fd).map_err(|e| FsError::io(p, "read", e))?;
        if m.kind != Kind::File {
            return Err(FsError::WrongKind { path: p.clone(), expected: "a regular file", found: m.kind });
        }
        if m.size > limit {
            return Err(FsError::io(p, "read", Errno::FBIG));
        }
        let mut out = Vec::with_capacity(m.size as usize);
        let mut buf = [0u8; 8192];
        loop {
            let n = rustix::io::read(&fd, &mut buf).map_err(|e| FsError::io(p, "read", e))?;
            if n == 0 || out.len() as u64 + n as u64 > limit {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(Some(out))
    }

    /// Bind-mounts `source` onto `target` (non-recursive, like `mount
    /// --bind`), both resolved beneath the root; returns the new mount's id.
    pub fn bind(&self, source: &RootPath, target: &RootPath) -> Result<u64, FsError> {
        let src = self.openat(source, OFlags::PATH, "bind")?;
        // Checked on the descriptors that are mounted: a symlink swapped in
        // after planning would otherwise be mounted itself (and followed by
        // every later lookup of the target).
        let kind = fstat(&src).map_err(|e| FsError::io(source, "bind", e))?.kind;
        if !matches!(kind, Kind::Directory | Kind::File) {
            return Err(FsError::WrongKind {
                path: source.clone(),
                expected: "a directory or a file",
                found: kind,
            });
        }
        let dst = self.openat(target, OFlags::PATH, "bind")?;
        let found = fstat(&dst).map_err(|e| FsError::io(target, "bind", e))?.kind;
        if found != kind {
            let expected = if kind == Kind::Directory { "a directory" } else { "a file" };
            return Err(FsError::WrongKind { path: target.clone(), expected, found });
        }
        let tree = rustix::mount::open_tree(
            &src,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| FsError::io(source, "open_tree", e))?;
        rustix::mount::move_mount(
            tree.as_fd(),
            "",
            dst.as_fd(),
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| FsError::io(target, "move_mount", e))?;
        self.mount_id(target)
    }

    /// The id of the mount `p` is on (as in /proc/self/mountinfo).
    pub fn mount_id(&self, p: &RootPath) -> Result<u64, FsError> {
        let fd = self.openat(p, OFlags::PATH, "statx")?;
        let sx = rfs::statx(&fd, "", AtFlags::EMPTY_PATH, rfs::StatxFlags::MNT_ID)
            .map_err(|e| FsError::io(p, "statx", e))?;
        Ok(sx.stx_mnt_id)
    }

    /// The names in the directory `p` (not `.`/`..`), unsorted.
    pub fn list(&self, p: &RootPath) -> Result<Vec<String>, FsError> {
        let fd = self.openat(p, OFlags::RDONLY | OFlags::DIRECTORY, "readdir")?;
        let mut names = Vec::new();
        let mut dir = rfs::Dir::new(fd).map_err(|e| FsError::io(p, "readdir", e))?;
        while let Some(ent) = dir.read() {
            let ent = ent.map_err(|e| FsError::io(p, "readdir", e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(names)
    }
}

fn fstat(fd: &OwnedFd) -> Result<Meta, Errno> {
    let s = rfs::fstat(fd)?;
    let kind = match FileType::from_raw_mode(s.st_mode) {
        FileType::Directory => Kind::Directory,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Ok(Meta {
        kind,
        uid: s.st_uid,
        gid: s.st_gid,
        mode: Mode::from_bits(s.st_mode & 0o7777).expect("masked to 0o7777"),
        size: s.st_size as u64,
        dev: s.st_dev,
        ino: s.st_ino,
    })
}

fn uid_of(id: u32) -> rfs::Uid {
    rfs::Uid::from_raw(id)
}

fn gid_of(id: u32) -> rfs::Gid {
    rfs::Gid::from_raw(id)
}
