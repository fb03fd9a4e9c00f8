//! What the host provides: the Debian kernel and its modules, QEMU and its accelerator, the workspace, and the per-boot timeout.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// A kernel image with its module tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub version: String,
    /// /boot/vmlinuz-VERSION.
    pub image: PathBuf,
    /// /lib/modules/VERSION.
    pub modules: PathBuf,
}

impl Kernel {
    /// `LETHE_VM_KERNEL` (a vmlinuz path; its modules are
    /// `LETHE_VM_MODULES` or /lib/modules/VERSION), else the newest
    /// /boot/vmlinuz-* whose /lib/modules/VERSION/modules.dep exists.
    pub fn find() -> Result<Kernel> {
        if let Some(image) = std::env::var_os("LETHE_VM_KERNEL").map(PathBuf::from) {
            let version = image
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned);
            let modules = match (std::env::var_os("LETHE_VM_MODULES"), &version) {
                (Some(m), _) => PathBuf::from(m),
                (None, Some(v)) => Path::new("/lib/modules").join(v),
                (None, None) => {
                    return Err(Error::Setup(format!(
                        "LETHE_VM_KERNEL={} is not named vmlinuz-VERSION: set LETHE_VM_MODULES to its module directory",
                        image.display()
                    )));
                }
            };
            let version = version.unwrap_or_else(|| {
                modules.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            });
            return Kernel { version, image, modules }.checked();
        }
        let mut found: Vec<Kernel> = std::fs::read_dir("/boot")
            .map_err(|e| {
                Error::Setup(format!(
                    "cannot list /boot ({e}): install linux-image-amd64 (scripts/install-deps.sh)"
                ))
            })?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let version = name.strip_prefix("vmlinuz-")?.to_owned();
                let modules = Path::new("/lib/modules").join(&version);
                modules.join("modules.dep").is_file().then(|| Kernel {
                    image: Path::new("/boot").join(&name),
                    modules,
                    version,
                })
            })
            .collect();
        found.sort_by(|a, b| initrd_tool::kmod::release_cmp(&a.version, &b.version));
        found.pop().ok_or_else(|| {
            Error::Setup(
                "no /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep: install linux-image-amd64 (scripts/install-deps.sh) or set LETHE_VM_KERNEL".into(),
            )
        })
    }

    fn checked(self) -> Result<Kernel> {
        if !self.image.is_file() {
            return Err(Error::Setup(format!("kernel image {} does not exist", self.image.display())));
        }
        if !self.modules.join("modules.dep").is_file() {
            return Err(Error::Setup(format!("{} has no modules.dep", self.modules.display())));
        }
        Ok(self)
    }
}

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Emulation: slow but works everywhere (the default).
    Tcg,
    /// Hardware virtualization (`LETHE_VM_ACCEL=kvm`).
    Kvm,
}

impl Accel {
    /// From `LETHE_VM_ACCEL` (`tcg`, the default, or `kvm`).
    pub fn from_env() -> Result<Accel> {
        match std::env::var("LETHE_VM_ACCEL").as_deref() {
            Err(_) | Ok("" | "tcg") => Ok(Accel::Tcg),
            Ok("kvm") => Ok(Accel::Kvm),
            Ok(other) => Err(Error::Setup(format!("LETHE_VM_ACCEL={other:?}: expected tcg or kvm"))),
        }
    }

    /// QEMU's arguments for it.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Accel::Tcg => &["-accel", "tcg", "-cpu", "max"],
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        })
    }
}

/// The longest one boot may take before QEMU is killed:
/// `LETHE_VM_TIMEOUT` seconds, 120 by default.
pub fn boot_timeout() -> Result<Duration> {
    match std::env::var("LETHE_VM_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(120)),
        Ok(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| Error::Setup(format!("LETHE_VM_TIMEOUT={s:?}: expected a number of seconds"))),
    }
}

/// The workspace root (this crate's parent directory).
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// QEMU's binary: `LETHE_VM_QEMU` or qemu-system-x86_64 on the PATH.
pub fn qemu_binary() -> PathBuf {
    std::env::var_os("LETHE_VM_QEMU").map_or_else(|| PathBuf::from("qemu-system-x86_64"), PathBuf::from)
}
