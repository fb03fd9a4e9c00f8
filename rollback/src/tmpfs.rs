//! A fresh tmpfs root: mounted with the configured size and mode (0755 unless configured: a 1777 root breaks sshd).

use std::fmt;
use std::path::{Path, PathBuf};

use persist_bind::mode::Mode;
use rustix::mount::{MountFlags, mount};
use serde::Serialize;

use crate::config::TmpfsSize;
use crate::{Kept, Mode as RunMode, Outcome};

/// What to mount where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: PathBuf,
    pub size: Option<TmpfsSize>,
    pub mode: Option<Mode>,
}

/// The one step: mount a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// In JSON as [`persist_bind::json::escape`] writes it.
    #[serde(serialize_with = "persist_bind::json::path")]
    pub target: PathBuf,
    /// The mount options passed to the kernel.
    pub options: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mount tmpfs at {} ({})", self.target.display(), self.options)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot mount a tmpfs at {}: {source}", target.display())]
    Mount { target: PathBuf, source: std::io::Error },
}

impl Options {
    /// The kernel's option string: `mode=0755[,size=2G]`.
    pub fn mount_options(&self) -> String {
        let mut o = format!("mode={}", self.mode.unwrap_or(Mode::DEFAULT_DIR));
        if let Some(s) = &self.size {
            o.push_str(",size=");
            o.push_str(s.as_str());
        }
        o
    }
}

/// Mounts the tmpfs (or, with [`RunMode::DryRun`], says it would). A target
/// that is missing, not a directory, or a mount point already is left alone.
pub fn rollback(opts: &Options, mode: RunMode) -> Result<Outcome<Step>, Error> {
    let step = Step { target: opts.target.clone(), options: opts.mount_options() };
    match std::fs::symlink_metadata(&opts.target) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Ok(Outcome::Kept(Kept::new(format!("{} is not a directory", opts.target.display()))));
        }
        Err(e) => return Ok(Outcome::Kept(Kept::new(format!("{}: {e}", opts.target.display())))),
    }
    if is_mount_point(&opts.target) {
        return Ok(Outcome::Kept(Kept::new(format!(
            "{} is a mount point already; a tmpfs over it would hide it",
            opts.target.display()
        ))));
    }
    if mode == RunMode::DryRun {
        return Ok(Outcome::Planned(vec![step]));
    }
    // Validated digits and suffixes: no NUL can be in there.
    let data = std::ffi::CString::new(step.options.clone()).map_err(|e| Error::Mount {
        target: opts.target.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    mount("tmpfs", &opts.target, "tmpfs", MountFlags::empty(), Some(data.as_c_str()))
        .map_err(|e| Error::Mount { target: opts.target.clone(), source: e.into() })?;
    Ok(Outcome::Reset(vec![step]))
}

/// Whether `path` is where something is mounted (its parent is on another
/// mount, or the same device but it is a bind or the root).
fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(&persist_bind::utab::unmangle(mp)) == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_0755_and_carry_the_size() {
        let o = Options { target: "/sysroot".into(), size: None, mode: None };
        assert_eq!(o.mount_options(), "mode=0755");
        let o = Options {
            target: "/sysroot".into(),
            size: Some(TmpfsSize::parse("2G").unwrap()),
            mode: Some(Mode::from_bits(0o700).unwrap()),
        };
        assert_eq!(o.mount_options(), "mode=0700,size=2G");
    }

    #[test]
    fn a_missing_target_keeps_everything() {
        let o = Options { target: "/nonexistent/lethe-root".into(), size: None, mode: None };
        assert!(matches!(rollback(&o, RunMode::Apply).unwrap(), Outcome::Kept(_)));
    }

    #[test]
    fn the_root_directory_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }
}
