//! The DHCPv4 client for `ip=dhcp`: DISCOVER, OFFER, REQUEST, ACK on a packet socket, and renewal at T1.
//!
//! Before the link has an address the kernel's UDP stack cannot send from 0.0.0.0 on a chosen link
//! nor take replies addressed to an address it does not have, so the client frames IPv4 and UDP
//! itself on an AF_PACKET socket bound to the link (as dhclient and systemd-networkd do). Every
//! frame received is checked (IPv4 and UDP checksums, ports, xid, chaddr, message type) and anything
//! else is dropped: a malformed or foreign packet never ends the wait.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, SendFlags, SocketFlags, SocketType};

use super::ip_param::{class_prefix, valid_hostname};
use super::packet;
use super::sys::{self, SocketAddrLink};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// First retransmission wait (RFC 2131 4.1), doubled each time up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(4);
const MAX_WAIT: Duration = Duration::from_secs(64);
/// REQUESTs sent for one OFFER before starting over with a DISCOVER.
const REQUEST_TRIES: u32 = 4;
/// How often a wait looks at the stop flag (another link got its lease first).
const SLICE: Duration = Duration::from_millis(200);

/// What the server leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    /// From the subnet mask option, else the address class's.
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// The server identifier (option 54), where renewals go.
    pub server: Ipv4Addr,
    /// None: infinite.
    pub lease_time: Option<Duration>,
    /// T1: when to renew (option 58, else half the lease).
    pub renew_after: Option<Duration>,
}

/// A reply for us: right xid and chaddr, a well-formed OFFER, ACK or NAK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Offer(Lease),
    Ack(Lease),
    Nak { server: Option<Ipv4Addr>, message: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("{step}: {errno}")]
    Socket { step: &'static str, errno: Errno },
    #[error("no lease within the timeout ({offers} offers, {naks} refusals)")]
    TimedOut { offers: u32, naks: u32 },
    #[error("stopped: another link got a lease first")]
    Stopped,
    #[error("cannot encode a DHCP message: {0}")]
    Encode(String),
}

/// Parses a DHCP reply's UDP payload; None for anything not a valid reply to `xid` from `mac`.
pub fn parse_reply(payload: &[u8], xid: u32, mac: [u8; 6]) -> Option<Reply> {
    let payload = keep_known_options(payload)?;
    let msg = v4::Message::decode(&mut Decoder::new(&payload)).ok()?;
    // hlen is checked before chaddr() slices by it (dhcproto does not check it on decode).
    if msg.opcode() != Opcode::BootReply || msg.xid() != xid || msg.hlen() != 6 || msg.chaddr() != mac {
        return None;
    }
    let opts = msg.opts();
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    };
    match opts.msg_type()? {
        MessageType::Nak => {
            let message = match opts.get(OptionCode::Message) {
                Some(DhcpOption::Message(m)) => {
                    Some(m.chars().filter(|c| !c.is_control()).take(200).collect())
                }
                _ => None,
            };
            Some(Reply::Nak { server, message })
        }
        t @ (MessageType::Offer | MessageType::Ack) => {
            let lease = lease_of(&msg, server?)?;
            Some(if t == MessageType::Offer { Reply::Offer(lease) } else { Reply::Ack(lease) })
        }
        _ => None,
    }
}

/// Where the options start: the fixed BOOTP header (236 bytes) and the magic cookie.
const OPTIONS_AT: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The message with only the options the client reads, each with a length that fits its type;
/// None when the option list runs past the end. dhcproto decodes every option it knows, and some
/// of its decoders assert on lengths (debug builds) or misread short ones: it never sees those.
fn keep_known_options(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.get(OPTIONS_AT - 4..OPTIONS_AT)? != MAGIC_COOKIE {
        return None;
    }
    let mut out = payload[..OPTIONS_AT].to_vec();
    let mut rest = &payload[OPTIONS_AT..];
    while let [code, tail @ ..] = rest {
        match code {
            0 => {
                rest = tail;
                continue;
            }
            255 => break,
            _ => {}
        }
        let (&len, tail) = tail.split_first()?;
        let data = tail.get(..usize::from(len))?;
        rest = &tail[usize::from(len)..];
        let fits = match code {
            1 | 28 | 51 | 54 | 58 | 59 => len == 4, // mask, broadcast, times, server id
            3 | 6 => len >= 4 && len % 4 == 0,      // router, DNS
            12 | 15 | 56 => len >= 1,               // host name, domain, message
            53 => len == 1,                         // message type
            _ => false,
        };
        if fits {
            out.extend_from_slice(&[*code, len]);
            out.extend_from_slice(data);
        }
    }
    out.push(255);
    Some(out)
}

fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

fn lease_of(msg: &v4::Message, server: Ipv4Addr) -> Option<Lease> {
    let address = msg.yiaddr();
    if !unicast(address) || !unicast(server) {
        return None;
    }
    let opts = msg.opts();
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => {
            let bits = u32::from(*m);
            // A non-contiguous mask is not a subnet; the class default is the kernel's fallback too.
            if bits.leading_ones() + bits.trailing_zeros() == 32 && bits.leading_ones() > 0 {
                bits.leading_ones() as u8
            } else {
                class_prefix(address)
            }
        }
        _ => class_prefix(address),
    };
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.iter().copied().find(|r| unicast(*r) && *r != address),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.iter().copied().filter(|a| unicast(*a)).take(3).collect(),
        _ => Vec::new(),
    };
    let hostname = match opts.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) if valid_hostname(h) => Some(h.clone()),
        _ => None,
    };
    let domain = match opts.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(d)) if valid_hostname(d.trim_end_matches('.')) => Some(d.clone()),
        _ => None,
    };
    let secs = |code| match opts.get(code) {
        Some(DhcpOption::AddressLeaseTime(s) | DhcpOption::Renewal(s)) if *s != u32::MAX => {
            Some(Duration::from_secs(u64::from(*s)))
        }
        _ => None,
    };
    let lease_time = secs(OptionCode::AddressLeaseTime);
    let renew_after = secs(OptionCode::Renewal)
        .filter(|t1| lease_time.is_none_or(|l| *t1 <= l))
        .or(lease_time.map(|l| l / 2));
    Some(Lease { address, prefix, router, dns, hostname, domain, server, lease_time, renew_after })
}

/// Checks a frame from the packet socket: IPv4, UDP from port 67 to 68, then [`parse_reply`].
/// `udp_checksum`: false when the kernel left it uncomputed (see [`super::sys::recv_status`]).
pub fn parse_frame(frame: &[u8], udp_checksum: bool, xid: u32, mac: [u8; 6]) -> Option<Reply> {
    let udp = packet::parse(frame, udp_checksum)?;
    if udp.src_port != SERVER_PORT || udp.dst_port != CLIENT_PORT {
        return None;
    }
    parse_reply(udp.payload, xid, mac)
}

/// The options every request carries.
fn request_message(kind: MessageType, xid: u32, mac: [u8; 6], secs: u16, broadcast: bool) -> v4::Message {
    let mut m = v4::Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(xid).set_chaddr(&mac).set_secs(secs);
    if broadcast {
        m.set_flags(v4::Flags::default().set_broadcast());
    }
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8]; // hardware type: ethernet
    client_id.extend_from_slice(&mac);
    o.insert(DhcpOption::ClientIdentifier(client_id));
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::Hostname,
        OptionCode::DomainName,
        OptionCode::BroadcastAddr,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    o.insert(DhcpOption::MaxMessageSize(1500));
    m
}

fn encode(m: &v4::Message) -> Result<Vec<u8>, DhcpError> {
    m.to_vec().map_err(|e| DhcpError::Encode(e.to_string()))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Without randomness the xid is only less private, not wrong: fall back to the clock.
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(4) => u32::from_ne_bytes(b),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x6c657468, |d| d.subsec_nanos()),
    }
}

/// A packet socket bound to one link, for IPv4 frames.
struct Raw {
    fd: OwnedFd,
    ifindex: u32,
}

impl Raw {
    fn open(ifindex: u32) -> Result<Raw, DhcpError> {
        let step = |step| move |errno| DhcpError::Socket { step, errno };
        let fd = net::socket_with(
            AddressFamily::PACKET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(net::eth::IP),
        )
        .map_err(step("open a packet socket"))?;
        net::bind(&fd, &SocketAddrLink::new(ifindex, ETH_P_IP_BE, None))
            .map_err(step("bind the packet socket"))?;
        sys::enable_auxdata(fd.as_fd()).map_err(step("ask for the packet checksum status"))?;
        Ok(Raw { fd, ifindex })
    }

    fn send(&self, dhcp: &[u8]) -> Result<(), DhcpError> {
        let id = random_u32() as u16;
        let frame =
            packet::build(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, CLIENT_PORT, SERVER_PORT, id, dhcp)
                .ok_or(DhcpError::Encode("message too long".into()))?;
        let to = SocketAddrLink::new(self.ifindex, ETH_P_IP_BE, Some([0xff; 6]));
        net::sendto(&self.fd, &frame, SendFlags::empty(), &to)
            .map_err(|errno| DhcpError::Socket { step: "send on the packet socket", errno })?;
        Ok(())
    }

    /// The next reply for `xid` until `until`; None at `until`. Checks `stop` between slices.
    fn recv(
        &self,
        xid: u32,
        mac: [u8; 6],
        until: Instant,
        stop: &AtomicBool,
    ) -> Result<Option<Reply>, DhcpError> {
        let mut buf = vec![0u8; 4096];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(DhcpError::Stopped);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            wait_readable(&self.fd, left.min(SLICE))?;
            match sys::recv_status(self.fd.as_fd(), &mut buf) {
                Ok((n, csum_not_ready)) => {
                    let frame = &buf[..n.min(buf.len())];
                    if let Some(r) = parse_frame(frame, !csum_not_ready, xid, mac) {
                        return Ok(Some(r));
                    }
                    crate::log::debug(&format!(
                        "dhcp: dropped a {n}-byte frame that is no reply to {xid:#010x}"
                    ));
                }
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(errno) => return Err(DhcpError::Socket { step: "receive on the packet socket", errno }),
            }
        }
    }
}

const ETH_P_IP_BE: u16 = (libc::ETH_P_IP as u16).to_be();

fn wait_readable(fd: &OwnedFd, d: Duration) -> Result<(), DhcpError> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let t = Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) };
    match rustix::event::poll(&mut fds, Some(&t)) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(errno) => Err(DhcpError::Socket { step: "wait on the packet socket", errno }),
    }
}

/// Runs DISCOVER/OFFER/REQUEST/ACK on one link until a lease, `deadline`, or `stop`.
pub fn acquire(
    ifindex: u32,
    name: &str,
    mac: [u8; 6],
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Lease, DhcpError> {
    let raw = Raw::open(ifindex)?;
    let start = Instant::now();
    let secs = || u16::try_from(start.elapsed().as_secs()).unwrap_or(u16::MAX);
    let (mut offers, mut naks) = (0, 0);
    let timed_out = |offers, naks| DhcpError::TimedOut { offers, naks };
    loop {
        let xid = random_u32();
        // Selecting: DISCOVER until an OFFER.
        let mut wait = FIRST_WAIT;
        let offer = 'selecting: loop {
            if Instant::now() >= deadline {
                return Err(timed_out(offers, naks));
            }
            crate::log::debug(&format!("dhcp: {name}: DISCOVER xid {xid:#010x}"));
            raw.send(&encode(&request_message(MessageType::Discover, xid, mac, secs(), true))?)?;
            let until = (Instant::now() + wait).min(deadline);
            wait = (wait * 2).min(MAX_WAIT);
            // An ACK or NAK answers no DISCOVER: ignored like any stray packet.
            while let Some(reply) = raw.recv(xid, mac, until, stop)? {
                if let Reply::Offer(l) = reply {
                    break 'selecting l;
                }
            }
        };
        offers += 1;
        crate::log::debug(&format!("dhcp: {name}: OFFER {} from {}", offer.address, offer.server));
        // Requesting: REQUEST the offered address until an ACK or a NAK.
        let mut request = request_message(MessageType::Request, xid, mac, secs(), true);
        request.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.address));
        request.opts_mut().insert(DhcpOption::ServerIdentifier(offer.server));
        let mut wait = FIRST_WAIT;
        'requesting: for _ in 0..REQUEST_TRIES {
            if Instant::now() >= deadline {
                return Err(timed_out(offers, naks));
            }
            request.set_secs(secs());
            raw.send(&encode(&request)?)?;
            let until = (Instant::now() + wait).min(deadline);
            wait = (wait * 2).min(MAX_WAIT);
            while let Some(reply) = raw.recv(xid, mac, until, stop)? {
                match reply {
                    Reply::Ack(l) if l.address == offer.address => return Ok(l),
                    Reply::Nak { server, message } if server.is_none_or(|s| s == offer.server) => {
                        naks += 1;
                        crate::log::warn(&format!(
                            "dhcp: {name}: {} refused {} ({}), starting over",
                            offer.server,
                            offer.address,
                            message.as_deref().unwrap_or("no reason given")
                        ));
                        break 'requesting;
                    }
                    _ => {} // another server's OFFER, or an ACK for another address
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0x77, 0, 2];
    const XID: u32 = 0x1234_5678;

    fn offer(extra: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = v4::Message::default();
        m.set_opcode(Opcode::BootReply).set_xid(XID).set_chaddr(&MAC).set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Offer));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        let mut b = m.to_vec().unwrap();
        assert_eq!(b.pop(), Some(255));
        for (code, data) in extra {
            b.push(*code);
            b.push(data.len() as u8);
            b.extend_from_slice(data);
        }
        b.push(255);
        b
    }

    fn lease(r: Option<Reply>) -> Lease {
        match r {
            Some(Reply::Offer(l)) => l,
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn an_offer_gives_address_prefix_router_server_and_times() {
        let l = lease(parse_reply(&offer(&[]), XID, MAC));
        assert_eq!(
            (l.address, l.prefix, l.router),
            (Ipv4Addr::new(10, 0, 2, 15), 24, Some(Ipv4Addr::new(10, 0, 2, 2)))
        );
        assert_eq!(l.server, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(
            (l.lease_time, l.renew_after),
            (Some(Duration::from_secs(86400)), Some(Duration::from_secs(43200)))
        );
    }

    #[test]
    fn options_the_client_does_not_read_or_of_a_wrong_length_are_passed_over() {
        // 94 (client network interface) with 1 byte trips an assertion in dhcproto's debug builds;
        // a 2-byte lease time and a 5-byte host name with a bad label are not read either.
        let l = lease(parse_reply(&offer(&[(94, &[1]), (51, &[0, 1]), (12, b"a..b!"), (12, b"")]), XID, MAC));
        assert_eq!((l.address, l.hostname), (Ipv4Addr::new(10, 0, 2, 15), None));
    }

    #[test]
    fn another_xid_or_mac_a_truncated_option_list_or_no_server_id_are_dropped() {
        assert_eq!(parse_reply(&offer(&[]), XID + 1, MAC), None);
        assert_eq!(parse_reply(&offer(&[]), XID, [2, 0, 0, 0x77, 0, 3]), None);
        let mut cut = offer(&[(12, b"host")]);
        cut.truncate(cut.len() - 3);
        assert_eq!(parse_reply(&cut, XID, MAC), None);
        let mut m = v4::Message::default();
        m.set_opcode(Opcode::BootReply).set_xid(XID).set_chaddr(&MAC).set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Offer));
        assert_eq!(parse_reply(&m.to_vec().unwrap(), XID, MAC), None);
    }

    #[test]
    fn a_non_contiguous_or_missing_mask_falls_back_to_the_class_prefix() {
        let without_mask = |extra: &[(u8, &[u8])]| {
            let mut b = offer(extra);
            let at = (OPTIONS_AT..b.len()).find(|&i| b[i] == 1 && b[i + 1] == 4).unwrap();
            b.drain(at..at + 6);
            b
        };
        assert_eq!(lease(parse_reply(&without_mask(&[(1, &[255, 0, 255, 0])]), XID, MAC)).prefix, 8);
        assert_eq!(lease(parse_reply(&without_mask(&[]), XID, MAC)).prefix, 8);
        assert_eq!(lease(parse_reply(&without_mask(&[(1, &[255, 255, 252, 0])]), XID, MAC)).prefix, 22);
    }
}
