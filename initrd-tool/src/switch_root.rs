//! Handing over to stage 2: move the API mounts into the new root, free the initramfs, make the new root `/`, exec init.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// The ramfs/tmpfs an initramfs is unpacked into.
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Why switch_root stopped before exec (it returns only on failure).
#[derive(Debug, thiserror::Error)]
pub enum SwitchRootError {
    #[error("init {init:?} is not an executable file in the new root {root}: {reason}")]
    NoInit { init: PathBuf, root: String, reason: String },
    #[error("{what}: {source}")]
    Sys { what: String, source: rustix::io::Errno },
    #[error("exec {}: {source}", init.display())]
    Exec { init: PathBuf, source: std::io::Error },
}

fn sys(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> SwitchRootError {
    let what = what.into();
    move |source| SwitchRootError::Sys { what, source }
}

/// Switches to `new_root` and execs `init` there with `args`; returns only
/// on failure. Checks `init` before anything is changed, so a wrong init=
/// leaves stage 1 intact for a retry.
pub fn switch_root(new_root: &Path, init: &Path, args: &[OsString]) -> SwitchRootError {
    match run(new_root, init, args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn run(new_root: &Path, init: &Path, args: &[OsString]) -> Result<std::convert::Infallible, SwitchRootError> {
    check_init(new_root, init)?;
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let target = new_root.join(&api[1..]);
        if !target.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| SwitchRootError::Sys {
                what: format!("mkdir {}", target.display()),
                source: rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
            })?;
        }
        rustix::mount::mount_move(api, &target)
            .map_err(sys(format!("move {api} to {}", target.display())))?;
    }
    free_initramfs(new_root);
    rustix::process::chdir(new_root).map_err(sys(format!("chdir {}", new_root.display())))?;
    rustix::mount::mount_move(".", "/").map_err(sys(format!("move {} to /", new_root.display())))?;
    rustix::process::chroot(".").map_err(sys("chroot"))?;
    rustix::process::chdir("/").map_err(sys("chdir /"))?;
    let err = std::process::Command::new(init).arg0(init).args(args).exec();
    Err(SwitchRootError::Exec { init: init.to_owned(), source: err })
}

/// `init` must resolve (absolute links inside the new root, as after
/// chroot) to an executable regular file.
fn check_init(root: &Path, init: &Path) -> Result<(), SwitchRootError> {
    let no = |reason: String| SwitchRootError::NoInit {
        init: init.into(),
        root: root.display().to_string(),
        reason,
    };
    let Some(relative) = init.as_os_str().as_bytes().strip_prefix(b"/") else {
        return Err(no("init= must be an absolute path".into()));
    };
    let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| no(e.to_string()))?;
    let fd = rustix::fs::openat2(
        &dir,
        OsStr::from_bytes(relative),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .map_err(|e| no(e.to_string()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| no(e.to_string()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(no("not a regular file".into()));
    }
    if st.st_mode & 0o111 == 0 {
        return Err(no("not executable".into()));
    }
    Ok(())
}

/// Deletes the initramfs's files (they would pin memory forever), only on
/// the initramfs's own ramfs/tmpfs and never across a mount point.
fn free_initramfs(new_root: &Path) {
    let Ok(fs) = rustix::fs::statfs("/") else { return };
    let magic = fs.f_type;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return; // not an initramfs: never delete a real disk's files
    }
    let Ok(root_dev) = rustix::fs::stat("/").map(|s| s.st_dev) else { return };
    let Ok(dir) = rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    else {
        return;
    };
    let keep = new_root.file_name().unwrap_or(OsStr::new(""));
    remove_children(&dir, root_dev, Some(keep), 0);
}

fn remove_children(dir: &std::os::fd::OwnedFd, dev: u64, keep: Option<&OsStr>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Ok(dup) = rustix::io::fcntl_dupfd_cloexec(dir, 0) else { return };
    let Ok(mut entries) = rustix::fs::Dir::new(dup) else { return };
    let mut names = Vec::new();
    while let Some(Ok(e)) = entries.read() {
        let n = e.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    for name in names {
        let os = OsStr::from_bytes(&name);
        if keep == Some(os) {
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        if st.st_dev != dev {
            continue; // a mount point: not ours to empty
        }
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            if let Ok(sub) = rustix::fs::openat(
                dir,
                os,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                remove_children(&sub, dev, None, depth + 1);
            }
            let _ = rustix::fs::unlinkat(dir, os, AtFlags::REMOVEDIR);
        } else {
            let _ = rustix::fs::unlinkat(dir, os, AtFlags::empty());
        }
    }
}
