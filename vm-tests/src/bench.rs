//! The boot benchmark: lethe's stage 1 against Debian's initramfs-tools and dracut, on the same kernel and disks doing the same work, for three machines; stage-1 time on the guest's clock, initramfs size, and guest memory touched.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::artifacts::{self, InitrdSpec};
use crate::btrfs_blank;
use crate::btrfs_tmpfs_usbkey;
use crate::error::{self, Context, Result};
use crate::expect::{Expectations, MountExpectation, MountKind, Timings};
use crate::guest;
use crate::harness::Harness;
use crate::images;
use crate::machine;
use crate::peers::{self, Peer, Work};
use crate::qemu::{Boot, Outcome};
use crate::report::{BenchReport, Figures, MachineBench, Stats, Sysinfo};
use crate::scenarios;

/// Persisted directories added to every machine's own entries: a NixOS machine with some
/// services and a user's dotfiles has this many.
pub const EXTRA_ENTRIES: usize = 100;
/// Where stage 2 is on every machine (on /nix).
const STAGE2: &str = "/nix/store/lethe-stage2";
/// How long each stage 1 waits for the key file's stick.
const KEY_FILE_TIMEOUT_S: u64 = 60;
/// The storage the extra entries live on.
const STORAGE: &str = "/persist";

/// A machine the benchmark boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMachine {
    /// The laptop: LUKS2 opened by a key file on a stick (cheap PBKDF2, so the orchestration
    /// shows), tmpfs root, BTRFS subvolumes.
    BtrfsTmpfsUsbkey,
    /// One BTRFS disk, @root re-made from @blank on every boot.
    BtrfsBlank,
    /// A tmpfs root, ext4 /nix and /persist.
    PlainTmpfs,
}

impl BenchMachine {
    pub const ALL: [BenchMachine; 3] =
        [BenchMachine::BtrfsTmpfsUsbkey, BenchMachine::BtrfsBlank, BenchMachine::PlainTmpfs];

    /// Its scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            BenchMachine::BtrfsTmpfsUsbkey => "btrfs-tmpfs-usbkey",
            BenchMachine::BtrfsBlank => "btrfs-blank",
            BenchMachine::PlainTmpfs => "plain-tmpfs",
        }
    }

    pub fn from_name(name: &str) -> Option<BenchMachine> {
        BenchMachine::ALL.into_iter().find(|m| m.name() == name)
    }

    /// lethe's config: the scenario's, with [`EXTRA_ENTRIES`] more persisted directories.
    pub fn config(self) -> Value {
        let mut config = match self {
            BenchMachine::BtrfsTmpfsUsbkey => btrfs_tmpfs_usbkey::config(),
            BenchMachine::BtrfsBlank => btrfs_blank::btrfs_config(),
            BenchMachine::PlainTmpfs => machine::plain_config(),
        };
        let dirs = &mut config["persistence"][STORAGE]["directories"];
        if !dirs.is_array() {
            *dirs = json!([]);
        }
        if let Some(list) = dirs.as_array_mut() {
            list.extend(extra_entries().map(Value::String));
        }
        // The stick is always plugged in here, but under emulation udev may find it more than
        // the scenario's 5 s after systemd-cryptsetup starts waiting: all three wait up to
        // KEY_FILE_TIMEOUT_S, which costs nothing once the stick is there.
        // (pointer_mut: indexing a missing key would insert a null `luks` section.)
        let devices = config.pointer_mut("/luks/devices").and_then(Value::as_object_mut);
        for d in devices.into_iter().flat_map(|d| d.values_mut()) {
            if let Some(key) = d.get_mut("keyFile").and_then(Value::as_object_mut) {
                key.insert("timeout".into(), json!(KEY_FILE_TIMEOUT_S));
            }
        }
        config
    }

    /// What stage 2 checks on each boot, whichever stage 1 ran: the scenario's mounts and
    /// paths (less what only lethe makes: its timings, the utab), the extra entries bound.
    pub fn expectations(self) -> Expectations {
        let mut e = match self {
            BenchMachine::BtrfsTmpfsUsbkey => btrfs_tmpfs_usbkey::expectations(),
            BenchMachine::BtrfsBlank => btrfs_blank::expectations(),
            BenchMachine::PlainTmpfs => machine::plain_expectations(),
        };
        e.paths.retain(|p| !["/run/lethe/timings.json", "/run/mount/utab"].contains(&p.path.as_str()));
        e.mounts.extend(extra_entries().map(|path| MountExpectation {
            target: path.clone(),
            what: MountKind::Bind { storage: STORAGE.into(), path },
        }));
        e
    }
}

fn extra_entries() -> impl Iterator<Item = String> {
    (1..=EXTRA_ENTRIES).map(|i| format!("/var/lib/bench/entry-{i:03}"))
}

/// A stage 1 under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage1 {
    Lethe,
    Peer(Peer),
}

impl Stage1 {
    pub const ALL: [Stage1; 3] =
        [Stage1::Lethe, Stage1::Peer(Peer::InitramfsTools), Stage1::Peer(Peer::Dracut)];

    pub fn name(self) -> &'static str {
        match self {
            Stage1::Lethe => "lethe",
            Stage1::Peer(p) => p.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Stage1> {
        Stage1::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured boots per machine and stage 1.
    pub runs: usize,
    /// One unmeasured boot first, so that the measured ones are steady-state boots (the
    /// first boot makes the persisted entries and commits the machine-id).
    pub warm_up: bool,
    pub machines: Vec<BenchMachine>,
    /// The stage 1s to boot (all three normally).
    pub stage1s: Vec<Stage1>,
}

/// Boots every machine of `o` through the three stage 1s. Returns the figures and the
/// failed boots (a boot that does not reach stage 2 or whose stage 2 finds a check failed).
pub fn run(h: &Harness, o: &Options) -> Result<(BenchReport, Vec<String>)> {
    let mut findings = Vec::new();
    let mut machines = Vec::new();
    for &m in &o.machines {
        eprintln!("bench: {}: making the disks", m.name());
        match bench_machine(h, m, o, &mut findings) {
            Ok(r) => machines.push(r),
            // The other machines' figures are still worth having.
            Err(e) => {
                findings.push(format!("{}: {e}", m.name()));
                machines.push(MachineBench { name: m.name(), ..MachineBench::default() });
            }
        }
    }
    let report = BenchReport {
        sysinfo: Sysinfo::of_host(h),
        runs: o.runs,
        warm_up: o.warm_up,
        extra_entries: EXTRA_ENTRIES,
        machines,
    };
    Ok((report, findings))
}

/// One machine: its disks made once and copied for each stage 1, each stage 1's image built,
/// booted once to warm up if asked, then measured.
fn bench_machine(
    h: &Harness,
    m: BenchMachine,
    o: &Options,
    findings: &mut Vec<String>,
) -> Result<MachineBench> {
    let dir = h.dir(&format!("bench/{}", m.name()))?;
    let config = m.config();
    let disks = make_disks(h, m, &dir.join("disks"), findings)?;
    let work = Work::from_config(&config)?;
    let not_run = Stage1::ALL.into_iter().filter(|s| !o.stage1s.contains(s)).map(Stage1::name).collect();
    let mut result = MachineBench { name: m.name(), not_run, ..MachineBench::default() };
    if disks.is_empty() {
        return Ok(result);
    }
    for &s in &o.stage1s {
        let sub = dir.join(s.name());
        std::fs::create_dir_all(&sub).context(|| error::at(&sub, "cannot create"))?;
        let mut copies = Vec::new();
        for d in &disks {
            let copy = sub.join(d.file_name().unwrap_or_default());
            error::run(std::process::Command::new("cp").arg("--sparse=always").arg(d).arg(&copy))?;
            copies.push(copy);
        }
        let initrd = sub.join("initrd.img");
        eprintln!("bench: {}: building {}'s initramfs", m.name(), s.name());
        let (size, cmdline) = match s {
            Stage1::Lethe => {
                let spec = InitrdSpec { config: &config, unchecked: false, files: &[], add_modules: &[] };
                (
                    artifacts::mkinitrd(&h.bin, &h.kernel, &spec, &initrd)?,
                    format!("{} init={STAGE2}", peers::BASE_CMDLINE),
                )
            }
            Stage1::Peer(p) => {
                (work.build(p, &h.kernel, &sub.join("build"), &initrd)?, work.cmdline(p, STAGE2))
            }
        };
        let figures = boot_runs(h, m, s, &initrd, &copies, &cmdline, o, findings)?;
        let slot = match s {
            Stage1::Lethe => &mut result.lethe,
            Stage1::Peer(Peer::InitramfsTools) => &mut result.initramfs_tools,
            Stage1::Peer(Peer::Dracut) => &mut result.dracut,
        };
        if let Some((mut f, timings)) = figures {
            f.size_bytes = size;
            *slot = Some(f);
            if s == Stage1::Lethe {
                result.lethe_timings = timings;
            }
        }
    }
    Ok(result)
}

/// The machine's disks in `dir`, with /nix's stage 2 expecting [`BenchMachine::expectations`];
/// none when the setup guest failed (a finding).
fn make_disks(h: &Harness, m: BenchMachine, dir: &Path, findings: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).context(|| error::at(dir, "cannot create"))?;
    let expect = m.expectations();
    Ok(match m {
        BenchMachine::PlainTmpfs => {
            let nix = machine::nix_staging(h, dir, &expect)?;
            let persist = machine::persist_staging(dir)?;
            let (nix_img, persist_img) = (dir.join("nix.img"), dir.join("persist.img"));
            images::mkfs_ext4("nix", &nix, &nix_img, 32)?;
            images::mkfs_ext4("persist", &persist, &persist_img, 64)?;
            vec![nix_img, persist_img]
        }
        BenchMachine::BtrfsBlank => {
            let image = dir.join("btrfs.img");
            btrfs_blank::make_image(h, dir, &expect, &image, 256)?;
            vec![image]
        }
        BenchMachine::BtrfsTmpfsUsbkey => {
            let d = btrfs_tmpfs_usbkey::make_disks(h, dir, &expect, None)?;
            let before = findings.len();
            guest::check(
                findings,
                &format!("{}: setup", m.name()),
                &d.setup,
                btrfs_tmpfs_usbkey::SETUP_CHECKS,
            );
            if findings.len() > before {
                return Ok(Vec::new());
            }
            vec![d.disk, d.stick]
        }
    })
}

/// The warm-up boot if asked, then the measured ones; `None` when the warm-up or every
/// measured boot failed. A measured boot counts only if stage 2 found everything as expected.
#[allow(clippy::too_many_arguments)]
fn boot_runs(
    h: &Harness,
    m: BenchMachine,
    s: Stage1,
    initrd: &Path,
    disks: &[PathBuf],
    cmdline: &str,
    o: &Options,
    findings: &mut Vec<String>,
) -> Result<Option<(Figures, Vec<Timings>)>> {
    let what = format!("{} through {}", m.name(), s.name());
    if o.warm_up {
        let warm = h.boot_measured(initrd, disks, cmdline)?;
        eprintln!(
            "bench: {what}, warm-up boot: {} [{:.1} s host]",
            warm.summary(),
            warm.elapsed.as_secs_f64()
        );
        if !matches!(warm.outcome, Outcome::Stage2(_)) {
            findings.push(format!("{what}, warm-up boot: {}", warm.summary()));
            keep_console(&warm, &initrd.with_file_name("console-warm-up.log"));
            return Ok(None);
        }
    }
    let runs = o.runs;
    let (mut stage1_ms, mut memory, mut timings) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=runs {
        let boot = h.boot_measured(initrd, disks, cmdline)?;
        eprintln!(
            "bench: {what}, boot {n}/{runs}: {} [{:.1} s host]",
            boot.summary(),
            boot.elapsed.as_secs_f64()
        );
        let Outcome::Stage2(rep) = &boot.outcome else {
            findings.push(format!("{what}, boot {n}: {}", boot.summary()));
            keep_console(&boot, &initrd.with_file_name(format!("console-boot-{n}.log")));
            break; // the next boots could only repeat it
        };
        if !rep.failures.is_empty() {
            findings.push(format!("{what}, boot {n}: stage 2: {}", rep.failures.join("; ")));
            continue;
        }
        let Some(uptime) = rep.uptime_s else {
            findings.push(format!("{what}, boot {n}: stage 2 reported no uptime"));
            continue;
        };
        stage1_ms.push(uptime * 1e3);
        memory.extend(boot.memory_touched.map(|b| b as f64));
        timings.extend(scenarios::timings(rep));
    }
    let Some(stats) = Stats::of(&stage1_ms) else { return Ok(None) };
    let memory = Stats::of(&memory).map(|s| s.median as u64);
    Ok(Some((Figures::new(&stats, 0, memory), timings)))
}

/// A failed boot's console into `path`, and its last lines into the log.
fn keep_console(b: &Boot, path: &Path) {
    let mut text = b.console.join("\n");
    text.push('\n');
    match std::fs::write(path, text) {
        Ok(()) => eprintln!("bench: the whole console is in {}; its end:", path.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}; the console's end:", path.display()),
    }
    for l in &b.console[b.console.len().saturating_sub(15)..] {
        eprintln!("  | {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_machine_gets_the_extra_entries_in_config_and_expectations() {
        for m in BenchMachine::ALL {
            let c = m.config();
            let dirs = c["persistence"][STORAGE]["directories"].as_array().unwrap();
            assert!(dirs.contains(&json!("/var/lib/nixos")), "{}: the scenario's own entries stay", m.name());
            assert_eq!(
                dirs.iter().filter(|d| d.as_str().unwrap().starts_with("/var/lib/bench/")).count(),
                100
            );
            let e = m.expectations();
            assert_eq!(e.mounts.iter().filter(|x| x.target.starts_with("/var/lib/bench/")).count(), 100);
            assert!(!e.paths.iter().any(|p| p.path.starts_with("/run/lethe")), "{}", m.name());
            match c.pointer("/luks/devices/cryptroot/keyFile") {
                Some(key) => assert_eq!(key["timeout"], json!(60), "the stick is waited for as long by all"),
                None => assert!(c.get("luks").is_none(), "{}: no luks section appears", m.name()),
            }
            // The peers read the same config: every entry is theirs too.
            let w = Work::from_config(&c).unwrap();
            assert_eq!(
                w.entries.len(),
                e.mounts.iter().filter(|x| matches!(x.what, MountKind::Bind { .. })).count()
            );
        }
    }

    #[test]
    fn machines_are_named_as_their_scenarios() {
        for m in BenchMachine::ALL {
            assert_eq!(BenchMachine::from_name(m.name()), Some(m));
            assert!(crate::scenarios::Scenario::from_name(m.name()).is_some());
        }
    }
}
