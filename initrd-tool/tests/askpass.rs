//! Asking for a passphrase for real: typing into a pty that stands for the console, answering as an ask-password agent over the socket, and systemd's own `systemd-tty-ask-password-agent` answering in a private mount namespace.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use initrd_tool::askpass::{self, AskError, Input, Request, Source, Verdict};
use luks::secret::{MAX_PASSPHRASE, Secret};
use rustix::termios::LocalModes;

// ---------------------------------------------------------------------------------------------
// Harness

/// A test that cannot run here fails under CI (CI=true) and is skipped elsewhere.
fn unavailable(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/lib/systemd", "/usr/lib/systemd"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// How long any one wait in these tests may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// A directory for ask files, removed when dropped. Short: socket paths are limited to 108 bytes.
struct AgentDir(PathBuf);

impl AgentDir {
    fn new() -> AgentDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/lethe-ask-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        AgentDir(dir)
    }

    fn entries(&self) -> Vec<String> {
        entries(&self.0)
    }

    fn wait_ask(&self, not: Option<&Path>) -> PathBuf {
        wait_ask(&self.0, not)
    }
}

impl Drop for AgentDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The names in an agent directory (ask files, sockets, anything left behind).
fn entries(dir: &Path) -> Vec<String> {
    let Ok(d) = fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> =
        d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Waits for an ask file in `dir` other than `not`.
fn wait_ask(dir: &Path, not: Option<&Path>) -> PathBuf {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = entries(dir)
            .into_iter()
            .filter(|n| n.starts_with("ask."))
            .map(|n| dir.join(n))
            .find(|p| Some(p.as_path()) != not);
        if let Some(p) = found {
            return p;
        }
        assert!(Instant::now() < deadline, "no new ask file in {} (has {:?})", dir.display(), entries(dir));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `[Ask]` section of an ask file.
fn parse_ask(path: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path).expect("ask file");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("[Ask]"), "{text}");
    lines.filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Answers the question in `ask` as an agent running as root would.
fn answer(ask: &Path, datagram: &[u8]) {
    let socket = parse_ask(ask).remove("Socket").expect("Socket=");
    let sent = UnixDatagram::unbound().expect("socket").send_to(datagram, &socket).expect("send");
    assert_eq!(sent, datagram.len());
}

/// A pseudo-terminal standing in for the console: the test types into the master side and
/// collects all the terminal shows. It keeps a slave descriptor of its own, so the terminal
/// stays up between the opens and closes of the code under test.
struct Pty {
    master: File,
    slave: File,
    path: PathBuf,
    shown: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Pty {
    fn open() -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let path =
            PathBuf::from(ptsname(&master, Vec::new()).expect("ptsname").into_string().expect("utf-8"));
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC;
        let slave = File::from(rustix::fs::open(&path, flags, rustix::fs::Mode::empty()).expect("slave"));
        let master = File::from(master);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().expect("clone");
            let shown = Arc::clone(&shown);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO once every slave descriptor is closed.
                while let Ok(n @ 1..) = master.read(&mut buf) {
                    shown.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            })
        };
        Pty { master, slave, path, shown, reader: Some(reader) }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().expect("lock")).into_owned()
    }

    /// Waits until `text` has been shown `times` times in all.
    fn wait_for(&self, text: &str, times: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.shown().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} not shown {times} times; the terminal shows:\n{}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn type_(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).expect("type");
    }

    /// Echo and line editing, as a terminal is left for the next program.
    fn modes(&self) -> LocalModes {
        rustix::termios::tcgetattr(&self.slave).expect("tcgetattr").local_modes
    }

    /// Everything shown, once the terminal is closed.
    fn close(mut self) -> String {
        let shown = Arc::clone(&self.shown);
        drop(self.slave);
        drop(self.master);
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        String::from_utf8_lossy(&shown.lock().expect("lock")).into_owned()
    }
}

fn request(console: Option<&Path>, dir: &AgentDir, tries: u32) -> Request {
    request_in(console, &dir.0, tries)
}

fn request_in(console: Option<&Path>, dir: &Path, tries: u32) -> Request {
    Request {
        id: "cryptsetup:/dev/vdz2".into(),
        message: "Please enter passphrase for disk test (/dev/vdz2)".into(),
        tries,
        console: console.map(Path::to_owned),
        agent_dir: dir.to_owned(),
        timeout: None,
    }
}

const PROMPT: &str = "Please enter passphrase for disk test (/dev/vdz2): ";

/// What an `ask` in its own thread returned: the accepted passphrase (as text, for the test),
/// and every answer the verifier was shown.
type Outcome = (Result<String, AskError>, Vec<String>);

/// Runs `ask` in a thread with a verifier that accepts `right` and rejects the rest.
fn ask_in_thread(req: Request, right: &'static str) -> JoinHandle<Outcome> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut verify = |p: &Secret| {
            let text = String::from_utf8_lossy(p.as_bytes()).into_owned();
            let ok = text == right;
            seen.push(text);
            if ok { Verdict::Accept } else { Verdict::Reject("wrong passphrase".into()) }
        };
        let result = askpass::ask(&req, &mut verify);
        (result.map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned()), seen)
    })
}

fn outcome(handle: JoinHandle<Outcome>) -> Outcome {
    handle.join().expect("ask thread")
}

fn assert_restored(pty: &Pty) {
    let modes = pty.modes();
    assert!(modes.contains(LocalModes::ECHO | LocalModes::ICANON), "terminal left as {modes:?}");
}

// ---------------------------------------------------------------------------------------------
// The console

#[test]
fn the_right_passphrase_typed_on_the_console_is_accepted_without_echo() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "hunter2");
    pty.wait_for(PROMPT, 1);
    assert!(!pty.modes().contains(LocalModes::ECHO), "echo is on while asking");
    pty.type_(b"hunter2\r");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "hunter2");
    assert_eq!(seen, ["hunter2"]);
    assert_restored(&pty);
    assert_eq!(dir.entries(), Vec::<String>::new(), "ask file and socket left behind");
    let shown = pty.close();
    assert!(!shown.contains("hunter"), "the passphrase was echoed: {shown:?}");
}

#[test]
fn two_wrong_passphrases_then_the_right_one() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "right-one");
    pty.wait_for(PROMPT, 1);
    pty.type_(b"wrong-one\n");
    pty.wait_for("wrong passphrase, 2 tries left", 1);
    pty.wait_for(PROMPT, 2);
    pty.type_(b"wrong-two\r\n");
    pty.wait_for("wrong passphrase, 1 try left", 1);
    pty.wait_for(PROMPT, 3);
    pty.type_(b"right-one\r");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "right-one");
    // CR LF ended one line, not two: no empty answer used up a try.
    assert_eq!(seen, ["wrong-one", "wrong-two", "right-one"]);
    assert_restored(&pty);
    let shown = pty.close();
    for typed in ["wrong-one", "wrong-two", "right-one"] {
        assert!(!shown.contains(typed), "{typed} was echoed: {shown:?}");
    }
}

#[test]
fn when_the_tries_are_used_up_asking_ends_and_the_terminal_is_restored() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "never typed");
    for (i, left) in ["2 tries left", "1 try left", "no tries left"].iter().enumerate() {
        pty.wait_for(PROMPT, i + 1);
        pty.type_(format!("wrong{i}\n").as_bytes());
        pty.wait_for(&format!("wrong passphrase, {left}"), 1);
    }
    let (result, seen) = outcome(asking);
    assert!(matches!(result, Err(AskError::TriesExhausted { tries: 3 })), "{result:?}");
    assert_eq!(seen, ["wrong0", "wrong1", "wrong2"]);
    assert_eq!(result.expect_err("exhausted").to_string(), "no passphrase accepted in 3 tries");
    assert_restored(&pty);
    assert_eq!(dir.entries(), Vec::<String>::new());
    let shown = pty.close();
    assert_eq!(shown.matches(PROMPT).count(), 3, "no prompt after the last try: {shown:?}");
}

#[test]
fn backspace_and_ctrl_u_edit_the_line() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "hunter2");
    pty.wait_for(PROMPT, 1);
    // Ctrl-U drops the line so far; DEL and BS remove one byte; other control bytes are ignored.
    pty.type_(b"oops\x15hunter33\x7f\x08\x1b3\x7f2\n");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "hunter2");
    assert_eq!(seen, ["hunter2"]);
}

#[test]
fn backspace_removes_a_whole_utf8_character() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "grüße");
    pty.wait_for(PROMPT, 1);
    // "grüß€" then one backspace takes the three bytes of the euro sign, not one of them.
    pty.type_("grüß€\x7fe\n".as_bytes());
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "grüße");
    assert_eq!(seen, ["grüße"]);
}

#[test]
fn a_passphrase_longer_than_the_limit_is_refused_not_cut() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "short");
    pty.wait_for(PROMPT, 1);
    let long = vec![b'a'; MAX_PASSPHRASE + 1];
    pty.type_(&long);
    pty.type_(b"\n");
    pty.wait_for(&format!("passphrase longer than {MAX_PASSPHRASE} bytes, 2 tries left"), 1);
    // Exactly the limit is a passphrase like any other (rejected here by the verifier).
    pty.wait_for(PROMPT, 2);
    pty.type_(&long[..MAX_PASSPHRASE]);
    pty.type_(b"\n");
    pty.wait_for("wrong passphrase, 1 try left", 1);
    pty.wait_for(PROMPT, 3);
    pty.type_(b"short\n");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "short");
    assert_eq!(
        seen.iter().map(String::len).collect::<Vec<_>>(),
        [MAX_PASSPHRASE, 5],
        "the overlong one reached the verifier"
    );
}

#[test]
fn ctrl_c_on_the_console_stops_it_and_an_agent_can_still_answer() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "from-agent");
    pty.wait_for(PROMPT, 1);
    pty.type_(b"half\x03");
    pty.wait_for("console input stopped (Ctrl-C)", 1);
    assert_restored(&pty);
    // Typing now reaches nobody.
    pty.type_(b"ignored\n");
    let ask = dir.wait_ask(None);
    answer(&ask, b"+from-agent");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "from-agent");
    assert_eq!(seen, ["from-agent"]);
}

#[test]
fn end_of_input_on_the_console_leaves_the_agents_until_the_timeout() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let mut req = request(Some(&pty.path), &dir, 3);
    req.timeout = Some(Duration::from_millis(600));
    let start = Instant::now();
    let asking = ask_in_thread(req, "x");
    pty.wait_for(PROMPT, 1);
    pty.type_(b"\x04");
    pty.wait_for("console input stopped (Ctrl-D)", 1);
    let (result, seen) = outcome(asking);
    assert!(matches!(result, Err(AskError::TimedOut { .. })), "{result:?}");
    assert!(start.elapsed() >= Duration::from_millis(600), "{:?}", start.elapsed());
    assert!(seen.is_empty());
    assert_eq!(dir.entries(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// The agent protocol

#[test]
fn an_agent_answer_wins_against_a_silent_console() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "agent-pass");
    let ask = dir.wait_ask(None);
    let fields = parse_ask(&ask);
    let socket = PathBuf::from(&fields["Socket"]);
    assert_eq!(fields["PID"], std::process::id().to_string());
    assert_eq!(socket.parent(), Some(dir.0.as_path()));
    assert!(socket.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sck.")), "{socket:?}");
    assert_eq!(fs::metadata(&socket).expect("socket").permissions().mode() & 0o777, 0o600);
    assert_eq!(fields["AcceptCached"], "0");
    assert_eq!(fields["Echo"], "0");
    assert_eq!(fields["NotAfter"], "0");
    assert_eq!(fields["Message"], "Please enter passphrase for disk test (/dev/vdz2)");
    assert_eq!(fields["Id"], "cryptsetup:/dev/vdz2");
    assert_eq!(fields["Icon"], "drive-harddisk");
    assert_eq!(dir.entries().len(), 2, "one ask file and one socket, no temporary file: {:?}", dir.entries());
    pty.wait_for(PROMPT, 1);
    // A trailing NUL, as systemd's agents send it.
    answer(&ask, b"+agent-pass\0");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "agent-pass");
    assert_eq!(seen, ["agent-pass"]);
    assert_eq!(dir.entries(), Vec::<String>::new(), "ask file and socket removed");
    assert_restored(&pty);
}

#[test]
fn a_rejected_agent_answer_posts_a_new_ask_file() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 3), "second");
    let first = dir.wait_ask(None);
    answer(&first, b"+first");
    let again = dir.wait_ask(Some(&first));
    assert!(!first.exists(), "the rejected question is taken down");
    // The console learns of it too, and is asked again.
    pty.wait_for("wrong passphrase, 2 tries left", 1);
    pty.wait_for(PROMPT, 2);
    answer(&again, b"+second");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "second");
    assert_eq!(seen, ["first", "second"]);
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn console_and_agent_answers_share_the_tries() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(Some(&pty.path), &dir, 2), "never");
    let ask = dir.wait_ask(None);
    answer(&ask, b"+by-agent");
    pty.wait_for("wrong passphrase, 1 try left", 1);
    pty.wait_for(PROMPT, 2);
    pty.type_(b"by-console\n");
    let (result, seen) = outcome(asking);
    assert!(matches!(result, Err(AskError::TriesExhausted { tries: 2 })), "{result:?}");
    assert_eq!(seen, ["by-agent", "by-console"]);
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn an_overlong_agent_answer_is_refused_and_a_cancel_changes_nothing() {
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(None, &dir, 2), "ok");
    let ask = dir.wait_ask(None);
    // A cancel from one agent: the question stays up, no try used.
    answer(&ask, b"-");
    let mut long = vec![b'+'];
    long.extend(std::iter::repeat_n(b'x', MAX_PASSPHRASE + 1));
    answer(&ask, &long);
    let again = dir.wait_ask(Some(&ask));
    answer(&again, b"+ok");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "ok");
    assert_eq!(seen, ["ok"], "the overlong answer reached the verifier");
}

const SENDER: &str = "LETHE_ASKPASS_SEND_TO";

#[test]
fn answers_from_anyone_but_root_are_ignored() {
    // Re-run as an unprivileged sender: one datagram to the socket named in the environment.
    if let Ok(socket) = std::env::var(SENDER) {
        UnixDatagram::unbound().expect("socket").send_to(b"+right", socket).expect("send as nobody");
        return;
    }
    if !is_root() || tool_path("setpriv").is_none() {
        return unavailable(
            "answers_from_anyone_but_root_are_ignored",
            "needs root and setpriv (util-linux)",
        );
    }
    let dir = AgentDir::new();
    let asking = ask_in_thread(request(None, &dir, 3), "right");
    let ask = dir.wait_ask(None);
    let socket = parse_ask(&ask).remove("Socket").expect("Socket=");
    // Let anyone reach the socket, so only the credentials check stands in the way.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod");
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().expect("test binary"))
        .args(["answers_from_anyone_but_root_are_ignored", "--exact", "--test-threads=1"])
        .env(SENDER, &socket)
        .stdout(Stdio::null())
        .status()
        .expect("setpriv");
    assert!(status.success(), "the unprivileged sender failed");
    // Datagrams are read in order: once root's wrong answer has been rejected, nobody's right
    // one was read before it, and ignored.
    answer(&ask, b"+wrong");
    let again = dir.wait_ask(Some(&ask));
    answer(&again, b"+right");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "right");
    assert_eq!(seen, ["wrong", "right"]);
}

#[test]
fn a_timeout_ends_asking_and_agents_are_told_when() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let mut req = request(Some(&pty.path), &dir, 3);
    req.timeout = Some(Duration::from_millis(500));
    let before = askpass::agent::monotonic_usec();
    let start = Instant::now();
    let asking = ask_in_thread(req, "x");
    let not_after: u64 = parse_ask(&dir.wait_ask(None))["NotAfter"].parse().expect("NotAfter");
    let after = askpass::agent::monotonic_usec();
    assert!(not_after >= before + 500_000 && not_after <= after + 500_000, "{before} {not_after} {after}");
    let (result, seen) = outcome(asking);
    let waited = start.elapsed();
    assert!(matches!(result, Err(AskError::TimedOut { .. })), "{result:?}");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(seen.is_empty());
    assert_restored(&pty);
    assert_eq!(dir.entries(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// More sources

/// What a source was told of rejections: the reason, and the tries left.
type Told = Arc<Mutex<Vec<(String, Option<u32>)>>>;

/// A source fed through a datagram socket pair, one answer per datagram (what issue 6's SSH
/// server will be), recording what it is told.
struct Fed {
    rx: UnixDatagram,
    told: Told,
}

impl Source for Fed {
    fn name(&self) -> String {
        "test feed".into()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.as_fd())
    }

    fn read(&mut self) -> std::io::Result<Input> {
        let mut buf = Secret::zeroed(MAX_PASSPHRASE);
        let n = self.rx.recv(buf.as_mut_bytes())?;
        buf.truncate(n);
        Ok(Input::Answer(buf))
    }

    fn rejected(&mut self, reason: &str, left: Option<u32>) {
        self.told.lock().expect("lock").push((reason.to_owned(), left));
    }
}

#[test]
fn another_source_answers_in_the_same_loop() {
    let pty = Pty::open();
    let dir = AgentDir::new();
    let (tx, rx) = UnixDatagram::pair().expect("pair");
    let told: Told = Arc::default();
    let mut fed = Fed { rx, told: Arc::clone(&told) };
    let req = request(Some(&pty.path), &dir, 0);
    let asking = {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut verify = |p: &Secret| {
                seen.push(String::from_utf8_lossy(p.as_bytes()).into_owned());
                if p.as_bytes() == b"fed" { Verdict::Accept } else { Verdict::Reject("no".into()) }
            };
            let r = askpass::ask_with(&req, &mut [&mut fed], &mut verify);
            (r.map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned()), seen)
        })
    };
    pty.wait_for(PROMPT, 1);
    pty.type_(b"typed\n");
    // Without a limit (tries 0) the console says so instead of counting.
    pty.wait_for("no, try again", 1);
    tx.send(b"fed").expect("feed");
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "fed");
    assert_eq!(seen, ["typed", "fed"]);
    assert_eq!(
        *told.lock().expect("lock"),
        [("no".to_owned(), None)],
        "the extra source hears of rejections"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd's own agent

const CHILD: &str = "LETHE_ASKPASS_NS_TEST";

#[test]
fn systemd_tty_ask_password_agent_answers_through_the_protocol() {
    const NAME: &str = "systemd_tty_ask_password_agent_answers_through_the_protocol";
    let Some(agent) = tool_path("systemd-tty-ask-password-agent") else {
        return unavailable(NAME, "systemd-tty-ask-password-agent not installed (apt-get install systemd)");
    };
    if std::env::var(CHILD).as_deref() != Ok(NAME) {
        // Run again in a private mount namespace, with a tmpfs of our own on the directory
        // the agent reads, so no real question on this host is seen or answered.
        if !is_root() || tool_path("unshare").is_none() || tool_path("setsid").is_none() {
            return unavailable(NAME, "needs root, unshare and setsid (util-linux)");
        }
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(std::env::current_exe().expect("test binary"))
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, NAME)
            .output()
            .expect("unshare");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{NAME} failed in its namespace:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        return;
    }
    let dir = Path::new(askpass::AGENT_DIR);
    fs::create_dir_all(dir).expect("agent dir");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs on {}", dir.display());

    let mut req = request_in(None, dir, 3);
    req.message = "Please enter passphrase for disk interop (/dev/vdz9)".into();
    let asking = ask_in_thread(req, "typed-into-systemd");
    let first = wait_ask(dir, None);

    // The agent asks on its controlling terminal: a pty, made so by setsid --ctty.
    let pty = Pty::open();
    let tty = || File::options().read(true).write(true).open(&pty.path).expect("tty");
    let mut child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(&agent)
        .arg("--query")
        .stdin(tty())
        .stdout(tty())
        .stderr(tty())
        .spawn()
        .expect("systemd-tty-ask-password-agent");
    pty.wait_for("Please enter passphrase for disk interop (/dev/vdz9)", 1);
    pty.type_(b"wrong-for-systemd\n");
    let status = child.wait().expect("agent");
    assert!(status.success(), "the agent failed: {}", pty.shown());

    // Rejected: a new question, answered by a second run of the agent.
    let second = wait_ask(dir, Some(&first));
    let mut child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(&agent)
        .arg("--query")
        .stdin(tty())
        .stdout(tty())
        .stderr(tty())
        .spawn()
        .expect("systemd-tty-ask-password-agent");
    pty.wait_for("Please enter passphrase for disk interop (/dev/vdz9)", 2);
    pty.type_(b"typed-into-systemd\n");
    assert!(child.wait().expect("agent").success(), "the agent failed: {}", pty.shown());
    let (result, seen) = outcome(asking);
    assert_eq!(result.expect("accepted"), "typed-into-systemd");
    assert_eq!(seen, ["wrong-for-systemd", "typed-into-systemd"]);
    assert!(!second.exists());
    assert_eq!(entries(dir), Vec::<String>::new(), "ask file and socket removed");
    let _ = Command::new("umount").arg(dir).status();
}
