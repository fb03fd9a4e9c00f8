//! The server process (`initrd-tool ssh serve`): reads its keys, binds, drops privileges, then serves the unlock prompt to SSH clients and relays their answers.
//!
//! One thread, one tokio current-thread runtime. The [`Hub`] holds what every connected client
//! sees (the question being asked, who answered, what to say next); russh's handlers and the
//! link to the unlocking process only call into it, and each client's output goes through its
//! own queue so that messages reach it in order. A connection that misbehaves ends alone.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdListener};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use luks::secret::Secret;
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty, SshId};
use tokio::sync::mpsc;

use super::config::Ssh;
use super::keys::{self, Authorized};
use super::link::{MAX_MESSAGE, Outcome, ToParent, ToServer};
use super::prompt::{Event, Line, MAX_QUEUED, Prompt};
use super::{privsep, say_tries};
use crate::log;

/// The identification string clients see.
pub const SERVER_ID: &str = "SSH-2.0-lethe";
/// Every rejected authentication takes this long (russh pads to it), whatever the reason.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(250);
/// How long the clients get to read the last message before the server exits.
const STOP_GRACE: Duration = Duration::from_millis(1500);
/// Said to a client that asks to run a command.
pub const NO_COMMANDS: &str = "lethe: no commands here; connect without one to unlock\r\n";

/// Everything read and bound while still privileged.
struct Prepared {
    ssh: Ssh,
    host_keys: Vec<PrivateKey>,
    listeners: Vec<StdListener>,
    host: String,
}

/// `ssh serve`: runs until the unlocking process says stop (exit 0) or goes away (exit 1).
pub fn serve(config_path: &Path, link: OwnedFd) -> std::process::ExitCode {
    let link = Arc::new(Link(link));
    let prepared = match prepare(config_path) {
        Ok(p) => p,
        Err(why) => {
            log::error(&format!("ssh: {why}"));
            link.send(&ToParent::Failed(why));
            return std::process::ExitCode::from(1);
        }
    };
    if let Err(e) = privsep::drop_privileges() {
        let why = format!("privilege separation failed: {e}");
        log::error(&format!("ssh: {why}"));
        link.send(&ToParent::Failed(why));
        return std::process::ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(r) => r,
        Err(e) => {
            link.send(&ToParent::Failed(format!("cannot start the event loop: {e}")));
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(prepared, link));
    std::process::ExitCode::from(code)
}

/// Reads the config's `ssh` section and the host keys, binds the ports.
fn prepare(config_path: &Path) -> Result<Prepared, String> {
    let ssh = super::load_section(config_path)?;
    let mut host_keys = Vec::new();
    for path in &ssh.host_keys {
        host_keys.push(keys::load_host_key(path).map_err(|e| e.to_string())?);
    }
    let mut listeners = vec![
        StdListener::bind((Ipv4Addr::UNSPECIFIED, ssh.port))
            .map_err(|e| format!("cannot listen on 0.0.0.0:{}: {e}", ssh.port))?,
    ];
    match bind_v6(ssh.port) {
        Ok(l) => listeners.push(l),
        Err(e) => log::debug(&format!("ssh: not listening on [::]:{}: {e}", ssh.port)),
    }
    for l in &listeners {
        l.set_nonblocking(true).map_err(|e| format!("cannot make the listening socket non-blocking: {e}"))?;
    }
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy().into_owned();
    Ok(Prepared { ssh, host_keys, listeners, host })
}

/// `[::]:port`, IPv6 only (IPv4 has its own socket); fails where the kernel has no IPv6.
fn bind_v6(port: u16) -> std::io::Result<StdListener> {
    use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        Some(ipproto::TCP),
    )?;
    sockopt::set_ipv6_v6only(&fd, true)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))?;
    rustix::net::listen(&fd, 16)?;
    Ok(StdListener::from(fd))
}

/// The server's end of the link: datagrams to the unlocking process.
struct Link(OwnedFd);

impl Link {
    /// Never blocks: a parent that does not read loses messages, the server goes on.
    fn send(&self, m: &ToParent) {
        let mut buf = Secret::with_capacity(MAX_MESSAGE);
        if m.encode_into(&mut buf).is_err() {
            return;
        }
        let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
        if let Err(e) = rustix::net::send(&self.0, buf.as_bytes(), flags) {
            log::warn(&format!("ssh: cannot tell the unlocking process: {e}"));
        }
    }
}

/// Authentication attempts of all connections in the last minute.
struct RateLimit {
    max: usize,
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimit {
    fn allow(&self) -> bool {
        let now = Instant::now();
        let Ok(mut recent) = self.recent.lock() else { return false };
        while recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            recent.pop_front();
        }
        if recent.len() >= self.max {
            return false;
        }
        recent.push_back(now);
        true
    }
}

/// What the connections share.
struct Shared {
    authorized: Authorized,
    rate: RateLimit,
    connections: AtomicUsize,
    max_connections: usize,
    hub: Mutex<Hub>,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock aborts the process (panic = "abort"): never poisoned
        // in practice, and a poisoned hub is still consistent enough to say goodbye.
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn run(p: Prepared, link: Arc<Link>) -> u8 {
    let config = Arc::new(russh::server::Config {
        server_id: SshId::Standard(SERVER_ID.into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH's first "none" request only asks which methods there are.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: p.host_keys,
        // russh counts that first "none" as a rejection too.
        max_auth_attempts: p.ssh.max_auth_tries as usize + 1,
        inactivity_timeout: Some(Duration::from_secs(p.ssh.idle_timeout)),
        nodelay: true,
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        authorized: p.ssh.authorized(),
        rate: RateLimit { max: p.ssh.max_auth_per_minute as usize, recent: Mutex::new(VecDeque::new()) },
        connections: AtomicUsize::new(0),
        max_connections: p.ssh.max_connections as usize,
        hub: Mutex::new(Hub::new(p.host, link.clone())),
    });
    for l in p.listeners {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                tokio::spawn(accept_loop(l, config.clone(), shared.clone()));
            }
            Err(e) => log::warn(&format!("ssh: cannot use a listening socket: {e}")),
        }
    }
    link.send(&ToParent::Ready);
    log::info(&format!("ssh: waiting for unlock connections on port {}", p.ssh.port));
    let code = read_link(&link, &shared).await;
    // Let the clients read their last message and close.
    let deadline = Instant::now() + STOP_GRACE;
    while !shared.hub().clients.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    code
}

/// Applies the unlocking process's messages until it says stop (0) or goes away (1).
async fn read_link(link: &Link, shared: &Shared) -> u8 {
    // tokio has no SOCK_SEQPACKET type; its datagram socket does the same recv(2) calls and
    // keeps message boundaries.
    let socket = link
        .0
        .try_clone()
        .map(std::os::unix::net::UnixDatagram::from)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UnixDatagram::from_std);
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("ssh: cannot watch the link: {e}"));
            return 1;
        }
    };
    let mut buf = Secret::zeroed(MAX_MESSAGE + 1);
    loop {
        let n = match socket.recv(buf.as_mut_bytes()).await {
            Ok(0) => {
                log::info("ssh: the unlocking process went away; stopping");
                return 1;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error(&format!("ssh: the link failed: {e}"));
                return 1;
            }
        };
        let msg = ToServer::decode(buf.as_bytes().get(..n).unwrap_or_default());
        match msg {
            Ok(ToServer::Stop) => {
                shared.hub().stop();
                return 0;
            }
            Ok(m) => shared.hub().apply(m),
            Err(e) => log::warn(&format!("ssh: a malformed message from the unlocking process: {e}")),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
) {
    let mut next_id: u32 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                log::warn(&format!("ssh: accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::SeqCst) >= shared.max_connections {
            log::warn(&format!(
                "ssh: {peer}: refused: {} connections already (maxConnections)",
                shared.max_connections
            ));
            drop(stream);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        next_id = next_id.wrapping_add(1);
        // Ids of the two listeners never meet: IPv6's have the top bit set.
        let id = next_id & 0x7fff_ffff | if peer.is_ipv6() { 0x8000_0000 } else { 0 };
        log::info(&format!("ssh: {peer}: connected"));
        let conn = Conn { id, peer, shared: shared.clone(), channel: None, pty: false, attached: false };
        let config = config.clone();
        tokio::spawn(async move {
            match russh::server::run_stream(config, stream, conn).await {
                Ok(session) => match session.await {
                    Ok(()) => log::info(&format!("ssh: {peer}: disconnected")),
                    Err(e) => log::info(&format!("ssh: {peer}: connection ended: {e}")),
                },
                Err(e) => log::info(&format!("ssh: {peer}: connection failed: {e}")),
            }
        });
    }
}

/// One connection.
struct Conn {
    id: u32,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// The one session channel.
    channel: Option<ChannelId>,
    pty: bool,
    /// Its shell request made it a client of the hub.
    attached: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.attached {
            self.shared.hub().detach(self.id);
        }
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn refuse(&self, what: &str, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        log::info(&format!("ssh: {}: refused {what}", self.peer));
        session.channel_failure(channel)
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.shared.rate.allow() {
            log::warn(&format!(
                "ssh: {}: authentication refused: more than {} attempts in the last minute (maxAuthPerMinute)",
                self.peer, self.shared.rate.max
            ));
            return Ok(Auth::reject());
        }
        if self.shared.authorized.contains(offer.public_key) {
            return Ok(Auth::Accept);
        }
        log::info(&format!(
            "ssh: {}: key {} offered for user {user:?} is not authorized",
            self.peer,
            keys::fingerprint(offer.public_key)
        ));
        Ok(Auth::reject())
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if !self.shared.authorized.contains(key.public_key) {
            return Ok(Auth::reject());
        }
        log::info(&format!(
            "ssh: {}: user {user:?} authenticated with key {}",
            self.peer,
            keys::fingerprint(key.public_key)
        ));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channel.is_some() {
            log::info(&format!("ssh: {}: refused a second session channel", self.peer));
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // Input comes through `data`; the channel object is not read (and must not fill up).
        self.channel = Some(channel.id());
        drop(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        log::info(&format!("ssh: {}: refused forwarding to {host}:{port}", self.peer));
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channel != Some(channel) || self.attached {
            return session.channel_failure(channel);
        }
        self.pty = true;
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if self.channel != Some(channel) || self.attached {
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_client(session.handle(), channel, rx));
        self.attached = true;
        log::info(&format!("ssh: {}: unlock prompt ({})", self.peer, if self.pty { "pty" } else { "stdin" }));
        self.shared.hub().attach(self.id, self.pty, tx);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        log::info(&format!(
            "ssh: {}: refused to run a command ({} bytes): there is no shell",
            self.peer,
            data.len()
        ));
        session.extended_data(channel, 1, NO_COMMANDS.as_bytes().to_vec())?;
        session.channel_failure(channel)?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(&format!("subsystem {name:?}"), channel, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("X11 forwarding", channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log::info(&format!("ssh: {}: refused agent forwarding", self.peer));
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log::info(&format!("ssh: {}: refused remote forwarding of {address}:{port}", self.peer));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        log::info(&format!("ssh: {}: refused forwarding of {socket_path:?}", self.peer));
        Ok(false)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.attached && self.channel == Some(channel) {
            self.shared.hub().input(self.id, data);
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if self.attached && self.channel == Some(channel) {
            self.shared.hub().end_of_input(self.id);
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if self.attached && self.channel == Some(channel) {
            self.shared.hub().detach(self.id);
            self.attached = false;
        }
        Ok(())
    }
}

/// What a client's writer does.
enum Out {
    Text(String),
    /// Exit status, end of output, close.
    Exit(u32),
}

/// Sends a client's output in order; ends with the channel.
async fn write_client(handle: Handle, channel: ChannelId, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Text(t) => {
                if handle.data(channel, t.into_bytes()).await.is_err() {
                    return;
                }
            }
            Out::Exit(status) => {
                let _ = handle.exit_status_request(channel, status).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
                return;
            }
        }
    }
}

/// The question being asked.
struct Active {
    seq: u32,
    device: String,
    message: String,
}

/// A client at the prompt.
struct Client {
    out: mpsc::UnboundedSender<Out>,
    prompt: Prompt,
    /// Its answer to this request waits for a verdict.
    awaiting: Option<u32>,
    /// The prompt is shown and the cursor after it: a message starts on a new line.
    mid_line: bool,
    closed: bool,
}

impl Client {
    /// `text` is whole lines (`\n`); a pty gets `\r\n`.
    fn say(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut t = String::new();
        if std::mem::take(&mut self.mid_line) {
            t.push('\n');
        }
        t.push_str(text);
        let t = if self.prompt.pty() { t.replace('\n', "\r\n") } else { t };
        let _ = self.out.send(Out::Text(t));
    }

    fn ask(&mut self, message: &str) {
        self.say(&format!("{}: ", one_line(message)));
        self.mid_line = true;
    }

    fn exit(&mut self, status: u32) {
        if !self.closed {
            let _ = self.out.send(Out::Exit(status));
            self.closed = true;
        }
    }
}

/// What all clients see, and the link answers go out on.
struct Hub {
    host: String,
    link: Arc<Link>,
    active: Option<Active>,
    clients: BTreeMap<u32, Client>,
}

impl Hub {
    fn new(host: String, link: Arc<Link>) -> Hub {
        Hub { host, link, active: None, clients: BTreeMap::new() }
    }

    fn attach(&mut self, id: u32, pty: bool, out: mpsc::UnboundedSender<Out>) {
        let mut c = Client { out, prompt: Prompt::new(pty), awaiting: None, mid_line: false, closed: false };
        c.say(&format!("lethe: {}: waiting to unlock\n", one_line(&self.host)));
        match &self.active {
            Some(a) => c.ask(&a.message),
            None => c.say("lethe: nothing to unlock right now; waiting\n"),
        }
        self.clients.insert(id, c);
        self.pump(id);
    }

    fn detach(&mut self, id: u32) {
        self.clients.remove(&id);
    }

    fn input(&mut self, id: u32, data: &[u8]) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        let dropped = c.prompt.dropped();
        for e in c.prompt.feed(data) {
            match e {
                Event::LineEnded if c.prompt.pty() => {
                    // The Enter the client typed, never echoed.
                    c.mid_line = false;
                    c.say("\n");
                }
                Event::LineEnded => c.mid_line = false,
                Event::Interrupted => {
                    c.say("lethe: cancelled\n");
                    c.exit(1);
                }
                Event::Ended => {}
            }
        }
        if c.prompt.dropped() > dropped {
            log::warn(&format!("ssh: client {id}: lines typed ahead beyond {MAX_QUEUED} were dropped"));
        }
        self.pump(id);
    }

    fn end_of_input(&mut self, id: u32) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.prompt.end();
        }
        self.pump(id);
    }

    /// Hands the client's next line to the unlocking process when one is wanted.
    fn pump(&mut self, id: u32) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        if c.closed || c.awaiting.is_some() {
            return;
        }
        let Some(a) = &self.active else {
            if c.prompt.pty() && c.prompt.has_line() {
                c.prompt.clear();
                c.say("lethe: nothing to unlock right now; waiting\n");
            }
            return;
        };
        match c.prompt.next_line() {
            Some(Line::Answer(passphrase)) => {
                c.awaiting = Some(a.seq);
                self.link.send(&ToParent::Answer { seq: a.seq, client: id, passphrase });
            }
            Some(Line::TooLong) => {
                c.awaiting = Some(a.seq);
                self.link.send(&ToParent::TooLong { seq: a.seq, client: id });
            }
            None if c.prompt.ended() => {
                c.say("lethe: end of input; no passphrase left to try\n");
                c.exit(1);
            }
            None => {}
        }
    }

    fn apply(&mut self, m: ToServer) {
        match m {
            ToServer::Request { seq, device, message } => {
                for c in self.clients.values_mut() {
                    c.awaiting = None;
                    if c.prompt.pty() {
                        // Typed before the question: not an answer to it.
                        c.prompt.clear();
                    }
                    c.ask(&message);
                }
                self.active = Some(Active { seq, device, message });
                let ids: Vec<u32> = self.clients.keys().copied().collect();
                ids.into_iter().for_each(|id| self.pump(id));
            }
            ToServer::Rejected { seq, client, reason, left } => {
                let Some(a) = self.active.as_ref().filter(|a| a.seq == seq) else { return };
                let tries = say_tries(left);
                let again = left != Some(0);
                let message = a.message.clone();
                for (id, c) in self.clients.iter_mut() {
                    if client == Some(*id) {
                        c.awaiting = None;
                        c.say(&format!("lethe: {}{tries}\n", one_line(&reason)));
                    } else {
                        if c.prompt.pty() {
                            c.prompt.clear();
                        }
                        c.say(&format!(
                            "lethe: an answer from elsewhere was rejected: {}{tries}\n",
                            one_line(&reason)
                        ));
                    }
                    if again {
                        c.ask(&message);
                    }
                }
                if again {
                    let ids: Vec<u32> = self.clients.keys().copied().collect();
                    ids.into_iter().for_each(|id| self.pump(id));
                }
            }
            ToServer::Finished { seq, outcome } => {
                let Some(a) = self.active.take_if(|a| a.seq == seq) else { return };
                let device = one_line(&a.device);
                for c in self.clients.values_mut() {
                    c.awaiting = None;
                    match &outcome {
                        Outcome::Unlocked => c.say(&format!("lethe: {device} unlocked\n")),
                        Outcome::Failed(why) => c.say(&format!("lethe: {device}: {}\n", one_line(why))),
                        Outcome::Over => c.say(&format!("lethe: {device}: no longer asked for\n")),
                    }
                }
            }
            ToServer::Stop => self.stop(),
        }
    }

    fn stop(&mut self) {
        self.active = None;
        for c in self.clients.values_mut() {
            c.say("lethe: all devices unlocked; booting\n");
            c.exit(0);
        }
    }
}

/// Text from elsewhere shown on one line: control characters (escape sequences) become spaces.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}
