//! The btrfs-tmpfs-usbkey scenario: the laptop, LUKS2 opened by a key file on a vfat "USB stick" found by UUID (a passphrase when the stick is absent), BTRFS subvolumes at /nix, /persist, /var/log and /home, a fresh 2G tmpfs root on every boot; four boots.
//!
//! The disk is formatted on the host (pbkdf2); a setup guest puts the key
//! file on the stick and fills the BTRFS through the reference
//! cryptsetup; lethe boots twice with the stick, once without (the
//! passphrase after the key file's timeout) and once more with two wrong
//! passphrases first; a check guest reads the disk back through the
//! reference.

use std::path::{Path, PathBuf};

use crate::artifacts::{self, InitrdSpec};
use crate::error::Result;
use crate::expect::Expectations;
use crate::fixtures::Fixture;
use crate::guest::{self, GuestSpec};
use crate::harness::Harness;
use crate::images;
use crate::luks_disk::{self, Format, Kdf, KeyFile, MAPPING};
use crate::machine::{self, ALICE, BOOT_COUNTER, MACHINE_ID, USERS};
use crate::qemu::{Boot, ConsoleInput, Outcome};
use crate::scenarios::ScenarioResult;

/// The laptop's LUKS2 disk (whole, no partition table): the passphrase's
/// keyslot derived with pbkdf2-sha256, 512-byte encryption sectors.
pub const FORMAT: Format = Format {
    uuid: "4c455448-4500-4c55-4b53-0000000b7f5e",
    label: "lethe-laptop",
    kdf: Kdf::Pbkdf2 { hash: "sha256", iterations: 1000 },
    sector_size: 512,
};
/// The key file's keyslot.
const KEY_KDF: Kdf = Kdf::Pbkdf2 { hash: "sha512", iterations: 1000 };
/// The key file: 8 KiB, of which bytes 512 to 4607 are the key.
const KEY_FILE_BYTES: usize = 8192;
const KEY_OFFSET: u64 = 512;
const KEY_SIZE: u64 = 4096;
/// Where the key file is on the stick.
pub const KEY_PATH: &str = "/keys/cryptroot.key";
/// The stick's vfat volume id (`mkfs.vfat -i`) and how the config names it.
const STICK_ID: &str = "1A2B3C4D";
pub const STICK: &str = "UUID=1A2B-3C4D";
/// Seconds stage 1 waits for the stick before asking for the passphrase.
pub const KEY_TIMEOUT_S: u64 = 5;
const DISK_MIB: u64 = 320;
const STICK_KIB: u64 = 8192;
/// The LUKS2 header's size (cryptsetup's default): what lethe must leave as it was.
const HEADER_BYTES: u64 = 16 << 20;
/// The file in alice's home (@user/home) that stage 2 appends to.
pub const USER_FILE: &str = "/home/alice/lethe-boots";
/// The subvolumes, relative to the top level, by mount point.
pub const SUBVOLUMES: [(&str, &str); 4] = [
    ("/nix", "@system/nix"),
    ("/persist", "@system/state"),
    ("/var/log", "@system/logs"),
    ("/home", "@user/home"),
];

const SETUP_SCRIPT: &str = include_str!("../guest/luks-btrfs-setup.sh");
const CHECK_SCRIPT: &str = include_str!("../guest/luks-btrfs-check.sh");

/// What luks-btrfs-setup.sh and luks-btrfs-check.sh check.
pub const SETUP_CHECKS: &[(&str, &str)] = &[
    ("stick-key", "the key file on the stick reads back as written"),
    ("nix-copied", "@system/nix holds the nix image's tree"),
    ("persist-copied", "@system/state holds the persist image's tree"),
    ("setup", "the BTRFS is made and unmounted, the mapping closed"),
];
const CHECK_CHECKS: &[(&str, &str)] =
    &[("check", "the reference opens the disk with the typed passphrase, mounts the BTRFS and closes again")];

/// The laptop's config, as lethe's NixOS module writes it for
/// nix/eval/machines/btrfs-tmpfs-usbkey.nix: cryptroot opened by the key file's region on the
/// stick (waited for 5 s), else by the passphrase (3 tries); a 2G tmpfs root; the BTRFS
/// subvolumes through /dev/mapper/cryptroot; machine-id, SSH host keys and /var/lib/nixos
/// persisted from /persist.
pub fn config() -> serde_json::Value {
    Fixture::BtrfsTmpfsUsbkey.config()
}

/// What stage 2 checks on each boot: the plain machine's root state on a
/// 2G tmpfs, the subvolumes, alice's home on @user/home, and the mapping.
pub fn expectations() -> Expectations {
    let mut e = machine::plain_expectations();
    e.mounts.retain(|m| !m.target.starts_with("/home/alice"));
    e.paths.retain(|p| !p.path.contains("/alice/.config") && !p.path.starts_with("/persist/home"));
    e = machine::remount(e, "/", "tmpfs", &["rw", "size=2097152k", "mode=755"]);
    for (target, subvol) in SUBVOLUMES {
        e = machine::remount(e, target, "btrfs", &["rw", &format!("subvol=/{subvol}")]);
    }
    e.paths.extend(luks_disk::mapping_expectations(&FORMAT));
    if let Some(u) = &mut e.user_file {
        u.path = USER_FILE.into();
    }
    e
}

/// The busybox guest with the reference cryptsetup, mkfs.btrfs, btrfs,
/// the key file and the two scripts.
fn tools_initrd(h: &Harness, dir: &Path, key: &KeyFile) -> Result<PathBuf> {
    let out = dir.join("tools.img");
    let mut modules = vec!["virtio_pci", "virtio_blk", "ext4", "btrfs"];
    modules.extend(luks_disk::VFAT_MODULES);
    let spec = GuestSpec {
        scripts: vec![("luks-btrfs-setup.sh", SETUP_SCRIPT), ("luks-btrfs-check.sh", CHECK_SCRIPT)],
        programs: vec![Path::new("/usr/sbin/mkfs.btrfs"), Path::new("/usr/bin/btrfs")],
        files: vec![(key.path.clone(), "/lethe-guest/cryptroot.key".into())],
        modules,
    };
    luks_disk::tools_initrd(h, dir, spec, &out)?;
    Ok(out)
}

/// The laptop's disks, and the guest that filled them.
pub struct Disks {
    /// The LUKS2 disk (BTRFS inside).
    pub disk: PathBuf,
    /// The vfat stick with the key file.
    pub stick: PathBuf,
    /// The busybox guest with the reference cryptsetup (for the check guest).
    pub tools: PathBuf,
    /// The setup guest's boot: [`guest::check`] it before booting the disks.
    pub setup: Boot,
}

/// The disk formatted on the host (passphrase and key-file keyslots) and the stick, filled
/// by a setup guest: the key file on the stick, /nix's tree for `expect` and the persisted
/// state in the BTRFS subvolumes.
pub fn make_disks(h: &Harness, dir: &Path, expect: &Expectations, echo: Option<&str>) -> Result<Disks> {
    let key = KeyFile { path: dir.join("cryptroot.key"), offset: KEY_OFFSET, size: KEY_SIZE };
    luks_disk::write_key_file(&key.path, KEY_FILE_BYTES)?;
    let tools = tools_initrd(h, dir, &key)?;
    let nix = machine::nix_staging(h, dir, expect)?;
    let persist = machine::persist_staging(dir)?;
    let (nix_img, persist_img) = (dir.join("nix.img"), dir.join("persist.img"));
    images::mkfs_ext4("nix", &nix, &nix_img, 32)?;
    images::mkfs_ext4("persist", &persist, &persist_img, 64)?;

    let (disk, stick) = (dir.join("disk.img"), dir.join("stick.img"));
    luks_disk::sparse_file(&disk, DISK_MIB)?;
    luks_disk::format(&disk, &FORMAT)?;
    luks_disk::add_key_file(&disk, &key, KEY_KDF)?;
    luks_disk::vfat_stick(&stick, STICK_ID, "LETHEKEY", STICK_KIB)?;
    let setup_disks = [disk.clone(), stick.clone(), nix_img, persist_img];
    let setup =
        h.boot_cmdline("setup", &tools, &setup_disks, &guest::cmdline("luks-btrfs-setup.sh"), echo)?;
    Ok(Disks { disk, stick, tools, setup })
}

/// One of lethe's boots: its label, whether the stick is plugged in, and
/// what is typed.
struct LetheBoot {
    label: &'static str,
    stick: bool,
    input: Vec<ConsoleInput>,
}

/// btrfs-tmpfs-usbkey: the disk and stick made on the host and filled by
/// a setup guest; four boots of lethe; a check guest reads the disk back.
pub fn btrfs_tmpfs_usbkey(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("btrfs-tmpfs-usbkey")?;
    let Disks { disk, stick, tools, setup } = make_disks(h, &dir, &expectations(), echo)?;
    guest::check(&mut r.findings, "setup", &setup, SETUP_CHECKS);
    r.boots.push(("setup".into(), setup));
    if !r.findings.is_empty() {
        return Ok(()); // nothing to boot
    }
    let header = luks_disk::header_digest(&disk, 0, HEADER_BYTES)?;

    let initrd = dir.join("initrd.img");
    let config = config();
    r.initramfs_bytes = Some(artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &[], add_modules: &[] },
        &initrd,
    )?);
    let boots = [
        LetheBoot { label: "boot 1", stick: true, input: vec![] },
        LetheBoot { label: "boot 2", stick: true, input: vec![] },
        LetheBoot { label: "boot 3", stick: false, input: vec![luks_disk::passphrase()] },
        LetheBoot { label: "boot 4", stick: false, input: luks_disk::two_wrong_then_right() },
    ];
    for (n, b) in (1u64..).zip(&boots) {
        let disks = if b.stick { vec![disk.clone(), stick.clone()] } else { vec![disk.clone()] };
        let boot = luks_disk::boot_lethe(h, b.label, &initrd, &disks, &b.input, echo)?;
        let reached_stage2 = luks_disk::check_unlocking_boot(r, n, &boot, &b.input);
        check_key_file_wait(r, b, &boot);
        r.boots.push((b.label.into(), boot));
        if !reached_stage2 {
            return Ok(()); // the next boot could only repeat this failure
        }
    }
    let after = luks_disk::header_digest(&disk, 0, HEADER_BYTES)?;
    r.check(after == header, || {
        format!("the LUKS2 header (the disk's first {HEADER_BYTES} bytes) changed during lethe's boots")
    });

    let check = luks_disk::boot_guest(h, "check", &tools, &[disk], "luks-btrfs-check.sh", echo)?;
    let found = guest::check(&mut r.findings, "check", &check, CHECK_CHECKS);
    r.boots.push(("check".into(), check));
    let value = |name: &str| found.values.get(name).map(String::as_str);
    let subvolumes = "@system/logs @system/nix @system/state @user/home";
    let alice = format!("{ALICE}:{USERS} 700");
    for (name, want) in [
        ("subvolumes", subvolumes.to_owned()),
        (BOOT_COUNTER, "4|".to_owned()),
        ("/etc/machine-id", format!("{MACHINE_ID}|")),
        (USER_FILE, "boot 1|boot 2|boot 3|boot 4|".to_owned()),
        ("home-alice", alice),
        // Only what persist-bind keeps: no marker of the tmpfs roots.
        ("state", "etc var".to_owned()),
    ] {
        r.check(value(name) == Some(&want), || {
            format!(
                "the disk's {name} reads {:?} through the reference after four boots (newlines as |), expected {want:?}",
                value(name)
            )
        });
    }
    Ok(())
}

/// With the stick, stage 1 must not wait out the key file's timeout;
/// without it, it asks for the passphrase only after the timeout.
fn check_key_file_wait(r: &mut ScenarioResult, b: &LetheBoot, boot: &Boot) {
    let Outcome::Stage2(rep) = &boot.outcome else { return };
    let Some(ms) = luks_disk::unlock_ms(rep) else { return };
    let timeout_ms = (KEY_TIMEOUT_S * 1000) as f64;
    if b.stick {
        r.check(ms < timeout_ms, || {
            format!(
                "{}: the unlock took {ms:.0} ms with the stick plugged in: it waited out the key file's {KEY_TIMEOUT_S} s timeout",
                b.label
            )
        });
    } else {
        r.check(ms >= timeout_ms, || {
            format!(
                "{}: the unlock took {ms:.0} ms without the stick: the passphrase was asked before the key file's {KEY_TIMEOUT_S} s timeout",
                b.label
            )
        });
    }
}

/// What the demo says of one boot: how stage 1 says it opened cryptroot,
/// what was typed, and how long the unlock step took.
pub fn describe_unlock(boot: &Boot) -> String {
    let opened = format!("{MAPPING}: opened by ");
    let how = boot
        .console
        .iter()
        .find_map(|l| l.split_once(&opened).map(|(_, how)| format!("opened by {how}")))
        .unwrap_or_else(|| "not opened".into());
    let typed = match boot.typed.len() {
        0 => String::new(),
        1 => ", 1 passphrase typed".into(),
        n => format!(", {n} passphrases typed ({} wrong)", n - 1),
    };
    let ms = match &boot.outcome {
        Outcome::Stage2(rep) => luks_disk::unlock_ms(rep).map_or("?".into(), |ms| format!("{ms:.0} ms")),
        _ => "?".into(),
    };
    format!("{how}{typed}, unlock step {ms}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::Kind;

    #[test]
    fn the_expectations_are_the_laptops_mounts() {
        let e = expectations();
        let targets: Vec<&str> = e.mounts.iter().map(|m| m.target.as_str()).collect();
        for t in ["/", "/nix", "/persist", "/var/log", "/home", "/etc/machine-id", "/var/lib/nixos"] {
            assert!(targets.contains(&t), "{t} missing from {targets:?}");
        }
        assert!(!targets.iter().any(|t| t.starts_with("/home/alice")), "{targets:?}");
        assert!(e.paths.iter().any(|p| p.path == "/dev/mapper/cryptroot" && p.kind == Kind::BlockDevice));
        assert_eq!(e.user_file.map(|u| u.path), Some(USER_FILE.to_owned()));
        let c = config();
        assert_eq!(c["luks"]["devices"]["cryptroot"]["keyFile"]["device"], STICK);
        assert_eq!(c["mounts"]["/persist"]["options"][0], "subvol=@system/state");
    }
}
