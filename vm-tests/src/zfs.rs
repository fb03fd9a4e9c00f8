//! The ZFS scenarios: zfs-rollback (lethe's native rollback on a real pool in a busybox guest) and zfs-blank (the desktop's pool, rolled back to @blank on each of two boots by lethe's own stage 1).
//!
//! The host kernel has no ZFS, so the pools are made and inspected in
//! busybox guests ([`crate::guest`]) running Debian's zpool and zfs on the
//! guest kernel with the zfs-dkms modules (scripts/install-deps.sh).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::artifacts::{self, InitrdSpec};
use crate::error::{self, Context, Error, Result};
use crate::expect::{Kind, PathExpectation};
use crate::guest::{self, GuestSpec};
use crate::harness::Harness;
use crate::images;
use crate::machine::{self, BOOT_COUNTER, MACHINE_ID, USER_FILE};
use crate::scenarios::{self, ScenarioResult};

pub(crate) const ZPOOL: &str = "/usr/sbin/zpool";
pub(crate) const ZFS: &str = "/usr/sbin/zfs";
/// The hostid of every guest (/etc/hostid; NixOS's `networking.hostId`):
/// a pool last imported under the same hostid imports without -f.
const HOSTID: u32 = 0x6c65_7468;
/// The pool's disk, far above ZFS's 64 MiB minimum (sparse).
const POOL_MIB: u64 = 256;
/// The file the blank root holds; stage 2 finds it on every boot.
const BLANK_FILE: &str = "/etc/lethe-blank";

const ROLLBACK_SCRIPT: &str = include_str!("../guest/zfs-rollback.sh");
const SETUP_SCRIPT: &str = include_str!("../guest/zfs-setup.sh");
const CHECK_SCRIPT: &str = include_str!("../guest/zfs-check.sh");

/// What zfs-rollback.sh checks, by the names it prints.
const ROLLBACK_CHECKS: &[(&str, &str)] = &[
    ("setup", "the pool with older, blank and newer snapshots and bookmarks is made"),
    ("dry-run-exit", "--dry-run exits 0"),
    ("dry-run-plan", "--dry-run names the snapshots it would destroy"),
    ("dry-run-pool", "--dry-run leaves every dataset, snapshot and bookmark in place"),
    ("dry-run-root", "--dry-run leaves the root's files as they were"),
    ("missing-snapshot-exit", "a missing snapshot exits 0 so the boot goes on"),
    ("missing-snapshot-warns", "a missing snapshot warns that the old root is kept"),
    ("missing-snapshot-pool", "a missing snapshot changes nothing in the pool"),
    ("missing-snapshot-root", "a missing snapshot leaves the root's files as they were"),
    ("missing-dataset-exit", "a missing dataset exits 0 so the boot goes on"),
    ("missing-dataset-warns", "a missing dataset warns that the old root is kept"),
    ("missing-dataset-pool", "a missing dataset changes nothing in the pool"),
    ("missing-dataset-root", "a missing dataset leaves the root's files as they were"),
    ("clone-exit", "a clone of a newer snapshot exits 0 so the boot goes on"),
    ("clone-warns", "a clone of a newer snapshot warns that the old root is kept"),
    ("clone-named", "the refusal names the clone"),
    ("clone-pool", "a clone of a newer snapshot changes nothing in the pool"),
    ("clone-root", "a clone of a newer snapshot leaves the root's files as they were"),
    ("rollback-exit", "the rollback exits 0"),
    ("rollback-no-warning", "the rollback does not keep the old root"),
    ("newer-snapshots-destroyed", "the snapshots newer than @blank are destroyed, @older and @blank kept"),
    ("newer-bookmarks-destroyed", "the bookmarks newer than @blank are destroyed, #older kept"),
    ("blank-kept", "@blank is the same snapshot (guid) afterwards"),
    ("root-is-blank", "the root's files, owners, modes and contents are @blank's"),
    ("files-after-blank-gone", "the files written after @blank are gone"),
    ("blank-file-restored", "a file of @blank changed afterwards has @blank's content again"),
    ("siblings-untouched", "local/nix and safe/persist keep their snapshots and files"),
    ("again-exit", "a second rollback exits 0"),
    ("again-pool", "a second rollback changes nothing"),
];

/// What zfs-setup.sh and zfs-check.sh check.
const SETUP_CHECKS: &[(&str, &str)] = &[
    ("nix-copied", "local/nix holds the nix image's tree"),
    ("persist-copied", "safe/persist holds the persist image's tree"),
    ("setup", "the pool is made and exported"),
];
const CHECK_CHECKS: &[(&str, &str)] = &[("check", "the pool imports without -f and exports again")];

/// /etc/hostid's bytes (the hostid in native byte order, as zgenhostid writes it).
pub(crate) fn hostid_file(dir: &Path) -> Result<(PathBuf, String)> {
    let p = dir.join("hostid");
    std::fs::write(&p, HOSTID.to_le_bytes()).context(|| error::at(&p, "cannot write"))?;
    Ok((p, "/etc/hostid".into()))
}

/// The pool's disk: a sparse file of `mib` MiB with an MBR holding one
/// partition (vda1) of type 0xbf (Solaris) from 1 MiB to the end. On a
/// whole disk, zpool would partition it itself and wait for udev to
/// announce the partitions, and the guests have no udev.
pub(crate) fn pool_disk(path: &Path, mib: u64) -> Result<()> {
    let mut f = std::fs::File::create(path).context(|| error::at(path, "cannot create"))?;
    f.write_all(&mbr(mib)).context(|| error::at(path, "cannot write"))?;
    f.set_len(mib << 20).context(|| error::at(path, "cannot size"))
}

/// A master boot record with one partition from sector 2048 to the end of
/// a `mib` MiB disk (LBA only: the CHS fields say "beyond 8 GiB").
fn mbr(mib: u64) -> [u8; 512] {
    const START: u32 = 2048;
    let sectors = u32::try_from((mib << 20) / 512).unwrap_or(u32::MAX);
    let mut m = [0u8; 512];
    let e = &mut m[446..462];
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0xbf;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&START.to_le_bytes());
    e[12..16].copy_from_slice(&(sectors - START).to_le_bytes());
    m[510..].copy_from_slice(&[0x55, 0xaa]);
    m
}

/// The zfs-dkms modules must be built for the guest's kernel.
pub(crate) fn require_modules(h: &Harness) -> Result<()> {
    if !h.kernel.modules.join("updates/dkms/zfs.ko").is_file() {
        return Err(Error::Setup(format!(
            "no ZFS modules in {}/updates/dkms: scripts/install-deps.sh builds them with zfs-dkms",
            h.kernel.modules.display()
        )));
    }
    Ok(())
}

/// The busybox guest with zpool, zfs, initrd-tool and the modules, and
/// the three scripts; returns it and its size.
fn tools_initrd(h: &Harness, dir: &Path) -> Result<(PathBuf, u64)> {
    require_modules(h)?;
    let out = dir.join("zfs-tools.img");
    let bytes = guest::build(
        h,
        dir,
        &GuestSpec {
            scripts: vec![
                ("zfs-rollback.sh", ROLLBACK_SCRIPT),
                ("zfs-setup.sh", SETUP_SCRIPT),
                ("zfs-check.sh", CHECK_SCRIPT),
            ],
            programs: vec![Path::new(ZPOOL), Path::new(ZFS)],
            files: vec![hostid_file(dir)?],
            modules: vec!["virtio_pci", "virtio_blk", "ext4", "zfs"],
        },
        &out,
    )?;
    Ok((out, bytes))
}

/// zfs-rollback: one guest makes a pool and runs `initrd-tool rollback zfs`
/// in every case (dry run, missing snapshot or dataset, a clone, the
/// rollback, once more) and reports what it finds.
pub fn zfs_rollback(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("zfs-rollback")?;
    let (initrd, bytes) = tools_initrd(h, &dir)?;
    r.initramfs_bytes = Some(bytes);
    let disk = dir.join("pool.img");
    pool_disk(&disk, POOL_MIB)?;
    let boot = guest::boot(h, "guest", &initrd, &[disk], "zfs-rollback.sh", echo)?;
    guest::check(&mut r.findings, "guest", &boot, ROLLBACK_CHECKS);
    r.boots.push(("guest".into(), boot));
    Ok(())
}

/// The desktop's config: pool rpool imported by stage 1, local/root rolled
/// back to @blank, local/nix and safe/persist mounted, the plain machine's
/// persisted state.
pub fn zfs_config() -> serde_json::Value {
    let mut c = machine::plain_config();
    c["modules"] = json!({"load": ["virtio_pci", "virtio_blk", "zfs"], "coldplug": true});
    c["pools"] = json!({"zfs": {"rpool": {"devNodes": "/dev", "timeout": 30}}});
    c["rollback"] = json!({"zfs": {"dataset": "rpool/local/root", "snapshot": "blank"}});
    c["root"] = json!({"fsType": "zfs", "device": "rpool/local/root"});
    c["mounts"] = json!({
        "/nix": {"fsType": "zfs", "device": "rpool/local/nix"},
        "/persist": {"fsType": "zfs", "device": "rpool/safe/persist"}
    });
    c
}

/// zfs-blank: a setup guest makes the pool; lethe boots it twice (the
/// marker stage 2 leaves on the root is gone in boot 2, the persisted
/// state is kept); a check guest then reads the pool.
pub fn zfs_blank(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("zfs-blank")?;
    let (tools, _) = tools_initrd(h, &dir)?;
    let mut expect = machine::plain_expectations();
    for (target, options) in [("/", &["rw"][..]), ("/nix", &["rw"]), ("/persist", &["rw"])] {
        expect = machine::remount(expect, target, "zfs", options);
    }
    expect.paths.push(PathExpectation::new(BLANK_FILE, Kind::File).owned(0, 0, 0o644).content("blank\n"));
    let nix = machine::nix_staging(h, &dir, &expect)?;
    let persist = machine::persist_staging(&dir)?;
    let (nix_img, persist_img, pool) = (dir.join("nix.img"), dir.join("persist.img"), dir.join("pool.img"));
    images::mkfs_ext4("nix", &nix, &nix_img, 32)?;
    images::mkfs_ext4("persist", &persist, &persist_img, 64)?;
    pool_disk(&pool, POOL_MIB)?;

    let setup = guest::boot(h, "setup", &tools, &[pool.clone(), nix_img, persist_img], "zfs-setup.sh", echo)?;
    let before = guest::check(&mut r.findings, "setup", &setup, SETUP_CHECKS);
    r.boots.push(("setup".into(), setup));
    if !r.findings.is_empty() {
        return Ok(()); // no pool to boot
    }

    let initrd = dir.join("initrd.img");
    let mut files = vec![hostid_file(&dir)?, (PathBuf::from(ZPOOL), ZPOOL.to_owned())];
    for l in guest::shared_libraries(Path::new(ZPOOL))? {
        let dest = l.to_string_lossy().into_owned();
        files.push((l, dest));
    }
    let config = zfs_config();
    r.initramfs_bytes = Some(artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &files, add_modules: &[] },
        &initrd,
    )?);
    let disks = [pool.clone()];
    if !scenarios::boot_twice_resetting(h, r, &initrd, &disks, echo, "rolling back to @blank")? {
        return Ok(()); // a boot that did not reach stage 2 would only repeat itself
    }

    let check = guest::boot(h, "check", &tools, &disks, "zfs-check.sh", echo)?;
    let after = guest::check(&mut r.findings, "check", &check, CHECK_CHECKS);
    r.boots.push(("check".into(), check));
    let value = |name: &str| after.values.get(name).map(String::as_str);
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
    for (path, want) in [
        (BOOT_COUNTER, "2|".to_owned()),
        ("/etc/machine-id", format!("{MACHINE_ID}|")),
        (USER_FILE, "boot 1|boot 2|".to_owned()),
    ] {
        r.check(value(path) == Some(&want), || {
            format!(
                "safe/persist{path} holds {:?} after two boots (newlines as |), expected {want:?}",
                value(path)
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_disk_has_one_partition_from_1_mib_to_the_end() {
        let m = mbr(256);
        let e = &m[446..462];
        assert_eq!(e[4], 0xbf);
        assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(e[12..16].try_into().unwrap()), 256 * 2048 - 2048);
        assert!(m[462..510].iter().all(|&b| b == 0), "one partition only");
        assert_eq!(m[510..], [0x55, 0xaa]);
    }
}
