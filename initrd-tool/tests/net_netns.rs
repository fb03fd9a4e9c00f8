//! Stage 1's network against the real kernel: network namespaces joined by veth pairs, dnsmasq as the DHCP server.
//!
//! Each test makes its own client and server namespaces (unique names, removed by a guard even
//! when the test fails) and runs `bring_up`/`take_down` in a thread that joined the client's
//! namespace (and a UTS namespace of its own, so host names set there stay there); what they did is
//! read back with `ip -j` in that namespace.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use initrd_tool::net::{self, IpParam, NetError, Up};
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Root and `ip` are needed; outside CI their absence skips the test with a note.
fn can_run() -> bool {
    let root = rustix::process::geteuid().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and not root or no `ip` (iproute2)");
    eprintln!("skipped: needs root and iproute2");
    false
}

fn run(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A client namespace (`eth0`, and `eth1` when asked) wired by veth pairs to a server namespace
/// (`srv0` 10.77.0.1/24, `srv1` 10.78.0.1/24). Dropping it kills dnsmasq and removes both.
struct Net {
    client: String,
    server: String,
    dnsmasq: Vec<Child>,
    dir: std::path::PathBuf,
}

impl Net {
    fn new(links: usize) -> Net {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let net = Net {
            client: format!("lethe-c{id}"),
            server: format!("lethe-s{id}"),
            dnsmasq: Vec::new(),
            dir: std::env::temp_dir().join(format!("lethe-net-{id}")),
        };
        std::fs::create_dir_all(&net.dir).unwrap();
        run(&["ip", "netns", "add", &net.client]);
        run(&["ip", "netns", "add", &net.server]);
        for i in 0..links {
            let (srv, eth) = (format!("srv{i}"), format!("eth{i}"));
            let mac = format!("02:00:00:77:00:{:02x}", 2 + i * 16);
            run(&[
                "ip",
                "-n",
                &net.server,
                "link",
                "add",
                &srv,
                "type",
                "veth",
                "peer",
                "name",
                &eth,
                "address",
                &mac,
                "netns",
                &net.client,
            ]);
            run(&["ip", "-n", &net.server, "addr", "add", &format!("10.{}.0.1/24", 77 + i), "dev", &srv]);
            run(&["ip", "-n", &net.server, "link", "set", &srv, "up"]);
        }
        net
    }

    /// dnsmasq on `srv<i>`, handing out 10.(77+i).0.60 (and a host name) to the client's MAC.
    fn dnsmasq(&mut self, i: usize) {
        let s = 77 + i;
        let mac = format!("02:00:00:77:00:{:02x}", 2 + i * 16);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
            ])
            .arg(format!("--interface=srv{i}"))
            .arg("--bind-interfaces")
            .arg(format!("--dhcp-range=10.{s}.0.50,10.{s}.0.99,255.255.255.0,12h"))
            .arg(format!("--dhcp-option=3,10.{s}.0.1"))
            .arg(format!("--dhcp-host={mac},10.{s}.0.60,lethe-box"))
            .arg(format!("--dhcp-leasefile={}", self.dir.join(format!("leases{i}")).display()))
            .arg(format!("--pid-file={}", self.dir.join(format!("pid{i}")).display()))
            .args(["--no-ping", "--dhcp-authoritative", "--user=root", "--log-dhcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        self.dnsmasq.push(child);
        // Listening takes a few ms; the client's retransmission would cover it anyway (4 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !run(&["ip", "netns", "exec", &self.server, "ss", "-Huln", "sport", "= :67"]).contains(":67")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` in a thread inside the client's network namespace and a UTS namespace of its own.
    fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.client);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            // SAFETY: only the UTS namespace is unshared (not the fd table), for this thread alone.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUTS) }.unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    fn ip(&self, args: &[&str]) -> Value {
        let mut a = vec!["ip", "-n", &self.client, "-j"];
        a.extend_from_slice(args);
        serde_json::from_str(&run(&a)).unwrap()
    }

    /// (address, prefix, broadcast) of every IPv4 address on `dev`.
    fn addrs(&self, dev: &str) -> Vec<(String, u64, Option<String>)> {
        let v = self.ip(&["-4", "addr", "show", "dev", dev]);
        let mut out = Vec::new();
        for link in v.as_array().unwrap() {
            for a in link["addr_info"].as_array().unwrap() {
                out.push((
                    a["local"].as_str().unwrap().to_owned(),
                    a["prefixlen"].as_u64().unwrap(),
                    a["broadcast"].as_str().map(str::to_owned),
                ));
            }
        }
        out
    }

    /// `dst gateway dev scope` of every IPv4 route in the main table.
    fn routes(&self) -> Vec<String> {
        let v = self.ip(&["-4", "route", "show", "table", "main"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r["dst"].as_str().unwrap_or(""),
                    r["gateway"].as_str().unwrap_or("-"),
                    r["dev"].as_str().unwrap_or(""),
                    r["scope"].as_str().unwrap_or("global")
                )
            })
            .collect()
    }

    fn is_up(&self, dev: &str) -> bool {
        let v = self.ip(&["link", "show", "dev", dev]);
        v[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP")
    }

    /// No address, no route, the link down: what take_down promises.
    fn assert_clean(&self, dev: &str) {
        assert_eq!(self.addrs(dev), [], "addresses left on {dev}");
        assert_eq!(self.routes(), Vec::<String>::new(), "routes left");
        assert!(!self.is_up(dev), "{dev} left up");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.dnsmasq {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn params(v: &[&str]) -> Vec<IpParam> {
    net::params(&net::Network::default(), v).unwrap()
}

fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[test]
fn a_static_ip_sets_address_prefix_broadcast_default_route_and_host_name() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    let p = params(&["10.77.0.2::10.77.0.1:255.255.255.0:lethe-static:eth0:off"]);
    let (up, host) = n.in_client(move || (net::bring_up(&p, Duration::from_secs(5)).unwrap(), hostname()));
    assert_eq!(n.addrs("eth0"), [("10.77.0.2".into(), 24, Some("10.77.0.255".into()))]);
    let routes = n.routes();
    assert!(routes.contains(&"default 10.77.0.1 eth0 global".to_owned()), "{routes:?}");
    assert!(n.is_up("eth0") && n.is_up("lo"));
    assert_eq!(host, "lethe-static");
    assert_eq!(up.summary(), ["eth0: 10.77.0.2/24 via 10.77.0.1 (static)"]);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
    assert!(n.is_up("lo"), "lo is left as it is");
}

#[test]
fn an_empty_device_takes_the_first_ethernet_link_and_a_prefix_length_works() {
    if !can_run() {
        return;
    }
    let n = Net::new(2);
    let p = params(&["10.77.0.3:::25:::off"]);
    let up = n.in_client(move || net::bring_up(&p, Duration::from_secs(5)).unwrap());
    assert_eq!(n.addrs("eth0"), [("10.77.0.3".into(), 25, Some("10.77.0.127".into()))]);
    assert_eq!(n.addrs("eth1"), []);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
}

#[test]
fn a_gateway_outside_the_subnet_gets_an_on_link_route_first() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    let p = params(&["10.77.0.2::10.77.9.1:24::eth0:off"]);
    let up = n.in_client(move || net::bring_up(&p, Duration::from_secs(5)).unwrap());
    let routes = n.routes();
    assert!(routes.contains(&"10.77.9.1 - eth0 link".to_owned()), "{routes:?}");
    assert!(routes.contains(&"default 10.77.9.1 eth0 global".to_owned()), "{routes:?}");
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
}

#[test]
fn a_missing_device_times_out_with_an_error_naming_it() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    let p = params(&["10.77.0.2:::24::nope0:off"]);
    let t = Instant::now();
    let e = n.in_client(move || net::bring_up(&p, Duration::from_secs(1)).unwrap_err());
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(matches!(e, NetError::NoLink { .. }), "{e:?}");
    assert_eq!(e.to_string(), "no link nope0 appeared within 1 s");
}

#[test]
fn a_failure_part_way_leaves_nothing_configured() {
    if !can_run() {
        return;
    }
    let n = Net::new(2);
    // eth0 and eth1 are configured (address, default route), then the third link never appears.
    let p = params(&[
        "10.77.0.2::10.77.0.1:24::eth0:off",
        "10.78.0.2:::24::eth1:off",
        "10.79.0.2:::24::missing0:off",
    ]);
    let e = n.in_client(move || net::bring_up(&p, Duration::from_secs(1)).unwrap_err());
    assert_eq!(e.to_string(), "no link missing0 appeared within 1 s");
    n.assert_clean("eth0");
    n.assert_clean("eth1");
}

#[test]
fn a_kernel_refusal_names_the_step_and_is_undone() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    // A gateway on the link's own subnet broadcast address is refused by the kernel (EINVAL).
    let p: Vec<IpParam> = vec!["10.77.0.2::10.77.0.255:24::eth0:off".parse().unwrap()];
    let e = n.in_client(move || net::bring_up(&p, Duration::from_secs(2)).unwrap_err());
    assert!(e.to_string().starts_with("add route default via 10.77.0.255 dev eth0: "), "{e}");
    n.assert_clean("eth0");
}

#[test]
fn take_down_is_idempotent_when_things_are_gone_already() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    let p = params(&["10.77.0.2::10.77.0.1:24::eth0:off"]);
    let up = n.in_client(move || net::bring_up(&p, Duration::from_secs(5)).unwrap());
    run(&["ip", "-n", &n.client, "addr", "flush", "dev", "eth0"]);
    run(&["ip", "-n", &n.client, "link", "set", "eth0", "down"]);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
}

fn dhcp_up(n: &Net, v: &'static str, timeout: u64) -> (Result<Up, NetError>, String) {
    let p = params(&[v]);
    n.in_client(move || (net::bring_up(&p, Duration::from_secs(timeout)), hostname()))
}

#[test]
fn dhcp_gets_the_lease_dnsmasq_hands_out() {
    if !can_run() {
        return;
    }
    let mut n = Net::new(1);
    n.dnsmasq(0);
    let (up, host) = dhcp_up(&n, "eth0:dhcp", 20);
    let up = up.unwrap();
    assert_eq!(n.addrs("eth0"), [("10.77.0.60".into(), 24, Some("10.77.0.255".into()))]);
    assert!(n.routes().contains(&"default 10.77.0.1 eth0 global".to_owned()), "{:?}", n.routes());
    assert_eq!(host, "lethe-box", "the host name from the lease");
    assert_eq!(up.summary(), ["eth0: 10.77.0.60/24 via 10.77.0.1 (dhcp from 10.77.0.1, lease 43200 s)"]);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
}

#[test]
fn ip_dhcp_tries_every_link_and_the_first_lease_wins() {
    if !can_run() {
        return;
    }
    let mut n = Net::new(2);
    n.dnsmasq(1); // only eth1 has a server
    let (up, _) = dhcp_up(&n, "dhcp", 20);
    let up = up.unwrap();
    assert_eq!(n.addrs("eth1"), [("10.78.0.60".into(), 24, Some("10.78.0.255".into()))]);
    assert!(!n.is_up("eth0"), "the link without a lease is put back down");
    assert_eq!(up.addresses(), [("eth1".to_owned(), Ipv4Addr::new(10, 78, 0, 60), 24)]);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth1");
}

#[test]
fn dhcp_without_a_server_times_out_and_leaves_the_link_down() {
    if !can_run() {
        return;
    }
    let n = Net::new(1);
    let t = Instant::now();
    let (r, _) = dhcp_up(&n, "eth0:dhcp", 2);
    let e = r.unwrap_err();
    assert!(t.elapsed() >= Duration::from_secs(2) && t.elapsed() < Duration::from_secs(6));
    assert_eq!(
        e.to_string(),
        "no DHCP lease: eth0: dhcp: no lease within the timeout (0 offers, 0 refusals)"
    );
    n.assert_clean("eth0");
}

/// UDP payloads from port 67 to 68 that must all be dropped.
fn junk() -> Vec<Vec<u8>> {
    let mut reply = vec![0u8; 300];
    reply[0] = 2; // BOOTREPLY
    reply[1] = 1;
    reply[2] = 200; // hlen far past chaddr's 16 bytes
    reply[236..240].copy_from_slice(&[99, 130, 83, 99]);
    reply[240..243].copy_from_slice(&[53, 1, 2]); // OFFER
    reply[243] = 255;
    let mut mac_ok = reply.clone();
    mac_ok[2] = 6;
    mac_ok[28..34].copy_from_slice(&[2, 0, 0, 0x77, 0, 2]);
    mac_ok[16..20].copy_from_slice(&[10, 77, 0, 66]); // yiaddr, but no server identifier
    let mut truncated_option = mac_ok.clone();
    truncated_option.truncate(242);
    vec![Vec::new(), vec![0xff; 3], (0..=255).collect(), reply, mac_ok, truncated_option, vec![2; 1400]]
}

/// Sends UDP datagrams from port 67 to 255.255.255.255:68 inside `ns` until `stop`, with a
/// checksum or, every other time, a wrong one.
fn spray(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        use rustix::net::{AddressFamily, SendFlags, SocketType, ipproto, socket};
        let s = socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::UDP)).unwrap();
        rustix::net::sockopt::set_socket_broadcast(&s, true).unwrap();
        // The subnet broadcast: 255.255.255.255 has no route in a namespace without a default route.
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 255), 0);
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (i, p) in junk().iter().enumerate() {
                let mut udp = Vec::new();
                udp.extend_from_slice(&67u16.to_be_bytes());
                udp.extend_from_slice(&68u16.to_be_bytes());
                udp.extend_from_slice(&((8 + p.len()) as u16).to_be_bytes());
                // A wrong checksum, or none (0: accepted, so the payload reaches the DHCP parser).
                udp.extend_from_slice(if i % 2 == 0 { &[0, 0] } else { &[0x12, 0x34] });
                udp.extend_from_slice(p);
                if rustix::net::sendto(&s, &udp, SendFlags::empty(), &to).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    })
}

#[test]
fn malformed_packets_during_dhcp_do_not_stop_it_getting_the_lease() {
    if !can_run() {
        return;
    }
    let mut n = Net::new(1);
    let stop = Arc::new(AtomicBool::new(false));
    // The spray starts before the server: the client's first DISCOVER waits among junk only.
    let sprayer = spray(n.server.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    n.dnsmasq(0);
    let (up, _) = dhcp_up(&n, "eth0:dhcp", 20);
    stop.store(true, Ordering::Relaxed);
    let sent = sprayer.join().unwrap();
    assert!(sent > 50, "only {sent} junk datagrams were sent");
    let up = up.unwrap();
    assert_eq!(n.addrs("eth0"), [("10.77.0.60".into(), 24, Some("10.77.0.255".into()))]);
    n.in_client(move || net::take_down(up).unwrap());
    n.assert_clean("eth0");
}
