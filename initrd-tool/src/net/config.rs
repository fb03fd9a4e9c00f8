//! The `network` config section: which links stage 1 brings up for the SSH unlock, and for how long.

use std::time::Duration;

use persist_bind::config::ConfigError;
use serde::Deserialize;

use super::ip_param::IpParam;

/// How long links and leases are waited for unless `timeout` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait a config may ask for: an hour (longer is a typo).
const MAX_TIMEOUT_SECS: u64 = 3600;

/// `network`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// Values in the kernel's `ip=` syntax; `ip=` on the kernel command line replace them for one boot.
    #[serde(default)]
    pub ip: Vec<String>,
    /// Leave the links configured after switch_root (default: flushed and down).
    #[serde(default)]
    pub keep_up: bool,
    /// Seconds to wait for a link to appear and for a DHCP lease (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
}

impl Network {
    /// The wait for links and leases.
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs)
    }

    /// Problems with their JSON paths: `network.ip[1]: ...`.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (i, v) in self.ip.iter().enumerate() {
            match v.parse::<IpParam>() {
                Ok(p) => parsed.push(p),
                Err(e) => errors.push(err(&format!("network.ip[{i}]"), e.to_string())),
            }
        }
        if errors.is_empty()
            && let Err(e) = super::check_together(&parsed)
        {
            errors.push(err("network.ip", e.to_string()));
        }
        if let Some(t) = self.timeout
            && (t == 0 || t > MAX_TIMEOUT_SECS)
        {
            errors.push(err("network.timeout", format!("expected 1 to {MAX_TIMEOUT_SECS} seconds, got {t}")));
        }
        errors
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_owned(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> Result<Network, String> {
        let n: Network = persist_bind::config::parse_json(json.as_bytes()).map_err(|e| e.to_string())?;
        let errors = n.validate();
        if errors.is_empty() {
            Ok(n)
        } else {
            Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        }
    }

    #[test]
    fn defaults_are_no_links_flushed_and_30_seconds() {
        let n = network("{}").unwrap();
        assert!(n.ip.is_empty() && !n.keep_up);
        assert_eq!(n.timeout(), Duration::from_secs(30));
    }

    #[test]
    fn every_field() {
        let n = network(
            r#"{"ip": ["10.0.2.15::10.0.2.2:24::eth0:off", "eth1:dhcp"], "keepUp": true, "timeout": 5}"#,
        )
        .unwrap();
        assert_eq!(n.ip.len(), 2);
        assert!(n.keep_up);
        assert_eq!(n.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = network(r#"{"ip": ["dhcp", "10.0.2.15::10.0.2.2:255.255.0.255::eth0:off"], "timeout": 0}"#)
            .unwrap_err();
        assert_eq!(
            e,
            "network.ip[1]: ip=10.0.2.15::10.0.2.2:255.255.0.255::eth0:off: netmask 255.255.0.255 is not contiguous\n\
             network.timeout: expected 1 to 3600 seconds, got 0"
        );
        let e = network(r#"{"ip": ["eth0:dhcp", "10.0.0.2:::24::eth0:off"]}"#).unwrap_err();
        assert_eq!(
            e,
            "network.ip: ip=10.0.0.2:::255.255.255.0::eth0:off:::: eth0 is configured by ip=eth0:dhcp already"
        );
        assert!(network(r#"{"keep_up": true}"#).unwrap_err().contains("unknown field `keep_up`"));
    }
}
