//! Dropping every privilege of the network-facing server: an empty root, user and group nobody, no capability in any set, no_new_privs.
//!
//! Called once the host keys are read and the ports are bound, while the process has one
//! thread (the credential calls below change the calling thread only).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use caps::CapSet;
use rustix::process::{Gid, Uid};

/// The empty directory the server is locked into.
pub const EMPTY_DIR: &str = "/run/lethe/ssh-empty";
/// nobody / nogroup.
pub const NOBODY: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum PrivsepError {
    #[error("{}: {source}", path.display())]
    EmptyDir { path: PathBuf, source: std::io::Error },
    #[error("{}: must be an empty directory owned by root and writable by nobody else", path.display())]
    NotEmpty { path: PathBuf },
    #[error("cannot {what}: {source}")]
    Call { what: &'static str, source: std::io::Error },
    #[error("cannot drop capabilities ({what}): {source}")]
    Caps { what: &'static str, source: caps::errors::CapsError },
    #[error("privileges still held after dropping them: {0}")]
    Kept(String),
}

/// Locks the process into [`EMPTY_DIR`] as nobody with no capabilities.
pub fn drop_privileges() -> Result<(), PrivsepError> {
    drop_privileges_into(Path::new(EMPTY_DIR))
}

fn call<T>(what: &'static str, r: rustix::io::Result<T>) -> Result<T, PrivsepError> {
    r.map_err(|e| PrivsepError::Call { what, source: e.into() })
}

pub fn drop_privileges_into(empty: &Path) -> Result<(), PrivsepError> {
    make_empty_dir(empty)?;
    call("chroot into the empty directory", rustix::process::chroot(empty))?;
    call("chdir /", rustix::process::chdir("/"))?;
    // The bounding set first: dropping from it needs CAP_SETPCAP, gone after the uid change.
    caps::clear(None, CapSet::Bounding)
        .map_err(|source| PrivsepError::Caps { what: "bounding set", source })?;
    call("setgroups []", rustix::thread::set_thread_groups(&[]))?;
    let gid = Gid::from_raw(NOBODY);
    call("setresgid nobody", rustix::thread::set_thread_res_gid(gid, gid, gid))?;
    let uid = Uid::from_raw(NOBODY);
    call("setresuid nobody", rustix::thread::set_thread_res_uid(uid, uid, uid))?;
    for (set, what) in [
        (CapSet::Ambient, "ambient set"),
        (CapSet::Inheritable, "inheritable set"),
        (CapSet::Effective, "effective set"),
        (CapSet::Permitted, "permitted set"),
    ] {
        caps::clear(None, set).map_err(|source| PrivsepError::Caps { what, source })?;
    }
    call("set no_new_privs", rustix::thread::set_no_new_privs(true))?;
    check()
}

/// Creates (or checks) the empty root-owned directory, mode 0555.
fn make_empty_dir(path: &Path) -> Result<(), PrivsepError> {
    let io = |source| PrivsepError::EmptyDir { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(io)?;
    }
    match fs::DirBuilder::new().mode(0o555).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o555)).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = fs::symlink_metadata(path).map_err(io)?;
    let empty = fs::read_dir(path).map_err(io)?.next().is_none();
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 || !empty {
        return Err(PrivsepError::NotEmpty { path: path.to_owned() });
    }
    Ok(())
}

/// Reads the credentials back: nothing may be left.
fn check() -> Result<(), PrivsepError> {
    let mut kept = Vec::new();
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient, CapSet::Bounding]
    {
        match caps::read(None, set) {
            Ok(c) if c.is_empty() => {}
            Ok(c) => kept.push(format!("{set:?} {c:?}")),
            Err(e) => kept.push(format!("{set:?} unreadable: {e}")),
        }
    }
    if rustix::process::getuid().as_raw() != NOBODY || rustix::process::geteuid().as_raw() != NOBODY {
        kept.push("uid".into());
    }
    if rustix::process::getgid().as_raw() != NOBODY || rustix::process::getegid().as_raw() != NOBODY {
        kept.push("gid".into());
    }
    if kept.is_empty() { Ok(()) } else { Err(PrivsepError::Kept(kept.join(", "))) }
}
