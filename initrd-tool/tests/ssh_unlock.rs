//! The SSH unlock server for real: lethe's server process on a real port, OpenSSH's client (`/usr/bin/ssh`) connecting to it, and this test process playing the unlocking process that polls the server's answers in `askpass::ask_with`.
#![cfg(feature = "ssh")]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use initrd_tool::askpass::{self, AskError, Request, Verdict};
use initrd_tool::ssh::{Server, SpawnError};
use luks::secret::Secret;

const BIN: &str = env!("CARGO_BIN_EXE_initrd-tool");
const SSH: &str = "/usr/bin/ssh";
const RIGHT: &[u8] = b"correct horse battery";
const MESSAGE: &str = "Please enter passphrase for disk cryptroot (/dev/vda2)";

// ---------------------------------------------------------------------------------------------
// Harness

/// A test that cannot run here fails under CI (CI=true) and is skipped elsewhere.
fn can_run(test: &str) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "needs root (the server chroots and changes user)"
    } else if !Path::new(SSH).is_file() || !Path::new("/usr/bin/ssh-keygen").is_file() {
        "needs OpenSSH's client (ssh, ssh-keygen)"
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A directory with a host key, client keys and a config; removed when dropped.
struct Fixture {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
}

impl Fixture {
    /// `extra`: more fields of the `ssh` section (`"maxConnections": 1, `).
    fn new(extra: &str) -> Fixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/lethe-ssh-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new(BIN).args(["ssh", "keygen", "-f"]).arg(dir.join("host")).output().unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        for name in ["client", "stranger"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(dir.join(name))
                .status()
                .unwrap();
            assert!(st.success());
        }
        let client_pub = fs::read_to_string(dir.join("client.pub")).unwrap();
        let port = free_port();
        let config = dir.join("config.json");
        fs::write(
            &config,
            format!(
                r#"{{"version": 1, "ssh": {{"port": {port}, {extra}"hostKeys": ["{}"], "authorizedKeys": ["{}"]}}}}"#,
                dir.join("host").display(),
                client_pub.trim()
            ),
        )
        .unwrap();
        fs::write(dir.join("pass"), [RIGHT, b"\n"].concat()).unwrap();
        Fixture { dir, port, config }
    }

    fn spawn(&self) -> Server {
        Server::spawn(Path::new(BIN), &self.config).expect("the server starts")
    }

    /// A request on no console, agents in our directory, giving up after a while.
    fn request(&self) -> Request {
        Request {
            id: "cryptsetup:/dev/vda2".into(),
            message: MESSAGE.into(),
            tries: 3,
            console: None,
            agent_dir: self.dir.join("agent"),
            timeout: Some(Duration::from_secs(30)),
        }
    }

    /// OpenSSH's client with `key`, batch mode, this fixture's known_hosts, then `args`.
    fn ssh(&self, key: &str, args: &[&str]) -> Command {
        let mut c = Command::new(SSH);
        c.args(["-F", "/dev/null", "-p", &self.port.to_string(), "-i"])
            .arg(self.dir.join(key))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.dir.join("known_hosts").display()))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "ConnectTimeout=10",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `cmd` on a thread with `input` as its standard input.
    fn run(&self, mut cmd: Command, input: Option<&[u8]>) -> JoinHandle<Output> {
        if let Some(input) = input {
            let file = self.dir.join(format!("input-{}", rand_suffix()));
            fs::write(&file, input).unwrap();
            cmd.stdin(fs::File::open(&file).unwrap());
        }
        std::thread::spawn(move || cmd.output().unwrap())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Accepts [`RIGHT`], rejects the rest as a wrong passphrase; records what it saw.
fn verifier(seen: &mut Vec<Vec<u8>>) -> impl FnMut(&Secret) -> Verdict + '_ {
    |s: &Secret| {
        seen.push(s.as_bytes().to_vec());
        if s.as_bytes() == RIGHT { Verdict::Accept } else { Verdict::Reject("wrong passphrase".into()) }
    }
}

/// Reads a `/proc/<pid>/status` field.
fn status_field(pid: u32, name: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Unlocking

/// `ssh host < passfile`: the line is the answer, verified as the console's would be; the client
/// sees the outcome and exits 0 when the server stops. The host key the client recorded is the
/// one `ssh keygen` made.
#[test]
fn the_right_key_and_passphrase_on_stdin_unlock() {
    if !can_run("the_right_key_and_passphrase_on_stdin_unlock") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    let req = f.request();
    let mut source = server.source(&req);
    let client = f.run(f.ssh("client", &["127.0.0.1"]), Some(&[RIGHT, b"\n"].concat()));
    let mut seen = Vec::new();
    let pass = askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap();
    assert_eq!(pass.as_bytes(), RIGHT);
    assert_eq!(seen, [RIGHT.to_vec()], "verify saw exactly the line, without its newline");
    source.finish(Ok(()));
    server.stop();
    let out = client.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout {stdout:?}, stderr {:?}", text(&out.stderr));
    assert!(stdout.contains(": waiting to unlock\n"), "{stdout:?}");
    assert!(stdout.contains(&format!("{MESSAGE}: ")), "{stdout:?}");
    assert!(stdout.contains("lethe: cryptroot unlocked\n"), "{stdout:?}");
    assert!(stdout.ends_with("lethe: all devices unlocked; booting\n"), "{stdout:?}");

    let fingerprint = |path: &Path| {
        let out = Command::new("ssh-keygen").arg("-lf").arg(path).output().unwrap();
        text(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(fingerprint(&f.dir.join("known_hosts")), fingerprint(&f.dir.join("host.pub")));
}

/// `ssh -tt`: a prompt without echo, a wrong passphrase said to be wrong and asked again, then
/// the right one.
#[test]
fn with_a_pty_a_wrong_passphrase_is_rejected_and_asked_again() {
    if !can_run("with_a_pty_a_wrong_passphrase_is_rejected_and_asked_again") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    let req = f.request();
    let mut source = server.source(&req);
    let client = f.run(f.ssh("client", &["-tt", "127.0.0.1"]), Some(&[b"wrong\n", RIGHT, b"\n"].concat()));
    let mut seen = Vec::new();
    let pass = askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap();
    assert_eq!(pass.as_bytes(), RIGHT);
    assert_eq!(seen, [b"wrong".to_vec(), RIGHT.to_vec()]);
    source.finish(Ok(()));
    server.stop();
    let out = client.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout:?} {:?}", text(&out.stderr));
    assert!(stdout.contains("lethe: wrong passphrase (2 tries left)\r\n"), "{stdout:?}");
    assert_eq!(stdout.matches(&format!("{MESSAGE}: ")).count(), 2, "asked again: {stdout:?}");
    assert!(stdout.contains("lethe: cryptroot unlocked\r\n"), "{stdout:?}");
    assert!(
        !stdout.contains("wrong\r\n") && !stdout.contains(std::str::from_utf8(RIGHT).unwrap()),
        "echoed: {stdout:?}"
    );
}

/// A client connected while nothing is asked is told so, and asked when a device waits.
#[test]
fn a_client_that_comes_early_waits_for_the_question() {
    if !can_run("a_client_that_comes_early_waits_for_the_question") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    // Typed ahead on stdin, kept until the question comes.
    let client = f.run(f.ssh("client", &["127.0.0.1"]), Some(&[RIGHT, b"\n"].concat()));
    std::thread::sleep(Duration::from_millis(1500));
    let req = f.request();
    let mut source = server.source(&req);
    let mut seen = Vec::new();
    askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap();
    source.finish(Ok(()));
    server.stop();
    let out = client.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout:?} {:?}", text(&out.stderr));
    assert!(stdout.contains("lethe: nothing to unlock right now; waiting\n"), "{stdout:?}");
    assert!(stdout.contains("lethe: cryptroot unlocked\n"), "{stdout:?}");
}

/// Stdin mode: when the lines run out after a rejection, the client is told and exits 1.
#[test]
fn stdin_that_runs_out_ends_the_client_with_status_1() {
    if !can_run("stdin_that_runs_out_ends_the_client_with_status_1") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    let mut req = f.request();
    req.timeout = Some(Duration::from_secs(4));
    let mut source = server.source(&req);
    let client = f.run(f.ssh("client", &["127.0.0.1"]), Some(b"wrong\n"));
    let mut seen = Vec::new();
    let e = askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap_err();
    assert!(matches!(e, AskError::TimedOut { .. }), "{e}");
    let out = client.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout:?}");
    assert!(stdout.contains("lethe: wrong passphrase (2 tries left)\n"), "{stdout:?}");
    assert!(stdout.ends_with("lethe: end of input; no passphrase left to try\n"), "{stdout:?}");
    drop(source);
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn a_wrong_key_is_refused() {
    if !can_run("a_wrong_key_is_refused") {
        return;
    }
    let f = Fixture::new("");
    let _server = f.spawn();
    let out = f.ssh("stranger", &["127.0.0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
}

/// Only publickey is offered: a client that will only use a password or keyboard-interactive
/// gets nowhere.
#[test]
fn password_authentication_is_refused() {
    if !can_run("password_authentication_is_refused") {
        return;
    }
    let f = Fixture::new("");
    let _server = f.spawn();
    let out = f
        .ssh(
            "client",
            &[
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "127.0.0.1",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
}

/// `ssh host COMMAND`: the exec request fails (OpenSSH then exits 255 before it shows the
/// server's line on stderr); nothing runs.
#[test]
fn a_command_is_refused_and_nothing_runs() {
    if !can_run("a_command_is_refused_and_nothing_runs") {
        return;
    }
    let f = Fixture::new("");
    let _server = f.spawn();
    let marker = f.dir.join("ran");
    let out = f.ssh("client", &["127.0.0.1", &format!("touch {}", marker.display())]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("exec request failed on channel 0"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "the command ran");
}

/// Remote forwarding is refused (the client gives up on it), and a local forward's channel
/// is never opened.
#[test]
fn forwarding_is_refused() {
    if !can_run("forwarding_is_refused") {
        return;
    }
    let f = Fixture::new("");
    let _server = f.spawn();
    let out = f
        .ssh(
            "client",
            &["-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("remote port forwarding failed"), "{}", text(&out.stderr));

    let local = free_port();
    let mut forward = f
        .ssh("client", &["-N", "-L", &format!("127.0.0.1:{local}:127.0.0.1:{}", f.port), "127.0.0.1"])
        .spawn()
        .unwrap();
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", local)) {
            conn = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = conn.expect("ssh listens for the local forward");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    assert!(got.is_empty(), "data came through a forward: {:?}", text(&got));
    let _ = forward.kill();
    let out = forward.wait_with_output().unwrap();
    assert!(text(&out.stderr).contains("open failed: administratively prohibited"), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Privileges and robustness

/// Once ready, the server is nobody in an empty directory with no capability in any set and
/// no_new_privs.
#[test]
fn the_server_runs_as_nobody_without_capabilities_in_an_empty_root() {
    if !can_run("the_server_runs_as_nobody_without_capabilities_in_an_empty_root") {
        return;
    }
    let f = Fixture::new("");
    let server = f.spawn();
    let pid = server.pid().unwrap();
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Uid").split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
    assert_eq!(status_field(pid, "Gid").split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
    assert_eq!(status_field(pid, "Groups"), "");
    assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), Path::new("/run/lethe/ssh-empty"));
    assert_eq!(fs::read_dir("/run/lethe/ssh-empty").unwrap().count(), 0);
    assert_eq!(fs::metadata("/run/lethe/ssh-empty").unwrap().permissions().mode() & 0o777, 0o555);
}

/// Garbage on the port ends that connection only; a real client still unlocks afterwards.
#[test]
fn garbage_on_the_port_does_not_stop_the_unlock() {
    if !can_run("garbage_on_the_port_does_not_stop_the_unlock") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    for junk in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"SSH-2.0-x\r\n\0\0\0\x10\x04\x14garbagegarbage!!!".to_vec(),
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(&junk);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let req = f.request();
    let mut source = server.source(&req);
    let client = f.run(f.ssh("client", &["127.0.0.1"]), Some(&[RIGHT, b"\n"].concat()));
    let mut seen = Vec::new();
    askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap();
    source.finish(Ok(()));
    server.stop();
    assert_eq!(client.join().unwrap().status.code(), Some(0));
}

/// Beyond maxConnections, a connection is closed at once.
#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    if !can_run("connections_beyond_the_cap_are_closed_at_once") {
        return;
    }
    let f = Fixture::new(r#""maxConnections": 1, "#);
    let _server = f.spawn();
    let mut first = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = [0u8; 13];
    first.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-lethe");
    let out = f.ssh("client", &["127.0.0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Connection closed") || stderr.contains("Connection reset"), "{stderr}");
    drop(first);
}

/// After maxAuthTries failures a connection is cut, even when its next key is the right one.
#[test]
fn authentication_failures_per_connection_are_limited() {
    if !can_run("authentication_failures_per_connection_are_limited") {
        return;
    }
    let f = Fixture::new(r#""maxAuthTries": 1, "#);
    let _server = f.spawn();
    let client = f.dir.join("client");
    // The stranger's key first, then the authorized one, on one connection.
    let out = f.ssh("stranger", &["-i", client.to_str().unwrap(), "127.0.0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Too many authentication attempts"), "{stderr}");
}

/// Beyond maxAuthPerMinute (all connections together), even the right key is refused.
#[test]
fn authentication_attempts_per_minute_are_limited() {
    if !can_run("authentication_attempts_per_minute_are_limited") {
        return;
    }
    let f = Fixture::new(r#""maxAuthPerMinute": 2, "#);
    let _server = f.spawn();
    for _ in 0..2 {
        let out = f.ssh("stranger", &["127.0.0.1"]).output().unwrap();
        assert_eq!(out.status.code(), Some(255));
    }
    let out = f.ssh("client", &["127.0.0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
}

/// The server dying ends its source: the ask goes on with the others (here the agent socket,
/// until the timeout), or stops with NoSource when there is no other.
#[test]
fn a_dead_server_ends_its_source_and_the_others_go_on() {
    if !can_run("a_dead_server_ends_its_source_and_the_others_go_on") {
        return;
    }
    let f = Fixture::new("");
    let mut server = f.spawn();
    let pid = server.pid().unwrap();
    let mut req = f.request();
    req.timeout = Some(Duration::from_secs(2));
    {
        let mut source = server.source(&req);
        Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        let mut seen = Vec::new();
        let e = askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap_err();
        assert!(matches!(e, AskError::TimedOut { .. }), "the agents were still asked: {e}");
    }
    // No agent directory can be made under a file: the dead server was the only source.
    fs::write(f.dir.join("file"), "").unwrap();
    req.agent_dir = f.dir.join("file/agent");
    let mut source = server.source(&req);
    let mut seen = Vec::new();
    let e = askpass::ask_with(&req, &mut [&mut source], &mut verifier(&mut seen)).unwrap_err();
    assert!(matches!(e, AskError::NoSource { .. }), "{e}");
}

/// A bad host key or a port in use: the spawn fails with the reason, and no server is left.
#[test]
fn a_server_that_cannot_start_says_why() {
    if !can_run("a_server_that_cannot_start_says_why") {
        return;
    }
    let f = Fixture::new("");
    fs::set_permissions(f.dir.join("host"), fs::Permissions::from_mode(0o644)).unwrap();
    let e = Server::spawn(Path::new(BIN), &f.config).err().unwrap();
    let host = f.dir.join("host").display().to_string();
    assert!(matches!(e, SpawnError::Refused(_)), "{e}");
    assert!(e.to_string().contains(&host) && e.to_string().contains("wider than 0600"), "{e}");

    fs::set_permissions(f.dir.join("host"), fs::Permissions::from_mode(0o600)).unwrap();
    let _taken = std::net::TcpListener::bind(("0.0.0.0", f.port)).unwrap();
    let e = Server::spawn(Path::new(BIN), &f.config).err().unwrap();
    assert!(e.to_string().contains(&format!("cannot listen on 0.0.0.0:{}", f.port)), "{e}");
}
