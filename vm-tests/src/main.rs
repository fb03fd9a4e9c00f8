//! `vm-tests`: boots lethe's stage 1 in QEMU on Debian's kernel and real disk images: `run` scenarios, `demo`, `bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vm_tests::debian::DebianMachine;
use vm_tests::error::Error;
use vm_tests::expect::Report;
use vm_tests::qemu::{Boot, Outcome};
use vm_tests::report::{self, Bench, BootTimes, DebianBench, Stats};
use vm_tests::scenarios::{self, Harness, Machine, Scenario, ScenarioResult};

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
        /// plain-tmpfs, bad-config, missing-device, dry-run, or all.
        name: String,
        /// Prints every serial console as it arrives.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Lists the scenarios.
    List,
    /// Boots plain-tmpfs twice, showing both consoles and the stage-1 timing table.
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::List => {
            for s in Scenario::ALL {
                println!("{:<16} {}", s.name(), s.about());
            }
            ExitCode::SUCCESS
        }
        Cmd::Run { name, verbose } => run(&name, verbose),
        Cmd::Demo => demo(),
        Cmd::Bench { runs, json, compare_debian } => bench(runs as usize, json, compare_debian),
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

fn print_console(label: &str, b: &Boot) {
    println!("  ---- {label}: serial console ({} lines) ----", b.console.len());
    for l in &b.console {
        println!("  | {l}");
    }
}

fn boot_times(r: &ScenarioResult) -> Vec<BootTimes> {
    r.boots
        .iter()
        .zip(r.reports())
        .map(|((label, _), rep)| BootTimes {
            label: label.clone(),
            stage2_at_s: rep.and_then(|r| r.uptime_s),
            timings: rep.and_then(scenarios::timings),
        })
        .collect()
}

fn demo() -> ExitCode {
    let h = match setup() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vm-tests demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let s = Scenario::PlainTmpfs;
    println!("demo: {}: {}", s.name(), s.about());
    println!("kernel command line: {}", scenarios::CMDLINE);
    let r = s.run(&h, Some(""));
    println!("\n---- results ----");
    print_result(&r, true);
    for ((label, _), rep) in r.boots.iter().zip(r.reports()) {
        if let Some(rep) = rep {
            println!(
                "  {label}: boot counter {}, ephemeral marker found: {}, machine-id found: {}, alice's file: {} line(s)",
                rep.boot.map_or("?".into(), |b| b.to_string()),
                rep.ephemeral_marker_found,
                rep.machine_id_found.as_deref().unwrap_or("?"),
                rep.user_file_lines.map_or("?".into(), |n| n.to_string())
            );
        }
    }
    if let Some(bytes) = r.initramfs_bytes {
        println!("\ninitramfs: {bytes} bytes (kernel {}, accel {})", h.kernel.version, h.accel);
    }
    println!("\n{}", report::timing_table(&boot_times(&r)));
    if r.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn bench(runs: usize, json: bool, compare_debian: bool) -> ExitCode {
    let result = (|| -> Result<(Bench, Vec<String>), Error> {
        let h = setup()?;
        let dir = h.dir("bench")?;
        let m = Machine::prepare(&h, &dir, &scenarios::plain_config(), false)?;
        let mut r = ScenarioResult {
            scenario: Scenario::PlainTmpfs,
            boots: Vec::new(),
            findings: Vec::new(),
            initramfs_bytes: Some(m.initramfs_bytes),
        };
        for n in 1..=runs {
            let boot = h.boot(&format!("boot {n}"), &m.initrd, &m.disks, None)?;
            eprintln!(
                "bench: boot {n}/{runs}: {} [{:.1} s host]",
                boot.summary(),
                boot.elapsed.as_secs_f64()
            );
            scenarios::check_plain_boot(&mut r, n as u64, &boot);
            let reached_stage2 = matches!(boot.outcome, Outcome::Stage2(_));
            r.boots.push((format!("boot {n}"), boot));
            if !reached_stage2 {
                break; // the next boots could only repeat this failure
            }
        }
        let times = boot_times(&r);
        let stat = |f: &dyn Fn(&BootTimes) -> Option<f64>| {
            Stats::of(&times.iter().filter_map(f).collect::<Vec<_>>())
        };
        let mut bench = Bench {
            scenario: Scenario::PlainTmpfs.name(),
            runs,
            kernel: h.kernel.version.clone(),
            accel: h.accel.to_string(),
            initramfs_bytes: m.initramfs_bytes,
            stage1_s: stat(&|b| b.stage2_at_s),
            kernel_to_init_s: stat(&|b| Some(b.timings.as_ref()?.kernel_uptime_ms_at_start / 1e3)),
            init_ms: stat(&|b| Some(b.timings.as_ref()?.total_ms)),
            host_boot_s: host_times(&r.boots),
            debian: None,
        };
        if compare_debian {
            bench.debian = Some(bench_debian(&h, runs, &mut r.findings)?);
        }
        Ok((bench, r.findings))
    })();
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

fn host_times(boots: &[(String, Boot)]) -> Option<Stats> {
    Stats::of(&boots.iter().map(|(_, b)| b.elapsed.as_secs_f64()).collect::<Vec<_>>())
}

/// `runs` boots through Debian's initramfs; a boot that does not reach
/// stage 2 is a finding.
fn bench_debian(h: &Harness, runs: usize, findings: &mut Vec<String>) -> Result<DebianBench, Error> {
    let m = DebianMachine::prepare(h, &h.dir("bench-debian")?)?;
    let mut boots = Vec::new();
    let mut stage1 = Vec::new();
    for n in 1..=runs {
        let boot = m.boot(h, &format!("debian boot {n}"))?;
        eprintln!(
            "bench: Debian's initramfs, boot {n}/{runs}: {} [{:.1} s host]",
            boot.summary(),
            boot.elapsed.as_secs_f64()
        );
        match &boot.outcome {
            Outcome::Stage2(Report { uptime_s: Some(u), .. }) => stage1.push(*u),
            _ => findings.push(format!("Debian's initramfs, boot {n}: {}", boot.summary())),
        }
        boots.push((format!("debian boot {n}"), boot));
    }
    Ok(DebianBench {
        initramfs_bytes: m.initramfs_bytes,
        stage1_s: Stats::of(&stage1),
        host_boot_s: host_times(&boots),
    })
}
