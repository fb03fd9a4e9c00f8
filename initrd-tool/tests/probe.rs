//! The superblock probe and the device finder against images made by mkfs.*, cryptsetup, sfdisk and sgdisk, with blkid and partx as the oracle.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use initrd_tool::devices::{self, Roots, Wanted};
use initrd_tool::devspec::DeviceSpec;
use initrd_tool::probe::{self, FsKind, Probe};

// ---------------------------------------------------------------------------------------------
// Harness

/// A test that cannot run here fails under CI (CI=true) and is skipped elsewhere.
fn unavailable(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The tools a test needs, looked up in PATH and the sbin directories (mkfs lives there).
fn missing_tool(tools: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> =
        path.split(':').chain(["/sbin", "/usr/sbin", "/usr/local/sbin"]).map(PathBuf::from).collect();
    let missing: Vec<&str> =
        tools.iter().copied().filter(|t| !dirs.iter().any(|d| d.join(t).is_file())).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (apt-get install e2fsprogs btrfs-progs dosfstools cryptsetup-bin fdisk gdisk)",
            missing.join(", ")
        )
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn tool(name: &str) -> Command {
    let sbin = ["/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file());
    let mut c = Command::new(sbin.unwrap_or_else(|| PathBuf::from(name)));
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
        let dir = std::env::temp_dir().join(format!("lethe-probe-{test}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// A sparse file of `size` bytes.
    fn image(&self, name: &str, size: u64) -> PathBuf {
        let p = self.0.join(name);
        File::create(&p).and_then(|f| f.set_len(size)).expect("image");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const MIB: u64 = 1024 * 1024;

/// `blkid -p -o export`: KEY=value pairs, empty when blkid finds nothing (or is undecided).
fn blkid(img: &Path) -> BTreeMap<String, String> {
    let out = tool("blkid").args(["-p", "-o", "export"]).arg(img).output().expect("blkid");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), shell_unquote(v))).collect()
}

/// blkid's export format puts a backslash before characters a shell would interpret.
fn shell_unquote(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
    }
    out
}

/// Probes an image and checks every field against blkid's answer for the same image.
fn probe_as_blkid(img: &Path) -> Option<Probe> {
    let expected = blkid(img);
    let got = probe::probe(&mut File::open(img).expect("open image")).expect("probe");
    let field = |k: &str| expected.get(k).cloned();
    match &got {
        Some(p) => {
            assert_eq!(Some(p.kind.fs_type().to_owned()), field("TYPE"), "TYPE of {}", img.display());
            assert_eq!(p.uuid, field("UUID"), "UUID of {}", img.display());
            assert_eq!(p.label, field("LABEL"), "LABEL of {}", img.display());
            assert_eq!(p.uuid_sub, field("UUID_SUB"), "UUID_SUB of {}", img.display());
            assert_eq!(p.version, field("VERSION"), "VERSION of {}", img.display());
        }
        None => assert_eq!(field("TYPE"), None, "blkid sees {expected:?} in {}", img.display()),
    }
    got
}

// ---------------------------------------------------------------------------------------------
// Image makers

fn mkfs_ext(s: &Scratch, name: &str, fs: &str, uuid: &str, label: Option<&str>, extra: &[&str]) -> PathBuf {
    let img = s.image(name, 16 * MIB);
    let mut c = tool(&format!("mkfs.{fs}"));
    c.args(["-q", "-F", "-U", uuid]).args(extra);
    if let Some(l) = label {
        c.args(["-L", l]);
    }
    run(c.arg(&img));
    img
}

fn mkfs_vfat(s: &Scratch, name: &str, size: u64, fat: &str, id: &str, label: Option<&str>) -> PathBuf {
    let img = s.image(name, size);
    let mut c = tool("mkfs.vfat");
    c.args(["-F", fat, "-i", id]);
    if let Some(l) = label {
        c.args(["-n", l]);
    }
    run(c.arg(&img));
    img
}

fn mkfs_btrfs(s: &Scratch, name: &str, uuid: &str, label: &str) -> PathBuf {
    let img = s.image(name, 128 * MIB);
    run(tool("mkfs.btrfs").args(["-q", "-f", "-U", uuid, "-L", label]).arg(&img));
    img
}

fn luks_format(s: &Scratch, name: &str, version: &str, uuid: &str, label: Option<&str>) -> PathBuf {
    let img = s.image(name, 32 * MIB);
    let key = s.0.join("key");
    fs::write(&key, "lethe-test-key").expect("key file");
    let mut c = tool("cryptsetup");
    c.args(["luksFormat", "--batch-mode", "--type", version, "--uuid", uuid, "--key-file"]).arg(&key);
    c.args(["--pbkdf-force-iterations", "1000"]);
    if version == "luks2" {
        c.args(["--pbkdf", "pbkdf2"]);
    }
    if let Some(l) = label {
        c.args(["--label", l]);
    }
    run(c.arg(&img));
    img
}

/// Appends one XDR nvpair (encoded size, decoded size, name, type, one element, value).
fn nvpair(out: &mut Vec<u8>, name: &str, data_type: u32, value: &[u8]) {
    let name_len = name.len().next_multiple_of(4);
    let size = u32::try_from(4 + 4 + 4 + name_len + 4 + 4 + value.len()).expect("pair size");
    out.extend(size.to_be_bytes());
    out.extend(size.to_be_bytes());
    out.extend(u32::try_from(name.len()).expect("name").to_be_bytes());
    out.extend(name.as_bytes());
    out.resize(out.len() + name_len - name.len(), 0);
    out.extend(data_type.to_be_bytes());
    out.extend(1u32.to_be_bytes());
    out.extend(value);
}

const UINT64: u32 = 8;
const STRING: u32 = 9;
const NVLIST: u32 = 19;

fn u64_value(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn string_value(s: &str) -> Vec<u8> {
    let mut v = u32::try_from(s.len()).expect("string").to_be_bytes().to_vec();
    v.extend(s.as_bytes());
    v.resize(4 + s.len().next_multiple_of(4), 0);
    v
}

/// An embedded nvlist as a pair value: version, flags, the pairs, the two-zero terminator.
fn nvlist_value(pairs: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, 0, 0, 0, 1];
    v.extend(pairs);
    v.extend([0; 8]);
    v
}

/// A ZFS vdev label as `zpool create` writes it, following OpenZFS's documented on-disk
/// format (the XDR nvlist of module/nvpair/nvpair.c, the label layout of vdev_impl.h): no
/// zpool can run here, so the image is assembled by hand.
fn zfs_member(s: &Scratch, name: &str, pool: &str, pool_guid: u64, guid: u64) -> PathBuf {
    let img = s.image(name, 64 * MIB);
    let mut vdev_tree = Vec::new();
    nvpair(&mut vdev_tree, "type", STRING, &string_value("disk"));
    nvpair(&mut vdev_tree, "id", UINT64, &u64_value(0));
    nvpair(&mut vdev_tree, "guid", UINT64, &u64_value(guid));
    nvpair(&mut vdev_tree, "path", STRING, &string_value("/dev/vdb1"));
    nvpair(&mut vdev_tree, "ashift", UINT64, &u64_value(12));
    let mut pairs = Vec::new();
    nvpair(&mut pairs, "version", UINT64, &u64_value(5000));
    nvpair(&mut pairs, "name", STRING, &string_value(pool));
    nvpair(&mut pairs, "state", UINT64, &u64_value(1));
    nvpair(&mut pairs, "txg", UINT64, &u64_value(27));
    nvpair(&mut pairs, "pool_guid", UINT64, &u64_value(pool_guid));
    nvpair(&mut pairs, "hostname", STRING, &string_value("lethe"));
    nvpair(&mut pairs, "top_guid", UINT64, &u64_value(guid));
    nvpair(&mut pairs, "guid", UINT64, &u64_value(guid));
    nvpair(&mut pairs, "vdev_children", UINT64, &u64_value(1));
    nvpair(&mut pairs, "vdev_tree", NVLIST, &nvlist_value(&vdev_tree));
    nvpair(&mut pairs, "features_for_read", NVLIST, &nvlist_value(&[]));
    let mut phys = vec![1, 1, 0, 0]; // XDR encoding, little-endian host
    phys.extend(nvlist_value(&pairs));
    let mut f = fs::OpenOptions::new().write(true).open(&img).expect("image");
    for label in [0, 256 * 1024] {
        f.seek(SeekFrom::Start(label + 16 * 1024)).and_then(|_| f.write_all(&phys)).expect("label");
        // Uberblocks (magic 0x00bab10c, native endian) in the ring at 128 KiB: older blkid
        // (util-linux < 2.39) wants four of them before it believes the label.
        for slot in 0..4u64 {
            let mut ub = 0x00ba_b10c_u64.to_le_bytes().to_vec();
            ub.extend(5000u64.to_le_bytes());
            f.seek(SeekFrom::Start(label + 128 * 1024 + slot * 1024))
                .and_then(|_| f.write_all(&ub))
                .expect("ub");
        }
    }
    img
}

// ---------------------------------------------------------------------------------------------
// Superblocks

#[test]
fn ext_generations_match_blkid() {
    if let Some(why) = missing_tool(&["blkid", "mkfs.ext4", "mkfs.ext3", "mkfs.ext2"]) {
        return unavailable("ext_generations_match_blkid", &why);
    }
    let s = Scratch::new("ext");
    let cases = [
        ("ext4", "0f6a8e2c-3d5b-4c1a-9e7f-112233445566", Some("nix"), &[][..], FsKind::Ext4),
        ("ext4", "0f6a8e2c-3d5b-4c1a-9e7f-112233445567", None, &[][..], FsKind::Ext4),
        (
            "ext4",
            "0f6a8e2c-3d5b-4c1a-9e7f-112233445568",
            Some("sixteen-chars-ab"),
            &["-O", "^metadata_csum"][..],
            FsKind::Ext4,
        ),
        ("ext3", "0f6a8e2c-3d5b-4c1a-9e7f-112233445569", Some("three"), &[][..], FsKind::Ext3),
        ("ext2", "0f6a8e2c-3d5b-4c1a-9e7f-11223344556a", Some("two"), &[][..], FsKind::Ext2),
        (
            "ext4",
            "0f6a8e2c-3d5b-4c1a-9e7f-11223344556b",
            Some("nojournal"),
            &["-O", "^has_journal"][..],
            FsKind::Ext4,
        ),
    ];
    for (i, (fs, uuid, label, extra, kind)) in cases.into_iter().enumerate() {
        let img = mkfs_ext(&s, &format!("{fs}-{i}.img"), fs, uuid, label, extra);
        let p = probe_as_blkid(&img).unwrap_or_else(|| panic!("{fs} #{i} not recognised"));
        assert_eq!((p.kind, p.uuid.as_deref(), p.label.as_deref()), (kind, Some(uuid), label), "#{i}");
    }
}

#[test]
fn vfat_variants_match_blkid() {
    if let Some(why) = missing_tool(&["blkid", "mkfs.vfat"]) {
        return unavailable("vfat_variants_match_blkid", &why);
    }
    let s = Scratch::new("vfat");
    let cases = [
        (8 * MIB, "12", "1234abcd", Some("BOOT"), "1234-ABCD", "FAT12"),
        (8 * MIB, "12", "00c0ffee", None, "00C0-FFEE", "FAT12"),
        (32 * MIB, "16", "deadbeef", Some("DATA 16"), "DEAD-BEEF", "FAT16"),
        (40 * MIB, "32", "0badcafe", Some("ESP"), "0BAD-CAFE", "FAT32"),
        (40 * MIB, "32", "12345678", None, "1234-5678", "FAT32"),
    ];
    for (i, (size, fat, id, label, uuid, version)) in cases.into_iter().enumerate() {
        let img = mkfs_vfat(&s, &format!("vfat-{i}.img"), size, fat, id, label);
        let p = probe_as_blkid(&img).unwrap_or_else(|| panic!("vfat #{i} not recognised"));
        assert_eq!(p.kind, FsKind::Vfat);
        assert_eq!(
            (p.uuid.as_deref(), p.label.as_deref(), p.version.as_deref()),
            (Some(uuid), label, Some(version))
        );
    }
}

#[test]
fn btrfs_matches_blkid() {
    if let Some(why) = missing_tool(&["blkid", "mkfs.btrfs"]) {
        return unavailable("btrfs_matches_blkid", &why);
    }
    let s = Scratch::new("btrfs");
    let img = mkfs_btrfs(&s, "btrfs.img", "1a2b3c4d-0000-4000-8000-aabbccddeeff", "persist");
    let p = probe_as_blkid(&img).expect("btrfs not recognised");
    assert_eq!(p.kind, FsKind::Btrfs);
    assert_eq!(p.uuid.as_deref(), Some("1a2b3c4d-0000-4000-8000-aabbccddeeff"));
    assert!(p.uuid_sub.is_some());
    // A damaged superblock fails its checksum (blkid checks it from util-linux 2.39 on, so the
    // older blkid of some hosts is no oracle here).
    let mut f = fs::OpenOptions::new().write(true).open(&img).expect("image");
    f.seek(SeekFrom::Start(64 * 1024 + 0x12B)).and_then(|_| f.write_all(b"X")).expect("write");
    assert_eq!(probe::probe(&mut File::open(&img).expect("open")).expect("probe"), None);
}

#[test]
fn luks_headers_match_blkid() {
    if let Some(why) = missing_tool(&["blkid", "cryptsetup"]) {
        return unavailable("luks_headers_match_blkid", &why);
    }
    let s = Scratch::new("luks");
    let l1 = luks_format(&s, "luks1.img", "luks1", "5e1f0c8a-1111-4222-8333-444455556667", None);
    let p = probe_as_blkid(&l1).expect("luks1 not recognised");
    assert_eq!((p.kind, p.uuid.as_deref()), (FsKind::Luks1, Some("5e1f0c8a-1111-4222-8333-444455556667")));
    let l2 = luks_format(&s, "luks2.img", "luks2", "5e1f0c8a-1111-4222-8333-444455556666", Some("cryptroot"));
    let p = probe_as_blkid(&l2).expect("luks2 not recognised");
    assert_eq!((p.kind, p.label.as_deref()), (FsKind::Luks2, Some("cryptroot")));
}

#[test]
fn zfs_member_label_matches_blkid() {
    if let Some(why) = missing_tool(&["blkid"]) {
        return unavailable("zfs_member_label_matches_blkid", &why);
    }
    let s = Scratch::new("zfs");
    let img = zfs_member(&s, "zfs.img", "tank", 11_922_937_711_426_046_016, 4_242_424_242_424_242);
    let p = probe_as_blkid(&img).expect("zfs_member not recognised");
    assert_eq!(p.kind, FsKind::ZfsMember);
    assert_eq!(p.uuid.as_deref(), Some("11922937711426046016"));
    assert_eq!(p.label.as_deref(), Some("tank"));
    // Too small for a pool member: blkid and we ignore the label.
    let small = s.image("small.img", 32 * MIB);
    fs::copy(&img, &small)
        .and_then(|_| File::options().write(true).open(&small)?.set_len(32 * MIB))
        .expect("copy");
    assert_eq!(probe_as_blkid(&small), None);
}

#[test]
fn nothing_and_ambiguity_match_blkid() {
    if let Some(why) = missing_tool(&["blkid", "mkfs.ext4"]) {
        return unavailable("nothing_and_ambiguity_match_blkid", &why);
    }
    let s = Scratch::new("none");
    let garbage = s.0.join("garbage.img");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..4 * MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    fs::write(&garbage, bytes).expect("garbage");
    assert_eq!(probe_as_blkid(&garbage), None);
    assert_eq!(probe_as_blkid(&s.image("zero.img", 4 * MIB)), None);

    // An ext4 that also carries a ZFS label: blkid refuses to choose, and so do we.
    let both = zfs_member(&s, "both.img", "tank", 7, 8);
    run(tool("mkfs.ext4").args(["-q", "-F", "-b", "4096", "-E", "nodiscard"]).arg(&both));
    let zfs = zfs_member(&s, "zfs-again.img", "tank", 7, 8);
    let label: Vec<u8> = fs::read(&zfs).expect("read")[16 * 1024..256 * 1024].to_vec();
    let mut f = fs::OpenOptions::new().write(true).open(&both).expect("image");
    f.seek(SeekFrom::Start(16 * 1024)).and_then(|_| f.write_all(&label)).expect("write");
    assert_eq!(probe_as_blkid(&both), None);
    let all = probe::probe_all(&mut probe::ReaderSource::new(File::open(&both).expect("open")).expect("src"))
        .expect("probe_all");
    let kinds: Vec<FsKind> = all.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [FsKind::Ext4, FsKind::ZfsMember]);
}

// ---------------------------------------------------------------------------------------------
// Partition tables

/// `partx`: partition number -> PARTUUID as libblkid reads the table.
fn partx(img: &Path) -> BTreeMap<u32, String> {
    let out = run(tool("partx").args(["-g", "-r", "-o", "NR,UUID"]).arg(img));
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, u)| (n.parse().expect("partition number"), u.to_owned()))
        .collect()
}

fn table_of(img: &Path) -> BTreeMap<u32, String> {
    let mut src = probe::ReaderSource::new(File::open(img).expect("open")).expect("source");
    let table = probe::partition_table(&mut src, 512).expect("read").expect("a partition table");
    table.partitions.into_iter().filter_map(|p| Some((p.number, p.partuuid?))).collect()
}

#[test]
fn gpt_partuuids_match_partx() {
    if let Some(why) = missing_tool(&["partx", "sgdisk"]) {
        return unavailable("gpt_partuuids_match_partx", &why);
    }
    let s = Scratch::new("gpt");
    let img = s.image("gpt.img", 64 * MIB);
    run(tool("sgdisk")
        .args(["-o", "-n", "1:2048:+8M", "-u", "1:0CC39EF9-ABDD-5F4F-96E5-BE715ECF8B8F"])
        .args(["-n", "3:0:+8M", "-u", "3:C5E86685-6B25-BC43-B2ED-3DE72234931A"])
        .arg(&img));
    let expected = partx(&img);
    assert_eq!(expected.get(&1).map(String::as_str), Some("0cc39ef9-abdd-5f4f-96e5-be715ecf8b8f"));
    assert_eq!(table_of(&img), expected);
    let head = fs::read(&img).expect("read")[..64 * 1024].to_vec();
    assert_eq!(probe::partuuids(&head, 512), expected);

    // The primary header destroyed: the backup at the end of the disk still tells.
    let mut f = fs::OpenOptions::new().write(true).open(&img).expect("image");
    f.seek(SeekFrom::Start(512)).and_then(|_| f.write_all(&[0; 512])).expect("write");
    assert_eq!(partx(&img), expected);
    assert_eq!(table_of(&img), expected);
    assert!(probe::partuuids(&head[..1024], 512).is_empty());
}

#[test]
fn mbr_partuuids_match_partx() {
    if let Some(why) = missing_tool(&["partx", "sfdisk"]) {
        return unavailable("mbr_partuuids_match_partx", &why);
    }
    let s = Scratch::new("mbr");
    let img = s.image("mbr.img", 64 * MIB);
    let script = "label: dos\nlabel-id: 0x0e2c5a11\n,8M,L\n,8M,L\n,,E\n,4M,L\n,4M,L\n,4M,L\n";
    let mut child =
        tool("sfdisk").arg("-q").arg(&img).stdin(std::process::Stdio::piped()).spawn().expect("sfdisk");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("script");
    assert!(child.wait().expect("sfdisk").success());
    let expected = partx(&img);
    assert_eq!(expected.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 5, 6, 7]);
    assert_eq!(table_of(&img), expected);
}

// ---------------------------------------------------------------------------------------------
// Finding devices

/// A /sys and /dev made of plain files: image files stand in for the device nodes.
struct FakeSystem {
    scratch: Scratch,
}

impl FakeSystem {
    fn new(test: &str) -> Self {
        let scratch = Scratch::new(test);
        fs::create_dir_all(scratch.0.join("sys/block")).expect("sys");
        fs::create_dir_all(scratch.0.join("dev")).expect("dev");
        FakeSystem { scratch }
    }

    fn roots(&self) -> Roots {
        Roots { sys: self.scratch.0.join("sys"), dev: self.scratch.0.join("dev"), allow_regular_files: true }
    }

    /// Adds a disk (or, with `parent`, a partition) backed by `image` (or no node, size 0).
    fn add(&self, name: &str, parent: Option<(&str, u32)>, devno: (u32, u32), image: Option<&Path>) {
        let dir = match parent {
            Some((disk, _)) => self.scratch.0.join("sys/block").join(disk).join(name),
            None => self.scratch.0.join("sys/block").join(name),
        };
        fs::create_dir_all(&dir).expect("sys dir");
        let size = image.map_or(0, |i| fs::metadata(i).expect("image").len());
        let devtype = if parent.is_some() { "partition" } else { "disk" };
        let uevent = format!("MAJOR={}\nMINOR={}\nDEVNAME={name}\nDEVTYPE={devtype}\n", devno.0, devno.1);
        fs::write(dir.join("uevent"), uevent).expect("uevent");
        fs::write(dir.join("dev"), format!("{}:{}\n", devno.0, devno.1)).expect("dev");
        fs::write(dir.join("size"), format!("{}\n", size / 512)).expect("size");
        if let Some((_, n)) = parent {
            fs::write(dir.join("partition"), format!("{n}\n")).expect("partition");
        }
        if let Some(i) = image {
            fs::rename(i, self.scratch.0.join("dev").join(name)).expect("node");
        }
    }
}

fn wanted(spec: &str, timeout_ms: u64) -> Wanted {
    Wanted { spec: spec.parse().expect("spec"), timeout: Duration::from_millis(timeout_ms) }
}

#[test]
fn finds_devices_in_a_fake_sys_tree_together() {
    if let Some(why) = missing_tool(&["mkfs.ext4", "mkfs.vfat", "sgdisk"]) {
        return unavailable("finds_devices_in_a_fake_sys_tree_together", &why);
    }
    let sys = FakeSystem::new("fake");
    let s = &sys.scratch;
    let disk = s.image("disk.img", 32 * MIB);
    run(tool("sgdisk")
        .args(["-o", "-n", "1:2048:+16M", "-u", "1:0CC39EF9-ABDD-5F4F-96E5-BE715ECF8B8F"])
        .arg(&disk));
    let part = mkfs_ext(s, "part.img", "ext4", "0f6a8e2c-3d5b-4c1a-9e7f-112233445566", Some("nix"), &[]);
    let esp = mkfs_vfat(s, "esp.img", 8 * MIB, "12", "1234abcd", Some("BOOT"));
    sys.add("vda", None, (254, 0), Some(&disk));
    sys.add("vda1", Some(("vda", 1)), (254, 1), Some(&part));
    sys.add("vdb", None, (254, 16), Some(&esp));
    sys.add("loop0", None, (7, 0), None);

    let start = Instant::now();
    let results = devices::wait_for(
        &[
            wanted("UUID=0F6A8E2C-3D5B-4C1A-9E7F-112233445566", 2000),
            wanted("LABEL=BOOT", 2000),
            wanted("PARTUUID=0cc39ef9-abdd-5f4f-96e5-be715ecf8b8f", 2000),
            wanted("/dev/vdb", 2000),
            wanted("/dev/disk/by-label/nix", 2000),
            wanted("LABEL=persist", 300),
            wanted("UUID=1234-abcd", 2000),
        ],
        &sys.roots(),
    );
    let dev = sys.roots().dev;
    let paths: Vec<Option<PathBuf>> =
        results.iter().map(|r| r.as_ref().ok().map(|f| f.path.clone())).collect();
    assert_eq!(
        paths,
        [
            Some(dev.join("vda1")),
            Some(dev.join("vdb")),
            Some(dev.join("vda1")),
            Some(dev.join("vdb")),
            Some(dev.join("vda1")),
            None,
            Some(dev.join("vdb")),
        ]
    );
    let vdb = results[3].as_ref().expect("vdb");
    assert_eq!(vdb.probe.as_ref().map(|p| p.kind), Some(FsKind::Vfat), "a path spec reports what is there");
    // All waited for at once: the missing one's 0.3 s, not the sum, and no full timeout.
    assert!(start.elapsed() < Duration::from_millis(1500), "took {:?}", start.elapsed());
    let err = results[5].as_ref().expect_err("persist is missing").to_string();
    assert_eq!(
        err,
        "LABEL=persist did not appear within 0.3 s; devices seen: vda (no file system), \
         vda1 (ext4 UUID=0f6a8e2c-3d5b-4c1a-9e7f-112233445566 LABEL=nix \
         PARTUUID=0cc39ef9-abdd-5f4f-96e5-be715ecf8b8f), vdb (vfat UUID=1234-ABCD LABEL=BOOT)"
    );

    let listing = devices::scan(&sys.roots()).expect("scan");
    let names: Vec<&str> = listing.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["loop0", "vda", "vda1", "vdb"]);
    assert_eq!((listing[2].disk.as_deref(), listing[2].partition), (Some("vda"), Some(1)));
}

#[test]
fn a_device_that_appears_later_is_found() {
    if let Some(why) = missing_tool(&["mkfs.ext4"]) {
        return unavailable("a_device_that_appears_later_is_found", &why);
    }
    let sys = FakeSystem::new("late");
    let roots = sys.roots();
    let late =
        mkfs_ext(&sys.scratch, "late.img", "ext4", "0f6a8e2c-3d5b-4c1a-9e7f-1122334455aa", Some("late"), &[]);
    let results = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            sys.add("vdc", None, (254, 32), Some(&late));
        });
        devices::wait_for(&[wanted("LABEL=late", 5000)], &roots)
    });
    let found = results.into_iter().next().expect("one result").expect("found");
    assert_eq!(found.path, roots.dev.join("vdc"));
}

#[test]
fn no_sys_is_a_clear_error() {
    let roots = Roots {
        sys: PathBuf::from("/nonexistent/sys"),
        dev: PathBuf::from("/dev"),
        allow_regular_files: false,
    };
    let results = devices::wait_for(&[wanted("LABEL=x", 0)], &roots);
    let msg = results[0].as_ref().expect_err("no /sys").to_string();
    assert!(
        msg.starts_with(
            "LABEL=x could not be looked for within 0 s: cannot list block devices in /nonexistent/sys/block"
        ),
        "{msg}"
    );
    let spec: DeviceSpec = "LABEL=x".parse().expect("spec");
    assert_eq!(spec.to_string(), "LABEL=x");
}

/// A loop device with partitions, detached (with its partitions) however the test ends.
struct Loop {
    dev: String,
}

impl Loop {
    fn attach(image: &Path) -> Loop {
        let dev = run(tool("losetup").args(["-r", "-f", "--show", "-P"]).arg(image)).trim().to_owned();
        let lo = Loop { dev };
        // Kernels without partition-table support leave it to userspace (BLKPG via partx).
        let name = lo.name();
        let p1 = Path::new("/sys/class/block").join(format!("{name}p1"));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !p1.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !p1.exists() {
            run(tool("partx").arg("-a").arg(&lo.dev));
        }
        lo
    }

    fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = tool("partx").arg("-d").arg(&self.dev).output();
        let _ = tool("losetup").arg("-d").arg(&self.dev).output();
    }
}

#[test]
fn finds_real_loop_devices_as_root() {
    if !is_root() {
        return unavailable("finds_real_loop_devices_as_root", "needs root for losetup");
    }
    if let Some(why) = missing_tool(&["losetup", "partx", "sgdisk", "mkfs.ext4", "mkfs.vfat"]) {
        return unavailable("finds_real_loop_devices_as_root", &why);
    }
    let s = Scratch::new("loop");
    let disk = s.image("disk.img", 40 * MIB);
    run(tool("sgdisk")
        .args(["-o", "-n", "1:2048:+16M", "-n", "2:0:+16M", "-u", "2:5A3F9B1C-7D2E-4F60-8A91-B2C3D4E5F607"])
        .arg(&disk));
    let ext4 =
        mkfs_ext(&s, "p1.img", "ext4", "0f6a8e2c-3d5b-4c1a-9e7f-1122334455bb", Some("lethe-root"), &[]);
    let vfat = mkfs_vfat(&s, "p2.img", 16 * MIB, "16", "cafe0042", Some("LETHEBOOT"));
    for (img, at) in [(&ext4, MIB), (&vfat, 17 * MIB)] {
        let bytes = fs::read(img).expect("read");
        let mut f = fs::OpenOptions::new().write(true).open(&disk).expect("disk");
        f.seek(SeekFrom::Start(at)).and_then(|_| f.write_all(&bytes[..16 * MIB as usize])).expect("write");
    }
    let lo = Loop::attach(&disk);
    let name = lo.name().to_owned();
    let results = devices::wait_for(
        &[
            wanted("UUID=0f6a8e2c-3d5b-4c1a-9e7f-1122334455bb", 5000),
            wanted("LABEL=LETHEBOOT", 5000),
            wanted("PARTUUID=5a3f9b1c-7d2e-4f60-8a91-b2c3d4e5f607", 5000),
            wanted(&lo.dev, 5000),
        ],
        &Roots::system(),
    );
    let paths: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().map(|f| f.path.display().to_string()).unwrap_or_else(|e| e.to_string()))
        .collect();
    let p = |n: u32| format!("/dev/{name}p{n}");
    assert_eq!(paths, [p(1), p(2), p(2), lo.dev.clone()]);
    let whole = results[3].as_ref().expect("loop device");
    assert_eq!(whole.name, name, "the path spec resolves to the scanned disk");
}
