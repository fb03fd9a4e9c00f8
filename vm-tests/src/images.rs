//! Disk images: a staging tree with exact owners and modes, turned into an ext4 image by `mkfs.ext4 -d` (no loop device, no mount), and image digests.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{self, Context, Error, Result};

/// A directory whose contents become a file system's root.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// An empty staging tree at `dir` (whatever was there is removed);
    /// its root becomes the file system's root, root:root 0755.
    pub fn new(dir: &Path) -> Result<Staging> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).context(|| error::at(dir, "cannot remove"))?;
        }
        std::fs::create_dir_all(dir).context(|| error::at(dir, "cannot create"))?;
        let s = Staging { dir: dir.to_path_buf() };
        s.own(dir, 0, 0, 0o755)?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn beneath(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }

    /// A directory (missing parents root:root 0755).
    pub fn dir(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<&Staging> {
        let p = self.beneath(path);
        self.parents(&p)?;
        if !p.is_dir() {
            std::fs::create_dir(&p).context(|| error::at(&p, "cannot create"))?;
        }
        self.own(&p, uid, gid, mode)?;
        Ok(self)
    }

    /// A file with `content`.
    pub fn file(&self, path: &str, content: &[u8], uid: u32, gid: u32, mode: u32) -> Result<&Staging> {
        let p = self.beneath(path);
        self.parents(&p)?;
        std::fs::write(&p, content).context(|| error::at(&p, "cannot write"))?;
        self.own(&p, uid, gid, mode)?;
        Ok(self)
    }

    /// A copy of a host file, root-owned.
    pub fn copy(&self, src: &Path, path: &str, mode: u32) -> Result<&Staging> {
        let p = self.beneath(path);
        self.parents(&p)?;
        std::fs::copy(src, &p).context(|| format!("cannot copy {} to {}", src.display(), p.display()))?;
        self.own(&p, 0, 0, mode)?;
        Ok(self)
    }

    fn parents(&self, p: &Path) -> Result<()> {
        let Some(parent) = p.parent() else { return Ok(()) };
        let mut missing = Vec::new();
        let mut d = parent;
        while !d.exists() && d.starts_with(&self.dir) {
            missing.push(d.to_path_buf());
            d = d.parent().unwrap_or(&self.dir);
        }
        for m in missing.iter().rev() {
            std::fs::create_dir(m).context(|| error::at(m, "cannot create"))?;
            self.own(m, 0, 0, 0o755)?;
        }
        Ok(())
    }

    fn own(&self, p: &Path, uid: u32, gid: u32, mode: u32) -> Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
            .context(|| format!("cannot chown {} to {uid}:{gid} (the harness runs as root)", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .context(|| format!("cannot chmod {} to {mode:04o}", p.display()))
    }
}

/// `mkfs.ext4 -q -L LABEL -d STAGING IMAGE SIZEm`: a fresh image holding
/// the staging tree with its owners and modes.
pub fn mkfs_ext4(label: &str, staging: &Staging, image: &Path, size_mib: u32) -> Result<()> {
    if image.exists() {
        std::fs::remove_file(image).context(|| error::at(image, "cannot remove"))?;
    }
    error::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-L", label, "-d"])
            .arg(staging.path())
            .arg(image)
            .arg(format!("{size_mib}M")),
    )
    .map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::Setup("mkfs.ext4 not found: install e2fsprogs (scripts/install-deps.sh)".into())
        }
        e => e,
    })?;
    Ok(())
}

/// The SHA-256 of a file, in hex.
pub fn sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).context(|| error::at(path, "cannot open"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).context(|| error::at(path, "cannot read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn staging_sets_owners_and_modes_with_default_parents() {
        if !rustix::process::geteuid().is_root() {
            // With CI=true a missing capability is a failure, not a skip.
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "needs root to chown");
            eprintln!("skipped: needs root to chown");
            return;
        }
        let d = std::env::temp_dir().join(format!("lethe-staging-test-{}", std::process::id()));
        let s = Staging::new(&d).unwrap();
        s.dir("/home/alice/.config", 1000, 100, 0o700).unwrap();
        s.file("/etc/ssh/key", b"k", 0, 0, 0o600).unwrap();
        let md = |p: &str| std::fs::metadata(d.join(p)).unwrap();
        assert_eq!((md("home/alice/.config").uid(), md("home/alice/.config").mode() & 0o7777), (1000, 0o700));
        assert_eq!((md("home/alice").uid(), md("home/alice").mode() & 0o7777), (0, 0o755));
        assert_eq!(md("etc/ssh/key").mode() & 0o7777, 0o600);
        assert_eq!(
            sha256(&d.join("etc/ssh/key")).unwrap(),
            "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
