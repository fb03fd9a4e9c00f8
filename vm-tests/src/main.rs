//! `vm-tests`: boots lethe's stage 1 in QEMU on Debian's kernel and real disk images: `run` scenarios, `demo`, `bench`, `bench-rollback`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vm_tests::bench::{BenchMachine, Stage1};
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
    /// Boots btrfs-tmpfs-usbkey, btrfs-blank and plain-tmpfs (each with 100 more persisted
    /// directories) through lethe's initramfs, Debian's initramfs-tools and dracut, built for
    /// the same kernel and disks doing the same work; reports stage-1 time (guest clock),
    /// initramfs size and guest RAM touched as a table or JSON, and writes an SVG chart.
    Bench {
        /// Measured boots per machine and initramfs.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Measures from the first boot on, without the unmeasured warm-up boot (first-boot
        /// work included; quicker, for CI).
        #[arg(long)]
        no_warm_up: bool,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this machine (repeatable): btrfs-tmpfs-usbkey, btrfs-blank, plain-tmpfs.
        #[arg(long = "machine", value_name = "NAME")]
        machines: Vec<String>,
        /// Only this initramfs (repeatable): lethe, initramfs-tools, dracut.
        #[arg(long = "initramfs", value_name = "NAME")]
        initramfs: Vec<String>,
        /// Where the SVG chart goes (default: target/vm-tests/bench/bench.svg).
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
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
        Cmd::Bench { runs, no_warm_up, json, machines, initramfs, svg } => {
            let o = vm_tests::bench::Options {
                runs: runs as usize,
                warm_up: !no_warm_up,
                machines: Vec::new(),
                stage1s: Vec::new(),
            };
            bench(o, json, &machines, &initramfs, svg)
        }
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
        vm_tests::scenarios::boot_times(&r).into_iter().filter(|b| b.timings.is_some()).collect();
    println!("\n{}", report::timing_table(&lethe_boots));
    if r.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn bench(
    mut o: vm_tests::bench::Options,
    json: bool,
    names: &[String],
    initramfs: &[String],
    svg: Option<std::path::PathBuf>,
) -> ExitCode {
    for n in initramfs {
        match Stage1::from_name(n) {
            Some(s) if !o.stage1s.contains(&s) => o.stage1s.push(s),
            Some(_) => {}
            None => {
                let all: Vec<&str> = Stage1::ALL.iter().map(|s| s.name()).collect();
                eprintln!("vm-tests bench: no initramfs {n:?}; expected one of {}", all.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    // Always in the same order, however they were named.
    o.stage1s = Stage1::ALL.into_iter().filter(|s| o.stage1s.is_empty() || o.stage1s.contains(s)).collect();
    let mut machines = Vec::new();
    for n in names {
        match BenchMachine::from_name(n) {
            Some(m) if !machines.contains(&m) => machines.push(m),
            Some(_) => {}
            None => {
                let all: Vec<&str> = BenchMachine::ALL.iter().map(|m| m.name()).collect();
                eprintln!("vm-tests bench: no machine {n:?}; expected one of {}", all.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if machines.is_empty() {
        machines = BenchMachine::ALL.to_vec();
    }
    let started = std::time::Instant::now();
    o.machines = machines;
    let (h, (report, findings)) = match setup().and_then(|h| vm_tests::bench::run(&h, &o).map(|r| (h, r))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vm-tests bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let svg_path = svg.unwrap_or_else(|| h.work.join("bench/bench.svg"));
    if let Err(e) = std::fs::write(&svg_path, vm_tests::chart::svg(&report)) {
        eprintln!("vm-tests bench: cannot write {}: {e}", svg_path.display());
        return ExitCode::FAILURE;
    }
    if !print_figures("bench", &report, json, || report.table()) {
        return ExitCode::FAILURE;
    }
    eprintln!(
        "bench: chart in {}; {:.0} s wall time in all (images, builds, boots)",
        svg_path.display(),
        started.elapsed().as_secs_f64()
    );
    for f in &findings {
        eprintln!("bench: FAIL {f}");
    }
    if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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
    if !print_figures("bench-rollback", &bench, json, || bench.table()) {
        return ExitCode::FAILURE;
    }
    eprintln!("bench-rollback: {:.0} s wall time in all (build and boot)", started.elapsed().as_secs_f64());
    for f in &findings {
        eprintln!("bench-rollback: FAIL {f}");
    }
    if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// A benchmark's figures on stdout: JSON, or its table after an empty line. False (said on
/// stderr) when they cannot be serialized.
fn print_figures<T: serde::Serialize>(
    what: &str,
    figures: &T,
    json: bool,
    table: impl FnOnce() -> String,
) -> bool {
    if !json {
        print!("\n{}", table());
        return true;
    }
    match serde_json::to_string_pretty(figures) {
        Ok(j) => {
            println!("{j}");
            true
        }
        Err(e) => {
            eprintln!("vm-tests {what}: {e}");
            false
        }
    }
}
