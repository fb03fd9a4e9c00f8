//! The whole /etc/lethe/config.json as stage 1 reads it: `modules`, `root`, `mounts`, and the sections other crates own.
//!
//! persist-bind validates `persistence`, `uids` and `gids`, the rollback
//! crate `rollback` and `pools`; this module validates the rest and refuses
//! sections this build cannot carry out (better a failed `nixos-rebuild`
//! than a boot that skips the unlock).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use persist_bind::RootPath;
use persist_bind::config::{ConfigError, ConfigErrors, Version};
use persist_bind::mode::Mode;
use rollback::config::{DatasetName, Pools, Rollback};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::devspec::DeviceSpec;
use crate::unlock::config::Luks;

/// The config path inside the initramfs.
pub const PATH: &str = "/etc/lethe/config.json";
/// How long a device may take to appear unless the config says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: Version,
    #[serde(default)]
    pub modules: Modules,
    #[serde(default)]
    pub root: Option<Root>,
    /// Needed-for-boot file systems below the root, by mount point.
    #[serde(default)]
    pub mounts: BTreeMap<String, Mount>,
    // Owned by persist-bind, validated there.
    #[serde(default, rename = "persistence")]
    _persistence: Option<IgnoredAny>,
    #[serde(default, rename = "uids")]
    _uids: Option<IgnoredAny>,
    #[serde(default, rename = "gids")]
    _gids: Option<IgnoredAny>,
    /// LUKS devices opened before the pools are imported.
    #[serde(default)]
    pub luks: Option<Luks>,
    /// The SSH unlock server, asked alongside the console.
    #[cfg(feature = "ssh")]
    #[serde(default)]
    pub ssh: Option<crate::ssh::config::Ssh>,
    /// Refused: this build has no SSH server.
    #[cfg(not(feature = "ssh"))]
    #[serde(default)]
    ssh: Option<IgnoredAny>,
    /// The network stage 1 brings up (own-init mode; `ip=` on the command line replaces it).
    #[serde(default)]
    pub network: Option<crate::net::config::Network>,
    /// Pools imported before the rollback.
    #[serde(default)]
    pub pools: Option<Pools>,
    /// How the root is reset before it is mounted.
    #[serde(default)]
    pub rollback: Option<Rollback>,
}

/// `modules`: kernel modules to load before devices are looked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modules {
    /// Loaded by name (with their dependencies), in order.
    #[serde(default)]
    pub load: Vec<String>,
    /// Also load what the devices found under /sys ask for (their modaliases).
    #[serde(default = "yes")]
    pub coldplug: bool,
}

impl Default for Modules {
    fn default() -> Self {
        Modules { load: Vec::new(), coldplug: true }
    }
}

fn yes() -> bool {
    true
}

/// What a file system is mounted from: a block device, or a ZFS dataset
/// (`rpool/local/root`, for `fsType: zfs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Block(DeviceSpec),
    Dataset(DatasetName),
}

impl Source {
    /// The block device to wait for, if it is one.
    pub fn block(&self) -> Option<&DeviceSpec> {
        match self {
            Source::Block(d) => Some(d),
            Source::Dataset(_) => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Block(d) => d.fmt(f),
            Source::Dataset(d) => d.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(spec) = s.parse::<DeviceSpec>() {
            return Ok(Source::Block(spec));
        }
        // Dataset names have no `=` and do not start with `/`: the forms are disjoint.
        if !s.starts_with('/') && !s.contains('=') && s.contains('/') {
            return DatasetName::parse(&s).map(Source::Dataset).map_err(serde::de::Error::custom);
        }
        Err(serde::de::Error::custom(format!(
            "expected UUID=, LABEL=, PARTUUID=, a /dev/ path or a ZFS dataset (pool/name), got {s:?}"
        )))
    }
}

/// `root`: what is mounted at /sysroot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Root {
    pub fs_type: String,
    /// Absent for tmpfs.
    #[serde(default)]
    pub device: Option<Source>,
    #[serde(default)]
    pub options: Vec<String>,
    /// tmpfs size (`2G`, `50%`).
    #[serde(default)]
    pub size: Option<String>,
    /// tmpfs root mode; 0755 (a 1777 root breaks sshd).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Seconds to wait for the device.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// A `mounts` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub fs_type: String,
    #[serde(default)]
    pub device: Option<Source>,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// A mount of the validated config, in mount order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub mount_point: RootPath,
    pub fs_type: String,
    pub device: Option<Source>,
    pub options: Vec<String>,
    pub timeout: Duration,
}

impl Config {
    /// Parses and validates a document, persist-bind's sections included.
    pub fn from_slice(bytes: &[u8]) -> Result<Config, ConfigErrors> {
        let cfg: Config = persist_bind::config::parse_json(bytes)?;
        let mut errors = cfg.validate();
        if let Err(ConfigErrors(mut e)) = persist_bind::Document::entries_from_slice(bytes) {
            errors.append(&mut e);
        }
        if errors.is_empty() { Ok(cfg) } else { Err(ConfigErrors(errors)) }
    }

    /// Reads `path` (at most 16 MiB) and validates it.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::from_slice(&persist_bind::config::read_config(path)?)
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        #[cfg(not(feature = "ssh"))]
        if self.ssh.is_some() {
            errors
                .push(err("ssh", "this build of lethe has no SSH server (built without the `ssh` feature)"));
        }
        #[cfg(feature = "ssh")]
        if let Some(s) = &self.ssh {
            errors.extend(s.validate());
            if self.luks.as_ref().is_none_or(|l| l.devices.is_empty()) {
                errors.push(err("ssh", "the SSH server unlocks LUKS devices, but luks.devices is empty"));
            }
        }
        if let Some(n) = &self.network {
            errors.extend(n.validate());
        }
        if let Some(l) = &self.luks {
            errors.extend(l.validate());
        }
        for (i, m) in self.modules.load.iter().enumerate() {
            if m.is_empty() || m.contains(['/', '\0']) || m.chars().any(char::is_whitespace) {
                errors.push(err(&format!("modules.load[{i}]"), format!("{m:?} is not a module name")));
            }
        }
        errors.extend(rollback::config::validate(self.rollback.as_ref(), self.pools.as_ref()));
        if let Some(Rollback::Btrfs(b)) = &self.rollback
            && let Err(e) = b.device.as_str().parse::<DeviceSpec>()
        {
            errors.push(err("rollback.btrfs.device", e.to_string()));
        }
        match (&self.rollback, &self.root) {
            (Some(Rollback::Tmpfs(_)), Some(r)) if r.fs_type != "tmpfs" => errors.push(err(
                "root.fsType",
                format!("rollback.tmpfs makes the root a tmpfs, but root says {:?}", r.fs_type),
            )),
            (Some(Rollback::Tmpfs(_)), Some(r)) if r.size.is_some() || r.mode.is_some() => errors
                .push(err("root", "size and mode of a tmpfs root belong in rollback.tmpfs, not in root")),
            (Some(Rollback::Zfs(z)), Some(r))
                if r.fs_type != "zfs" || r.device != Some(Source::Dataset(z.dataset.clone())) =>
            {
                errors.push(err(
                    "root",
                    format!(
                        "rollback.zfs resets {}, but the root mounted is {}",
                        z.dataset,
                        describe_source(r)
                    ),
                ))
            }
            (Some(Rollback::Btrfs(_)), Some(r)) if r.fs_type != "btrfs" => errors.push(err(
                "root.fsType",
                format!("rollback.btrfs resets a btrfs subvolume, but the root is {:?}", r.fs_type),
            )),
            (Some(Rollback::Zfs(_) | Rollback::Btrfs(_)), None) => {
                errors.push(err("root", "rollback resets a root that `root` must then mount"))
            }
            _ => {}
        }
        if let (Some(Rollback::Btrfs(b)), Some(r)) = (&self.rollback, &self.root)
            && r.fs_type == "btrfs"
        {
            check_root_subvolume(&mut errors, b.subvolume.as_str(), &r.options);
        }
        if let Some(r) = &self.root {
            check_fs(&mut errors, "root", &r.fs_type, r.device.as_ref(), &r.options);
            self.check_pool_imported(&mut errors, "root", &r.fs_type, r.device.as_ref());
            if r.fs_type != "tmpfs" && (r.size.is_some() || r.mode.is_some()) {
                errors.push(err("root", "size and mode apply to a tmpfs root only"));
            }
            if let Some(s) = &r.size
                && !valid_size(s)
            {
                errors.push(err("root.size", format!("expected a size like \"2G\" or \"50%\", got {s:?}")));
            }
        }
        let mut seen = BTreeMap::new();
        for (mp, m) in &self.mounts {
            let at = format!("mounts.{mp}");
            match RootPath::parse(mp) {
                Ok(p) if !mp.starts_with('/') => {
                    errors.push(err(&at, format!("expected an absolute mount point, got {mp:?} ({p}?)")))
                }
                Ok(p) if p.is_root() => {
                    errors.push(err(&at, "the root is configured in `root`, not in `mounts`"))
                }
                Ok(p) => {
                    if let Some(first) = seen.insert(p.clone(), at.clone()) {
                        errors.push(err(&at, format!("{p} is mounted by {first} already")));
                    }
                }
                Err(e) => errors.push(err(&at, format!("not a usable mount point: {e}"))),
            }
            check_fs(&mut errors, &at, &m.fs_type, m.device.as_ref(), &m.options);
            self.check_pool_imported(&mut errors, &at, &m.fs_type, m.device.as_ref());
        }
        errors
    }

    /// A ZFS dataset can be mounted only when stage 1 imports its pool (pools.zfs).
    fn check_pool_imported(
        &self,
        errors: &mut Vec<ConfigError>,
        at: &str,
        fs: &str,
        device: Option<&Source>,
    ) {
        let Some(Source::Dataset(d)) = device else { return };
        let pool = d.pool();
        let imported = self.pools.as_ref().is_some_and(|p| p.zfs.keys().any(|n| n.as_str() == pool));
        if fs == "zfs" && !imported {
            errors.push(err(
                &format!("{at}.device"),
                format!("the pool {pool:?} of {d} is not in pools.zfs, so nothing imports it"),
            ));
        }
    }

    /// The mounts below the root, parents first.
    pub fn mount_plan(&self) -> Vec<MountPlan> {
        let mut v: Vec<MountPlan> = self
            .mounts
            .iter()
            .filter_map(|(mp, m)| {
                Some(MountPlan {
                    mount_point: RootPath::parse(mp).ok()?,
                    fs_type: m.fs_type.clone(),
                    device: m.device.clone(),
                    options: m.options.clone(),
                    timeout: m.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
                })
            })
            .collect();
        v.sort_by(|a, b| a.mount_point.tree_cmp(&b.mount_point));
        v
    }

    /// File-system types the config mounts, rolls back or imports (for the module closure).
    pub fn fs_types(&self) -> Vec<String> {
        let rollback = match &self.rollback {
            Some(Rollback::Zfs(_)) => Some("zfs"),
            Some(Rollback::Btrfs(_)) => Some("btrfs"),
            Some(Rollback::Tmpfs(_)) => Some("tmpfs"),
            None => None,
        };
        let pools = self.pools.as_ref().is_some_and(|p| !p.zfs.is_empty()).then_some("zfs");
        // Key files on removable devices: USB sticks are vfat (others go in modules.load).
        let sticks = self
            .luks
            .iter()
            .flat_map(|l| l.devices.values())
            .any(|d| d.key_file.as_ref().is_some_and(|k| k.device.is_some()))
            .then_some("vfat");
        let mut v: Vec<String> = self
            .root
            .iter()
            .map(|r| r.fs_type.clone())
            .chain(self.mounts.values().map(|m| m.fs_type.clone()))
            .chain(rollback.into_iter().chain(pools).chain(sticks).map(str::to_owned))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// File systems that need no device.
pub fn is_virtual(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs" | "proc" | "sysfs" | "devtmpfs")
}

fn describe_source(r: &Root) -> String {
    match &r.device {
        Some(d) => format!("{d} ({})", r.fs_type),
        None => r.fs_type.clone(),
    }
}

fn check_fs(errors: &mut Vec<ConfigError>, at: &str, fs: &str, device: Option<&Source>, options: &[String]) {
    if fs.is_empty() || !fs.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        errors.push(err(&format!("{at}.fsType"), format!("{fs:?} is not a file-system type")));
    }
    match (is_virtual(fs), device) {
        (false, None) => {
            errors.push(err(&format!("{at}.device"), format!("a {fs} file system needs a device")))
        }
        (true, Some(_)) => {
            errors.push(err(&format!("{at}.device"), format!("a {fs} file system takes no device")))
        }
        _ => {}
    }
    match device {
        Some(Source::Dataset(d)) if fs != "zfs" => errors.push(err(
            &format!("{at}.device"),
            format!("{d} is a ZFS dataset, but the file system is {fs:?}"),
        )),
        Some(Source::Block(d)) if fs == "zfs" => errors.push(err(
            &format!("{at}.device"),
            format!("a zfs file system is mounted from a dataset (pool/name), not from {d}"),
        )),
        _ => {}
    }
    for (i, o) in options.iter().enumerate() {
        if o.is_empty() || o.contains([',', '\0']) {
            errors.push(err(&format!("{at}.options[{i}]"), format!("{o:?} is not one mount option")));
        }
    }
}

/// A btrfs root reset by the rollback is mounted by its path: `subvol=` naming the subvolume
/// re-created (without it the default subvolume is mounted; a `subvolid=` is the old root's).
fn check_root_subvolume(errors: &mut Vec<ConfigError>, subvolume: &str, options: &[String]) {
    let said = |prefix: &str| options.iter().find_map(|o| o.strip_prefix(prefix));
    if let Some(id) = said("subvolid=") {
        errors.push(err(
            "root.options",
            format!(
                "subvolid={id}: the rollback re-creates {subvolume} with a new id on every boot; \
                 expected subvol={subvolume} only"
            ),
        ));
    } else if let Some(path) = said("subvol=") {
        if path.trim_matches('/') != subvolume {
            errors.push(err(
                "root.options",
                format!("subvol={path}, but the rollback resets {subvolume}: expected subvol={subvolume}"),
            ));
        }
    } else {
        errors.push(err(
            "root.options",
            format!(
                "expected subvol={subvolume}, the subvolume the rollback resets (without it the \
                 file system's default subvolume is mounted)"
            ),
        ));
    }
}

fn valid_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_owned(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(json: &str) -> Vec<String> {
        Config::from_slice(json.as_bytes()).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_tmpfs_root_with_needed_mounts() {
        let c = Config::from_slice(
            br#"{"version": 1, "modules": {"load": ["virtio_blk", "ext4"]},
                "root": {"fsType": "tmpfs", "size": "512M", "mode": "0755"},
                "mounts": {"/persist": {"fsType": "ext4", "device": "LABEL=persist", "timeout": 5},
                           "/nix": {"fsType": "ext4", "device": "UUID=1234", "options": ["ro", "noatime"]}},
                "persistence": {"/persist": {"directories": ["/var/log"]}}}"#,
        )
        .unwrap();
        let m = c.mount_plan();
        assert_eq!(m[0].mount_point.as_str(), "/nix");
        assert_eq!(m[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(m[1].device, Some(Source::Block(DeviceSpec::Label("persist".into()))));
        assert_eq!(m[1].timeout, Duration::from_secs(5));
        assert_eq!(c.fs_types(), ["ext4", "tmpfs"]);
        assert!(c.modules.coldplug);
    }

    #[test]
    fn a_zfs_root_is_a_dataset_rolled_back_after_its_pool_is_imported() {
        let c = Config::from_slice(
            br#"{"version": 1, "pools": {"zfs": {"rpool": {"devNodes": "/dev/disk/by-id"}}},
                "rollback": {"zfs": {"dataset": "rpool/local/root", "snapshot": "blank"}},
                "root": {"fsType": "zfs", "device": "rpool/local/root"},
                "mounts": {"/nix": {"fsType": "zfs", "device": "rpool/local/nix"}}}"#,
        )
        .unwrap();
        let root = c.root.as_ref().unwrap();
        assert!(matches!(&root.device, Some(Source::Dataset(d)) if d.as_str() == "rpool/local/root"));
        assert_eq!(root.device.as_ref().unwrap().block(), None, "a dataset is not waited for as a device");
        assert_eq!(c.fs_types(), ["zfs"]);
    }

    /// Stage 1 imports only the pools in pools.zfs: a dataset of another pool cannot be mounted.
    #[test]
    fn a_dataset_is_mounted_only_from_a_pool_that_is_imported() {
        let e = errors(
            r#"{"version": 1, "root": {"fsType": "zfs", "device": "rpool/local/root"},
                "mounts": {"/nix": {"fsType": "zfs", "device": "tank/nix"}}}"#,
        );
        assert_eq!(
            e,
            [
                "root.device: the pool \"rpool\" of rpool/local/root is not in pools.zfs, so nothing imports it",
                "mounts./nix.device: the pool \"tank\" of tank/nix is not in pools.zfs, so nothing imports it",
            ]
        );
        let e = errors(
            r#"{"version": 1, "pools": {"zfs": {"rpool": {}}},
                "root": {"fsType": "zfs", "device": "rpool/local/root"},
                "mounts": {"/nix": {"fsType": "zfs", "device": "tank/nix"}}}"#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("mounts./nix.device: the pool \"tank\""), "{e:?}");
        assert!(
            Config::from_slice(
                br#"{"version": 1, "pools": {"zfs": {"rpool": {}, "tank": {}}},
                    "root": {"fsType": "zfs", "device": "rpool/local/root"},
                    "mounts": {"/nix": {"fsType": "zfs", "device": "tank/nix"}}}"#
            )
            .is_ok()
        );
    }

    /// The root mounted must be the subvolume the rollback re-creates: without subvol= the
    /// file system's default subvolume (often the top level) would be booted, and a subvolid=
    /// names the old root, which the rollback has just retired.
    #[test]
    fn a_btrfs_root_is_mounted_by_the_subvolume_the_rollback_resets() {
        let config = |options: &str| {
            Config::from_slice(
                format!(
                    r#"{{"version": 1, "rollback": {{"btrfs": {{"device": "LABEL=nixos", "subvolume": "@root", "blank": "@blank"}}}},
                        "root": {{"fsType": "btrfs", "device": "LABEL=nixos", "options": [{options}]}}}}"#
                )
                .as_bytes(),
            )
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())
        };
        assert!(config(r#""subvol=@root""#).is_ok());
        assert!(config(r#""noatime", "subvol=/@root/", "compress=zstd""#).is_ok());
        for (options, says) in [
            ("", "expected subvol=@root"),
            (r#""noatime""#, "expected subvol=@root"),
            (r#""subvol=@home""#, "subvol=@home"),
            (r#""subvolid=256""#, "subvolid="),
            (r#""subvol=@root", "subvolid=256""#, "subvolid="),
        ] {
            let e = config(options).unwrap_err();
            assert_eq!(e.len(), 1, "{options}: {e:?}");
            assert!(e[0].starts_with("root.options: ") && e[0].contains(says), "{options}: {e:?}");
        }
    }

    #[test]
    fn rollback_and_root_must_agree() {
        let e = errors(
            r#"{"version": 1, "pools": {"zfs": {"rpool": {}}},
                "rollback": {"zfs": {"dataset": "rpool/local/root"}},
                "root": {"fsType": "zfs", "device": "rpool/other"}}"#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("root: rollback.zfs resets rpool/local/root"), "{e:?}");
        let e = errors(
            r#"{"version": 1, "rollback": {"btrfs": {"device": "PARTLABEL=x", "subvolume": "root", "blank": "blank"}},
                "root": {"fsType": "ext4", "device": "/dev/vda"}}"#,
        );
        assert!(e.iter().any(|e| e.starts_with("rollback.btrfs.device:")), "{e:?}");
        assert!(e.iter().any(|e| e.starts_with("root.fsType: rollback.btrfs")), "{e:?}");
        let e = errors(r#"{"version": 1, "root": {"fsType": "ext4", "device": "rpool/root"}}"#);
        assert_eq!(e, ["root.device: rpool/root is a ZFS dataset, but the file system is \"ext4\""]);
        let e =
            errors(r#"{"version": 1, "rollback": {"tmpfs": {}}, "root": {"fsType": "tmpfs", "size": "1G"}}"#);
        assert_eq!(e, ["root: size and mode of a tmpfs root belong in rollback.tmpfs, not in root"]);
        assert!(Config::from_slice(br#"{"version": 1, "rollback": {"tmpfs": {"size": "1G"}}}"#).is_ok());
    }

    #[test]
    fn errors_name_their_json_path_and_include_persistence() {
        assert_eq!(
            errors(
                r#"{"version": 1, "network": {"ip": ["10.0.0.1:::255.0.255.0"]}, "root": {"fsType": "ext4"},
                   "mounts": {"/": {"fsType": "tmpfs"}, "rel": {"fsType": "tmpfs"}, "/x": {"fsType": "tmpfs", "device": "/dev/vda"}},
                   "persistence": {"/p": {"directories": [{"directory": "/d", "mode": "rwx"}]}}}"#
            ),
            [
                "network.ip[0]: ip=10.0.0.1:::255.0.255.0: netmask 255.0.255.0 is not contiguous",
                "root.device: a ext4 file system needs a device",
                "mounts./: the root is configured in `root`, not in `mounts`",
                "mounts./x.device: a tmpfs file system takes no device",
                "mounts.rel: expected an absolute mount point, got \"rel\" (/rel?)",
                "persistence./p.directories[0].mode: expected an octal string like \"0755\" or a symbolic mode like \"u=rwx,g=rx,o=\", got \"rwx\" at line 3 column 91",
            ]
        );
        assert_eq!(
            errors(r#"{"version": 1, "root": {"fsType": "ext4", "device": "sda1"}}"#),
            [
                "root.device: expected UUID=, LABEL=, PARTUUID=, a /dev/ path or a ZFS dataset (pool/name), got \"sda1\" at line 1 column 59"
            ]
        );
        assert_eq!(errors(r#"{"version": 1, "mounts": {"/a": {"fsType": "tmpfs", "typo": 1}}}"#).len(), 1);
    }

    /// The SSH server only asks for LUKS passphrases: without devices it is a mistake, said at
    /// check-config; with them, its section and the network's are checked like the others.
    #[cfg(feature = "ssh")]
    #[test]
    fn the_ssh_server_needs_luks_devices_and_valid_keys() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbWlqEkOkvn0PFEjZ2n1pYGDnQbrFSgJ9NSo6BJ6c3z alice";
        let ssh = format!(
            r#""ssh": {{"hostKeys": ["/etc/lethe/ssh_host_ed25519_key"], "authorizedKeys": ["{key}"]}}"#
        );
        let e = errors(&format!(r#"{{"version": 1, {ssh}}}"#));
        assert_eq!(e, ["ssh: the SSH server unlocks LUKS devices, but luks.devices is empty"]);
        let luks = r#""luks": {"devices": {"cryptroot": {"device": "/dev/vda2"}}}"#;
        let net = r#""network": {"ip": ["dhcp"], "keepUp": true}"#;
        let ok = format!(r#"{{"version": 1, {ssh}, {luks}, {net}}}"#);
        let cfg = Config::from_slice(ok.as_bytes()).expect("valid");
        assert!(cfg.ssh.is_some() && cfg.network.is_some_and(|n| n.keep_up));
        let bad = ok.replace("ssh-ed25519 AAAA", r#"command=\"sh\" ssh-ed25519 AAAA"#);
        let e = errors(&bad);
        assert!(e.len() == 1 && e[0].starts_with("ssh.authorizedKeys[0]: "), "{e:?}");
    }
}
