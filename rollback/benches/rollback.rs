//! BTRFS rollback time for a root of 100,000 files against `rm -rf` of the same tree, on a loop device; `-- --quick` for CI.
//!
//! Each run writes a fresh tree (not timed), unmounts so that no cache of it
//! is left (the loop device does direct I/O, so the host's page cache of the
//! image does not help either), then times one of:
//! - the rollback deleting the old root (mount of the top level included, as at boot),
//! - the rollback keeping the old root in oldRoots (a rename),
//! - `rm -rf` of the tree, and `rm -rf` followed by a sync,
//!
//! and, after the deleting rollback, how long the kernel's cleaner works on in
//! the background until the old root's space is free (`btrfs subvolume sync`).
//! Needs root; elsewhere it says why and does nothing (fails under CI=true).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Fs, run, tool};
use rollback::btrfs::{self, Options};
use rollback::config::{OldRoots, SubvolPath};
use rollback::{Mode, Outcome};

struct Config {
    files: usize,
    per_dir: usize,
    runs: usize,
    image_mib: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        Config { files: 10_000, per_dir: 40, runs: 3, image_mib: 1024 }
    } else {
        Config { files: 100_000, per_dir: 40, runs: 5, image_mib: 4096 }
    };
    let Some(mut fs) = Fs::create("bench", cfg.image_mib, true) else { return };
    fs.subvolume_create("root");
    std::fs::create_dir(fs.path("root/etc")).unwrap();
    fs.snapshot_ro("root", "blank");

    let p = |s: &str| SubvolPath::parse(s).unwrap();
    let delete =
        Options { device: fs.lo.dev.clone(), subvolume: p("root"), blank: p("blank"), old_roots: None };
    let keep = Options {
        old_roots: Some(OldRoots { path: p("old_roots"), keep_days: 3650, keep_at_least: 1 }),
        ..delete.clone()
    };

    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        ("rollback, old root deleted", vec![]),
        ("  then the cleaner, in the background", vec![]),
        ("rollback, old root kept (oldRoots)", vec![]),
        ("rm -rf", vec![]),
        ("rm -rf, then sync", vec![]),
    ];
    let started = Instant::now();
    for _ in 0..cfg.runs {
        // The rollback deleting the old root.
        populate(&fs.path("root/data"), &cfg);
        fs.unmount();
        let t = Instant::now();
        reset(&delete);
        rows[0].1.push(t.elapsed());
        fs.mount();
        cleaned(&fs);
        rows[1].1.push(t.elapsed());

        // The rollback moving the old root into old_roots.
        populate(&fs.path("root/data"), &cfg);
        fs.unmount();
        let t = Instant::now();
        reset(&keep);
        rows[2].1.push(t.elapsed());
        fs.mount();
        for name in fs.names("old_roots") {
            run(tool("btrfs").args(["-q", "subvolume", "delete"]).arg(fs.path(&format!("old_roots/{name}"))));
        }
        cleaned(&fs);

        // rm -rf of the same tree, in a plain directory on the same file system.
        for row in [3, 4] {
            populate(&fs.path("tree"), &cfg);
            fs.unmount();
            fs.mount();
            let t = Instant::now();
            run(tool("rm").arg("-rf").arg(fs.path("tree")));
            if row == 4 {
                rustix::fs::syncfs(std::fs::File::open(&fs.top).unwrap()).unwrap();
            }
            rows[row].1.push(t.elapsed());
        }
    }

    println!();
    println!(
        "BTRFS rollback: a root of {} files in {} directories; btrfs on a loop device (direct I/O), \
         cold cache, {} runs each ({:.0} s in all)",
        cfg.files,
        dirs(&cfg).len(),
        cfg.runs,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| {:<38} | {:>10} | {:>10} | {:>10} |", "", "median", "min", "max");
    println!("|{:-<40}|{:->12}|{:->12}|{:->12}|", "", "", "", "");
    for (name, mut times) in rows {
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "| {name:<38} | {:>10} | {:>10} | {:>10} |",
            ms(median),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    println!();
    println!(
        "The cleaner row counts from the start of the rollback until the old root's space is free; \
         the boot does not wait for it (it was woken at once here; left alone it starts at the next \
         periodic commit)."
    );
}

/// Waits until the kernel has removed every deleted subvolume. `btrfs filesystem
/// sync` wakes the cleaner (it would otherwise wait for the next periodic commit,
/// 30 s by default); `btrfs subvolume list -d` lists what it has not finished.
fn cleaned(fs: &Fs) {
    run(tool("btrfs").args(["filesystem", "sync"]).arg(&fs.top));
    while !run(tool("btrfs").args(["subvolume", "list", "-d"]).arg(&fs.top)).trim().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn reset(o: &Options) {
    match btrfs::rollback(o, Mode::Apply) {
        Ok(Outcome::Reset(_)) => {}
        other => panic!("rollback: {other:?}"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Two levels of directories, `per_dir` files in each leaf.
fn dirs(cfg: &Config) -> Vec<String> {
    let leaves = cfg.files.div_ceil(cfg.per_dir);
    let fan = (leaves as f64).sqrt().ceil() as usize;
    (0..leaves).map(|i| format!("d{:03}/e{:03}", i / fan, i % fan)).collect()
}

/// Writes the tree: small files (most inline in btrfs metadata) and some of a few KiB, then syncs.
fn populate(base: &Path, cfg: &Config) {
    let mut n = 0;
    let blob = vec![b'x'; 8192];
    for d in dirs(cfg) {
        let dir = base.join(d);
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..cfg.per_dir {
            if n == cfg.files {
                break;
            }
            let size = (n * 37) % 4096 + if n % 10 == 0 { 4096 } else { 0 };
            std::fs::write(dir.join(format!("f{n}")), &blob[..size]).unwrap();
            n += 1;
        }
    }
    rustix::fs::syncfs(std::fs::File::open(base).unwrap()).unwrap();
}
