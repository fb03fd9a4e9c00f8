//! The `rollback` and `pools` sections of /etc/lethe/config.json, and the validated names they hold.
//!
//! ```json
//! "rollback": { "zfs": { "dataset": "rpool/local/root", "snapshot": "blank" } }
//! "rollback": { "btrfs": { "device": "UUID=…", "subvolume": "root", "blank": "root-blank",
//!                          "oldRoots": { "path": "old_roots", "keepDays": 30, "keepAtLeast": 1 } } }
//! "rollback": { "tmpfs": { "size": "2G", "mode": "0755" } }
//! "pools": { "zfs": { "rpool": { "devNodes": "/dev/disk/by-id", "force": false, "timeout": 30 } } }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use persist_bind::config::{ConfigError, ConfigErrors};
use persist_bind::mode::Mode;
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Serialize};

/// How the root is reset: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Rollback {
    Zfs(Zfs),
    Btrfs(Btrfs),
    Tmpfs(Tmpfs),
}

/// `rollback.zfs`: roll `dataset` back to `dataset@snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zfs {
    pub dataset: DatasetName,
    #[serde(default = "blank_snapshot")]
    pub snapshot: SnapshotName,
}

fn blank_snapshot() -> SnapshotName {
    SnapshotName("blank".to_owned())
}

/// `rollback.btrfs`: re-create `subvolume` from the read-only snapshot `blank`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Btrfs {
    /// The file system: a path, or `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`.
    pub device: DeviceRef,
    /// The root subvolume, relative to the top level (subvolid=5).
    pub subvolume: SubvolPath,
    /// The blank snapshot, relative to the top level.
    pub blank: SubvolPath,
    /// Keep retired roots there instead of deleting them.
    #[serde(default)]
    pub old_roots: Option<OldRoots>,
}

/// `rollback.btrfs.oldRoots`: where retired roots are kept and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OldRoots {
    /// A directory (or subvolume) relative to the top level.
    pub path: SubvolPath,
    /// Old roots created longer ago than this are pruned…
    #[serde(default = "thirty")]
    pub keep_days: u32,
    /// …except the newest this many, which are always kept (at least 1).
    #[serde(default = "one")]
    pub keep_at_least: u32,
}

fn thirty() -> u32 {
    30
}

fn one() -> u32 {
    1
}

/// `rollback.tmpfs`: the root is a new tmpfs on every boot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// tmpfs `size=` (`2G`, `50%`); the kernel's default (half of RAM) when absent.
    #[serde(default)]
    pub size: Option<TmpfsSize>,
    /// The root's mode; 0755 when absent (a 1777 root breaks sshd).
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// `pools`: what is imported before the rollback.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pools {
    /// ZFS pools by name, imported with `zpool import -N`.
    #[serde(default)]
    pub zfs: BTreeMap<PoolName, ZfsPool>,
}

/// `pools.zfs.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZfsPool {
    /// Where `zpool import -d` looks for the pool's devices (NixOS's `boot.zfs.devNodes`).
    #[serde(default = "dev")]
    pub dev_nodes: PathBuf,
    /// `zpool import -f` (NixOS's `boot.zfs.forceImportRoot`).
    #[serde(default)]
    pub force: bool,
    /// Seconds to keep retrying while the pool's devices appear.
    #[serde(default = "thirty_secs")]
    pub timeout: u64,
}

impl Default for ZfsPool {
    fn default() -> Self {
        ZfsPool { dev_nodes: dev(), force: false, timeout: thirty_secs() }
    }
}

fn dev() -> PathBuf {
    PathBuf::from("/dev")
}

fn thirty_secs() -> u64 {
    30
}

/// The sections of a lethe config file the `rollback` binary reads; the
/// others belong to other tools and are not looked at.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    #[serde(default)]
    pub rollback: Option<Rollback>,
    #[serde(default)]
    pub pools: Option<Pools>,
    #[serde(flatten)]
    _rest: BTreeMap<String, IgnoredAny>,
}

impl Document {
    /// Parses a whole lethe config and validates `rollback` and `pools`.
    pub fn from_slice(bytes: &[u8]) -> Result<Document, ConfigErrors> {
        let doc: Document = persist_bind::config::parse_json(bytes)?;
        let errors = validate(doc.rollback.as_ref(), doc.pools.as_ref());
        if errors.is_empty() { Ok(doc) } else { Err(ConfigErrors(errors)) }
    }

    /// Reads `path` (at most 16 MiB) and validates it.
    pub fn load(path: &Path) -> Result<Document, ConfigErrors> {
        Document::from_slice(&persist_bind::config::read_config(path)?)
    }
}

/// The checks serde's types cannot express: they span sections.
pub fn validate(rollback: Option<&Rollback>, pools: Option<&Pools>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(Rollback::Zfs(z)) = rollback {
        let pool = z.dataset.pool();
        if !pools.is_some_and(|p| p.zfs.keys().any(|n| n.0 == pool)) {
            errors.push(err(
                "rollback.zfs.dataset",
                format!("the pool {pool:?} of {} is not in pools.zfs, so nothing imports it", z.dataset),
            ));
        }
        let full = z.dataset.as_str().len() + 1 + z.snapshot.as_str().len();
        if full >= MAX_DATASET_NAME {
            errors.push(err(
                "rollback.zfs.snapshot",
                format!(
                    "{}@{} is {full} bytes long: ZFS names are at most {} bytes",
                    z.dataset,
                    z.snapshot,
                    MAX_DATASET_NAME - 1
                ),
            ));
        }
    }
    if let Some(Rollback::Btrfs(b)) = rollback {
        if b.subvolume == b.blank {
            errors
                .push(err("rollback.btrfs.blank", "the blank snapshot cannot be the root subvolume itself"));
        }
        if b.blank.starts_with(&b.subvolume) {
            errors.push(err(
                "rollback.btrfs.blank",
                format!(
                    "{} is inside the root subvolume {}, which every boot replaces: expected it outside",
                    b.blank, b.subvolume
                ),
            ));
        }
        if b.subvolume.starts_with(&b.blank) {
            errors.push(err(
                "rollback.btrfs.subvolume",
                format!(
                    "{} is inside the blank snapshot {}, which is read-only: expected it outside",
                    b.subvolume, b.blank
                ),
            ));
        }
        if let Some(o) = &b.old_roots {
            if o.path == b.subvolume || o.path.starts_with(&b.subvolume) {
                errors.push(err(
                    "rollback.btrfs.oldRoots.path",
                    format!(
                        "{} is inside the root subvolume {}, which every boot erases",
                        o.path, b.subvolume
                    ),
                ));
            }
            if o.path == b.blank || o.path.starts_with(&b.blank) {
                errors.push(err(
                    "rollback.btrfs.oldRoots.path",
                    format!("{} is inside the blank snapshot", o.path),
                ));
            }
            if b.blank.starts_with(&o.path) {
                errors.push(err(
                    "rollback.btrfs.oldRoots.path",
                    format!(
                        "the blank snapshot {} is inside {}, where old roots are pruned",
                        b.blank, o.path
                    ),
                ));
            }
            if b.subvolume.starts_with(&o.path) {
                errors.push(err(
                    "rollback.btrfs.oldRoots.path",
                    format!(
                        "the root subvolume {} is inside {}, where old roots are pruned",
                        b.subvolume, o.path
                    ),
                ));
            }
            if o.keep_at_least == 0 {
                errors.push(err(
                    "rollback.btrfs.oldRoots.keepAtLeast",
                    "must be at least 1: the newest old root is always kept",
                ));
            }
        }
    }
    if let Some(p) = pools {
        for (name, pool) in &p.zfs {
            if !pool.dev_nodes.is_absolute() {
                errors.push(err(
                    &format!("pools.zfs.{name}.devNodes"),
                    format!("expected an absolute directory, got {:?}", pool.dev_nodes),
                ));
            }
            if pool.timeout > 3600 {
                errors.push(err(&format!("pools.zfs.{name}.timeout"), "more than an hour: expected seconds"));
            }
        }
    }
    errors
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_owned(), message: message.into() }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<$name, NameError> {
                $check(s).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<$name, NameError> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(de::Error::custom)
            }
        }
    };
}

/// ZFS's longest dataset name (ZFS_MAX_DATASET_NAME_LEN, with the NUL).
pub const MAX_DATASET_NAME: usize = 256;

fn zfs_component(c: &str, whole: &str) -> Result<(), NameError> {
    if c.is_empty() {
        return Err(NameError(format!("{whole:?} has an empty component")));
    }
    if c == "." || c == ".." {
        return Err(NameError(format!("{whole:?} has a {c:?} component")));
    }
    if let Some(bad) = c.chars().find(|&ch| !(ch.is_ascii_alphanumeric() || "_-:. ".contains(ch))) {
        return Err(NameError(format!("{whole:?} contains {bad:?}, which ZFS names cannot")));
    }
    Ok(())
}

fn check_dataset(s: &str) -> Result<String, NameError> {
    if s.len() >= MAX_DATASET_NAME {
        return Err(NameError(format!("{s:?} is longer than ZFS's {} bytes", MAX_DATASET_NAME - 1)));
    }
    if s.contains('@') || s.contains('#') {
        return Err(NameError(format!("expected a dataset (pool/name), got the snapshot or bookmark {s:?}")));
    }
    for c in s.split('/') {
        zfs_component(c, s)?;
    }
    if !s.contains('/') {
        return Err(NameError(format!(
            "{s:?} is a whole pool: roll back a dataset inside it (pool/local/root)"
        )));
    }
    if !s.as_bytes()[0].is_ascii_alphabetic() {
        return Err(NameError(format!("{s:?}: a pool name begins with a letter")));
    }
    Ok(s.to_owned())
}

fn check_snapshot(s: &str) -> Result<String, NameError> {
    if s.contains(['/', '@', '#']) {
        return Err(NameError(format!(
            "expected a snapshot name without the dataset (\"blank\"), got {s:?}"
        )));
    }
    zfs_component(s, s)?;
    if s.len() >= MAX_DATASET_NAME {
        return Err(NameError(format!("{s:?} is too long for a snapshot name")));
    }
    Ok(s.to_owned())
}

fn check_pool(s: &str) -> Result<String, NameError> {
    if s.contains(['/', '@', '#']) {
        return Err(NameError(format!("expected a pool name, got {s:?}")));
    }
    zfs_component(s, s)?;
    if !s.as_bytes()[0].is_ascii_alphabetic() {
        return Err(NameError(format!("{s:?}: a pool name begins with a letter")));
    }
    Ok(s.to_owned())
}

fn check_subvol(s: &str) -> Result<String, NameError> {
    // A leading "/" is accepted: people write the top-level mount's view.
    let t = s.trim_start_matches('/').trim_end_matches('/');
    if t.is_empty() {
        return Err(NameError("expected a subvolume below the top level, got the top level itself".into()));
    }
    for c in t.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(NameError(format!("{s:?}: expected a plain path below the top level")));
        }
        if c.len() > 255 || c.contains('\0') {
            return Err(NameError(format!("{s:?}: {c:?} is not a usable name")));
        }
    }
    if t.len() > 4000 {
        return Err(NameError(format!("{s:?} is too long")));
    }
    Ok(t.to_owned())
}

fn check_device(s: &str) -> Result<String, NameError> {
    let tagged = ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="].iter().find_map(|t| s.strip_prefix(t));
    match tagged {
        Some("") => Err(NameError(format!("{s:?} names no device"))),
        Some(_) => Ok(s.to_owned()),
        None if s.starts_with('/') && !s.contains('\0') => Ok(s.to_owned()),
        None => Err(NameError(format!(
            "expected a device path or UUID=, LABEL=, PARTUUID=, PARTLABEL=, got {s:?}"
        ))),
    }
}

fn check_size(s: &str) -> Result<String, NameError> {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    let suffix = &s[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || suffix.len() > 1
        || digits.len() > 15
    {
        return Err(NameError(format!("expected a size like \"2G\" or \"50%\", got {s:?}")));
    }
    Ok(s.to_owned())
}

validated_string!(
    /// A ZFS dataset below a pool: `rpool/local/root`.
    DatasetName,
    check_dataset
);
validated_string!(
    /// A snapshot's name without its dataset: `blank`.
    SnapshotName,
    check_snapshot
);
validated_string!(
    /// A ZFS pool's name.
    PoolName,
    check_pool
);
validated_string!(
    /// A path below a BTRFS top level (subvolid=5), normalized: no leading or trailing `/`, no `.` or `..`.
    SubvolPath,
    check_subvol
);
validated_string!(
    /// A block device: an absolute path or `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`.
    DeviceRef,
    check_device
);
validated_string!(
    /// A tmpfs size: a number with an optional k/m/g or % suffix.
    TmpfsSize,
    check_size
);

impl DatasetName {
    /// The pool the dataset lives in.
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl SubvolPath {
    /// Whether `self` lies strictly below `dir`.
    pub fn starts_with(&self, dir: &SubvolPath) -> bool {
        self.0.strip_prefix(&dir.0).is_some_and(|rest| rest.starts_with('/'))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The parent below the top level, `None` directly under it.
    pub fn parent(&self) -> Option<SubvolPath> {
        self.0.rsplit_once('/').map(|(p, _)| SubvolPath(p.to_owned()))
    }

    /// A sibling path with `suffix` appended to the last component (`root` → `root.lethe-new`).
    pub fn with_suffix(&self, suffix: &str) -> SubvolPath {
        SubvolPath(format!("{}{suffix}", self.0))
    }

    /// `self/name`; `name` must be one plain component.
    pub fn join(&self, name: &str) -> Result<SubvolPath, NameError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(NameError(format!("{name:?} is not one path component")));
        }
        Ok(SubvolPath(format!("{}/{name}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Document, String> {
        Document::from_slice(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_method_parses_with_its_defaults() {
        let d = parse(
            r#"{"version":1,"rollback":{"zfs":{"dataset":"rpool/local/root"}},"pools":{"zfs":{"rpool":{}}}}"#,
        )
        .unwrap();
        let Some(Rollback::Zfs(z)) = d.rollback else { panic!() };
        assert_eq!(z.snapshot.as_str(), "blank");
        assert_eq!(d.pools.unwrap().zfs.values().next().unwrap(), &ZfsPool::default());

        let d = parse(
            r#"{"rollback":{"btrfs":{"device":"UUID=1234","subvolume":"/root/","blank":"root-blank",
                "oldRoots":{"path":"old_roots"}}}}"#,
        )
        .unwrap();
        let Some(Rollback::Btrfs(b)) = d.rollback else { panic!() };
        assert_eq!(b.subvolume.as_str(), "root");
        let o = b.old_roots.unwrap();
        assert_eq!((o.keep_days, o.keep_at_least), (30, 1));

        let d = parse(r#"{"rollback":{"tmpfs":{"size":"2G","mode":"0755"}}}"#).unwrap();
        let Some(Rollback::Tmpfs(t)) = d.rollback else { panic!() };
        assert_eq!(t.size.unwrap().as_str(), "2G");
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = parse(r#"{"rollback":{"zfs":{"dataset":"rpool"}}}"#).unwrap_err();
        assert!(e.starts_with("rollback.zfs.dataset: "), "{e}");
        assert!(e.contains("whole pool"), "{e}");
        let e = parse(r#"{"rollback":{"btrfs":{"device":"sda1","subvolume":"r","blank":"b"}}}"#).unwrap_err();
        assert!(e.starts_with("rollback.btrfs.device: "), "{e}");
        let e = parse(r#"{"rollback":{"btrfs":{"device":"/dev/sda","subvolume":"../r","blank":"b"}}}"#)
            .unwrap_err();
        assert!(e.starts_with("rollback.btrfs.subvolume: "), "{e}");
        let e = parse(r#"{"rollback":{"tmpfs":{"size":"lots"}}}"#).unwrap_err();
        assert!(e.starts_with("rollback.tmpfs.size: "), "{e}");
        let e = parse(r#"{"rollback":{"tmpfs":{"sise":"1G"}}}"#).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn exactly_one_method() {
        assert!(parse(r#"{"rollback":{}}"#).is_err());
        assert!(parse(r#"{"rollback":{"tmpfs":{},"zfs":{"dataset":"a/b"}}}"#).is_err());
        assert!(parse(r#"{"rollback":{"ext4":{}}}"#).is_err());
    }

    #[test]
    fn the_zfs_pool_must_be_imported() {
        let e = parse(r#"{"rollback":{"zfs":{"dataset":"rpool/local/root"}}}"#).unwrap_err();
        assert!(e.contains("not in pools.zfs"), "{e}");
        let e = parse(r#"{"rollback":{"zfs":{"dataset":"rpool/root"}},"pools":{"zfs":{"tank":{}}}}"#)
            .unwrap_err();
        assert!(e.contains("\"rpool\""), "{e}");
    }

    #[test]
    fn old_roots_cannot_sit_where_they_would_be_erased() {
        let base =
            r#"{"rollback":{"btrfs":{"device":"/dev/vda","subvolume":"root","blank":"blank","oldRoots":"#;
        let e = parse(&format!(r#"{base}{{"path":"root/old"}}}}}}}}"#)).unwrap_err();
        assert!(e.contains("inside the root subvolume"), "{e}");
        let e = parse(&format!(r#"{base}{{"path":"old","keepAtLeast":0}}}}}}}}"#)).unwrap_err();
        assert!(e.contains("keepAtLeast"), "{e}");
        assert!(parse(&format!(r#"{base}{{"path":"rootx"}}}}}}}}"#)).is_ok());
    }

    /// What the rollback would refuse on every boot (keeping the old root) is refused at
    /// check-config, so that it fails `nixos-rebuild` instead.
    #[test]
    fn layouts_the_rollback_refuses_are_config_errors() {
        let btrfs = |subvolume: &str, blank: &str, old_roots: Option<&str>| {
            let old = old_roots.map_or(String::new(), |o| format!(r#","oldRoots":{{"path":"{o}"}}"#));
            parse(&format!(
                r#"{{"rollback":{{"btrfs":{{"device":"/dev/vda","subvolume":"{subvolume}","blank":"{blank}"{old}}}}}}}"#
            ))
        };
        // The blank inside the root would be deleted (or retired) with it.
        let e = btrfs("root", "root/blank", None).unwrap_err();
        assert!(e.starts_with("rollback.btrfs.blank: ") && e.contains("inside the root subvolume"), "{e}");
        // The root inside the read-only blank cannot be replaced.
        let e = btrfs("blank/root", "blank", None).unwrap_err();
        assert!(e.starts_with("rollback.btrfs.subvolume: ") && e.contains("inside the blank"), "{e}");
        // The blank inside old roots would be pruned.
        let e = btrfs("root", "old/blank", Some("old")).unwrap_err();
        assert!(e.starts_with("rollback.btrfs.oldRoots.path: ") && e.contains("blank"), "{e}");
        assert!(btrfs("root", "blank", Some("old")).is_ok());
        assert!(btrfs("@/root", "@blank", Some("@old")).is_ok());
    }

    /// ZFS names are at most 255 bytes, the snapshot's full name `dataset@snapshot` included.
    #[test]
    fn the_blank_snapshots_full_name_fits_zfs() {
        let config = |dataset: &str, snapshot: &str| {
            parse(&format!(
                r#"{{"rollback":{{"zfs":{{"dataset":"{dataset}","snapshot":"{snapshot}"}}}},"pools":{{"zfs":{{"rpool":{{}}}}}}}}"#
            ))
        };
        let dataset = format!("rpool/{}", "d".repeat(240));
        let e = config(&dataset, &"s".repeat(20)).unwrap_err();
        assert!(e.starts_with("rollback.zfs.snapshot: ") && e.contains("255"), "{e}");
        assert!(config(&dataset, &"s".repeat(255 - dataset.len() - 1)).is_ok());
        assert!(config(&dataset, &"s".repeat(256 - dataset.len() - 1)).is_err());
    }

    #[test]
    fn names() {
        assert!(DatasetName::parse("rpool/local/root").is_ok());
        assert!(DatasetName::parse("rpool/local@blank").is_err());
        assert!(DatasetName::parse("rpool//root").is_err());
        assert!(DatasetName::parse("1pool/root").is_err());
        assert!(SnapshotName::parse("blank").is_ok());
        assert!(SnapshotName::parse("a/b").is_err());
        let p = SubvolPath::parse("a/b/c").unwrap();
        assert!(p.starts_with(&SubvolPath::parse("a/b").unwrap()));
        assert!(!SubvolPath::parse("a/bc").unwrap().starts_with(&SubvolPath::parse("a/b").unwrap()));
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), "c");
        assert!(p.join("..").is_err());
    }
}
