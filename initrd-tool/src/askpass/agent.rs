//! systemd's ask-password protocol from the asking side: an ask file agents find by inotify, a datagram socket for their answers, answers taken from root only.
//!
//! The format is systemd's docs/PASSWORD_AGENTS.md: `ask.<random>` in the agent directory holds
//! an `[Ask]` section (PID, Socket, AcceptCached, Echo, NotAfter on CLOCK_MONOTONIC in µs,
//! Message, Id, Icon); it is written under another name and renamed, so a watching agent never
//! reads half of it. An agent answers with one datagram, `+passphrase` (a trailing NUL
//! allowed) or `-` for "cancelled"; the kernel attaches the sender's credentials
//! (SO_PASSCRED), and anything not from uid 0 is dropped unread. A rejected answer replaces the
//! ask file with a new one, so agents ask again.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use luks::secret::{MAX_PASSPHRASE, Secret};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};

use super::{Input, Request, Source, too_long};
use crate::log;

/// Where systemd's agents look for questions.
pub const AGENT_DIR: &str = "/run/systemd/ask-password";
/// The XDG icon name systemd-cryptsetup uses for disk passphrases.
const ICON: &str = "drive-harddisk";

/// A question posted for agents, with the socket their answers arrive on.
pub struct Agent {
    dir: PathBuf,
    socket: UnixDatagram,
    socket_path: PathBuf,
    /// The ask file agents see now; `None` after the last try.
    ask_path: Option<PathBuf>,
    /// Its contents (the question; nothing secret).
    contents: String,
}

impl Agent {
    /// Binds the answer socket and posts the question.
    pub fn create(req: &Request) -> io::Result<Agent> {
        let dir = req.agent_dir.clone();
        DirBuilder::new().recursive(true).mode(0o755).create(&dir)?;
        let (socket, socket_path) = bind(&dir)?;
        let not_after = match req.timeout {
            Some(t) => monotonic_usec().saturating_add(u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
            None => 0,
        };
        let contents = format!(
            "[Ask]\nPID={}\nSocket={}\nAcceptCached=0\nEcho=0\nNotAfter={not_after}\nMessage={}\nId={}\nIcon={ICON}\n",
            std::process::id(),
            socket_path.display(),
            one_line(&req.message),
            one_line(&req.id),
        );
        let mut agent = Agent { dir, socket, socket_path, ask_path: None, contents };
        // On failure, dropping `agent` removes the socket again.
        agent.post()?;
        Ok(agent)
    }

    /// The ask file agents see now.
    pub fn ask_path(&self) -> Option<&Path> {
        self.ask_path.as_deref()
    }

    /// Writes a new ask file: under a temporary name first, then renamed into place.
    fn post(&mut self) -> io::Result<()> {
        let id = random_hex();
        let tmp = self.dir.join(format!("tmp.{id}"));
        let ask = self.dir.join(format!("ask.{id}"));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| f.write_all(self.contents.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &ask));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        log::debug(&format!("asked agents in {}", ask.display()));
        self.ask_path = Some(ask);
        Ok(())
    }

    /// Takes the question down.
    fn withdraw(&mut self) {
        if let Some(ask) = self.ask_path.take()
            && let Err(e) = fs::remove_file(&ask)
        {
            log::warn(&format!("cannot remove {}: {e}", ask.display()));
        }
    }
}

impl Source for Agent {
    fn name(&self) -> String {
        format!("ask-password agents ({})", self.dir.display())
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.socket.as_fd())
    }

    fn read(&mut self) -> io::Result<Input> {
        // '+', the longest passphrase, a NUL; a longer datagram is reported truncated.
        let mut buf = Secret::zeroed(MAX_PASSPHRASE + 2);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
        let msg = match rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(buf.as_mut_bytes())],
            &mut control,
            flags,
        ) {
            Ok(msg) => msg,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Ok(Input::Nothing),
            Err(e) => return Err(e.into()),
        };
        let mut from_root = false;
        // Draining also closes any descriptors a sender slipped in.
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmCredentials(c) = m {
                from_root = c.uid.is_root();
            }
        }
        if !from_root {
            log::warn(&format!("ignored an answer to {} not sent by root", self.socket_path.display()));
            return Ok(Input::Nothing);
        }
        let truncated = msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > buf.len();
        let got = buf.as_bytes().get(..msg.bytes.min(MAX_PASSPHRASE + 2)).unwrap_or_default();
        Ok(match got.split_first() {
            Some((b'+', _)) if truncated => Input::Invalid(too_long()),
            Some((b'+', rest)) => {
                let pass = rest.split(|b| *b == 0).next().unwrap_or_default();
                if pass.len() > MAX_PASSPHRASE {
                    Input::Invalid(too_long())
                } else {
                    Input::Answer(Secret::from_slice(pass))
                }
            }
            Some((b'-', _)) => {
                // One agent's user gave up; the console and other agents may still answer.
                log::info("an ask-password agent cancelled its query");
                Input::Nothing
            }
            _ => {
                log::debug(&format!("ignored a malformed datagram on {}", self.socket_path.display()));
                Input::Nothing
            }
        })
    }

    fn rejected(&mut self, _reason: &str, left: Option<u32>) {
        // A new file, not the old one rewritten: agents that showed the question and answered
        // it see it disappear and a new one come.
        self.withdraw();
        if left != Some(0)
            && let Err(e) = self.post()
        {
            log::warn(&format!("cannot ask agents again in {}: {e}", self.dir.display()));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.withdraw();
        if let Err(e) = fs::remove_file(&self.socket_path) {
            log::warn(&format!("cannot remove {}: {e}", self.socket_path.display()));
        }
    }
}

/// A datagram socket `sck.<random>` in `dir` that receives its senders' credentials, readable
/// and writable by root only.
fn bind(dir: &Path) -> io::Result<(UnixDatagram, PathBuf)> {
    let mut tries = 0;
    loop {
        let path = dir.join(format!("sck.{}", random_hex()));
        match UnixDatagram::bind(&path) {
            Ok(socket) => {
                socket.set_nonblocking(true)?;
                let ready = rustix::net::sockopt::set_socket_passcred(&socket, true)
                    .map_err(io::Error::from)
                    .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o600)));
                if let Err(e) = ready {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                return Ok((socket, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// 16 hex digits that differ between calls: file names only, so no blocking for entropy.
fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 8];
    let random = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::INSECURE)
        .or_else(|_| rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK))
        .is_ok_and(|n| n == 8);
    let n = if random {
        u64::from_le_bytes(b)
    } else {
        monotonic_usec() ^ u64::from(std::process::id()) << 40 ^ COUNTER.fetch_add(1, Ordering::Relaxed)
    };
    format!("{n:016x}")
}

/// CLOCK_MONOTONIC in microseconds, the clock of `NotAfter=`.
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let usecs = u64::try_from(t.tv_nsec).unwrap_or(0) / 1000;
    secs.saturating_mul(1_000_000).saturating_add(usecs)
}

/// A value for one line of the ask file.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn values_stay_on_one_line() {
        assert_eq!(one_line("disk\ncryptroot\r(x)"), "disk cryptroot (x)");
    }
}
