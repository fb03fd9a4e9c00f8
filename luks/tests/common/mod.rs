//! Test helpers shared by the luks integration tests: the cryptsetup corpus (its manifest and
//! unpacked images) and scratch directories.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cryptsetup conformance corpus: `$LETHE_CRYPTSETUP_CORPUS`, or `shared/compat/cryptsetup`
/// beside the workspace.
pub fn corpus_dir() -> PathBuf {
    match std::env::var_os("LETHE_CRYPTSETUP_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/compat/cryptsetup"),
    }
}

/// Unpacks a corpus file into `into` and returns the unpacked path: a `.tar.xz` member with
/// `tar -xJf` (at `into/<member>`), a plain `.xz` with `xz -dc` (at `into/<name without .xz>`).
pub fn unpack(file: &str, member: Option<&str>, into: &Path) -> PathBuf {
    let src = corpus_dir().join(file);
    std::fs::create_dir_all(into).unwrap();
    if let Some(member) = member {
        let out = Command::new("tar").arg("-xJf").arg(&src).arg("-C").arg(into).arg(member).output();
        let out = out.unwrap_or_else(|e| panic!("tar for {file}: {e}"));
        assert!(
            out.status.success(),
            "tar -xJf {} {member}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        return into.join(member);
    }
    let name = Path::new(file).file_name().unwrap().to_string_lossy();
    let dest = into.join(name.strip_suffix(".xz").unwrap_or(&name));
    let out =
        Command::new("xz").arg("-dc").arg(&src).output().unwrap_or_else(|e| panic!("xz for {file}: {e}"));
    assert!(out.status.success(), "xz -dc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    std::fs::write(&dest, out.stdout).unwrap();
    dest
}

/// One line of MANIFEST.tsv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLine {
    /// 1-based line number in MANIFEST.tsv.
    pub line: usize,
    pub file: String,
    /// The member of a `.tar.xz`.
    pub member: Option<String>,
    /// `unlock` or `load`.
    pub check: String,
    /// `passphrase` or `keyfile`; `None` for `-`.
    pub secret_kind: Option<String>,
    /// The passphrase, or `ARCHIVE:MEMBER` of the key file; `None` for `-`.
    pub secret: Option<String>,
    pub expect: String,
}

impl ManifestLine {
    /// `file` or `file:member`, for messages.
    pub fn name(&self) -> String {
        match &self.member {
            Some(m) => format!("{}:{m}", self.file),
            None => self.file.clone(),
        }
    }
}

/// The lines of MANIFEST.tsv, comments skipped.
pub fn manifest() -> Vec<ManifestLine> {
    let path = corpus_dir().join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dash = |s: &str| (s != "-").then(|| s.to_owned());
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 6, "MANIFEST.tsv line {}: 6 tab-separated columns expected: {l:?}", i + 1);
            ManifestLine {
                line: i + 1,
                file: cols[0].to_owned(),
                member: dash(cols[1]),
                check: cols[2].to_owned(),
                secret_kind: dash(cols[3]),
                secret: dash(cols[4]),
                expect: cols[5].to_owned(),
            }
        })
        .collect()
}

/// A fresh, empty directory for one test (removed first if an earlier run left it).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lethe-luks-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
