//! What systemd-udevd would have recorded for a device-mapper device: its /run/udev/data entry, its systemd tag, and the /dev/mapper/NAME and /dev/disk/by-id links.
//!
//! The initramfs runs no udev, but after switch_root systemd reads udev's database to decide
//! which devices are ready: a dm device without an entry is "not initialized" until udev's
//! coldplug, and dm's rules (55-dm.rules) only accept a spurious "add" of a dm device when the
//! database says it was set up by libdevmapper (`DM_UDEV_PRIMARY_SOURCE_FLAG=1`). So the entry
//! written here is what udev writes for a dm-crypt device activated by cryptsetup in a systemd
//! initrd (sd-device's `device_update_db`): links (`S:`), the time it was initialized (`I:`,
//! CLOCK_MONOTONIC in µs), dm's properties (`E:`), the systemd tag (`G:` any, `Q:` current),
//! the database version (`V:1`); mode 01644, the sticky bit meaning "keep across the
//! initrd-to-root transition" (`OPTIONS+="db_persist"`). The text is a pure function; the
//! writers take their root directories so tests run them anywhere.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::dm::DevNum;

/// udev's runtime directory.
pub const RUN_UDEV: &str = "/run/udev";
/// The database's mode: 0644 plus the sticky bit that udevadm's `--cleanup-db` keeps.
pub const DB_MODE: u32 = 0o1644;
/// A tag file's mode, as sd-device creates it.
const TAG_MODE: u32 = 0o444;
/// The tag that makes systemd track the device as a .device unit.
const SYSTEMD_TAG: &str = "systemd";

/// udev's id of a block device: `b<major>:<minor>`.
pub fn device_id(dev: DevNum) -> String {
    format!("b{}:{}", dev.major, dev.minor)
}

/// The links (relative to /dev) dm's udev rules make for a mapping: /dev/mapper/NAME
/// (55-dm.rules), /dev/disk/by-id/dm-name-NAME and dm-uuid-UUID (60-persistent-storage-dm.rules).
pub fn dm_links(name: &str, uuid: &str) -> Vec<String> {
    let mut links = vec![format!("mapper/{name}"), format!("disk/by-id/dm-name-{name}")];
    if !uuid.is_empty() {
        links.push(format!("disk/by-id/dm-uuid-{uuid}"));
    }
    links
}

/// A dm device's database entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmEntry<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    /// As from [`dm_links`].
    pub links: &'a [String],
    /// CLOCK_MONOTONIC in µs when the device was set up.
    pub initialized_usec: u64,
}

/// The text of /run/udev/data/b<major>:<min> for `e`.
pub fn dm_db_text(e: &DmEntry<'_>) -> String {
    let mut t = String::new();
    for l in e.links {
        let _ = writeln!(t, "S:{l}");
    }
    let _ = writeln!(t, "I:{}", e.initialized_usec);
    // The flags libdevmapper passes in its udev cookie when cryptsetup activates a device, as
    // 10-dm.rules decodes them into the database, then what the rules derive.
    for (k, v) in [
        ("DM_UDEV_DISABLE_LIBRARY_FALLBACK_FLAG", "1"),
        ("DM_UDEV_PRIMARY_SOURCE_FLAG", "1"),
        ("DM_UDEV_RULES", "1"),
        ("DM_UDEV_RULES_VSN", "2"),
        ("DM_ACTIVATION", "1"),
        ("DM_NAME", e.name),
        ("DM_UUID", e.uuid),
        ("DM_SUSPENDED", "0"),
    ] {
        if !v.is_empty() {
            let _ = writeln!(t, "E:{k}={v}");
        }
    }
    let _ = writeln!(t, "G:{SYSTEMD_TAG}");
    let _ = writeln!(t, "Q:{SYSTEMD_TAG}");
    t.push_str("V:1\n");
    t
}

/// CLOCK_MONOTONIC now, in µs: what udev records as the time a device was initialized.
pub fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let usec = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000;
    secs.saturating_mul(1_000_000).saturating_add(usec)
}

/// Writes `text` as the database entry of `dev` under `run_udev` (/run/udev) and its systemd tag;
/// the entry is replaced atomically. Returns the entry's path.
pub fn write_db(run_udev: &Path, dev: DevNum, text: &str) -> io::Result<PathBuf> {
    let id = device_id(dev);
    let data = run_udev.join("data");
    fs::create_dir_all(&data)?;
    let path = data.join(&id);
    let tmp = data.join(format!(".#{id}.lethe"));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // Exactly DB_MODE, whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(DB_MODE))?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    let tags = run_udev.join("tags").join(SYSTEMD_TAG);
    fs::create_dir_all(&tags)?;
    let tag = tags.join(&id);
    fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tag)?;
    fs::set_permissions(&tag, fs::Permissions::from_mode(TAG_MODE))?;
    Ok(path)
}

/// Removes the database entry and systemd tag of `dev` (what is already gone is fine).
pub fn remove_db(run_udev: &Path, dev: DevNum) -> io::Result<()> {
    let id = device_id(dev);
    for p in [run_udev.join("data").join(&id), run_udev.join("tags").join(SYSTEMD_TAG).join(&id)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The kernel's name of a block device (`dm-0`), from /sys/dev/block/M:m under `sys`; for a
/// dm device whose sysfs entry is unreadable, `dm-<minor>` (how dm names its disks).
pub fn kernel_name(sys: &Path, dev: DevNum) -> String {
    fs::read_link(sys.join("dev/block").join(dev.to_string()))
        .ok()
        .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("dm-{}", dev.minor))
}

/// Makes each of `links` (relative to `dev_root`, /dev) a relative symlink to the device's node
/// `dev_root/<kname>`, creating that node (block, 0600) when devtmpfs has not. An existing link
/// is replaced atomically.
pub fn link_nodes(dev_root: &Path, kname: &str, dev: DevNum, links: &[String]) -> io::Result<()> {
    let node = dev_root.join(kname);
    match fs::metadata(&node) {
        Ok(m) if m.file_type().is_block_device() && m.rdev() == dev.to_rdev() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not the block device {dev}", node.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => mknod_block(&node, dev)?,
        Err(e) => return Err(e),
    }
    for l in links {
        let link = dev_root.join(l);
        let depth = Path::new(l).components().count().saturating_sub(1);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push(kname);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = tmp_sibling(&link);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(())
}

/// Removes those of `links` that lead to the device `dev_root/<kname>` (a symlink to it, or a
/// block node of `dev`); a link that now leads elsewhere belongs to another device and stays.
pub fn unlink_nodes(dev_root: &Path, kname: &str, dev: DevNum, links: &[String]) -> io::Result<()> {
    for l in links {
        let link = dev_root.join(l);
        let ours = match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::read_link(&link)?.file_name().is_some_and(|n| n == kname)
            }
            Ok(m) => m.file_type().is_block_device() && m.rdev() == dev.to_rdev(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if ours {
            fs::remove_file(&link)?;
        }
    }
    Ok(())
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".#{name}.lethe"))
}

fn mknod_block(path: &Path, dev: DevNum) -> io::Result<()> {
    use rustix::fs::{FileType, Mode};
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        dev.to_rdev(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "CRYPT-LUKS2-5af75f63c7ac40f785fc370c4994d14f-cryptroot";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lethe-udev-db-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_entry_is_what_udev_writes_for_a_cryptsetup_device() {
        let links = dm_links("cryptroot", UUID);
        let text = dm_db_text(&DmEntry {
            name: "cryptroot",
            uuid: UUID,
            links: &links,
            initialized_usec: 4_250_000,
        });
        assert_eq!(
            text,
            format!(
                "S:mapper/cryptroot\n\
                 S:disk/by-id/dm-name-cryptroot\n\
                 S:disk/by-id/dm-uuid-{UUID}\n\
                 I:4250000\n\
                 E:DM_UDEV_DISABLE_LIBRARY_FALLBACK_FLAG=1\n\
                 E:DM_UDEV_PRIMARY_SOURCE_FLAG=1\n\
                 E:DM_UDEV_RULES=1\n\
                 E:DM_UDEV_RULES_VSN=2\n\
                 E:DM_ACTIVATION=1\n\
                 E:DM_NAME=cryptroot\n\
                 E:DM_UUID={UUID}\n\
                 E:DM_SUSPENDED=0\n\
                 G:systemd\n\
                 Q:systemd\n\
                 V:1\n"
            )
        );
        // A mapping without a dm UUID has neither the by-uuid link nor the property.
        let links = dm_links("plain", "");
        assert_eq!(links, ["mapper/plain", "disk/by-id/dm-name-plain"]);
        let text = dm_db_text(&DmEntry { name: "plain", uuid: "", links: &links, initialized_usec: 1 });
        assert!(!text.contains("DM_UUID"), "{text}");
    }

    #[test]
    fn the_entry_is_sticky_and_tagged() {
        let run = scratch("write");
        let dev = DevNum::new(254, 3);
        let path = write_db(&run, dev, "V:1\n").unwrap();
        assert_eq!(path, run.join("data/b254:3"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "V:1\n");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o1644);
        let tag = run.join("tags/systemd/b254:3");
        assert_eq!(fs::metadata(&tag).unwrap().len(), 0);
        assert_eq!(fs::metadata(&tag).unwrap().permissions().mode() & 0o7777, 0o444);
        // Rewritten in place of the old one; no temporary file left behind.
        write_db(&run, dev, "V:1\nI:2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "V:1\nI:2\n");
        assert_eq!(fs::read_dir(run.join("data")).unwrap().count(), 1);
        remove_db(&run, dev).unwrap();
        assert!(!path.exists() && !tag.exists());
        remove_db(&run, dev).unwrap();
        fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn links_lead_to_the_kernel_node() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test makes device nodes: run it as root");
        }
        let dev_root = scratch("links");
        let dev = DevNum::new(254, 7);
        let links = dm_links("cryptroot", UUID);
        // No /dev/dm-7 yet (no devtmpfs): the node is made, then linked to.
        link_nodes(&dev_root, "dm-7", dev, &links).unwrap();
        let node = fs::metadata(dev_root.join("dm-7")).unwrap();
        assert!(node.file_type().is_block_device() && node.rdev() == dev.to_rdev());
        assert_eq!(fs::read_link(dev_root.join("mapper/cryptroot")).unwrap(), Path::new("../dm-7"));
        assert_eq!(
            fs::read_link(dev_root.join(format!("disk/by-id/dm-uuid-{UUID}"))).unwrap(),
            Path::new("../../dm-7")
        );
        let through = fs::metadata(dev_root.join("mapper/cryptroot")).unwrap();
        assert_eq!(through.rdev(), dev.to_rdev());
        // Again: the links are replaced, not refused.
        link_nodes(&dev_root, "dm-7", dev, &links).unwrap();
        // A link taken over by another device is left alone on removal.
        fs::remove_file(dev_root.join("disk/by-id/dm-name-cryptroot")).unwrap();
        std::os::unix::fs::symlink("../../dm-8", dev_root.join("disk/by-id/dm-name-cryptroot")).unwrap();
        unlink_nodes(&dev_root, "dm-7", dev, &links).unwrap();
        assert!(fs::symlink_metadata(dev_root.join("mapper/cryptroot")).is_err());
        assert!(fs::symlink_metadata(dev_root.join("disk/by-id/dm-name-cryptroot")).is_ok());
        // A node of another device where ours belongs is an error, not overwritten.
        let other = scratch("links-other");
        mknod_block(&other.join("dm-7"), DevNum::new(254, 8)).unwrap();
        assert!(link_nodes(&other, "dm-7", dev, &links).is_err());
        fs::remove_dir_all(&dev_root).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn ids_and_kernel_names() {
        assert_eq!(device_id(DevNum::new(254, 0)), "b254:0");
        let sys = scratch("sys");
        assert_eq!(kernel_name(&sys, DevNum::new(254, 4)), "dm-4");
        fs::create_dir_all(sys.join("dev/block")).unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/dm-9", sys.join("dev/block/254:4")).unwrap();
        assert_eq!(kernel_name(&sys, DevNum::new(254, 4)), "dm-9");
        fs::remove_dir_all(&sys).unwrap();
        assert!(monotonic_usec() > 0);
    }
}
