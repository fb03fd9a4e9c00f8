//! What the harness prints: the stage-1 timing table, the benchmark's statistics (table or JSON) and console dumps.

use std::fmt::Write;

use serde::Serialize;

use crate::expect::Timings;

/// Median, minimum and maximum of some samples, and the samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// `None` without samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Some(Stats { median, min: s[0], max: s[n - 1], samples: samples.to_vec() })
    }
}

/// One boot's stage-1 figures, from stage 2's report.
#[derive(Debug, Clone)]
pub struct BootTimes {
    pub label: String,
    /// Guest clock at the exec of stage 2 (kernel start = 0), seconds.
    pub stage2_at_s: Option<f64>,
    pub timings: Option<Timings>,
}

/// The table of stage-1 step durations, one column per boot.
pub fn timing_table(boots: &[BootTimes]) -> String {
    let mut steps: Vec<String> = Vec::new();
    for b in boots {
        for s in b.timings.iter().flat_map(|t| &t.steps) {
            if !steps.contains(&s.name) {
                steps.push(s.name.clone());
            }
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:<38}", "stage 1 (guest clock)");
    for b in boots {
        let _ = write!(out, "{:>12}", b.label);
    }
    out.push('\n');
    let mut row = |name: &str, cell: &dyn Fn(&BootTimes) -> Option<String>| {
        let _ = write!(out, "  {name:<36}");
        for b in boots {
            let _ = write!(out, "{:>12}", cell(b).unwrap_or_else(|| "-".into()));
        }
        out.push('\n');
    };
    for name in &steps {
        row(name, &|b: &BootTimes| {
            let t = b.timings.as_ref()?.steps.iter().find(|s| &s.name == name)?;
            Some(format!("{:.1} ms", t.ms))
        });
    }
    row("init total", &|b: &BootTimes| Some(format!("{:.1} ms", b.timings.as_ref()?.total_ms)));
    row("kernel start -> init", &|b: &BootTimes| {
        Some(format!("{:.3} s", b.timings.as_ref()?.kernel_uptime_ms_at_start / 1e3))
    });
    row("kernel start -> exec of stage 2", &|b: &BootTimes| Some(format!("{:.3} s", b.stage2_at_s?)));
    out
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub scenario: &'static str,
    pub runs: usize,
    pub kernel: String,
    pub accel: String,
    pub initramfs_bytes: u64,
    /// Kernel start to the exec of stage 2 (stage 2's uptime at its start).
    pub stage1_s: Option<Stats>,
    /// Kernel start to the start of lethe's init.
    pub kernel_to_init_s: Option<Stats>,
    /// lethe's init from its start to the exec of stage 2 (its own clock).
    pub init_ms: Option<Stats>,
    /// Host wall time per boot, QEMU start to stage 2's line.
    pub host_boot_s: Option<Stats>,
    /// The same kernel through Debian's initramfs-tools (`--compare-debian`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debian: Option<DebianBench>,
}

/// Debian's initramfs on the same kernel, mounting an ext4 root by label.
#[derive(Debug, Clone, Serialize)]
pub struct DebianBench {
    pub initramfs_bytes: u64,
    /// Kernel start to the exec of init on the root.
    pub stage1_s: Option<Stats>,
    pub host_boot_s: Option<Stats>,
}

impl Bench {
    pub fn table(&self) -> String {
        let mut out = format!(
            "bench: {}, {} boots, kernel {}, accel {}\ninitramfs: {} bytes\n{:<44}{:>10}{:>10}{:>10}\n",
            self.scenario,
            self.runs,
            self.kernel,
            self.accel,
            self.initramfs_bytes,
            "",
            "median",
            "min",
            "max"
        );
        for (name, stats, in_ms) in [
            ("kernel start -> exec of stage 2 (stage 1)", &self.stage1_s, false),
            ("kernel start -> lethe init", &self.kernel_to_init_s, false),
            ("lethe init -> exec of stage 2", &self.init_ms, true),
            ("host wall time per boot", &self.host_boot_s, false),
        ] {
            row(&mut out, name, stats, in_ms);
        }
        if let Some(d) = &self.debian {
            let _ = writeln!(
                out,
                "Debian's initramfs-tools, same kernel, ext4 root by label (initramfs {} bytes):",
                d.initramfs_bytes
            );
            row(&mut out, "kernel start -> exec of init", &d.stage1_s, false);
            row(&mut out, "host wall time per boot", &d.host_boot_s, false);
        }
        out
    }
}

/// One statistics row: median, min, max.
fn row(out: &mut String, name: &str, stats: &Option<Stats>, in_ms: bool) {
    let _ = write!(out, "  {name:<42}");
    match stats {
        Some(s) => {
            for v in [s.median, s.min, s.max] {
                let cell = if in_ms { format!("{v:.1} ms") } else { format!("{v:.3} s") };
                let _ = write!(out, "{cell:>10}");
            }
        }
        None => out.push_str("         -"),
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::StepTiming;

    #[test]
    fn stats_take_the_middle() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn the_timing_table_has_a_column_per_boot() {
        let t = Timings {
            kernel_uptime_ms_at_start: 2100.0,
            steps: vec![StepTiming { name: "modules".into(), ms: 40.25 }],
            total_ms: 60.0,
        };
        let table = timing_table(&[
            BootTimes { label: "boot 1".into(), stage2_at_s: Some(2.2), timings: Some(t) },
            BootTimes { label: "boot 2".into(), stage2_at_s: None, timings: None },
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[1].contains("modules") && lines[1].contains("40.2 ms") && lines[1].ends_with('-'),
            "{table}"
        );
        assert!(lines[4].contains("2.200 s"), "{table}");
    }
}
