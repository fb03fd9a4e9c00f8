//! One boot in QEMU: the serial console read line by line, stopped at stage 2's result, at stage 1's FAILED message, at power-off, or at the timeout.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{self, Context, Result};
use crate::expect::Report;
use crate::host::Accel;

/// How long the rest of a FAILED message may take to arrive.
const FAILED_GRACE: Duration = Duration::from_secs(5);
/// How long QEMU may take to exit after stage 2's line (sync, power off).
const POWER_OFF_GRACE: Duration = Duration::from_secs(30);
/// The prefix of a stage-1 failure line.
pub const FAILED_PREFIX: &str = "lethe: FAILED at ";

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
    /// Raw images, attached as virtio disks in this order (vda, vdb, ...).
    pub disks: Vec<PathBuf>,
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    pub timeout: Duration,
    /// Print console lines as they arrive (after `prefix`).
    pub echo: Option<String>,
}

/// How a boot ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stage 2 ran and reported.
    Stage2(Report),
    /// Stage 2 printed its line but it did not parse.
    Stage2Garbled { line: String, error: String },
    /// A busybox guest's script printed its last line ([`crate::guest::DONE`]).
    GuestDone,
    /// Stage 1 failed: the step and the message lines (the FAILED line and
    /// what followed it up to the prompt).
    Failed { step: String, message: Vec<String> },
    /// QEMU exited with neither a result nor a failure (a kernel panic, a
    /// crash of stage 2).
    Exited { status: String },
    /// Nothing conclusive within the timeout; QEMU was killed.
    TimedOut,
}

/// One boot's console and outcome.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: Vec<String>,
    pub outcome: Outcome,
    /// Host time from QEMU's start to the outcome.
    pub elapsed: Duration,
}

impl Boot {
    /// Whether any console line contains `needle`.
    pub fn console_has(&self, needle: &str) -> bool {
        self.console.iter().any(|l| l.contains(needle))
    }

    /// One line saying how the boot ended.
    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Stage2(r) => format!(
                "stage 2 reported boot {} at {} (guest clock), {} failure(s)",
                r.boot.map_or("?".into(), |b| b.to_string()),
                r.uptime_s.map_or("?".into(), |u| format!("{u:.2} s")),
                r.failures.len()
            ),
            Outcome::Stage2Garbled { error, .. } => format!("stage 2's line did not parse: {error}"),
            Outcome::GuestDone => {
                let r = crate::guest::GuestResults::from_console(&self.console);
                format!("the guest script finished: {} passed, {} failed", r.passed.len(), r.failed.len())
            }
            Outcome::Failed { message, .. } => failure_text(message, 2),
            Outcome::Exited { status } => {
                match self.console.iter().find_map(|l| l.split_once("Kernel panic - ")) {
                    Some((_, panic)) => {
                        format!("kernel panic ({panic}); QEMU exited ({status}) without a result")
                    }
                    None => format!("QEMU exited ({status}) without a result"),
                }
            }
            Outcome::TimedOut if self.console.is_empty() => {
                "not one console line before the timeout (the kernel did not start?); QEMU killed".into()
            }
            Outcome::TimedOut => "no result before the timeout; QEMU killed".into(),
        }
    }
}

/// The first `lines` lines of a FAILED message as one line.
pub fn failure_text(message: &[String], lines: usize) -> String {
    let mut parts = message.iter().take(lines).map(|l| l.strip_prefix("lethe: ").unwrap_or(l).trim());
    let mut text = parts.next().unwrap_or_default().to_owned();
    for p in parts.filter(|p| !p.starts_with("hint:") && !p.starts_with("press ")) {
        text.push(' ');
        text.push_str(p);
    }
    text
}

/// Boots `spec` and reads its console until an outcome.
pub fn boot(spec: &BootSpec) -> Result<Boot> {
    let mut cmd = Command::new(crate::host::qemu_binary());
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
        .args(spec.accel.qemu_args())
        .args(["-smp", &spec.cpus.to_string(), "-m", &spec.memory_mib.to_string()])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&spec.kernel)
        .arg("-initrd")
        .arg(&spec.initrd)
        .arg("-append")
        .arg(&spec.append);
    for d in &spec.disks {
        cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio", d.display()));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context(|| {
        format!("cannot start `{}` (install qemu-system-x86: scripts/install-deps.sh)", error::display(&cmd))
    })?;
    let lines = read_lines(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let mut reader = ConsoleReader { lines, console: Vec::new(), echo: spec.echo.clone() };
    let outcome = watch(&mut reader, start + spec.timeout);
    // Stopping QEMU (a no-op when it has exited); the pipes then close.
    let _ = child.kill();
    let status = child.wait().context(|| "cannot wait for QEMU".into())?;
    reader.drain();
    let outcome = match outcome {
        Some(o) => o,
        None => {
            let stderr = stderr.join().unwrap_or_default();
            let status = if stderr.trim().is_empty() {
                status.to_string()
            } else {
                format!("{status}; stderr: {}", stderr.trim())
            };
            Outcome::Exited { status }
        }
    };
    Ok(Boot { console: reader.console, outcome, elapsed: start.elapsed() })
}

struct ConsoleReader {
    lines: mpsc::Receiver<String>,
    console: Vec<String>,
    echo: Option<String>,
}

impl ConsoleReader {
    /// The next line before `deadline`; `Err(true)` at the deadline,
    /// `Err(false)` once the console closed (QEMU exited).
    fn next(&mut self, deadline: Instant) -> Result<String, bool> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                if let Some(prefix) = &self.echo {
                    println!("{prefix}{line}");
                }
                self.console.push(line.clone());
                Ok(line)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(true),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(false),
        }
    }

    /// Whatever is left after QEMU stopped.
    fn drain(&mut self) {
        let far = Instant::now() + Duration::from_secs(2);
        while self.next(far).is_ok() {}
    }
}

/// Reads until an outcome; `None` when QEMU exited without one.
fn watch(r: &mut ConsoleReader, deadline: Instant) -> Option<Outcome> {
    loop {
        let line = match r.next(deadline) {
            Ok(l) => l,
            Err(true) => return Some(Outcome::TimedOut),
            Err(false) => return None,
        };
        if line.contains(crate::guest::DONE) {
            // The script powers off next.
            let grace = (Instant::now() + POWER_OFF_GRACE).min(deadline);
            while r.next(grace).is_ok() {}
            return Some(Outcome::GuestDone);
        }
        if let Some(parsed) = Report::from_console_line(&line) {
            let outcome = match parsed {
                Ok(report) => Outcome::Stage2(report),
                Err(e) => Outcome::Stage2Garbled { line: line.clone(), error: e.to_string() },
            };
            // Let stage 2 sync and power off; then QEMU exits by itself.
            let grace = (Instant::now() + POWER_OFF_GRACE).min(deadline);
            while r.next(grace).is_ok() {}
            return Some(outcome);
        }
        if let Some(at) = line.find(FAILED_PREFIX) {
            let rest = &line[at + FAILED_PREFIX.len()..];
            let step = rest.split(':').next().unwrap_or_default().trim().to_owned();
            let mut message = vec![line[at..].to_owned()];
            // The rest of the message, up to the prompt (init then waits
            // for console input forever).
            let grace = (Instant::now() + FAILED_GRACE).min(deadline);
            // Stage 1's own lines start with "lethe: ".
            while let Ok(l) = r.next(grace) {
                if l.starts_with("lethe: ") {
                    let prompt = l.starts_with("lethe: press ");
                    message.push(l);
                    if prompt {
                        break;
                    }
                }
            }
            return Some(Outcome::Failed { step, message });
        }
    }
}

/// A thread turning the console bytes into lines (CR and escape
/// sequences stripped, invalid UTF-8 replaced).
fn read_lines(out: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = out {
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(clean(&buf)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    rx
}

fn read_all(err: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// A console line as text: without the line end, carriage returns and
/// terminal escape sequences (the firmware clears the screen).
fn clean(raw: &[u8]) -> String {
    strip_timestamp(clean_escapes(raw))
}

/// Drops the kernel's `[    3.141592] ` prefix: stage 1's messages reach
/// the console through the kernel log, and read the same either way.
fn strip_timestamp(line: String) -> String {
    let stamp = line
        .strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .filter(|(t, _)| !t.is_empty() && t.bytes().all(|b| b == b' ' || b == b'.' || b.is_ascii_digit()));
    match stamp {
        Some((_, rest)) => rest.to_owned(),
        None => line,
    }
}

fn clean_escapes(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.next_if_eq(&'[').is_some() {
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes_and_line_ends() {
        assert_eq!(clean(b"\x1b[2J\x1b[01;01Hlethe: ok\r\n"), "lethe: ok");
        assert_eq!(clean(b"[    3.141592] lethe: modules ok (1.0 ms)\r\n"), "lethe: modules ok (1.0 ms)");
        assert_eq!(clean(b"[ok] not a stamp\n"), "[ok] not a stamp");
        assert_eq!(clean(b"a\xffb\n"), "a\u{fffd}b");
    }

    fn reader(lines: &[&str]) -> ConsoleReader {
        let (tx, rx) = mpsc::channel();
        for l in lines {
            tx.send(l.to_string()).unwrap();
        }
        ConsoleReader { lines: rx, console: Vec::new(), echo: None }
    }

    #[test]
    fn a_failed_message_is_collected_up_to_the_prompt() {
        let mut r = reader(&[
            "[    1.0] Run /init as init process",
            "lethe: mount-early ok (1.0 ms)",
            "[    1.2] random: lethe: FAILED at config: invalid config /etc/lethe/config.json:",
            "lethe:   mounts./persist.device: expected UUID=, LABEL=, PARTUUID= or a /dev/ path, got \"persist\"",
            "[    1.3] unrelated kernel line",
            "[    1.3] lethe:   mounts./persist.device: (the kernel log's copy)",
            "lethe: hint: fix the configuration",
            "lethe: press r then Enter to retry, c to continue without this step",
            "lethe: never read",
        ]);
        let Some(Outcome::Failed { step, message }) = watch(&mut r, Instant::now() + Duration::from_secs(5))
        else {
            panic!("no failure found");
        };
        assert_eq!(step, "config");
        assert_eq!(message.len(), 4, "{message:#?}");
        assert_eq!(
            failure_text(&message, 2),
            "FAILED at config: invalid config /etc/lethe/config.json: mounts./persist.device: expected UUID=, LABEL=, PARTUUID= or a /dev/ path, got \"persist\""
        );
        assert!(message[0].starts_with("lethe: FAILED at config: invalid config"));
        assert!(message[1].contains("mounts./persist.device"));
    }

    #[test]
    fn the_console_closing_without_a_result_is_no_outcome() {
        let mut r = reader(&["Kernel panic - not syncing: Attempted to kill init!"]);
        assert!(watch(&mut r, Instant::now() + Duration::from_secs(5)).is_none());
        assert_eq!(r.console.len(), 1);
    }
}
