//! The `rollback` command line: the config's rollback, the explicit zfs/btrfs/tmpfs forms, and `diff`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use persist_bind::mode::Mode as FileMode;

use crate::cmdline::Cmdline;
use crate::config::{self, DatasetName, DeviceRef, Document, OldRoots, SnapshotName, SubvolPath, TmpfsSize};
use crate::{Kept, Mode, Report, Target};

/// Exit status: the root was reset, or kept with a warning (the boot goes on).
pub const EXIT_OK: u8 = 0;
/// Exit status: the rollback failed part-way (what and where is printed).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad arguments or config; nothing was touched.
pub const EXIT_USAGE: u8 = 2;

/// How long `rollback` waits for a `UUID=`/`LABEL=` device node to appear.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "rollback",
    version,
    about = "Reset an ephemeral root before it is mounted: ZFS rollback to a blank snapshot, BTRFS re-creation from one, or a fresh tmpfs",
    after_help = "Without a subcommand, runs the `rollback` section of the config.\n\
        `lethe.rollback=0` on the kernel command line, a hibernation image on the resume device, \
        a missing blank snapshot or any state it cannot be sure of keep the old root: a warning, exit 0.\n\
        Exit status: 0 reset (or kept, with a warning); 1 failed part-way; 2 bad arguments or config, nothing touched."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The lethe config (its `rollback` section).
    #[arg(long, value_name = "FILE", default_value = "/etc/lethe/config.json")]
    config: PathBuf,
    /// Where the tmpfs root is mounted, for a `tmpfs` config.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    root: PathBuf,
    #[command(flatten)]
    out: Output,
}

#[derive(Debug, Args)]
struct Output {
    /// Print the plan and change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The kernel command line to honour (`lethe.rollback=0`, `resume=`).
    #[arg(long, global = true, value_name = "FILE", default_value = "/proc/cmdline", hide = true)]
    cmdline: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Roll a ZFS dataset back to its blank snapshot (newer snapshots and bookmarks are destroyed).
    Zfs(ZfsArgs),
    /// Re-create a BTRFS root subvolume from a read-only blank snapshot.
    Btrfs(BtrfsArgs),
    /// Mount a fresh tmpfs as the root.
    Tmpfs(TmpfsArgs),
    /// List what the next rollback erases: files added or changed since the
    /// blank snapshot (btrfs, zfs), everything not mounted from elsewhere (tmpfs).
    ///
    /// With --json, paths are JSON strings in which a byte that is not UTF-8 is written
    /// `\xNN` and a backslash `\\` (reversible).
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
struct ZfsArgs {
    /// The dataset: POOL/NAME.
    #[arg(long, value_name = "POOL/DS")]
    dataset: DatasetName,
    /// The blank snapshot's name.
    #[arg(long, value_name = "NAME", default_value = "blank")]
    snapshot: SnapshotName,
}

#[derive(Debug, Args)]
struct BtrfsArgs {
    /// The file system's device: a path, UUID=, LABEL=, PARTUUID= or PARTLABEL=.
    #[arg(long, value_name = "DEV")]
    device: DeviceRef,
    /// The root subvolume, relative to the top level.
    #[arg(long, value_name = "PATH")]
    subvolume: SubvolPath,
    /// The read-only blank snapshot, relative to the top level.
    #[arg(long, value_name = "PATH")]
    blank: SubvolPath,
    /// Keep retired roots in this directory (relative to the top level) instead of deleting them.
    #[arg(long, value_name = "DIR")]
    old_roots: Option<SubvolPath>,
    /// Prune old roots created longer ago than this many days…
    #[arg(long, value_name = "N", default_value_t = 30, requires = "old_roots")]
    keep_days: u32,
    /// …but always keep the newest this many.
    #[arg(long, value_name = "K", default_value_t = 1, requires = "old_roots", value_parser = clap::value_parser!(u32).range(1..))]
    keep_at_least: u32,
}

#[derive(Debug, Args)]
struct TmpfsArgs {
    /// Where to mount it.
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// tmpfs size (2G, 50%).
    #[arg(long, value_name = "SIZE")]
    size: Option<TmpfsSize>,
    /// The root's mode (default 0755).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    mode: Option<FileMode>,
}

#[derive(Debug, Args)]
struct DiffArgs {
    #[command(subcommand)]
    what: Option<DiffWhat>,
}

#[derive(Debug, Subcommand)]
enum DiffWhat {
    /// Against a ZFS dataset's blank snapshot (the dataset must be mounted).
    Zfs(ZfsArgs),
    /// Against a BTRFS blank snapshot.
    Btrfs(BtrfsArgs),
    /// Everything on a tmpfs root that is not mounted from elsewhere.
    Tmpfs {
        /// The root to list.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
}

fn parse_mode(s: &str) -> Result<FileMode, String> {
    FileMode::parse(s).map_err(|e| e.to_string())
}

/// Runs the command line `args` (including the program name).
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    ExitCode::from(run(cli))
}

fn run(cli: Cli) -> u8 {
    let out = &cli.out;
    // Bytes, as the kernel keeps them: one that is not UTF-8 must not hide lethe.rollback=0.
    let cmdline = std::fs::read(&out.cmdline);
    let target = match cli.command {
        Some(Command::Diff(d)) => return diff(d, &cli.config, out),
        Some(Command::Zfs(a)) => Target::Zfs(zfs_options(a)),
        Some(Command::Btrfs(a)) => match btrfs_options(a) {
            Ok(o) => Target::Btrfs(o),
            Err(k) => return kept(&k, out),
        },
        Some(Command::Tmpfs(a)) => {
            Target::Tmpfs(crate::tmpfs::Options { target: a.target, size: a.size, mode: a.mode })
        }
        None => match from_config(&cli.config, &cli.root) {
            Ok(Some(t)) => t,
            Ok(None) => {
                eprintln!("rollback: {} has no `rollback` section: nothing to do", cli.config.display());
                return EXIT_OK;
            }
            Err(NoTarget::Invalid) => return EXIT_USAGE,
            Err(NoTarget::Kept(k)) => return kept(&k, out),
        },
    };
    // Unread, it may hold lethe.rollback=0 or name a device with a hibernation image on it:
    // neither a reset nor a plan that mounts the file system is safe.
    let cmdline = match cmdline {
        Ok(line) => Cmdline::parse_bytes(&line),
        Err(e) => {
            let why = format!("cannot read the kernel command line {}: {e}", out.cmdline.display());
            return kept(&Kept::new(why), out);
        }
    };
    // Asked for only to see the plan, lethe.rollback=0 does not apply. A hibernation image
    // does: touching nothing includes not mounting the file system to read it (btrfs).
    if !out.dry_run && !cmdline.rollback {
        return kept(&Kept::new("lethe.rollback=0 is on the kernel command line"), out);
    }
    if let Some((dev, kind)) = crate::resume::pending_image(&cmdline) {
        return kept(
            &Kept::new(format!(
                "{} holds a {kind} hibernation image; the root is left as the hibernated system knows it",
                dev.display()
            )),
            out,
        );
    }
    let mode = if out.dry_run { Mode::DryRun } else { Mode::Apply };
    let t = Instant::now();
    match crate::run(&target, mode) {
        Ok(report) => {
            print_report(&target, &report, t.elapsed(), out);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("rollback: FAILED: {}: {e}", target.describe());
            EXIT_FAILED
        }
    }
}

fn zfs_options(a: ZfsArgs) -> crate::zfs::Options {
    crate::zfs::Options { dataset: a.dataset, snapshot: a.snapshot }
}

fn btrfs_options(a: BtrfsArgs) -> Result<crate::btrfs::Options, Kept> {
    let device = resolve_device(&a.device)?;
    let old_roots =
        a.old_roots.map(|path| OldRoots { path, keep_days: a.keep_days, keep_at_least: a.keep_at_least });
    Ok(crate::btrfs::Options { device, subvolume: a.subvolume, blank: a.blank, old_roots })
}

/// Why the config gives no target.
enum NoTarget {
    /// It is invalid; the errors were printed.
    Invalid,
    /// Its device did not appear: the old root stays.
    Kept(Kept),
}

/// The config's target.
fn from_config(path: &Path, root: &Path) -> Result<Option<Target>, NoTarget> {
    let doc = Document::load(path).map_err(|errors| {
        eprintln!("rollback: {}: invalid config:", path.display());
        for e in errors.0 {
            eprintln!("  {e}");
        }
        NoTarget::Invalid
    })?;
    let Some(method) = doc.rollback else { return Ok(None) };
    let device = match &method {
        config::Rollback::Btrfs(b) => resolve_device(&b.device).map_err(NoTarget::Kept)?,
        _ => PathBuf::new(),
    };
    Ok(Some(Target::from_config(&method, device, root.to_path_buf())))
}

/// A device node for `UUID=`/`LABEL=`/… through udev's /dev/disk/by-*
/// links (waiting a little for them), or the path itself.
fn resolve_device(dev: &DeviceRef) -> Result<PathBuf, Kept> {
    let s = dev.as_str();
    let path = [
        ("UUID=", "by-uuid"),
        ("LABEL=", "by-label"),
        ("PARTUUID=", "by-partuuid"),
        ("PARTLABEL=", "by-partlabel"),
    ]
    .iter()
    .find_map(|(tag, dir)| s.strip_prefix(tag).map(|v| Path::new("/dev/disk").join(dir).join(v)))
    .unwrap_or_else(|| PathBuf::from(s));
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() >= DEVICE_WAIT {
            return Err(Kept::new(format!(
                "no device {s} ({} did not appear in {DEVICE_WAIT:?})",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(path)
}

fn kept(k: &Kept, out: &Output) -> u8 {
    if out.json {
        // The root's state decides the exit status; a document that could not be written is said.
        let _ = json(&serde_json::json!({ "outcome": "kept", "detail": k }));
    }
    print_kept(k);
    EXIT_OK
}

fn print_kept(k: &Kept) {
    eprintln!("rollback: WARNING: {k}");
}

/// Prints `value` as --json asks; what fails is said on stderr, never an empty document.
fn json<T: serde::Serialize>(value: &T) -> Result<(), ()> {
    persist_bind::json::print(value, false).map_err(|e| eprintln!("rollback: --json: {e}"))
}

fn print_report(target: &Target, report: &Report, took: Duration, out: &Output) {
    if out.json {
        // The reset is done (or kept): that, not the document, decides the exit status.
        let _ = json(report);
        if let Some(k) = report.kept() {
            print_kept(k);
        }
        return;
    }
    if let Some(k) = report.kept() {
        print_kept(k);
        return;
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let planned = report.planned();
    let _ = writeln!(w, "rollback: {}{}", if planned { "plan for " } else { "" }, target.describe());
    for s in report.steps() {
        let _ = writeln!(w, "  {s}");
    }
    if !planned {
        let _ = writeln!(w, "rollback: done in {:.1} ms", took.as_secs_f64() * 1e3);
    }
}

fn diff(d: DiffArgs, config: &Path, out: &Output) -> u8 {
    let target = match d.what {
        Some(DiffWhat::Zfs(a)) => Target::Zfs(zfs_options(a)),
        Some(DiffWhat::Btrfs(a)) => match btrfs_options(a) {
            Ok(o) => Target::Btrfs(o),
            Err(k) => {
                eprintln!("rollback diff: {}", k.reason);
                return EXIT_FAILED;
            }
        },
        Some(DiffWhat::Tmpfs { root }) => {
            Target::Tmpfs(crate::tmpfs::Options { target: root, size: None, mode: None })
        }
        None => match from_config(config, Path::new("/")) {
            Ok(Some(t)) => t,
            Ok(None) => {
                eprintln!("rollback diff: {} has no `rollback` section", config.display());
                return EXIT_USAGE;
            }
            Err(NoTarget::Invalid) => return EXIT_USAGE,
            Err(NoTarget::Kept(k)) => {
                eprintln!("rollback diff: {}", k.reason);
                return EXIT_FAILED;
            }
        },
    };
    match crate::diff(&target) {
        Ok(changes) => {
            if out.json {
                return if json(&changes).is_ok() { EXIT_OK } else { EXIT_FAILED };
            } else {
                let stdout = std::io::stdout();
                let mut w = stdout.lock();
                let _ = writeln!(w, "# what the next rollback of the {} erases:", target.describe());
                for c in &changes {
                    let _ = writeln!(w, "{c}");
                }
                if changes.is_empty() {
                    let _ = writeln!(w, "# nothing: the root is as blank as it was");
                }
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("rollback diff: {}: {e}", target.describe());
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn explicit_forms_parse() {
        let c = Cli::try_parse_from([
            "rollback",
            "btrfs",
            "--device",
            "/dev/vda2",
            "--subvolume",
            "@root",
            "--blank",
            "@blank",
            "--old-roots",
            "@old",
            "--keep-days",
            "7",
            "--keep-at-least",
            "3",
            "--dry-run",
        ])
        .unwrap();
        assert!(c.out.dry_run);
        let Some(Command::Btrfs(b)) = c.command else { panic!() };
        assert_eq!((b.keep_days, b.keep_at_least, b.old_roots.unwrap().as_str()), (7, 3, "@old"));

        assert!(Cli::try_parse_from(["rollback", "zfs", "--dataset", "rpool"]).is_err());
        assert!(
            Cli::try_parse_from([
                "rollback",
                "btrfs",
                "--device",
                "/d",
                "--subvolume",
                "r",
                "--blank",
                "b",
                "--keep-days",
                "3"
            ])
            .is_err(),
            "--keep-days means nothing without --old-roots"
        );
        assert!(
            Cli::try_parse_from([
                "rollback",
                "btrfs",
                "--device",
                "/d",
                "--subvolume",
                "r",
                "--blank",
                "b",
                "--old-roots",
                "o",
                "--keep-at-least",
                "0"
            ])
            .is_err(),
            "the newest old root is always kept"
        );
        let c = Cli::try_parse_from([
            "rollback", "tmpfs", "--target", "/sysroot", "--size", "2G", "--mode", "0700",
        ])
        .unwrap();
        let Some(Command::Tmpfs(t)) = c.command else { panic!() };
        assert_eq!(t.mode.unwrap().bits(), 0o700);
        assert!(Cli::try_parse_from(["rollback", "diff", "tmpfs", "--root", "/"]).is_ok());
    }
}
