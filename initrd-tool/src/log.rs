//! Stage 1's messages: the console for people, /dev/kmsg for the journal, and per-step timings for /run/lethe/timings.json.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static KMSG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Turns debug messages on (`lethe.log=debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(std::sync::atomic::Ordering::Relaxed)
}

/// Opens /dev/kmsg once devtmpfs is mounted; until then messages go to the console only.
pub fn open_kmsg() {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")
        && let Ok(mut k) = KMSG.lock()
    {
        *k = Some(f);
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
    for line in text.lines() {
        let _ = writeln!(std::io::stderr(), "lethe: {line}");
        if let Ok(mut k) = KMSG.lock()
            && let Some(f) = k.as_mut()
        {
            // One write per record; the kernel splits on writes, not lines.
            let _ = f.write_all(format!("<{}>lethe: {line}\n", level as u8).as_bytes());
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
