//! `vm-tests`: boots lethe's stage 1 in QEMU on Debian's kernel and real disk images: `run` scenarios, `demo`, `bench`, `bench-rollback`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vm_tests::bench_rollback::Options;
use vm_tests::error::Error;
use vm_tests::harness::{self, Harness};
use vm_tests::qemu::Boot;
use vm_tests::report;
use vm_tests::scenarios::{Scenario, ScenarioResult};

/// Boots lethe's own stage 1 in QEMU (Debian's kernel, real ext4 images)
/// and checks what the test stage 2 reports. Run as root.
///
/// Environment: LETHE_VM_ACCEL=tcg|kvm (default tcg), LETHE_VM_TIMEOUT
/// (seconds per boot, default 120), LETHE_VM_KERNEL and LETHE_VM_MODULES
/// (default: the newest /boot/vmlinuz-* with /lib/modules), LETHE_VM_QEMU.
#[derive(Debug, Parser)]
#[command(name = "vm-tests")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one scenario, or `all`; prints a summary and exits non-zero on a failure.
    Run {
        /// A scenario (see `list`), or all.
        name: String,
        /// Prints every serial console as it arrives.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Lists the scenarios.
    List,
    /// Boots btrfs-tmpfs-usbkey (key file on a stick, then the passphrase),
    /// showing every console and the stage-1 timing table.
    Demo,
    /// Boots plain-tmpfs several times and reports stage-1 time and initramfs size.
    Bench {
        /// Boots to measure.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also boots the same kernel as often through Debian's own initramfs
        /// (initramfs-tools) onto an ext4 root, for comparison.
        #[arg(long)]
        compare_debian: bool,
    },
    /// Times ZFS's rollback of a root holding 100,000 files (`initrd-tool
    /// rollback zfs`) against `rm -rf` of the same tree, in one busybox guest.
    BenchRollback {
        /// Runs of each step (default 5; 2 with --quick).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        runs: Option<u32>,
        /// Files in the root's tree, 40 to a directory (default 100000; 10000 with --quick).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        files: Option<u32>,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Fewer files and runs, for CI.
        #[arg(long)]
        quick: bool,
        /// Prints the guest's serial console as it arrives.
        #[arg(long, short, conflicts_with = "json")]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::List => {
            for s in Scenario::ALL {
                println!("{:<18} {}", s.name(), s.about());
            }
            ExitCode::SUCCESS
        }
        Cmd::Run { name, verbose } => run(&name, verbose),
        Cmd::Demo => demo(),
        Cmd::Bench { runs, json, compare_debian } => bench(runs as usize, json, compare_debian),
        Cmd::BenchRollback { runs, files, json, quick, verbose } => {
            let base = if quick { Options::QUICK } else { Options::FULL };
            let o = Options {
                files: files.map_or(base.files, |n| n as usize),
                runs: runs.map_or(base.runs, |n| n as usize),
            };
            bench_rollback(o, json, verbose)
        }
    }
}

fn setup() -> Result<Harness, Error> {
    let h = Harness::setup()?;
    eprintln!(
        "vm-tests: kernel {} ({}), accel {}, {} s per boot at most, work dir {}",
        h.kernel.version,
        h.kernel.image.display(),
        h.accel,
        h.timeout.as_secs(),
        h.work.display()
    );
    Ok(h)
}

fn run(name: &str, verbose: bool) -> ExitCode {
    let selected: Vec<Scenario> = if name == "all" {
        Scenario::ALL.to_vec()
    } else if let Some(s) = Scenario::from_name(name) {
        vec![s]
    } else {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        eprintln!("vm-tests: no scenario {name:?}; expected one of {} or all", names.join(", "));
        return ExitCode::from(2);
    };
    let h = match setup() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vm-tests: {e}");
            println!("vm-tests: 0 passed, {} failed", selected.len());
            return ExitCode::FAILURE;
        }
    };
    let mut results = Vec::new();
    for s in selected {
        println!("\n== {}: {}", s.name(), s.about());
        let r = s.run(&h, verbose.then_some(""));
        print_result(&r, verbose);
        results.push(r);
    }
    println!("\nsummary:");
    for r in &results {
        let first = r.findings.first().map_or(String::new(), |f| format!(": {f}"));
        println!("  {} {}{first}", if r.passed() { "PASS" } else { "FAIL" }, r.scenario.name());
    }
    let passed = results.iter().filter(|r| r.passed()).count();
    println!("vm-tests: {passed} passed, {} failed", results.len() - passed);
    if passed == results.len() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The boots' outcomes, then the findings with the consoles (unless they
/// were shown live).
fn print_result(r: &ScenarioResult, shown: bool) {
    for (label, b) in &r.boots {
        println!("  {label}: {} [{:.1} s host]", b.summary(), b.elapsed.as_secs_f64());
    }
    for n in &r.notes {
        println!("  {n}");
    }
    if r.passed() {
        println!("  PASS {}", r.scenario.name());
        return;
    }
    if !shown {
        for (label, b) in &r.boots {
            print_console(label, b);
        }
    }
    println!("  FAIL {}:", r.scenario.name());
    for f in &r.findings {
        println!("    - {f}");
    }
}

/// A boot's console, with what the harness typed where it typed it.
fn print_console(label: &str, b: &Boot) {
    println!("  ---- {label}: serial console ({} lines) ----", b.console.len());
    let typed_after = |n: usize| {
        for t in b.typed.iter().filter(|t| t.after_lines == n) {
            println!("  [vm-tests typed {} at {:.1} s]", t.label, t.at.as_secs_f64());
        }
    };
    typed_after(0);
    for (n, l) in b.console.iter().enumerate() {
        println!("  | {l}");
        typed_after(n + 1);
    }
}

fn demo() -> ExitCode {
    let h = match setup() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vm-tests demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The laptop: LUKS2 opened by a key file on a USB stick (the passphrase
    // when the stick is absent), a fresh tmpfs root on every boot, state
    // persisted on BTRFS subvolumes.
    let s = Scenario::BtrfsTmpfsUsbkey;
    println!("demo: {}: {}", s.name(), s.about());
    println!("kernel command line: {}", harness::CMDLINE);
    let r = s.run(&h, Some(""));
    println!("\n---- results ----");
    print_result(&r, true);
    for ((label, boot), rep) in r.boots.iter().zip(r.reports()) {
        if let Some(rep) = rep {
            println!(
                "  {label}: {}; boot counter {}, ephemeral marker found: {}, machine-id found: {}, alice's file: {} line(s)",
                vm_tests::btrfs_tmpfs_usbkey::describe_unlock(boot),
                rep.boot.map_or("?".into(), |b| b.to_string()),
                rep.ephemeral_marker_found,
                rep.machine_id_found.as_deref().unwrap_or("?"),
                rep.user_file_lines.map_or("?".into(), |n| n.to_string())
            );
        }
    }
    // What the boots left on the disk, as the reference cryptsetup reads it.
    if let Some((_, check)) = r.boots.iter().find(|(label, _)| label == "check") {
        println!("\n  the disk afterwards, through cryptsetup (newlines as |):");
        for (name, value) in vm_tests::guest::GuestResults::from_console(&check.console).values {
            println!("    {name}: {value}");
        }
    }
    if let Some(bytes) = r.initramfs_bytes {
        println!("\ninitramfs: {bytes} bytes (kernel {}, accel {})", h.kernel.version, h.accel);
    }
    let lethe_boots: Vec<_> =
        vm_tests::bench::boot_times(&r).into_iter().filter(|b| b.timings.is_some()).collect();
    println!("\n{}", report::timing_table(&lethe_boots));
    if r.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn bench(runs: usize, json: bool, compare_debian: bool) -> ExitCode {
    let result = setup().and_then(|h| vm_tests::bench::run(&h, runs, compare_debian));
    match result {
        Ok((bench, findings)) => {
            if json {
                match serde_json::to_string_pretty(&bench) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("vm-tests bench: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", bench.table());
            }
            for f in &findings {
                eprintln!("bench: FAIL {f}");
            }
            if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("vm-tests bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench_rollback(o: Options, json: bool, verbose: bool) -> ExitCode {
    let started = std::time::Instant::now();
    let result = setup().and_then(|h| vm_tests::bench_rollback::run(&h, o, verbose.then_some("")));
    let (bench, findings) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vm-tests bench-rollback: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&bench) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("vm-tests bench-rollback: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("\n{}", bench.table());
    }
    eprintln!("bench-rollback: {:.0} s wall time in all (build and boot)", started.elapsed().as_secs_f64());
    for f in &findings {
        eprintln!("bench-rollback: FAIL {f}");
    }
    if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
