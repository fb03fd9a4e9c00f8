//! persist-bind at 10, 100 and 1000 entries, against "the impermanence way"
//! (one bash process per entry).
//!
//! Run as root: `cargo bench -p persist-bind --bench apply [-- --quick]`.
//! It prints figures and asserts no timings. Everything happens on tmpfs
//! inside a private mount namespace: the binary re-executes itself under
//! `unshare --mount --propagation private`, so no mount it makes is ever
//! seen by the host, and each run's tree is a fresh tmpfs detached (with
//! every bind mount beneath it) when the run ends.
//!
//! Without `--bench` (run by `cargo test --benches`) it runs in quick mode,
//! and skips with exit status 0 when not root.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use persist_bind::apply::{self, UtabTarget};
use persist_bind::beneath::Root;
use persist_bind::check::{self, State};
use persist_bind::owner::Ids;
use persist_bind::plan;
use persist_bind::{Entry, RootPath};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// Set in the re-executed child: the parent's mount namespace (a
/// `/proc/self/ns/mnt` link), which the child's must differ from.
const ENV_NS: &str = "LETHE_BENCH_NS";
/// Set in the re-executed child: the empty directory its tmpfs goes on.
const ENV_DIR: &str = "LETHE_BENCH_DIR";

const SIZES: [usize; 3] = [10, 100, 1000];
/// Independent subtrees the entries are spread over (shared parents).
const SUBTREES: usize = 10;
/// Owner given to every fourth directory entry (and its source).
const SVC_ID: u32 = 990;
const GOAL_ENTRIES: usize = 1000;
const GOAL_MS: f64 = 50.0;

/// The impermanence way, one process per entry: `bash -c IMPERMANENCE_WAY
/// bench KIND SOURCE TARGET LINK` with host paths for SOURCE and TARGET and
/// the post-switch_root source path for LINK. Written for this benchmark
/// after what impermanence's per-entry scripts do, not taken from them.
const IMPERMANENCE_WAY: &str = r#"
set -eu
kind=$1 src=$2 dst=$3 link=$4
case $kind in
dir)
    mkdir -p "$src" "$dst"
    chown --reference="$src" "$dst"
    chmod --reference="$src" "$dst"
    mount --bind "$src" "$dst"
    ;;
file)
    mkdir -p "${dst%/*}"
    if [[ -e $src ]]; then
        touch "$dst"
        mount --bind "$src" "$dst"
    else
        ln -s "$link" "$dst"
    fi
    ;;
esac
"#;

type Res<T> = Result<T, String>;

#[derive(Debug, Clone, Copy)]
struct Opts {
    /// `--bench` was given (run by `cargo bench`).
    bench: bool,
    quick: bool,
}

impl Opts {
    /// Runs of each persist-bind figure.
    fn runs(&self) -> usize {
        if self.quick { 3 } else { 10 }
    }
    /// Runs of the impermanence way (slow: one process per entry).
    fn shell_runs(&self) -> usize {
        if self.quick { 1 } else { 5 }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut opts = Opts { bench: false, quick: false };
    for a in &args {
        match a.to_str() {
            Some("--bench") => opts.bench = true,
            Some("--quick") => opts.quick = true,
            Some("-h" | "--help") => {
                println!("usage: cargo bench -p persist-bind --bench apply [-- --quick]  (as root)");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("apply bench: unknown argument {a:?} (only --quick is understood)");
                return ExitCode::from(2);
            }
        }
    }
    // `cargo test --benches` runs this without `--bench`: a smoke test.
    opts.quick |= !opts.bench;

    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "apply bench: must run as root (it bind-mounts on tmpfs in a private mount namespace); \
             try: sudo -E cargo bench -p persist-bind --bench apply"
        );
        if !opts.bench {
            eprintln!("apply bench: not run as a benchmark (no --bench): skipped");
            return ExitCode::SUCCESS;
        }
        return ExitCode::FAILURE;
    }

    let result = match std::env::var_os(ENV_NS) {
        None => reexec(&args),
        Some(parent_ns) => inside(&parent_ns, opts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apply bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs this binary again under `unshare --mount --propagation private`,
/// on an empty directory that is removed afterwards.
fn reexec(args: &[OsString]) -> Res<ExitCode> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let ns = fs::read_link("/proc/self/ns/mnt").map_err(|e| format!("/proc/self/ns/mnt: {e}"))?;
    let dir = std::env::temp_dir().join(format!("lethe-bench.{}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(args)
        .env(ENV_NS, ns)
        .env(ENV_DIR, &dir)
        .status();
    // The child's tmpfs died with its namespace: the directory is empty.
    let _ = fs::remove_dir(&dir);
    let status = status.map_err(|e| format!("cannot run unshare(1) (util-linux): {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => {
            eprintln!("apply bench: the namespaced run was killed ({status})");
            ExitCode::FAILURE
        }
    })
}

/// The benchmark proper, in the private mount namespace.
fn inside(parent_ns: &std::ffi::OsStr, opts: Opts) -> Res<ExitCode> {
    let ns = fs::read_link("/proc/self/ns/mnt").map_err(|e| format!("/proc/self/ns/mnt: {e}"))?;
    if ns.as_os_str() == parent_ns {
        return Err(format!("not in a private mount namespace ({ENV_NS} set by hand?): refusing to mount"));
    }
    let base = PathBuf::from(std::env::var_os(ENV_DIR).ok_or(format!("{ENV_DIR} is not set"))?);
    // unshare(1) did this already; mounts must never propagate to the host.
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(|e| format!("making / private: {e}"))?;
    mount_tmpfs(&base)?;
    // Mount options persist-bind or mount(8) record go to our tmpfs, never
    // to the host's /run/mount/utab (mount(8) is told with LIBMOUNT_UTAB).
    let utab = base.join("utab");
    let bench = Bench { base, utab, opts };

    println!("persist-bind apply benchmark ({} mode)", if opts.quick { "quick" } else { "full" });
    if cfg!(debug_assertions) {
        println!("  note: an unoptimized build (cargo test?): the figures say little; use cargo bench");
    }
    println!(
        "  entries: half directories (every source persisted, 1 in 4 with its own owner and mode), \
         half files (half persisted -> bind mount, half missing -> symlink), over {SUBTREES} subtrees"
    );
    println!("  each tree: a fresh tmpfs with the sources under /persist, in a private mount namespace");
    println!(
        "  persist-bind: {} runs per figure; apply = load config + ids + plan + apply on a fresh tree; \
         second apply = the same again on the applied tree (nothing to do)",
        opts.runs()
    );
    println!(
        "  impermanence way: one `bash -c` per entry (mkdir/chown/chmod --reference/mount --bind, \
         touch+mount --bind or ln -s), {} run(s), fresh tree each",
        opts.shell_runs()
    );
    println!();
    println!("{:>6}  {:<40} {:>10} {:>10} {:>10}", "N", "measure", "median ms", "min ms", "max ms");

    let mut results = Vec::new();
    for n in SIZES {
        let r = bench.size(n)?;
        for (name, s) in [
            ("dry-run (load + ids + plan)", &r.dry),
            ("apply (load + ids + plan + apply)", &r.apply),
            ("second apply (nothing to do)", &r.again),
            ("impermanence way (bash per entry)", &r.shell),
        ] {
            println!("{n:>6}  {name:<40} {:>10.3} {:>10.3} {:>10.3}", s.median(), s.min(), s.max());
        }
        results.push((n, r));
    }

    println!();
    for (n, r) in &results {
        let apply = r.apply.median();
        println!(
            "N={n}: apply {apply:.2} ms ({:.1} us/entry), second apply {:.2} ms, dry-run {:.2} ms; \
             impermanence way {:.1} ms = {:.0}x persist-bind apply",
            apply * 1e3 / *n as f64,
            r.again.median(),
            r.dry.median(),
            r.shell.median(),
            r.shell.median() / apply,
        );
    }
    if let Some((_, r)) = results.iter().find(|(n, _)| *n == GOAL_ENTRIES) {
        let ms = r.apply.median();
        let verdict = if ms < GOAL_MS { "met" } else { "missed" };
        println!("goal: {GOAL_ENTRIES} entries applied in under {GOAL_MS:.0} ms: {verdict} ({ms:.2} ms)");
    }
    Ok(ExitCode::SUCCESS)
}

fn mount_tmpfs(dir: &Path) -> Res<()> {
    rustix::mount::mount("lethe-bench", dir, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"mode=0755")
        .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))
}

/// Detaches the tmpfs at `dir` with every mount beneath it, then removes `dir`.
fn unmount_tree(dir: &Path) -> Res<()> {
    rustix::mount::unmount(dir, UnmountFlags::DETACH)
        .map_err(|e| format!("unmounting {}: {e}", dir.display()))?;
    fs::remove_dir(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

/// Timings in milliseconds.
#[derive(Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
        self.0.sort_by(f64::total_cmp);
    }
    fn median(&self) -> f64 {
        let v = &self.0;
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }
    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

struct SizeResult {
    dry: Samples,
    apply: Samples,
    again: Samples,
    shell: Samples,
}

struct Bench {
    /// The namespace's own tmpfs: configs and run directories.
    base: PathBuf,
    /// Where mount options would be recorded (ours and mount(8)'s).
    utab: PathBuf,
    opts: Opts,
}

/// What one entry is, for building its tree and the shell's arguments.
struct Item {
    dir: bool,
    target: String,
    /// Whether its source exists under /persist before the run.
    persisted: bool,
    /// Owner and mode of a persisted directory source.
    owner: Option<(u32, u32, u32)>,
}

fn items(n: usize) -> Vec<Item> {
    let dirs = n / 2;
    let mut v = Vec::with_capacity(n);
    for i in 0..dirs {
        v.push(Item {
            dir: true,
            target: format!("/var/lib/svc{}/d{i:04}", i % SUBTREES),
            persisted: true,
            owner: Some(if i % 4 == 0 { (SVC_ID, SVC_ID, 0o750) } else { (0, 0, 0o755) }),
        });
    }
    for i in 0..n - dirs {
        v.push(Item {
            dir: false,
            target: format!("/etc/conf{}/f{i:04}", i % SUBTREES),
            persisted: i % 2 == 0,
            owner: None,
        });
    }
    v
}

fn config(items: &[Item]) -> serde_json::Value {
    let dirs: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.dir)
        .map(|(i, it)| {
            if i % 4 == 0 {
                serde_json::json!({ "directory": it.target, "user": "svc", "group": "svc", "mode": "0750" })
            } else {
                serde_json::json!(it.target)
            }
        })
        .collect();
    let files: Vec<&str> = items.iter().filter(|it| !it.dir).map(|it| it.target.as_str()).collect();
    serde_json::json!({
        "version": 1,
        "persistence": { "/persist": { "directories": dirs, "files": files } },
        "uids": { "svc": SVC_ID },
        "gids": { "svc": SVC_ID },
    })
}

fn io<T>(what: &Path, r: std::io::Result<T>) -> Res<T> {
    r.map_err(|e| format!("{}: {e}", what.display()))
}

impl Bench {
    fn size(&self, n: usize) -> Res<SizeResult> {
        let items = items(n);
        let config_path = self.base.join(format!("config-{n}.json"));
        let json = serde_json::to_vec_pretty(&config(&items)).map_err(|e| e.to_string())?;
        io(&config_path, fs::write(&config_path, json))?;
        let (_, entries) = persist_bind::cli::load(&config_path)?;
        if entries.len() != n {
            return Err(format!("the config for {n} gave {} entries", entries.len()));
        }
        let utab = UtabTarget { utab: self.utab.clone(), mountinfo: "/proc/self/mountinfo".into() };
        let mut r = SizeResult {
            dry: Samples::default(),
            apply: Samples::default(),
            again: Samples::default(),
            shell: Samples::default(),
        };

        // Dry runs change nothing: one tree serves them all.
        let run = self.tree(n, "dry", &items)?;
        for _ in 0..self.opts.runs() {
            let t = Instant::now();
            let (p, _) = dry_run(&config_path, &run.join("root"))?;
            r.dry.push(t.elapsed());
            expect_steps(&p, n)?;
        }
        unmount_tree(&run)?;

        for k in 0..self.opts.runs() {
            let run = self.tree(n, &format!("apply{k}"), &items)?;
            let root_dir = run.join("root");
            let t = Instant::now();
            let changed = apply_once(&config_path, &root_dir, &utab)?;
            r.apply.push(t.elapsed());
            if changed != n {
                return Err(format!("N={n}: first apply changed {changed} entries, expected {n}"));
            }
            let t = Instant::now();
            let changed = apply_once(&config_path, &root_dir, &utab)?;
            r.again.push(t.elapsed());
            if changed != 0 {
                return Err(format!("N={n}: second apply changed {changed} entries, expected none"));
            }
            verify(&entries, &root_dir, "persist-bind")?;
            unmount_tree(&run)?;
        }

        for k in 0..self.opts.shell_runs() {
            let run = self.tree(n, &format!("shell{k}"), &items)?;
            let root_dir = run.join("root");
            let t = Instant::now();
            self.shell_way(&items, &root_dir)?;
            r.shell.push(t.elapsed());
            verify(&entries, &root_dir, "the impermanence way")?;
            unmount_tree(&run)?;
        }
        Ok(r)
    }

    /// A fresh tmpfs at `base/<n>-<name>` holding `root/` with the
    /// persisted sources under `root/persist`; the ephemeral side is empty.
    fn tree(&self, n: usize, name: &str, items: &[Item]) -> Res<PathBuf> {
        let run = self.base.join(format!("{n}-{name}"));
        io(&run, fs::create_dir(&run))?;
        mount_tmpfs(&run)?;
        let persist = run.join("root/persist");
        io(&persist, fs::create_dir_all(&persist))?;
        for it in items.iter().filter(|it| it.persisted) {
            let src = PathBuf::from(format!("{}{}", persist.display(), it.target));
            if it.dir {
                io(&src, fs::create_dir_all(&src))?;
                let data = src.join("state");
                io(&data, fs::write(&data, b"state\n"))?;
                if let Some((uid, gid, mode)) = it.owner {
                    io(&src, chown(&src, Some(uid), Some(gid)))?;
                    io(&src, fs::set_permissions(&src, fs::Permissions::from_mode(mode)))?;
                }
            } else {
                let parent = src.parent().expect("a file source has a parent");
                io(parent, fs::create_dir_all(parent))?;
                io(&src, fs::write(&src, b"persisted\n"))?;
            }
        }
        Ok(run)
    }

    /// One `bash -c` per entry, in config order, as impermanence's
    /// activation scripts run them.
    fn shell_way(&self, items: &[Item], root_dir: &Path) -> Res<()> {
        let root = root_dir.display().to_string();
        for it in items {
            let status = Command::new("bash")
                .arg("-c")
                .arg(IMPERMANENCE_WAY)
                .arg("bench")
                .arg(if it.dir { "dir" } else { "file" })
                .arg(format!("{root}/persist{}", it.target))
                .arg(format!("{root}{}", it.target))
                .arg(format!("/persist{}", it.target))
                .env("LIBMOUNT_UTAB", &self.utab)
                .status()
                .map_err(|e| format!("cannot run bash: {e}"))?;
            if !status.success() {
                return Err(format!("the impermanence way failed on {} ({status})", it.target));
            }
        }
        Ok(())
    }
}

fn open(root_dir: &Path) -> Res<Root> {
    Root::open(root_dir).map_err(|e| format!("opening {}: {e}", root_dir.display()))
}

/// What `persist-bind --dry-run` does: load, resolve owners, plan.
fn dry_run(config: &Path, root_dir: &Path) -> Res<(plan::Plan, Root)> {
    let (doc, entries) = persist_bind::cli::load(config)?;
    let root = open(root_dir)?;
    let ids = Ids::load(&doc, &root).map_err(|e| e.to_string())?;
    Ok((plan::plan(&entries, &ids, &root), root))
}

/// What `persist-bind` does at boot; returns how many entries changed.
fn apply_once(config: &Path, root_dir: &Path, utab: &UtabTarget) -> Res<usize> {
    let (p, root) = dry_run(config, root_dir)?;
    let report = apply::apply(&p, &root, utab);
    if report.failed() > 0 {
        let first = report.entries.iter().find(|e| matches!(e.status, apply::Status::Failed { .. }));
        return Err(format!("{} entries failed to apply, first: {first:?}", report.failed()));
    }
    Ok(report.changed())
}

fn expect_steps(p: &plan::Plan, n: usize) -> Res<()> {
    if p.entries.len() != n || p.failed() != 0 || p.is_noop() {
        return Err(format!(
            "dry-run on a fresh tree: {} entries, {} failed, nothing to do: {}",
            p.entries.len(),
            p.failed(),
            p.is_noop()
        ));
    }
    Ok(())
}

/// Every entry must be mounted from its source or linked to it.
fn verify(entries: &[Entry], root_dir: &Path, who: &str) -> Res<()> {
    let root = open(root_dir)?;
    let states = check::check(entries, &root);
    let bad: Vec<(&RootPath, &str)> = states
        .iter()
        .filter_map(|c| match &c.state {
            State::Differs(why) => Some((&c.target, why.as_str())),
            _ => None,
        })
        .collect();
    if let Some((target, why)) = bad.first() {
        return Err(format!(
            "after {who}: {} of {} entries not in place; {target}: {why}",
            bad.len(),
            entries.len()
        ));
    }
    Ok(())
}
