//! `initrd-tool mkinitrd` against the host's Debian kernel modules: layout, module closure, filtered index, refusals.
//!
//! Needs a Debian kernel's modules (the newest /lib/modules/RELEASE, or `LETHE_TEST_KVER`) and the
//! gzip and cpio tools; without them the tests are skipped with a message, unless CI=true, where
//! that is a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use initrd_tool::kmod::ModuleIndex;

const BIN: &str = env!("CARGO_BIN_EXE_initrd-tool");
const CONFIG: &str = r#"{"version": 1, "modules": {"load": ["virtio_blk"]},
  "root": {"fsType": "ext4", "device": "/dev/vda"}}"#;

/// The kernel version under test: `LETHE_TEST_KVER`, else the newest installed kernel with an index.
fn kver() -> String {
    std::env::var("LETHE_TEST_KVER")
        .ok()
        .or_else(|| initrd_tool::kmod::newest_release(Path::new(initrd_tool::kmod::MODULES_ROOT)))
        .unwrap_or_else(|| "VERSION-amd64".to_owned())
}

fn moddir() -> PathBuf {
    Path::new("/lib/modules").join(kver())
}

/// Whether the host can run these tests; panics under CI=true when it cannot.
fn can_run() -> bool {
    let mut missing = Vec::new();
    if !moddir().join("modules.dep").exists() {
        missing.push(format!("{} (apt-get install linux-image-amd64)", moddir().display()));
    }
    for tool in ["cpio", "gzip"] {
        if !Command::new(tool).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
            missing.push(format!("the {tool} tool"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and missing: {}", missing.join(", "));
    eprintln!("skipped: missing {}", missing.join(", "));
    false
}

struct Temp(PathBuf);

impl Temp {
    fn new(name: &str) -> Temp {
        let d = std::env::temp_dir().join(format!("lethe-mkinitrd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Temp(d)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in for the binary: the debug build is tens of MB, slow to gzip in a debug test build.
fn fake_binary(dir: &Path) -> PathBuf {
    let p = dir.join("fake-initrd-tool");
    std::fs::write(&p, b"\x7fELF stand-in\n").unwrap();
    p
}

/// Runs mkinitrd with `config` (and a stand-in binary unless `extra` names one).
fn mkinitrd(dir: &Path, config: &str, extra: &[&str]) -> (Output, PathBuf) {
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, config).unwrap();
    let out = dir.join("initrd.img");
    let mut cmd = Command::new(BIN);
    cmd.arg("mkinitrd");
    if !extra.contains(&"--binary") && !extra.contains(&"--default-binary") {
        cmd.arg("--binary").arg(fake_binary(dir));
    }
    let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "--default-binary").collect();
    let o = cmd
        .arg("--config")
        .arg(&cfg)
        .arg("--kernel-modules")
        .arg(moddir())
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    (o, out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `gzip -dc IMG | cpio ARGS` in `dir` (without gzip for an uncompressed image).
fn unpack(img: &Path, dir: &Path, args: &[&str]) -> String {
    let raw = std::fs::read(img).unwrap();
    let archive = if raw.starts_with(b"\x1f\x8b") {
        let gz = Command::new("gzip").arg("-dc").arg(img).output().unwrap();
        assert!(gz.status.success(), "gzip: {}", stderr(&gz));
        gz.stdout
    } else {
        raw
    };
    let mut cpio = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cpio.stdin.take().unwrap().write_all(&archive).unwrap();
    let o = cpio.wait_with_output().unwrap();
    assert!(o.status.success(), "cpio {args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn layout_modules_and_filtered_index() {
    if !can_run() {
        return;
    }
    let t = Temp::new("layout");
    let extra = t.0.join("hello.txt");
    std::fs::write(&extra, "hello\n").unwrap();
    let (o, img) = mkinitrd(&t.0, CONFIG, &["--file", &format!("{}:/etc/hello.txt", extra.display())]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("{}", stderr(&o));
    assert!(stderr(&o).contains("9 modules"), "{}", stderr(&o));

    let list = unpack(&img, &t.0, &["-it", "--quiet"]);
    let names: Vec<&str> = list.lines().collect();
    let kver = kver();
    let m = |rel: &str| format!("lib/modules/{kver}/{rel}");
    for want in [
        "init",
        "bin/initrd-tool",
        "bin/persist-bind",
        "bin/rollback",
        "etc/lethe/config.json",
        "etc/hello.txt",
        "dev",
        "dev/console",
        "proc",
        "sys",
        "run",
        "sysroot",
        "tmp",
        &m("modules.dep"),
        &m("modules.alias"),
        &m("modules.builtin"),
        &m("kernel/drivers/block/virtio_blk.ko"),
        &m("kernel/drivers/virtio/virtio.ko"),
        &m("kernel/drivers/virtio/virtio_ring.ko"),
        &m("kernel/fs/ext4/ext4.ko"),
        &m("kernel/fs/jbd2/jbd2.ko"),
        &m("kernel/fs/mbcache.ko"),
        &m("kernel/lib/crc16.ko"),
        // ext4's softdep crypto-crc32c.
        &m("kernel/crypto/crc32c_generic.ko"),
    ] {
        assert!(names.contains(&want), "{want} missing from\n{list}");
    }
    assert!(!names.iter().any(|n| n.contains("btrfs") || n.contains("virtio_pci")), "{list}");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "entries in sorted order");

    let verbose = unpack(&img, &t.0, &["-itv", "--quiet"]);
    let line = |name: &str| verbose.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap().to_owned();
    let console = line("dev/console");
    assert!(console.starts_with("crw-------"), "{console}");
    assert!(console.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["5,", "1"]), "{console}");
    assert!(line("init -> bin/initrd-tool").starts_with('l'));
    assert!(line("bin/rollback -> initrd-tool").starts_with('l'));
    assert!(line("bin/initrd-tool").starts_with("-rwxr-xr-x"));

    // Extract all but the device node (mknod needs root) and look inside.
    let root = t.0.join("root");
    std::fs::create_dir(&root).unwrap();
    unpack(&img, &root, &["-id", "--quiet", "--no-absolute-filenames", "-f", "dev/console"]);
    assert_eq!(
        std::fs::read(root.join("bin/initrd-tool")).unwrap(),
        std::fs::read(fake_binary(&t.0)).unwrap()
    );
    assert_eq!(std::fs::read_to_string(root.join("etc/lethe/config.json")).unwrap(), CONFIG);
    assert_eq!(std::fs::read_to_string(root.join("etc/hello.txt")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_link(root.join("init")).unwrap(), Path::new("bin/initrd-tool"));

    let inner = root.join("lib/modules").join(&kver);
    let ix = ModuleIndex::load(&inner).unwrap();
    assert!(ix.warnings().is_empty(), "{:?}", ix.warnings());
    assert_eq!(ix.len(), 9);
    let dep = std::fs::read_to_string(inner.join("modules.dep")).unwrap();
    assert_eq!(dep.lines().count(), 9, "{dep}");
    assert!(dep.contains("kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko"), "{dep}");
    let closure = ix.closure(&["virtio_blk", "ext4"]).unwrap();
    assert_eq!(closure.len(), 9);
    for m in &closure {
        assert!(ix.path_of(m).is_file(), "{} missing", ix.path_of(m).display());
    }
    assert_eq!(ix.modules_for_alias("virtio:d00000002v00001AF4")[0].as_str(), "virtio_blk");
    assert!(ix.modules_for_alias("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00").is_empty());
    assert!(ix.is_builtin("sha256_generic"));
    assert!(ix.closure(&["btrfs"]).is_err());
}

#[test]
fn same_inputs_same_bytes_and_uncompressed_output() {
    if !can_run() {
        return;
    }
    let t = Temp::new("repro");
    let (o, img) = mkinitrd(&t.0, CONFIG, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::read(&img).unwrap();
    let (o, img) = mkinitrd(&t.0, CONFIG, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(first, std::fs::read(&img).unwrap());
    assert_eq!(&first[..2], b"\x1f\x8b");

    // This program itself as the binary (the default), uncompressed to keep the debug test quick.
    let (o, img) =
        mkinitrd(&t.0, CONFIG, &["--compress", "none", "--add-module", "vfat", "--default-binary"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = std::fs::read(&img).unwrap();
    assert_eq!(&raw[..6], b"070701");
    assert!(raw.windows(10).any(|w| w == b"TRAILER!!!"));
    let root = t.0.join("root");
    std::fs::create_dir(&root).unwrap();
    unpack(&img, &root, &["-id", "--quiet", "--no-absolute-filenames", "-f", "dev/console"]);
    assert_eq!(std::fs::read(root.join("bin/initrd-tool")).unwrap(), std::fs::read(BIN).unwrap());
    assert!(root.join(format!("lib/modules/{}/kernel/fs/fat/vfat.ko", kver())).is_file());
}

#[test]
fn bad_config_is_refused_unless_unchecked() {
    if !can_run() {
        return;
    }
    let t = Temp::new("bad");
    let bad = r#"{"version": 1, "root": {"fsType": "ext4"}, "typo": 1}"#;
    let (o, img) = mkinitrd(&t.0, bad, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid config"), "{}", stderr(&o));
    assert!(stderr(&o).contains("typo"), "{}", stderr(&o));
    assert!(!img.exists());

    let (o, img) = mkinitrd(&t.0, bad, &["--unchecked", "--add-module", "virtio_blk"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = unpack(&img, &t.0, &["-it", "--quiet"]);
    assert!(list.contains("etc/lethe/config.json") && list.contains("virtio_blk.ko"), "{list}");
}

#[test]
fn errors_name_what_is_missing() {
    if !can_run() {
        return;
    }
    let t = Temp::new("missing");
    let (o, _) = mkinitrd(&t.0, CONFIG, &["--add-module", "no_such_module"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"no_such_module\""), "{}", stderr(&o));

    let (o, _) = mkinitrd(&t.0, CONFIG, &["--file", "/nonexistent/x:/x"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/x"), "{}", stderr(&o));

    let (o, _) = mkinitrd(&t.0, CONFIG, &["--binary", "/nonexistent/bin"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let (o, _) = mkinitrd(&t.0, CONFIG, &["--file", "relative"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = Command::new(BIN)
        .args(["mkinitrd", "--config", "/nonexistent.json", "--kernel-modules"])
        .arg(moddir())
        .args(["--out", "/nonexistent/out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent.json"), "{}", stderr(&o));
}

#[test]
fn zfs_pools_need_zpool_in_the_image() {
    if !can_run() {
        return;
    }
    let t = Temp::new("zpool");
    let cfg = r#"{"version": 1, "pools": {"zfs": {"rpool": {}}},
        "rollback": {"zfs": {"dataset": "rpool/local/root"}},
        "root": {"fsType": "zfs", "device": "rpool/local/root"}}"#;
    let (o, img) = mkinitrd(&t.0, cfg, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no zpool is in the image") && stderr(&o).contains("rpool"),
        "{}",
        stderr(&o)
    );
    assert!(!img.exists());

    let zpool = t.0.join("zpool");
    std::fs::write(&zpool, "#!/bin/sh\n").unwrap();
    let spec = format!("{}:/sbin/zpool", zpool.display());
    let (o, img) = mkinitrd(&t.0, cfg, &["--file", &spec]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(unpack(&img, &t.0, &["-it", "--quiet"]).contains("sbin/zpool"));
}

/// A server without its host key would not start: mkinitrd refuses the config until the key
/// is put in the image, and then carries it.
#[cfg(feature = "ssh")]
#[test]
fn an_ssh_server_needs_its_host_key_in_the_image() {
    if !can_run() {
        return;
    }
    let t = Temp::new("hostkey");
    let cfg = r#"{"version": 1, "root": {"fsType": "tmpfs"},
        "luks": {"devices": {"cryptroot": {"device": "/dev/vda"}}},
        "ssh": {"hostKeys": ["/etc/lethe/ssh_host_ed25519_key"],
                "authorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbWlqEkOkvn0PFEjZ2n1pYGDnQbrFSgJ9NSo6BJ6c3z a"]}}"#;
    let (o, img) = mkinitrd(&t.0, cfg, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ssh.hostKeys[0] is /etc/lethe/ssh_host_ed25519_key")
            && stderr(&o).contains("ssh keygen"),
        "{}",
        stderr(&o)
    );
    assert!(!img.exists());

    let key = t.0.join("host_key");
    let keygen = Command::new(env!("CARGO_BIN_EXE_initrd-tool"))
        .args(["ssh", "keygen", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let spec = format!("{}:/etc/lethe/ssh_host_ed25519_key", key.display());
    let (o, img) = mkinitrd(&t.0, cfg, &["--file", &spec]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(unpack(&img, &t.0, &["-it", "--quiet"]).contains("etc/lethe/ssh_host_ed25519_key"));

    // NixOS appends boot.initrd.secrets as a second archive at install time: declared, not stored.
    std::fs::remove_file(&img).unwrap();
    let (o, img) = mkinitrd(&t.0, cfg, &["--secret", "/etc/lethe/ssh_host_ed25519_key"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!unpack(&img, &t.0, &["-it", "--quiet"]).contains("ssh_host_ed25519_key"));
}
