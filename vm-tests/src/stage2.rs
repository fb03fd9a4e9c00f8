//! The test stage 2's checks and writes, beneath a given root so they can be tested outside a VM.
//!
//! Nothing here panics or stops at the first problem: every failed check
//! becomes one sentence in [`Report::failures`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::expect::{
    EPHEMERAL_MARKER, Expectations, Kind, MACHINE_ID_UNINITIALIZED, MachineIdExpectation, Mode,
    MountExpectation, MountKind, PathExpectation, Report, UserFile,
};
use crate::mountinfo::{self, MountEntry};

/// What stage 2 observed before running the checks.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Kernel uptime when stage 2 started, in seconds.
    pub uptime_s: Option<f64>,
    /// /proc/self/mountinfo.
    pub mountinfo: String,
    /// /run/lethe/timings.json, parsed.
    pub timings: Option<serde_json::Value>,
    /// Problems met while observing (unreadable files).
    pub failures: Vec<String>,
}

/// Runs every check and write of `expect` beneath `root` (`/` in the VM).
pub fn run(expect: &Expectations, root: &Path, observed: Observed) -> Report {
    let mut failures = observed.failures;
    let (ephemeral_marker_found, marker_failure) = ephemeral_marker(root);
    failures.extend(marker_failure);
    failures.extend(check_mounts(&expect.mounts, &mountinfo::parse(&observed.mountinfo)));
    failures.extend(check_paths(&expect.paths, root));
    let boot = bump_counter(&beneath(root, &expect.boot_counter)).map_err(|e| failures.push(e)).ok();
    let machine_id_found =
        expect.machine_id.as_ref().and_then(|m| machine_id(m, root).map_err(|e| failures.push(e)).ok());
    let user_file_lines = expect
        .user_file
        .as_ref()
        .and_then(|u| append_user_file(u, root, boot.unwrap_or(0)).map_err(|e| failures.push(e)).ok());
    Report {
        boot,
        uptime_s: observed.uptime_s,
        ephemeral_marker_found,
        machine_id_found,
        user_file_lines,
        failures,
        timings: observed.timings,
    }
}

/// Before power-off, as systemd-shutdown does: unmounts every mount of a
/// block device or a ZFS dataset, children first, or remounts it read-only
/// when it is busy (the file system holding this binary), so the disks are
/// clean for the next boot and for the host's debugfs. Returns what could
/// not be done.
pub fn unmount_disks(mountinfo: &str) -> Vec<String> {
    use rustix::mount::{MountFlags, UnmountFlags};
    let mut failures = Vec::new();
    let on_disk = |m: &&MountEntry| m.source.starts_with("/dev/") || m.fs_type == "zfs";
    for m in mountinfo::parse(mountinfo).iter().rev().filter(on_disk) {
        if rustix::mount::unmount(m.mount_point.as_str(), UnmountFlags::empty()).is_ok() {
            continue;
        }
        if let Err(e) = rustix::mount::mount_remount(m.mount_point.as_str(), MountFlags::RDONLY, "") {
            failures.push(format!("{}: can neither unmount nor remount read-only: {e}", m.mount_point));
        }
    }
    failures
}

/// `root` joined with an absolute guest path.
fn beneath(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Whether the marker was there already; then writes it.
fn ephemeral_marker(root: &Path) -> (bool, Option<String>) {
    let p = beneath(root, EPHEMERAL_MARKER);
    let found = fs::symlink_metadata(&p).is_ok();
    let failure = fs::write(&p, b"written by lethe-stage2; a fresh root does not have this\n")
        .err()
        .map(|e| format!("cannot write the ephemeral marker {EPHEMERAL_MARKER}: {e}"));
    (found, failure)
}

/// One sentence per expected mount that is missing or different.
pub fn check_mounts(expect: &[MountExpectation], table: &[MountEntry]) -> Vec<String> {
    let mut failures = Vec::new();
    for e in expect {
        let Some(m) = mountinfo::topmost(table, &e.target) else {
            failures.push(format!("{}: not a mount point ({})", e.target, describe(&e.what)));
            continue;
        };
        match &e.what {
            MountKind::Fs { fs_type, options } => {
                if &m.fs_type != fs_type {
                    failures.push(format!("{}: mounted as {}, expected {fs_type}", e.target, m.fs_type));
                }
                for o in options.iter().filter(|o| !m.has_option(o)) {
                    failures.push(format!(
                        "{}: mount option {o} missing (has {} / {})",
                        e.target,
                        m.mount_options.join(","),
                        m.super_options.join(",")
                    ));
                }
            }
            MountKind::Bind { storage, path } => {
                let Some(s) = mountinfo::topmost(table, storage) else {
                    failures.push(format!("{}: its storage {storage} is not a mount point", e.target));
                    continue;
                };
                let want_root = if s.root == "/" { path.clone() } else { format!("{}{path}", s.root) };
                if m.device != s.device || m.root != want_root {
                    failures.push(format!(
                        "{}: expected a bind mount of {storage}{path} (device {}, root {want_root}), found device {} root {} ({} from {})",
                        e.target, s.device, m.device, m.root, m.fs_type, m.source
                    ));
                }
            }
        }
    }
    failures
}

fn describe(k: &MountKind) -> String {
    match k {
        MountKind::Fs { fs_type, .. } => format!("expected {fs_type}"),
        MountKind::Bind { storage, path } => format!("expected a bind mount of {storage}{path}"),
    }
}

/// One sentence per path whose kind, owner, mode, link target or content differs.
pub fn check_paths(expect: &[PathExpectation], root: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for e in expect {
        let p = beneath(root, &e.path);
        // A block device may be named by a symlink to its node (udev's
        // /dev/mapper/NAME -> ../dm-0): it is checked where it leads.
        let stat = if e.kind == Kind::BlockDevice { fs::metadata } else { fs::symlink_metadata };
        let md = match stat(&p) {
            Ok(md) => md,
            Err(err) => {
                failures.push(format!("{}: expected a {}, {err}", e.path, e.kind));
                continue;
            }
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Some(Kind::Dir)
        } else if ft.is_file() {
            Some(Kind::File)
        } else if ft.is_symlink() {
            Some(Kind::Symlink)
        } else if ft.is_block_device() {
            Some(Kind::BlockDevice)
        } else {
            None
        };
        if kind != Some(e.kind) {
            let found = kind.map_or_else(|| format!("{ft:?}"), |k| k.to_string());
            failures.push(format!("{}: expected a {}, found a {found}", e.path, e.kind));
            continue;
        }
        let (uid, gid, mode) = (md.uid(), md.gid(), Mode(md.mode() & 0o7777));
        if e.uid.is_some_and(|u| u != uid) || e.gid.is_some_and(|g| g != gid) {
            failures.push(format!(
                "{}: owner {uid}:{gid}, expected {}:{}",
                e.path,
                e.uid.map_or("*".into(), |u| u.to_string()),
                e.gid.map_or("*".into(), |g| g.to_string())
            ));
        }
        if let Some(want) = e.mode
            && want != mode
        {
            failures.push(format!("{}: mode {mode}, expected {want}", e.path));
        }
        if let Some(want) = &e.link_target {
            match fs::read_link(&p) {
                Ok(t) if t == Path::new(want) => {}
                Ok(t) => failures.push(format!("{}: links to {}, expected {want}", e.path, t.display())),
                Err(err) => failures.push(format!("{}: cannot read the link: {err}", e.path)),
            }
        }
        if let Some(want) = &e.content {
            match fs::read(&p) {
                Ok(c) if c == want.as_bytes() => {}
                Ok(c) => failures.push(format!(
                    "{}: content {:?}, expected {want:?}",
                    e.path,
                    String::from_utf8_lossy(&c)
                )),
                Err(err) => failures.push(format!("{}: cannot read: {err}", e.path)),
            }
        }
    }
    failures
}

/// Reads the boot counter (absent: 0), writes it plus one and returns that.
pub fn bump_counter(path: &Path) -> Result<u64, String> {
    let previous = match fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("boot counter {}: {s:?} is not a number: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("boot counter {}: cannot read: {e}", path.display())),
    };
    let boot = previous + 1;
    write_synced(path, format!("{boot}\n").as_bytes(), 0o644)
        .map_err(|e| format!("boot counter {}: cannot write: {e}", path.display()))?;
    Ok(boot)
}

/// Returns the machine id as found; commits `id` over "uninitialized".
/// The file is a bind mount: it is rewritten in place, never replaced.
fn machine_id(m: &MachineIdExpectation, root: &Path) -> Result<String, String> {
    let p = beneath(root, &m.path);
    let found = fs::read_to_string(&p).map_err(|e| format!("{}: cannot read: {e}", m.path))?;
    let found = found.trim().to_owned();
    if found == MACHINE_ID_UNINITIALIZED {
        write_synced(&p, format!("{}\n", m.id).as_bytes(), 0o444)
            .map_err(|e| format!("{}: cannot commit the machine id: {e}", m.path))?;
    }
    Ok(found)
}

/// Appends `boot N` to a user's file (created with the user as owner) and
/// returns how many lines it has now.
fn append_user_file(u: &UserFile, root: &Path, boot: u64) -> Result<u64, String> {
    let p = beneath(root, &u.path);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| format!("{}: cannot open: {e}", u.path))?;
    f.write_all(format!("boot {boot}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: cannot append: {e}", u.path))?;
    std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid))
        .map_err(|e| format!("{}: cannot chown to {}:{}: {e}", u.path, u.uid, u.gid))?;
    let text = fs::read_to_string(&p).map_err(|e| format!("{}: cannot read back: {e}", u.path))?;
    Ok(text.lines().count() as u64)
}

/// Truncates and writes `path` in place (creating it with `mode`), then fsyncs.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::MountKind;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lethe-stage2-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const TABLE: &str = "\
22 1 0:20 / / rw,relatime - tmpfs none rw,mode=755
23 22 253:16 / /persist rw,relatime - ext4 /dev/vdb rw
24 22 253:0 / /nix ro,relatime - ext4 /dev/vda ro
25 22 253:16 /etc/machine-id /etc/machine-id rw,relatime - ext4 /dev/vdb rw
26 22 253:0 /etc/ssh /etc/ssh rw,relatime - ext4 /dev/vda rw
";

    fn bind(target: &str) -> MountExpectation {
        MountExpectation {
            target: target.into(),
            what: MountKind::Bind { storage: "/persist".into(), path: target.into() },
        }
    }

    #[test]
    fn mounts_are_checked_by_type_option_and_bind_source() {
        let t = mountinfo::parse(TABLE);
        let fs = |target: &str, fs_type: &str, options: &[&str]| MountExpectation {
            target: target.into(),
            what: MountKind::Fs {
                fs_type: fs_type.into(),
                options: options.iter().map(|o| o.to_string()).collect(),
            },
        };
        assert_eq!(
            check_mounts(
                &[fs("/", "tmpfs", &["mode=755"]), fs("/nix", "ext4", &["ro"]), bind("/etc/machine-id")],
                &t
            ),
            Vec::<String>::new()
        );
        let f = check_mounts(
            &[fs("/persist", "ext4", &["ro"]), fs("/", "ext4", &[]), bind("/etc/ssh"), bind("/var/log")],
            &t,
        );
        assert_eq!(f.len(), 4, "{f:#?}");
        assert!(f[0].starts_with("/persist: mount option ro missing"), "{}", f[0]);
        assert_eq!(f[1], "/: mounted as tmpfs, expected ext4");
        assert!(f[2].contains("expected a bind mount of /persist/etc/ssh (device 253:16"), "{}", f[2]);
        assert_eq!(f[3], "/var/log: not a mount point (expected a bind mount of /persist/var/log)");
    }

    #[test]
    fn a_block_device_or_a_link_to_one_is_told_from_a_character_device_and_a_file() {
        if !rustix::process::geteuid().is_root() {
            // With CI=true a missing capability is a failure, not a skip.
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "needs root to mknod");
            eprintln!("skipped: needs root to mknod");
            return;
        }
        let root = tempdir("nodes");
        fs::create_dir_all(root.join("dev/mapper")).unwrap();
        let node = |name: &str, kind: rustix::fs::FileType| {
            let dev = rustix::fs::makedev(7, 0);
            rustix::fs::mknodat(rustix::fs::CWD, root.join(name), kind, rustix::fs::Mode::RUSR, dev).unwrap();
        };
        node("dev/mapper/cryptroot", rustix::fs::FileType::BlockDevice);
        node("dev/dm-1", rustix::fs::FileType::BlockDevice);
        node("dev/mapper/control", rustix::fs::FileType::CharacterDevice);
        fs::write(root.join("dev/mapper/file"), "").unwrap();
        // As udev names a mapping: a relative link to the node.
        std::os::unix::fs::symlink("../dm-1", root.join("dev/mapper/home")).unwrap();
        std::os::unix::fs::symlink("file", root.join("dev/mapper/to-file")).unwrap();
        std::os::unix::fs::symlink("../dm-9", root.join("dev/mapper/dangling")).unwrap();
        let block = |p: &str| PathExpectation::new(p, Kind::BlockDevice);
        assert_eq!(
            check_paths(&[block("/dev/mapper/cryptroot"), block("/dev/mapper/home")], &root),
            Vec::<String>::new()
        );
        let f = check_paths(
            &[
                block("/dev/mapper/control"),
                block("/dev/mapper/file"),
                block("/dev/mapper/to-file"),
                block("/dev/mapper/dangling"),
            ],
            &root,
        );
        assert_eq!(f.len(), 4, "{f:#?}");
        assert!(f[0].starts_with("/dev/mapper/control: expected a block device, found a "), "{}", f[0]);
        assert_eq!(f[1], "/dev/mapper/file: expected a block device, found a file");
        assert_eq!(f[2], "/dev/mapper/to-file: expected a block device, found a file");
        assert!(f[3].starts_with("/dev/mapper/dangling: expected a block device, "), "{}", f[3]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn paths_counter_machine_id_and_user_file() {
        let root = tempdir("paths");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/machine-id"), "uninitialized\n").unwrap();
        std::os::unix::fs::symlink("/persist/x", root.join("etc/link")).unwrap();
        let expect = Expectations {
            mounts: vec![],
            paths: vec![
                PathExpectation::new("/etc", Kind::Dir),
                PathExpectation {
                    link_target: Some("/persist/x".into()),
                    ..PathExpectation::new("/etc/link", Kind::Symlink)
                },
                PathExpectation::new("/etc/link", Kind::File),
                PathExpectation::new("/missing", Kind::Dir),
                PathExpectation::new("/etc/machine-id", Kind::File).content("nope"),
            ],
            boot_counter: "/etc/count".into(),
            machine_id: Some(MachineIdExpectation { path: "/etc/machine-id".into(), id: "0123".into() }),
            user_file: Some(UserFile {
                path: "/etc/user".into(),
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
            }),
        };
        let r = run(&expect, &root, Observed::default());
        assert!(!r.ephemeral_marker_found);
        assert_eq!(r.boot, Some(1));
        assert_eq!(r.machine_id_found.as_deref(), Some("uninitialized"));
        assert_eq!(r.user_file_lines, Some(1));
        assert_eq!(r.failures.len(), 3, "{:#?}", r.failures);
        assert_eq!(r.failures[0], "/etc/link: expected a file, found a symlink");
        assert!(r.failures[1].starts_with("/missing: expected a directory, "), "{}", r.failures[1]);
        assert_eq!(r.failures[2], "/etc/machine-id: content \"uninitialized\\n\", expected \"nope\"");

        let r = run(&expect, &root, Observed::default());
        assert!(r.ephemeral_marker_found);
        assert_eq!(r.boot, Some(2));
        assert_eq!(r.machine_id_found.as_deref(), Some("0123"));
        assert_eq!(r.user_file_lines, Some(2));

        fs::write(root.join("etc/count"), "two\n").unwrap();
        let r = run(&expect, &root, Observed::default());
        assert_eq!(r.boot, None);
        assert!(r.failures.iter().any(|f| f.contains("\"two\\n\" is not a number")), "{:#?}", r.failures);
        fs::remove_dir_all(&root).unwrap();
    }
}
