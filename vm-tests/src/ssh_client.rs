//! The host's OpenSSH client against a guest's forwarded port: key pairs, a pinned known_hosts, one-shot commands with a deadline, and an interactive session that answers prompts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{self, Context, Error, Result};

/// The OpenSSH client (Debian's openssh-client).
pub const SSH: &str = "/usr/bin/ssh";
/// How long one client run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A client of one guest: which port, which host key it must present.
#[derive(Debug, Clone)]
pub struct Client {
    pub port: u16,
    /// A known_hosts file holding only the initramfs' host key for `[127.0.0.1]:port`.
    known_hosts: PathBuf,
}

/// What one client run did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command, for findings (`ssh -i wrong.key ... 127.0.0.1 id`).
    pub what: String,
    /// `None`: killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// When each `send` of an interactive run was written.
    pub sent_at: Vec<Instant>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// One line for findings: the command, its exit and both outputs.
    pub fn describe(&self) -> String {
        let exit = self.status.map_or("killed at the deadline".to_owned(), |s| s.to_string());
        format!("`{}`: {exit}; stdout {:?}; stderr {:?}", self.what, self.stdout.trim(), self.stderr.trim())
    }
}

/// An ed25519 key pair made by ssh-keygen, without a passphrase: `path` and `path.pub`.
pub fn keygen(path: &Path) -> Result<String> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    error::run(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "vm-tests", "-f"]).arg(path),
    )
    .map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::Setup("ssh-keygen not found: install openssh-client (scripts/install-deps.sh)".into())
        }
        e => e,
    })?;
    public_key(path)
}

/// The public half of `path` (`path.pub`), one line without its newline.
pub fn public_key(path: &Path) -> Result<String> {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    let p = PathBuf::from(p);
    let text = std::fs::read_to_string(&p).context(|| error::at(&p, "cannot read"))?;
    Ok(text.trim().to_owned())
}

impl Client {
    /// A client of 127.0.0.1:`port` that accepts only `host_key_pub` (a `.pub` line).
    pub fn new(dir: &Path, port: u16, host_key_pub: &str) -> Result<Client> {
        let known_hosts = dir.join(format!("known_hosts.{port}"));
        let mut fields = host_key_pub.split_whitespace();
        let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
            return Err(Error::Setup(format!("not a public key line: {host_key_pub:?}")));
        };
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n"))
            .context(|| error::at(&known_hosts, "cannot write"))?;
        Ok(Client { port, known_hosts })
    }

    /// `ssh` with the options every run shares: this port, the pinned host key (a different
    /// one is refused), only `key` offered, no agent, no config file.
    fn command(&self, key: &Path, options: &[&str], remote: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(SSH);
        cmd.args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(key)
            .args(options)
            .arg("root@127.0.0.1")
            .args(remote);
        let name = key.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let what = format!("ssh -i {name} {} 127.0.0.1 {}", options.join(" "), remote.join(" "));
        (cmd, what.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// One run with `stdin` as its input (a file's content: `ssh host < file`), killed after a
    /// minute.
    pub fn run(&self, key: &Path, options: &[&str], remote: &[&str], stdin: &[u8]) -> Result<Run> {
        let (mut cmd, what) = self.command(key, options, remote);
        let mut child = spawn(&mut cmd)?;
        let mut input = child.stdin.take();
        let data = stdin.to_vec();
        // A pipe that is written whole and closed: the client sees end of input after it.
        let writer = std::thread::spawn(move || {
            if let Some(w) = input.as_mut() {
                let _ = w.write_all(&data);
            }
        });
        let (stdout, stderr) = (reader(child.stdout.take()), reader(child.stderr.take()));
        let status = wait_until(&mut child, Instant::now() + RUN_LIMIT);
        let _ = writer.join();
        Ok(Run {
            what,
            status,
            stdout: collect(stdout, Vec::new()),
            stderr: collect(stderr, Vec::new()),
            sent_at: Vec::new(),
        })
    }

    /// Tries `key` until the server answers (anything but a refused or reset connection), for
    /// at most `limit`: the guest's server starts only when stage 1 gets to the unlock. The
    /// last run is returned.
    pub fn wait_until_up(&self, key: &Path, limit: Duration) -> Result<Run> {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.run(key, &["-o", "BatchMode=yes"], &["true"], b"")?;
            let answered = run.stderr.contains("Permission denied") || run.code() == Some(0);
            if answered || Instant::now() >= deadline {
                return Ok(run);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// An interactive run: each `(wait_for, send)` writes `send` once the output (stdout and
    /// stderr together) since the previous send contains `wait_for`. Ends when the client
    /// exits or after a minute.
    pub fn converse(&self, key: &Path, options: &[&str], script: &[(&str, &str)]) -> Result<Run> {
        let (mut cmd, what) = self.command(key, options, &[]);
        let mut child = spawn(&mut cmd)?;
        let mut stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
        for (is_out, pipe) in [
            (true, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
            (false, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        ] {
            let tx = tx.clone();
            if let Some(mut p) = pipe {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = p.read(&mut buf) {
                        if n == 0 || tx.send((is_out, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        drop(tx);
        let deadline = Instant::now() + RUN_LIMIT;
        let (mut stdout, mut stderr, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        let mut sent_at = Vec::new();
        let mut script = script.iter();
        let mut next = script.next();
        loop {
            if let Some((wait_for, send)) = next
                && String::from_utf8_lossy(&seen).contains(wait_for)
            {
                // A person reads the prompt first.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(w) = stdin.as_mut() {
                    let _ = w.write_all(send.as_bytes()).and_then(|()| w.flush());
                }
                sent_at.push(Instant::now());
                seen.clear();
                next = script.next();
                continue;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((is_out, bytes)) => {
                    seen.extend_from_slice(&bytes);
                    if is_out { stdout.extend(bytes) } else { stderr.extend(bytes) }
                }
                Err(_) => break, // both pipes closed, or the deadline
            }
        }
        drop(stdin);
        let status = wait_until(&mut child, Instant::now() + Duration::from_secs(5));
        Ok(Run {
            what,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            sent_at,
        })
    }
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn()
        .context(|| format!("cannot start `{}` (install openssh-client: scripts/install-deps.sh)", SSH))
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut out);
        }
        out
    })
}

fn collect(h: std::thread::JoinHandle<Vec<u8>>, fallback: Vec<u8>) -> String {
    String::from_utf8_lossy(&h.join().unwrap_or(fallback)).into_owned()
}

/// The child's exit status, or `None` after killing it at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for QEMU to take).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context(|| "cannot bind 127.0.0.1:0".into())?;
    let port = l.local_addr().context(|| "cannot read the bound port".into())?.port();
    Ok(port)
}
