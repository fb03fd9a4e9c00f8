//! The ZFS rollback benchmark (`bench-rollback`): one busybox guest times `initrd-tool rollback zfs` of a root holding 100,000 files against `rm -rf` of the same tree, on the guest's own clock.
//!
//! The host kernel has no ZFS, so everything runs in the guest
//! (guest/zfs-bench-rollback.sh): a fresh pool on a virtio disk, rpool/local/root
//! with @blank, then per run the tree written (the BTRFS benchmark's layout,
//! rollback/benches/rollback.rs), the pool exported and imported again (a cold
//! ARC, as at boot) and one timed step. The static helper lethe-guest-bench
//! writes the trees and times the steps with CLOCK_MONOTONIC.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::guest::{self, GuestResults, GuestSpec};
use crate::harness::Harness;
use crate::qemu::{self, BootSpec};
use crate::report::Stats;
use crate::zfs;

const SCRIPT: &str = include_str!("../guest/zfs-bench-rollback.sh");
const SCRIPT_NAME: &str = "zfs-bench-rollback.sh";
/// GNU rm, as the BTRFS benchmark uses.
const RM: &str = "/usr/bin/rm";
/// The guest: two vCPUs as on the BTRFS benchmark's machine, and room for the ARC.
const CPUS: u32 = 2;
const MEMORY_MIB: u32 = 1024;
/// The pool's disk (sparse): room for the tree at ashift=12 several times over.
const POOL_MIB: u64 = 4096;
/// Files per directory (the helper's and the BTRFS benchmark's layout).
const PER_DIR: usize = 40;

/// What the guest checks, by the names it prints.
const CHECKS: &[(&str, &str)] = &[
    ("setup", "the pool with rpool/local/root@blank is made"),
    ("rollback-resets-the-root", "every rollback leaves @blank's root, the tree gone"),
    ("rollback-unchanged", "the rollback of an unchanged root succeeds"),
    ("rm-empties-the-tree", "every rm -rf removes the tree"),
];

/// How much to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub files: usize,
    pub runs: usize,
}

impl Options {
    /// 100,000 files in 2,500 directories, 5 runs.
    pub const FULL: Options = Options { files: 100_000, runs: 5 };
    /// For CI: 10,000 files in 250 directories, 2 runs.
    pub const QUICK: Options = Options { files: 10_000, runs: 2 };

    /// The leaf directories of the tree.
    pub fn dirs(self) -> usize {
        self.files.div_ceil(PER_DIR)
    }

    /// The longest the guest may take: the harness's per-boot timeout plus
    /// 1 s per 100 files and run, about three times what TCG needs (each run
    /// writes two trees and removes one).
    fn timeout(self, base: Duration) -> Duration {
        base + Duration::from_secs((self.files * self.runs / 100) as u64)
    }
}

/// One row of the result: a step's durations in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: &'static str,
    pub ms: Option<Stats>,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackBench {
    pub files: usize,
    pub dirs: usize,
    pub runs: usize,
    /// QEMU's accelerator, vCPUs and memory as given to the guest.
    pub accel: String,
    pub cpus: u32,
    pub memory_mib: u32,
    /// What the guest saw: its kernel, the ZFS module's version, its clock.
    pub guest_cpus: Option<u32>,
    pub guest_mem_total_kib: Option<u64>,
    pub kernel: Option<String>,
    pub zfs_version: Option<String>,
    pub clocksource: Option<String>,
    pub clock_resolution_ns: Option<u64>,
    /// What the tree takes in the dataset (ZFS's `written` since @blank).
    pub tree_bytes: Option<u64>,
    /// The pool's `freeing` read after each rollback of the tree returned:
    /// what ZFS had yet to free in the background.
    pub freeing_after_rollback_bytes: Vec<u64>,
    pub rows: Vec<Row>,
    /// Host wall time of the whole guest boot.
    pub host_wall_s: f64,
}

/// Boots the guest once; returns the figures and the failed checks.
pub fn run(h: &Harness, o: Options, echo: Option<&str>) -> Result<(RollbackBench, Vec<String>)> {
    zfs::require_modules(h)?;
    let dir = h.dir("bench-rollback")?;
    let script = format!("FILES={}\nRUNS={}\n{SCRIPT}", o.files, o.runs);
    let initrd = dir.join("bench-rollback.img");
    guest::build(
        h,
        &dir,
        &GuestSpec {
            scripts: vec![(SCRIPT_NAME, &script)],
            programs: vec![Path::new(zfs::ZPOOL), Path::new(zfs::ZFS), Path::new(RM)],
            files: vec![
                zfs::hostid_file(&dir)?,
                (h.bin.guest_bench.clone(), "/bin/lethe-guest-bench".into()),
            ],
            modules: vec!["virtio_pci", "virtio_blk", "zfs"],
        },
        &initrd,
    )?;
    let disk = dir.join("pool.img");
    zfs::pool_disk(&disk, POOL_MIB)?;
    let timeout = o.timeout(h.timeout);
    eprintln!(
        "bench-rollback: {} files, {} runs: one guest ({}, {CPUS} vCPUs, {MEMORY_MIB} MiB), {} s at most",
        o.files,
        o.runs,
        h.accel,
        timeout.as_secs()
    );
    if echo.is_some() {
        println!("\n---- guest: serial console ----");
    }
    let started = Instant::now();
    let boot = qemu::boot(&BootSpec {
        kernel: h.kernel.image.clone(),
        initrd,
        append: guest::cmdline(SCRIPT_NAME),
        disks: vec![disk.clone()],
        accel: h.accel,
        cpus: CPUS,
        memory_mib: MEMORY_MIB,
        timeout,
        echo: echo.map(str::to_owned),
        ssh_port: None,
        memory_file: None,
    })?;
    let host_wall_s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&disk);
    let mut findings = Vec::new();
    let r = guest::check(&mut findings, "guest", &boot, CHECKS);
    if !findings.is_empty() && echo.is_none() {
        // The console says why; the last lines are enough.
        let tail = &boot.console[boot.console.len().saturating_sub(40)..];
        findings.push(format!("the console's last lines:\n    {}", tail.join("\n    ")));
    }
    let bench = RollbackBench::from_results(&r, o, h.accel.to_string(), host_wall_s);
    for row in &bench.rows {
        if row.ms.as_ref().is_none_or(|s| s.samples.len() != o.runs) {
            findings.push(format!("{}: {} of {} runs measured", row.name.trim(), row.samples(), o.runs));
        }
    }
    Ok((bench, findings))
}

impl Row {
    fn samples(&self) -> usize {
        self.ms.as_ref().map_or(0, |s| s.samples.len())
    }
}

impl RollbackBench {
    fn from_results(r: &GuestResults, o: Options, accel: String, host_wall_s: f64) -> RollbackBench {
        let v = |name: &str| r.values.get(name).map(|s| s.trim().to_owned());
        let num = |name: &str| v(name).and_then(|s| s.parse::<u64>().ok());
        // The runs' values NAME.1 ... NAME.runs, each as numbers.
        let series = |name: &str, pick: &dyn Fn(&[f64]) -> Option<f64>| {
            let samples: Vec<f64> = (1..=o.runs)
                .filter_map(|i| {
                    let text = v(&format!("{name}.{i}"))?;
                    let nums: Vec<f64> = text.split_whitespace().filter_map(|n| n.parse().ok()).collect();
                    pick(&nums).map(|ns| ns / 1e6)
                })
                .collect();
            Stats::of(&samples)
        };
        let first = |n: &[f64]| n.first().copied();
        let second = |n: &[f64]| n.get(1).copied();
        RollbackBench {
            files: o.files,
            dirs: o.dirs(),
            runs: o.runs,
            accel,
            cpus: CPUS,
            memory_mib: MEMORY_MIB,
            guest_cpus: num("cpus").and_then(|n| u32::try_from(n).ok()),
            guest_mem_total_kib: num("mem-kib"),
            kernel: v("kernel"),
            zfs_version: v("zfs-version"),
            clocksource: v("clocksource"),
            clock_resolution_ns: num("clock-resolution-ns"),
            tree_bytes: num("written-bytes"),
            freeing_after_rollback_bytes: (1..=o.runs).filter_map(|i| num(&format!("freeing.{i}"))).collect(),
            rows: vec![
                Row { name: "rollback (root unmounted, pool just imported)", ms: series("rollback", &first) },
                Row { name: "rollback, no change since @blank", ms: series("unchanged", &first) },
                Row { name: "rm -rf", ms: series("rm", &first) },
                Row { name: "rm -rf, then sync", ms: series("rm", &second) },
            ],
            host_wall_s,
        }
    }

    /// The figures as a Markdown table, with what they were measured on.
    pub fn table(&self) -> String {
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "?".into());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ZFS rollback: a root of {} files in {} directories{}; cold ARC (the pool exported and \
             imported before each timed step), {} runs each ({:.0} s host wall time in all)",
            self.files,
            self.dirs,
            self.tree_bytes.map_or(String::new(), |b| format!(" ({:.1} MiB written)", b as f64 / 1048576.0)),
            self.runs,
            self.host_wall_s
        );
        let _ = writeln!(
            out,
            "guest: QEMU {}, {} vCPUs, {} MiB (MemTotal {} KiB), kernel {}, ZFS {}; pool on a virtio disk \
             (raw sparse image), ashift=12, compression=off, atime=off",
            self.accel,
            self.guest_cpus.unwrap_or(self.cpus),
            self.memory_mib,
            self.guest_mem_total_kib.map_or("?".into(), |k| k.to_string()),
            opt(&self.kernel),
            opt(&self.zfs_version),
        );
        let _ = writeln!(
            out,
            "clock: the guest's CLOCK_MONOTONIC (clocksource {}, resolution {} ns)",
            opt(&self.clocksource),
            self.clock_resolution_ns.map_or("?".into(), |n| n.to_string())
        );
        out.push('\n');
        let _ = writeln!(out, "| {:<46} | {:>11} | {:>11} | {:>11} |", "", "median", "min", "max");
        let _ = writeln!(out, "|{:-<48}|{:->13}|{:->13}|{:->13}|", "", "", "", "");
        for r in &self.rows {
            let _ = write!(out, "| {:<46} |", r.name);
            match &r.ms {
                Some(s) => {
                    for v in [s.median, s.min, s.max] {
                        let _ = write!(out, " {:>11} |", format!("{v:.1} ms"));
                    }
                }
                None => out.push_str("           - |           - |           - |"),
            }
            out.push('\n');
        }
        out.push('\n');
        out.push_str(
            "The rollback rows time `initrd-tool rollback zfs --dataset rpool/local/root --snapshot blank` \
             (process start included). rm -rf is GNU rm on the mounted root; \"then sync\" adds a \
             sync() after it.\n",
        );
        let freeing: Vec<String> = self.freeing_after_rollback_bytes.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "Left to free in the background when the rollback had returned (the pool's `freeing`, read \
             at once with zpool): {} bytes.",
            if freeing.is_empty() { "?".into() } else { freeing.join(", ") }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_values_become_rows() {
        let console: Vec<String> = [
            "LETHE-GUEST VALUE kernel 6.1.0-56-amd64",
            "LETHE-GUEST VALUE zfs-version 2.1.11-1+deb12u1",
            "LETHE-GUEST VALUE cpus 2",
            "LETHE-GUEST VALUE clock-resolution-ns 1",
            "LETHE-GUEST VALUE written-bytes 1048576",
            "LETHE-GUEST VALUE freeing.1 0",
            "LETHE-GUEST VALUE rollback.1 20000000",
            "LETHE-GUEST VALUE unchanged.1 5000000",
            "LETHE-GUEST VALUE rm.1 900000000 1100000000",
            "LETHE-GUEST VALUE freeing.2 4096",
            "LETHE-GUEST VALUE rollback.2 30000000",
            "LETHE-GUEST VALUE unchanged.2 7000000",
            "LETHE-GUEST VALUE rm.2 700000000 1000000000",
            "LETHE-GUEST DONE",
        ]
        .map(String::from)
        .to_vec();
        let r = GuestResults::from_console(&console);
        let o = Options { files: 80, runs: 2 };
        let mut b = RollbackBench::from_results(&r, o, "tcg".into(), 12.0);
        let ms = |i: usize| b.rows[i].ms.clone().unwrap();
        assert_eq!((ms(0).median, ms(0).min, ms(0).max), (25.0, 20.0, 30.0));
        assert_eq!(ms(1).median, 6.0);
        assert_eq!((ms(2).min, ms(2).max), (700.0, 900.0));
        assert_eq!((ms(3).min, ms(3).max), (1000.0, 1100.0));
        assert_eq!(b.dirs, 2);
        assert_eq!(b.freeing_after_rollback_bytes, [0, 4096]);
        let table = b.table();
        assert!(table.contains("| rollback (root unmounted, pool just imported)"), "{table}");
        assert!(table.contains("25.0 ms"), "{table}");
        assert!(table.contains("the pool's `freeing`, read at once with zpool): 0, 4096 bytes."), "{table}");
        b.rows[0].ms = None;
        assert!(b.table().contains("|           - |"));
    }
}
