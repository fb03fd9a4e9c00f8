//! Key files for LUKS: in the initramfs, a raw region of a block device, or a file on a removable device mounted read-only while it is read.
//!
//! Like NixOS's `boot.initrd.luks.devices.<name>.keyFile`: a path in the initramfs, or a /dev
//! path whose bytes are the key (a raw region of a USB stick, waited for up to the timeout);
//! and like systemd's `keyfile:device` form, a file on a device named by UUID=, LABEL=,
//! PARTUUID= or path, whose file system is detected, mounted read-only on a fresh directory
//! under [`KEYDEV_DIR`], read, and unmounted again whatever happened.

pub mod mount;
pub mod region;

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use luks::secret::Secret;

use crate::devices::{self, Roots, WaitError, Wanted};
use crate::devspec::DeviceSpec;
use crate::probe::FsKind;

pub use self::mount::KEYDEV_DIR;
pub use self::region::{Region, RegionError, read_region, read_region_stream};

/// One key file: where it is, which bytes are the key, how long to wait for its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileSpec {
    /// Absolute: in the initramfs, or (with `device`) from the device's root.
    pub path: PathBuf,
    /// The device holding the file system the file is on.
    pub device: Option<DeviceSpec>,
    pub region: Region,
    /// How long to wait for `device` (or for a /dev `path`) to appear.
    pub timeout: Duration,
}

/// Why no key came from a key file. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {}: the path must be absolute", path.display())]
    NotAbsolute { path: PathBuf },
    #[error("key file {}: `..` is not allowed in the path", path.display())]
    DotDot { path: PathBuf },
    /// The device (or the /dev node the key is on) did not appear: fall back to the passphrase.
    #[error("key device {device} did not appear within {} s", waited.as_secs_f32())]
    DeviceNotFound { device: DeviceSpec, waited: Duration },
    #[error("key device {device}: {source}")]
    DeviceLookup {
        device: DeviceSpec,
        #[source]
        source: WaitError,
    },
    #[error("key device {device} ({}): {what}, not a file system lethe mounts", node.display())]
    NotMountable { device: DeviceSpec, node: PathBuf, what: String },
    #[error("key device {device}: cannot create the mount point {}: {source}", dir.display())]
    MountDir {
        device: DeviceSpec,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount key device {device} ({}, {fs_type}) read-only: {source}", node.display())]
    Mount {
        device: DeviceSpec,
        node: PathBuf,
        fs_type: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("key file {}{}: leads out of the device (through `..` or a symlink)", path.display(), On(device))]
    Escapes { path: PathBuf, device: Option<DeviceSpec> },
    #[error("cannot open key file {}{}: {source}", path.display(), On(device))]
    Open {
        path: PathBuf,
        device: Option<DeviceSpec>,
        #[source]
        source: io::Error,
    },
    #[error("key file {}{} is not a regular file or block device", path.display(), On(device))]
    NotAFile { path: PathBuf, device: Option<DeviceSpec> },
    #[error("{}{source}", Prefix(device))]
    Region {
        device: Option<DeviceSpec>,
        #[source]
        source: RegionError,
    },
}

/// ` on LABEL=KEYS`, or nothing for a file in the initramfs.
struct On<'a>(&'a Option<DeviceSpec>);

impl std::fmt::Display for On<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, " on {d}"),
            None => Ok(()),
        }
    }
}

/// `key device LABEL=KEYS: `, or nothing for a file in the initramfs.
struct Prefix<'a>(&'a Option<DeviceSpec>);

impl std::fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, "key device {d}: "),
            None => Ok(()),
        }
    }
}

/// Reads the key `spec` names; devices are looked for under `roots`.
pub fn fetch(spec: &KeyFileSpec, roots: &Roots) -> Result<Secret, KeyFileError> {
    fetch_under(spec, roots, Path::new(KEYDEV_DIR))
}

/// [`fetch`], mounting key devices under `mount_base` instead of [`KEYDEV_DIR`].
pub fn fetch_under(spec: &KeyFileSpec, roots: &Roots, mount_base: &Path) -> Result<Secret, KeyFileError> {
    let path = &spec.path;
    if !path.is_absolute() {
        return Err(KeyFileError::NotAbsolute { path: path.clone() });
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(KeyFileError::DotDot { path: path.clone() });
    }
    match &spec.device {
        Some(device) => from_device(spec, device, roots, mount_base),
        None => from_initramfs(spec, roots),
    }
}

/// A file in the initramfs, or a /dev node (waited for: a stick may still be coming up).
fn from_initramfs(spec: &KeyFileSpec, roots: &Roots) -> Result<Secret, KeyFileError> {
    let path = &spec.path;
    let node = match path.to_str().and_then(|p| p.parse::<DeviceSpec>().ok()) {
        Some(dev @ DeviceSpec::Path(_)) => wait(&dev, spec.timeout, roots)?.path,
        _ => path.clone(),
    };
    let open_err = |source| KeyFileError::Open { path: path.clone(), device: None, source };
    // NONBLOCK: a FIFO at the path must not hang stage 1 (it is refused just below).
    let flags = rustix::fs::OFlags::RDONLY
        | rustix::fs::OFlags::CLOEXEC
        | rustix::fs::OFlags::NOCTTY
        | rustix::fs::OFlags::NONBLOCK;
    let fd = rustix::fs::open(&node, flags, rustix::fs::Mode::empty()).map_err(|e| open_err(e.into()))?;
    let mut file = File::from(fd);
    let ft = file.metadata().map_err(open_err)?.file_type();
    if !(ft.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&ft)) {
        return Err(KeyFileError::NotAFile { path: path.clone(), device: None });
    }
    read_region(&mut file, spec.region, path).map_err(|source| KeyFileError::Region { device: None, source })
}

/// A file on a device: found, mounted read-only, read, and always unmounted.
fn from_device(
    spec: &KeyFileSpec,
    device: &DeviceSpec,
    roots: &Roots,
    base: &Path,
) -> Result<Secret, KeyFileError> {
    let found = wait(device, spec.timeout, roots)?;
    let fs_types = match found.probe.as_ref().map(|p| p.kind) {
        Some(kind) => mount_types(kind),
        None => &[],
    };
    if fs_types.is_empty() {
        return Err(KeyFileError::NotMountable {
            device: device.clone(),
            node: found.path.clone(),
            what: found.probe.as_ref().map_or_else(|| "no file system".to_owned(), |p| p.to_string()),
        });
    }
    let km = mount::KeyMount::mount(&found.path, fs_types, base).map_err(|f| match f {
        mount::MountFailure::Dir { dir, source } => {
            KeyFileError::MountDir { device: device.clone(), dir, source }
        }
        mount::MountFailure::Mount { fs_type, source } => {
            KeyFileError::Mount { device: device.clone(), node: found.path.clone(), fs_type, source }
        }
    })?;
    let path = &spec.path;
    let on = Some(device.clone());
    let mut file = km.open(path).map_err(|source| match source.raw_os_error() {
        Some(libc::EXDEV) => KeyFileError::Escapes { path: path.clone(), device: on.clone() },
        _ => KeyFileError::Open { path: path.clone(), device: on.clone(), source },
    })?;
    let meta = file.metadata().map_err(|source| KeyFileError::Open {
        path: path.clone(),
        device: on.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile { path: path.clone(), device: on });
    }
    let key = read_region(&mut file, spec.region, path)
        .map_err(|source| KeyFileError::Region { device: on, source });
    // Closed before the unmount (dropping `km`), which would otherwise find the device busy.
    drop(file);
    drop(km);
    key
}

/// The file-system types to mount a probed device as, in order; none for what is no file system.
fn mount_types(kind: FsKind) -> &'static [&'static str] {
    match kind {
        FsKind::Vfat => &["vfat"],
        FsKind::Ext4 | FsKind::Ext4Dev => &["ext4"],
        FsKind::Ext3 => &["ext3", "ext4"],
        FsKind::Ext2 => &["ext2", "ext4"],
        FsKind::Btrfs => &["btrfs"],
        FsKind::Luks1 | FsKind::Luks2 | FsKind::ZfsMember => &[],
    }
}

fn wait(device: &DeviceSpec, timeout: Duration, roots: &Roots) -> Result<devices::Found, KeyFileError> {
    let wanted = [Wanted { spec: device.clone(), timeout }];
    match devices::wait_for(&wanted, roots).pop() {
        Some(Ok(found)) => Ok(found),
        Some(Err(WaitError::NotFound { waited, .. })) => {
            Err(KeyFileError::DeviceNotFound { device: device.clone(), waited })
        }
        Some(Err(source)) => Err(KeyFileError::DeviceLookup { device: device.clone(), source }),
        // wait_for answers once per wanted device; treat a missing answer as not found.
        None => Err(KeyFileError::DeviceNotFound { device: device.clone(), waited: timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_system_the_probe_knows_has_a_mount_type_or_is_refused() {
        assert_eq!(mount_types(FsKind::Vfat), ["vfat"]);
        assert_eq!(mount_types(FsKind::Ext2), ["ext2", "ext4"]);
        assert!(mount_types(FsKind::Luks2).is_empty());
        assert!(mount_types(FsKind::ZfsMember).is_empty());
    }

    #[test]
    fn paths_must_be_absolute_without_dot_dot() {
        let spec = |p: &str| KeyFileSpec {
            path: PathBuf::from(p),
            device: Some(DeviceSpec::Label("KEYS".into())),
            region: Region::default(),
            timeout: Duration::ZERO,
        };
        let roots = Roots::system();
        let err = fetch(&spec("keys/root.key"), &roots).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(err, Err("key file keys/root.key: the path must be absolute".into()));
        let err = fetch(&spec("/keys/../../etc/shadow"), &roots).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(err, Err("key file /keys/../../etc/shadow: `..` is not allowed in the path".into()));
    }
}
