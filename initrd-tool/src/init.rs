//! Stage 1 as PID 1: mount the API file systems, read the config, load modules, find devices, mount the root, persist, switch_root.
//!
//! Each step is timed and logged. A failing step prints one message saying
//! what failed and where, then offers a retry (or a shell, when the
//! initramfs has one) on the console; PID 1 never exits, never reboots in a
//! loop, and nothing before the root is mounted writes to a disk.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::cmdline::Cmdline;
use crate::config::{self, Config, Source};
use crate::devspec::DeviceSpec;
use crate::log::{self, Timings};
use crate::{devices, kmod};
use crate::{mountopts, switch_root};

/// Whether the config opens LUKS devices.
fn has_luks(cfg: &Config) -> bool {
    cfg.luks.as_ref().is_some_and(|l| !l.devices.is_empty())
}

/// Where the new root is assembled.
pub const SYSROOT: &str = "/sysroot";
/// Where the step timings are left for stage 2.
pub const TIMINGS: &str = "/run/lethe/timings.json";
/// The emergency shell, when the initramfs carries one.
const SHELL: &str = "/bin/sh";

/// The steps of stage 1, in order (DESIGN.md's boot flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MountEarly,
    Config,
    Modules,
    Devices,
    Resume,
    Network,
    Unlock,
    Import,
    Rollback,
    MountRoot,
    Mounts,
    PersistBind,
    SwitchRoot,
}

impl Step {
    pub const ALL: [Step; 13] = [
        Step::MountEarly,
        Step::Config,
        Step::Modules,
        Step::Devices,
        Step::Resume,
        Step::Network,
        Step::Unlock,
        Step::Import,
        Step::Rollback,
        Step::MountRoot,
        Step::Mounts,
        Step::PersistBind,
        Step::SwitchRoot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::MountEarly => "mount-early",
            Step::Config => "config",
            Step::Modules => "modules",
            Step::Devices => "devices",
            Step::Resume => "resume",
            Step::Network => "network",
            Step::Unlock => "unlock",
            Step::Import => "import",
            Step::Rollback => "rollback",
            Step::MountRoot => "mount-root",
            Step::Mounts => "mounts",
            Step::PersistBind => "persist-bind",
            Step::SwitchRoot => "switch-root",
        }
    }
}

/// A step's failure: one message naming what and where, and a hint.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: &'static str,
}

impl Failure {
    fn new(message: impl Into<String>, hint: &'static str) -> Failure {
        Failure { message: message.into(), hint }
    }
}

type StepResult = Result<(), Failure>;

/// What the steps learn and hand on.
struct Boot {
    cmdline: Cmdline,
    config: Option<Config>,
    /// Config bytes, for persist-bind (already validated with the rest).
    config_bytes: Vec<u8>,
    /// Device nodes found for each spec.
    devices: Vec<(DeviceSpec, PathBuf)>,
    /// A hibernation image still waits on this device after the resume
    /// step: the root is not touched this boot.
    hibernation: Option<(PathBuf, &'static str)>,
    /// The resume device was not there before the unlock: look again after it (swap on LUKS).
    resume_deferred: bool,
    /// Opens the LUKS devices; kept across retries so passphrases that worked are reused.
    unlocker: Option<crate::unlock::Unlocker>,
    /// What the network step configured, taken down before switch_root.
    net: Option<crate::net::Up>,
    timings: Timings,
}

/// `initrd-tool init`: runs stage 1 as PID 1 and does not return (a PID 1
/// that returns panics the kernel).
pub fn main() -> ExitCode {
    if !rustix::process::getpid().is_init() {
        // It mounts over /sysroot and switches root: never on a running system.
        eprintln!(
            "initrd-tool init: runs only as PID 1 of an initramfs (this is pid {})",
            rustix::process::getpid().as_raw_nonzero()
        );
        return ExitCode::from(2);
    }
    let mut boot = Boot {
        cmdline: Cmdline::default(),
        config: None,
        config_bytes: Vec::new(),
        devices: Vec::new(),
        hibernation: None,
        resume_deferred: false,
        unlocker: None,
        net: None,
        timings: Timings::start(),
    };
    let started = Instant::now();
    for step in Step::ALL {
        loop {
            let t = Instant::now();
            let result = boot.run(step);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            boot.timings.record(step.name(), ms, result.is_ok());
            match result {
                Ok(()) => {
                    log::info(&format!("{} ok ({ms:.1} ms)", step.name()));
                    break;
                }
                Err(f) => {
                    log::error(&format!("FAILED at {}: {}", step.name(), f.message));
                    // switch-root cannot be skipped: after it there is nothing
                    // to continue to, and a PID 1 that returns panics the kernel.
                    let skippable = step != Step::SwitchRoot;
                    if !offer_recovery(f.hint, skippable) {
                        break; // "continue" chosen: go on with the next step
                    }
                }
            }
        }
        if step == Step::PersistBind {
            log::info(&format!("stage 1 done in {:.1} ms", started.elapsed().as_secs_f64() * 1e3));
        }
    }
    // Not reached: switch_root execs stage 2, and its step is retried
    // until it does. PID 1 must never return.
    log::error("stage 1 ended without switch_root; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

impl Boot {
    /// The validated config; absent only if its step failed and the user
    /// chose to continue.
    fn config(&self) -> Result<&Config, Failure> {
        self.config.as_ref().ok_or_else(|| Failure::new("no valid config was read", "retry the config step"))
    }

    fn run(&mut self, step: Step) -> StepResult {
        match step {
            Step::MountEarly => mount_early(),
            Step::Config => self.read_config(),
            Step::Modules => self.modules(),
            Step::Devices => self.find_devices(),
            Step::Resume => self.resume(),
            Step::Network => self.network(),
            Step::Unlock => self.unlock(),
            Step::Import => self.import(),
            Step::Rollback => self.rollback(),
            Step::MountRoot => self.mount_root(),
            Step::Mounts => self.mounts(),
            Step::PersistBind => self.persist_bind(),
            Step::SwitchRoot => self.switch_root(),
        }
    }

    fn read_config(&mut self) -> StepResult {
        let line = std::fs::read("/proc/cmdline").unwrap_or_default();
        self.cmdline = Cmdline::parse_bytes(&line);
        log::set_debug(self.cmdline.debug);
        log::debug(&format!("command line: {}", String::from_utf8_lossy(&line).trim()));
        let path = Path::new(config::PATH);
        self.config_bytes = std::fs::read(path).map_err(|e| {
            Failure::new(
                format!("cannot read {}: {e}", path.display()),
                "rebuild the initramfs with a config",
            )
        })?;
        let cfg = Config::from_slice(&self.config_bytes).map_err(|errs| {
            let mut m = format!("invalid config {}:", path.display());
            for e in errs.0 {
                m.push_str(&format!("\n  {e}"));
            }
            Failure::new(
                m,
                "fix the configuration and rebuild; `initrd-tool check-config` shows the same errors",
            )
        })?;
        if self.cmdline.init.is_none() {
            return Err(Failure::new(
                "no init= on the kernel command line",
                "boot with init=/path/to/stage2",
            ));
        }
        self.config = Some(cfg);
        Ok(())
    }

    /// Loads the configured modules (with their dependencies), then what
    /// the devices under /sys ask for (coldplug).
    fn modules(&mut self) -> StepResult {
        let cfg = self.config()?;
        let (mut names, coldplug) = (cfg.modules.load.clone(), cfg.modules.coldplug);
        let luks = has_luks(cfg);
        if names.is_empty() && !coldplug && !luks {
            return Ok(());
        }
        let index = kmod::ModuleIndex::load_running().map_err(|e| {
            Failure::new(format!("kernel modules: {e}"), "rebuild the initramfs for this kernel")
        })?;
        if luks {
            names.extend(
                crate::unlock::KERNEL_MODULES.iter().filter(|m| index.has_module(m)).map(|m| m.to_string()),
            );
        }
        let mut report = kmod::LoadReport::default();
        kmod::load(&index, &names, &mut report).map_err(|e| {
            Failure::new(
                format!("kernel modules: {e}"),
                "check modules.load, and that the initramfs carries them",
            )
        })?;
        if coldplug {
            let s = kmod::Coldplug::new().run(&index, Path::new("/sys"), &mut report);
            log::debug(&format!(
                "coldplug: {} modaliases, {} modules loaded, {} failed, {} passes",
                s.modaliases, s.loaded, s.failed, s.passes
            ));
        }
        for r in report.modules.iter().filter(|r| r.outcome == kmod::Outcome::Failed) {
            log::warn(&format!("module {}: {}", r.name, r.error.as_deref().unwrap_or("failed")));
        }
        log::debug(&format!("{} modules loaded", report.count(kmod::Outcome::Loaded)));
        Ok(())
    }

    /// Waits for every device the root and the mounts name, all at once,
    /// each up to its own timeout.
    fn find_devices(&mut self) -> StepResult {
        // Behind LUKS, the devices appear only when unlocked: the unlock step waits for the
        // LUKS devices itself and then for these.
        if has_luks(self.config()?) {
            return Ok(());
        }
        self.wait_for_devices()
    }

    fn wait_for_devices(&mut self) -> StepResult {
        let cfg = self.config()?;
        let mut wanted: Vec<devices::Wanted> = Vec::new();
        let root = cfg.root.iter().filter_map(|r| {
            let spec = r.device.as_ref()?.block()?.clone();
            Some((spec, r.timeout.map_or(config::DEFAULT_TIMEOUT, Duration::from_secs)))
        });
        let mounts = cfg
            .mount_plan()
            .into_iter()
            .filter_map(|m| Some((m.device.as_ref()?.block()?.clone(), m.timeout)));
        let rollback = rollback_device(cfg).map(|spec| (spec, config::DEFAULT_TIMEOUT));
        for (spec, timeout) in root.chain(mounts).chain(rollback) {
            if !wanted.iter().any(|w| w.spec == spec) && !self.devices.iter().any(|(s, _)| *s == spec) {
                wanted.push(devices::Wanted { spec, timeout });
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut missing = Vec::new();
        for (w, found) in wanted.iter().zip(devices::wait_for(&wanted, &devices::Roots::system())) {
            match found {
                Ok(f) => {
                    log::debug(&format!("{} is {} ({})", w.spec, f.path.display(), describe_probe(&f)));
                    self.devices.push((w.spec.clone(), f.path));
                }
                Err(e) => missing.push(e.to_string()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(
                missing.join("\n"),
                "plug the device in and retry, or fix the device in the configuration",
            ))
        }
    }

    /// Resumes from a hibernation image when the resume device holds one:
    /// the kernel is told the device (its own `resume=` handling ran before
    /// the device's driver was loaded) and does not come back if it works.
    /// If an image is still there afterwards, the root is left untouched.
    fn resume(&mut self) -> StepResult {
        let Some(r) = self.cmdline.resume.clone() else { return Ok(()) };
        let Ok(spec) = r.parse::<DeviceSpec>() else {
            log::warn(&format!("resume={r}: not a device this stage 1 can find; not resuming"));
            return Ok(());
        };
        // The resume device is usually swap, wanted by nothing else: a short wait.
        let wanted = [devices::Wanted { spec: spec.clone(), timeout: Duration::from_secs(2) }];
        let Some(Ok(found)) = devices::wait_for(&wanted, &devices::Roots::system()).pop() else {
            if has_luks(self.config()?) && !self.resume_deferred {
                log::debug(&format!("resume={r}: not there (yet); looking again after the unlock"));
                self.resume_deferred = true;
                return Ok(());
            }
            log::warn(&format!("resume={r}: no such device; not resuming"));
            return Ok(());
        };
        // A swap file's header is resume_offset= pages into its file system's device.
        let offset = self.cmdline.resume_offset.unwrap_or(0);
        match rollback::resume::image_at(&found.path, offset) {
            Ok(Some(kind)) => {
                let dev = found.path.display();
                match (on_image(&self.cmdline), found.devno) {
                    (OnImage::Keep(why), _) => {
                        log::warn(&format!("{dev} holds a {kind} hibernation image: not resuming ({why})"));
                    }
                    (OnImage::Resume, Some((major, minor))) => {
                        log::info(&format!("{dev} holds a {kind} hibernation image: resuming"));
                        if let Err(e) = std::fs::write("/sys/power/resume", format!("{major}:{minor}")) {
                            log::warn(&format!("resume from {dev}: writing /sys/power/resume: {e}"));
                        }
                    }
                    (OnImage::Resume, None) => {
                        log::warn(&format!(
                            "{dev} holds a {kind} hibernation image, but its device number is unknown: not resuming"
                        ));
                    }
                }
                // Still here: the resume failed or was not possible. The
                // kernel clears the signature when it reads an image, so one
                // that is still there was never consumed.
                if let Ok(Some(kind)) = rollback::resume::image_at(&found.path, offset) {
                    self.hibernation = Some((found.path.clone(), kind));
                }
            }
            Ok(None) => log::debug(&format!("{}: no hibernation image", found.path.display())),
            Err(e) => log::warn(&format!("resume={r}: cannot read {}: {e}", found.path.display())),
        }
        Ok(())
    }

    /// Opens the LUKS devices (key file, passphrase, ask-password), then waits for the devices
    /// the root and the mounts name, which may be behind them; resumes from a hibernation image
    /// on a device that only now appeared.
    fn unlock(&mut self) -> StepResult {
        let cfg = self.config()?;
        let Some(luks) = cfg.luks.as_ref().filter(|l| !l.devices.is_empty()) else { return Ok(()) };
        let plan = crate::unlock::plan(luks, &[])
            .map_err(|e| Failure::new(e.to_string(), "fix luks.devices in the configuration"))?;
        if self.cmdline.dry_run {
            for p in &plan {
                log::info(&format!("dry run: {}: {p}", p.name));
            }
        }
        #[cfg(feature = "ssh")]
        let serve = cfg.ssh.is_some() && crate::unlock::Unlocker::may_ask(&plan) && !self.cmdline.dry_run;
        let unlocker =
            self.unlocker.get_or_insert_with(|| crate::unlock::Unlocker::new(crate::unlock::Env::system()));
        #[cfg(feature = "ssh")]
        if serve {
            unlocker.start_ssh(Path::new("/proc/self/exe"), Path::new(config::PATH));
        }
        let failures: Vec<String> =
            unlocker.run(&plan).into_iter().filter_map(|r| r.err()).map(|e| e.to_string()).collect();
        // Every device is open: the server says so to its clients and exits. After a failure it
        // stays, for the retry.
        #[cfg(feature = "ssh")]
        if failures.is_empty() {
            unlocker.stop_ssh();
        }
        if !failures.is_empty() {
            return Err(Failure::new(
                failures.join("\n"),
                "retry (plug in the key, or type the passphrase again), or fix luks.devices in the configuration",
            ));
        }
        self.wait_for_devices()?;
        if self.resume_deferred {
            self.resume()?;
        }
        Ok(())
    }

    /// Imports the configured ZFS pools (`zpool import -N`) and registers
    /// btrfs members with the kernel, waiting until multi-device btrfs file
    /// systems the config needs are complete.
    fn import(&mut self) -> StepResult {
        let cfg = self.config()?;
        let pools: Vec<_> =
            cfg.pools.iter().flat_map(|p| p.zfs.iter()).map(|(n, o)| (n.clone(), o.clone())).collect();
        let btrfs: Vec<(PathBuf, Duration)> = cfg
            .root
            .iter()
            .filter(|r| r.fs_type == "btrfs")
            .filter_map(|r| {
                Some((
                    r.device.as_ref()?.block()?.clone(),
                    r.timeout.map_or(config::DEFAULT_TIMEOUT, Duration::from_secs),
                ))
            })
            .chain(
                cfg.mount_plan()
                    .into_iter()
                    .filter(|m| m.fs_type == "btrfs")
                    .filter_map(|m| Some((m.device.as_ref()?.block()?.clone(), m.timeout))),
            )
            .chain(rollback_device(cfg).map(|d| (d, config::DEFAULT_TIMEOUT)))
            .filter_map(|(spec, t)| Some((self.device_node(&spec)?.to_path_buf(), t)))
            .collect();
        // A dry run imports read-only, so that the rollback can be planned against the pool;
        // registering btrfs devices with the kernel writes nothing either.
        let mode = if self.cmdline.dry_run { rollback::Mode::DryRun } else { rollback::Mode::Apply };
        if !btrfs.is_empty() {
            scan_btrfs()?;
            for (dev, timeout) in &btrfs {
                wait_btrfs_ready(dev, *timeout)?;
            }
        }
        for (name, o) in &pools {
            let t = Instant::now();
            if mode == rollback::Mode::DryRun {
                log::info(&format!("dry run: importing ZFS pool {name} read-only"));
            }
            rollback::zfs::import(name, o, mode).map_err(|e| {
                Failure::new(
                    format!("ZFS pool {name}: {e}"),
                    "check that the pool's disks are there (and unlocked); `zpool import` in the shell shows more",
                )
            })?;
            log::info(&format!("imported ZFS pool {name} ({:.1} ms)", t.elapsed().as_secs_f64() * 1e3));
        }
        Ok(())
    }

    /// Resets the root as the config says, unless this boot must keep it.
    fn rollback(&mut self) -> StepResult {
        let cfg = self.config()?;
        let Some(method) = cfg.rollback.clone() else { return Ok(()) };
        let tmpfs = matches!(method, rollback::config::Rollback::Tmpfs(_));
        // A tmpfs root has no old state to keep: it is mounted regardless.
        if !tmpfs {
            if !self.cmdline.rollback {
                log::warn("rollback: keeping the old root: lethe.rollback=0 is on the kernel command line");
                return Ok(());
            }
            if let Some((dev, kind)) = &self.hibernation {
                log::warn(&format!(
                    "rollback: keeping the old root: {} holds a {kind} hibernation image that was not resumed",
                    dev.display()
                ));
                return Ok(());
            }
        }
        if tmpfs {
            ensure_dir(Path::new(SYSROOT))?;
            if is_mounted(Path::new(SYSROOT)) {
                return Ok(()); // a retry
            }
        }
        let device = match rollback_device(cfg) {
            Some(spec) => match self.device_node(&spec) {
                Some(p) => p.to_path_buf(),
                None => {
                    return Err(Failure::new(
                        format!("rollback device {spec} was not found"),
                        "retry the devices step",
                    ));
                }
            },
            None => PathBuf::new(),
        };
        let target = rollback::Target::from_config(&method, device, PathBuf::from(SYSROOT));
        let mode = if self.cmdline.dry_run { rollback::Mode::DryRun } else { rollback::Mode::Apply };
        let report = rollback::run(&target, mode).map_err(|e| {
            Failure::new(
                format!("{}: {e}", target.describe()),
                "continue to boot the root as it is; the next boot's rollback repairs a half-finished one",
            )
        })?;
        if let Some(k) = report.kept() {
            log::warn(&format!("rollback: {k}"));
            return Ok(());
        }
        if tmpfs && !report.planned() {
            // Like every mount of stage 1: later moves and binds stay in this tree.
            let _ = rustix::mount::mount_change(SYSROOT, MountPropagationFlags::PRIVATE);
        }
        let verb = if report.planned() { "dry run: would reset" } else { "reset" };
        log::info(&format!("rollback: {verb} the {}", target.describe()));
        for s in report.steps() {
            log::debug(&format!("rollback:   {s}"));
        }
        Ok(())
    }

    fn device_node(&self, spec: &DeviceSpec) -> Option<&Path> {
        self.devices.iter().find(|(s, _)| s == spec).map(|(_, p)| p.as_path())
    }

    /// What to pass to mount(2) as the source: the device node found, or the dataset's name.
    fn source_for(&self, source: &Source) -> Option<PathBuf> {
        match source {
            Source::Block(spec) => self.device_node(spec).map(Path::to_path_buf),
            Source::Dataset(d) => Some(PathBuf::from(d.as_str())),
        }
    }

    fn mount_root(&mut self) -> StepResult {
        ensure_dir(Path::new(SYSROOT))?;
        if is_mounted(Path::new(SYSROOT)) {
            // The tmpfs rollback mounted it, or this is a retry.
            log::debug("/sysroot is mounted already");
            return Ok(());
        }
        let Some(root) = self.config()?.root.clone() else {
            if matches!(self.config()?.rollback, Some(rollback::config::Rollback::Tmpfs(_)))
                && self.cmdline.dry_run
            {
                return Ok(());
            }
            return Err(Failure::new("the config has no `root` section", "add root to the configuration"));
        };
        let mut options = root.options.clone();
        if config::is_virtual(&root.fs_type) {
            options.push(format!("mode={}", root.mode.unwrap_or(persist_bind::mode::Mode::DEFAULT_DIR)));
            if let Some(size) = &root.size {
                options.push(format!("size={size}"));
            }
        }
        let device = root.device.as_ref().and_then(|d| self.source_for(d));
        if self.cmdline.dry_run {
            log::info(&format!(
                "dry run: would mount {} ({}) at {SYSROOT}",
                describe(&device, &root.fs_type),
                root.fs_type
            ));
            return Ok(());
        }
        mount(device.as_deref(), Path::new(SYSROOT), &root.fs_type, &options)
    }

    fn mounts(&mut self) -> StepResult {
        for m in self.config()?.mount_plan() {
            let target = m.mount_point.under(Path::new(SYSROOT));
            let device = m.device.as_ref().and_then(|d| self.source_for(d));
            if self.cmdline.dry_run {
                log::info(&format!(
                    "dry run: would mount {} ({}) at {}",
                    describe(&device, &m.fs_type),
                    m.fs_type,
                    target.display()
                ));
                continue;
            }
            if is_mounted(&target) {
                continue; // a retry
            }
            ensure_dir(&target)?;
            mount(device.as_deref(), &target, &m.fs_type, &m.options)?;
        }
        Ok(())
    }

    fn persist_bind(&mut self) -> StepResult {
        let (doc, entries) = persist_bind::Document::entries_from_slice(&self.config_bytes)
            .map_err(|e| Failure::new(format!("persistence: {e}"), "fix the configuration"))?;
        if entries.is_empty() {
            return Ok(());
        }
        if self.cmdline.dry_run {
            log::info(&format!(
                "dry run: would put {} persisted entries in place beneath {SYSROOT}",
                entries.len()
            ));
            return Ok(());
        }
        let root = persist_bind::beneath::Root::open(Path::new(SYSROOT))
            .map_err(|e| Failure::new(format!("cannot open {SYSROOT}: {e}"), "check the root mount"))?;
        let ids = persist_bind::owner::Ids::load(&doc, &root).unwrap_or_else(|e| {
            log::warn(&format!("owner databases: {e}; using the config's uids/gids only"));
            persist_bind::owner::Ids::from_config(&doc)
        });
        let plan = persist_bind::plan::plan(&entries, &ids, &root);
        let report = persist_bind::apply::apply(&plan, &root, &persist_bind::apply::UtabTarget::default());
        for e in &report.entries {
            if let persist_bind::apply::Status::Failed { error } = &e.status {
                // One entry's failure does not stop the boot: the machine
                // comes up without it, loudly, rather than not at all.
                log::warn(&format!("persist-bind: {} ({}): {error}", e.origin, e.target));
            }
        }
        let summary = format!(
            "persist-bind: {} entries, {} changed, {} failed",
            report.entries.len(),
            report.changed(),
            report.failed()
        );
        if report.failed() > 0 {
            log::warn(&format!("{summary}: the boot goes on without the failed ones"));
        } else {
            log::info(&summary);
        }
        Ok(())
    }

    /// Brings up what `ip=` (or the config's `network.ip`) asks for, so that the SSH server can
    /// be reached. Without it the boot goes on: the console still asks for passphrases.
    fn network(&mut self) -> StepResult {
        let cfg = self.config()?;
        let fallback = crate::net::config::Network::default();
        let net = cfg.network.as_ref().unwrap_or(&fallback);
        let ip: Vec<&str> = self.cmdline.ip.iter().map(String::as_str).collect();
        let params = match crate::net::params(net, &ip) {
            Ok(p) => p,
            Err(e) => {
                log::warn(&format!("network: {e}; going on without the network"));
                return Ok(());
            }
        };
        if params.is_empty() || self.net.is_some() {
            return Ok(());
        }
        if self.cmdline.dry_run {
            for p in &params {
                log::info(&format!("dry run: network: would configure ip={p}"));
            }
            return Ok(());
        }
        let timeout = net.timeout();
        match crate::net::bring_up(&params, timeout) {
            Ok(up) => {
                for line in up.summary() {
                    log::info(&format!("network: {line}"));
                }
                self.net = Some(up);
            }
            Err(e) => log::warn(&format!("network: {e}; going on without the network")),
        }
        Ok(())
    }

    /// Stage 2 brings up its own network: the server is stopped and the links stage 1 set up
    /// are flushed and taken down, unless `network.keepUp`.
    fn leave_network(&mut self) {
        #[cfg(feature = "ssh")]
        if let Some(u) = self.unlocker.as_mut() {
            u.stop_ssh();
        }
        let Some(up) = self.net.take() else { return };
        let keep = self.config.as_ref().and_then(|c| c.network.as_ref()).is_some_and(|n| n.keep_up);
        if keep {
            log::info("network: left up for stage 2 (network.keepUp)");
            return;
        }
        match crate::net::take_down(up) {
            Ok(()) => log::debug("network: links taken down before switch_root"),
            Err(e) => log::warn(&format!("network: {e}")),
        }
    }

    fn switch_root(&mut self) -> StepResult {
        let init = self.cmdline.init.clone().unwrap_or_default();
        if let Err(e) = self.timings.write(Path::new(TIMINGS)) {
            log::warn(&format!("cannot write {TIMINGS}: {e}"));
        }
        if self.cmdline.dry_run || self.cmdline.shell {
            let why = if self.cmdline.dry_run { "dry run (lethe.dry-run)" } else { "lethe.shell" };
            return Err(Failure::new(
                format!("stopped before switch_root: {why}"),
                "remove the switch from the kernel command line to boot",
            ));
        }
        self.leave_network();
        log::info(&format!("switch_root to {SYSROOT}, exec {}", init.display()));
        log::handover();
        let e = switch_root::switch_root(Path::new(SYSROOT), &init, &self.cmdline.init_args);
        Err(Failure::new(format!("{e}"), "check init= and the root file system"))
    }
}

/// What the resume step does about a hibernation image on the resume device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnImage {
    /// Tell the kernel the device: it resumes the image and does not come back.
    Resume,
    /// Leave it where it is, for this reason; the old root is kept too.
    Keep(&'static str),
}

fn on_image(cmdline: &Cmdline) -> OnImage {
    if cmdline.noresume {
        // Writing /sys/power/resume would clear the kernel's own noresume flag and resume.
        OnImage::Keep("noresume is on the kernel command line")
    } else if cmdline.dry_run {
        OnImage::Keep("dry run (lethe.dry-run)")
    } else {
        OnImage::Resume
    }
}

/// Mounts /proc, /sys, /dev and /run (already-mounted ones are kept).
fn mount_early() -> StepResult {
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (fs, target, flags, data) in [
        ("proc", "/proc", nosuid, ""),
        ("sysfs", "/sys", nosuid, ""),
        ("devtmpfs", "/dev", MountFlags::NOSUID, "mode=0755"),
        ("tmpfs", "/run", MountFlags::NOSUID | MountFlags::NODEV, "mode=0755"),
    ] {
        ensure_dir(Path::new(target))?;
        if is_mounted(Path::new(target)) {
            continue;
        }
        rustix::mount::mount(fs, target, fs, flags, Some(&*cstring(data)?)).map_err(|e| {
            Failure::new(format!("mount {fs} on {target}: {e}"), "the kernel lacks this file system")
        })?;
    }
    attach_console();
    log::open_kmsg();
    Ok(())
}

/// Gives PID 1 the console as stdin/stdout/stderr when the kernel could
/// not (no /dev/console in the initramfs).
fn attach_console() {
    if rustix::fs::fstat(rustix::stdio::stderr()).is_ok() {
        return;
    }
    if let Ok(fd) = rustix::fs::open(
        "/dev/console",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::stdio::dup2_stdin(&fd);
        let _ = rustix::stdio::dup2_stdout(&fd);
        let _ = rustix::stdio::dup2_stderr(&fd);
    }
}

fn ensure_dir(p: &Path) -> StepResult {
    match std::fs::create_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) => Err(Failure::new(format!("cannot create {}: {e}", p.display()), "check the file system")),
    }
}

/// Whether `p` is a mount point (its device differs from its parent's, or
/// it is the root of a bind mount of the same device).
fn is_mounted(p: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = p.to_string_lossy();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(&want))
}

fn mount(device: Option<&Path>, target: &Path, fs_type: &str, options: &[String]) -> StepResult {
    let o = mountopts::parse(options);
    let source: &Path = device.unwrap_or(Path::new(fs_type));
    let data = cstring(&o.data)?;
    let data = (!o.data.is_empty()).then_some(&*data);
    rustix::mount::mount(source, target, fs_type, o.flags, data).map_err(|e| {
        Failure::new(
            format!("mount {} ({fs_type}) on {}: {e}", source.display(), target.display()),
            "check the device, the file-system type and the options",
        )
    })?;
    // Mounts below are private: later moves and binds stay in this tree.
    let _ = rustix::mount::mount_change(target, MountPropagationFlags::PRIVATE);
    log::debug(&format!("mounted {} ({fs_type}) on {}", source.display(), target.display()));
    Ok(())
}

fn describe_probe(f: &devices::Found) -> String {
    f.probe.as_ref().map_or_else(|| "no file system".to_owned(), |p| p.to_string())
}

fn cstring(s: &str) -> Result<std::ffi::CString, Failure> {
    std::ffi::CString::new(s)
        .map_err(|_| Failure::new(format!("NUL byte in mount options {s:?}"), "fix the options"))
}

/// The block device the rollback works on (btrfs only: ZFS names a dataset).
fn rollback_device(cfg: &Config) -> Option<DeviceSpec> {
    match &cfg.rollback {
        Some(rollback::config::Rollback::Btrfs(b)) => b.device.as_str().parse().ok(),
        _ => None,
    }
}

/// Registers every btrfs member device with the kernel, so multi-device
/// file systems can be mounted by any of their devices.
fn scan_btrfs() -> StepResult {
    let found = devices::scan(&devices::Roots::system())
        .map_err(|e| Failure::new(format!("cannot list block devices: {e}"), "retry"))?;
    for d in found.iter().filter(|d| d.probe.as_ref().is_some_and(|p| p.kind == crate::probe::FsKind::Btrfs))
    {
        if let Err(e) = rollback::btrfs::scan_device(&d.path) {
            log::warn(&format!("btrfs device scan of {}: {e}", d.path.display()));
        }
    }
    Ok(())
}

/// Waits until every device of the btrfs file system on `dev` is known,
/// scanning again as devices appear.
fn wait_btrfs_ready(dev: &Path, timeout: Duration) -> StepResult {
    let start = Instant::now();
    loop {
        match rollback::btrfs::devices_ready(dev) {
            Ok(true) => return Ok(()),
            Ok(false) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100));
                scan_btrfs()?;
            }
            Ok(false) => {
                return Err(Failure::new(
                    format!(
                        "the btrfs file system on {} is missing devices after {timeout:?}",
                        dev.display()
                    ),
                    "plug in the missing devices and retry, or continue and mount it degraded",
                ));
            }
            Err(e) => return Err(Failure::new(format!("btrfs on {}: {e}", dev.display()), "retry")),
        }
    }
}

fn describe(device: &Option<PathBuf>, fs_type: &str) -> String {
    device.as_ref().map_or_else(|| fs_type.to_owned(), |d| d.display().to_string())
}

/// After a failure: asks on the console whether to retry the step, start
/// the emergency shell (when the initramfs has one) or go on. Returns true
/// to retry. Waits as long as it takes: never reboots.
fn offer_recovery(hint: &str, skippable: bool) -> bool {
    let shell = Path::new(SHELL).exists();
    loop {
        log::error(&format!("hint: {hint}"));
        log::error(&format!(
            "press r then Enter to retry{}{}",
            if skippable { ", c to continue without this step" } else { "" },
            if shell { ", s for an emergency shell" } else { "" }
        ));
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => {
                // No console to answer from: say so now and then, forever.
                std::thread::sleep(Duration::from_secs(300));
                continue;
            }
            Ok(_) => {}
        }
        match line.trim() {
            "r" => return true,
            "c" if skippable => return false,
            "s" if shell => {
                let _ = std::process::Command::new(SHELL).status();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image on the resume device is handed to the kernel, except under `noresume` (writing
    /// /sys/power/resume would resume all the same: the kernel clears its noresume flag then)
    /// and in a dry run. Either way the image stays, and so does the old root.
    #[test]
    fn an_image_is_resumed_unless_noresume_or_a_dry_run() {
        let resume = |line: &str| on_image(&Cmdline::parse(line));
        assert_eq!(resume("resume=/dev/vda2"), OnImage::Resume);
        assert_eq!(resume("resume=/dev/vda2 resume_offset=34816"), OnImage::Resume);
        assert!(
            matches!(resume("resume=/dev/vda2 noresume"), OnImage::Keep(why) if why.contains("noresume"))
        );
        assert!(
            matches!(resume("resume=/dev/vda2 lethe.dry-run"), OnImage::Keep(why) if why.contains("dry run"))
        );
    }
}
