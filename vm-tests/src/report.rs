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

/// The date, host and guest of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Sysinfo {
    /// UTC, YYYY-MM-DD.
    pub date: String,
    /// The host's CPU model and count.
    pub machine: String,
    pub kernel: String,
    pub accel: String,
    pub guest: String,
}

impl Sysinfo {
    pub fn of_host(h: &crate::harness::Harness) -> Sysinfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
            .unwrap_or_else(|| "unknown CPU".into());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let qemu = std::process::Command::new(crate::host::qemu_binary())
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|v| {
                // "QEMU emulator version 7.2.22 (Debian ...)" -> "QEMU 7.2.22"
                let version = v.split_whitespace().skip_while(|w| *w != "version").nth(1)?;
                Some(format!("QEMU {version}"))
            })
            .unwrap_or_else(|| "QEMU".into());
        Sysinfo {
            date: utc_date(std::time::SystemTime::now()),
            machine: format!("{cpus} x {model}"),
            kernel: h.kernel.version.clone(),
            accel: h.accel.to_string(),
            guest: format!(
                "{qemu}, {} vCPU, {} MiB",
                crate::harness::GUEST_CPUS,
                crate::harness::GUEST_MEMORY_MIB
            ),
        }
    }
}

/// `t` as a UTC calendar date (days since the epoch to a civil date).
pub fn utc_date(t: std::time::SystemTime) -> String {
    let days = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One stage 1's figures on one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Kernel start to the exec of stage 2, guest clock.
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// The initramfs file.
    pub size_bytes: u64,
    /// Guest RAM touched by the exec of stage 2 (median): what the kernel and stage 1 needed
    /// at most.
    pub memory_touched_bytes: Option<u64>,
    pub samples_ms: Vec<f64>,
}

impl Figures {
    pub fn new(stage1_ms: &Stats, size_bytes: u64, memory_touched_bytes: Option<u64>) -> Figures {
        Figures {
            median_ms: stage1_ms.median,
            min_ms: stage1_ms.min,
            max_ms: stage1_ms.max,
            size_bytes,
            memory_touched_bytes,
            samples_ms: stage1_ms.samples.clone(),
        }
    }
}

/// One machine through the three stage 1s (`None`: its boots failed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MachineBench {
    pub name: &'static str,
    pub lethe: Option<Figures>,
    #[serde(rename = "initramfs-tools")]
    pub initramfs_tools: Option<Figures>,
    pub dracut: Option<Figures>,
    /// lethe's own step timings of its measured boots.
    #[serde(skip)]
    pub lethe_timings: Vec<Timings>,
    /// The stage 1s left out of this run (`--initramfs`).
    #[serde(skip)]
    pub not_run: Vec<&'static str>,
}

/// How lethe fares against the goal on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goal {
    /// lethe's median stage 1 over the faster peer's (goal: at most 0.5).
    pub time_ratio: Option<f64>,
    /// lethe's initramfs over dracut's (goal: at most 0.25).
    pub size_ratio: Option<f64>,
}

impl Goal {
    pub const TIME: f64 = 0.5;
    pub const SIZE: f64 = 0.25;

    pub fn met(&self) -> bool {
        self.time_ratio.is_some_and(|r| r <= Goal::TIME) && self.size_ratio.is_some_and(|r| r <= Goal::SIZE)
    }
}

impl MachineBench {
    /// What to show for a stage 1 without figures.
    pub fn missing(&self, name: &str) -> &'static str {
        if self.not_run.contains(&name) { "not run" } else { "no successful boot" }
    }

    /// The three in order, with their names.
    pub fn stage1s(&self) -> [(&'static str, Option<&Figures>); 3] {
        [
            ("lethe", self.lethe.as_ref()),
            ("initramfs-tools", self.initramfs_tools.as_ref()),
            ("dracut", self.dracut.as_ref()),
        ]
    }

    pub fn goal(&self) -> Goal {
        let lethe = self.lethe.as_ref();
        let faster = [&self.initramfs_tools, &self.dracut]
            .into_iter()
            .flatten()
            .map(|f| f.median_ms)
            .min_by(f64::total_cmp);
        Goal {
            time_ratio: lethe.zip(faster).map(|(l, p)| l.median_ms / p),
            size_ratio: lethe
                .zip(self.dracut.as_ref())
                .map(|(l, d)| l.size_bytes as f64 / d.size_bytes as f64),
        }
    }

    /// lethe's step timings of its median boot (the boot whose stage 1 is the median).
    pub fn lethe_median_timings(&self) -> Option<&Timings> {
        let f = self.lethe.as_ref()?;
        let i = f.samples_ms.iter().position(|&s| s == f.median_ms).or_else(|| {
            // An even count's median is between two boots: take the nearer.
            (0..f.samples_ms.len()).min_by(|&a, &b| {
                (f.samples_ms[a] - f.median_ms).abs().total_cmp(&(f.samples_ms[b] - f.median_ms).abs())
            })
        })?;
        self.lethe_timings.get(i)
    }
}

/// The benchmark's result: `scenarios[].{lethe, initramfs-tools, dracut}.{median_ms, ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    #[serde(flatten)]
    pub sysinfo: Sysinfo,
    pub runs: usize,
    /// Whether an unmeasured boot came first.
    pub warm_up: bool,
    /// Persisted directories added to each machine's own.
    pub extra_entries: usize,
    #[serde(rename = "scenarios", serialize_with = "machines_with_goals")]
    pub machines: Vec<MachineBench>,
}

fn machines_with_goals<S: serde::Serializer>(machines: &[MachineBench], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct WithGoal<'a> {
        #[serde(flatten)]
        machine: &'a MachineBench,
        goal: Goal,
        /// lethe's steps in its median boot: name and milliseconds.
        lethe_steps: Vec<(&'a str, f64)>,
        lethe_kernel_ms: Option<f64>,
    }
    s.collect_seq(machines.iter().map(|m| {
        let t = m.lethe_median_timings();
        WithGoal {
            machine: m,
            goal: m.goal(),
            lethe_steps: t
                .map(|t| t.steps.iter().map(|s| (s.name.as_str(), s.ms)).collect())
                .unwrap_or_default(),
            lethe_kernel_ms: t.map(|t| t.kernel_uptime_ms_at_start),
        }
    }))
}

impl BenchReport {
    /// The table: a row per machine and stage 1, the goal per machine, lethe's steps.
    pub fn table(&self) -> String {
        let s = &self.sysinfo;
        let mut out = format!(
            "bench: {} measured boots each{}; {}; {}; kernel {}, {}, {}\n\
             each machine's own persisted entries plus {} directories; stage 1 = kernel start to the exec of stage 2 (guest clock)\n\n",
            self.runs,
            if self.warm_up { " after a warm-up boot" } else { " (no warm-up boot)" },
            s.date,
            s.machine,
            s.kernel,
            s.accel,
            s.guest,
            self.extra_entries
        );
        let _ = writeln!(
            out,
            "{:<20}{:<17}{:>10}{:>10}{:>10}{:>14}{:>12}",
            "machine", "initramfs", "median", "min", "max", "size", "RAM touched"
        );
        for m in &self.machines {
            for (i, (name, f)) in m.stage1s().into_iter().enumerate() {
                let machine = if i == 0 { m.name } else { "" };
                let _ = write!(out, "{machine:<20}{name:<17}");
                match f {
                    Some(f) => {
                        let _ = writeln!(
                            out,
                            "{:>10}{:>10}{:>10}{:>14}{:>12}",
                            format!("{:.2} s", f.median_ms / 1e3),
                            format!("{:.2} s", f.min_ms / 1e3),
                            format!("{:.2} s", f.max_ms / 1e3),
                            thousands(f.size_bytes),
                            f.memory_touched_bytes
                                .map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
                        );
                    }
                    None => {
                        let _ = writeln!(out, "  ({})", m.missing(name));
                    }
                }
            }
            let g = m.goal();
            let ratio = |r: Option<f64>, goal: f64| match r {
                Some(r) => format!("{r:.2} ({} {goal})", if r <= goal { "met, <=" } else { "MISSED, >" }),
                None => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<20}goal: lethe / faster peer {}; lethe / dracut size {}",
                "",
                ratio(g.time_ratio, Goal::TIME),
                ratio(g.size_ratio, Goal::SIZE)
            );
            if let Some(t) = m.lethe_median_timings() {
                let steps: Vec<String> = t.steps.iter().map(|s| format!("{} {:.0}", s.name, s.ms)).collect();
                let _ = writeln!(
                    out,
                    "{:<20}lethe's median boot (ms): kernel {:.0}, {}",
                    "",
                    t.kernel_uptime_ms_at_start,
                    steps.join(", ")
                );
            }
        }
        out
    }
}

/// 1234567 as "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
    fn dates_are_civil_utc() {
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(utc_date(at(0)), "1970-01-01");
        assert_eq!(utc_date(at(951_782_400)), "2000-02-29");
        assert_eq!(utc_date(at(1_796_515_200)), "2026-12-06");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_365_013), "1,365,013");
    }

    fn figures(median_ms: f64, size_bytes: u64) -> Figures {
        Figures {
            median_ms,
            min_ms: median_ms,
            max_ms: median_ms,
            size_bytes,
            memory_touched_bytes: None,
            samples_ms: vec![median_ms],
        }
    }

    #[test]
    fn the_goal_compares_with_the_faster_peer_and_dracuts_size() {
        let m = MachineBench {
            name: "m",
            lethe: Some(figures(2000.0, 2_000_000)),
            initramfs_tools: Some(figures(5000.0, 30_000_000)),
            dracut: Some(figures(4000.0, 10_000_000)),
            lethe_timings: Vec::new(),
            not_run: Vec::new(),
        };
        let g = m.goal();
        assert_eq!((g.time_ratio, g.size_ratio), (Some(0.5), Some(0.2)));
        assert!(g.met());
        let slow = MachineBench { lethe: Some(figures(2100.0, 2_000_000)), ..m.clone() };
        assert!(!slow.goal().met());
        let no_peer = MachineBench { initramfs_tools: None, dracut: None, ..m };
        assert_eq!(no_peer.goal().time_ratio, None);
        assert!(!no_peer.goal().met());
    }

    #[test]
    fn the_json_has_the_three_stage_1s_per_scenario() {
        let r = BenchReport {
            sysinfo: Sysinfo {
                date: "2026-12-06".into(),
                machine: "2 x cpu".into(),
                kernel: "6.1".into(),
                accel: "tcg".into(),
                guest: "q".into(),
            },
            runs: 1,
            warm_up: true,
            extra_entries: 100,
            machines: vec![MachineBench {
                name: "plain-tmpfs",
                lethe: Some(figures(2000.0, 2)),
                initramfs_tools: None,
                dracut: Some(figures(4000.0, 10)),
                lethe_timings: Vec::new(),
                not_run: Vec::new(),
            }],
        };
        let v = serde_json::to_value(&r).unwrap();
        let s = &v["scenarios"][0];
        assert_eq!(s["name"], "plain-tmpfs");
        assert_eq!(s["lethe"]["median_ms"], 2000.0);
        assert_eq!(s["lethe"]["size_bytes"], 2);
        assert!(s["initramfs-tools"].is_null());
        assert_eq!(s["dracut"]["max_ms"], 4000.0);
        assert_eq!(s["goal"]["time_ratio"], 0.5);
        assert_eq!(v["date"], "2026-12-06");
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
