//! The SSH unlock server (issue 6): a shell-less, privilege-separated process that asks SSH clients for passphrases, and the unlocking process's side of it.
//!
//! The unlocking process (root) starts `initrd-tool ssh serve` with one end of a SOCK_SEQPACKET
//! socket pair. The server reads its host keys, binds its ports, locks itself into an empty
//! directory as nobody without capabilities and says "ready". From then on the unlocking
//! process tells it which device waits ([`Server::source`]), the server relays what clients
//! type as answers, and [`SshSource`] feeds them into the same poll loop as the console
//! (`askpass::ask_with`). The unlocking process never blocks on the link and trusts nothing
//! the server sends: every datagram is decoded strictly ([`link`]), and a server that dies just
//! ends its source.

pub mod cli;
pub mod config;
pub mod keys;
pub mod link;
pub mod privsep;
pub mod prompt;
pub mod server;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use luks::secret::Secret;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use self::link::{MAX_MESSAGE, Outcome, ToParent, ToServer};
use crate::askpass::{self, Input, Source};
use crate::log;

pub use self::config::Ssh;

/// How long the server may take to start (read keys, bind, drop privileges).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Server::stop`] lets it say goodbye before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create the link to the SSH server: {0}")]
    Link(#[source] io::Error),
    #[error("cannot start the SSH server {}: {source}", exe.display())]
    Exec { exe: PathBuf, source: io::Error },
    /// It said why (a bad host key, the port in use, ...).
    #[error("the SSH server did not start: {0}")]
    Refused(String),
    #[error("the SSH server exited before it was ready ({0})")]
    Exited(String),
    #[error("the SSH server was not ready within {} s", START_TIMEOUT.as_secs())]
    Timeout,
}

/// The server process, started by the unlocking process.
pub struct Server {
    child: Option<Child>,
    /// `None` once the server has gone away.
    link: Option<OwnedFd>,
    seq: u32,
}

impl Server {
    /// Starts `exe ssh serve --config <config_path> --link-fd 0` (exe: /proc/self/exe in stage
    /// 1; tests pass the binary; the link is the child's standard input) and returns once the child has bound its port and dropped
    /// privileges (it says so over the link), or with an error naming why (bad host key, port
    /// in use, ...). The child reads the `ssh` section of the same config file.
    pub fn spawn(exe: &Path, config_path: &Path) -> Result<Server, SpawnError> {
        let (ours, theirs) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .map_err(|e| SpawnError::Link(e.into()))?;
        rustix::io::ioctl_fionbio(&ours, true).map_err(|e| SpawnError::Link(e.into()))?;
        let child = Command::new(exe)
            .arg0("initrd-tool")
            .args(["ssh", "serve", "--config"])
            .arg(config_path)
            .args(["--link-fd", "0"])
            // The link is the child's standard input: dup2'd in the child only, so no other
            // process spawned meanwhile inherits it (std closes our copy after the spawn).
            .stdin(Stdio::from(theirs))
            .spawn()
            .map_err(|source| SpawnError::Exec { exe: exe.to_owned(), source })?;
        let mut server = Server { child: Some(child), link: Some(ours), seq: 0 };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits for "ready"; anything else ends the server.
    fn wait_ready(&mut self) -> Result<(), SpawnError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let result = loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break Err(SpawnError::Timeout);
            };
            let Some(link) = &self.link else { break Err(SpawnError::Exited("link closed".into())) };
            let mut fds = [rustix::event::PollFd::new(link, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => break Err(SpawnError::Link(e.into())),
            }
            match self.receive() {
                Received::Message(ToParent::Ready) => break Ok(()),
                Received::Message(ToParent::Failed(why)) => break Err(SpawnError::Refused(why)),
                Received::Message(_) | Received::Nothing => continue,
                Received::Malformed(e) => break Err(SpawnError::Refused(format!("malformed message: {e}"))),
                Received::Gone => break Err(SpawnError::Exited(self.reap())),
            }
        };
        if result.is_err() {
            self.kill();
        }
        result
    }

    /// One datagram from the server, decoded, never blocking.
    fn receive(&mut self) -> Received {
        let Some(link) = &self.link else { return Received::Gone };
        let mut buf = Secret::zeroed(MAX_MESSAGE + 1);
        match rustix::net::recv(link, buf.as_mut_bytes(), RecvFlags::DONTWAIT | RecvFlags::TRUNC) {
            Ok((0, _)) => {
                self.link = None;
                Received::Gone
            }
            Ok((n, len)) if n > MAX_MESSAGE || len > n => {
                Received::Malformed(link::DecodeError::TooLarge(len.max(n)))
            }
            Ok((n, _)) => match ToParent::decode(buf.as_bytes().get(..n).unwrap_or_default()) {
                Ok(m) => Received::Message(m),
                Err(e) => Received::Malformed(e),
            },
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Received::Nothing,
            Err(e) => {
                log::warn(&format!("ssh: the link to the SSH server failed: {e}"));
                self.link = None;
                Received::Gone
            }
        }
    }

    /// Sends without ever blocking: a server that does not read loses the message.
    fn send(&mut self, m: &ToServer) {
        let Some(link) = &self.link else { return };
        match rustix::net::send(link, &m.encode(), SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => {
                log::warn("ssh: the SSH server is not reading; a message was dropped")
            }
            Err(e) => {
                log::warn(&format!("ssh: the link to the SSH server failed: {e}"));
                self.link = None;
            }
        }
    }

    /// A source for one passphrase request: tells the server (and its connected clients)
    /// which device waits and the prompt.
    pub fn source(&mut self, req: &askpass::Request) -> SshSource<'_> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&ToServer::Request { seq, device: device_name(req), message: req.message.clone() });
        SshSource { server: self, seq, answered_by: None, finished: false }
    }

    /// The server's process id (for tests and logs); `None` once it is reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything is unlocked: clients are told "all devices unlocked; booting", connections
    /// closed (exit-status 0), the child exits; waits at most 2 s, then kills it. Also what
    /// Drop does.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.send(&ToServer::Stop);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(_))) | None => {
                    self.child = None;
                    self.link = None;
                    return;
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(10)),
                Some(Err(_)) => break,
            }
        }
        log::warn("ssh: the SSH server did not stop in time; killing it");
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.link = None;
    }

    /// How the child ended (it has closed the link, so it is exiting).
    fn reap(&mut self) -> String {
        let Some(c) = self.child.as_mut() else { return "already reaped".into() };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status.to_string();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        "closed the link".into()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut_down();
    }
}

enum Received {
    Message(ToParent),
    Malformed(link::DecodeError),
    Nothing,
    Gone,
}

/// implements askpass::Source: fd = the link; read() -> Input::Answer(Secret) / Input::Ended
/// when the server died; rejected() forwards the reason and tries left to the client that
/// answered (and the others).
pub struct SshSource<'a> {
    server: &'a mut Server,
    seq: u32,
    /// The client whose answer is being verified.
    answered_by: Option<u32>,
    finished: bool,
}

impl SshSource<'_> {
    /// The request is over: `Ok(())` this device is unlocked (say so to clients), `Err(reason)`
    /// it failed. Drop without it = just "over".
    pub fn finish(mut self, outcome: Result<(), String>) {
        let outcome = match outcome {
            Ok(()) => Outcome::Unlocked,
            Err(why) => Outcome::Failed(why),
        };
        self.finished = true;
        self.server.send(&ToServer::Finished { seq: self.seq, outcome });
    }
}

impl Drop for SshSource<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.server.send(&ToServer::Finished { seq: self.seq, outcome: Outcome::Over });
        }
    }
}

impl Source for SshSource<'_> {
    fn name(&self) -> String {
        "ssh".to_owned()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.server.link.as_ref().map(|l| l.as_fd())
    }

    fn read(&mut self) -> io::Result<Input> {
        match self.server.receive() {
            Received::Nothing => Ok(Input::Nothing),
            Received::Gone => {
                let how = self.server.reap();
                log::warn(&format!("ssh: the SSH server went away ({how}); SSH clients cannot answer"));
                Ok(Input::Ended)
            }
            Received::Malformed(e) => {
                log::warn(&format!("ssh: ignored a malformed message from the SSH server: {e}"));
                Ok(Input::Nothing)
            }
            Received::Message(ToParent::Answer { seq, client, passphrase }) if seq == self.seq => {
                self.answered_by = Some(client);
                Ok(Input::Answer(passphrase))
            }
            Received::Message(ToParent::TooLong { seq, client }) if seq == self.seq => {
                self.answered_by = Some(client);
                Ok(Input::Invalid(askpass::too_long()))
            }
            // Late answers to an earlier request, or messages that belong to the start.
            Received::Message(_) => Ok(Input::Nothing),
        }
    }

    fn rejected(&mut self, reason: &str, left: Option<u32>) {
        let client = self.answered_by.take();
        let m = ToServer::Rejected { seq: self.seq, client, reason: reason.to_owned(), left };
        self.server.send(&m);
    }
}

/// `cryptroot` from `Please enter passphrase for disk cryptroot (/dev/vda2)`, else the id.
fn device_name(req: &askpass::Request) -> String {
    req.message
        .strip_prefix("Please enter passphrase for disk ")
        .and_then(|rest| rest.split(" (").next())
        .filter(|n| !n.is_empty())
        .unwrap_or(&req.id)
        .to_owned()
}

/// ` (2 tries left)`, ` (1 try left)`, ` (no tries left)`, or `; try again` without a limit.
fn say_tries(left: Option<u32>) -> String {
    match left {
        None => "; try again".to_owned(),
        Some(n) => format!(" ({})", askpass::tries_left(Some(n))),
    }
}

/// The `ssh` section of the config file at `path` (the other sections are not the server's
/// business; `check-config` validates the whole file).
pub fn load_section(path: &Path) -> Result<Ssh, String> {
    let bytes = persist_bind::config::read_config(path)
        .map_err(|e| e.0.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let Some(section) = doc.get("ssh") else {
        return Err(format!("{}: no `ssh` section", path.display()));
    };
    let ssh: Ssh = serde_path_to_error::deserialize(section)
        .map_err(|e| format!("{}: ssh.{}: {}", path.display(), e.path(), e.inner()))?;
    let errors = ssh.validate();
    if !errors.is_empty() {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("{}: {}", path.display(), all.join("; ")));
    }
    Ok(ssh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_name_comes_from_the_question() {
        let req = askpass::Request::new(
            "cryptsetup:/dev/vda2",
            "Please enter passphrase for disk cryptroot (/dev/vda2)",
            3,
        );
        assert_eq!(device_name(&req), "cryptroot");
        let req = askpass::Request::new("cryptsetup:/dev/vda2", "Passphrase?", 3);
        assert_eq!(device_name(&req), "cryptsetup:/dev/vda2");
    }

    #[test]
    fn tries_are_said_as_the_console_says_them() {
        assert_eq!(say_tries(Some(2)), " (2 tries left)");
        assert_eq!(say_tries(Some(0)), " (no tries left)");
        assert_eq!(say_tries(None), "; try again");
    }
}
