//! Stage 1's network for the SSH unlock in own-init mode: `ip=` values brought up through rtnetlink and DHCPv4, taken down before switch_root.
//!
//! The kernels NixOS and Debian ship have no CONFIG_IP_PNP, so the kernel does not read `ip=`
//! itself: lethe does, with the kernel's meaning (nfsroot.rst) and dracut's `ip=<if>:dhcp`.

pub mod config;
pub mod dhcp;
mod ip_param;
mod netlink;
pub mod packet;
mod sys;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use config::Network;
pub use dhcp::{DhcpError, Lease};
pub use ip_param::{IpParam, IpParamError, Method, Static};
pub use netlink::NetlinkError;

use netlink::{Link, Netlink, Route};

/// How often links are looked at while waiting for one to appear or get a carrier.
const POLL: Duration = Duration::from_millis(50);

/// What stage 1 brings up: the command line's ip= values if any (they replace the config's), else the config's.
/// `off`/`none` values bring nothing up.
pub fn params(network: &Network, cmdline_ip: &[&str]) -> Result<Vec<IpParam>, IpParamError> {
    let values: Vec<&str> = if cmdline_ip.is_empty() {
        network.ip.iter().map(String::as_str).collect()
    } else {
        cmdline_ip.to_vec()
    };
    let parsed = values.iter().map(|v| v.parse()).collect::<Result<Vec<IpParam>, _>>()?;
    check_together(&parsed)?;
    Ok(parsed.into_iter().filter(|p| p.method != Method::Off).collect())
}

/// Values that contradict each other: one device configured twice, two values without a device.
pub(crate) fn check_together(params: &[IpParam]) -> Result<(), IpParamError> {
    let live: Vec<&IpParam> = params.iter().filter(|p| p.method != Method::Off).collect();
    for (i, p) in live.iter().enumerate() {
        for q in &live[..i] {
            let message = match (&p.device, &q.device) {
                (Some(a), Some(b)) if a == b => format!("{a} is configured by ip={q} already"),
                (None, None) => format!("only one value may leave the device empty (ip={q} does already)"),
                _ => continue,
            };
            return Err(IpParamError { value: p.to_string(), field: "device", message });
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("no link {device} appeared within {} s", timeout.as_secs())]
    NoLink { device: String, timeout: Duration },
    #[error("no ethernet link appeared within {} s", timeout.as_secs())]
    NoEthernet { timeout: Duration },
    #[error("{link} has no ethernet address: DHCP needs one")]
    NoMac { link: String },
    #[error("{link}: dhcp: {source}")]
    Dhcp { link: String, source: DhcpError },
    #[error("no DHCP lease: {}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoLease { failures: Vec<NetError> },
    #[error("{link}: no carrier within {} s", timeout.as_secs())]
    NoCarrier { link: String, timeout: Duration },
    #[error("set the host name to {name}: {errno}")]
    Hostname { name: String, errno: rustix::io::Errno },
}

/// How a link got its address.
#[derive(Debug, Clone)]
enum Source {
    Static,
    Dhcp(Lease),
}

/// One link bring_up set up, and what it configured on it (undone in reverse).
#[derive(Debug)]
struct Configured {
    index: u32,
    name: String,
    address: Option<(Ipv4Addr, u8)>,
    routes: Vec<Route>,
    source: Option<Source>,
}

/// Everything bring_up configured, for [`take_down`].
#[derive(Debug, Default)]
pub struct Up {
    links: Vec<Configured>,
}

impl Up {
    /// One line a link: `eth0: 10.0.2.15/24 via 10.0.2.2 (dhcp from 10.0.2.2, lease 86400 s)`.
    pub fn summary(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|c| {
                let mut s = format!("{}:", c.name);
                if let Some((a, p)) = c.address {
                    s += &format!(" {a}/{p}");
                }
                if let Some(g) = c.routes.iter().find(|r| r.prefix == 0).and_then(|r| r.gateway) {
                    s += &format!(" via {g}");
                }
                match &c.source {
                    Some(Source::Static) => s += " (static)",
                    Some(Source::Dhcp(l)) => {
                        let lease = l
                            .lease_time
                            .map_or("infinite lease".into(), |t| format!("lease {} s", t.as_secs()));
                        s += &format!(" (dhcp from {}, {lease})", l.server);
                    }
                    None => s += " (up)",
                }
                s
            })
            .collect()
    }

    /// The addresses configured, by link name (for the SSH server's log line and tests).
    pub fn addresses(&self) -> Vec<(String, Ipv4Addr, u8)> {
        self.links.iter().filter_map(|c| c.address.map(|(a, p)| (c.name.clone(), a, p))).collect()
    }
}

/// Brings lo and the links of `params` up (static, or DHCP), waiting at most `timeout` for links and
/// leases. Returns what it configured; on an error, what it did is undone first.
pub fn bring_up(params: &[IpParam], timeout: Duration) -> Result<Up, NetError> {
    let deadline = Instant::now() + timeout;
    let mut nl = Netlink::open()?;
    let mut up = Up::default();
    match bring_up_into(&mut nl, params, deadline, timeout, &mut up) {
        Ok(()) => {
            for line in up.summary() {
                crate::log::info(&format!("net: {line}"));
            }
            Ok(up)
        }
        Err(e) => {
            if let Err(u) = undo(&mut nl, up) {
                crate::log::warn(&format!("net: undoing a failed bring-up: {u}"));
            }
            Err(e)
        }
    }
}

fn bring_up_into(
    nl: &mut Netlink,
    params: &[IpParam],
    deadline: Instant,
    timeout: Duration,
    up: &mut Up,
) -> Result<(), NetError> {
    if let Some(lo) = nl.links()?.into_iter().find(|l| l.name == "lo")
        && !lo.up
    {
        nl.set_up(lo.index, "lo", true)?;
    }
    // A value without a device takes the ethernet links no other value names.
    let named: Vec<&str> = params.iter().filter_map(|p| p.device.as_deref()).collect();
    for p in params {
        match &p.method {
            Method::Off => {}
            Method::Static(s) => {
                let link = match &p.device {
                    Some(d) => wait_link(nl, d, deadline, timeout)?,
                    None => wait_ethernet(nl, &named, deadline, timeout)?.swap_remove(0),
                };
                configure_static(nl, up, &link, s)?;
                if let Some(h) = &p.hostname {
                    set_hostname(h)?;
                }
            }
            Method::Dhcp => {
                let links = match &p.device {
                    Some(d) => vec![wait_link(nl, d, deadline, timeout)?],
                    None => wait_ethernet(nl, &named, deadline, timeout)?,
                };
                configure_dhcp(nl, up, links, p.hostname.as_deref(), deadline, timeout)?;
            }
        }
    }
    Ok(())
}

fn wait_link(nl: &mut Netlink, name: &str, deadline: Instant, timeout: Duration) -> Result<Link, NetError> {
    loop {
        if let Some(l) = nl.links()?.into_iter().find(|l| l.name == name) {
            return Ok(l);
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoLink { device: name.to_owned(), timeout });
        }
        std::thread::sleep(POLL);
    }
}

/// The ethernet links present once the first has appeared, by ifindex, less those in `except`.
fn wait_ethernet(
    nl: &mut Netlink,
    except: &[&str],
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<Link>, NetError> {
    loop {
        let links: Vec<Link> =
            nl.links()?.into_iter().filter(|l| l.ethernet && !except.contains(&l.name.as_str())).collect();
        if !links.is_empty() {
            return Ok(links);
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoEthernet { timeout });
        }
        std::thread::sleep(POLL);
    }
}

/// Sets `link` up and records it, so that an error from here on takes it down again.
fn set_link_up(nl: &mut Netlink, up: &mut Up, link: &Link) -> Result<usize, NetError> {
    if let Some(i) = up.links.iter().position(|c| c.index == link.index) {
        return Ok(i);
    }
    up.links.push(Configured {
        index: link.index,
        name: link.name.clone(),
        address: None,
        routes: Vec::new(),
        source: None,
    });
    nl.set_up(link.index, &link.name, true)?;
    Ok(up.links.len() - 1)
}

fn configure_static(nl: &mut Netlink, up: &mut Up, link: &Link, s: &Static) -> Result<(), NetError> {
    let i = set_link_up(nl, up, link)?;
    configure_address(nl, &mut up.links[i], s.address, s.prefix, s.gateway, false)?;
    up.links[i].source = Some(Source::Static);
    Ok(())
}

/// Adds the address, then the default route (with an on-link host route to a gateway outside the subnet).
fn configure_address(
    nl: &mut Netlink,
    c: &mut Configured,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    dhcp: bool,
) -> Result<(), NetError> {
    nl.add_address(c.index, &c.name, address, prefix)?;
    c.address = Some((address, prefix));
    let Some(g) = gateway else { return Ok(()) };
    let route = |destination, prefix, gateway| Route {
        index: c.index,
        link: c.name.clone(),
        destination,
        prefix,
        gateway,
        dhcp,
    };
    if !same_subnet(address, g, prefix) {
        let host = route(g, 32, None);
        nl.add_route(&host)?;
        c.routes.push(host);
    }
    let default = route(Ipv4Addr::UNSPECIFIED, 0, Some(g));
    nl.add_route(&default)?;
    c.routes.push(default);
    Ok(())
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

fn set_hostname(name: &str) -> Result<(), NetError> {
    rustix::system::sethostname(name.as_bytes())
        .map_err(|errno| NetError::Hostname { name: name.to_owned(), errno })?;
    crate::log::info(&format!("net: host name {name}"));
    Ok(())
}

/// DHCP on every link of `links` at once; the first lease wins and the other links go back down.
fn configure_dhcp(
    nl: &mut Netlink,
    up: &mut Up,
    links: Vec<Link>,
    hostname: Option<&str>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), NetError> {
    let mut macs = Vec::new();
    for l in &links {
        let mac =
            l.mac.filter(|m| m.iter().any(|b| *b != 0)).ok_or(NetError::NoMac { link: l.name.clone() })?;
        macs.push(mac);
        set_link_up(nl, up, l)?;
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Lease, NetError>)>();
    let (winner, failures) = std::thread::scope(|scope| {
        for (i, l) in links.iter().enumerate() {
            let (tx, stop, mac) = (tx.clone(), &stop, macs[i]);
            // Threads share the caller's network namespace (clone copies the thread's).
            scope.spawn(move || {
                let r = wait_carrier(l, deadline, timeout, stop).and_then(|()| {
                    dhcp::acquire(l.index, &l.name, mac, deadline, stop)
                        .map_err(|source| NetError::Dhcp { link: l.name.clone(), source })
                });
                if r.is_ok() {
                    stop.store(true, Ordering::Relaxed);
                }
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        let mut winner = None;
        let mut failures = Vec::new();
        for (i, r) in rx {
            match r {
                Ok(lease) if winner.is_none() => winner = Some((i, lease)),
                Ok(_) => {}
                Err(NetError::Dhcp { source: DhcpError::Stopped, .. }) => {}
                Err(e) => failures.push(e),
            }
        }
        (winner, failures)
    });
    let Some((w, lease)) = winner else {
        return Err(NetError::NoLease { failures });
    };
    // The losers go back down now: only the winner stays configured.
    for (i, l) in links.iter().enumerate() {
        if i != w {
            up.links.retain(|c| c.index != l.index);
            nl.set_up(l.index, &l.name, false)?;
        }
    }
    let link = &links[w];
    let i = up.links.iter().position(|c| c.index == link.index).unwrap_or_default();
    configure_address(nl, &mut up.links[i], lease.address, lease.prefix, lease.router, true)?;
    up.links[i].source = Some(Source::Dhcp(lease.clone()));
    match hostname.or(lease.hostname.as_deref()) {
        Some(h) => set_hostname(h),
        None => Ok(()),
    }
}

/// Waits for IFF_LOWER_UP: DHCP sent before the carrier is lost.
fn wait_carrier(
    link: &Link,
    deadline: Instant,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    loop {
        if nl.links()?.iter().any(|l| l.index == link.index && l.lower_up) {
            return Ok(());
        }
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            return Err(NetError::NoCarrier { link: link.name.clone(), timeout });
        }
        std::thread::sleep(POLL);
    }
}

/// Everything bring_up configured: addresses and routes removed, links set down (lo left as is). Idempotent.
pub fn take_down(up: Up) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    undo(&mut nl, up)?;
    crate::log::info("net: links down");
    Ok(())
}

/// Undoes in reverse order; goes on after an error and returns the first.
fn undo(nl: &mut Netlink, up: Up) -> Result<(), NetError> {
    let mut first: Option<NetlinkError> = None;
    let mut note = |r: Result<(), NetlinkError>| {
        if let Err(e) = r {
            crate::log::warn(&format!("net: {e}"));
            first.get_or_insert(e);
        }
    };
    for c in up.links.into_iter().rev() {
        for r in c.routes.iter().rev() {
            note(nl.del_route(r));
        }
        if let Some((a, p)) = c.address {
            note(nl.del_address(c.index, &c.name, a, p));
        }
        note(match nl.set_up(c.index, &c.name, false) {
            Err(e) if e.errno == rustix::io::Errno::NODEV => Ok(()),
            r => r,
        });
    }
    first.map_or(Ok(()), |e| Err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &[&str]) -> Network {
        Network { ip: ip.iter().map(|s| s.to_string()).collect(), ..Network::default() }
    }

    #[test]
    fn the_command_lines_values_replace_the_configs() {
        let n = net(&["eth0:dhcp"]);
        let p = params(&n, &["10.0.2.15::10.0.2.2:24::eth1:off"]).unwrap();
        assert_eq!((p.len(), p[0].device.as_deref()), (1, Some("eth1")));
        assert_eq!(params(&n, &[]).unwrap()[0].method, Method::Dhcp);
        assert!(params(&n, &["off"]).unwrap().is_empty());
    }

    #[test]
    fn one_device_twice_or_two_without_a_device_are_errors() {
        let e = params(&net(&[]), &["eth0:dhcp", "10.0.0.2:::24::eth0:off"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ip=10.0.0.2:::255.255.255.0::eth0:off:::: eth0 is configured by ip=eth0:dhcp already"
        );
        let e = params(&net(&[]), &["dhcp", "10.0.0.2:::24:::off"]).unwrap_err();
        assert!(
            e.to_string().ends_with("only one value may leave the device empty (ip=dhcp does already)"),
            "{e}"
        );
        assert!(params(&net(&[]), &["eth0:dhcp", "10.0.0.2:::24::eth1:off", "dhcp"]).is_ok());
    }

    #[test]
    fn a_gateway_outside_the_subnet_is_told_apart() {
        let a = Ipv4Addr::new(10, 0, 2, 15);
        assert!(same_subnet(a, Ipv4Addr::new(10, 0, 2, 2), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 3, 1), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 2, 1), 32));
        assert!(same_subnet(a, Ipv4Addr::new(192, 0, 2, 1), 0));
    }
}
