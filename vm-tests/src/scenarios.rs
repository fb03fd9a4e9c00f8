//! The scenarios: each prepares disk images and an initramfs, boots them (twice where that shows what persists) and checks what it sees.
//!
//! A scenario returns its findings (failed checks, each a sentence); an
//! [`Error`](crate::error::Error) means the harness itself could not do its
//! job (no QEMU, mkinitrd failed), which counts as a failure too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::artifacts::{self, Binaries, InitrdSpec};
use crate::error::{self, Context, Result};
use crate::expect::{
    Expectations, Kind, MACHINE_ID_UNINITIALIZED, MachineIdExpectation, MountExpectation, MountKind,
    PathExpectation, Report, Timings, UserFile,
};
use crate::host::{self, Accel, Kernel};
use crate::images::{self, Staging};
use crate::qemu::{self, Boot, BootSpec, Outcome};

/// The stage 2 every scenario boots into (on the nix image).
pub const STAGE2: &str = "/nix/store/lethe-stage2";
/// The kernel command line (plus per-boot switches).
pub const CMDLINE: &str = "console=ttyS0 init=/nix/store/lethe-stage2 panic=-1 lethe.log=debug";
/// The line stage 1 prints just before it execs stage 2.
pub const SWITCH_ROOT_LINE: &str = "lethe: switch_root to /sysroot, exec /nix/store/lethe-stage2";

const ALICE: u32 = 1000;
const USERS: u32 = 100;
/// The id stage 2 commits over "uninitialized" on the first boot.
pub const MACHINE_ID: &str = "5e7a1e7e5e7a1e7e5e7a1e7e5e7a1e7e";
const HOST_KEY: &str = "lethe-vm-tests ssh host key (not a real key)\n";
const HOST_KEY_PUB: &str = "ssh-ed25519 AAAAlethe-vm-tests root@lethe\n";
const BOOT_COUNTER: &str = "/var/lib/nixos/lethe-boot-count";
const USER_FILE: &str = "/home/alice/.config/lethe-boots";

/// Everything a scenario needs from the host.
#[derive(Debug)]
pub struct Harness {
    pub kernel: Kernel,
    pub bin: Binaries,
    pub accel: Accel,
    pub timeout: Duration,
    /// Where images and initramfs files go (target/vm-tests).
    pub work: PathBuf,
}

impl Harness {
    /// Finds the kernel, builds the static binaries and makes the work directory.
    pub fn setup() -> Result<Harness> {
        if !rustix::process::geteuid().is_root() {
            return Err(error::Error::Setup(
                "vm-tests: run as root (disk images are made with exact owners)".into(),
            ));
        }
        let kernel = Kernel::find()?;
        let accel = Accel::from_env()?;
        let timeout = host::boot_timeout()?;
        let workspace = host::workspace();
        let bin = Binaries::build(&workspace)?;
        let work = artifacts::target_dir(&workspace).join("vm-tests");
        std::fs::create_dir_all(&work).context(|| error::at(&work, "cannot create"))?;
        Ok(Harness { kernel, bin, accel, timeout, work })
    }

    /// A fresh directory for one scenario's files.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.work.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).context(|| error::at(&d, "cannot remove"))?;
        }
        std::fs::create_dir_all(&d).context(|| error::at(&d, "cannot create"))?;
        Ok(d)
    }

    /// Boots `initrd` with `disks`; `echo` prints the console live, after
    /// a header naming the boot.
    pub fn boot(&self, label: &str, initrd: &Path, disks: &[PathBuf], echo: Option<&str>) -> Result<Boot> {
        self.boot_with(label, initrd, disks, "", echo)
    }

    /// [`Harness::boot`] with `switches` added to the kernel command line.
    pub fn boot_with(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        switches: &str,
        echo: Option<&str>,
    ) -> Result<Boot> {
        let cmdline = format!("{CMDLINE} {switches}");
        self.boot_cmdline(label, initrd, disks, cmdline.trim_end(), echo)
    }

    /// Boots with a whole kernel command line of its own.
    pub fn boot_cmdline(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        cmdline: &str,
        echo: Option<&str>,
    ) -> Result<Boot> {
        if echo.is_some() {
            println!("\n---- {label}: serial console ----");
        }
        qemu::boot(&BootSpec {
            kernel: self.kernel.image.clone(),
            initrd: initrd.to_path_buf(),
            append: cmdline.to_owned(),
            disks: disks.to_vec(),
            accel: self.accel,
            timeout: self.timeout,
            echo: echo.map(str::to_owned),
        })
    }
}

/// The scenarios `run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    PlainTmpfs,
    BadConfig,
    MissingDevice,
    DryRun,
}

impl Scenario {
    pub const ALL: [Scenario; 4] =
        [Scenario::PlainTmpfs, Scenario::BadConfig, Scenario::MissingDevice, Scenario::DryRun];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PlainTmpfs => "plain-tmpfs",
            Scenario::BadConfig => "bad-config",
            Scenario::MissingDevice => "missing-device",
            Scenario::DryRun => "dry-run",
        }
    }

    pub fn about(self) -> &'static str {
        match self {
            Scenario::PlainTmpfs => {
                "tmpfs root, ext4 /persist (machine-id, ssh host keys, /var/lib/nixos, alice's .config) and ro /nix; boots twice"
            }
            Scenario::BadConfig => "an invalid config is refused before any disk is touched",
            Scenario::MissingDevice => {
                "/persist's device, then the root device, never appears: a clear message after 3 s"
            }
            Scenario::DryRun => {
                "lethe.dry-run plans the plain machine's boot, changes no disk and stops before switch_root"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Runs the scenario; `echo` prints every console live.
    pub fn run(self, h: &Harness, echo: Option<&str>) -> ScenarioResult {
        let mut r =
            ScenarioResult { scenario: self, boots: Vec::new(), findings: Vec::new(), initramfs_bytes: None };
        let done = match self {
            Scenario::PlainTmpfs => plain_tmpfs(h, echo, &mut r),
            Scenario::BadConfig => bad_config(h, echo, &mut r),
            Scenario::MissingDevice => missing_device(h, echo, &mut r),
            Scenario::DryRun => dry_run(h, echo, &mut r),
        };
        if let Err(e) = done {
            r.findings.push(format!("harness error: {e}"));
        }
        r
    }
}

/// A scenario's boots and what went wrong in them.
#[derive(Debug)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// Each boot with a one-word label ("boot 1", "root missing").
    pub boots: Vec<(String, Boot)>,
    /// Failed checks; empty when the scenario passed.
    pub findings: Vec<String>,
    /// The size of the (last) initramfs built.
    pub initramfs_bytes: Option<u64>,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// Records a failed check when `ok` is false.
    fn check(&mut self, ok: bool, finding: impl FnOnce() -> String) {
        if !ok {
            self.findings.push(finding());
        }
    }

    /// Stage 2's reports, in boot order (`None` where a boot did not get there).
    pub fn reports(&self) -> Vec<Option<&Report>> {
        self.boots
            .iter()
            .map(|(_, b)| match &b.outcome {
                Outcome::Stage2(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

/// The disks of the plain machine and the initramfs that boots them.
#[derive(Debug)]
pub struct Machine {
    pub initrd: PathBuf,
    pub initramfs_bytes: u64,
    /// nix.img, persist.img.
    pub disks: Vec<PathBuf>,
    pub persist: PathBuf,
}

/// A config with a tmpfs root, ext4 /persist and /nix, and the persisted
/// state of a small NixOS machine.
pub fn plain_config() -> serde_json::Value {
    json!({
        "version": 1,
        "modules": {"load": ["virtio_pci", "virtio_blk", "ext4"], "coldplug": true},
        "root": {"fsType": "tmpfs", "size": "256M", "mode": "0755"},
        "mounts": {
            "/persist": {"fsType": "ext4", "device": "LABEL=persist", "timeout": 30},
            "/nix": {"fsType": "ext4", "device": "LABEL=nix", "options": ["ro"], "timeout": 30}
        },
        "persistence": {
            "/persist": {
                "hideMounts": true,
                "directories": ["/var/lib/nixos"],
                "files": ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"],
                "users": {"alice": {"group": "users", "directories": [".config"]}}
            }
        },
        "uids": {"alice": ALICE},
        "gids": {"users": USERS}
    })
}

/// What stage 2 checks on every boot of the plain machine.
pub fn plain_expectations() -> Expectations {
    let fs = |target: &str, fs_type: &str, options: &[&str]| MountExpectation {
        target: target.into(),
        what: MountKind::Fs {
            fs_type: fs_type.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        },
    };
    let bind = |target: &str| MountExpectation {
        target: target.into(),
        what: MountKind::Bind { storage: "/persist".into(), path: target.into() },
    };
    Expectations {
        mounts: vec![
            fs("/", "tmpfs", &["rw"]),
            fs("/proc", "proc", &[]),
            fs("/sys", "sysfs", &[]),
            fs("/dev", "devtmpfs", &[]),
            fs("/run", "tmpfs", &[]),
            fs("/persist", "ext4", &["rw"]),
            fs("/nix", "ext4", &["ro"]),
            bind("/var/lib/nixos"),
            bind("/etc/machine-id"),
            bind("/etc/ssh/ssh_host_ed25519_key"),
            bind("/etc/ssh/ssh_host_ed25519_key.pub"),
            bind("/home/alice/.config"),
        ],
        paths: vec![
            PathExpectation::new("/", Kind::Dir).owned(0, 0, 0o755),
            PathExpectation::new("/etc/ssh/ssh_host_ed25519_key", Kind::File)
                .owned(0, 0, 0o600)
                .content(HOST_KEY),
            PathExpectation::new("/etc/ssh/ssh_host_ed25519_key.pub", Kind::File)
                .owned(0, 0, 0o644)
                .content(HOST_KEY_PUB),
            PathExpectation::new("/etc/machine-id", Kind::File),
            PathExpectation::new("/var/lib/nixos", Kind::Dir).owned(0, 0, 0o755),
            PathExpectation::new("/home/alice", Kind::Dir).owned(ALICE, USERS, 0o700),
            PathExpectation::new("/home/alice/.config", Kind::Dir).owned(ALICE, USERS, 0o755),
            PathExpectation::new("/persist/home/alice", Kind::Dir).owned(ALICE, USERS, 0o700),
            PathExpectation::new("/persist/home/alice/.config", Kind::Dir).owned(ALICE, USERS, 0o755),
            PathExpectation::new("/run/lethe/timings.json", Kind::File),
            PathExpectation::new("/run/mount/utab", Kind::File),
        ],
        boot_counter: BOOT_COUNTER.into(),
        machine_id: Some(MachineIdExpectation { path: "/etc/machine-id".into(), id: MACHINE_ID.into() }),
        user_file: Some(UserFile { path: USER_FILE.into(), uid: ALICE, gid: USERS }),
    }
}

impl Machine {
    /// Fresh images in `dir`: nix.img (stage 2 and its expectations, mounted
    /// ro) and persist.img (last boot's ssh host keys, nothing else), and
    /// an initramfs with `config`.
    pub fn prepare(h: &Harness, dir: &Path, config: &serde_json::Value, unchecked: bool) -> Result<Machine> {
        let expect = serde_json::to_vec_pretty(&plain_expectations())
            .context(|| "cannot serialize the expectations".into())?;
        let nix = Staging::new(&dir.join("nix-staging"))?;
        nix.dir("/store", 0, 0, 0o755)?.copy(&h.bin.stage2, "/store/lethe-stage2", 0o555)?.file(
            "/store/lethe-stage2.json",
            &expect,
            0,
            0,
            0o444,
        )?;
        let nix_img = dir.join("nix.img");
        images::mkfs_ext4("nix", &nix, &nix_img, 32)?;

        let persist = Staging::new(&dir.join("persist-staging"))?;
        persist
            .dir("/etc/ssh", 0, 0, 0o755)?
            .file("/etc/ssh/ssh_host_ed25519_key", HOST_KEY.as_bytes(), 0, 0, 0o600)?
            .file("/etc/ssh/ssh_host_ed25519_key.pub", HOST_KEY_PUB.as_bytes(), 0, 0, 0o644)?;
        let persist_img = dir.join("persist.img");
        images::mkfs_ext4("persist", &persist, &persist_img, 64)?;

        let initrd = dir.join("initrd.img");
        let initramfs_bytes =
            artifacts::mkinitrd(&h.bin, &h.kernel, &InitrdSpec { config, unchecked }, &initrd)?;
        Ok(Machine {
            initrd,
            initramfs_bytes,
            disks: vec![nix_img, persist_img.clone()],
            persist: persist_img,
        })
    }
}

/// plain-tmpfs: two boots of the plain machine; what is erased and what persists.
fn plain_tmpfs(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir(Scenario::PlainTmpfs.name())?;
    let m = Machine::prepare(h, &dir, &plain_config(), false)?;
    r.initramfs_bytes = Some(m.initramfs_bytes);
    for n in 1..=2u64 {
        let boot = h.boot(&format!("boot {n}"), &m.initrd, &m.disks, echo)?;
        check_plain_boot(r, n, &boot);
        let reached_stage2 = matches!(boot.outcome, Outcome::Stage2(_));
        r.boots.push((format!("boot {n}"), boot));
        if !reached_stage2 {
            return Ok(()); // the next boot could only repeat this failure
        }
    }
    // The host's view of the persistent disk after both boots.
    for (path, want) in [
        (BOOT_COUNTER, "2\n".to_owned()),
        ("/etc/machine-id", format!("{MACHINE_ID}\n")),
        (USER_FILE, "boot 1\nboot 2\n".to_owned()),
    ] {
        match debugfs_cat(&m.persist, path) {
            Ok(found) => r.check(found == want, || {
                format!("persist.img{path} holds {found:?} after two boots, expected {want:?}")
            }),
            Err(e) => r.findings.push(format!("cannot read persist.img{path}: {e}")),
        }
    }
    Ok(())
}

/// The checks of boot `n` (1-based) of the plain machine.
pub fn check_plain_boot(r: &mut ScenarioResult, n: u64, boot: &Boot) {
    let Outcome::Stage2(rep) = &boot.outcome else {
        r.findings.push(format!("boot {n}: {}", boot.summary()));
        return;
    };
    for f in &rep.failures {
        r.findings.push(format!("boot {n}: stage 2: {f}"));
    }
    r.check(rep.boot == Some(n), || {
        format!("boot {n}: the persisted boot counter says {:?}, expected {n}", rep.boot)
    });
    r.check(!rep.ephemeral_marker_found, || {
        format!("boot {n}: the ephemeral marker from an earlier boot is still on the root")
    });
    let want_id = if n == 1 { MACHINE_ID_UNINITIALIZED } else { MACHINE_ID };
    r.check(rep.machine_id_found.as_deref() == Some(want_id), || {
        format!("boot {n}: /etc/machine-id was {:?}, expected {want_id:?}", rep.machine_id_found)
    });
    r.check(rep.user_file_lines == Some(n), || {
        format!("boot {n}: {USER_FILE} has {:?} lines after this boot, expected {n}", rep.user_file_lines)
    });
    r.check(timings(rep).is_some(), || {
        format!("boot {n}: no usable stage-1 timings (/run/lethe/timings.json): {:?}", rep.timings)
    });
    r.check(boot.console_has(SWITCH_ROOT_LINE), || {
        format!("boot {n}: the console never showed {SWITCH_ROOT_LINE:?}")
    });
}

/// The stage-1 timings of a report, if present and well-formed.
pub fn timings(rep: &Report) -> Option<Timings> {
    rep.timings.clone().and_then(|t| serde_json::from_value(t).ok())
}

/// bad-config: an initramfs with an invalid config (built with
/// --unchecked) stops at the config step, naming the JSON path, before any
/// disk is touched.
fn bad_config(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir(Scenario::BadConfig.name())?;
    let mut config = plain_config();
    config["mounts"]["/persist"]["device"] = json!("persist"); // LABEL= forgotten
    let m = Machine::prepare(h, &dir, &config, true)?;
    let before = digests(&m.disks)?;
    let boot = h.boot("invalid config", &m.initrd, &m.disks, echo)?;
    let after = digests(&m.disks)?;
    match &boot.outcome {
        Outcome::Failed { step, message } => {
            let text = qemu::failure_text(message, usize::MAX);
            r.check(step == "config", || format!("stage 1 failed at {step:?}, expected config: {text}"));
            r.check(message.iter().any(|l| l.contains("mounts./persist.device")), || {
                format!("the failure does not name the JSON path mounts./persist.device: {text}")
            });
        }
        _ => r.findings.push(format!("expected `{}config`, got: {}", qemu::FAILED_PREFIX, boot.summary())),
    }
    for ((disk, b), a) in m.disks.iter().zip(&before).zip(&after) {
        r.check(a == b, || format!("{} changed during the boot (sha256 {b} -> {a})", disk.display()));
    }
    r.check(!boot.console_has("EXT4-fs (vd"), || {
        "the kernel mounted an ext4 disk (an `EXT4-fs (vd` line)".into()
    });
    r.boots.push(("invalid config".into(), boot));
    Ok(())
}

/// missing-device: a device that never appears (first /persist's, then the
/// root's) stops the boot with a message naming it and the timeout.
fn missing_device(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir(Scenario::MissingDevice.name())?;
    let mut persist_missing = plain_config();
    persist_missing["mounts"]["/persist"]["device"] = json!("LABEL=absent");
    persist_missing["mounts"]["/persist"]["timeout"] = json!(3);
    let mut root_missing = plain_config();
    root_missing["root"] = json!({"fsType": "ext4", "device": "LABEL=absent-root", "timeout": 3});
    for (label, name, config, spec) in [
        ("/persist missing", "persist", persist_missing, "LABEL=absent"),
        ("root missing", "root", root_missing, "LABEL=absent-root"),
    ] {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).context(|| error::at(&sub, "cannot create"))?;
        let m = Machine::prepare(h, &sub, &config, false)?;
        let boot = h.boot(label, &m.initrd, &m.disks, echo)?;
        match &boot.outcome {
            Outcome::Failed { message, .. } => {
                let text = message.join("\n");
                let names_timeout = ["3 s", "3s", "3 seconds"].iter().any(|t| text.contains(t));
                r.check(text.contains(spec) && names_timeout, || {
                    format!(
                        "{label}: expected the failure to name {spec} and its 3 s timeout, got: {}",
                        qemu::failure_text(message, usize::MAX)
                    )
                });
            }
            _ => r
                .findings
                .push(format!("{label}: expected a FAILED line naming {spec}, got: {}", boot.summary())),
        }
        r.boots.push((label.into(), boot));
    }
    Ok(())
}

/// dry-run: `lethe.dry-run` finds the devices and plans every mount, then
/// stops before switch_root; no disk changes, no ext4 is mounted.
fn dry_run(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir(Scenario::DryRun.name())?;
    let m = Machine::prepare(h, &dir, &plain_config(), false)?;
    let before = digests(&m.disks)?;
    let boot = h.boot_with("lethe.dry-run", &m.initrd, &m.disks, "lethe.dry-run", echo)?;
    let after = digests(&m.disks)?;
    match &boot.outcome {
        Outcome::Failed { step, message } => {
            let text = qemu::failure_text(message, usize::MAX);
            r.check(step == "switch-root" && text.contains("dry run"), || {
                format!("expected stage 1 to stop before switch_root for the dry run, got: {text}")
            });
        }
        _ => r.findings.push(format!("expected a stop before switch_root, got: {}", boot.summary())),
    }
    for target in ["/sysroot/persist", "/sysroot/nix"] {
        r.check(
            boot.console.iter().any(|l| l.starts_with("lethe: dry run: would mount") && l.ends_with(target)),
            || format!("the console shows no `dry run: would mount ... at {target}` line"),
        );
    }
    for ((disk, b), a) in m.disks.iter().zip(&before).zip(&after) {
        r.check(a == b, || format!("{} changed during the dry run (sha256 {b} -> {a})", disk.display()));
    }
    r.check(!boot.console_has("EXT4-fs (vd"), || "the kernel mounted an ext4 disk during the dry run".into());
    r.boots.push(("lethe.dry-run".into(), boot));
    Ok(())
}

fn digests(disks: &[PathBuf]) -> Result<Vec<String>> {
    disks.iter().map(|d| images::sha256(d)).collect()
}

/// A file's content in an ext4 image, read with debugfs (no mount).
fn debugfs_cat(image: &Path, path: &str) -> Result<String> {
    let out = error::run(Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
