//! The btrfs-blank scenario: one BTRFS disk with @root re-created from the read-only @blank on each of two boots, old roots kept in @old_roots, @nix and a persisted @persist.
//!
//! The image is made and inspected on the host (mkfs.btrfs, a loop mount,
//! `btrfs subvolume`); lethe boots it twice in between.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::{self, InitrdSpec};
use crate::error::{self, Context, Error, Result};
use crate::expect::{EPHEMERAL_MARKER, Expectations, Kind, PathExpectation};
use crate::fixtures::Fixture;
use crate::harness::Harness;
use crate::machine::{self, BOOT_COUNTER, MACHINE_ID, USER_FILE};
use crate::scenarios::{self, ScenarioResult};

/// The file system's label.
const LABEL: &str = "lethe-btrfs";
const IMAGE_MIB: u64 = 256;
/// The file the blank root holds; stage 2 finds it on every boot.
const BLANK_FILE: &str = "/etc/lethe-blank";
/// The subvolumes the host makes, relative to the top level.
const SUBVOLUMES: [&str; 3] = ["@root", "@nix", "@persist"];
/// Where the config keeps the old roots.
const OLD_ROOTS: &str = "@old_roots";
/// A btrfs subvolume's root directory has this inode number.
const SUBVOLUME_INO: u64 = 256;

/// The machine's config, as lethe's NixOS module writes it for nix/eval/machines/btrfs-blank.nix:
/// @root from @blank, old roots kept for 30 days (at least 2), @nix and @persist on the same
/// file system.
pub fn btrfs_config() -> serde_json::Value {
    Fixture::BtrfsBlank.config()
}

/// What stage 2 checks on each boot: the plain machine's, with /, /nix and /persist on the
/// BTRFS subvolumes, and the blank root's file.
pub fn expectations() -> Expectations {
    let mut expect = machine::plain_expectations();
    for (target, subvol) in [("/", "@root"), ("/nix", "@nix"), ("/persist", "@persist")] {
        expect = machine::remount(expect, target, "btrfs", &["rw", &format!("subvol=/{subvol}")]);
    }
    expect.paths.push(PathExpectation::new(BLANK_FILE, Kind::File).owned(0, 0, 0o644).content("blank\n"));
    expect
}

/// The BTRFS made on the host: @root (holding only /etc/lethe-blank), its read-only snapshot
/// @blank, and @nix and @persist filled for `expect`, in a new `mib`-MiB file `image`.
/// Returns @blank's state, for [`check_after`].
pub fn make_image(
    h: &Harness,
    dir: &Path,
    expect: &Expectations,
    image: &Path,
    mib: u64,
) -> Result<BlankState> {
    let nix = machine::nix_staging(h, dir, expect)?;
    let persist = machine::persist_staging(dir)?;
    std::fs::File::create(image)
        .and_then(|f| f.set_len(mib << 20))
        .context(|| error::at(image, "cannot create"))?;
    mkfs_btrfs(image)?;
    let mnt = dir.join("mnt");
    let top = LoopMount::new(image, &mnt, false)?;
    let subvolumes: Vec<PathBuf> = SUBVOLUMES.iter().map(|s| top.dir.join(s)).collect();
    for s in &subvolumes {
        btrfs(&["subvolume", "create"], &[s])?;
    }
    // The blank root: /etc/lethe-blank; root's modes whatever the umask.
    let etc = top.dir.join("@root/etc");
    std::fs::create_dir(&etc).context(|| error::at(&etc, "cannot create"))?;
    let blank_file = top.dir.join("@root").join(BLANK_FILE.trim_start_matches('/'));
    std::fs::write(&blank_file, "blank\n").context(|| error::at(&blank_file, "cannot write"))?;
    let modes = subvolumes.iter().map(|s| (s, 0o755)).chain([(&etc, 0o755), (&blank_file, 0o644)]);
    for (p, mode) in modes {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .context(|| error::at(p, "cannot chmod"))?;
    }
    btrfs(&["subvolume", "snapshot", "-r"], &[&top.dir.join("@root"), &top.dir.join("@blank")])?;
    for (staging, sub) in [(&nix, "@nix"), (&persist, "@persist")] {
        let mut src = staging.path().as_os_str().to_owned();
        src.push("/.");
        error::run(Command::new("cp").arg("-a").arg(src).arg(top.dir.join(sub)))?;
    }
    let state = Subvolume::read(&top.dir.join("@blank"))?;
    top.unmount()?;
    Ok(BlankState(state))
}

/// btrfs-blank: the image made on the host, two boots, then the host's
/// view of the subvolumes.
pub fn btrfs_blank(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("btrfs-blank")?;
    let image = dir.join("btrfs.img");
    let blank_before = make_image(h, &dir, &expectations(), &image, IMAGE_MIB)?;

    let initrd = dir.join("initrd.img");
    let config = btrfs_config();
    r.initramfs_bytes = Some(artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &[], add_modules: &[] },
        &initrd,
    )?);
    let disks = [image.clone()];
    if !scenarios::boot_twice_resetting(h, r, &initrd, &disks, echo, "re-creating @root from @blank")? {
        return Ok(()); // a boot that did not reach stage 2 would only repeat itself
    }
    check_after(r, &image, &dir.join("mnt"), &blank_before)
}

/// @blank's state before the boots.
#[derive(Debug)]
pub struct BlankState(Subvolume);

/// The host's view of `image` (mounted read-only at `mnt`) after two boots: the top level,
/// the old roots, @blank unchanged since `before`, and the persisted files.
pub fn check_after(r: &mut ScenarioResult, image: &Path, mnt: &Path, before: &BlankState) -> Result<()> {
    let top = LoopMount::new(image, mnt, true)?;
    check_top(r, &top.dir, &before.0)?;
    top.unmount()
}

/// The top level after two boots: the old roots, @blank and the persisted files.
fn check_top(r: &mut ScenarioResult, top: &Path, blank_before: &Subvolume) -> Result<()> {
    let names = dir_names(top)?;
    let want: Vec<String> =
        ["@blank", "@nix", OLD_ROOTS, "@persist", "@root"].iter().map(|s| s.to_string()).collect();
    r.check(names == want, || {
        format!("the top level holds {names:?} after two boots, expected {want:?} (nothing left half-done)")
    });

    let old = top.join(OLD_ROOTS);
    let old_roots = if old.is_dir() { dir_names(&old)? } else { Vec::new() };
    r.check(old_roots.len() == 2, || {
        format!("{OLD_ROOTS} holds {old_roots:?} after two boots, expected two old roots with distinct names")
    });
    let mut with_marker = Vec::new();
    for name in &old_roots {
        let p = old.join(name);
        let ino = std::fs::symlink_metadata(&p).context(|| error::at(&p, "cannot stat"))?.ino();
        r.check(ino == SUBVOLUME_INO, || {
            format!(
                "{OLD_ROOTS}/{name} is not a subvolume (inode {ino}, a subvolume's root is {SUBVOLUME_INO})"
            )
        });
        if p.join(EPHEMERAL_MARKER.trim_start_matches('/')).exists() {
            with_marker.push(name.clone());
        }
    }
    // The root made on the host has no marker; boot 1's root, retired by
    // boot 2, has the one boot 1's stage 2 wrote.
    r.check(with_marker.len() == 1, || {
        format!(
            "the old roots holding {EPHEMERAL_MARKER} are {with_marker:?}, expected exactly one (boot 1's root, with its files)"
        )
    });

    let blank = top.join("@blank");
    let blank_after = Subvolume::read(&blank)?;
    r.check(blank_after.read_only, || "@blank is no longer read-only".into());
    r.check(blank_after.uuid == blank_before.uuid, || {
        format!(
            "@blank is another subvolume: UUID {} before the boots, {} after",
            blank_before.uuid, blank_after.uuid
        )
    });
    // A snapshot of @blank bumps its root item's generation, but nothing
    // in it may be newer than it was before the boots.
    let since = blank_before.generation + 1;
    let changed: Vec<String> = btrfs(&["subvolume", "find-new"], &[&blank, Path::new(&since.to_string())])?
        .lines()
        .filter(|l| !l.starts_with("transid marker"))
        .map(str::to_owned)
        .collect();
    r.check(changed.is_empty(), || format!("@blank has changes newer than generation {since}: {changed:?}"));
    r.check(blank_after.tree == blank_before.tree, || {
        format!(
            "@blank's files changed: {:?} before the boots, {:?} after",
            blank_before.tree, blank_after.tree
        )
    });

    for (path, want) in [
        (BOOT_COUNTER, "2\n".to_owned()),
        ("/etc/machine-id", format!("{MACHINE_ID}\n")),
        (USER_FILE, "boot 1\nboot 2\n".to_owned()),
    ] {
        let p = top.join("@persist").join(path.trim_start_matches('/'));
        match std::fs::read_to_string(&p) {
            Ok(found) => r.check(found == want, || {
                format!("@persist{path} holds {found:?} after two boots, expected {want:?}")
            }),
            Err(e) => r.findings.push(format!("cannot read @persist{path} after two boots: {e}")),
        }
    }
    Ok(())
}

/// `mkfs.btrfs -q -L LABEL IMAGE`.
fn mkfs_btrfs(image: &Path) -> Result<()> {
    error::run(Command::new("mkfs.btrfs").args(["-q", "-L", LABEL]).arg(image)).map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::Setup("mkfs.btrfs not found: install btrfs-progs (scripts/install-deps.sh)".into())
        }
        e => e,
    })?;
    Ok(())
}

/// `btrfs ARGS PATHS...`'s output.
fn btrfs(args: &[&str], paths: &[&Path]) -> Result<String> {
    let out = error::run(Command::new("btrfs").args(args).args(paths))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sorted names in a directory.
fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).context(|| error::at(dir, "cannot list"))? {
        let e = e.context(|| error::at(dir, "cannot list"))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A subvolume's state: its generation, UUID, read-only flag, and its
/// files with owners, modes and contents.
#[derive(Debug, PartialEq)]
struct Subvolume {
    generation: u64,
    uuid: String,
    read_only: bool,
    tree: BTreeMap<String, String>,
}

impl Subvolume {
    fn read(path: &Path) -> Result<Subvolume> {
        let show = btrfs(&["subvolume", "show"], &[path])?;
        let field = |name: &str| {
            show.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned())).ok_or_else(
                || Error::Setup(format!("`btrfs subvolume show {}` has no {name}", path.display())),
            )
        };
        let generation = field("Generation:")?;
        let generation = generation.parse().map_err(|_| {
            Error::Setup(format!("`btrfs subvolume show {}`: generation {generation:?}", path.display()))
        })?;
        let uuid = field("UUID:")?;
        let ro = btrfs(&["property", "get", "-ts"], &[path, Path::new("ro")])?;
        let mut tree = BTreeMap::new();
        walk(path, Path::new(""), &mut tree)?;
        Ok(Subvolume { generation, uuid, read_only: ro.trim() == "ro=true", tree })
    }
}

/// Every path beneath `root` with its owner, mode and (for files) content.
fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
    let p = root.join(rel);
    let md = std::fs::symlink_metadata(&p).context(|| error::at(&p, "cannot stat"))?;
    let mut what = format!("{}:{} {:o}", md.uid(), md.gid(), md.mode());
    if md.is_file() {
        let content = std::fs::read(&p).context(|| error::at(&p, "cannot read"))?;
        what.push(' ');
        what.push_str(&String::from_utf8_lossy(&content));
    }
    out.insert(format!("/{}", rel.display()), what);
    if md.is_dir() {
        for name in dir_names(&p)? {
            walk(root, &rel.join(name), out)?;
        }
    }
    Ok(())
}

/// A loop mount of an image, unmounted when dropped.
struct LoopMount {
    dir: PathBuf,
    mounted: bool,
}

impl LoopMount {
    fn new(image: &Path, dir: &Path, read_only: bool) -> Result<LoopMount> {
        std::fs::create_dir_all(dir).context(|| error::at(dir, "cannot create"))?;
        let opts = if read_only { "loop,ro" } else { "loop" };
        error::run(Command::new("mount").args(["-t", "btrfs", "-o", opts]).arg(image).arg(dir))?;
        Ok(LoopMount { dir: dir.to_path_buf(), mounted: true })
    }

    fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        error::run(Command::new("umount").arg(&self.dir))?;
        Ok(())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}
