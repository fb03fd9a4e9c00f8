//! The comparison point for the benchmark: Debian's own initramfs (initramfs-tools, as linux-image-amd64 installs it) booting the same kernel onto an ext4 root found by label, timed by the same stage 2.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::expect::Expectations;
use crate::harness::Harness;
use crate::images::{self, Staging};
use crate::qemu::Boot;

/// Where stage 2 lies on the root image (init= for Debian's initramfs).
const STAGE2: &str = "/lethe-stage2";

/// A root image and Debian's initramfs for the harness's kernel.
#[derive(Debug)]
pub struct DebianMachine {
    pub initrd: PathBuf,
    pub initramfs_bytes: u64,
    pub disk: PathBuf,
}

impl DebianMachine {
    /// The root image (the directories initramfs-tools moves its mounts
    /// to, and stage 2 checking nothing but counting boots) in `dir`, and
    /// /boot/initrd.img-VERSION.
    pub fn prepare(h: &Harness, dir: &Path) -> Result<DebianMachine> {
        let initrd = PathBuf::from(format!("/boot/initrd.img-{}", h.kernel.version));
        let initramfs_bytes = std::fs::metadata(&initrd)
            .map_err(|e| {
                Error::Setup(format!(
                    "Debian's initramfs {} is missing ({e}): reinstall linux-image-{} with initramfs-tools",
                    initrd.display(),
                    h.kernel.version
                ))
            })?
            .len();
        let expect = Expectations {
            mounts: Vec::new(),
            paths: Vec::new(),
            boot_counter: "/lethe-boot-count".into(),
            machine_id: None,
            user_file: None,
        };
        let expect = serde_json::to_vec(&expect)
            .map_err(|e| Error::Setup(format!("cannot serialize the expectations: {e}")))?;
        let staging = Staging::new(&dir.join("debian-root-staging"))?;
        for d in ["/dev", "/proc", "/sys", "/run"] {
            staging.dir(d, 0, 0, 0o755)?;
        }
        staging.copy(&h.bin.stage2, STAGE2, 0o555)?.file(&format!("{STAGE2}.json"), &expect, 0, 0, 0o444)?;
        let disk = dir.join("debian-root.img");
        images::mkfs_ext4("debianroot", &staging, &disk, 32)?;
        Ok(DebianMachine { initrd, initramfs_bytes, disk })
    }

    /// One boot: `root=LABEL=debianroot rw init=/lethe-stage2`.
    pub fn boot(&self, h: &Harness, label: &str) -> Result<Boot> {
        h.boot_cmdline(
            label,
            &self.initrd,
            std::slice::from_ref(&self.disk),
            &format!("console=ttyS0 root=LABEL=debianroot rw init={STAGE2} panic=-1"),
            None,
        )
    }
}
