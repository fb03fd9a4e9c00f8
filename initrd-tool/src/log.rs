//! Stage 1's messages: the console for people, /dev/kmsg for the journal, and per-step timings for /run/lethe/timings.json.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static KMSG: Mutex<Option<Kmsg>> = Mutex::new(None);

/// The kernel log, and what the kernel echoes of it to the console.
struct Kmsg {
    file: std::fs::File,
    /// Records below this level are echoed to the console by the kernel
    /// (the first field of /proc/sys/kernel/printk).
    console_loglevel: u8,
    /// printk_devkmsg before stage 1 set it to "on", restored at handover.
    devkmsg_before: Option<String>,
}

const DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

/// Turns debug messages on (`lethe.log=debug`), also for the libraries
/// stage 1 calls, which speak through the `log` crate.
pub fn set_debug(on: bool) {
    DEBUG.store(on, std::sync::atomic::Ordering::Relaxed);
    // Fails only when already installed, which is fine.
    let _ = ::log::set_logger(&Bridge);
    ::log::set_max_level(if on { ::log::LevelFilter::Debug } else { ::log::LevelFilter::Info });
}

/// Routes the `log` crate's records (rollback's ioctls and zpool attempts,
/// persist-bind's steps) to the console and the kernel log like stage 1's own.
struct Bridge;

impl ::log::Log for Bridge {
    fn enabled(&self, m: &::log::Metadata<'_>) -> bool {
        m.level() <= ::log::Level::Info || debug_enabled()
    }

    fn log(&self, r: &::log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            ::log::Level::Error => Level::Err,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            ::log::Level::Debug | ::log::Level::Trace => Level::Debug,
        };
        msg(level, &format!("{}: {}", r.target().split("::").next().unwrap_or(""), r.args()));
    }

    fn flush(&self) {}
}

pub fn debug_enabled() -> bool {
    DEBUG.load(std::sync::atomic::Ordering::Relaxed)
}

/// Opens /dev/kmsg once devtmpfs and /proc are mounted; until then
/// messages go to the console only. Stage 1 writes a burst of records, so
/// the kernel's rate limit on /dev/kmsg is lifted until [`handover`].
pub fn open_kmsg() {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") else { return };
    let console_loglevel = std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(7);
    let before = std::fs::read_to_string(DEVKMSG).ok().map(|s| s.trim().to_owned());
    // The kernel takes the value only with its newline. Fails when
    // printk.devkmsg= on the command line locked it: fine.
    let devkmsg_before = match std::fs::write(DEVKMSG, "on\n") {
        Ok(()) => before.filter(|b| b != "on"),
        Err(_) => None,
    };
    if let Ok(mut k) = KMSG.lock() {
        *k = Some(Kmsg { file, console_loglevel, devkmsg_before });
    }
}

/// Puts the kernel log's rate limit back as stage 2 expects it.
pub fn handover() {
    if let Ok(mut k) = KMSG.lock()
        && let Some(kmsg) = k.as_mut()
        && let Some(before) = kmsg.devkmsg_before.take()
    {
        let _ = std::fs::write(DEVKMSG, format!("{before}\n"));
    }
}

/// Kernel log levels used.
#[derive(Clone, Copy)]
pub enum Level {
    Err = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

/// One message to the console (stderr) and to the kernel log.
pub fn msg(level: Level, text: &str) {
    if matches!(level, Level::Debug) && !debug_enabled() {
        return;
    }
    let mut k = KMSG.lock().ok();
    let kmsg = k.as_mut().and_then(|k| k.as_mut());
    // The kernel echoes records below the console log level itself;
    // printing those too would show every line twice. Others (debug lines
    // under lethe.log=debug, everything when `quiet` was not asked for but
    // the level is high) go to the console directly.
    let echoed = kmsg.as_ref().is_some_and(|k| (level as u8) < k.console_loglevel);
    let to_console = !echoed && (kmsg.is_none() || debug_enabled() || (level as u8) <= Level::Warn as u8);
    let mut kmsg = kmsg;
    for line in text.lines() {
        if to_console {
            let _ = writeln!(std::io::stderr(), "lethe: {line}");
        }
        if let Some(k) = kmsg.as_mut() {
            // One write per record; the kernel splits on writes, not lines.
            let _ = k.file.write_all(format!("<{}>lethe: {line}\n", level as u8).as_bytes());
        }
    }
}

pub fn info(text: &str) {
    msg(Level::Info, text);
}

pub fn warn(text: &str) {
    msg(Level::Warn, text);
}

pub fn error(text: &str) {
    msg(Level::Err, text);
}

pub fn debug(text: &str) {
    msg(Level::Debug, text);
}

/// Step durations, written to /run/lethe/timings.json before switch_root.
#[derive(Debug, Serialize)]
pub struct Timings {
    /// CLOCK_BOOTTIME (kernel uptime) when stage 1 started, in ms.
    pub kernel_uptime_ms_at_start: f64,
    pub steps: Vec<StepTiming>,
    pub total_ms: f64,
    #[serde(skip)]
    started: Option<Instant>,
}

#[derive(Debug, Serialize)]
pub struct StepTiming {
    pub name: &'static str,
    pub ms: f64,
    pub ok: bool,
}

impl Timings {
    pub fn start() -> Timings {
        let up = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Timings {
            kernel_uptime_ms_at_start: up.tv_sec as f64 * 1e3 + up.tv_nsec as f64 / 1e6,
            steps: Vec::new(),
            total_ms: 0.0,
            started: Some(Instant::now()),
        }
    }

    pub fn record(&mut self, name: &'static str, ms: f64, ok: bool) {
        self.steps.push(StepTiming { name, ms, ok });
        self.total_ms = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1e3);
    }

    /// Writes the JSON file (creating its directory).
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)
    }
}
