//! Asking for a passphrase on the console and through systemd's ask-password agents at once; the first answer the caller accepts wins.
//!
//! One poll loop, no threads: every [`Source`] (the console, the agent socket, and later an SSH
//! unlock server) hands in answers, each answer is checked by the caller's verifier, and every
//! rejected answer, wherever it came from, uses up one of the request's tries. Sources that end
//! (Ctrl-C or end of input on the console) drop out; the others keep going.

pub mod agent;
pub mod console;
pub mod line;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use luks::secret::{MAX_PASSPHRASE, Secret};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::log;

pub use self::agent::AGENT_DIR;

/// The console stage 1 asks on unless told otherwise.
pub const CONSOLE: &str = "/dev/console";

/// What to ask for, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// For agents (`Id=`): `cryptsetup:/dev/vda2`.
    pub id: String,
    /// One line: `Please enter passphrase for disk cryptroot (/dev/vda2)`.
    pub message: String,
    /// Answers that may be rejected before giving up, console and agents together; 0: no limit.
    pub tries: u32,
    /// The terminal to ask on ([`CONSOLE`]); `None`: agents only.
    pub console: Option<PathBuf>,
    /// Where ask files go ([`AGENT_DIR`]).
    pub agent_dir: PathBuf,
    /// Give up after this long; `None`: wait for ever.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request on /dev/console and through /run/systemd/ask-password, without a timeout.
    pub fn new(id: impl Into<String>, message: impl Into<String>, tries: u32) -> Request {
        Request {
            id: id.into(),
            message: message.into(),
            tries,
            console: Some(PathBuf::from(CONSOLE)),
            agent_dir: PathBuf::from(AGENT_DIR),
            timeout: None,
        }
    }
}

/// The verifier's judgement of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Shown to the person asked, so it must not contain the passphrase: `wrong passphrase`.
    Reject(String),
}

/// Why no passphrase was accepted. Nothing secret in it.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no passphrase accepted in {tries} tries")]
    TriesExhausted { tries: u32 },
    #[error("no passphrase accepted within {} s", waited.as_secs_f32())]
    TimedOut { waited: Duration },
    /// The console ended (or there is none) and the agent socket could not be set up.
    #[error("nowhere left to ask for the passphrase of {id}")]
    NoSource { id: String },
    #[error("cannot wait for a passphrase: {0}")]
    Poll(#[source] io::Error),
}

/// What a source had to say when it was read.
#[derive(Debug)]
pub enum Input {
    /// Nothing complete yet: part of a line, or a datagram that is ignored.
    Nothing,
    /// A passphrase to verify.
    Answer(Secret),
    /// An answer that cannot be right (longer than [`MAX_PASSPHRASE`]): rejected without
    /// verifying, with this reason, and it uses up a try like any other.
    Invalid(String),
    /// The source will say nothing more (Ctrl-C, end of input, hang-up).
    Ended,
}

/// A place answers come from: polled for input by the one loop of [`ask_with`].
pub trait Source {
    /// For log lines: `console /dev/console`.
    fn name(&self) -> String;
    /// The descriptor to wait on; `None` once the source has ended.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// Reads what is there: at most one answer per call (see [`Source::has_buffered`]).
    fn read(&mut self) -> io::Result<Input>;
    /// Input already read and not yet handed out (typed ahead after a line): read again
    /// without waiting.
    fn has_buffered(&self) -> bool {
        false
    }
    /// An answer (from any source) was rejected for `reason`; `left` tries remain (`None`:
    /// no limit). Sources show it or ask again.
    fn rejected(&mut self, reason: &str, left: Option<u32>);
}

/// Asks on the console and through the agents of `req`; returns the first answer `verify`
/// accepts. The console's terminal settings are restored and the ask and socket files removed
/// on every way out.
pub fn ask(req: &Request, verify: &mut dyn FnMut(&Secret) -> Verdict) -> Result<Secret, AskError> {
    ask_with(req, &mut [], verify)
}

/// [`ask`] with more sources polled in the same loop (issue 6's SSH unlock server).
pub fn ask_with<'s>(
    req: &Request,
    extra: &mut [&mut (dyn Source + 's)],
    verify: &mut dyn FnMut(&Secret) -> Verdict,
) -> Result<Secret, AskError> {
    let started = Instant::now();
    let deadline = req.timeout.map(|t| started + t);
    let mut console = req.console.as_ref().and_then(|path| {
        console::Console::open(path, &req.message)
            .map_err(|e| log::warn(&format!("cannot ask on {}: {e}", path.display())))
            .ok()
    });
    let mut agent = agent::Agent::create(req)
        .map_err(|e| {
            log::warn(&format!("cannot ask ask-password agents in {}: {e}", req.agent_dir.display()))
        })
        .ok();
    let mut sources: Vec<&mut (dyn Source + 's)> = Vec::new();
    if let Some(c) = console.as_mut() {
        sources.push(c);
    }
    if let Some(a) = agent.as_mut() {
        sources.push(a);
    }
    sources.extend(extra.iter_mut().map(|s| &mut **s));
    let mut rejected = 0u32;
    loop {
        let ready = wait(&mut sources, deadline).map_err(|e| match e {
            Wait::TimedOut => AskError::TimedOut { waited: started.elapsed() },
            Wait::NoSource => AskError::NoSource { id: req.id.clone() },
            Wait::Poll(e) => AskError::Poll(e),
        })?;
        for i in ready {
            let Some(source) = sources.get_mut(i) else { continue };
            let name = source.name();
            let reason = match source.read() {
                Ok(Input::Nothing) => continue,
                Ok(Input::Ended) => {
                    log::info(&format!("{}: {name} ended; waiting for the other sources", req.id));
                    continue;
                }
                Err(e) => {
                    log::warn(&format!("{}: {name} failed ({e}); waiting for the other sources", req.id));
                    continue;
                }
                Ok(Input::Invalid(reason)) => reason,
                Ok(Input::Answer(pass)) => match verify(&pass) {
                    Verdict::Accept => {
                        log::info(&format!("{}: the passphrase from {name} was accepted", req.id));
                        return Ok(pass);
                    }
                    Verdict::Reject(reason) => reason,
                },
            };
            rejected = rejected.saturating_add(1);
            let left = (req.tries > 0).then(|| req.tries.saturating_sub(rejected));
            log::info(&format!("{}: the answer from {name} was rejected: {reason}", req.id));
            for s in sources.iter_mut() {
                s.rejected(&reason, left);
            }
            if left == Some(0) {
                return Err(AskError::TriesExhausted { tries: req.tries });
            }
        }
    }
}

enum Wait {
    TimedOut,
    NoSource,
    Poll(io::Error),
}

/// Indices of the sources that have input: buffered input first, without waiting; else waits
/// until one is readable or the deadline passes.
fn wait(sources: &mut [&mut (dyn Source + '_)], deadline: Option<Instant>) -> Result<Vec<usize>, Wait> {
    let buffered: Vec<usize> =
        sources.iter().enumerate().filter(|(_, s)| s.has_buffered()).map(|(i, _)| i).collect();
    if !buffered.is_empty() {
        return Ok(buffered);
    }
    loop {
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()).filter(|t| !t.is_zero()) {
                Some(left) => Some(Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                }),
                None => return Err(Wait::TimedOut),
            },
            None => None,
        };
        let (index, mut fds): (Vec<usize>, Vec<PollFd<'_>>) = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, PollFd::from_borrowed_fd(s.fd()?, PollFlags::IN))))
            .unzip();
        if fds.is_empty() {
            return Err(Wait::NoSource);
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Wait::Poll(e.into())),
        }
        // Hang-ups and errors count as readable: the read finds out and ends the source.
        let ready: Vec<usize> =
            index.iter().zip(&fds).filter(|(_, f)| !f.revents().is_empty()).map(|(i, _)| *i).collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
    }
}

/// `2 tries left`, `1 try left`, `no tries left`, or nothing without a limit.
pub fn tries_left(left: Option<u32>) -> String {
    match left {
        None => String::new(),
        Some(0) => "no tries left".to_owned(),
        Some(1) => "1 try left".to_owned(),
        Some(n) => format!("{n} tries left"),
    }
}

/// Why an overlong answer is refused (never cut short: a cut passphrase would be a different one).
pub fn too_long() -> String {
    format!("passphrase longer than {MAX_PASSPHRASE} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_left_reads_naturally() {
        assert_eq!(tries_left(Some(2)), "2 tries left");
        assert_eq!(tries_left(Some(1)), "1 try left");
        assert_eq!(tries_left(Some(0)), "no tries left");
        assert_eq!(tries_left(None), "");
    }
}
