//! The file system's top level (subvolid=5), mounted where no one else sees it, and what lies below it.
//!
//! The mount is detached (fsopen/fsmount): it is never attached to any tree
//! and goes away with the last descriptor. Every path is resolved beneath it
//! without following symlinks, so nothing planted in the file system can send
//! a rename or a snapshot elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, UnmountFlags};

use super::ioctl::{self, SEARCH_BUF, SEARCH_HEADER, SearchKey};
use super::plan::{Entry, Nested, OldRoot, OldRootsDir, Subvol};
use crate::config::SubvolPath;

/// Inode number of every subvolume's top directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOL_TOP_INO: u64 = 256;
/// The tree of tree roots, where ROOT_REF items link subvolumes to their parents.
const ROOT_TREE: u64 = 1;
/// The top level's id (BTRFS_FS_TREE_OBJECTID), also the default subvolume's when never set.
pub const TOP_LEVEL: u64 = 5;
/// The directory in the root tree holding the "default" entry (BTRFS_ROOT_TREE_DIR_OBJECTID).
const ROOT_TREE_DIR: u64 = 6;
const DIR_ITEM_KEY: u32 = 84;
const ROOT_REF_KEY: u32 = 156;
/// More nested subvolumes than this means something is wrong (or hostile): stop counting.
const MAX_NESTED: usize = 1 << 20;

/// The private top-level mount.
pub struct TopLevel {
    fd: OwnedFd,
}

fn io(e: Errno) -> io::Error {
    io::Error::from(e)
}

impl TopLevel {
    /// Mounts the top level of the btrfs on `device` where only this process reaches it.
    pub fn mount(device: &Path) -> io::Result<TopLevel> {
        match detached(device) {
            Err(e) if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()) => lazily_unmounted(device),
            r => r,
        }
    }

    /// The same, always the way kernels without fsmount need.
    pub fn mount_legacy(device: &Path) -> io::Result<TopLevel> {
        lazily_unmounted(device)
    }

    /// Takes the lock runs that change the file system hold: an exclusive flock on
    /// the top level's directory, one inode however many times it is mounted.
    /// False when another run still holds it after a short wait; it is
    /// released with `self`.
    pub fn try_lock(&self) -> io::Result<bool> {
        // A run that just ended may live on for a moment in a child forked
        // before its descriptors closed (they close at that child's exec).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match rustix::fs::flock(&self.fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(true),
                Err(Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(Errno::WOULDBLOCK) => return Ok(false),
                Err(e) => return Err(io(e)),
            }
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A path naming the top level for code that wants paths (valid while `self` lives).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.fd)))
    }

    /// Opens the directory at `path` (never through a symlink, never out of the top level).
    pub fn open_dir(&self, path: &str) -> io::Result<OwnedFd> {
        rustix::fs::openat2(
            &self.fd,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(io)
    }

    /// The directory holding `path`, opened.
    pub fn parent_of(&self, path: &SubvolPath) -> io::Result<OwnedFd> {
        self.open_dir(path.parent().as_ref().map_or(".", SubvolPath::as_str))
    }

    /// What is at `path`.
    pub fn entry(&self, path: &SubvolPath) -> io::Result<Entry> {
        let parent = match self.parent_of(path) {
            Ok(fd) => fd,
            Err(e) => return not_there(e, "below a symlink or a file"),
        };
        self.entry_in(parent.as_fd(), OsStr::new(path.file_name()))
    }

    fn entry_in(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Entry> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => return not_there(io(e), "unreadable"),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory if st.st_ino == SUBVOL_TOP_INO => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io)?;
                Entry::Subvolume(self.subvol(fd.as_fd())?)
            }
            FileType::Directory => Entry::Directory,
            FileType::Symlink => Entry::Other("a symlink"),
            FileType::RegularFile => Entry::Other("a regular file"),
            _ => Entry::Other("a special file"),
        })
    }

    /// The subvolume whose top `fd` is, with everything nested in it.
    pub fn subvol(&self, fd: BorrowedFd<'_>) -> io::Result<Subvol> {
        let info = ioctl::subvol_info(fd)?;
        let readonly = ioctl::subvol_readonly(fd)?;
        Ok(Subvol { id: info.id, readonly, otime: info.otime, nested: self.nested(info.id)? })
    }

    /// The old-roots directory at `path`: every name in it, and the subvolumes directly in it.
    pub fn old_roots(&self, path: &SubvolPath) -> io::Result<OldRootsDir> {
        let entry = self.entry(path)?;
        let mut dir = OldRootsDir { entry, names: BTreeSet::new(), subvolumes: Vec::new() };
        if !matches!(dir.entry, Entry::Directory | Entry::Subvolume(_)) {
            return Ok(dir);
        }
        let fd = self.open_dir(path.as_str())?;
        for item in rustix::fs::Dir::read_from(&fd).map_err(io)? {
            let item = item.map_err(io)?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let shown = name.to_string_lossy().into_owned();
            dir.names.insert(shown.clone());
            if let Entry::Subvolume(subvol) = self.entry_in(fd.as_fd(), name)? {
                dir.subvolumes.push(OldRoot { name: shown, subvol });
            }
        }
        Ok(dir)
    }

    /// The subvolumes nested in subvolume `id` at any depth, deepest first, found
    /// by the ROOT_REF items that link each subvolume to its parent.
    pub fn nested(&self, id: u64) -> io::Result<Vec<Nested>> {
        let mut found = Vec::new();
        let mut seen = HashSet::from([id]);
        let mut queue = VecDeque::from([(id, String::new())]);
        while let Some((parent, prefix)) = queue.pop_front() {
            for (child, dirid, name) in self.children(parent)? {
                if !seen.insert(child) || found.len() >= MAX_NESTED {
                    return Err(io::Error::other(format!(
                        "the subvolume tree below subvolume {id} loops or is too large"
                    )));
                }
                let dir = ioctl::ino_lookup(self.fd(), parent, dirid)?;
                let path =
                    format!("{prefix}{}{}", String::from_utf8_lossy(&dir), String::from_utf8_lossy(&name));
                queue.push_back((child, format!("{path}/")));
                found.push(Nested { id: child, path });
            }
        }
        // Breadth-first order has every parent before its children: reversed, children come first.
        found.reverse();
        Ok(found)
    }

    /// The subvolumes directly inside subvolume `id`: (child id, directory inode in `id`, name).
    fn children(&self, id: u64) -> io::Result<Vec<(u64, u64, Vec<u8>)>> {
        let mut out = Vec::new();
        self.search(ROOT_TREE, id, ROOT_REF_KEY, |offset, data| {
            // struct btrfs_root_ref: __le64 dirid, __le64 sequence, __le16 name_len, then the name.
            let dirid = le64(data, 0)?;
            let len = usize::from(le16(data, 16)?);
            let name = data.get(18..18 + len)?.to_vec();
            out.push((offset, dirid, name));
            Some(())
        })?;
        Ok(out)
    }

    /// The default subvolume's id (what a mount without subvol= or subvolid= gets).
    pub fn default_subvolume(&self) -> io::Result<u64> {
        let mut id = TOP_LEVEL;
        self.search(ROOT_TREE, ROOT_TREE_DIR, DIR_ITEM_KEY, |_, mut data| {
            // struct btrfs_dir_item (30 bytes, packed): location key (le64 objectid, u8 type,
            // le64 offset), le64 transid, le16 data_len, le16 name_len, u8 type; then
            // name and data. Several items share a key when their names' hashes collide.
            while !data.is_empty() {
                let objectid = le64(data, 0)?;
                let data_len = usize::from(le16(data, 25)?);
                let name_len = usize::from(le16(data, 27)?);
                if data.get(30..30 + name_len)? == b"default" {
                    id = objectid;
                }
                data = data.get(30 + name_len + data_len..)?;
            }
            Some(())
        })?;
        Ok(id)
    }

    /// The subvolumes of this file system mounted where this process sees them:
    /// id -> the first mount point listed (/proc/self/mountinfo; a mount of a
    /// directory inside a subvolume counts for that subvolume).
    pub fn mounted(&self) -> io::Result<BTreeMap<u64, String>> {
        let ours = ioctl::fsid(self.fd())?;
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            // Six fixed fields, optional ones, then "-", the type, the source and the options.
            let Some(dash) = f.iter().skip(6).position(|&x| x == "-").map(|p| p + 6) else { continue };
            if f.get(dash + 1) != Some(&"btrfs") {
                continue;
            }
            let Some(at) = f.get(4).map(|m| persist_bind::utab::unmangle(m)) else { continue };
            // A mount point that cannot be opened (hidden under another mount, gone) is passed over.
            let Ok(fd) = rustix::fs::open(
                at.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            if ioctl::fsid(fd.as_fd()).is_ok_and(|id| id == ours)
                && let Ok(info) = ioctl::subvol_info(fd.as_fd())
            {
                out.entry(info.id).or_insert(at);
            }
        }
        Ok(out)
    }

    /// Every item of `tree` with key (objectid, kind, any offset), in order: `f(offset, item)`.
    /// `f` answers None for an item it cannot read, which is an error.
    fn search(
        &self,
        tree: u64,
        objectid: u64,
        kind: u32,
        mut f: impl FnMut(u64, &[u8]) -> Option<()>,
    ) -> io::Result<()> {
        let bad = || io::Error::other(format!("malformed item in tree {tree}, key ({objectid}, {kind})"));
        let mut args = ioctl::search_args();
        let mut min_offset = 0;
        loop {
            args.key = SearchKey::items(tree, objectid, kind, min_offset);
            ioctl::tree_search(self.fd(), &mut args)?;
            let n = args.key.nr_items;
            if n == 0 {
                return Ok(());
            }
            let mut at = 0;
            let mut last = 0;
            for _ in 0..n {
                // struct btrfs_ioctl_search_header, in the CPU's byte order.
                let h = args.buf.get(at..at + SEARCH_HEADER).ok_or_else(bad)?;
                let ne64 = |o: usize| h.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes);
                let ne32 = |o: usize| h.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
                let (item_obj, offset, item_kind, len) = (ne64(8), ne64(16), ne32(24), ne32(28));
                let (Some(item_obj), Some(offset), Some(item_kind), Some(len)) =
                    (item_obj, offset, item_kind, len)
                else {
                    return Err(bad());
                };
                let start = at + SEARCH_HEADER;
                let end = start.checked_add(len as usize).filter(|&e| e <= SEARCH_BUF).ok_or_else(bad)?;
                if item_obj == objectid && item_kind == kind {
                    f(offset, &args.buf[start..end]).ok_or_else(bad)?;
                }
                last = offset;
                at = end;
            }
            match last.checked_add(1) {
                Some(next) => min_offset = next,
                None => return Ok(()),
            }
        }
    }
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_le_bytes)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_le_bytes)
}

/// A lookup that found nothing is an answer, not an error.
fn not_there(e: io::Error, blocked: &'static str) -> io::Result<Entry> {
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOENT) => Ok(Entry::Missing),
        // A path component is a file or a symlink, or would leave the top level.
        Some(Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => Ok(Entry::Other(blocked)),
        _ => Err(e),
    }
}

/// The new mount API: a mount that is never attached anywhere.
fn detached(device: &Path) -> io::Result<TopLevel> {
    let fs = rustix::mount::fsopen("btrfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(io)?;
    let configured = rustix::mount::fsconfig_set_string(&fs, "source", device)
        .and_then(|()| rustix::mount::fsconfig_set_string(&fs, "subvolid", "5"))
        .and_then(|()| rustix::mount::fsconfig_create(&fs));
    if let Err(e) = configured {
        return Err(with_kernel_message(&fs, e));
    }
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(io)?;
    // fsmount gives an O_PATH descriptor; ioctls want an open directory.
    let fd =
        rustix::fs::openat(&mnt, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io)?;
    Ok(TopLevel { fd })
}

/// The kernel explains a refused fsconfig in messages read from the context descriptor.
fn with_kernel_message(fs: &OwnedFd, e: Errno) -> io::Error {
    let mut buf = [0u8; 512];
    let mut said = Vec::new();
    while let Ok(n @ 1..) = rustix::io::read(fs, &mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned());
    }
    if said.is_empty() && e == Errno::INVAL {
        // btrfs tells the kernel log only; name the usual causes.
        io::Error::new(
            io(e).kind(),
            format!("{e}: no btrfs there, or one of its devices is missing (see dmesg)"),
        )
    } else if said.is_empty() {
        io(e)
    } else {
        io::Error::new(io(e).kind(), format!("{e} ({})", said.join("; ")))
    }
}

/// For kernels without fsmount (before 5.2): a mount on a fresh directory,
/// detached at once; the open descriptor keeps it usable.
fn lazily_unmounted(device: &Path) -> io::Result<TopLevel> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lethe-btrfs-top.{}.{n}", std::process::id()));
    std::fs::create_dir(&dir)?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mounted = rustix::mount::mount(device, &dir, "btrfs", flags, Some(c"subvolid=5")).map_err(io);
    let opened = mounted.and_then(|()| {
        let fd = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io);
        let _ = rustix::mount::unmount(&dir, UnmountFlags::DETACH);
        fd
    });
    let _ = std::fs::remove_dir(&dir);
    Ok(TopLevel { fd: opened? })
}
