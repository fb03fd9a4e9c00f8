//! One boot in QEMU: the serial console read line by line (and typed into when asked), stopped at stage 2's result, at stage 1's FAILED message, at power-off, or at the timeout.

use std::fmt;
use std::io::{Read, Write};
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
/// How long the harness waits between seeing what it waits for and
/// typing: a person reads the prompt first, and a program that turns echo
/// off just after printing its prompt must not lose the keys.
const TYPING_PAUSE: Duration = Duration::from_millis(250);
/// How much unmatched console output the typist keeps while it waits.
const TYPIST_WINDOW: usize = 64 << 10;

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
    /// A virtio NIC on QEMU's user network, the guest's port 22 forwarded to this port on
    /// 127.0.0.1 only; `None`: no network at all.
    pub ssh_port: Option<u16>,
    /// Back the guest's RAM by this file (made anew, removed after the boot) to measure how
    /// much of it the guest touched: a page is allocated in the file when first written.
    pub memory_file: Option<PathBuf>,
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

/// Text the harness types on the serial console (the guest's
/// /dev/console) once the console has shown `after`.
#[derive(Clone)]
pub struct ConsoleInput {
    /// What the text is ("the passphrase", "a wrong passphrase"), for the
    /// echo and the findings; the text itself is never shown.
    pub label: String,
    /// Typed once this appears in the output that follows the previous input
    /// (or the start).
    pub after: String,
    /// The keys, line end included.
    pub text: String,
}

impl ConsoleInput {
    /// A line (`text` and a newline) typed after `after`.
    pub fn line(label: &str, after: &str, text: &str) -> ConsoleInput {
        ConsoleInput { label: label.into(), after: after.into(), text: format!("{text}\n") }
    }
}

impl fmt::Debug for ConsoleInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleInput")
            .field("label", &self.label)
            .field("after", &self.after)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// An input the harness typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed {
    /// The input's label.
    pub label: String,
    /// Host time from QEMU's start to the typing.
    pub at: Duration,
    /// How many console lines came before it (the one it answered
    /// included).
    pub after_lines: usize,
}

/// One boot's console and outcome.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: Vec<String>,
    /// When each console line arrived: host time since QEMU's start.
    pub line_at: Vec<Duration>,
    /// When QEMU was started.
    pub started: Instant,
    pub outcome: Outcome,
    /// Host time from QEMU's start to the outcome.
    pub elapsed: Duration,
    /// What the harness typed, in order (fewer than asked when the console
    /// never showed what an input waited for).
    pub typed: Vec<Typed>,
    /// With [`BootSpec::memory_file`]: the guest RAM touched (ever written) by the time stage
    /// 2's line arrived, in bytes; the highest memory use since power-on cannot be lower.
    pub memory_touched: Option<u64>,
}

impl Boot {
    /// When the first console line containing `needle` arrived.
    pub fn line_time(&self, needle: &str) -> Option<Instant> {
        let i = self.console.iter().position(|l| l.contains(needle))?;
        Some(self.started + *self.line_at.get(i)?)
    }

    /// Whether any console line contains `needle`.
    pub fn console_has(&self, needle: &str) -> bool {
        self.console.iter().any(|l| l.contains(needle))
    }

    /// How many times `needle` occurs in the console.
    pub fn console_count(&self, needle: &str) -> usize {
        self.console.iter().map(|l| l.matches(needle).count()).sum()
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
    boot_typing(spec, &[])
}

/// [`boot`], typing each of `input` in turn on the serial console once the
/// console shows what it waits for. Without input the guest's console has
/// no input at all, as before.
pub fn boot_typing(spec: &BootSpec, input: &[ConsoleInput]) -> Result<Boot> {
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
    if let Some(f) = &spec.memory_file {
        // A stale file would count pages of an earlier guest.
        let _ = std::fs::remove_file(f);
        cmd.args([
            "-object",
            &format!(
                "memory-backend-file,id=ram,size={}M,mem-path={},share=on",
                spec.memory_mib,
                f.display()
            ),
            "-machine",
            "memory-backend=ram",
        ]);
    }
    if let Some(port) = spec.ssh_port {
        // The guest sees QEMU's usual 10.0.2.0/24 with a DHCP server at 10.0.2.2; nothing but
        // the one forwarded port reaches it, and only from this machine.
        cmd.args(["-netdev", &format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22")])
            .args(["-device", "virtio-net-pci,netdev=net0"]);
    }
    let stdin = if input.is_empty() { Stdio::null() } else { Stdio::piped() };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context(|| {
        format!("cannot start `{}` (install qemu-system-x86: scripts/install-deps.sh)", error::display(&cmd))
    })?;
    let typist = Typist::new(child.stdin.take(), input.to_vec(), start);
    let events = read_console(child.stdout.take(), typist);
    let stderr = read_all(child.stderr.take());
    let mut reader = ConsoleReader {
        events,
        console: Vec::new(),
        line_at: Vec::new(),
        start,
        typed: Vec::new(),
        echo: spec.echo.clone(),
        memory_file: spec.memory_file.clone(),
        memory_touched: None,
    };
    let outcome = watch(&mut reader, start + spec.timeout);
    // Stopping QEMU (a no-op when it has exited); the pipes then close.
    let _ = child.kill();
    let status = child.wait().context(|| "cannot wait for QEMU".into())?;
    reader.drain();
    if let Some(f) = &spec.memory_file {
        let _ = std::fs::remove_file(f);
    }
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
    Ok(Boot {
        console: reader.console,
        line_at: reader.line_at,
        started: start,
        outcome,
        elapsed: start.elapsed(),
        typed: reader.typed,
        memory_touched: reader.memory_touched,
    })
}

/// What the console thread hands on.
#[derive(Debug)]
enum Event {
    Line(String),
    /// An input was typed: its label and the host time since QEMU's start.
    Typed(String, Duration),
}

struct ConsoleReader {
    events: mpsc::Receiver<Event>,
    console: Vec<String>,
    line_at: Vec<Duration>,
    start: Instant,
    typed: Vec<Typed>,
    echo: Option<String>,
    memory_file: Option<PathBuf>,
    memory_touched: Option<u64>,
}

impl ConsoleReader {
    /// Notes how much of the guest's RAM file has been allocated.
    fn sample_memory(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Some(f) = &self.memory_file {
            self.memory_touched = std::fs::metadata(f).ok().map(|m| m.blocks() * 512);
        }
    }

    /// The next line before `deadline`; `Err(true)` at the deadline,
    /// `Err(false)` once the console closed (QEMU exited). Typing events
    /// on the way are recorded.
    fn next(&mut self, deadline: Instant) -> Result<String, bool> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Event::Line(line)) => {
                    if let Some(prefix) = &self.echo {
                        println!("{prefix}{line}");
                    }
                    self.console.push(line.clone());
                    self.line_at.push(self.start.elapsed());
                    return Ok(line);
                }
                Ok(Event::Typed(label, at)) => {
                    if let Some(prefix) = &self.echo {
                        println!("{prefix}[vm-tests typed {label} on the serial console]");
                    }
                    self.typed.push(Typed { label, at, after_lines: self.console.len() });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(true),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(false),
            }
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
            r.sample_memory();
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

/// Types the inputs in turn, each once the console output since the
/// previous one contains what it waits for.
struct Typist {
    keyboard: Option<Box<dyn Write + Send>>,
    input: std::vec::IntoIter<ConsoleInput>,
    next: Option<ConsoleInput>,
    /// Output since the last input (at most [`TYPIST_WINDOW`] bytes).
    seen: Vec<u8>,
    start: Instant,
}

impl Typist {
    fn new(
        keyboard: Option<impl Write + Send + 'static>,
        input: Vec<ConsoleInput>,
        start: Instant,
    ) -> Typist {
        let mut input = input.into_iter();
        let next = input.next();
        let keyboard = keyboard.map(|k| Box::new(k) as Box<dyn Write + Send>);
        Typist { keyboard, input, next, seen: Vec::new(), start }
    }

    /// Takes in console output; returns whether the next input's cue has
    /// appeared (then call [`Typist::type_next`]).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let Some(next) = &self.next else { return false };
        self.seen.extend_from_slice(bytes);
        let cue = next.after.as_bytes();
        if let Some(at) = find(&self.seen, cue) {
            self.seen.drain(..at + cue.len());
            return true;
        }
        if self.seen.len() > TYPIST_WINDOW {
            // Keep enough to match a cue split across reads.
            self.seen.drain(..self.seen.len().saturating_sub(cue.len()));
        }
        false
    }

    /// Types the input whose cue was seen; returns its label and when, or
    /// `None` when QEMU no longer takes input. The output that followed
    /// the cue counts toward the next input's cue.
    fn type_next(&mut self) -> Option<(String, Duration)> {
        let input = self.next.take()?;
        self.next = self.input.next();
        std::thread::sleep(TYPING_PAUSE);
        let keyboard = self.keyboard.as_mut()?;
        if keyboard.write_all(input.text.as_bytes()).and_then(|()| keyboard.flush()).is_err() {
            self.keyboard = None;
            return None;
        }
        Some((input.label, self.start.elapsed()))
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A thread turning the console bytes into lines (CR and escape
/// sequences stripped, invalid UTF-8 replaced) and typing the inputs as
/// their cues appear. A line still open when an input is typed (a prompt
/// waits on its own line) is handed on as a line of its own then.
fn read_console(out: Option<impl Read + Send + 'static>, mut typist: Typist) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut out) = out {
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut chunk = vec![0u8; 4096];
            loop {
                let n = match out.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let bytes = chunk.get(..n).unwrap_or_default();
                for &b in bytes {
                    line.push(b);
                    if b == b'\n' {
                        if tx.send(Event::Line(clean(&line))).is_err() {
                            return;
                        }
                        line.clear();
                    }
                }
                let mut cued = typist.feed(bytes);
                while cued {
                    if !line.is_empty() {
                        if tx.send(Event::Line(clean(&line))).is_err() {
                            return;
                        }
                        line.clear();
                    }
                    let Some((label, at)) = typist.type_next() else { break };
                    if tx.send(Event::Typed(label, at)).is_err() {
                        return;
                    }
                    cued = typist.feed(&[]);
                }
            }
            if !line.is_empty() {
                let _ = tx.send(Event::Line(clean(&line)));
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
            tx.send(Event::Line(l.to_string())).unwrap();
        }
        ConsoleReader {
            events: rx,
            console: Vec::new(),
            line_at: Vec::new(),
            start: Instant::now(),
            typed: Vec::new(),
            echo: None,
            memory_file: None,
            memory_touched: None,
        }
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

    /// A console that hands out its output in the given pieces, one per read.
    struct Pieces(std::collections::VecDeque<&'static [u8]>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(p) = self.0.pop_front() else { return Ok(0) };
            buf[..p.len()].copy_from_slice(p);
            Ok(p.len())
        }
    }

    /// The keys typed, shared with the test.
    #[derive(Clone, Default)]
    struct Keys(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Keys {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events(pieces: &[&'static [u8]], input: Vec<ConsoleInput>) -> (Vec<String>, String) {
        let keys = Keys::default();
        let typist = Typist::new(Some(keys.clone()), input, Instant::now());
        let rx = read_console(Some(Pieces(pieces.iter().copied().collect())), typist);
        let seen = rx
            .iter()
            .map(|e| match e {
                Event::Line(l) => format!("line {l}"),
                Event::Typed(label, _) => format!("typed {label}"),
            })
            .collect();
        let typed = String::from_utf8(keys.0.lock().unwrap().clone()).unwrap();
        (seen, typed)
    }

    #[test]
    fn inputs_are_typed_in_turn_each_after_its_cue_in_the_output_that_follows_the_last() {
        let prompt = "Please enter passphrase for disk cryptroot";
        let (seen, typed) = events(
            &[
                b"[    1.0] lethe: devices ok\r\n",
                b"Please enter pass",
                b"phrase for disk cryptroot: ",
                b"\r\nlethe: wrong passphrase for cryptroot\r\n",
                b"Please enter passphrase for disk cryptroot: ",
                b"\r\nlethe: wrong passphrase for cryptroot\r\n",
                b"Please enter passphrase for disk cryptroot: ",
                b"\r\nlethe: unlock ok\r\n",
            ],
            vec![
                ConsoleInput::line("a wrong passphrase", prompt, "nope"),
                // The prompt answered first is no cue for this one.
                ConsoleInput::line("another wrong passphrase", prompt, "no"),
                ConsoleInput::line("the passphrase", "wrong passphrase", "right"),
            ],
        );
        assert_eq!(typed, "nope\nno\nright\n");
        assert_eq!(
            seen,
            [
                "line lethe: devices ok",
                // The open prompt line is handed on when the input is typed.
                "line Please enter passphrase for disk cryptroot: ",
                "typed a wrong passphrase",
                "line ",
                "line lethe: wrong passphrase for cryptroot",
                "line Please enter passphrase for disk cryptroot: ",
                "typed another wrong passphrase",
                "line ",
                "line lethe: wrong passphrase for cryptroot",
                "typed the passphrase",
                "line Please enter passphrase for disk cryptroot: ",
                "line lethe: unlock ok",
            ]
        );
    }

    #[test]
    fn an_input_whose_cue_never_shows_is_not_typed() {
        let (seen, typed) = events(
            &[b"Please enter passphrase for disk other: ", b"\r\nlethe: FAILED at unlock: no\r\n"],
            vec![ConsoleInput::line("the passphrase", "for disk cryptroot", "right")],
        );
        assert_eq!(typed, "");
        assert_eq!(
            seen,
            ["line Please enter passphrase for disk other: ", "line lethe: FAILED at unlock: no"]
        );
    }

    #[test]
    fn typed_text_is_not_in_the_debug_output() {
        let i = ConsoleInput::line("the passphrase", "Please enter", "hunter2");
        let d = format!("{i:?}");
        assert!(!d.contains("hunter2") && d.contains("the passphrase") && d.contains("8 bytes"), "{d}");
    }

    #[test]
    fn the_console_closing_without_a_result_is_no_outcome() {
        let mut r = reader(&["Kernel panic - not syncing: Attempted to kill init!"]);
        assert!(watch(&mut r, Instant::now() + Duration::from_secs(5)).is_none());
        assert_eq!(r.console.len(), 1);
    }
}
