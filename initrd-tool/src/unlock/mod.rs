//! Opening the configured LUKS devices: key file, then cached or asked passphrases, then dm-crypt.
//!
//! `plan` turns the config into data (what is opened, from where, with which key sources, in
//! which order); `run` carries it out. `--dry-run` prints the plan, which holds no secrets.

pub mod cli;
pub mod config;
mod handover;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use luks::model::Header;
use luks::secret::Secret;
use luks::unlock::{Options, UnlockError, Unlocked};

use self::config::{HeaderSource, KeyFile, Luks, LuksDevice};
use crate::askpass::{self, Verdict};
use crate::crypt::{self, ActiveState, MapName};
use crate::devices::{self, Roots, Wanted};
use crate::devspec::DeviceSpec;
use crate::keyfile::{self, KeyFileSpec, Region};
use crate::log;

/// Modules an image with LUKS devices carries and stage 1 loads before unlocking: device-mapper,
/// dm-crypt and the ciphers LUKS uses by default (the kernel asks for others through the
/// `modprobe` applet). Those not in the kernel's module tree are built in or absent.
pub const KERNEL_MODULES: [&str; 7] =
    ["dm_mod", "dm_crypt", "xts", "essiv", "aesni_intel", "cbc", "sha256_generic"];

/// How long a LUKS device may take to appear unless the config says.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// One device to open, as planned.
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: MapName,
    pub device: DeviceSpec,
    pub timeout: Duration,
    pub header: Option<HeaderSource>,
    /// Tried in order until one opens the device.
    pub sources: Vec<KeySource>,
    pub allow_discards: bool,
    pub bypass_workqueues: bool,
}

/// Where a key may come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    KeyFile(KeyFile),
    /// Passphrases that opened an earlier device this boot.
    Cached,
    /// The console and systemd's ask-password agents, `tries` attempts in all.
    Ask {
        tries: u32,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::KeyFile(k) => {
                write!(f, "key file {}", k.path.display())?;
                if let Some(d) = &k.device {
                    write!(f, " on {d} (waiting up to {}s)", k.timeout().as_secs())?;
                }
                if k.offset != 0 {
                    write!(f, ", offset {}", k.offset)?;
                }
                if let Some(s) = k.size {
                    write!(f, ", {s} bytes")?;
                }
                Ok(())
            }
            KeySource::Cached => f.write_str("passphrases that opened earlier devices"),
            KeySource::Ask { tries } => write!(f, "passphrase from the console or an agent ({tries} tries)"),
        }
    }
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "open {} as /dev/mapper/{}", self.device, self.name)?;
        if let Some(h) = &self.header {
            write!(f, " with the detached header {h}")?;
        }
        let sources: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
        write!(f, ": {}", sources.join(", then "))?;
        if self.allow_discards {
            f.write_str("; discards allowed")?;
        }
        if self.bypass_workqueues {
            f.write_str("; workqueues bypassed")?;
        }
        Ok(())
    }
}

/// The devices to open: all of `luks`, or those named (in config order).
pub fn plan(luks: &Luks, names: &[String]) -> Result<Vec<Planned>, Error> {
    if let Some(unknown) = names.iter().find(|n| !luks.devices.contains_key(*n)) {
        return Err(Error::UnknownName { name: unknown.clone() });
    }
    luks.devices
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .map(|(name, d)| {
            let name = MapName::new(name)
                .map_err(|source| Error::Activate { name: name.clone(), source: Box::new(source.into()) })?;
            Ok(plan_one(name, d))
        })
        .collect()
}

fn plan_one(name: MapName, d: &LuksDevice) -> Planned {
    let mut sources = Vec::new();
    if let Some(k) = &d.key_file {
        sources.push(KeySource::KeyFile(k.clone()));
    }
    if d.key_file.is_none() || d.fallback_to_password {
        sources.push(KeySource::Cached);
        sources.push(KeySource::Ask { tries: d.tries });
    }
    Planned {
        name,
        device: d.device.clone(),
        timeout: d.timeout.map_or(DEFAULT_DEVICE_TIMEOUT, Duration::from_secs),
        header: d.header.clone(),
        sources,
        allow_discards: d.allow_discards,
        bypass_workqueues: d.bypass_workqueues,
    }
}

/// Why a device was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no LUKS device {name:?} in the config")]
    UnknownName { name: String },
    #[error("{name}: {source}")]
    DeviceMissing {
        name: String,
        #[source]
        source: devices::WaitError,
    },
    #[error("{name}: cannot open {}: {source}", path.display())]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: LUKS header {source}")]
    Header {
        name: String,
        #[source]
        source: luks::header::ReadPathError,
    },
    #[error("{name}: {source}")]
    Unlock {
        name: String,
        #[source]
        source: UnlockError,
    },
    #[error("{name}: the key file did not open the device, and fallbackToPassword is off: {why}")]
    KeyFileFailed { name: String, why: String },
    #[error("{name}: no passphrase opened the device: {source}")]
    Ask {
        name: String,
        #[source]
        source: askpass::AskError,
    },
    #[error("{name}: {source}")]
    Activate {
        name: String,
        #[source]
        source: Box<crypt::CryptError>,
    },
    #[error("{name}: cryptsetup could not open the device ({why})")]
    Handover { name: String, why: String },
}

/// How a device ended up open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// By lethe, with the keyslot that opened.
    Native { keyslot: u32, key_in_keyring: bool, node: PathBuf },
    /// By the initramfs' `cryptsetup` (a cipher lethe does not implement).
    Cryptsetup,
    /// It was open before (a retried step, or a second run).
    AlreadyOpen,
}

/// Where things are: the device roots, the console and the ask-password directory.
#[derive(Debug, Clone)]
pub struct Env {
    pub roots: Roots,
    pub console: Option<PathBuf>,
    pub agent_dir: PathBuf,
}

impl Env {
    pub fn system() -> Env {
        Env {
            roots: Roots::system(),
            console: Some(PathBuf::from("/dev/console")),
            agent_dir: PathBuf::from(askpass::AGENT_DIR),
        }
    }
}

/// Opens planned devices one after the other, reusing passphrases that worked.
pub struct Unlocker {
    env: Env,
    /// Passphrases that opened a device, tried first on the next (most recent first).
    cache: Vec<Secret>,
}

impl Unlocker {
    pub fn new(env: Env) -> Unlocker {
        Unlocker { env, cache: Vec::new() }
    }

    /// Opens every planned device; one result each, in plan order.
    pub fn run(&mut self, plan: &[Planned]) -> Vec<Result<Opened, Error>> {
        plan.iter().map(|p| self.open(p)).collect()
    }

    /// Opens one device.
    pub fn open(&mut self, p: &Planned) -> Result<Opened, Error> {
        let name = p.name.as_str();
        // Before any key is asked for: device-mapper must be there, and the name free or ours.
        let existing = crypt::status(&p.name)
            .map_err(|source| Error::Activate { name: name.to_owned(), source: Box::new(source) })?
            .map(|s| s.info.uuid);
        let data = self.wait(name, &p.device, p.timeout)?;
        let header_path = match &p.header {
            None => data.clone(),
            Some(HeaderSource::File(f)) => f.clone(),
            Some(HeaderSource::Device(spec)) => self.wait(name, spec, p.timeout)?,
        };
        let mut header_dev = File::open(&header_path).map_err(|source| Error::Open {
            name: name.to_owned(),
            path: header_path.clone(),
            source,
        })?;
        let header = luks::header::read_path(&header_path)
            .map_err(|source| Error::Header { name: name.to_owned(), source })?;
        log::debug(&format!(
            "{name}: {} is LUKS{} {} ({} keyslots)",
            header_path.display(),
            if header.version == luks::model::Version::Luks1 { 1 } else { 2 },
            header.uuid,
            header.keyslots.len()
        ));
        if let Some(uuid) = existing {
            let ours = header.dm_uuid(name);
            if uuid == ours {
                log::info(&format!("{name}: /dev/mapper/{name} is open already"));
                return Ok(Opened::AlreadyOpen);
            }
            return Err(Error::Activate {
                name: name.to_owned(),
                source: Box::new(crypt::CryptError::NameTaken {
                    name: name.to_owned(),
                    uuid,
                    expected: ours,
                }),
            });
        }
        let opts = Options::default();
        let mut last_error: Option<String> = None;
        for source in &p.sources {
            let attempt = match source {
                KeySource::KeyFile(k) => self.try_key_file(p, &header, &mut header_dev, k, &opts),
                KeySource::Cached => self.try_cached(&header, &mut header_dev, &opts),
                KeySource::Ask { tries } => {
                    return self.ask(p, &header, &mut header_dev, &data, &header_path, *tries, &opts);
                }
            };
            match attempt {
                Attempt::Opened(u, secret) => return self.activate(p, &header, &data, u, secret.as_ref()),
                Attempt::Handover(secret) => return handover::open(p, &data, &header_path, &secret),
                Attempt::Failed(e) => return Err(e),
                Attempt::NotOpened(why) => last_error = why.or(last_error),
            }
        }
        Err(Error::KeyFileFailed { name: name.to_owned(), why: last_error.unwrap_or_default() })
    }

    fn wait(&self, name: &str, spec: &DeviceSpec, timeout: Duration) -> Result<PathBuf, Error> {
        let wanted = [Wanted { spec: spec.clone(), timeout }];
        match devices::wait_for(&wanted, &self.env.roots).pop() {
            Some(Ok(found)) => Ok(found.path),
            Some(Err(source)) => Err(Error::DeviceMissing { name: name.to_owned(), source }),
            None => unreachable_wait(name, spec, timeout),
        }
    }

    fn try_key_file(
        &mut self,
        p: &Planned,
        header: &Header,
        dev: &mut File,
        k: &KeyFile,
        opts: &Options,
    ) -> Attempt {
        let spec = KeyFileSpec {
            path: k.path.clone(),
            device: k.device.clone(),
            region: Region { offset: k.offset, size: k.size },
            timeout: k.timeout(),
        };
        let key = match keyfile::fetch(&spec, &self.env.roots) {
            Ok(key) => key,
            Err(e) => {
                log::warn(&format!("{}: {e}", p.name));
                return Attempt::NotOpened(Some(e.to_string()));
            }
        };
        match luks::unlock::open(header, dev, key.as_bytes(), opts) {
            Ok(u) => {
                log::info(&format!("{}: opened by the key file (keyslot {})", p.name, u.keyslot));
                Attempt::Opened(u, None)
            }
            Err(e) if is_wrong_key(&e) => {
                log::warn(&format!("{}: the key file {} opens no keyslot", p.name, k.path.display()));
                Attempt::NotOpened(Some(format!("the key file {} opens no keyslot", k.path.display())))
            }
            Err(e) if handover::wanted(&e) => Attempt::Handover(key),
            Err(source) => Attempt::Failed(Error::Unlock { name: p.name.to_string(), source }),
        }
    }

    fn try_cached(&mut self, header: &Header, dev: &mut File, opts: &Options) -> Attempt {
        for (i, pass) in self.cache.iter().enumerate() {
            if let Ok(u) = luks::unlock::open(header, dev, pass.as_bytes(), opts) {
                log::info(&format!("opened by the passphrase of an earlier device (keyslot {})", u.keyslot));
                let secret = pass.duplicate();
                // The one that worked goes first next time.
                let hit = self.cache.remove(i);
                self.cache.insert(0, hit);
                return Attempt::Opened(u, Some(secret));
            }
        }
        Attempt::NotOpened(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn ask(
        &mut self,
        p: &Planned,
        header: &Header,
        dev: &mut File,
        data: &Path,
        header_path: &Path,
        tries: u32,
        opts: &Options,
    ) -> Result<Opened, Error> {
        let request = askpass::Request {
            id: format!("cryptsetup:{}", data.display()),
            message: format!("Please enter passphrase for disk {} ({})", p.name, p.device),
            tries,
            console: self.env.console.clone(),
            agent_dir: self.env.agent_dir.clone(),
            timeout: None,
        };
        let mut unlocked: Option<Unlocked> = None;
        let mut by_cryptsetup = false;
        let mut verify = |pass: &Secret| match luks::unlock::open(header, dev, pass.as_bytes(), opts) {
            Ok(u) => {
                unlocked = Some(u);
                Verdict::Accept
            }
            Err(e) if is_wrong_key(&e) => Verdict::Reject("wrong passphrase".to_owned()),
            // cryptsetup tells a wrong passphrase from a failure itself.
            Err(e) if handover::wanted(&e) => match handover::open(p, data, header_path, pass) {
                Ok(_) => {
                    by_cryptsetup = true;
                    Verdict::Accept
                }
                Err(e) => Verdict::Reject(e.to_string()),
            },
            Err(e) => Verdict::Reject(e.to_string()),
        };
        let pass = askpass::ask(&request, &mut verify)
            .map_err(|source| Error::Ask { name: p.name.to_string(), source })?;
        let cached = pass.duplicate();
        let opened = match unlocked {
            Some(u) => {
                log::info(&format!("{}: opened by passphrase (keyslot {})", p.name, u.keyslot));
                self.activate(p, header, data, u, None)?
            }
            None if by_cryptsetup => Opened::Cryptsetup,
            None => {
                return Err(Error::Handover {
                    name: p.name.to_string(),
                    why: "no keyslot opened".to_owned(),
                });
            }
        };
        self.cache.insert(0, cached);
        Ok(opened)
    }

    fn activate(
        &mut self,
        p: &Planned,
        header: &Header,
        data: &Path,
        u: Unlocked,
        passphrase: Option<&Secret>,
    ) -> Result<Opened, Error> {
        let flag = |f: &str| header.flags.iter().any(|x| x == f);
        let req = crypt::Activation {
            name: &p.name,
            header,
            segment: &u.segment,
            volume_key: &u.volume_key,
            data_device: data,
            read_only: false,
            allow_discards: p.allow_discards || flag("allow-discards"),
            no_read_workqueue: p.bypass_workqueues || flag("no-read-workqueue"),
            no_write_workqueue: p.bypass_workqueues || flag("no-write-workqueue"),
            use_keyring: true,
        };
        let active = crypt::activate(&req)
            .map_err(|source| Error::Activate { name: p.name.to_string(), source: Box::new(source) })?;
        for note in &active.notes {
            log::info(&format!("{}: {note}", p.name));
        }
        if active.state == ActiveState::AlreadyActive {
            return Ok(Opened::AlreadyOpen);
        }
        if let Some(pass) = passphrase
            && !self.cache.iter().any(|c| c == pass)
        {
            self.cache.insert(0, pass.duplicate());
        }
        Ok(Opened::Native { keyslot: u.keyslot, key_in_keyring: active.key_in_keyring, node: active.node })
    }
}

/// What one key source gave.
enum Attempt {
    Opened(Unlocked, Option<Secret>),
    /// The key is right for all lethe can tell, but the cipher is not lethe's: cryptsetup's job.
    Handover(Secret),
    /// This source did not open the device (why, for the final error); try the next.
    NotOpened(Option<String>),
    /// Stop: the device cannot be opened whatever the key.
    Failed(Error),
}

fn is_wrong_key(e: &UnlockError) -> bool {
    matches!(e, UnlockError::WrongKey { .. })
}

fn unreachable_wait(name: &str, spec: &DeviceSpec, timeout: Duration) -> Result<PathBuf, Error> {
    Err(Error::DeviceMissing {
        name: name.to_owned(),
        source: devices::WaitError::NotFound { spec: spec.clone(), waited: timeout, seen: Vec::new() },
    })
}
