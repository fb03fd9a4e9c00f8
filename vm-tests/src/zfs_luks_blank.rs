//! The zfs-luks-blank scenario: the desktop, a ZFS pool inside LUKS2 opened by a passphrase typed on the serial console, its root rolled back to @blank on each of two boots, machine-id, SSH host keys, /var/lib/nixos and alice's Documents and .ssh persisted.
//!
//! The disk is formatted on the host (argon2id, so a real boot derives an
//! Argon2 key); a setup guest opens it with the reference cryptsetup and
//! makes the pool; lethe boots it twice; a check guest reads it back
//! through the reference.

use std::path::{Path, PathBuf};

use crate::artifacts::{self, InitrdSpec};
use crate::error::Result;
use crate::expect::{Expectations, Kind, MountExpectation, MountKind, PathExpectation};
use crate::fixtures::Fixture;
use crate::guest::{self, GuestSpec};
use crate::harness::Harness;
use crate::images;
use crate::luks_disk::{self, Format, Kdf, MAPPING};
use crate::machine::{self, ALICE, BOOT_COUNTER, MACHINE_ID, USERS};
use crate::scenarios::ScenarioResult;
use crate::zfs::{self, ZFS, ZPOOL};

/// The desktop's LUKS2 disk: the passphrase's keyslot derived with
/// argon2id (64 MiB, 2 lanes, 4 passes: real Argon2, still quick in TCG),
/// 4096-byte encryption sectors.
pub const FORMAT: Format = Format {
    uuid: "4c455448-4500-4c55-4b53-00000000d35c",
    label: "lethe-desktop",
    kdf: Kdf::Argon2id { memory_kib: 65536, parallel: 2, iterations: 4 },
    sector_size: 4096,
};
/// The disk: GPT, vda1 from 1 MiB holding LUKS2 (16 MiB of header) and
/// the pool (sparse).
const DISK_MIB: u64 = 320;
/// The LUKS2 header's size (cryptsetup's default): what lethe must leave as it was.
const HEADER_BYTES: u64 = 16 << 20;
/// Where vda1 starts.
const PARTITION_OFFSET: u64 = 1 << 20;
/// The file the blank root holds; stage 2 finds it on every boot.
const BLANK_FILE: &str = "/etc/lethe-blank";
/// The file in alice's persisted Documents that stage 2 appends to.
pub const USER_FILE: &str = "/home/alice/Documents/lethe-boots";

const SETUP_SCRIPT: &str = include_str!("../guest/luks-zfs-setup.sh");
const CHECK_SCRIPT: &str = include_str!("../guest/luks-zfs-check.sh");

/// What luks-zfs-setup.sh and luks-zfs-check.sh check.
const SETUP_CHECKS: &[(&str, &str)] = &[
    ("opened", "the reference cryptsetup opens vda1 with the passphrase typed on the console"),
    ("nix-copied", "local/nix holds the nix image's tree"),
    ("persist-copied", "safe/persist holds the persist image's tree"),
    ("setup", "the pool is made and exported, the mapping closed"),
];
const CHECK_CHECKS: &[(&str, &str)] =
    &[("check", "the reference opens the disk, the pool imports without -f, exports and closes again")];

/// The desktop's config, as lethe's NixOS module writes it for
/// nix/eval/machines/zfs-luks-blank.nix: cryptroot opened with a passphrase (3 tries), pool
/// rpool imported from /dev/mapper, local/root rolled back to @blank, local/nix, safe/persist
/// and safe/home (at /persist/home) mounted, the plain machine's persisted state plus alice's
/// Documents and .ssh.
pub fn config() -> serde_json::Value {
    Fixture::ZfsLuksBlank.config()
}

/// What stage 2 checks on each boot: the plain machine's state with the
/// root, /nix and /persist on ZFS, safe/home at /persist/home holding
/// alice's Documents and .ssh, the blank file, and the mapping.
pub fn expectations() -> Expectations {
    let mut e = machine::plain_expectations();
    e.mounts.retain(|m| !m.target.starts_with("/home/alice"));
    e.paths.retain(|p| !p.path.contains("/alice/.config"));
    for target in ["/", "/nix", "/persist", "/persist/home"] {
        e = machine::remount(e, target, "zfs", &["rw"]);
    }
    for dir in ["Documents", ".ssh"] {
        e.mounts.push(MountExpectation {
            target: format!("/home/alice/{dir}"),
            what: MountKind::Bind { storage: "/persist/home".into(), path: format!("/alice/{dir}") },
        });
    }
    e.paths.extend([
        PathExpectation::new(BLANK_FILE, Kind::File).owned(0, 0, 0o644).content("blank\n"),
        PathExpectation::new("/home/alice/Documents", Kind::Dir).owned(ALICE, USERS, 0o755),
        PathExpectation::new("/home/alice/.ssh", Kind::Dir).owned(ALICE, USERS, 0o700),
        PathExpectation::new("/persist/home/alice/.ssh", Kind::Dir).owned(ALICE, USERS, 0o700),
    ]);
    e.paths.extend(luks_disk::mapping_expectations(&FORMAT));
    if let Some(u) = &mut e.user_file {
        u.path = USER_FILE.into();
    }
    e
}

/// The busybox guest with the reference cryptsetup, zpool, zfs and the
/// two scripts.
fn tools_initrd(h: &Harness, dir: &Path) -> Result<PathBuf> {
    zfs::require_modules(h)?;
    let out = dir.join("tools.img");
    let spec = GuestSpec {
        scripts: vec![("luks-zfs-setup.sh", SETUP_SCRIPT), ("luks-zfs-check.sh", CHECK_SCRIPT)],
        programs: vec![Path::new(ZPOOL), Path::new(ZFS)],
        files: vec![zfs::hostid_file(dir)?],
        modules: vec!["virtio_pci", "virtio_blk", "ext4", "zfs"],
    };
    luks_disk::tools_initrd(h, dir, spec, &out)?;
    Ok(out)
}

/// zfs-luks-blank: the disk formatted on the host, filled by a setup
/// guest, booted twice by lethe with the passphrase typed at its prompt,
/// then read back by a check guest.
pub fn zfs_luks_blank(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("zfs-luks-blank")?;
    let tools = tools_initrd(h, &dir)?;
    let nix = machine::nix_staging(h, &dir, &expectations())?;
    let persist = machine::persist_staging(&dir)?;
    // safe/home's mount point.
    persist.dir("/home", 0, 0, 0o755)?;
    let (nix_img, persist_img) = (dir.join("nix.img"), dir.join("persist.img"));
    images::mkfs_ext4("nix", &nix, &nix_img, 32)?;
    images::mkfs_ext4("persist", &persist, &persist_img, 64)?;

    let (part, disk) = (dir.join("cryptroot.part"), dir.join("disk.img"));
    luks_disk::sparse_file(&part, DISK_MIB - 2)?;
    luks_disk::format(&part, &FORMAT)?;
    luks_disk::gpt_disk(&disk, &part, DISK_MIB, MAPPING)?;
    std::fs::remove_file(&part).ok();

    let setup = luks_disk::boot_guest(
        h,
        "setup",
        &tools,
        &[disk.clone(), nix_img, persist_img],
        "luks-zfs-setup.sh",
        echo,
    )?;
    let before = guest::check(&mut r.findings, "setup", &setup, SETUP_CHECKS);
    r.boots.push(("setup".into(), setup));
    if !r.findings.is_empty() {
        return Ok(()); // no pool to boot
    }
    let header = luks_disk::header_digest(&disk, PARTITION_OFFSET, HEADER_BYTES)?;

    let initrd = dir.join("initrd.img");
    let mut files = vec![zfs::hostid_file(&dir)?, (PathBuf::from(ZPOOL), ZPOOL.to_owned())];
    for l in guest::shared_libraries(Path::new(ZPOOL))? {
        let dest = l.to_string_lossy().into_owned();
        files.push((l, dest));
    }
    let config = config();
    r.initramfs_bytes = Some(artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &files, add_modules: &[] },
        &initrd,
    )?);
    let disks = [disk.clone()];
    let input = [luks_disk::passphrase()];
    for n in 1..=2u64 {
        let label = format!("boot {n}");
        let boot = luks_disk::boot_lethe(h, &label, &initrd, &disks, &input, echo)?;
        let reached_stage2 = luks_disk::check_unlocking_boot(r, n, &boot, &input);
        for ok in ["lethe: import ok", "lethe: rollback ok", "lethe: rollback: reset the"] {
            r.check(boot.console_has(ok), || format!("{label}: the console never showed {ok:?}"));
        }
        r.check(!boot.console_has("keeping the old root"), || {
            format!("{label}: stage 1 kept the old root instead of rolling back to @blank")
        });
        r.boots.push((label, boot));
        if !reached_stage2 {
            return Ok(()); // the next boot could only repeat this failure
        }
    }
    let after = luks_disk::header_digest(&disk, PARTITION_OFFSET, HEADER_BYTES)?;
    r.check(after == header, || {
        format!("the LUKS2 header (vda1's first {HEADER_BYTES} bytes) changed during lethe's boots")
    });

    let check = luks_disk::boot_guest(h, "check", &tools, &disks, "luks-zfs-check.sh", echo)?;
    let found = guest::check(&mut r.findings, "check", &check, CHECK_CHECKS);
    r.boots.push(("check".into(), check));
    let value = |name: &str| found.values.get(name).map(String::as_str);
    r.check(value("snapshots") == Some("rpool/local/root@blank"), || {
        format!(
            "after two boots the pool's snapshots and bookmarks are {:?}, expected only rpool/local/root@blank",
            value("snapshots")
        )
    });
    let blank = before.values.get("blank-guid").map(String::as_str);
    r.check(blank.is_some() && value("blank-guid") == blank, || {
        format!("@blank's guid was {blank:?} after the setup and {:?} after two boots", value("blank-guid"))
    });
    let modes = format!("{ALICE}:{USERS} 700 {ALICE}:{USERS} 755 {ALICE}:{USERS} 700");
    for (path, want) in [
        (BOOT_COUNTER, "2|".to_owned()),
        ("/etc/machine-id", format!("{MACHINE_ID}|")),
        (USER_FILE, "boot 1|boot 2|".to_owned()),
        ("home-alice", modes),
    ] {
        r.check(value(path) == Some(&want), || {
            format!(
                "the pool's {path} reads {:?} through the reference after two boots (newlines as |), expected {want:?}",
                value(path)
            )
        });
    }
    Ok(())
}
