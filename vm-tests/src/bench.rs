//! The benchmark: boots the plain machine several times and measures stage 1 on the guest clock, and Debian's initramfs-tools on the same kernel for comparison.

use crate::debian::DebianMachine;
use crate::error::Result;
use crate::expect::Report;
use crate::harness::Harness;
use crate::machine::{self, Machine};
use crate::qemu::{Boot, Outcome};
use crate::report::{Bench, BootTimes, DebianBench, Stats};
use crate::scenarios::{self, Scenario, ScenarioResult};

/// Boots the plain machine `runs` times (stopping at a boot that does not
/// reach stage 2); with `compare_debian`, Debian's initramfs as often.
/// Returns the figures and the failed checks of the boots.
pub fn run(h: &Harness, runs: usize, compare_debian: bool) -> Result<(Bench, Vec<String>)> {
    let dir = h.dir("bench")?;
    let m = Machine::prepare(h, &dir, &machine::plain_config(), false)?;
    let mut r = ScenarioResult {
        scenario: Scenario::PlainTmpfs,
        boots: Vec::new(),
        findings: Vec::new(),
        notes: Vec::new(),
        initramfs_bytes: Some(m.initramfs_bytes),
    };
    for n in 1..=runs {
        let boot = h.boot(&format!("boot {n}"), &m.initrd, &m.disks, None)?;
        eprintln!("bench: boot {n}/{runs}: {} [{:.1} s host]", boot.summary(), boot.elapsed.as_secs_f64());
        scenarios::check_plain_boot(&mut r, n as u64, &boot);
        let reached_stage2 = matches!(boot.outcome, Outcome::Stage2(_));
        r.boots.push((format!("boot {n}"), boot));
        if !reached_stage2 {
            break; // the next boots could only repeat this failure
        }
    }
    let times = boot_times(&r);
    let stat =
        |f: &dyn Fn(&BootTimes) -> Option<f64>| Stats::of(&times.iter().filter_map(f).collect::<Vec<_>>());
    let mut bench = Bench {
        scenario: Scenario::PlainTmpfs.name(),
        runs: r.boots.len(),
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
        bench.debian = Some(debian(h, runs, &mut r.findings)?);
    }
    Ok((bench, r.findings))
}

/// Each boot's stage-1 figures from its stage 2 report.
pub fn boot_times(r: &ScenarioResult) -> Vec<BootTimes> {
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

fn host_times(boots: &[(String, Boot)]) -> Option<Stats> {
    Stats::of(&boots.iter().map(|(_, b)| b.elapsed.as_secs_f64()).collect::<Vec<_>>())
}

/// `runs` boots through Debian's initramfs; a boot that does not reach
/// stage 2 is a finding.
fn debian(h: &Harness, runs: usize, findings: &mut Vec<String>) -> Result<DebianBench> {
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
