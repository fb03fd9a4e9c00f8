//! The `luks` config section: which LUKS devices stage 1 opens, with what keys and flags.
//!
//! Names and meanings follow NixOS's `boot.initrd.luks.devices.<name>` (`keyFile`,
//! `keyFileOffset`, ... become `keyFile.{path,offset,...}`), so the NixOS module maps them
//! one to one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use persist_bind::config::ConfigError;
use serde::Deserialize;

use crate::devspec::DeviceSpec;

/// How long a key file's device (a USB stick) is waited for unless `keyFile.timeout` says.
pub const DEFAULT_KEY_FILE_TIMEOUT: Duration = Duration::from_secs(10);
/// Passphrase attempts unless `tries` says (systemd-cryptsetup's default).
pub const DEFAULT_TRIES: u32 = 3;
const MAX_TRIES: u32 = 100;
/// Longest wait a config may ask for: an hour (longer is a typo).
const MAX_TIMEOUT_SECS: u64 = 3600;

/// `luks`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Luks {
    /// By the name of the mapping, `/dev/mapper/<name>`, opened in name order.
    #[serde(default)]
    pub devices: BTreeMap<String, LuksDevice>,
}

/// `luks.devices.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LuksDevice {
    /// The LUKS device (its data; also its header unless `header` is given).
    pub device: DeviceSpec,
    #[serde(default)]
    pub key_file: Option<KeyFile>,
    /// Ask for the passphrase when the key file is missing or does not open the device
    /// (NixOS's default: no, a missing key is an error).
    #[serde(default)]
    pub fallback_to_password: bool,
    /// Passphrase attempts.
    #[serde(default = "default_tries")]
    pub tries: u32,
    #[serde(default)]
    pub allow_discards: bool,
    /// Bypass dm-crypt's read and write workqueues (better latency on SSDs).
    #[serde(default)]
    pub bypass_workqueues: bool,
    /// A detached header: a device, or a file in the initramfs.
    #[serde(default)]
    pub header: Option<HeaderSource>,
    /// Seconds to wait for the device to appear (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
}

fn default_tries() -> u32 {
    DEFAULT_TRIES
}

/// `luks.devices.<name>.keyFile`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyFile {
    /// Absolute path: in the initramfs, or on `device` (relative to its root).
    pub path: PathBuf,
    /// The removable device holding the key file; absent: the file is in the initramfs.
    #[serde(default)]
    pub device: Option<DeviceSpec>,
    /// Bytes skipped at the start of the file (`--keyfile-offset`).
    #[serde(default)]
    pub offset: u64,
    /// Bytes read (`--keyfile-size`); absent: the rest of the file.
    #[serde(default)]
    pub size: Option<u64>,
    /// Seconds to wait for `device` before giving up on the key file.
    #[serde(default)]
    pub timeout: Option<u64>,
}

impl KeyFile {
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(DEFAULT_KEY_FILE_TIMEOUT, Duration::from_secs)
    }
}

/// Where a detached header is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    Device(DeviceSpec),
    /// A file in the initramfs (an absolute path outside /dev).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for HeaderSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(spec) = s.parse::<DeviceSpec>() {
            return Ok(HeaderSource::Device(spec));
        }
        if s.starts_with('/')
            && !s.starts_with("/dev/")
            && !s.contains('\0')
            && !s.split('/').any(|c| c == "..")
        {
            return Ok(HeaderSource::File(PathBuf::from(s)));
        }
        Err(serde::de::Error::custom(format!(
            "expected UUID=, LABEL=, PARTUUID=, a /dev/ path or an absolute file path in the initramfs, got {s:?}"
        )))
    }
}

impl std::fmt::Display for HeaderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderSource::Device(d) => d.fmt(f),
            HeaderSource::File(p) => p.display().fmt(f),
        }
    }
}

impl Luks {
    /// Every problem, each with its JSON path.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut seen: HashMap<&DeviceSpec, &str> = HashMap::new();
        for (name, d) in &self.devices {
            let at = format!("luks.devices.{name}");
            if let Err(e) = crate::crypt::MapName::new(name) {
                errors.push(err(&at, format!("cannot name /dev/mapper/NAME: {e}")));
            }
            if let Some(first) = seen.insert(&d.device, name) {
                errors.push(err(
                    &format!("{at}.device"),
                    format!("{} is opened by luks.devices.{first} already", d.device),
                ));
            }
            if d.tries == 0 || d.tries > MAX_TRIES {
                errors
                    .push(err(&format!("{at}.tries"), format!("expected 1 to {MAX_TRIES}, got {}", d.tries)));
            }
            if d.timeout.is_some_and(|t| t > MAX_TIMEOUT_SECS) {
                errors.push(err(&format!("{at}.timeout"), format!("at most {MAX_TIMEOUT_SECS} seconds")));
            }
            if let Some(HeaderSource::Device(h)) = &d.header
                && *h == d.device
            {
                errors.push(err(&format!("{at}.header"), "a detached header cannot be the device itself"));
            }
            if let Some(k) = &d.key_file {
                check_key_file(&mut errors, &format!("{at}.keyFile"), k);
            }
        }
        errors
    }
}

fn check_key_file(errors: &mut Vec<ConfigError>, at: &str, k: &KeyFile) {
    let p = k.path.to_str().unwrap_or("");
    if !p.starts_with('/')
        || p.contains('\0')
        || k.path.components().any(|c| c == std::path::Component::ParentDir)
    {
        errors.push(err(
            &format!("{at}.path"),
            format!("expected an absolute path without '..', got {:?}", k.path),
        ));
    }
    if k.size == Some(0) {
        errors.push(err(&format!("{at}.size"), "a key of 0 bytes opens nothing"));
    }
    if k.size.is_some_and(|s| s > luks::secret::MAX_KEY_FILE as u64) {
        errors.push(err(
            &format!("{at}.size"),
            format!("at most {} bytes (cryptsetup's limit)", luks::secret::MAX_KEY_FILE),
        ));
    }
    if k.timeout.is_some_and(|t| t > MAX_TIMEOUT_SECS) {
        errors.push(err(&format!("{at}.timeout"), format!("at most {MAX_TIMEOUT_SECS} seconds")));
    }
    if k.device.is_none() && k.timeout.is_some() {
        errors.push(err(
            &format!("{at}.timeout"),
            "a timeout applies to a key file on a device (keyFile.device)",
        ));
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_owned(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    fn luks(json: &str) -> Result<Luks, Vec<String>> {
        let doc = format!(r#"{{"version": 1, "luks": {json}}}"#);
        Config::from_slice(doc.as_bytes())
            .map(|c| c.luks.unwrap_or_default())
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_device_with_a_key_file_on_a_stick() {
        let l = luks(
            r#"{"devices": {"cryptroot": {"device": "UUID=0f1e", "fallbackToPassword": true,
                "keyFile": {"path": "/keys/root.key", "device": "UUID=ABCD-1234", "offset": 512, "size": 4096, "timeout": 5},
                "allowDiscards": true, "bypassWorkqueues": true, "header": "/etc/lethe/root.hdr"}}}"#,
        )
        .unwrap();
        let d = &l.devices["cryptroot"];
        assert_eq!(d.device, DeviceSpec::Uuid("0f1e".into()));
        assert!(d.fallback_to_password && d.allow_discards && d.bypass_workqueues);
        assert_eq!(d.tries, DEFAULT_TRIES);
        assert_eq!(d.header, Some(HeaderSource::File("/etc/lethe/root.hdr".into())));
        let k = d.key_file.as_ref().unwrap();
        assert_eq!((k.offset, k.size, k.timeout()), (512, Some(4096), Duration::from_secs(5)));
        assert_eq!(k.device, Some(DeviceSpec::Uuid("ABCD-1234".into())));
    }

    #[test]
    fn defaults_follow_nixos() {
        let l = luks(r#"{"devices": {"c": {"device": "/dev/vda2"}}}"#).unwrap();
        let d = &l.devices["c"];
        assert!(!d.fallback_to_password && !d.allow_discards && !d.bypass_workqueues);
        assert_eq!((d.tries, d.header.as_ref(), d.key_file.as_ref().map(|_| ())), (3, None, None));
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = luks(
            r#"{"devices": {
                "a/b": {"device": "/dev/vda"},
                "c": {"device": "/dev/vda", "tries": 0, "header": "/dev/vda"},
                "d": {"device": "/dev/vdb", "keyFile": {"path": "key", "size": 0, "timeout": 3}},
                "e": {"device": "vdc"},
                "f": {"device": "/dev/vdd", "keyfile": "/k"}}}"#,
        )
        .unwrap_err();
        let want = ["luks.devices.e.device: expected UUID=, LABEL=, PARTUUID= or a /dev/ path, got \"vdc\""];
        // A type error stops serde at the first one; fix it and the rest is reported together.
        assert!(e.iter().any(|l| l.starts_with(want[0])), "{e:?}");
        let e = luks(
            r#"{"devices": {
                "a/b": {"device": "/dev/vda"},
                "c": {"device": "/dev/vda", "tries": 0, "header": "/dev/vda"},
                "d": {"device": "/dev/vdb", "keyFile": {"path": "key", "size": 0, "timeout": 3}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            [
                "luks.devices.a/b: cannot name /dev/mapper/NAME: the mapping name \"a/b\" contains '/': use letters, digits and # + - . : = @ _",
                "luks.devices.c.device: /dev/vda is opened by luks.devices.a/b already",
                "luks.devices.c.tries: expected 1 to 100, got 0",
                "luks.devices.c.header: a detached header cannot be the device itself",
                "luks.devices.d.keyFile.path: expected an absolute path without '..', got \"key\"",
                "luks.devices.d.keyFile.size: a key of 0 bytes opens nothing",
                "luks.devices.d.keyFile.timeout: a timeout applies to a key file on a device (keyFile.device)",
            ]
        );
        let e = luks(r#"{"devices": {"f": {"device": "/dev/vdd", "keyfile": "/k"}}}"#).unwrap_err();
        assert!(e[0].starts_with("luks.devices.f.keyfile: unknown field `keyfile`"), "{e:?}");
    }
}
