//! Key files as stage 1 reads them: cryptsetup's offset and size rules on real files, raw regions of a block device, and files on an ext4 stick found by UUID= or LABEL=, mounted read-only in a private mount namespace and always unmounted.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use initrd_tool::devices::Roots;
use initrd_tool::devspec::DeviceSpec;
use initrd_tool::keyfile::{self, KEYDEV_DIR, KeyFileError, KeyFileSpec, Region, RegionError};
use initrd_tool::probe::{self, FsKind};
use luks::secret::MAX_KEY_FILE;

// ---------------------------------------------------------------------------------------------
// Harness

/// A test that cannot run here fails under CI (CI=true) and is skipped elsewhere.
fn unavailable(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Why the tools or privileges a test needs are missing, if they are.
fn missing(tools: &[&str], root: bool) -> Option<String> {
    if root && !rustix::process::geteuid().is_root() {
        return Some("needs root (loop devices, mounts)".into());
    }
    let absent: Vec<&str> = tools.iter().copied().filter(|t| tool_path(t).is_none()).collect();
    (!absent.is_empty()).then(|| {
        format!("{} not installed (apt-get install e2fsprogs dosfstools util-linux)", absent.join(", "))
    })
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(tool_path(name).unwrap_or_else(|| PathBuf::from(name)));
    c.env("LC_ALL", "C");
    c
}

/// Runs a command that must succeed; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lethe-keyfile-{test}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, bytes).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const CHILD: &str = "LETHE_KEYFILE_NS_TEST";

/// Runs `body` as root in a private mount namespace with a fresh tmpfs on /run, so the key
/// device mounts under /run/lethe/keydev never reach the host: the test binary runs itself
/// again for this one test under `unshare -m`.
fn in_namespace(name: &str, tools: &[&str], body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        run(tool("mount").args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"]));
        body();
        return;
    }
    if let Some(why) = missing(&[&["unshare", "mount", "losetup"], tools].concat(), true) {
        return unavailable(name, &why);
    }
    let out = tool("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in its namespace:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// A loop device over an image file, detached however the test ends.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn attach(image: &Path) -> Loop {
        let dev = run(tool("losetup").args(["-f", "--show"]).arg(image)).trim().to_owned();
        Loop { dev: PathBuf::from(dev) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = tool("losetup").arg("-d").arg(&self.dev).output();
    }
}

fn random_uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").expect("uuid").trim().to_owned()
}

/// The mounts of this namespace under the key-device directory.
fn keydev_mounts() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(KEYDEV_DIR)))
        .map(str::to_owned)
        .collect()
}

/// What is left in the key-device directory.
fn keydev_entries() -> Vec<PathBuf> {
    match fs::read_dir(KEYDEV_DIR) {
        Ok(d) => d.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn spec(path: &str, device: Option<&str>, offset: u64, size: Option<u64>, timeout_ms: u64) -> KeyFileSpec {
    KeyFileSpec {
        path: PathBuf::from(path),
        device: device.map(|d| d.parse().expect("device spec")),
        region: Region { offset, size },
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn fetch(spec: &KeyFileSpec) -> Result<Vec<u8>, KeyFileError> {
    keyfile::fetch(spec, &Roots::system()).map(|s| s.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------------------------
// Regions of files in the initramfs

#[test]
fn regions_follow_cryptsetups_offset_and_size() {
    let s = Scratch::new("region");
    let key = s.file("key", b"0123456789abcdef");
    let path = key.to_str().expect("utf-8");
    assert_eq!(fetch(&spec(path, None, 0, None, 0)).expect("whole file"), b"0123456789abcdef");
    assert_eq!(fetch(&spec(path, None, 10, None, 0)).expect("rest after offset"), b"abcdef");
    assert_eq!(fetch(&spec(path, None, 4, Some(3), 0)).expect("offset and size"), b"456");
    assert_eq!(fetch(&spec(path, None, 0, Some(16), 0)).expect("exactly all"), b"0123456789abcdef");
    assert_eq!(fetch(&spec(path, None, 15, Some(1), 0)).expect("last byte"), b"f");
}

#[test]
fn a_file_shorter_than_the_region_is_an_error_naming_file_offset_and_size() {
    let s = Scratch::new("short");
    let key = s.file("key", b"0123456789");
    let path = key.to_str().expect("utf-8");
    let err = fetch(&spec(path, None, 8, Some(4), 0)).expect_err("too short");
    assert!(matches!(err, KeyFileError::Region { source: RegionError::TooShort { .. }, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("key file {path}: 4 bytes wanted at offset 8, but only 2 are there"));

    let err = fetch(&spec(path, None, 11, None, 0)).expect_err("offset past the end");
    assert_eq!(err.to_string(), format!("key file {path}: offset 11 is past its end (10 bytes)"));
    let err = fetch(&spec(path, None, 11, Some(1), 0)).expect_err("offset past the end, with a size");
    assert_eq!(err.to_string(), format!("key file {path}: offset 11 is past its end (10 bytes)"));
}

#[test]
fn an_empty_key_is_an_error() {
    let s = Scratch::new("empty");
    let empty = s.file("empty", b"");
    let err = fetch(&spec(empty.to_str().expect("utf-8"), None, 0, None, 0)).expect_err("empty file");
    assert_eq!(err.to_string(), format!("key file {}: the key at offset 0 is empty", empty.display()));
    // All of the file skipped leaves nothing either.
    let key = s.file("key", b"0123");
    let err = fetch(&spec(key.to_str().expect("utf-8"), None, 4, None, 0)).expect_err("nothing after offset");
    assert!(
        matches!(err, KeyFileError::Region { source: RegionError::Empty { offset: 4, .. }, .. }),
        "{err:?}"
    );
}

#[test]
fn without_a_size_at_most_8_mib_are_read() {
    let s = Scratch::new("large");
    let big = s.0.join("big");
    let f = File::create(&big).expect("create");
    f.set_len(MAX_KEY_FILE as u64 + 1).expect("sparse file");
    let path = big.to_str().expect("utf-8");
    let err = fetch(&spec(path, None, 0, None, 0)).expect_err("over the limit");
    assert_eq!(
        err.to_string(),
        format!("key file {path} holds more than 8388608 bytes after offset 0: give the key's size")
    );
    // With a size, or an offset that leaves exactly the limit, it is fine.
    assert_eq!(fetch(&spec(path, None, 0, Some(64), 0)).expect("with a size").len(), 64);
    assert_eq!(fetch(&spec(path, None, 1, None, 0)).expect("the limit exactly").len(), MAX_KEY_FILE);
    let err = fetch(&spec(path, None, 0, Some(MAX_KEY_FILE as u64 + 1), 0)).expect_err("size over the limit");
    assert!(matches!(err, KeyFileError::Region { source: RegionError::SizeOverLimit { .. }, .. }), "{err:?}");
}

#[test]
fn streamed_key_files_follow_the_same_rules() {
    // A pipe cannot seek: the offset is read past, the size limit found by reading.
    let s = Scratch::new("stream");
    let what = s.0.join("fifo");
    run(tool("mkfifo").arg(&what));
    let writer = {
        let what = what.clone();
        std::thread::spawn(move || {
            File::options().write(true).open(&what).and_then(|mut f| f.write_all(b"0123456789"))
        })
    };
    let mut pipe = File::open(&what).expect("fifo");
    let key =
        keyfile::read_region_stream(&mut pipe, Region { offset: 2, size: Some(5) }, &what).expect("region");
    assert_eq!(key.as_bytes(), b"23456");
    writer.join().expect("writer").expect("write");
}

#[test]
fn relative_paths_and_dot_dot_are_refused() {
    let err = fetch(&spec("keys/root.key", None, 0, None, 0)).expect_err("relative");
    assert_eq!(err.to_string(), "key file keys/root.key: the path must be absolute");
    let err = fetch(&spec("/etc/../etc/hostname", None, 0, None, 0)).expect_err("dot dot");
    assert!(matches!(err, KeyFileError::DotDot { .. }), "{err:?}");
}

#[test]
fn a_missing_key_file_names_its_path() {
    let err = fetch(&spec("/nonexistent/lethe.key", None, 0, None, 0)).expect_err("missing");
    assert!(err.to_string().starts_with("cannot open key file /nonexistent/lethe.key: "), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Devices

#[test]
fn a_key_device_that_never_appears_is_reported_after_its_timeout() {
    let uuid = random_uuid();
    let start = Instant::now();
    let err = fetch(&spec("/root.key", Some(&format!("UUID={uuid}")), 0, None, 400)).expect_err("absent");
    let waited = start.elapsed();
    match &err {
        KeyFileError::DeviceNotFound { device, waited } => {
            assert_eq!(device, &DeviceSpec::Uuid(uuid.clone()));
            assert!(*waited >= Duration::from_millis(400), "{waited:?}");
        }
        other => panic!("expected DeviceNotFound, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(10), "{waited:?}");
    assert!(
        err.to_string().starts_with(&format!("key device UUID={uuid} did not appear within 0.4")),
        "{err}"
    );
}

#[test]
fn a_vfat_stick_is_probed_with_its_uuid_and_label() {
    if let Some(why) = missing(&["mkfs.vfat"], false) {
        return unavailable("a_vfat_stick_is_probed_with_its_uuid_and_label", &why);
    }
    let s = Scratch::new("vfat");
    let img = s.0.join("stick.img");
    File::create(&img).and_then(|f| f.set_len(16 << 20)).expect("image");
    run(tool("mkfs.vfat").args(["-F", "16", "-i", "5e1fc0de", "-n", "LETHEKEYS"]).arg(&img));
    let p = probe::probe(&mut File::open(&img).expect("open")).expect("read").expect("a file system");
    assert_eq!(p.kind, FsKind::Vfat);
    assert_eq!(p.kind.fs_type(), "vfat", "the type mount(2) is given");
    assert_eq!(p.uuid.as_deref(), Some("5E1F-C0DE"));
    assert_eq!(p.label.as_deref(), Some("LETHEKEYS"));
}

/// An ext4 image made from a directory: the key at /keys/root.key, a symlink to it inside,
/// and symlinks leading out (relative and absolute).
fn ext4_stick(s: &Scratch, uuid: &str, label: &str, key: &[u8]) -> PathBuf {
    let tree = s.0.join("tree");
    fs::create_dir_all(tree.join("keys")).expect("tree");
    fs::write(tree.join("keys/root.key"), key).expect("key");
    symlink("keys/root.key", tree.join("alias.key")).expect("symlink");
    symlink("../../../../../../etc/hostname", tree.join("keys/out.key")).expect("symlink");
    symlink("/etc/hostname", tree.join("abs.key")).expect("symlink");
    let img = s.0.join("stick.img");
    File::create(&img).and_then(|f| f.set_len(16 << 20)).expect("image");
    run(tool("mkfs.ext4")
        .args(["-q", "-F", "-U", uuid, "-L", label, "-E", "nodiscard", "-d"])
        .arg(&tree)
        .arg(&img));
    img
}

#[test]
fn a_key_file_on_an_ext4_stick_is_read_by_uuid_and_label_and_the_stick_unmounted() {
    in_namespace(
        "a_key_file_on_an_ext4_stick_is_read_by_uuid_and_label_and_the_stick_unmounted",
        &["mkfs.ext4"],
        || {
            let s = Scratch::new("ext4");
            let uuid = random_uuid();
            let label = format!("key{}", std::process::id() % 100_000);
            let key: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
            let img = ext4_stick(&s, &uuid, &label, &key);
            let before = fs::read(&img).expect("image");
            let lo = Loop::attach(&img);

            let by_uuid = spec("/keys/root.key", Some(&format!("UUID={uuid}")), 0, None, 5000);
            assert_eq!(fetch(&by_uuid).expect("by UUID"), key);
            assert_eq!(keydev_mounts(), Vec::<String>::new(), "unmounted after reading");
            assert_eq!(keydev_entries(), Vec::<PathBuf>::new(), "its directory removed");

            let by_label = spec("/keys/root.key", Some(&format!("LABEL={label}")), 100, Some(32), 5000);
            assert_eq!(fetch(&by_label).expect("by LABEL"), key[100..132]);
            let by_path = spec("/alias.key", Some(lo.dev.to_str().expect("utf-8")), 0, Some(8), 5000);
            assert_eq!(fetch(&by_path).expect("by path, through a symlink inside"), key[..8]);
            assert_eq!(keydev_mounts(), Vec::<String>::new());
            assert_eq!(keydev_entries(), Vec::<PathBuf>::new());

            // Errors after the mount still unmount, and name the device and the path.
            let dev = format!("UUID={uuid}");
            let err = fetch(&spec("/keys/missing.key", Some(&dev), 0, None, 5000)).expect_err("missing");
            assert!(
                err.to_string().starts_with(&format!("cannot open key file /keys/missing.key on {dev}: ")),
                "{err}"
            );
            let err = fetch(&spec("/keys/root.key", Some(&dev), 4000, Some(200), 5000)).expect_err("short");
            assert_eq!(
                err.to_string(),
                format!(
                    "key device {dev}: key file /keys/root.key: 200 bytes wanted at offset 4000, but only 96 are there"
                )
            );
            let err = fetch(&spec("/keys", Some(&dev), 0, None, 5000)).expect_err("a directory");
            assert!(matches!(err, KeyFileError::NotAFile { .. }), "{err:?}");
            assert_eq!(keydev_mounts(), Vec::<String>::new());
            assert_eq!(keydev_entries(), Vec::<PathBuf>::new());

            drop(lo);
            assert!(
                fs::read(&img).expect("image") == before,
                "the stick was written to: not mounted read-only"
            );
        },
    );
}

#[test]
fn a_key_path_leading_out_of_the_stick_is_refused() {
    in_namespace("a_key_path_leading_out_of_the_stick_is_refused", &["mkfs.ext4"], || {
        let s = Scratch::new("escape");
        let uuid = random_uuid();
        let img = ext4_stick(&s, &uuid, "escape", b"secret key");
        let _lo = Loop::attach(&img);
        let dev = format!("UUID={uuid}");
        for path in ["/keys/out.key", "/abs.key"] {
            let err = fetch(&spec(path, Some(&dev), 0, None, 5000)).expect_err("escapes");
            assert!(matches!(err, KeyFileError::Escapes { .. }), "{path}: {err:?}");
            assert_eq!(
                err.to_string(),
                format!("key file {path} on {dev}: leads out of the device (through `..` or a symlink)")
            );
        }
        let err = fetch(&spec("/keys/../../etc/hostname", Some(&dev), 0, None, 5000)).expect_err("dot dot");
        assert!(matches!(err, KeyFileError::DotDot { .. }), "{err:?}");
        assert_eq!(keydev_mounts(), Vec::<String>::new());
        assert_eq!(keydev_entries(), Vec::<PathBuf>::new());
    });
}

#[test]
fn a_raw_region_of_a_block_device_is_a_key() {
    // NixOS's `keyFile = "/dev/sdb"` with keyFileOffset and keyFileSize: the bytes of the device.
    if let Some(why) = missing(&["losetup"], true) {
        return unavailable("a_raw_region_of_a_block_device_is_a_key", &why);
    }
    let s = Scratch::new("raw");
    let img = s.0.join("raw.img");
    let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut f = File::create(&img).expect("image");
    f.write_all(&bytes).expect("write");
    f.seek(SeekFrom::Start(0)).expect("seek");
    let lo = Loop::attach(&img);
    let dev = lo.dev.to_str().expect("utf-8");
    assert_eq!(fetch(&spec(dev, None, 4096, Some(512), 5000)).expect("raw region"), bytes[4096..4608]);
    let err = fetch(&spec(dev, None, 1 << 20, Some(1), 5000)).expect_err("at the device's end");
    assert!(
        matches!(err, KeyFileError::Region { source: RegionError::TooShort { available: 0, .. }, .. }),
        "{err:?}"
    );
    let err = fetch(&spec(dev, None, (1 << 20) + 1, Some(1), 5000)).expect_err("past the device's end");
    assert!(matches!(err, KeyFileError::Region { source: RegionError::OffsetPastEnd { .. }, .. }), "{err:?}");
}
