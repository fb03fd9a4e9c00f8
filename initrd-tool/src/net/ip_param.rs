//! The kernel's `ip=` syntax (nfsroot.rst), and dracut's `ip=<interface>:dhcp`: what one value asks for.
//!
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
//! `ip=off|none`, `ip=on|any|dhcp`. Only a static IPv4 address and DHCPv4 are carried out; BOOTP,
//! RARP and IPv6 are refused with a message saying so.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Longest interface name the kernel takes (IFNAMSIZ less the NUL).
const IFNAMSIZ: usize = 15;
/// Longest host name (`__NEW_UTS_LEN`).
const HOST_NAME_MAX: usize = 64;

/// One `ip=` value, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpParam {
    /// The link to configure; `None`: the first ethernet link (static) or every one (DHCP).
    pub device: Option<String>,
    pub method: Method,
    /// Set as the host name when given (for DHCP, in place of the server's).
    pub hostname: Option<String>,
    /// The `<server-ip>` field (the NFS server's in the kernel; kept for the round trip only).
    pub server: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Option<Ipv4Addr>,
}

/// How the link gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `ip=off`/`none`: no network.
    Off,
    Dhcp,
    Static(Static),
}

/// A static address, as the kernel's fields give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Static {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// A value that cannot be carried out: the value, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ip={value}: {message}")]
pub struct IpParamError {
    pub value: String,
    /// `client-ip`, `netmask`, `device`, ... (the nfsroot.rst names).
    pub field: &'static str,
    pub message: String,
}

const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// What the `<autoconf>` field (or a whole one-word value) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Autoconf {
    Off,
    Static,
    Dhcp,
}

fn autoconf(word: &str) -> Result<Option<Autoconf>, String> {
    Ok(Some(match word {
        "off" | "none" => Autoconf::Off,
        "static" => Autoconf::Static,
        "on" | "any" | "dhcp" => Autoconf::Dhcp,
        "" => return Ok(None),
        "bootp" | "rarp" | "both" => {
            return Err(format!("{word} is not supported: only a static address and dhcp are"));
        }
        "dhcp6" | "auto6" | "link6" | "either6" | "ibft" => {
            return Err(format!("{word} is not supported: only a static IPv4 address and dhcp are"));
        }
        _ => return Err(format!("{word:?} is not off, none, static, on, any or dhcp")),
    }))
}

impl FromStr for IpParam {
    type Err = IpParamError;

    fn from_str(value: &str) -> Result<IpParam, IpParamError> {
        let fail =
            |field: &'static str, message: String| IpParamError { value: value.to_owned(), field, message };
        if value.contains('[') || value.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(fail("ip", "IPv6 is not supported: only a static IPv4 address and dhcp are".into()));
        }
        if value.is_empty() {
            return Err(fail("ip", "empty: expected off, dhcp or client-ip:...:device:autoconf".into()));
        }
        if value.split(':').count() > FIELDS.len() {
            return Err(fail("ip", format!("more than {} colon-separated fields", FIELDS.len())));
        }
        let empty = IpParam {
            device: None,
            method: Method::Off,
            hostname: None,
            server: None,
            dns: vec![],
            ntp: None,
        };
        if !value.contains(':') {
            return match autoconf(value).map_err(|m| fail("autoconf", m))? {
                Some(Autoconf::Off) => Ok(empty),
                Some(Autoconf::Dhcp) => Ok(IpParam { method: Method::Dhcp, ..empty }),
                Some(Autoconf::Static) | None => Err(fail(
                    "autoconf",
                    "a static address needs the long form (client-ip:...:device:off)".into(),
                )),
            };
        }
        let f: Vec<&str> = value.split(':').collect();
        // dracut's `<interface>:dhcp`: its first field is no address, which the kernel's is.
        if f.len() == 2 && f[0].parse::<Ipv4Addr>().is_err() && !f[0].is_empty() {
            let device = check_device(f[0]).map_err(|m| fail("device", m))?;
            return match autoconf(f[1]).map_err(|m| fail("autoconf", m))? {
                Some(Autoconf::Dhcp) => Ok(IpParam { device: Some(device), method: Method::Dhcp, ..empty }),
                _ => Err(fail(
                    "autoconf",
                    format!("{:?} after an interface name: expected dhcp, on or any", f[1]),
                )),
            };
        }
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        let addr = |i: usize| -> Result<Option<Ipv4Addr>, IpParamError> {
            match field(i) {
                "" => Ok(None),
                s => {
                    s.parse().map(Some).map_err(|_| fail(FIELDS[i], format!("{s:?} is not an IPv4 address")))
                }
            }
        };
        let client = addr(0)?;
        let server = addr(1)?;
        let gateway = addr(2)?;
        let hostname = match field(4) {
            "" => None,
            h => Some(check_hostname(h).map_err(|m| fail("hostname", m))?),
        };
        let device = match field(5) {
            "" => None,
            d => Some(check_device(d).map_err(|m| fail("device", m))?),
        };
        let mode = autoconf(field(6)).map_err(|m| fail("autoconf", m))?;
        let dns: Vec<Ipv4Addr> = [addr(7)?, addr(8)?].into_iter().flatten().collect();
        let ntp = addr(9)?;
        // As the kernel: a given client address is configured statically (it autoconfigures only
        // when it lacks one), and an empty autoconf field means "any".
        let method = match (client, mode) {
            (_, Some(Autoconf::Off | Autoconf::Static)) | (Some(_), None | Some(Autoconf::Dhcp)) => {
                let Some(address) = client else {
                    return Err(fail(
                        "client-ip",
                        "a static address (autoconf off) needs the client-ip".into(),
                    ));
                };
                if address.is_unspecified()
                    || address.is_broadcast()
                    || address.is_multicast()
                    || address.is_loopback()
                {
                    return Err(fail("client-ip", format!("{address} is not a unicast host address")));
                }
                let prefix = match field(3) {
                    "" => class_prefix(address),
                    m => netmask(m).map_err(|e| fail("netmask", e))?,
                };
                if let Some(g) = gateway
                    && (g == address || g.is_unspecified() || g.is_broadcast() || g.is_multicast())
                {
                    return Err(fail("gw-ip", format!("{g} cannot be the gateway of {address}")));
                }
                Method::Static(Static { address, prefix, gateway })
            }
            (None, None | Some(Autoconf::Dhcp)) => {
                for i in [2, 3] {
                    if !field(i).is_empty() {
                        return Err(fail(
                            FIELDS[i],
                            "given with dhcp: the lease says it (or give client-ip)".into(),
                        ));
                    }
                }
                Method::Dhcp
            }
        };
        Ok(IpParam { device, method, hostname, server, dns, ntp })
    }
}

/// The prefix of a dotted netmask (contiguous ones) or of a prefix length (dracut accepts both).
fn netmask(m: &str) -> Result<u8, String> {
    if let Ok(n) = m.parse::<u8>()
        && !m.starts_with('+')
    {
        return if n <= 32 { Ok(n) } else { Err(format!("prefix length {n} is more than 32")) };
    }
    let mask: Ipv4Addr =
        m.parse().map_err(|_| format!("{m:?} is neither a dotted netmask nor a prefix length"))?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(format!("netmask {m} is not contiguous"));
    }
    Ok(bits.leading_ones() as u8)
}

/// The classful prefix the kernel assumes when no netmask is given.
pub(crate) fn class_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

fn check_device(d: &str) -> Result<String, String> {
    if d.len() > IFNAMSIZ {
        return Err(format!("{d:?} is longer than {IFNAMSIZ} bytes, no interface is named so"));
    }
    if d == "." || d == ".." || d.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
        return Err(format!("{d:?} is not an interface name"));
    }
    Ok(d.to_owned())
}

fn check_hostname(h: &str) -> Result<String, String> {
    if h.len() > HOST_NAME_MAX {
        return Err(format!("{h:?} is longer than {HOST_NAME_MAX} bytes"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !h.split('.').all(label_ok) {
        return Err(format!("{h:?} is not a host name (letters, digits, '-', dot-separated)"));
    }
    Ok(h.to_owned())
}

/// Checks a host name from anywhere (a DHCP lease): the same rules as `ip=`'s field.
pub(crate) fn valid_hostname(h: &str) -> bool {
    check_hostname(h).is_ok()
}

fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

impl fmt::Display for IpParam {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
        let tail =
            self.hostname.is_some() || self.server.is_some() || !self.dns.is_empty() || self.ntp.is_some();
        match &self.method {
            Method::Off if self.device.is_none() && !tail => return f.write_str("off"),
            // dracut's `<if>:dhcp`, unless the device's name reads as an address: the parser would
            // take that for the kernel's form.
            Method::Dhcp
                if !tail && self.device.as_deref().is_none_or(|d| d.parse::<Ipv4Addr>().is_err()) =>
            {
                return match &self.device {
                    None => f.write_str("dhcp"),
                    Some(d) => write!(f, "{d}:dhcp"),
                };
            }
            _ => {}
        }
        let (client, gw, mask, auto) = match &self.method {
            Method::Static(s) => {
                (s.address.to_string(), opt(s.gateway), prefix_mask(s.prefix).to_string(), "off")
            }
            Method::Dhcp => (String::new(), String::new(), String::new(), "dhcp"),
            // Unreachable from a parse (off with fields is static or an error), but printable.
            Method::Off => (String::new(), String::new(), String::new(), "none"),
        };
        write!(
            f,
            "{client}:{}:{gw}:{mask}:{}:{}:{auto}:{}:{}:{}",
            opt(self.server),
            self.hostname.as_deref().unwrap_or(""),
            self.device.as_deref().unwrap_or(""),
            opt(self.dns.first().copied()),
            opt(self.dns.get(1).copied()),
            opt(self.ntp),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpParam {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<IpParam>().unwrap_err().to_string()
    }

    fn st(a: [u8; 4], prefix: u8, gw: Option<[u8; 4]>) -> Method {
        Method::Static(Static { address: a.into(), prefix, gateway: gw.map(Into::into) })
    }

    #[test]
    fn off_and_none_bring_nothing_up() {
        for v in ["off", "none"] {
            assert_eq!(p(v).method, Method::Off);
            assert_eq!(p(v).device, None);
        }
    }

    #[test]
    fn on_any_dhcp_ask_dhcp_on_every_link() {
        for v in ["on", "any", "dhcp"] {
            assert_eq!((p(v).method, p(v).device), (Method::Dhcp, None));
        }
    }

    #[test]
    fn the_full_static_form() {
        let v = p("10.0.2.15:10.0.2.4:10.0.2.2:255.255.255.0:box:eth0:off:1.1.1.1:8.8.8.8:10.0.2.3");
        assert_eq!(v.method, st([10, 0, 2, 15], 24, Some([10, 0, 2, 2])));
        assert_eq!(v.device.as_deref(), Some("eth0"));
        assert_eq!(v.hostname.as_deref(), Some("box"));
        assert_eq!(v.server, Some(Ipv4Addr::new(10, 0, 2, 4)));
        assert_eq!(v.dns, [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]);
        assert_eq!(v.ntp, Some(Ipv4Addr::new(10, 0, 2, 3)));
    }

    #[test]
    fn none_and_static_in_autoconf_are_static_too() {
        assert_eq!(p("10.0.2.15::::::none").method, st([10, 0, 2, 15], 8, None));
        assert_eq!(p("192.168.1.9:::24:::static").method, st([192, 168, 1, 9], 24, None));
    }

    #[test]
    fn a_prefix_length_works_as_netmask_like_dracut() {
        assert_eq!(p("10.0.2.15::10.0.2.2:22::eth0:off").method, st([10, 0, 2, 15], 22, Some([10, 0, 2, 2])));
        assert_eq!(p("10.0.2.15:::32::eth0:off").method, st([10, 0, 2, 15], 32, None));
    }

    #[test]
    fn a_missing_netmask_takes_the_class_default() {
        assert_eq!(p("10.1.2.3::::::off").method, st([10, 1, 2, 3], 8, None));
        assert_eq!(p("172.16.0.5::::::off").method, st([172, 16, 0, 5], 16, None));
        assert_eq!(p("192.168.0.5::::::off").method, st([192, 168, 0, 5], 24, None));
    }

    #[test]
    fn a_client_address_is_static_whatever_autoconf_says_as_in_the_kernel() {
        assert_eq!(p("10.0.2.15:::255.0.0.0::eth0").method, st([10, 0, 2, 15], 8, None));
        assert_eq!(p("10.0.2.15:::255.0.0.0::eth0:dhcp").method, st([10, 0, 2, 15], 8, None));
    }

    #[test]
    fn an_empty_client_address_with_dhcp_or_empty_autoconf_is_dhcp() {
        let v = p(":::::eth1:dhcp");
        assert_eq!((v.method, v.device.as_deref()), (Method::Dhcp, Some("eth1")));
        let v = p("::::myhost::");
        assert_eq!((v.method, v.hostname.as_deref(), v.device), (Method::Dhcp, Some("myhost"), None));
    }

    #[test]
    fn dracuts_interface_dhcp_form() {
        for v in ["eth0:dhcp", "eth0:on", "eth0:any"] {
            assert_eq!((p(v).method, p(v).device.as_deref()), (Method::Dhcp, Some("eth0")));
        }
    }

    #[test]
    fn the_display_form_parses_back_to_the_same_value() {
        for v in [
            "off",
            "dhcp",
            "eth0:dhcp",
            "10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off::",
            "10.0.2.15:1.2.3.4::255.255.252.0:::off:1.1.1.1:8.8.8.8:9.9.9.9",
            "::::h:eth1:dhcp",
            // A device named like an address (found by the fuzzer): printed in the kernel's form.
            ":::::0.0.2.4",
        ] {
            let a = p(v);
            assert_eq!(p(&a.to_string()), a, "{v} -> {a}");
        }
        assert_eq!(
            p("10.0.2.15::10.0.2.2:24::eth0:off").to_string(),
            "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:::"
        );
    }

    #[test]
    fn errors_name_the_value_and_the_field() {
        assert_eq!(
            err("10.0.2.15::10.0.2.2:255.255.0.255::eth0:off"),
            "ip=10.0.2.15::10.0.2.2:255.255.0.255::eth0:off: netmask 255.255.0.255 is not contiguous"
        );
        assert_eq!(
            err("10.0.2.15:::33::eth0:off"),
            "ip=10.0.2.15:::33::eth0:off: prefix length 33 is more than 32"
        );
        assert_eq!(err("10.0.2.x::::::off"), "ip=10.0.2.x::::::off: \"10.0.2.x\" is not an IPv4 address");
        assert_eq!(
            err(":::::eth0:off"),
            "ip=:::::eth0:off: a static address (autoconf off) needs the client-ip"
        );
        assert_eq!(
            err("10.0.0.1::10.0.0.1:8:::off"),
            "ip=10.0.0.1::10.0.0.1:8:::off: 10.0.0.1 cannot be the gateway of 10.0.0.1"
        );
        assert_eq!(
            err("255.255.255.255::::::off"),
            "ip=255.255.255.255::::::off: 255.255.255.255 is not a unicast host address"
        );
        assert!(err("10.0.0.1::::a_b::off").contains("\"a_b\" is not a host name"));
        assert!(err("10.0.0.1:::::averyveryverylongname0:off").contains("is longer than 15 bytes"));
        assert!(err("10.0.0.1::::::maybe").contains("\"maybe\" is not off, none, static, on, any or dhcp"));
        assert_eq!(
            err("::10.0.0.1::::dhcp"),
            "ip=::10.0.0.1::::dhcp: given with dhcp: the lease says it (or give client-ip)"
        );
        assert_eq!(
            err("static"),
            "ip=static: a static address needs the long form (client-ip:...:device:off)"
        );
        assert!(err("eth0:off").contains("\"off\" after an interface name: expected dhcp, on or any"));
        let e: IpParamError = "1.2.3.4:::xx::eth0:off".parse::<IpParam>().unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("netmask", "1.2.3.4:::xx::eth0:off"));
    }

    #[test]
    fn bootp_rarp_and_ipv6_are_refused_clearly() {
        for v in ["bootp", "rarp", "both", "10.0.0.1::::::bootp"] {
            assert!(err(v).contains("is not supported: only a static address and dhcp are"), "{v}");
        }
        for v in ["eth0:dhcp6", "[2001:db8::1]::[2001:db8::ff]:64::eth0:none", "auto6", "fe80::1"] {
            assert!(err(v).contains("only a static IPv4 address and dhcp are"), "{v}: {}", err(v));
        }
    }

    #[test]
    fn junk_is_an_error_never_a_panic() {
        for v in ["", ":", "::::::::::", "\0", "é:dhcp", "1.2.3.4:::::::::::", "a:b:c"] {
            let _ = v.parse::<IpParam>();
        }
        assert!(":".parse::<IpParam>().is_ok_and(|p| p.method == Method::Dhcp));
    }
}
