//! Building a compressed initramfs around this binary, the config and the kernel modules it needs.
//!
//! `initrd-tool mkinitrd --config FILE --kernel-modules DIR --out FILE`: the
//! archive holds /init (a link to the binary, which dispatches on argv[0]),
//! the config, the closure of the modules the config's file systems, its
//! `modules.load`, `--add-module` and (with `--host-modaliases`) this
//! machine's devices need, with index files filtered to them, and the empty
//! directories and /dev/console the kernel and stage 1 expect.
//! Exit 0 when written, 1 on an error (missing module, unreadable file), 2 on
//! a usage error or an invalid config.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::config::{self, Config};
use crate::cpio::{Archive, CpioError, Kind};
use crate::kmod::{self, KmodError, ModuleIndex, ModulePath};

/// Where the binary goes; /init and the applet links point at it.
const BINARY: &str = "bin/initrd-tool";
/// Links to the binary besides /init (argv[0] picks the applet).
const APPLET_LINKS: [&str; 4] = ["bin/persist-bind", "bin/rollback", "bin/unlock", "bin/luks"];
/// Where the kernel runs modprobe from (`/proc/sys/kernel/modprobe`'s default).
const MODPROBE: &str = "sbin/modprobe";
/// Mount points and scratch directories stage 1 uses, with their modes.
const DIRS: [(&str, u32); 6] =
    [("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755), ("sysroot", 0o755), ("tmp", 0o1777)];
/// The kernel opens /dev/console (5:1) for PID 1's stdin/out/err before devtmpfs is mounted.
const CONSOLE: (&str, u32, u32) = ("dev/console", 5, 1);
/// Code pages a vfat mount asks for by default (codepage=437, iocharset=iso8859-1).
const VFAT_NLS: [&str; 2] = ["nls_cp437", "nls_iso8859_1"];
const GZIP_LEVEL: u32 = 6;

#[derive(Debug, Parser)]
#[command(
    name = "initrd-tool mkinitrd",
    bin_name = "initrd-tool mkinitrd",
    about = "Build an initramfs (cpio newc, gzip) around initrd-tool, a lethe config and the kernel modules they need"
)]
pub struct Options {
    /// The lethe config (JSON), validated unless --unchecked; stored as /etc/lethe/config.json.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The kernel's module directory, such as /lib/modules/6.1.0-57-amd64.
    #[arg(long, value_name = "DIR")]
    pub kernel_modules: PathBuf,
    /// The initramfs to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Kernel release for /lib/modules/<V> in the image [default: DIR's last path component].
    #[arg(long, value_name = "V")]
    pub kernel_version: Option<String>,
    /// A module to include (with its dependencies) besides those the config needs.
    #[arg(long = "add-module", value_name = "NAME")]
    pub add_modules: Vec<String>,
    /// Also include the modules this machine's devices (/sys modaliases) ask for.
    #[arg(long)]
    pub host_modaliases: bool,
    /// An extra file: SRC on this machine stored as DEST (absolute) in the image.
    #[arg(long = "file", value_name = "SRC:DEST", value_parser = parse_file_spec)]
    pub files: Vec<FileSpec>,
    /// A file (absolute path in the image) that an archive appended to this one later provides,
    /// such as NixOS's boot.initrd.secrets: counted as present, not stored.
    #[arg(long = "secret", value_name = "DEST")]
    pub secrets: Vec<String>,
    /// The static binary to put in [default: this program].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Store the config without validating it (for testing how stage 1 refuses a bad one).
    #[arg(long)]
    pub unchecked: bool,
    #[arg(long, value_enum, default_value_t = Compress::Gzip)]
    pub compress: Compress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compress {
    Gzip,
    None,
}

/// `--file SRC:DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub src: PathBuf,
    pub dest: String,
}

fn parse_file_spec(s: &str) -> Result<FileSpec, String> {
    // DEST is ours to choose and never has a colon; SRC might.
    match s.rsplit_once(':') {
        Some((src, dest)) if !src.is_empty() && dest.starts_with('/') && dest.len() > 1 => {
            Ok(FileSpec { src: PathBuf::from(src), dest: dest.to_owned() })
        }
        _ => Err(format!("expected SRC:DEST with an absolute DEST, got {s:?}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MkinitrdError {
    #[error("{}: invalid config:\n  {}", path.display(), errors.to_string().replace('\n', "\n  "))]
    Config { path: PathBuf, errors: persist_bind::ConfigErrors },
    #[error("reading {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{}", .0)]
    Modules(#[from] KmodError),
    #[error("cannot tell the kernel version from {}; give --kernel-version", .0.display())]
    NoVersion(PathBuf),
    #[error("--kernel-version {0:?} is not a single path component")]
    BadVersion(String),
    #[error("{0}")]
    Archive(#[from] CpioError),
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "{}: pools.zfs imports {pools} with `zpool import -N`, but no zpool is in the image; add it and its libraries with --file SRC:/sbin/zpool (or /usr/sbin, /bin)",
        config.display()
    )]
    NoZpool { config: PathBuf, pools: String },
    #[error(
        "{}: ssh.hostKeys[{index}] is {path}, but no --file puts it in the initramfs (make one with `initrd-tool ssh keygen -f FILE` and add --file FILE:{path})",
        config.display()
    )]
    NoHostKey { config: PathBuf, index: usize, path: String },
}

impl MkinitrdError {
    pub fn exit_code(&self) -> u8 {
        match self {
            MkinitrdError::Config { .. } | MkinitrdError::BadVersion(_) => 2,
            _ => 1,
        }
    }
}

/// The assembled image before compression.
#[derive(Debug)]
pub struct Image {
    pub archive: Archive,
    pub modules: Vec<ModulePath>,
    /// Things worth telling (a file system with no module, an invalid config taken --unchecked, ...).
    pub notes: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub entries: usize,
    pub files: usize,
    pub modules: usize,
    pub module_bytes: u64,
    pub uncompressed: u64,
    pub compressed: u64,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let opts = match Options::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("initrd-tool mkinitrd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Builds and writes the image, printing a summary to stderr.
pub fn run(opts: &Options) -> Result<(), MkinitrdError> {
    let image = build(opts)?;
    for n in &image.notes {
        eprintln!("initrd-tool mkinitrd: note: {n}");
    }
    let w = write(&image, &opts.out, opts.compress)?;
    let names: Vec<&str> = image.modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "initrd-tool mkinitrd: wrote {}: {} entries ({} files), {} modules ({}), {} uncompressed, {} {}",
        opts.out.display(),
        w.entries,
        w.files,
        w.modules,
        human(w.module_bytes),
        human(w.uncompressed),
        human(w.compressed),
        match opts.compress {
            Compress::Gzip => "gzip",
            Compress::None => "written (not compressed)",
        },
    );
    if !names.is_empty() {
        eprintln!("initrd-tool mkinitrd: modules: {}", names.join(" "));
    }
    Ok(())
}

fn human(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Assembles the archive in memory.
pub fn build(opts: &Options) -> Result<Image, MkinitrdError> {
    let mut notes = Vec::new();
    let config_bytes = read("config", &opts.config)?;
    let config = match Config::from_slice(&config_bytes) {
        Ok(c) => Some(c),
        Err(errors) if !opts.unchecked => {
            return Err(MkinitrdError::Config { path: opts.config.clone(), errors });
        }
        Err(errors) => {
            notes.push(format!(
                "{} is invalid ({} problems), stored as it is (--unchecked); only --add-module modules are included",
                opts.config.display(),
                errors.0.len()
            ));
            None
        }
    };
    if let Some(pools) = config.as_ref().and_then(|c| c.pools.as_ref()).filter(|p| !p.zfs.is_empty()) {
        // Stage 1 looks for zpool in these directories; a missing one is a boot that cannot import.
        let carried = opts
            .files
            .iter()
            .any(|f| ["/sbin/zpool", "/usr/sbin/zpool", "/bin/zpool"].contains(&f.dest.as_str()));
        if !carried {
            let pools = pools.zfs.keys().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
            return Err(MkinitrdError::NoZpool { config: opts.config.clone(), pools });
        }
    }
    // A server without its host key would not start: the boot could only be unlocked on the console.
    #[cfg(feature = "ssh")]
    if let Some(ssh) = config.as_ref().and_then(|c| c.ssh.as_ref()) {
        for (index, key) in ssh.host_keys.iter().enumerate() {
            let path = key.to_string_lossy().into_owned();
            let same = |dest: &str| dest.trim_start_matches('/') == path.trim_start_matches('/');
            if !opts.files.iter().any(|f| same(&f.dest)) && !opts.secrets.iter().any(|d| same(d)) {
                return Err(MkinitrdError::NoHostKey { config: opts.config.clone(), index, path });
            }
        }
    }
    let version = kernel_version(opts)?;
    let index = ModuleIndex::load(&opts.kernel_modules)?;
    for w in index.warnings().iter().take(5) {
        notes.push(format!("{}: {w}", opts.kernel_modules.display()));
    }

    let wanted = wanted_modules(&index, config.as_ref(), opts, &mut notes);
    let modules = index.closure(&wanted)?;

    let mut a = Archive::new();
    for (d, mode) in DIRS {
        a.dir(d, mode)?;
    }
    a.char_dev(CONSOLE.0, 0o600, CONSOLE.1, CONSOLE.2)?;
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|source| MkinitrdError::Read {
            what: "this program",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?,
    };
    let bin = read("binary", &binary)?;
    if has_interpreter(&bin) {
        notes.push(format!(
            "{} is dynamically linked; the kernel cannot run it as /init without its loader (build it static)",
            binary.display()
        ));
    }
    a.file(BINARY, 0o755, bin)?;
    a.symlink("init", BINARY)?;
    for l in APPLET_LINKS {
        a.symlink(l, "initrd-tool")?;
    }
    // The kernel's request_module runs /sbin/modprobe (dm-crypt asks for its cipher modules).
    if !opts.files.iter().any(|f| f.dest.trim_start_matches('/') == MODPROBE) {
        a.symlink(MODPROBE, "../bin/initrd-tool")?;
    }
    a.file(config::PATH, 0o644, config_bytes)?;

    let moddir = format!("lib/modules/{version}");
    a.dir(&moddir, 0o755)?;
    for m in &modules {
        let path = index.path_of(m);
        let rel = m.rel.to_str().ok_or_else(|| MkinitrdError::NotAFile(path.clone()))?;
        a.file(&format!("{moddir}/{rel}"), 0o644, read("kernel module", &path)?)?;
    }
    let sub = index.subset(&modules);
    for (name, text) in [
        ("modules.dep", sub.dep),
        ("modules.alias", sub.alias),
        ("modules.builtin", sub.builtin),
        ("modules.softdep", sub.softdep),
    ] {
        a.file(&format!("{moddir}/{name}"), 0o644, text.into_bytes())?;
    }

    for f in &opts.files {
        let meta = std::fs::metadata(&f.src).map_err(|source| MkinitrdError::Read {
            what: "file",
            path: f.src.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(MkinitrdError::NotAFile(f.src.clone()));
        }
        use std::os::unix::fs::PermissionsExt;
        a.file(&f.dest, meta.permissions().mode() & 0o7777, read("file", &f.src)?)?;
    }
    Ok(Image { archive: a, modules, notes })
}

/// The module names the image needs, before the closure.
fn wanted_modules(
    index: &ModuleIndex,
    config: Option<&Config>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    if let Some(c) = config {
        wanted.extend(c.modules.load.iter().cloned());
        for fs in c.fs_types() {
            let mods = fs_modules(index, &fs);
            if mods.is_empty() && !config::is_virtual(&fs) && !index.is_builtin(&fs) {
                notes.push(format!(
                    "no module for file system {fs:?} in {}; built into the kernel?",
                    index.dir().display()
                ));
            }
            wanted.extend(mods);
        }
    }
    if let Some(c) = config
        && c.luks.as_ref().is_some_and(|l| !l.devices.is_empty())
    {
        let luks = crate::unlock::KERNEL_MODULES.iter().filter(|m| index.has_module(m));
        wanted.extend(luks.map(|m| m.to_string()));
    }
    wanted.extend(opts.add_modules.iter().cloned());
    if opts.host_modaliases {
        let aliases = kmod::modaliases(Path::new("/sys"));
        let mut host: Vec<String> = Vec::new();
        for alias in &aliases {
            // The aliases of a consistent index only name modules it has; skip any that do not.
            for m in index.modules_for_alias(alias) {
                if index.has_module(m.as_str()) && !host.iter().any(|h| h == m.as_str()) {
                    host.push(m.to_string());
                }
            }
        }
        notes.push(format!("{} host modaliases ask for {} modules", aliases.len(), host.len()));
        wanted.extend(host);
    }
    wanted
}

/// The modules a file system type needs: its own module (or what `fs-TYPE` aliases), and for vfat the
/// code pages it mounts with by default. Empty for built-in and virtual file systems.
pub fn fs_modules(index: &ModuleIndex, fs_type: &str) -> Vec<String> {
    if config::is_virtual(fs_type) || index.is_builtin(fs_type) {
        return Vec::new();
    }
    let mut v: Vec<String> = if index.has_module(fs_type) {
        vec![fs_type.to_owned()]
    } else {
        index
            .modules_for_alias(&format!("fs-{fs_type}"))
            .into_iter()
            .filter(|m| index.has_module(m.as_str()))
            .map(|m| m.to_string())
            .collect()
    };
    if fs_type == "vfat" {
        v.extend(VFAT_NLS.iter().filter(|m| index.has_module(m)).map(|m| m.to_string()));
    }
    v
}

fn kernel_version(opts: &Options) -> Result<String, MkinitrdError> {
    let v = match &opts.kernel_version {
        Some(v) => v.clone(),
        None => opts
            .kernel_modules
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| MkinitrdError::NoVersion(opts.kernel_modules.clone()))?,
    };
    if v.is_empty() || v == "." || v == ".." || v.contains(['/', '\0']) {
        return Err(MkinitrdError::BadVersion(v));
    }
    Ok(v)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, MkinitrdError> {
    std::fs::read(path).map_err(|source| MkinitrdError::Read { what, path: path.to_owned(), source })
}

/// Whether an ELF file names a program interpreter (PT_INTERP): a dynamically linked binary.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    // Only 64-bit little-endian ELF is looked at; anything else gets no warning.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|v| usize::try_from(v).ok())
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|i| {
        let o = phoff.saturating_add(i.saturating_mul(phentsize));
        elf.get(o..o.saturating_add(4)).is_some_and(|t| t == PT_INTERP.to_le_bytes())
    })
}

/// Writes the archive, compressed as asked, to a temporary file beside `out`, then renames it.
pub fn write(image: &Image, out: &Path, compress: Compress) -> Result<Written, MkinitrdError> {
    let werr = |source| MkinitrdError::Write { path: out.to_owned(), source };
    let raw = image.archive.to_bytes();
    let bytes = match compress {
        Compress::None => raw.clone(),
        Compress::Gzip => {
            // mtime 0 in the gzip header too: the same inputs give the same image.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::with_capacity(raw.len() / 2), flate2::Compression::new(GZIP_LEVEL));
            gz.write_all(&raw).map_err(werr)?;
            gz.finish().map_err(werr)?
        }
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "initrd".into());
    let tmp = out.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, out));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    let mut files = 0;
    let mut module_bytes = 0;
    for (path, e) in image.archive.entries() {
        if let Kind::File(d) = &e.kind {
            files += 1;
            if path.starts_with("lib/modules/") && kmod::ModuleName::from_path(path).is_some() {
                module_bytes += d.len() as u64;
            }
        }
    }
    Ok(Written {
        entries: image.archive.len(),
        files,
        modules: image.modules.len(),
        module_bytes,
        uncompressed: raw.len() as u64,
        compressed: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_specs() {
        assert_eq!(
            parse_file_spec("/nix/store/x/bin/zpool:/bin/zpool").unwrap(),
            FileSpec { src: PathBuf::from("/nix/store/x/bin/zpool"), dest: "/bin/zpool".into() }
        );
        assert_eq!(parse_file_spec("a:b:/c").unwrap().src, PathBuf::from("a:b"));
        assert!(parse_file_spec("/src").is_err());
        assert!(parse_file_spec("/src:rel").is_err());
        assert!(parse_file_spec(":/d").is_err());
        assert!(parse_file_spec("/s:/").is_err());
    }

    #[test]
    fn fs_types_map_to_modules() {
        let ix = ModuleIndex::parse(
            PathBuf::from("/m"),
            &kmod::IndexFiles {
                dep: "ext4.ko:\nvfat.ko: fat.ko\nfat.ko:\nnls_cp437.ko:\nnls_iso8859-1.ko:\n".into(),
                alias: "alias fs-ext3 ext4\nalias fs-msdos vfat\n".into(),
                builtin: "kernel/fs/squashfs/squashfs.ko\n".into(),
                softdep: String::new(),
            },
        );
        assert_eq!(fs_modules(&ix, "ext4"), ["ext4"]);
        assert_eq!(fs_modules(&ix, "ext3"), ["ext4"]);
        assert_eq!(fs_modules(&ix, "vfat"), ["vfat", "nls_cp437", "nls_iso8859_1"]);
        assert!(fs_modules(&ix, "tmpfs").is_empty());
        assert!(fs_modules(&ix, "squashfs").is_empty());
        assert!(fs_modules(&ix, "xfs").is_empty());
    }

    #[test]
    fn interpreter_detection() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are built for the host: dynamically linked unless the target is static.
        let expect_dynamic = !cfg!(target_feature = "crt-static");
        assert_eq!(has_interpreter(&me), expect_dynamic);
        assert!(!has_interpreter(b"\x7fELF\x02\x01"));
        assert!(!has_interpreter(b"#!/bin/sh\n"));
    }

    #[test]
    fn versions() {
        let opts = |dir: &str, v: Option<&str>| Options {
            config: PathBuf::new(),
            kernel_modules: PathBuf::from(dir),
            out: PathBuf::new(),
            kernel_version: v.map(str::to_owned),
            add_modules: vec![],
            host_modaliases: false,
            files: vec![],
            secrets: vec![],
            binary: None,
            unchecked: false,
            compress: Compress::Gzip,
        };
        assert_eq!(kernel_version(&opts("/lib/modules/6.1.0-56-amd64/", None)).unwrap(), "6.1.0-56-amd64");
        assert_eq!(kernel_version(&opts("/x", Some("6.2"))).unwrap(), "6.2");
        assert!(matches!(kernel_version(&opts("/", None)), Err(MkinitrdError::NoVersion(_))));
        assert!(matches!(kernel_version(&opts("/x", Some("a/b"))), Err(MkinitrdError::BadVersion(_))));
    }
}
