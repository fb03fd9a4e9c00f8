//! The scenarios: each prepares disk images and an initramfs, boots them (twice where that shows what persists) and checks what it sees.
//!
//! A scenario returns its findings (failed checks, each a sentence); an
//! [`Error`](crate::error::Error) means the harness itself could not do its
//! job (no QEMU, mkinitrd failed), which counts as a failure too.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::error::{self, Context, Result};
use crate::expect::{MACHINE_ID_UNINITIALIZED, Report, Timings};
use crate::harness::Harness;
use crate::images;
use crate::machine::{BOOT_COUNTER, MACHINE_ID, Machine, USER_FILE, plain_config};
use crate::qemu::{self, Boot, Outcome};

/// The line stage 1 prints just before it execs stage 2.
pub const SWITCH_ROOT_LINE: &str = "lethe: switch_root to /sysroot, exec /nix/store/lethe-stage2";

/// The scenarios `run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    PlainTmpfs,
    BadConfig,
    MissingDevice,
    DryRun,
    ZfsRollback,
    ZfsBlank,
    BtrfsBlank,
    ZfsLuksBlank,
    BtrfsTmpfsUsbkey,
    DmCrypt,
    SshUnlock,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::PlainTmpfs,
        Scenario::BadConfig,
        Scenario::MissingDevice,
        Scenario::DryRun,
        Scenario::ZfsRollback,
        Scenario::ZfsBlank,
        Scenario::BtrfsBlank,
        Scenario::ZfsLuksBlank,
        Scenario::BtrfsTmpfsUsbkey,
        Scenario::DmCrypt,
        Scenario::SshUnlock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PlainTmpfs => "plain-tmpfs",
            Scenario::BadConfig => "bad-config",
            Scenario::MissingDevice => "missing-device",
            Scenario::DryRun => "dry-run",
            Scenario::ZfsRollback => "zfs-rollback",
            Scenario::ZfsBlank => "zfs-blank",
            Scenario::BtrfsBlank => "btrfs-blank",
            Scenario::ZfsLuksBlank => "zfs-luks-blank",
            Scenario::BtrfsTmpfsUsbkey => "btrfs-tmpfs-usbkey",
            Scenario::DmCrypt => "dm-crypt",
            Scenario::SshUnlock => "ssh-unlock",
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
            Scenario::ZfsRollback => {
                "`initrd-tool rollback zfs` on a real pool in a busybox guest: newer snapshots and bookmarks destroyed, siblings untouched; dry run, missing snapshot or dataset, clones"
            }
            Scenario::ZfsBlank => {
                "pool rpool (local/root@blank, local/nix, safe/persist) made in a guest; stage 1 imports it and rolls the root back; boots twice"
            }
            Scenario::BtrfsBlank => {
                "BTRFS @root re-created from @blank, old roots kept in @old_roots, @nix and @persist; boots twice, then checked on the host"
            }
            Scenario::ZfsLuksBlank => {
                "ZFS rpool inside LUKS2 (argon2id), the passphrase typed on the serial console; rolled back to @blank on each of two boots; read back through cryptsetup"
            }
            Scenario::BtrfsTmpfsUsbkey => {
                "LUKS2 opened by a key file on a vfat stick (UUID=), BTRFS subvolumes, 2G tmpfs root; two boots with the stick, one typing the passphrase after its timeout, one with two wrong ones first"
            }
            Scenario::SshUnlock => {
                "LUKS2 + BTRFS @root from @blank unlocked by the host's OpenSSH client (forwarded port on 127.0.0.1): wrong key, password, command, subsystem, forwarding refused; stdin and terminal; static ip= and DHCP; two boots"
            }
            Scenario::DmCrypt => {
                "lethe's dm-crypt activation against cryptsetup's in a busybox guest: LUKS2, 4K sectors with every flag, LUKS1 essiv, detached header; keyring, udev entry, read-only, close"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Runs the scenario; `echo` prints every console live.
    pub fn run(self, h: &Harness, echo: Option<&str>) -> ScenarioResult {
        let mut r = ScenarioResult {
            scenario: self,
            boots: Vec::new(),
            findings: Vec::new(),
            notes: Vec::new(),
            initramfs_bytes: None,
        };
        let done = match self {
            Scenario::PlainTmpfs => plain_tmpfs(h, echo, &mut r),
            Scenario::BadConfig => bad_config(h, echo, &mut r),
            Scenario::MissingDevice => missing_device(h, echo, &mut r),
            Scenario::DryRun => dry_run(h, echo, &mut r),
            Scenario::ZfsRollback => crate::zfs::zfs_rollback(h, echo, &mut r),
            Scenario::ZfsBlank => crate::zfs::zfs_blank(h, echo, &mut r),
            Scenario::BtrfsBlank => crate::btrfs_blank::btrfs_blank(h, echo, &mut r),
            Scenario::ZfsLuksBlank => crate::zfs_luks_blank::zfs_luks_blank(h, echo, &mut r),
            Scenario::BtrfsTmpfsUsbkey => crate::btrfs_tmpfs_usbkey::btrfs_tmpfs_usbkey(h, echo, &mut r),
            Scenario::DmCrypt => crate::dm_crypt::dm_crypt(h, echo, &mut r),
            Scenario::SshUnlock => crate::ssh_unlock::ssh_unlock(h, echo, &mut r),
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
    /// Figures worth printing whether or not it passed (`boot 1: passphrase sent -> switch_root 812 ms`).
    pub notes: Vec<String>,
    /// The size of the (last) initramfs built.
    pub initramfs_bytes: Option<u64>,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// Records a failed check when `ok` is false.
    pub(crate) fn check(&mut self, ok: bool, finding: impl FnOnce() -> String) {
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

/// Boots a machine whose stage 1 imports and resets its root twice, each
/// checked like the plain machine plus the console lines of the import and
/// rollback steps (`instead` says what stage 1 should have done rather than
/// keep the old root). False when a boot did not reach stage 2.
pub fn boot_twice_resetting(
    h: &Harness,
    r: &mut ScenarioResult,
    initrd: &Path,
    disks: &[PathBuf],
    echo: Option<&str>,
    instead: &str,
) -> Result<bool> {
    for n in 1..=2u64 {
        let label = format!("boot {n}");
        let boot = h.boot(&label, initrd, disks, echo)?;
        check_plain_boot(r, n, &boot);
        for ok in ["lethe: import ok", "lethe: rollback ok", "lethe: rollback: reset the"] {
            r.check(boot.console_has(ok), || format!("{label}: the console never showed {ok:?}"));
        }
        r.check(!boot.console_has("keeping the old root"), || {
            format!("{label}: stage 1 kept the old root instead of {instead}")
        });
        let reached_stage2 = matches!(boot.outcome, Outcome::Stage2(_));
        r.boots.push((label, boot));
        if !reached_stage2 {
            return Ok(false);
        }
    }
    Ok(true)
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

/// Each boot's stage-1 figures from its stage 2 report.
pub fn boot_times(r: &ScenarioResult) -> Vec<crate::report::BootTimes> {
    r.boots
        .iter()
        .zip(r.reports())
        .map(|((label, _), rep)| crate::report::BootTimes {
            label: label.clone(),
            stage2_at_s: rep.and_then(|r| r.uptime_s),
            timings: rep.and_then(timings),
        })
        .collect()
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
