//! rtnetlink over a NETLINK_ROUTE socket: links up and down, IPv4 addresses and routes, every request acknowledged.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rustix::io::Errno;
use rustix::net::{self, AddressFamily as Af, RecvFlags, SendFlags, SocketFlags, SocketType};

/// A request the kernel refused or that could not be made, with what it was for.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {errno}")]
pub struct NetlinkError {
    /// `add 10.0.2.15/24 to eth0`, `set eth0 up`, ...
    pub step: String,
    pub errno: Errno,
}

/// A network interface as rtnetlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// ARPHRD_ETHER, not the loopback.
    pub ethernet: bool,
    pub up: bool,
    /// Carrier (IFF_LOWER_UP).
    pub lower_up: bool,
    pub mac: Option<[u8; 6]>,
}

/// An IPv4 route in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub index: u32,
    /// The link's name, for messages.
    pub link: String,
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// `boot` for ip=, `dhcp` for a lease (as `ip route` shows them).
    pub dhcp: bool,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.prefix, self.gateway) {
            (0, Some(g)) => write!(f, "default via {g} dev {}", self.link),
            (_, Some(g)) => write!(f, "{}/{} via {g} dev {}", self.destination, self.prefix, self.link),
            (_, None) => write!(f, "{}/{} dev {}", self.destination, self.prefix, self.link),
        }
    }
}

/// A NETLINK_ROUTE socket talking to the kernel.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

const RECV_BUF: usize = 64 * 1024;

impl Netlink {
    pub fn open() -> Result<Netlink, NetlinkError> {
        let step = |errno| NetlinkError { step: "open a NETLINK_ROUTE socket".into(), errno };
        // NETLINK_ROUTE is protocol 0, which `None` asks for.
        let fd = net::socket_with(Af::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None).map_err(step)?;
        net::bind(&fd, &net::netlink::SocketAddrNetlink::new(0, 0)).map_err(step)?;
        // The kernel answers at once; a bound wait keeps a lost answer from hanging stage 1.
        net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, Some(Duration::from_secs(5)))
            .map_err(step)?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and returns what the kernel answered before its ACK (or DONE for a dump).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        step: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let fail = |errno| NetlinkError { step: step(), errno };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = NLM_F_REQUEST | flags;
        m.header.sequence_number = seq;
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        net::sendto(&self.fd, &buf, SendFlags::empty(), &net::netlink::SocketAddrNetlink::new(0, 0))
            .map_err(fail)?;
        let mut answers = Vec::new();
        let mut rbuf = vec![0u8; RECV_BUF];
        loop {
            let (n, _) = net::recv(&self.fd, &mut rbuf[..], RecvFlags::empty()).map_err(fail)?;
            let mut data = &rbuf[..n];
            while data.len() >= 16 {
                let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
                if len < 16 || len > data.len() {
                    return Err(fail(Errno::BADMSG));
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]);
                data = &data[len.next_multiple_of(4).min(data.len())..];
                // Another request's late answer (or a message we cannot parse) is not ours.
                let Ok(msg) = parsed else { continue };
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(fail(Errno::from_raw_os_error(-code.get()))),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Every link, by index.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let answers =
            self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP, &|| {
                "list the links".into()
            })?;
        let mut links: Vec<Link> = answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// Sets IFF_UP on or off.
    pub fn set_up(&mut self, index: u32, name: &str, up: bool) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        m.header.change_mask = LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK, &|| format!("set {name} {state}"))?;
        Ok(())
    }

    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let m = address_message(index, address, prefix);
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("add {address}/{prefix} to {name}")
        })?;
        Ok(())
    }

    /// Removes an address; one already gone is no error.
    pub fn del_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let m = address_message(index, address, prefix);
        match self.request(RouteNetlinkMessage::DelAddress(m), NLM_F_ACK, &|| {
            format!("remove {address}/{prefix} from {name}")
        }) {
            Err(e) if matches!(e.errno, Errno::ADDRNOTAVAIL | Errno::NODEV) => Ok(()),
            r => r.map(drop),
        }
    }

    pub fn add_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        self.request(
            RouteNetlinkMessage::NewRoute(route_message(r)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add route {r}"),
        )?;
        Ok(())
    }

    /// Removes a route; one already gone (the link went down, the address was removed) is no error.
    pub fn del_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        match self.request(RouteNetlinkMessage::DelRoute(route_message(r)), NLM_F_ACK, &|| {
            format!("remove route {r}")
        }) {
            Err(e) if matches!(e.errno, Errno::SRCH | Errno::NODEV) => Ok(()),
            r => r.map(drop),
        }
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut mac = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => {}
        }
    }
    let flags = l.header.flags;
    Link {
        index: l.header.index,
        name,
        ethernet: l.header.link_layer_type == LinkLayerType::Ether && !flags.contains(LinkFlags::Loopback),
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        mac,
    }
}

/// The broadcast address of a subnet; none for /31 and /32 (RFC 3021 point-to-point links).
pub fn broadcast(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    (prefix < 31).then(|| Ipv4Addr::from(u32::from(address) | (u32::MAX >> prefix)))
}

fn address_message(index: u32, address: Ipv4Addr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(address)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(address)));
    if let Some(b) = broadcast(address, prefix) {
        m.attributes.push(AddressAttribute::Broadcast(b));
    }
    m
}

fn route_message(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = r.prefix;
    m.header.table = libc::RT_TABLE_MAIN;
    m.header.protocol = if r.dhcp { RouteProtocol::Dhcp } else { RouteProtocol::Boot };
    m.header.scope = if r.gateway.is_some() { RouteScope::Universe } else { RouteScope::Link };
    m.header.kind = RouteType::Unicast;
    if r.prefix > 0 {
        m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(r.destination)));
    }
    if let Some(g) = r.gateway {
        m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(g)));
    }
    m.attributes.push(RouteAttribute::Oif(r.index));
    m
}
