//! The boot benchmark's peers: Debian's initramfs-tools (with cryptsetup-initramfs) and dracut (with systemd and systemd-cryptsetup), built for the same kernel and disks as lethe's image and doing the same work as its config says.
//!
//! The work is read from lethe's config of the machine ([`Work::from_config`]): the
//! LUKS device and its key file on a stick, the BTRFS rollback (impermanence's README script,
//! vm-tests/peers/btrfs-rollback.sh), the root, the needed-for-boot mounts, and every
//! persisted entry as one shell process (vm-tests/peers/persist-entry.sh, after
//! impermanence's create-directories.bash and mount-file.bash). initramfs-tools runs them as
//! local-premount and local-bottom scripts (and a boot script for a tmpfs root); dracut as
//! systemd units ordered around sysroot.mount and initrd-fs.target.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::error::{self, Context, Error, Result};
use crate::host::Kernel;

const PERSIST_ENTRY: &str = include_str!("../peers/persist-entry.sh");
const PERSIST_ALL: &str = include_str!("../peers/persist-all.sh");
const MOUNT_ALL: &str = include_str!("../peers/mount-all.sh");
const BTRFS_ROLLBACK: &str = include_str!("../peers/btrfs-rollback.sh");

/// Where the peers' scripts and their lists are in the initramfs.
const BENCH_DIR: &str = "/lethe-bench";
/// The kernel command line both peers share (lethe's without its own switches).
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// An initramfs generator lethe is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Debian's initramfs-tools with cryptsetup-initramfs (busybox, udev, cryptroot).
    InitramfsTools,
    /// dracut with systemd in the initramfs and systemd-cryptsetup.
    Dracut,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::InitramfsTools, Peer::Dracut];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Peer::InitramfsTools => "initramfs-tools",
            Peer::Dracut => "dracut",
        }
    }
}

/// How the root is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A fresh tmpfs with these mount options (`mode=0755,size=2G`).
    Tmpfs { options: String },
    /// A block device.
    Device { device: String, fs_type: String, options: String },
}

/// The BTRFS reset: the top level of `device`, `subvolume` re-made from `blank`, the old one
/// moved into `old_roots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsRollback {
    pub device: String,
    pub subvolume: String,
    pub blank: String,
    pub old_roots: String,
}

/// A LUKS device opened by a key file on a stick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luks {
    pub name: String,
    /// `UUID=...` of the LUKS device.
    pub device: String,
    /// `UUID=...` of the stick.
    pub key_device: String,
    pub key_path: String,
    pub key_offset: u64,
    pub key_size: u64,
    pub key_timeout_s: u64,
    pub discard: bool,
}

/// A needed-for-boot mount beneath the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// A /dev path.
    pub device: String,
    pub fs_type: String,
    pub options: String,
    pub target: String,
}

/// What a persisted entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
}

/// One persisted entry: persist-entry.sh's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub storage: String,
    pub kind: EntryKind,
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The user's home, for a user's entry.
    pub home: Option<String>,
}

/// Everything a peer does in stage 1 for one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub root: Root,
    pub rollback: Option<BtrfsRollback>,
    pub luks: Option<Luks>,
    pub mounts: Vec<Mount>,
    pub entries: Vec<Entry>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Setup(format!("the benchmark's peers cannot do what lethe's config asks: {}", what.into()))
}

/// `LABEL=x`, `UUID=x`, `PARTUUID=x` or a /dev path as a /dev path udev makes.
pub fn dev_path(spec: &str) -> Result<String> {
    for (prefix, dir) in [("LABEL=", "by-label"), ("UUID=", "by-uuid"), ("PARTUUID=", "by-partuuid")] {
        if let Some(v) = spec.strip_prefix(prefix) {
            return Ok(format!("/dev/disk/{dir}/{v}"));
        }
    }
    if spec.starts_with("/dev/") { Ok(spec.to_owned()) } else { Err(bad(format!("device {spec:?}"))) }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.pointer(path).and_then(Value::as_str).ok_or_else(|| bad(format!("no string at {path}")))
}

fn options(v: &Value) -> String {
    let list: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if list.is_empty() { "defaults".into() } else { list.join(",") }
}

impl Work {
    /// The work of lethe's `config` (the machines of the benchmark: string entries, one LUKS
    /// device with a key file on a stick, a BTRFS or tmpfs rollback).
    pub fn from_config(config: &Value) -> Result<Work> {
        let root = match str_at(config, "/root/fsType")? {
            "tmpfs" => {
                let tmpfs = config.pointer("/rollback/tmpfs");
                let get = |k: &str| {
                    config.pointer(&format!("/root/{k}")).or_else(|| tmpfs?.get(k)).and_then(Value::as_str)
                };
                let mut options = format!("mode={}", get("mode").unwrap_or("0755"));
                if let Some(size) = get("size") {
                    let _ = write!(options, ",size={size}");
                }
                Root::Tmpfs { options }
            }
            fs_type => Root::Device {
                device: dev_path(str_at(config, "/root/device")?)?,
                fs_type: fs_type.to_owned(),
                options: options(&config["root"]["options"]),
            },
        };
        let rollback = match config.pointer("/rollback/btrfs") {
            None => None,
            Some(b) => Some(BtrfsRollback {
                device: dev_path(str_at(b, "/device")?)?,
                subvolume: str_at(b, "/subvolume")?.to_owned(),
                blank: str_at(b, "/blank")?.to_owned(),
                old_roots: str_at(b, "/oldRoots/path")?.to_owned(),
            }),
        };
        let luks = match config.pointer("/luks/devices").and_then(Value::as_object) {
            None => None,
            Some(devices) => {
                let mut it = devices.iter();
                let (Some((name, d)), None) = (it.next(), it.next()) else {
                    return Err(bad("more or fewer than one LUKS device"));
                };
                let num = |p: &str| d.pointer(p).and_then(Value::as_u64).ok_or_else(|| bad(p.to_owned()));
                Some(Luks {
                    name: name.clone(),
                    device: str_at(d, "/device")?.to_owned(),
                    key_device: str_at(d, "/keyFile/device")?.to_owned(),
                    key_path: str_at(d, "/keyFile/path")?.to_owned(),
                    key_offset: num("/keyFile/offset")?,
                    key_size: num("/keyFile/size")?,
                    key_timeout_s: num("/keyFile/timeout")?,
                    discard: d["allowDiscards"].as_bool().unwrap_or(false),
                })
            }
        };
        let mut mounts = Vec::new();
        for (target, m) in config["mounts"].as_object().into_iter().flatten() {
            mounts.push(Mount {
                device: dev_path(str_at(m, "/device")?)?,
                fs_type: str_at(m, "/fsType")?.to_owned(),
                options: options(&m["options"]),
                target: target.clone(),
            });
        }
        // Parents first, as stage 1 mounts them.
        mounts.sort_by_key(|m| m.target.matches('/').count());
        let mut entries = Vec::new();
        for (storage, s) in config["persistence"].as_object().into_iter().flatten() {
            let root_entry = |kind, path: &str| Entry {
                storage: storage.clone(),
                kind,
                path: path.to_owned(),
                uid: 0,
                gid: 0,
                mode: 0o755,
                home: None,
            };
            for (key, kind) in [("directories", EntryKind::Dir), ("files", EntryKind::File)] {
                for p in s[key].as_array().into_iter().flatten() {
                    let p = p.as_str().ok_or_else(|| bad(format!("a non-string entry in {storage}")))?;
                    entries.push(root_entry(kind, p));
                }
            }
            for (user, u) in s["users"].as_object().into_iter().flatten() {
                let home = u["home"].as_str().map_or_else(|| format!("/home/{user}"), str::to_owned);
                let uid = config["uids"][user].as_u64().ok_or_else(|| bad(format!("no uid for {user}")))?;
                let group = u["group"].as_str().unwrap_or("users");
                let gid = config["gids"][group].as_u64().ok_or_else(|| bad(format!("no gid for {group}")))?;
                for (key, kind) in [("directories", EntryKind::Dir), ("files", EntryKind::File)] {
                    for p in u[key].as_array().into_iter().flatten() {
                        let p = p.as_str().ok_or_else(|| bad(format!("a non-string entry of {user}")))?;
                        entries.push(Entry {
                            storage: storage.clone(),
                            kind,
                            path: format!("{home}/{p}"),
                            uid: uid as u32,
                            gid: gid as u32,
                            mode: 0o755,
                            home: Some(home.clone()),
                        });
                    }
                }
            }
        }
        Ok(Work { root, rollback, luks, mounts, entries })
    }

    /// /lethe-bench/persist: persist-entry.sh's arguments, an entry a line.
    pub fn persist_list(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let kind = match e.kind {
                EntryKind::Dir => "dir",
                EntryKind::File => "file",
            };
            let _ = write!(out, "{} {kind} {} {} {} {:04o}", e.storage, e.path, e.uid, e.gid, e.mode);
            if let Some(h) = &e.home {
                let _ = write!(out, " {h}");
            }
            out.push('\n');
        }
        out
    }

    /// /lethe-bench/mounts: DEVICE FSTYPE OPTIONS TARGET a line.
    pub fn mount_list(&self) -> String {
        self.mounts
            .iter()
            .map(|m| format!("{} {} {} {}\n", m.device, m.fs_type, m.options, m.target))
            .collect()
    }

    /// The crypttab line of the LUKS device for `peer`: Debian's passdev keyscript mounts the
    /// stick; systemd-cryptsetup takes `keyfile:device` itself.
    pub fn crypttab(&self, peer: Peer) -> Option<String> {
        let l = self.luks.as_ref()?;
        let discard = if l.discard { ",discard" } else { "" };
        let (o, s) = (l.key_offset, l.key_size);
        Some(match peer {
            Peer::InitramfsTools => format!(
                "{} {} {}:{}:{} luks,initramfs,keyscript=passdev,keyfile-offset={o},keyfile-size={s}{discard}\n",
                l.name,
                l.device,
                dev_path(&l.key_device).ok()?,
                l.key_path,
                l.key_timeout_s,
            ),
            Peer::Dracut => format!(
                "{} {} {}:{} luks,keyfile-offset={o},keyfile-size={s},keyfile-timeout={}s{discard}\n",
                l.name, l.device, l.key_path, l.key_device, l.key_timeout_s
            ),
        })
    }

    /// The kernel command line of `peer`'s boots, `init` being stage 2.
    pub fn cmdline(&self, peer: Peer, init: &str) -> String {
        let mut c = format!("{BASE_CMDLINE} init={init}");
        match (&self.root, peer) {
            (Root::Device { device, fs_type, options }, _) => {
                let _ = write!(c, " root={device} rootfstype={fs_type} rootflags={options} rw");
            }
            // initramfs-tools has no tmpfs root: a boot script of its own mounts one.
            (Root::Tmpfs { .. }, Peer::InitramfsTools) => c.push_str(" boot=lethebench"),
            (Root::Tmpfs { options }, Peer::Dracut) => {
                let _ = write!(c, " root=tmpfs rootflags={options}");
            }
        }
        if peer == Peer::Dracut {
            // A failed boot powers off at once instead of waiting at an emergency shell.
            c.push_str(" rd.shell=0 rd.emergency=poweroff");
        }
        c
    }

    /// Writes `peer`'s initramfs for `kernel` to `out`, its build files in `dir`; returns
    /// its size.
    pub fn build(&self, peer: Peer, kernel: &Kernel, dir: &Path, out: &Path) -> Result<u64> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).context(|| error::at(dir, "cannot remove"))?;
        }
        let files = dir.join("lethe-bench");
        self.write_bench_files(&files)?;
        match peer {
            Peer::InitramfsTools => self.build_initramfs_tools(kernel, dir, &files, out)?,
            Peer::Dracut => self.build_dracut(kernel, dir, &files, out)?,
        }
        Ok(std::fs::metadata(out).context(|| error::at(out, "cannot stat"))?.len())
    }

    /// /lethe-bench: the scripts and the lists they read.
    fn write_bench_files(&self, files: &Path) -> Result<()> {
        let mut list = vec![
            ("persist-entry.sh", PERSIST_ENTRY.to_owned()),
            ("persist-all.sh", PERSIST_ALL.to_owned()),
            ("mount-all.sh", MOUNT_ALL.to_owned()),
            ("btrfs-rollback.sh", BTRFS_ROLLBACK.to_owned()),
            ("persist", self.persist_list()),
            ("mounts", self.mount_list()),
        ];
        if let Some(r) = &self.rollback {
            list.push(("rollback", format!("{} {} {} {}\n", r.device, r.subvolume, r.blank, r.old_roots)));
        }
        if let Root::Tmpfs { options } = &self.root {
            list.push(("tmpfs-options", format!("{options}\n")));
        }
        for (name, content) in list {
            write_file(&files.join(name), &content, 0o644)?;
        }
        Ok(())
    }

    /// mkinitramfs with a copy of the host's /etc/initramfs-tools (Debian's defaults:
    /// MODULES=most, zstd) plus a hook copying /lethe-bench, the rollback as a local-premount
    /// script, the mounts and entries as a local-bottom script, and the crypttab bound over
    /// /etc/crypttab in a private mount namespace (cryptsetup-initramfs reads only that).
    fn build_initramfs_tools(&self, kernel: &Kernel, dir: &Path, files: &Path, out: &Path) -> Result<()> {
        let conf = dir.join("initramfs-tools");
        error::run(Command::new("cp").arg("-a").arg("/etc/initramfs-tools").arg(&conf))?;
        if self.luks.is_some() {
            // passdev mounts the stick: MODULES=most lacks the code pages vfat needs, and
            // cryptsetup-initramfs's README says to list such modules in this file.
            let modules = conf.join("modules");
            let mut list = std::fs::read_to_string(&modules).unwrap_or_default();
            list.push_str("vfat\nnls_cp437\nnls_ascii\nnls_utf8\n");
            write_file(&modules, &list, 0o644)?;
        }
        let header = "#!/bin/sh\nPREREQ=\"\"\nprereqs() { echo \"$PREREQ\"; }\ncase $1 in prereqs) prereqs; exit 0 ;; esac\n";
        let hook = format!(
            "{header}. /usr/share/initramfs-tools/hook-functions\n\
             mkdir -p \"$DESTDIR{BENCH_DIR}\"\n\
             cp -a {files}/. \"$DESTDIR{BENCH_DIR}/\"\n\
             copy_exec /bin/btrfs /bin\n",
            files = files.display()
        );
        write_file(&conf.join("hooks/lethe-bench"), &hook, 0o755)?;
        if self.rollback.is_some() {
            let premount = format!(
                "{header}read -r device subvolume blank old_roots <{BENCH_DIR}/rollback\n\
                 sh {BENCH_DIR}/btrfs-rollback.sh \"$device\" \"$subvolume\" \"$blank\" \"$old_roots\"\n"
            );
            write_file(&conf.join("scripts/local-premount/lethe-bench-rollback"), &premount, 0o755)?;
        }
        // An empty root (a tmpfs, a blank snapshot) lacks the mount points init moves /dev,
        // /proc, /sys and /run to: NixOS's stage 1 makes them, initramfs-tools does not.
        let bottom = format!(
            "{header}mkdir -p \"$rootmnt/dev\" \"$rootmnt/proc\" \"$rootmnt/sys\" \"$rootmnt/run\"\n\
             sh {BENCH_DIR}/mount-all.sh \"$rootmnt\" && sh {BENCH_DIR}/persist-all.sh \"$rootmnt\"\n"
        );
        write_file(&conf.join("scripts/local-bottom/lethe-bench"), &bottom, 0o755)?;
        // The boot script for a tmpfs root: the local script's stages around a tmpfs.
        let boot = format!(
            "# boot=lethebench: the local boot script's stages (local-top unlocks) around a tmpfs root.\n\
             . /scripts/local\n\
             mountroot() {{\n\
             \tlocal_top\n\
             \tlocal_premount\n\
             \tmount -t tmpfs -o \"$(cat {BENCH_DIR}/tmpfs-options)\" tmpfs \"${{rootmnt}}\"\n\
             \tlocal_bottom\n\
             }}\n"
        );
        write_file(&conf.join("scripts/lethebench"), &boot, 0o644)?;
        let crypttab = dir.join("crypttab");
        write_file(&crypttab, &self.crypttab(Peer::InitramfsTools).unwrap_or_default(), 0o600)?;
        // The bind needs a file to cover: one made here is removed again, and the host's own
        // crypttab is neither written nor touched.
        let script = format!(
            "set -e; made=; [ -e /etc/crypttab ] || {{ : >/etc/crypttab; made=1; }}; \
             trap 'umount /etc/crypttab 2>/dev/null; [ -z \"$made\" ] || rm -f /etc/crypttab' EXIT; \
             mount --bind {crypttab} /etc/crypttab; \
             mkinitramfs -d {conf} -o {out} {version}",
            crypttab = crypttab.display(),
            conf = conf.display(),
            out = out.display(),
            version = kernel.version
        );
        error::run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]))
            .map_err(|e| {
                Error::Setup(format!(
                    "{e}\n(install initramfs-tools and cryptsetup-initramfs: scripts/install-deps.sh)"
                ))
            })?;
        Ok(())
    }

    /// dracut, generic (no host-only), with its systemd, crypt and btrfs modules, and /etc
    /// from a staging tree: the crypttab, the rollback and persistence as oneshot units, the
    /// mounts as mount units.
    fn build_dracut(&self, kernel: &Kernel, dir: &Path, files: &Path, out: &Path) -> Result<()> {
        let tree = dir.join("dracut-root");
        let units = tree.join("etc/systemd/system");
        if let Some(line) = self.crypttab(Peer::Dracut) {
            write_file(&tree.join("etc/crypttab"), &line, 0o600)?;
        }
        let mut wanted_by_initrd = Vec::new();
        if let Some(r) = &self.rollback {
            let dev = unit_name(&r.device, "device");
            let unit = format!(
                "[Unit]\nDescription=Root rollback (impermanence's btrfs script)\nDefaultDependencies=no\n\
                 Requires={dev}\nAfter={dev}\nBefore=sysroot.mount\n\n\
                 [Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart=/bin/sh {BENCH_DIR}/btrfs-rollback.sh {} {} {} {}\n",
                r.device, r.subvolume, r.blank, r.old_roots
            );
            write_file(&units.join("lethe-bench-rollback.service"), &unit, 0o644)?;
            wanted_by_initrd.push("lethe-bench-rollback.service".to_owned());
        }
        let mut after = "sysroot.mount".to_owned();
        for m in &self.mounts {
            let where_ = format!("/sysroot{}", m.target);
            let name = unit_name(&where_, "mount");
            let unit = format!(
                "[Unit]\nDefaultDependencies=no\nRequires=sysroot.mount\nAfter={after}\nBefore=initrd-fs.target\n\n\
                 [Mount]\nWhat={}\nWhere={where_}\nType={}\nOptions={}\n",
                m.device, m.fs_type, m.options
            );
            write_file(&units.join(&name), &unit, 0o644)?;
            symlink(&units.join("initrd-fs.target.wants").join(&name), &format!("../{name}"))?;
            after = name;
        }
        let persist = format!(
            "[Unit]\nDescription=Persisted entries (a shell process each)\nDefaultDependencies=no\n\
             After=initrd-fs.target\nBefore=initrd.target\n\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh {BENCH_DIR}/persist-all.sh /sysroot\n"
        );
        write_file(&units.join("lethe-bench-persist.service"), &persist, 0o644)?;
        wanted_by_initrd.push("lethe-bench-persist.service".to_owned());
        for name in wanted_by_initrd {
            symlink(&units.join("initrd.target.wants").join(&name), &format!("../{name}"))?;
        }
        error::run(
            Command::new("cp").arg("-a").arg(files).arg(tree.join(BENCH_DIR.trim_start_matches('/'))),
        )?;
        let install =
            "sh grep stat chown chmod mkdir mount umount ln touch readlink date find cut mv sleep cat btrfs";
        error::run(
            Command::new("dracut")
                .args(["--no-hostonly", "--force", "--quiet", "--kver", &kernel.version])
                .args(["--add", "systemd crypt btrfs"])
                .args(["--install", install])
                .arg("--include")
                .arg(&tree)
                .arg("/")
                .arg(out),
        )
        .map_err(|e| Error::Setup(format!("{e}\n(install dracut-core: scripts/install-deps.sh)")))?;
        Ok(())
    }
}

/// systemd's unit name for a path (`systemd-escape --path --suffix`): slashes to dashes,
/// other bytes but [A-Za-z0-9:_.] as `\xNN`.
pub fn unit_name(path: &str, suffix: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut name = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => name.push('-'),
            b'.' if i == 0 => name.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => name.push(b as char),
            b => {
                let _ = write!(name, "\\x{b:02x}");
            }
        }
    }
    if name.is_empty() {
        name.push('-');
    }
    format!("{name}.{suffix}")
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(|| error::at(parent, "cannot create"))?;
    }
    std::fs::write(path, content).context(|| error::at(path, "cannot write"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .context(|| error::at(path, "cannot chmod"))
}

fn symlink(link: &Path, target: &str) -> Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).context(|| error::at(parent, "cannot create"))?;
    }
    std::os::unix::fs::symlink(target, link).context(|| error::at(link, "cannot make the symlink"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Fixture;

    #[test]
    fn unit_names_escape_as_systemd_does() {
        assert_eq!(unit_name("/sysroot/var/log", "mount"), "sysroot-var-log.mount");
        assert_eq!(
            unit_name("/dev/disk/by-label/lethe-btrfs", "device"),
            "dev-disk-by\\x2dlabel-lethe\\x2dbtrfs.device"
        );
        assert_eq!(unit_name("/", "mount"), "-.mount");
    }

    #[test]
    fn the_laptops_work_is_read_from_its_config() {
        let w = Work::from_config(&Fixture::BtrfsTmpfsUsbkey.config()).unwrap();
        assert_eq!(w.root, Root::Tmpfs { options: "mode=0755,size=2G".into() });
        assert_eq!(w.rollback, None);
        let l = w.luks.as_ref().unwrap();
        assert_eq!((l.name.as_str(), l.key_offset, l.key_size, l.key_timeout_s), ("cryptroot", 512, 4096, 5));
        assert_eq!(
            w.crypttab(Peer::InitramfsTools).unwrap(),
            "cryptroot UUID=4c455448-4500-4c55-4b53-0000000b7f5e /dev/disk/by-uuid/1A2B-3C4D:/keys/cryptroot.key:5 \
             luks,initramfs,keyscript=passdev,keyfile-offset=512,keyfile-size=4096,discard\n"
        );
        assert_eq!(
            w.crypttab(Peer::Dracut).unwrap(),
            "cryptroot UUID=4c455448-4500-4c55-4b53-0000000b7f5e /keys/cryptroot.key:UUID=1A2B-3C4D \
             luks,keyfile-offset=512,keyfile-size=4096,keyfile-timeout=5s,discard\n"
        );
        let targets: Vec<&str> = w.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/home", "/nix", "/persist", "/var/log"]);
        assert_eq!(w.mounts[2].options, "subvol=@system/state");
        assert_eq!(
            w.persist_list(),
            "/persist dir /var/lib/nixos 0 0 0755\n/persist file /etc/machine-id 0 0 0755\n\
             /persist file /etc/ssh/ssh_host_ed25519_key 0 0 0755\n/persist file /etc/ssh/ssh_host_ed25519_key.pub 0 0 0755\n"
        );
    }

    #[test]
    fn the_blank_machines_rollback_and_users_are_read_from_its_config() {
        let w = Work::from_config(&Fixture::BtrfsBlank.config()).unwrap();
        assert_eq!(
            w.rollback,
            Some(BtrfsRollback {
                device: "/dev/disk/by-label/lethe-btrfs".into(),
                subvolume: "@root".into(),
                blank: "@blank".into(),
                old_roots: "@old_roots".into(),
            })
        );
        assert_eq!(
            w.cmdline(Peer::Dracut, "/nix/store/lethe-stage2"),
            "console=ttyS0 panic=-1 quiet init=/nix/store/lethe-stage2 root=/dev/disk/by-label/lethe-btrfs \
             rootfstype=btrfs rootflags=subvol=@root rw rd.shell=0 rd.emergency=poweroff"
        );
        assert!(w.persist_list().ends_with("/persist dir /home/alice/.config 1000 100 0755 /home/alice\n"));
        assert_eq!(w.crypttab(Peer::Dracut), None);
    }

    #[test]
    fn a_tmpfs_root_under_initramfs_tools_takes_the_boot_script() {
        let w = Work::from_config(&crate::machine::plain_config()).unwrap();
        assert_eq!(w.root, Root::Tmpfs { options: "mode=0755,size=256M".into() });
        assert!(w.cmdline(Peer::InitramfsTools, "/s").ends_with("init=/s boot=lethebench"));
        assert_eq!(
            w.mount_list(),
            "/dev/disk/by-label/nix ext4 ro /nix\n/dev/disk/by-label/persist ext4 defaults /persist\n"
        );
    }
}
