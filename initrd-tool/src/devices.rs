//! Finding block devices by UUID=, LABEL=, PARTUUID= or path under /sys and /dev, waiting for several at once.
//!
//! Without udev nothing links /dev/disk/by-*, so the scan reads /sys/block itself: every disk
//! and partition with a size, its /dev node opened read-only and probed ([`crate::probe`]), and
//! for partitions the PARTUUID from the parent disk's partition table. A device is probed once
//! per identity (device number, size, disk sequence number): a medium that changes or a device
//! that appears later is probed again, an unchanged one never.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::devspec::DeviceSpec;
use crate::probe::{self, PartitionTable, Probe, ReaderSource};

/// How often the waiter looks again: short enough not to add boot time, long enough that
/// reading /sys does not keep a CPU busy.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Where the block devices are described (/sys) and where their nodes are (/dev).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub sys: PathBuf,
    pub dev: PathBuf,
    /// Accept regular files where device nodes belong: tests stand image files in for disks.
    pub allow_regular_files: bool,
}

impl Roots {
    /// The live system: /sys and /dev, real block devices only.
    pub fn system() -> Self {
        Roots { sys: PathBuf::from("/sys"), dev: PathBuf::from("/dev"), allow_regular_files: false }
    }
}

/// One block device as the scan saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The kernel's name: `vda`, `vda1`, `nvme0n1p2`.
    pub name: String,
    /// Its node under the /dev root (for a path spec: the path asked for).
    pub path: PathBuf,
    /// Major and minor number, from /sys.
    pub devno: Option<(u32, u32)>,
    /// Size in bytes, from /sys (absent when /sys does not say).
    pub size: Option<u64>,
    /// For a partition: its disk and its number.
    pub disk: Option<String>,
    pub partition: Option<u32>,
    /// The one signature on the device.
    pub probe: Option<Probe>,
    /// Several contradicting signatures: none is trusted, as with blkid (and so udev).
    pub conflicts: Vec<Probe>,
    /// For a partition: its PARTUUID from the disk's partition table.
    pub partuuid: Option<String>,
    /// Why the device could not be probed (kept for the console message).
    pub error: Option<String>,
    /// Its first read has not answered yet (slow, or hanging in I/O).
    pub reading: bool,
}

impl Found {
    fn is_empty(&self) -> bool {
        self.size == Some(0)
    }
}

impl fmt::Display for Found {
    /// `vda1 (ext4 UUID=... LABEL=nix PARTUUID=...)`, for console messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.name)?;
        if let Some(e) = &self.error {
            write!(f, "unreadable: {e}")?;
        } else if self.reading {
            f.write_str("still being read")?;
        } else if self.is_empty() {
            f.write_str("empty")?;
        } else if let Some(p) = &self.probe {
            write!(f, "{p}")?;
        } else if !self.conflicts.is_empty() {
            let kinds: Vec<&str> = self.conflicts.iter().map(|p| p.kind.fs_type()).collect();
            write!(f, "ambiguous: {}", kinds.join(" + "))?;
        } else {
            f.write_str("no file system")?;
        }
        if let Some(p) = &self.partuuid {
            write!(f, " PARTUUID={p}")?;
        }
        f.write_str(")")
    }
}

/// /sys could not be listed (not mounted, or not a sysfs).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot list block devices in {}: {source}", path.display())]
pub struct ScanError {
    pub path: PathBuf,
    #[source]
    pub source: Arc<io::Error>,
}

/// Why one device was not found in time.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{spec} did not appear within {}; devices seen: {}", Seconds(*.waited), Seen(.seen))]
    NotFound { spec: DeviceSpec, waited: Duration, seen: Vec<Found> },
    #[error("{spec} could not be looked for within {}: {source}", Seconds(*.waited))]
    Scan {
        spec: DeviceSpec,
        waited: Duration,
        #[source]
        source: ScanError,
    },
}

/// A duration as people read it on a console: `5 s`, `0.5 s` (a tenth is precise enough, and
/// the few milliseconds a poll overshoots a timeout by do not show).
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.1}", self.0.as_secs_f64());
        write!(f, "{} s", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// The devices that were there, leaving out the empty ones (unused loop devices, drives
/// without a medium), which only hide the interesting lines.
struct Seen<'a>(&'a [Found]);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for d in self.0.iter().filter(|d| !d.is_empty()) {
            if any {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Why one device could not be probed.
#[derive(Debug, thiserror::Error)]
enum DeviceError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{} is not a block device", path.display())]
    NotBlockDevice { path: PathBuf },
    #[error("{} is device {}:{}, but /sys says {}:{}", path.display(), found.0, found.1, expected.0, expected.1)]
    Stale { path: PathBuf, expected: (u32, u32), found: (u32, u32) },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
}

/// A device wanted, and for how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub spec: DeviceSpec,
    pub timeout: Duration,
}

/// Every block device under `roots` right now, waiting at most [`SCAN_PATIENCE`] for slow ones.
pub fn scan(roots: &Roots) -> Result<Vec<Found>, ScanError> {
    Scanner::new(roots.clone()).scan(SCAN_PATIENCE)
}

/// How long a one-shot [`scan`] waits for devices that are slow to answer before it lists
/// them as still being read.
pub const SCAN_PATIENCE: Duration = Duration::from_secs(5);

/// Waits for all `wanted` devices together; one result each, in order. See [`Scanner::wait_for`].
pub fn wait_for(wanted: &[Wanted], roots: &Roots) -> Vec<Result<Found, WaitError>> {
    Scanner::new(roots.clone()).wait_for(wanted)
}

/// The identity probe results are kept under: a change in any part means another medium.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    devno: Option<(u32, u32)>,
    size: Option<u64>,
    /// The disk's sequence number (Linux 5.15+), bumped when a loop device gets another file.
    diskseq: Option<String>,
}

/// What reading one device taught.
#[derive(Debug, Clone)]
struct Facts {
    /// The signatures on it, or why it could not be read.
    signatures: Result<Vec<Probe>, String>,
    /// For a disk: its partition table.
    table: Option<PartitionTable>,
    /// The node could not be opened (perhaps not created yet): ask again on the next scan.
    retry: bool,
}

/// A device being read in its own thread, or done.
#[derive(Debug)]
enum Reading {
    Running(mpsc::Receiver<Facts>),
    Done(Facts),
}

#[derive(Debug)]
struct Tracked {
    identity: Identity,
    reading: Reading,
}

/// Scans repeatedly, reading each device once per identity (new or changed devices only).
///
/// Each device is read in a thread of its own, so one that hangs in I/O (a failing disk
/// retrying for minutes) delays nothing: it is listed as still being read, and every timeout
/// still fires on time.
#[derive(Debug)]
pub struct Scanner {
    roots: Roots,
    devices: HashMap<String, Tracked>,
}

impl Scanner {
    pub fn new(roots: Roots) -> Self {
        Scanner { roots, devices: HashMap::new() }
    }

    /// Every block device now, sorted by name (disks and their partitions); devices that have
    /// not answered within `patience` are listed as still being read.
    pub fn scan(&mut self, patience: Duration) -> Result<Vec<Found>, ScanError> {
        let entries = sys_entries(&self.roots.sys)?;
        self.devices.retain(|name, _| entries.iter().any(|e| e.name == *name));
        for e in entries.iter().filter(|e| e.identity.size != Some(0)) {
            self.start_reading(e);
        }
        self.collect(Instant::now() + patience);
        Ok(entries.iter().map(|e| self.found(e, &entries)).collect())
    }

    /// Polls every [`POLL_INTERVAL`] until each wanted device is found or its own timeout has
    /// passed; all are waited for at once, so the slowest device, not their sum, sets the time.
    pub fn wait_for(&mut self, wanted: &[Wanted]) -> Vec<Result<Found, WaitError>> {
        let start = Instant::now();
        let mut results: Vec<Option<Result<Found, WaitError>>> = wanted.iter().map(|_| None).collect();
        loop {
            let scanned = self.scan(POLL_INTERVAL);
            let waited = start.elapsed();
            for (slot, w) in results.iter_mut().zip(wanted).filter(|(s, _)| s.is_none()) {
                *slot = match &scanned {
                    Ok(devices) => match find(&w.spec, devices, &self.roots) {
                        Some(f) => Some(Ok(f)),
                        None if waited >= w.timeout => Some(Err(WaitError::NotFound {
                            spec: w.spec.clone(),
                            waited,
                            seen: devices.clone(),
                        })),
                        None => None,
                    },
                    Err(e) if waited >= w.timeout => {
                        Some(Err(WaitError::Scan { spec: w.spec.clone(), waited, source: e.clone() }))
                    }
                    Err(_) => None,
                };
            }
            let next_deadline =
                results.iter().zip(wanted).filter(|(s, _)| s.is_none()).map(|(_, w)| w.timeout).min();
            let Some(deadline) = next_deadline else { break };
            std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_sub(start.elapsed())));
        }
        results.into_iter().flatten().collect()
    }

    /// Starts reading a device that is new, changed, or could not be opened last time.
    fn start_reading(&mut self, e: &SysEntry) {
        let current = self.devices.get(&e.name).filter(|t| t.identity == e.identity);
        if current.is_some_and(|t| !matches!(&t.reading, Reading::Done(f) if f.retry)) {
            return;
        }
        let job = ReadJob {
            path: self.roots.dev.join(&e.devname),
            devno: e.identity.devno,
            allow_regular_files: self.roots.allow_regular_files,
            // A disk's partition table is read with it: its partitions need the PARTUUIDs.
            table_sector_size: e.partition.is_none().then(|| {
                read_sys_u64(&e.dir.join("queue/logical_block_size"))
                    .and_then(|s| u32::try_from(s).ok())
                    .unwrap_or(512)
            }),
        };
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name(format!("probe {}", e.name)).spawn(move || {
            let _ = tx.send(job.run());
        });
        let reading = match spawned {
            Ok(_) => Reading::Running(rx),
            Err(err) => Reading::Done(Facts {
                signatures: Err(format!("cannot start reading it: {err}")),
                table: None,
                retry: true,
            }),
        };
        self.devices.insert(e.name.clone(), Tracked { identity: e.identity.clone(), reading });
    }

    /// Gathers the answers of running reads until `deadline`.
    fn collect(&mut self, deadline: Instant) {
        for (name, t) in &mut self.devices {
            let Reading::Running(rx) = &t.reading else { continue };
            let facts = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(facts) => facts,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Facts { signatures: Err("reading it failed".to_owned()), table: None, retry: true }
                }
            };
            log::debug!("probed {name}: {:?}", facts.signatures);
            t.reading = Reading::Done(facts);
        }
    }

    fn facts(&self, name: &str) -> Option<&Facts> {
        match &self.devices.get(name)?.reading {
            Reading::Done(f) => Some(f),
            Reading::Running(_) => None,
        }
    }

    /// What is known about one device, with its PARTUUID from its disk's table.
    fn found(&self, e: &SysEntry, entries: &[SysEntry]) -> Found {
        let mut f = Found {
            name: e.name.clone(),
            path: self.roots.dev.join(&e.devname),
            devno: e.identity.devno,
            size: e.identity.size,
            disk: e.disk.clone(),
            partition: e.partition,
            probe: None,
            conflicts: Vec::new(),
            partuuid: None,
            error: None,
            reading: false,
        };
        if let (Some(disk), Some(number)) = (&e.disk, e.partition) {
            let disk_known = entries.iter().any(|d| d.name == *disk);
            let table = self.facts(disk).filter(|_| disk_known).and_then(|d| d.table.as_ref());
            f.partuuid = table.and_then(|t| t.partuuid(number)).map(str::to_owned);
        }
        if f.is_empty() {
            return f;
        }
        match self.facts(&e.name).map(|facts| &facts.signatures) {
            None => f.reading = true,
            Some(Ok(all)) if all.len() == 1 => f.probe = all.first().cloned(),
            Some(Ok(all)) => f.conflicts.clone_from(all),
            Some(Err(err)) => f.error = Some(err.clone()),
        }
        f
    }
}

/// Everything a probe thread needs to read one device.
#[derive(Debug)]
struct ReadJob {
    path: PathBuf,
    devno: Option<(u32, u32)>,
    allow_regular_files: bool,
    table_sector_size: Option<u32>,
}

impl ReadJob {
    fn run(self) -> Facts {
        let file = match self.open() {
            Ok(file) => file,
            Err(err) => return Facts { signatures: Err(err.to_string()), table: None, retry: true },
        };
        let mut src = match ReaderSource::new(file) {
            Ok(src) => src,
            Err(source) => {
                let err = DeviceError::Read { path: self.path, source };
                return Facts { signatures: Err(err.to_string()), table: None, retry: false };
            }
        };
        let signatures = probe::probe_all(&mut src)
            .map_err(|source| DeviceError::Read { path: self.path.clone(), source }.to_string());
        let table = self.table_sector_size.and_then(|ss| {
            probe::partition_table(&mut src, ss).unwrap_or_else(|err| {
                log::debug!("cannot read the partition table of {}: {err}", self.path.display());
                None
            })
        });
        Facts { signatures, table, retry: false }
    }

    /// Opens a device node read-only without side effects (no controlling tty, no waiting for
    /// a medium) and checks that it is the device /sys describes.
    fn open(&self) -> Result<File, DeviceError> {
        let path = &self.path;
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rustix::fs::open(path, flags, Mode::empty())
            .map_err(|e| DeviceError::Open { path: path.clone(), source: e.into() })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| DeviceError::Open { path: path.clone(), source: e })?;
        if meta.file_type().is_block_device() {
            let found = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
            match self.devno {
                Some(expected) if expected != found => {
                    Err(DeviceError::Stale { path: path.clone(), expected, found })
                }
                _ => Ok(file),
            }
        } else if meta.is_file() && self.allow_regular_files {
            Ok(file)
        } else {
            Err(DeviceError::NotBlockDevice { path: path.clone() })
        }
    }
}

/// The device `spec` names among `devices`, if it is there. Several devices may share a UUID
/// (btrfs and ZFS members legitimately, clones by accident): the first by name is taken.
pub fn find(spec: &DeviceSpec, devices: &[Found], roots: &Roots) -> Option<Found> {
    let DeviceSpec::Path(path) = spec else { return first_match(spec, devices) };
    let node = dev_path(path, &roots.dev)?;
    match fs::metadata(&node) {
        Ok(meta) if meta.file_type().is_block_device() => {
            let devno = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
            Some(with_path(devices.iter().find(|d| d.devno == Some(devno)), &node))
        }
        Ok(meta) if meta.is_file() && roots.allow_regular_files => {
            let real = fs::canonicalize(&node).ok();
            let same = devices.iter().find(|d| real.is_some() && fs::canonicalize(&d.path).ok() == real);
            Some(with_path(same, &node))
        }
        // No udev, no /dev/disk: a by-uuid, by-label or by-partuuid path is what it says.
        _ => by_path_spec(path).and_then(|s| first_match(&s, devices)),
    }
}

fn first_match(spec: &DeviceSpec, devices: &[Found]) -> Option<Found> {
    let mut hits = devices.iter().filter(|d| matches(spec, d));
    let first = hits.next()?;
    let others: Vec<&str> = hits.map(|d| d.name.as_str()).collect();
    if !others.is_empty() && !first.probe.as_ref().is_some_and(|p| p.kind.is_multi_device()) {
        log::warn!("{spec} matches {} and also {}; using {}", first.name, others.join(", "), first.name);
    }
    Some(first.clone())
}

/// The device found for a path spec, reported under the path that was asked for.
fn with_path(device: Option<&Found>, node: &Path) -> Found {
    let mut f = device.cloned().unwrap_or_else(|| Found {
        name: node.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: PathBuf::new(),
        devno: None,
        size: None,
        disk: None,
        partition: None,
        probe: None,
        conflicts: Vec::new(),
        partuuid: None,
        error: None,
        reading: false,
    });
    f.path = node.to_owned();
    f
}

fn matches(spec: &DeviceSpec, d: &Found) -> bool {
    let probe = d.probe.as_ref();
    match spec {
        DeviceSpec::Uuid(u) => {
            probe.and_then(|p| p.uuid.as_deref()).is_some_and(|v| v.eq_ignore_ascii_case(u))
        }
        DeviceSpec::Label(l) => probe.and_then(|p| p.label.as_deref()) == Some(l.as_str()),
        DeviceSpec::PartUuid(u) => d.partuuid.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(u)),
        DeviceSpec::Path(_) => false,
    }
}

/// `/dev/x` under the /dev root in use.
fn dev_path(path: &str, dev: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix("/dev/")?;
    Some(dev.join(rest))
}

/// The spec a udev /dev/disk/by-* link stands for (its name udev-escaped: `\x20` for a space).
fn by_path_spec(path: &str) -> Option<DeviceSpec> {
    let (kind, name) = path.strip_prefix("/dev/disk/")?.split_once('/')?;
    let value = unescape_udev(name)?;
    match kind {
        "by-uuid" => Some(DeviceSpec::Uuid(value)),
        "by-label" => Some(DeviceSpec::Label(value)),
        "by-partuuid" => Some(DeviceSpec::PartUuid(value)),
        _ => None,
    }
}

fn unescape_udev(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let escaped = tail.strip_prefix(b"x").and_then(|t| Some((t.get(..2)?, t.get(2..)?)));
        match (b, escaped) {
            (b'\\', Some((hex, after))) => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                rest = after;
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A block device as /sys/block describes it.
#[derive(Debug, Clone)]
struct SysEntry {
    name: String,
    /// Its directory under /sys/block (a partition's is inside its disk's).
    dir: PathBuf,
    /// The node name under /dev (uevent's DEVNAME: `cciss/c0d0` for `cciss!c0d0`).
    devname: String,
    identity: Identity,
    disk: Option<String>,
    partition: Option<u32>,
}

/// Disks from /sys/block and, inside each, the partitions (the directories with a `partition`
/// file), sorted by name.
fn sys_entries(sys: &Path) -> Result<Vec<SysEntry>, ScanError> {
    let block = sys.join("block");
    let listing = fs::read_dir(&block).map_err(|e| ScanError { path: block.clone(), source: Arc::new(e) })?;
    let mut out = Vec::new();
    for disk in listing.flatten() {
        let name = disk.file_name().to_string_lossy().into_owned();
        let dir = block.join(&name);
        let disk_entry = sys_entry(&dir, name, None, None);
        out.extend(partitions(&disk_entry));
        out.push(disk_entry);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn partitions(disk: &SysEntry) -> Vec<SysEntry> {
    let Ok(listing) = fs::read_dir(&disk.dir) else { return Vec::new() };
    let mut out = Vec::new();
    for child in listing.flatten() {
        let dir = child.path();
        let Some(number) = read_sys_u64(&dir.join("partition")).and_then(|n| u32::try_from(n).ok()) else {
            continue;
        };
        let name = child.file_name().to_string_lossy().into_owned();
        let mut part = sys_entry(&dir, name, Some(disk.name.clone()), Some(number));
        // A partition's content changes with its disk's (a loop device given another file).
        part.identity.diskseq.clone_from(&disk.identity.diskseq);
        out.push(part);
    }
    out
}

fn sys_entry(dir: &Path, name: String, disk: Option<String>, partition: Option<u32>) -> SysEntry {
    let uevent = fs::read_to_string(dir.join("uevent")).unwrap_or_default();
    let devname = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .filter(|n| !n.is_empty() && !n.split('/').any(|c| c == ".." || c.is_empty()))
        .map_or_else(|| name.replace('!', "/"), str::to_owned);
    let identity = Identity {
        devno: read_sys(&dir.join("dev")).and_then(|s| parse_devno(&s)),
        // /sys counts 512-byte sectors whatever the device's own sector size.
        size: read_sys_u64(&dir.join("size")).and_then(|s| s.checked_mul(512)),
        diskseq: read_sys(&dir.join("diskseq")),
    };
    SysEntry { name, dir: dir.to_owned(), devname, identity, disk, partition }
}

fn read_sys(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_sys_u64(path: &Path) -> Option<u64> {
    read_sys(path)?.parse().ok()
}

fn parse_devno(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::FsKind;

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(Seconds(Duration::from_secs(5)).to_string(), "5 s");
        assert_eq!(Seconds(Duration::from_millis(500)).to_string(), "0.5 s");
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5 s");
        assert_eq!(Seconds(Duration::from_millis(5012)).to_string(), "5 s");
        assert_eq!(Seconds(Duration::ZERO).to_string(), "0 s");
    }

    #[test]
    fn udev_link_names_are_unescaped() {
        assert_eq!(unescape_udev(r"nix\x20store"), Some("nix store".into()));
        assert_eq!(unescape_udev(r"a\x2fb\"), Some(r"a/b\".into()));
        assert_eq!(unescape_udev(r"\xzz"), None);
        assert_eq!(by_path_spec("/dev/disk/by-label/persist"), Some(DeviceSpec::Label("persist".into())));
        assert_eq!(by_path_spec("/dev/disk/by-uuid/AB-CD"), Some(DeviceSpec::Uuid("AB-CD".into())));
        assert_eq!(by_path_spec("/dev/disk/by-id/virtio-x"), None);
        assert_eq!(by_path_spec("/dev/vda"), None);
    }

    #[test]
    fn devnos_parse() {
        assert_eq!(parse_devno("254:1"), Some((254, 1)));
        assert_eq!(parse_devno("254"), None);
        assert_eq!(parse_devno("a:b"), None);
    }

    fn found(name: &str, probe: Option<Probe>, partuuid: Option<&str>) -> Found {
        Found {
            name: name.into(),
            path: PathBuf::from("/dev").join(name),
            devno: None,
            size: Some(1 << 20),
            disk: None,
            partition: None,
            probe,
            conflicts: Vec::new(),
            partuuid: partuuid.map(str::to_owned),
            error: None,
            reading: false,
        }
    }

    fn ext4(uuid: &str, label: &str) -> Probe {
        Probe {
            kind: FsKind::Ext4,
            uuid: Some(uuid.into()),
            label: Some(label.into()),
            uuid_sub: None,
            version: None,
        }
    }

    #[test]
    fn specs_match_case_insensitively_except_labels() {
        let devices = [
            found("vda", None, None),
            found("vda1", Some(ext4("0f6a8e2c-aaaa", "nix")), Some("abcd-01")),
            found("vdb", Some(ext4("11-22", "Nix")), None),
        ];
        let roots = Roots::system();
        let name = |s: &str| find(&s.parse().expect("spec"), &devices, &roots).map(|f| f.name);
        assert_eq!(name("UUID=0F6A8E2C-AAAA").as_deref(), Some("vda1"));
        assert_eq!(name("LABEL=Nix").as_deref(), Some("vdb"));
        assert_eq!(name("LABEL=NIX"), None);
        assert_eq!(name("PARTUUID=ABCD-01").as_deref(), Some("vda1"));
        assert_eq!(name("/dev/disk/by-label/nix").as_deref(), Some("vda1"));
    }

    #[test]
    fn the_message_lists_what_was_seen() {
        let mut empty = found("loop0", None, None);
        empty.size = Some(0);
        let err = WaitError::NotFound {
            spec: DeviceSpec::Label("persist".into()),
            waited: Duration::from_secs(5),
            seen: vec![found("vda", Some(ext4("u-1", "nix")), None), found("vdb", None, None), empty],
        };
        assert_eq!(
            err.to_string(),
            "LABEL=persist did not appear within 5 s; devices seen: vda (ext4 UUID=u-1 LABEL=nix), vdb (no file system)"
        );
        let none =
            WaitError::NotFound { spec: DeviceSpec::Uuid("x".into()), waited: Duration::ZERO, seen: vec![] };
        assert_eq!(none.to_string(), "UUID=x did not appear within 0 s; devices seen: none");
    }
}
