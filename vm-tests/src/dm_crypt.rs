//! The dm-crypt scenario: lethe's native activation (`initrd_tool::crypt`) against cryptsetup's in one busybox guest, on LUKS2, LUKS2 with 4096-byte sectors, LUKS1 and detached-header volumes made on the host.
//!
//! The host has no device-mapper, so everything that activates runs in the
//! guest (guest/dm-crypt.sh) on Debian's kernel: cryptsetup, the reference,
//! opens each volume and writes a file system through its mapping; the static
//! lethe-dm-check (src/bin/lethe-dm-check.rs) opens it again with lethe's code,
//! and the script compares the tables (`dmsetup table --showkeys`), dm UUIDs,
//! key placement, links, udev entries, flags, read-only mode and closing. The
//! volumes are formatted on the host with `cryptsetup luksFormat`, their volume
//! keys taken with `luksDump --dump-volume-key` (neither needs device-mapper).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::{self, TARGET};
use crate::error::{self, Context, Error, Result};
use crate::guest::{self, GuestSpec};
use crate::harness::Harness;
use crate::host;
use crate::scenarios::ScenarioResult;

const SCRIPT: &str = include_str!("../guest/dm-crypt.sh");
const SCRIPT_NAME: &str = "dm-crypt.sh";
const CRYPTSETUP: &str = "/usr/sbin/cryptsetup";
const DMSETUP: &str = "/usr/sbin/dmsetup";
const MKFS_EXT4: &str = "/usr/sbin/mkfs.ext4";
/// The driver binary, built for the guest.
const DRIVER: &str = "lethe-dm-check";
/// What lethe's activation of aes-xts-plain64 and aes-cbc-essiv:sha256 volumes needs of
/// Debian's modules when the kernel cannot load modules itself: device-mapper, dm-crypt, and
/// the crypto templates that are modules there (aes, cbc and sha256 are built in). The guest
/// loads only these before it activates every volume with lethe.
pub const LETHE_MODULES: &[&str] = &["dm_mod", "dm_crypt", "xts", "ecb", "essiv"];
/// What cryptsetup needs on top: it decrypts keyslot areas through the kernel's crypto API.
const REFERENCE_MODULES: &[&str] = &["af_alg", "algif_skcipher", "algif_hash"];
/// Each volume's disk: 16 MiB of LUKS2 metadata and room for a small ext4.
const VOLUME_MIB: u64 = 40;
/// The key file that opens every volume's keyslot 0.
const KEY_FILE: &[u8] = b"lethe dm-crypt scenario key file\n";

/// What dm-crypt.sh checks, by the names it prints.
const CHECKS: &[(&str, &str)] = &[
    ("modules-v2", "with only lethe's modules loaded, the LUKS2 volume activates and closes"),
    ("modules-v4k", "with only lethe's modules loaded, the 4K-sector LUKS2 volume activates and closes"),
    (
        "modules-v1",
        "with only lethe's modules loaded, the LUKS1 aes-cbc-essiv:sha256 volume activates and closes",
    ),
    ("modules-vdet", "with only lethe's modules loaded, the detached-header volume activates and closes"),
    ("v2-created", "lethe opens the LUKS2 volume cryptsetup wrote"),
    ("v2-table", "lethe's table is cryptsetup's (but for the key)"),
    ("v2-key-as-cryptsetups", "the table names the key as cryptsetup's does"),
    ("v2-key-in-keyring", "the table names the logon key cryptsetup:<uuid>-d0"),
    ("v2-reports-keyring", "activate reports the key in the keyring"),
    ("v2-no-hex-key", "dmsetup table --showkeys does not show the volume key"),
    ("v2-key-dropped", "no unrevoked key is left in the keyring"),
    ("v2-dm-uuid", "the dm UUID is CRYPT-LUKS2-<uuid>-<name>"),
    ("v2-node", "/dev/mapper/NAME links to ../dm-N"),
    ("v2-by-id", "/dev/disk/by-id/dm-uuid-... links to ../../dm-N"),
    ("v2-udev-mode", "the udev database entry has mode 1644"),
    ("v2-udev-entry", "the udev database entry has dm's links, flags and properties and the systemd tag"),
    ("v2-udev-tag", "/run/udev/tags/systemd has the device"),
    (
        "v2-cryptsetup-status",
        "cryptsetup status sees a LUKS2 mapping with its key in the keyring, 512-byte sectors",
    ),
    ("v2-content", "the file cryptsetup's mapping wrote reads back through lethe's"),
    ("v2-already-active", "opening it again reports it already active"),
    ("v2-name-taken", "another volume under the same name is refused, naming it"),
    ("v2-close", "lethe closes it"),
    ("v2-gone", "closing removes the mapping, its links and its udev entry"),
    (
        "failed-open-leaves-nothing",
        "a key dm-crypt refuses fails the activation, leaving no mapping, link, udev entry or key",
    ),
    ("failed-open-explained", "the failure names the cipher and the key size dm-crypt refused"),
    ("close-absent", "closing a mapping that is not there is an error naming it"),
    ("close-linear", "closing a mapping that is not dm-crypt's is refused"),
    ("ro-reported", "a read-only activation reports read-only"),
    ("ro-blockdev", "the read-only mapping is read-only to the kernel"),
    ("ro-write", "a write to the read-only mapping fails"),
    ("ro-content", "the read-only mapping reads the file"),
    ("hex-reported", "without the keyring, activate reports the key in the table"),
    ("hex-key", "without the keyring, the table holds the volume key in hex"),
    ("hex-content", "the hex-key mapping reads the file"),
    ("unlock-content", "unlocked from the key file by luks::unlock, the mapping reads the file"),
    ("v4k-table", "with 4096-byte sectors and every flag, lethe's table is cryptsetup's"),
    ("v4k-flags", "the flags are allow_discards no_read_workqueue no_write_workqueue sector_size:4096"),
    ("v4k-content", "the 4K-sector mapping reads the file"),
    ("v1-table", "lethe's LUKS1 table is cryptsetup's (but for the key)"),
    ("v1-key-in-keyring", "the LUKS1 key is a logon key too"),
    ("v1-dm-uuid", "the dm UUID is CRYPT-LUKS1-<uuid>-<name>"),
    ("v1-cryptsetup-status", "cryptsetup status sees a LUKS1 mapping"),
    ("v1-content", "the LUKS1 mapping reads the file"),
    ("v1-cryptsetup-close", "cryptsetup closes lethe's mapping"),
    ("vdet-table", "with a detached header, lethe's table is cryptsetup's"),
    ("vdet-dm-uuid", "the detached volume's dm UUID is its header's"),
    ("vdet-content", "the detached-header mapping reads the file"),
];

/// One volume: its disk, its detached header, its UUID, and its volume key's file.
struct Volume {
    name: &'static str,
    disk: PathBuf,
    header: Option<PathBuf>,
    uuid: String,
    volume_key: PathBuf,
}

/// dm-crypt: the volumes made on the host, then one guest boot.
pub fn dm_crypt(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("dm-crypt")?;
    let driver = build_driver()?;
    let key = dir.join("key");
    std::fs::write(&key, KEY_FILE).context(|| error::at(&key, "cannot write"))?;
    let pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256"];
    let luks2 = ["--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512"];
    // cryptsetup picks 4096-byte sectors for LUKS2 when it can: 512 is asked for explicitly.
    let v2 = volume(&dir, &key, "v2", &[&luks2[..], &pbkdf2, &["--sector-size", "512"]].concat(), false)?;
    let v4k = volume(&dir, &key, "v4k", &[&luks2[..], &pbkdf2, &["--sector-size", "4096"]].concat(), false)?;
    let luks1 = ["--type", "luks1", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"];
    let v1 = volume(&dir, &key, "v1", &[&luks1[..], &pbkdf2[2..]].concat(), false)?;
    let vdet = volume(&dir, &key, "vdet", &[&luks2[..], &pbkdf2].concat(), true)?;
    let volumes = [&v2, &v4k, &v1, &vdet];

    let mut script = format!(
        "LETHE_MODULES=\"{}\"\nREFERENCE_MODULES=\"{}\"\n",
        LETHE_MODULES.join(" "),
        REFERENCE_MODULES.join(" ")
    );
    for v in volumes {
        script.push_str(&format!("{}_UUID={}\n", v.name.to_uppercase(), v.uuid));
    }
    script.push_str(SCRIPT);
    let mut files = vec![(driver, format!("/bin/{DRIVER}")), (key.clone(), "/lethe/key".to_owned())];
    for v in volumes {
        files.push((v.volume_key.clone(), format!("/lethe/{}.vk", v.name)));
        if let Some(hdr) = &v.header {
            files.push((hdr.clone(), format!("/lethe/{}.hdr", v.name)));
        }
    }
    let modules: Vec<&str> = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
        .iter()
        .chain(LETHE_MODULES)
        .chain(REFERENCE_MODULES)
        .copied()
        .collect();
    let initrd = dir.join("dm-crypt.img");
    r.initramfs_bytes = Some(guest::build(
        h,
        &dir,
        &GuestSpec {
            scripts: vec![(SCRIPT_NAME, &script)],
            programs: vec![Path::new(CRYPTSETUP), Path::new(DMSETUP), Path::new(MKFS_EXT4)],
            files,
            modules,
        },
        &initrd,
    )?);
    let disks: Vec<PathBuf> = volumes.iter().map(|v| v.disk.clone()).collect();
    let boot = guest::boot(h, "guest", &initrd, &disks, SCRIPT_NAME, echo)?;
    guest::check(&mut r.findings, "guest", &boot, CHECKS);
    r.boots.push(("guest".into(), boot));
    Ok(())
}

/// `cryptsetup luksFormat` of a new sparse disk `<name>.img` (with `detached`, of a header file
/// `<name>.hdr` for it), opened by the key file; its UUID and volume key.
fn volume(dir: &Path, key: &Path, name: &'static str, format: &[&str], detached: bool) -> Result<Volume> {
    let disk = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&disk).context(|| error::at(&disk, "cannot create"))?;
    f.set_len(VOLUME_MIB << 20).context(|| error::at(&disk, "cannot size"))?;
    let header = if detached {
        let hdr = dir.join(format!("{name}.hdr"));
        let f = std::fs::File::create(&hdr).context(|| error::at(&hdr, "cannot create"))?;
        f.set_len(16 << 20).context(|| error::at(&hdr, "cannot size"))?;
        Some(hdr)
    } else {
        None
    };
    let mut cmd = Command::new(CRYPTSETUP);
    cmd.args(["luksFormat", "-q", "--key-file"]).arg(key).args(format);
    if let Some(hdr) = &header {
        cmd.arg("--header").arg(hdr);
    }
    error::run(cmd.arg(&disk))?;
    // Where the header is: the detached file, or the disk.
    let hdr_dev = header.as_deref().unwrap_or(&disk);
    let uuid = error::run(Command::new(CRYPTSETUP).arg("luksUUID").arg(hdr_dev))?;
    let uuid = String::from_utf8_lossy(&uuid.stdout).trim().to_owned();
    if uuid.len() != 36 {
        return Err(Error::Setup(format!("cryptsetup luksUUID {}: {uuid:?}", hdr_dev.display())));
    }
    let volume_key = dir.join(format!("{name}.vk"));
    let _ = std::fs::remove_file(&volume_key);
    error::run(
        Command::new(CRYPTSETUP)
            .args(["luksDump", "-q", "--dump-volume-key", "--volume-key-file"])
            .arg(&volume_key)
            .arg("--key-file")
            .arg(key)
            .arg(hdr_dev),
    )?;
    Ok(Volume { name, disk, header, uuid, volume_key })
}

/// `cargo build --release --locked --target x86_64-unknown-linux-musl -p vm-tests --bin
/// lethe-dm-check`: the static driver for the guest.
fn build_driver() -> Result<PathBuf> {
    let workspace = host::workspace();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace).args([
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
        "-p",
        "vm-tests",
        "--bin",
        DRIVER,
    ]);
    error::run_inherit(&mut cmd)?;
    let bin = artifacts::target_dir(&workspace).join(TARGET).join("release").join(DRIVER);
    if !bin.is_file() {
        return Err(Error::Setup(format!("cargo built no {}", bin.display())));
    }
    Ok(bin)
}
