//! The plain machine most scenarios boot: its config (tmpfs root, ext4 /persist and /nix), the disk images, the initramfs, and what its stage 2 checks.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::artifacts::{self, InitrdSpec};
use crate::error::{Context, Result};
use crate::expect::{
    Expectations, Kind, MachineIdExpectation, MountExpectation, MountKind, PathExpectation, UserFile,
};
use crate::harness::Harness;
use crate::images::{self, Staging};

/// alice's uid.
pub const ALICE: u32 = 1000;
/// The gid of alice's group, users.
pub const USERS: u32 = 100;
/// The id stage 2 commits over "uninitialized" on the first boot.
pub const MACHINE_ID: &str = "5e7a1e7e5e7a1e7e5e7a1e7e5e7a1e7e";
/// The persisted boot counter stage 2 increments.
pub const BOOT_COUNTER: &str = "/var/lib/nixos/lethe-boot-count";
/// The file in alice's persisted .config that stage 2 appends to.
pub const USER_FILE: &str = "/home/alice/.config/lethe-boots";
const HOST_KEY: &str = "lethe-vm-tests ssh host key (not a real key)\n";
const HOST_KEY_PUB: &str = "ssh-ed25519 AAAAlethe-vm-tests root@lethe\n";

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
        let nix = nix_staging(h, dir, &plain_expectations())?;
        let nix_img = dir.join("nix.img");
        images::mkfs_ext4("nix", &nix, &nix_img, 32)?;

        let persist = persist_staging(dir)?;
        let persist_img = dir.join("persist.img");
        images::mkfs_ext4("persist", &persist, &persist_img, 64)?;

        let initrd = dir.join("initrd.img");
        let initramfs_bytes = artifacts::mkinitrd(
            &h.bin,
            &h.kernel,
            &InitrdSpec { config, unchecked, files: &[], add_modules: &[] },
            &initrd,
        )?;
        Ok(Machine {
            initrd,
            initramfs_bytes,
            disks: vec![nix_img, persist_img.clone()],
            persist: persist_img,
        })
    }
}

/// /nix's tree in `dir`/nix-staging: stage 2 and, next to it, `expect`.
pub fn nix_staging(h: &Harness, dir: &Path, expect: &Expectations) -> Result<Staging> {
    let expect = serde_json::to_vec_pretty(expect).context(|| "cannot serialize the expectations".into())?;
    let nix = Staging::new(&dir.join("nix-staging"))?;
    nix.dir("/store", 0, 0, 0o755)?.copy(&h.bin.stage2, "/store/lethe-stage2", 0o555)?.file(
        "/store/lethe-stage2.json",
        &expect,
        0,
        0,
        0o444,
    )?;
    Ok(nix)
}

/// /persist's tree before the first boot in `dir`/persist-staging: last
/// boot's ssh host keys, nothing else.
pub fn persist_staging(dir: &Path) -> Result<Staging> {
    let persist = Staging::new(&dir.join("persist-staging"))?;
    persist
        .dir("/etc/ssh", 0, 0, 0o755)?
        .file("/etc/ssh/ssh_host_ed25519_key", HOST_KEY.as_bytes(), 0, 0, 0o600)?
        .file("/etc/ssh/ssh_host_ed25519_key.pub", HOST_KEY_PUB.as_bytes(), 0, 0, 0o644)?;
    Ok(persist)
}

/// `expect` with the file system mounted at `target` replaced by `fs_type`
/// with `options` (a machine whose root, /nix or /persist is not the plain one).
pub fn remount(mut expect: Expectations, target: &str, fs_type: &str, options: &[&str]) -> Expectations {
    let what =
        MountKind::Fs { fs_type: fs_type.into(), options: options.iter().map(|o| o.to_string()).collect() };
    match expect.mounts.iter_mut().find(|m| m.target == target) {
        Some(m) => m.what = what,
        None => expect.mounts.push(MountExpectation { target: target.into(), what }),
    }
    expect
}
