//! The rollback benchmark's helper in the busybox guest (static, like the test stage 2): writes the benchmark's tree and times commands on the guest's monotonic clock.
//!
//! - `lethe-guest-bench tree DIR FILES`: FILES files in two levels of
//!   directories under DIR, 40 to a directory, named and sized as the BTRFS
//!   benchmark's (rollback/benches/rollback.rs), then a syncfs.
//! - `lethe-guest-bench time [--sync] -- CMD ARGS...`: runs CMD (its output
//!   goes to stderr) and prints how long it took in nanoseconds; with
//!   `--sync`, also the time until a sync() after it returned. Exits with
//!   CMD's status.
//! - `lethe-guest-bench resolution`: the monotonic clock's resolution
//!   (clock_getres) in nanoseconds.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use rustix::time::{ClockId, clock_getres};

/// Files per leaf directory, as in the BTRFS benchmark.
const PER_DIR: usize = 40;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["tree", dir, files] => match files.parse() {
            Ok(n) => tree(Path::new(dir), n).map(|()| ExitCode::SUCCESS),
            Err(_) => Err(format!("FILES {files:?} is not a number")),
        },
        ["time", "--sync", "--", cmd @ ..] if !cmd.is_empty() => time(cmd, true),
        ["time", "--", cmd @ ..] if !cmd.is_empty() => time(cmd, false),
        ["resolution"] => {
            let r = clock_getres(ClockId::Monotonic);
            println!("{}", r.tv_sec as i128 * 1_000_000_000 + r.tv_nsec as i128);
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            Err("usage: lethe-guest-bench tree DIR FILES | time [--sync] -- CMD ARGS... | resolution".into())
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("lethe-guest-bench: {e}");
        ExitCode::from(2)
    })
}

/// Runs `cmd`, its stdout sent to stderr; prints the elapsed nanoseconds
/// (and, with `sync`, those until a sync() after it returned).
fn time(cmd: &[&str], sync: bool) -> Result<ExitCode, String> {
    let mut c = Command::new(cmd[0]);
    c.args(&cmd[1..]).stdin(Stdio::null());
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate stderr: {e}"))?;
    c.stdout(stderr);
    let start = Instant::now();
    let status = c.status().map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
    let ran = start.elapsed();
    let synced = sync.then(|| {
        rustix::fs::sync();
        start.elapsed()
    });
    match synced {
        Some(s) => println!("{} {}", ran.as_nanos(), s.as_nanos()),
        None => println!("{}", ran.as_nanos()),
    }
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(n) => ExitCode::from(u8::try_from(n).unwrap_or(1)),
        None => ExitCode::from(128),
    })
}

/// The leaf directories of a tree of `files` files: two levels, `PER_DIR`
/// files in each leaf (rollback/benches/rollback.rs's layout).
fn dirs(files: usize) -> Vec<String> {
    let leaves = files.div_ceil(PER_DIR);
    let fan = (leaves as f64).sqrt().ceil() as usize;
    (0..leaves).map(|i| format!("d{:03}/e{:03}", i / fan, i % fan)).collect()
}

/// Writes the tree: files of 0 to 4 KiB, every tenth 4 KiB larger, then
/// a syncfs. One thread per CPU, each writing every n-th directory.
fn tree(base: &Path, files: usize) -> Result<(), String> {
    let dirs = dirs(files);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let dirs = &dirs;
                s.spawn(move || {
                    dirs.iter().enumerate().skip(t).step_by(threads).try_for_each(|(i, d)| {
                        let first = i * PER_DIR;
                        write_dir(&base.join(d), first..files.min(first + PER_DIR))
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err("a writer panicked".into())))
    })?;
    let d = std::fs::File::open(base).map_err(|e| format!("cannot open {}: {e}", base.display()))?;
    rustix::fs::syncfs(&d).map_err(|e| format!("syncfs {}: {e}", base.display()))
}

/// The files numbered `files` in `dir`, file n of (n * 37) % 4096 bytes,
/// 4 KiB more for every tenth.
fn write_dir(dir: &Path, files: std::ops::Range<usize>) -> Result<(), String> {
    const BLOB: [u8; 8192] = [b'x'; 8192];
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for n in files {
        let size = (n * 37) % 4096 + if n % 10 == 0 { 4096 } else { 0 };
        let f = dir.join(format!("f{n}"));
        std::fs::write(&f, &BLOB[..size]).map_err(|e| format!("cannot write {}: {e}", f.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_the_btrfs_benchmarks_layout() {
        let d = dirs(100_000);
        assert_eq!(d.len(), 2500);
        assert_eq!((d[0].as_str(), d[2499].as_str()), ("d000/e000", "d049/e049"));
        assert_eq!(dirs(10_000).len(), 250);
    }

    #[test]
    fn the_tree_holds_every_file_once() {
        let base = std::env::temp_dir().join(format!("lethe-guest-bench-{}", std::process::id()));
        tree(&base, 85).unwrap();
        let mut names = Vec::new();
        for d in dirs(85) {
            for e in std::fs::read_dir(base.join(&d)).unwrap() {
                let e = e.unwrap();
                let n: usize = e.file_name().to_str().unwrap()[1..].parse().unwrap();
                let size = (n * 37) % 4096 + if n.is_multiple_of(10) { 4096 } else { 0 };
                assert_eq!(e.metadata().unwrap().len() as usize, size);
                names.push(n);
            }
        }
        std::fs::remove_dir_all(&base).unwrap();
        names.sort();
        assert_eq!(names, (0..85).collect::<Vec<_>>());
    }
}
