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
/// dm-crypt and the ciphers LUKS uses by default (xts needs ecb; the kernel asks for others
/// through the `modprobe` applet). Those not in the kernel's module tree are built in or absent.
pub const KERNEL_MODULES: [&str; 8] =
    ["dm_mod", "dm_crypt", "xts", "ecb", "essiv", "aesni_intel", "cbc", "sha256_generic"];

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
    #[error(
        "{name}: the header puts the data at offset 0, over the header itself: \
         a header made for detached use needs luks.devices.{name}.header"
    )]
    HeaderOverlapsData { name: String },
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
    /// The SSH unlock server, asked alongside the console once started.
    #[cfg(feature = "ssh")]
    ssh: Option<crate::ssh::Server>,
}

impl Unlocker {
    pub fn new(env: Env) -> Unlocker {
        Unlocker {
            env,
            cache: Vec::new(),
            #[cfg(feature = "ssh")]
            ssh: None,
        }
    }

    /// Starts the SSH unlock server of `config`'s `ssh` section (`exe ssh serve`), unless it
    /// runs already. If it cannot start, that is said and the console still asks.
    #[cfg(feature = "ssh")]
    pub fn start_ssh(&mut self, exe: &Path, config: &Path) {
        if self.ssh.is_some() {
            return;
        }
        match crate::ssh::Server::spawn(exe, config) {
            Ok(server) => self.ssh = Some(server),
            Err(e) => {
                log::warn(&format!("ssh: the unlock server did not start: {e}; asking on the console only"))
            }
        }
    }

    /// Stops the SSH unlock server: its clients are told that everything is unlocked.
    #[cfg(feature = "ssh")]
    pub fn stop_ssh(&mut self) {
        if let Some(server) = self.ssh.take() {
            server.stop();
        }
    }

    /// Whether some device of `plan` may ask for a passphrase (what the SSH server is for).
    pub fn may_ask(plan: &[Planned]) -> bool {
        plan.iter().any(|p| p.sources.iter().any(|s| matches!(s, KeySource::Ask { .. })))
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
        refuse_unopenable(p, &header)?;
        let (opened, passphrase) = match self.find_key(p, &header, &mut header_dev, &data, &header_path)? {
            Found::Native(u, passphrase) => (self.activate(p, &header, &data, u)?, passphrase),
            Found::Cryptsetup(passphrase) => (Opened::Cryptsetup, passphrase),
        };
        if let Some(pass) = passphrase {
            self.remember(pass);
        }
        Ok(opened)
    }

    /// Tries the key sources in order until one gives a key: lethe's, verified, or one that
    /// opened the device through cryptsetup.
    fn find_key(
        &mut self,
        p: &Planned,
        header: &Header,
        header_dev: &mut File,
        data: &Path,
        header_path: &Path,
    ) -> Result<Found, Error> {
        let name = p.name.as_str();
        let opts = Options::default();
        let mut last_error: Option<String> = None;
        for source in &p.sources {
            let attempt = match source {
                KeySource::KeyFile(k) => self.try_key_file(p, header, header_dev, k, &opts),
                KeySource::Cached => self.try_cached(header, header_dev, &opts),
                KeySource::Ask { tries } => {
                    return self.ask(p, header, header_dev, data, header_path, *tries, &opts);
                }
            };
            match attempt {
                Attempt::Opened(u, secret) => return Ok(Found::Native(u, secret)),
                Attempt::Handover(secret) => match handover::open(p, data, header_path, &secret) {
                    Ok(_) => return Ok(Found::Cryptsetup(None)),
                    // A key file cryptsetup refused: the passphrase may still follow.
                    Err(e) => {
                        log::warn(&e.to_string());
                        last_error = Some(e.to_string());
                    }
                },
                Attempt::NotOpened(why) => last_error = why.or(last_error),
            }
        }
        Err(Error::KeyFileFailed { name: name.to_owned(), why: last_error.unwrap_or_default() })
    }

    /// Keeps a passphrase that opened a device first in line for the next one; never twice.
    fn remember(&mut self, pass: Secret) {
        if let Some(i) = self.cache.iter().position(|c| *c == pass) {
            let hit = self.cache.remove(i);
            self.cache.insert(0, hit);
        } else {
            self.cache.insert(0, pass);
        }
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
            Err(e) if handover::wanted(&e) => Attempt::Handover(key),
            // What no key can open was refused before; anything else is this key's keyslot
            // (wrong, unsupported, too costly): a passphrase may still open another.
            Err(e) => {
                let why = match e {
                    UnlockError::WrongKey { .. } => {
                        format!("the key file {} opens no keyslot", k.path.display())
                    }
                    e => format!("the key file {}: {e}", k.path.display()),
                };
                log::warn(&format!("{}: {why}", p.name));
                Attempt::NotOpened(Some(why))
            }
        }
    }

    fn try_cached(&mut self, header: &Header, dev: &mut File, opts: &Options) -> Attempt {
        for (i, pass) in self.cache.iter().enumerate() {
            if let Ok(u) = luks::unlock::open(header, dev, pass.as_bytes(), opts) {
                log::info(&format!(
                    "opened by the passphrase of an earlier device (keyslot {}, passphrase {})",
                    u.keyslot,
                    i + 1
                ));
                return Attempt::Opened(u, Some(pass.duplicate()));
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
    ) -> Result<Found, Error> {
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
            Err(UnlockError::WrongKey { .. }) => Verdict::Reject("wrong passphrase".to_owned()),
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
        #[cfg(feature = "ssh")]
        let mut remote = self.ssh.as_mut().map(|s| s.source(&request));
        #[cfg(feature = "ssh")]
        let mut extra: Vec<&mut dyn askpass::Source> =
            remote.iter_mut().map(|s| s as &mut dyn askpass::Source).collect();
        #[cfg(not(feature = "ssh"))]
        let mut extra: Vec<&mut dyn askpass::Source> = Vec::new();
        let asked = askpass::ask_with(&request, &mut extra, &mut verify);
        drop(extra);
        #[cfg(feature = "ssh")]
        if let Some(r) = remote {
            r.finish(asked.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        let pass = asked.map_err(|source| Error::Ask { name: p.name.to_string(), source })?;
        match unlocked {
            Some(u) => {
                log::info(&format!("{}: opened by passphrase (keyslot {})", p.name, u.keyslot));
                Ok(Found::Native(u, Some(pass)))
            }
            None if by_cryptsetup => Ok(Found::Cryptsetup(Some(pass))),
            None => Err(Error::Handover { name: p.name.to_string(), why: "no keyslot opened".to_owned() }),
        }
    }

    fn activate(&mut self, p: &Planned, header: &Header, data: &Path, u: Unlocked) -> Result<Opened, Error> {
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
        Ok(Opened::Native { keyslot: u.keyslot, key_in_keyring: active.key_in_keyring, node: active.node })
    }
}

/// What one key source gave.
enum Attempt {
    /// A verified key, and the passphrase it came from (to remember for the next device).
    Opened(Unlocked, Option<Secret>),
    /// The key is right for all lethe can tell, but the cipher is not lethe's: cryptsetup's job.
    Handover(Secret),
    /// This source did not open the device (why, for the final error); try the next.
    NotOpened(Option<String>),
}

/// The key the sources gave: lethe's to activate, or the device opened by cryptsetup; each
/// with the passphrase to remember, if it was one.
enum Found {
    Native(Unlocked, Option<Secret>),
    Cryptsetup(Option<Secret>),
}

/// What no key can change, refused before a key is fetched or asked for: a header this build
/// cannot activate (an unknown mandatory requirement, no keyslot to try), and data that would
/// be mapped over the header on the same device (cryptsetup's "Device header overlaps with
/// data area": only a detached header allows a payload at offset 0).
fn refuse_unopenable(p: &Planned, header: &Header) -> Result<(), Error> {
    let name = p.name.to_string();
    luks::unlock::usable(header, &Options::default())
        .map_err(|source| Error::Unlock { name: name.clone(), source })?;
    let at_zero = header
        .segments
        .iter()
        .filter(|s| !s.flags.iter().any(|f| f.starts_with("backup-")))
        .any(|s| s.offset == 0);
    if p.header.is_none() && at_zero {
        return Err(Error::HeaderOverlapsData { name });
    }
    Ok(())
}

fn unreachable_wait(name: &str, spec: &DeviceSpec, timeout: Duration) -> Result<PathBuf, Error> {
    Err(Error::DeviceMissing {
        name: name.to_owned(),
        source: devices::WaitError::NotFound { spec: spec.clone(), waited: timeout, seen: Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use luks::model::{HashAlg, HeaderCopy, Segment, SegmentKind, SegmentSize, Version};

    use super::*;

    const PASS: &[u8] = b"the passphrase of the first device";
    const KEY: &[u8] = b"bytes of a key file on a stick";

    struct Temp(PathBuf);

    impl Temp {
        fn new(tag: &str) -> Temp {
            let p = std::env::temp_dir().join(format!("lethe-unlock-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Temp(p)
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn have_cryptsetup() -> bool {
        let ok = Command::new("cryptsetup").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok || std::env::var("CI").as_deref() != Ok("true"), "CI=true and cryptsetup is missing");
        ok
    }

    fn cryptsetup(args: &[&str], stdin: &[u8]) {
        let mut child = Command::new("cryptsetup")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cryptsetup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Rewrites both LUKS2 metadata copies with `edit` applied and their SHA-256 resealed.
    fn edit_luks2_json(img: &Path, edit: impl Fn(&mut serde_json::Value)) {
        let mut dev = std::fs::read(img).unwrap();
        let hdr_size = u64::from_be_bytes(dev[8..16].try_into().unwrap()) as usize;
        for at in [0, hdr_size] {
            let area = &dev[at + 4096..at + hdr_size];
            let end = area.iter().position(|b| *b == 0).unwrap();
            let mut json: serde_json::Value = serde_json::from_slice(&area[..end]).unwrap();
            edit(&mut json);
            let mut text = serde_json::to_vec(&json).unwrap();
            text.resize(hdr_size - 4096, 0);
            dev[at + 4096..at + hdr_size].copy_from_slice(&text);
            dev[at + 448..at + 512].fill(0);
            let mut sum = [0u8; 32];
            luks::hash::digest_into(&HashAlg::Sha256, &[&dev[at..at + 4096], &text], &mut sum).unwrap();
            dev[at + 448..at + 480].copy_from_slice(&sum);
        }
        std::fs::write(img, dev).unwrap();
    }

    /// A LUKS2 image: PASS in keyslot 0; the key file KEY in keyslot 1, whose Argon2 memory
    /// cost is then raised past what lethe derives (4 GiB): the key file's keyslot fails.
    fn image_with_a_failing_key_file_keyslot(dir: &Path) -> (PathBuf, PathBuf) {
        let img = dir.join("disk.img");
        std::fs::File::create(&img).unwrap().set_len(20 << 20).unwrap();
        let key = dir.join("key.bin");
        std::fs::write(&key, KEY).unwrap();
        let img_s = img.to_str().unwrap();
        let pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
        let mut format = vec!["luksFormat", "--batch-mode", "--type", "luks2", "--key-size", "256"];
        format.extend(pbkdf2);
        format.extend(["--key-file=-", img_s]);
        cryptsetup(&format, PASS);
        let argon2 = ["--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-force-iterations", "4"];
        let mut add = vec!["luksAddKey", "--batch-mode", "--key-slot", "1", "--key-file=-"];
        add.extend(argon2);
        add.extend([img_s, key.to_str().unwrap()]);
        cryptsetup(&add, PASS);
        edit_luks2_json(&img, |j| j["keyslots"]["1"]["kdf"]["memory"] = (4u64 << 20 | 1).into());
        (img, key)
    }

    fn planned(sources: Vec<KeySource>, header: Option<HeaderSource>) -> Planned {
        Planned {
            name: MapName::new("cryptroot").unwrap(),
            device: DeviceSpec::Path("/dev/vda2".into()),
            timeout: Duration::ZERO,
            header,
            sources,
            allow_discards: false,
            bypass_workqueues: false,
        }
    }

    fn key_file(path: &Path) -> KeySource {
        KeySource::KeyFile(KeyFile {
            path: path.to_owned(),
            device: None,
            offset: 0,
            size: None,
            timeout: None,
        })
    }

    fn unlocker(dir: &Path, cache: &[&[u8]]) -> Unlocker {
        let env = Env { roots: Roots::system(), console: None, agent_dir: dir.join("ask") };
        let mut u = Unlocker::new(env);
        u.cache = cache.iter().map(|p| Secret::from_slice(p)).collect();
        u
    }

    fn find_key(u: &mut Unlocker, p: &Planned, img: &Path) -> Result<Found, Error> {
        let header = luks::header::read_path(img).unwrap();
        u.find_key(p, &header, &mut File::open(img).unwrap(), img, img)
    }

    #[test]
    fn a_key_file_whose_keyslot_fails_falls_back_to_the_passphrase() {
        if !have_cryptsetup() {
            return;
        }
        let t = Temp::new("kf-fallback");
        let (img, key) = image_with_a_failing_key_file_keyslot(&t.0);
        // fallbackToPassword: key file, then the passphrase of an earlier device.
        let p = planned(vec![key_file(&key), KeySource::Cached], None);
        match find_key(&mut unlocker(&t.0, &[b"another", PASS]), &p, &img) {
            Ok(Found::Native(u, Some(pass))) => {
                assert_eq!((u.keyslot, pass.as_bytes()), (0, PASS));
            }
            Ok(_) => panic!("not opened by the cached passphrase"),
            Err(e) => panic!("{e}"),
        }
        // Without the fallback: the key file's failure, named.
        let p = planned(vec![key_file(&key)], None);
        let Err(e) = find_key(&mut unlocker(&t.0, &[PASS]), &p, &img) else { panic!("opened") };
        let msg = e.to_string();
        assert!(matches!(e, Error::KeyFileFailed { .. }), "{msg}");
        assert!(msg.contains("key.bin: keyslot 1: key derivation: argon2 memory cost"), "{msg}");
    }

    #[test]
    fn a_wrong_key_file_then_no_cached_passphrase_says_why() {
        if !have_cryptsetup() {
            return;
        }
        let t = Temp::new("kf-wrong");
        let (img, _) = image_with_a_failing_key_file_keyslot(&t.0);
        let wrong = t.0.join("wrong.bin");
        std::fs::write(&wrong, b"not the key").unwrap();
        // The wrong key file also meets keyslot 1's failure; the cache has nothing that opens.
        let p = planned(vec![key_file(&wrong), KeySource::Cached], None);
        let Err(e) = find_key(&mut unlocker(&t.0, &[b"another"]), &p, &img) else { panic!("opened") };
        assert!(e.to_string().contains("wrong.bin: keyslot 1: key derivation"), "{e}");
        // A missing key file is why, too.
        let p = planned(vec![key_file(&t.0.join("absent.bin")), KeySource::Cached], None);
        let Err(e) = find_key(&mut unlocker(&t.0, &[]), &p, &img) else { panic!("opened") };
        assert!(e.to_string().contains("absent.bin"), "{e}");
    }

    #[test]
    fn passphrases_are_remembered_once_the_latest_first() {
        let t = Temp::new("remember");
        let mut u = unlocker(&t.0, &[b"one", b"two"]);
        u.remember(Secret::from_slice(b"three"));
        u.remember(Secret::from_slice(b"two"));
        let cache: Vec<&[u8]> = u.cache.iter().map(Secret::as_bytes).collect();
        assert_eq!(cache, [&b"two"[..], b"three", b"one"]);
    }

    fn header(offset: u64, requirements: &[&str]) -> Header {
        let segment = Segment {
            id: 0,
            kind: SegmentKind::Crypt,
            offset,
            size: SegmentSize::Dynamic,
            iv_tweak: 0,
            encryption: luks::model::CipherSpec("aes-xts-plain64".into()),
            sector_size: 512,
            flags: vec![],
        };
        Header {
            version: Version::Luks1,
            uuid: "0b4a6a2e-4d3d-4c55-9c43-2b8f4d1e6f10".into(),
            label: None,
            subsystem: None,
            seqid: 0,
            copy: HeaderCopy::Primary,
            metadata_size: 1 << 20,
            keyslots_size: 1 << 20,
            keyslots: vec![luks::model::Keyslot {
                id: 0,
                kind: luks::model::KeyslotKind::Luks2,
                key_size: 32,
                priority: luks::model::Priority::Normal,
                kdf: luks::model::Kdf::Pbkdf2 { hash: HashAlg::Sha256, iterations: 1000, salt: vec![0; 32] },
                af: luks::model::AfParams { stripes: 4000, hash: HashAlg::Sha256 },
                area: luks::model::Area {
                    offset: 4096,
                    size: 128_000,
                    encryption: luks::model::CipherSpec("aes-xts-plain64".into()),
                    key_size: 32,
                },
            }],
            segments: vec![segment],
            digests: vec![],
            tokens: vec![],
            flags: vec![],
            mandatory_requirements: requirements.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn data_at_offset_0_is_opened_only_with_a_detached_header() {
        let detached = Some(HeaderSource::File("/etc/lethe/root.hdr".into()));
        assert!(refuse_unopenable(&planned(vec![], None), &header(2 << 20, &[])).is_ok());
        let e = refuse_unopenable(&planned(vec![], None), &header(0, &[])).unwrap_err();
        assert!(matches!(e, Error::HeaderOverlapsData { .. }), "{e}");
        assert!(refuse_unopenable(&planned(vec![], detached), &header(0, &[])).is_ok());
    }

    #[test]
    fn what_no_key_opens_is_refused_before_any_key_is_sought() {
        let e = refuse_unopenable(&planned(vec![], None), &header(2 << 20, &["online-reencrypt-v2"]));
        let e = e.unwrap_err().to_string();
        assert!(e.starts_with("cryptroot: the header has the mandatory requirement"), "{e}");
    }
}
