//! The benchmark's SVG chart: per machine, a bar for each stage 1's median stage-1 time (whiskers from min to max), and lethe's median boot as a timeline of its steps after the kernel's start.

use std::fmt::Write;

use crate::report::{BenchReport, MachineBench};

const WIDTH: f64 = 960.0;
/// Left of the plotting area (labels go there).
const LEFT: f64 = 190.0;
const RIGHT: f64 = 90.0;
const BAR: f64 = 18.0;
const GAP: f64 = 6.0;
/// The three stage 1s' colors: lethe, initramfs-tools, dracut.
const STAGE1_COLORS: [&str; 3] = ["#2a9d8f", "#e9c46a", "#e76f51"];
/// lethe's steps, in turn (the kernel's part is grey).
const STEP_COLORS: [&str; 8] =
    ["#264653", "#2a9d8f", "#8ab17d", "#e9c46a", "#f4a261", "#e76f51", "#6d597a", "#b56576"];
const KERNEL_COLOR: &str = "#c8c8c8";

/// The chart as an SVG document.
pub fn svg(r: &BenchReport) -> String {
    let max_ms = r
        .machines
        .iter()
        .flat_map(|m| m.stage1s())
        .filter_map(|(_, f)| f.map(|f| f.max_ms))
        .fold(1.0, f64::max);
    // A round scale with at most 10 steps of 1, 2, 5, 10, 20, 30 or 60 s.
    let step_ms = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0]
        .into_iter()
        .map(|s| s * 1e3)
        .find(|s| max_ms / s <= 10.0)
        .unwrap_or(120_000.0);
    let scale_ms = (max_ms / step_ms).ceil() * step_ms;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |ms: f64| LEFT + plot * ms / scale_ms;

    let mut body = String::new();
    let mut y = 78.0;
    for m in &r.machines {
        let _ = writeln!(body, r#"<text x="10" y="{}" class="machine">{}</text>"#, y + 4.0, esc(m.name));
        y += 12.0;
        for (i, (name, f)) in m.stage1s().into_iter().enumerate() {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" class="label" text-anchor="end">{name}</text>"#,
                LEFT - 8.0,
                y + 13.0
            );
            match f {
                Some(f) => {
                    let _ = writeln!(
                        body,
                        r#"<rect x="{LEFT}" y="{y}" width="{:.1}" height="{BAR}" fill="{}"><title>{name}: median {:.2} s, min {:.2} s, max {:.2} s</title></rect>"#,
                        x(f.median_ms) - LEFT,
                        STAGE1_COLORS[i],
                        f.median_ms / 1e3,
                        f.min_ms / 1e3,
                        f.max_ms / 1e3
                    );
                    let mid = y + BAR / 2.0;
                    let _ = writeln!(
                        body,
                        r#"<path d="M{:.1} {mid} H{:.1} M{:.1} {} V{} M{:.1} {} V{}" class="whisker"/>"#,
                        x(f.min_ms),
                        x(f.max_ms),
                        x(f.min_ms),
                        mid - 4.0,
                        mid + 4.0,
                        x(f.max_ms),
                        mid - 4.0,
                        mid + 4.0
                    );
                    let _ = writeln!(
                        body,
                        r#"<text x="{:.1}" y="{}" class="value">{:.2} s · {:.1} MB</text>"#,
                        x(f.max_ms) + 6.0,
                        y + 13.0,
                        f.median_ms / 1e3,
                        f.size_bytes as f64 / 1e6
                    );
                }
                None => {
                    let _ = writeln!(
                        body,
                        r#"<text x="{LEFT}" y="{}" class="value">{}</text>"#,
                        y + 13.0,
                        m.missing(name)
                    );
                }
            }
            y += BAR + GAP;
        }
        y = timeline(&mut body, m, y, &x);
        y += 22.0;
    }
    // The time axis.
    let axis_y = y;
    let mut ticks = String::new();
    let mut t = 0.0;
    while t <= scale_ms + 1.0 {
        let _ = writeln!(
            ticks,
            r#"<path d="M{:.1} 62 V{axis_y}" class="grid"/><text x="{:.1}" y="{}" class="tick" text-anchor="middle">{:.0} s</text>"#,
            x(t),
            x(t),
            axis_y + 16.0,
            t / 1e3
        );
        t += step_ms;
    }
    let height = axis_y + 60.0;
    let s = &r.sysinfo;
    let mut legend = String::new();
    for (i, name) in ["lethe", "initramfs-tools", "dracut"].iter().enumerate() {
        let lx = LEFT + i as f64 * 150.0;
        let _ = write!(
            legend,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}" class="label">{name}</text>"#,
            axis_y + 30.0,
            STAGE1_COLORS[i],
            lx + 18.0,
            axis_y + 40.0
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">
<style>
.title {{ font-size: 15px; font-weight: bold; }}
.sub {{ font-size: 11px; fill: #555; }}
.machine {{ font-size: 13px; font-weight: bold; }}
.label {{ font-size: 12px; }}
.value {{ font-size: 11px; fill: #333; }}
.step {{ font-size: 9px; fill: #fff; }}
.tick {{ font-size: 10px; fill: #555; }}
.grid {{ stroke: #e4e4e4; stroke-width: 1; }}
.whisker {{ stroke: #333; stroke-width: 1.2; fill: none; }}
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" class="title">Stage 1: kernel start to the exec of stage 2 (median of {runs}, whiskers min to max; initramfs size)</text>
<text x="10" y="38" class="sub">{date}; {machine}; kernel {kernel}, {accel}, {guest}</text>
<text x="10" y="52" class="sub">each machine's own persisted entries plus {extra} directories; the same kernel, disks and work for the three</text>
{ticks}{body}{legend}
</svg>
"##,
        runs = r.runs,
        date = esc(&s.date),
        machine = esc(&s.machine),
        kernel = esc(&s.kernel),
        accel = esc(&s.accel),
        guest = esc(&s.guest),
        extra = r.extra_entries,
    )
}

/// lethe's median boot as one bar of segments (the kernel, then each step) under its
/// machine's bars; returns the next free y.
fn timeline(body: &mut String, m: &MachineBench, mut y: f64, x: &dyn Fn(f64) -> f64) -> f64 {
    let Some(t) = m.lethe_median_timings() else { return y };
    let _ = writeln!(
        body,
        r#"<text x="{}" y="{}" class="label" text-anchor="end">lethe's steps</text>"#,
        LEFT - 8.0,
        y + 13.0
    );
    let mut at = 0.0;
    let mut segment = |name: &str, ms: f64, color: &str, body: &mut String| {
        let (x0, x1) = (x(at), x(at + ms));
        let _ = writeln!(
            body,
            r#"<rect x="{x0:.1}" y="{y}" width="{:.1}" height="{BAR}" fill="{color}"><title>{}: {ms:.0} ms</title></rect>"#,
            (x1 - x0).max(0.5),
            esc(name)
        );
        // A name fits in a segment at about 6 px a character.
        if x1 - x0 > 6.0 * name.len() as f64 + 6.0 {
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{}" class="step">{}</text>"#,
                x0 + 3.0,
                y + 12.0,
                esc(name)
            );
        }
        at += ms;
    };
    segment("kernel", t.kernel_uptime_ms_at_start, KERNEL_COLOR, body);
    for (i, s) in t.steps.iter().enumerate() {
        segment(&s.name, s.ms, STEP_COLORS[i % STEP_COLORS.len()], body);
    }
    y += BAR + 4.0;
    // The steps that take time, with their figures.
    let mut big: Vec<&crate::expect::StepTiming> = t.steps.iter().filter(|s| s.ms >= 20.0).collect();
    big.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let list: Vec<String> = big.iter().map(|s| format!("{} {:.0} ms", s.name, s.ms)).collect();
    let _ = writeln!(
        body,
        r#"<text x="{LEFT}" y="{}" class="value">kernel {:.0} ms; {}</text>"#,
        y + 10.0,
        t.kernel_uptime_ms_at_start,
        esc(&list.join(", "))
    );
    y + 16.0
}

/// Text for SVG: &, < and > escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::{StepTiming, Timings};
    use crate::report::{Figures, Sysinfo};

    fn figures(median_ms: f64) -> Figures {
        Figures {
            median_ms,
            min_ms: median_ms - 100.0,
            max_ms: median_ms + 100.0,
            size_bytes: 2_000_000,
            memory_touched_bytes: None,
            samples_ms: vec![median_ms],
        }
    }

    #[test]
    fn the_chart_has_a_bar_per_stage_1_and_lethes_steps() {
        let r = BenchReport {
            sysinfo: Sysinfo {
                date: "2026-12-06".into(),
                machine: "2 x <cpu>".into(),
                kernel: "6.1".into(),
                accel: "tcg".into(),
                guest: "q".into(),
            },
            runs: 5,
            warm_up: true,
            extra_entries: 100,
            machines: vec![MachineBench {
                name: "btrfs-blank",
                lethe: Some(figures(3000.0)),
                initramfs_tools: Some(figures(12_000.0)),
                dracut: None,
                lethe_timings: vec![Timings {
                    kernel_uptime_ms_at_start: 2500.0,
                    steps: vec![
                        StepTiming { name: "modules".into(), ms: 300.0 },
                        StepTiming { name: "rollback".into(), ms: 150.0 },
                    ],
                    total_ms: 500.0,
                }],
                not_run: Vec::new(),
            }],
        };
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>lethe: median 3.00 s").count(), 1, "{svg}");
        assert_eq!(svg.matches("<title>initramfs-tools: median 12.00 s").count(), 1);
        assert!(svg.contains("no successful boot"), "dracut's missing figures are said");
        assert!(
            svg.contains("<title>modules: 300 ms</title>") && svg.contains("<title>rollback: 150 ms</title>")
        );
        assert!(svg.contains("2 x &lt;cpu&gt;"), "text is escaped");
        // The scale is rounded up past the slowest boot (12.1 s) in steps of 2 s: 14 s.
        assert!(
            svg.contains(">14 s</text>") && !svg.contains(">16 s</text>") && !svg.contains(">13 s</text>")
        );
    }
}
