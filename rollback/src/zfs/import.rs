//! Pool import: `zpool import -N [-f] -d DEVNODES POOL`, retried while the pool's devices appear, skipped when the pool is already imported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Error;
use super::kernel::Kernel;
use crate::Mode;
use crate::config::{PoolName, ZfsPool};

/// Pause between attempts: devices show up within a few hundred milliseconds of each other.
const RETRY: Duration = Duration::from_millis(250);
/// Where `zpool` is looked for after PATH.
const ZPOOL_DIRS: [&str; 3] = ["/sbin", "/usr/sbin", "/bin"];

/// Imports `pool` (see [`super::import`]).
pub fn import(pool: &PoolName, opts: &ZfsPool, mode: Mode) -> Result<(), Error> {
    let zpool = find_zpool(std::env::var_os("PATH").as_deref())
        .ok_or_else(|| Error::NoZpool { pool: pool.to_string() })?;
    import_with(pool, opts, mode, &zpool, RETRY, &mut || is_imported(pool.as_str(), &zpool))
}

/// `zpool` in PATH, then in /sbin, /usr/sbin and /bin.
fn find_zpool(path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path_dirs = path.map(|p| std::env::split_paths(p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(ZPOOL_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("zpool"))
        .find(|p| p.is_file())
}

/// ZFS_IOC_POOL_STATS when /dev/zfs can be opened, else `zpool list -H POOL`.
fn is_imported(pool: &str, zpool: &Path) -> bool {
    match Kernel::open() {
        Ok(k) => k.pool_imported(pool).unwrap_or(false),
        Err(_) => Command::new(zpool)
            .args(["list", "-H", "-o", "name", pool])
            .output()
            .is_ok_and(|o| o.status.success()),
    }
}

/// The import loop, with the `zpool` binary, the pause and the "already imported" check given.
/// A dry run imports read-only (`-o readonly=on`): the rollback can then be planned, and
/// nothing is written to the pool.
fn import_with(
    pool: &PoolName,
    opts: &ZfsPool,
    mode: Mode,
    zpool: &Path,
    retry: Duration,
    imported: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(opts.timeout);
    let fail = |last: String| Error::Import {
        pool: pool.to_string(),
        dev_nodes: opts.dev_nodes.clone(),
        force: opts.force,
        last,
    };
    let mut attempt = 0u32;
    loop {
        if imported() {
            if attempt > 0 {
                log::info!("zfs: pool {pool} imported");
            } else {
                log::info!("zfs: pool {pool} is already imported");
            }
            return Ok(());
        }
        attempt += 1;
        let mut cmd = Command::new(zpool);
        cmd.args(["import", "-N"]);
        if mode == Mode::DryRun {
            cmd.args(["-o", "readonly=on"]);
        }
        if opts.force {
            cmd.arg("-f");
        }
        cmd.arg("-d").arg(&opts.dev_nodes).arg(pool.as_str());
        log::debug!("zfs: attempt {attempt}: {cmd:?}");
        let last = match cmd.output() {
            Ok(o) if o.status.success() => {
                log::info!("zfs: pool {pool} imported from {} (attempt {attempt})", opts.dev_nodes.display());
                return Ok(());
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr)
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map_or_else(|| format!("zpool exited with {}", o.status), str::to_owned),
            Err(e) => return Err(fail(format!("cannot run {}: {e}", zpool.display()))),
        };
        // Last used by another system: waiting does not change that, only force does.
        if !opts.force && last.contains("import -f") {
            return Err(fail(format!("{last} (set force for this pool to import it anyway)")));
        }
        if Instant::now() + retry > deadline {
            return Err(fail(format!("{last} (after {attempt} attempts in {} s)", opts.timeout)));
        }
        std::thread::sleep(retry);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fake `zpool` that logs its arguments and fails until its `fail` file runs out of lines.
    fn fake_zpool(dir: &Path, failures: usize, message: &str) -> PathBuf {
        let zpool = dir.join("zpool");
        fs::write(dir.join("msg"), format!("cannot import 'rpool': first line\n{message}\n\n")).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {log}\nn=$(wc -l < {log})\nif [ \"$n\" -le {failures} ]; then\n  \
             cat {msg} >&2\n  exit 1\nfi\nexit 0\n",
            log = dir.join("log").display(),
            msg = dir.join("msg").display(),
        );
        fs::write(&zpool, script).unwrap();
        fs::set_permissions(&zpool, fs::Permissions::from_mode(0o755)).unwrap();
        zpool
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lethe-zfs-import-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn opts(force: bool, timeout: u64) -> ZfsPool {
        ZfsPool { dev_nodes: PathBuf::from("/dev/disk/by-id"), force, timeout }
    }

    #[test]
    fn retries_until_the_devices_are_there() {
        let d = tmp("retry");
        let zpool = fake_zpool(&d, 2, "no such pool available");
        let pool = PoolName::parse("rpool").unwrap();
        import_with(&pool, &opts(false, 5), Mode::Apply, &zpool, Duration::from_millis(1), &mut || false)
            .unwrap();
        let log = fs::read_to_string(d.join("log")).unwrap();
        assert_eq!(log.lines().collect::<Vec<_>>(), ["import -N -d /dev/disk/by-id rpool"; 3]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn force_only_when_configured() {
        let d = tmp("force");
        let zpool = fake_zpool(&d, 0, "");
        let pool = PoolName::parse("rpool").unwrap();
        import_with(&pool, &opts(true, 0), Mode::Apply, &zpool, Duration::from_millis(1), &mut || false)
            .unwrap();
        assert_eq!(fs::read_to_string(d.join("log")).unwrap(), "import -N -f -d /dev/disk/by-id rpool\n");
        let _ = fs::remove_dir_all(&d);
    }

    /// A dry run plans against the pool, so it imports it, but read-only: nothing is written.
    #[test]
    fn a_dry_run_imports_read_only() {
        let d = tmp("dry");
        let zpool = fake_zpool(&d, 0, "");
        let pool = PoolName::parse("rpool").unwrap();
        import_with(&pool, &opts(true, 0), Mode::DryRun, &zpool, Duration::from_millis(1), &mut || false)
            .unwrap();
        assert_eq!(
            fs::read_to_string(d.join("log")).unwrap(),
            "import -N -o readonly=on -f -d /dev/disk/by-id rpool\n"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn an_imported_pool_is_left_alone() {
        let d = tmp("imported");
        let zpool = fake_zpool(&d, 0, "");
        let pool = PoolName::parse("rpool").unwrap();
        import_with(&pool, &opts(false, 0), Mode::Apply, &zpool, Duration::from_millis(1), &mut || true)
            .unwrap();
        assert!(!d.join("log").exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_error_names_pool_dir_and_last_line() {
        let d = tmp("timeout");
        let zpool = fake_zpool(&d, 1000, "no such pool available");
        let pool = PoolName::parse("rpool").unwrap();
        let e =
            import_with(&pool, &opts(false, 0), Mode::Apply, &zpool, Duration::from_millis(1), &mut || false)
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("rpool") && e.contains("/dev/disk/by-id") && e.contains("no such pool available"),
            "{e}"
        );
        assert!(!e.contains("first line"), "{e}");

        // Another system's pool: no point waiting for it.
        let d2 = tmp("other-host");
        let zpool =
            fake_zpool(&d2, 1000, "The pool can be imported, use 'zpool import -f' to import the pool.");
        let e =
            import_with(&pool, &opts(false, 30), Mode::Apply, &zpool, Duration::from_millis(1), &mut || {
                false
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("set force"), "{e}");
        assert_eq!(fs::read_to_string(d2.join("log")).unwrap().lines().count(), 1);
        let _ = fs::remove_dir_all(&d);
        let _ = fs::remove_dir_all(&d2);
    }

    #[test]
    fn zpool_is_found_in_path_first() {
        let d = tmp("path");
        let zpool = fake_zpool(&d, 0, "");
        assert_eq!(find_zpool(Some(d.as_os_str())), Some(zpool));
        let _ = fs::remove_dir_all(&d);
    }
}
