//! The `ssh` config section: port, host keys, authorized keys and the server's limits.

use std::path::PathBuf;

use persist_bind::config::ConfigError;
use serde::Deserialize;

use super::keys;

/// `ssh`: the SSH unlock server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private host keys inside the initramfs (OpenSSH format, ed25519; `initrd-tool ssh keygen`
    /// makes one). Never the machine's stage-2 host key.
    pub host_keys: Vec<PathBuf>,
    /// authorized_keys lines (`ssh-ed25519 AAAA... alice@laptop`); options before the key type
    /// are refused with a clear error.
    pub authorized_keys: Vec<String>,
    /// Failed authentications per connection.
    #[serde(default = "default_max_auth_tries")]
    pub max_auth_tries: u32,
    /// Authentication attempts of all connections together per minute.
    #[serde(default = "default_max_auth_per_minute")]
    pub max_auth_per_minute: u32,
    /// Concurrent connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Seconds a connection may stay silent.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
}

fn default_port() -> u16 {
    22
}
fn default_max_auth_tries() -> u32 {
    3
}
fn default_max_auth_per_minute() -> u32 {
    30
}
fn default_max_connections() -> u32 {
    4
}
fn default_idle_timeout() -> u64 {
    300
}

/// Limits beyond these are typos.
const MAX_LIMIT: u32 = 10_000;
const MAX_IDLE_TIMEOUT: u64 = 24 * 3600;

impl Ssh {
    /// Every problem, each with its JSON path.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.port == 0 {
            errors.push(err("ssh.port", "expected a port from 1 to 65535"));
        }
        if self.host_keys.is_empty() {
            errors.push(err("ssh.hostKeys", "at least one host key is needed (`initrd-tool ssh keygen`)"));
        }
        for (i, p) in self.host_keys.iter().enumerate() {
            let s = p.to_str().unwrap_or("");
            if !s.starts_with('/') || s.contains('\0') || p.components().any(|c| c.as_os_str() == "..") {
                errors.push(err(
                    &format!("ssh.hostKeys[{i}]"),
                    format!("expected an absolute path in the initramfs without '..', got {p:?}"),
                ));
            }
        }
        if self.authorized_keys.is_empty() {
            errors.push(err("ssh.authorizedKeys", "at least one key is needed, or nobody can unlock"));
        }
        for (i, line) in self.authorized_keys.iter().enumerate() {
            if let Err(e) = keys::parse_authorized_key(line) {
                errors.push(err(&format!("ssh.authorizedKeys[{i}]"), e.to_string()));
            }
        }
        for (name, v) in [
            ("maxAuthTries", self.max_auth_tries),
            ("maxAuthPerMinute", self.max_auth_per_minute),
            ("maxConnections", self.max_connections),
        ] {
            if v == 0 || v > MAX_LIMIT {
                errors.push(err(&format!("ssh.{name}"), format!("expected 1 to {MAX_LIMIT}, got {v}")));
            }
        }
        if self.idle_timeout == 0 || self.idle_timeout > MAX_IDLE_TIMEOUT {
            errors.push(err(
                "ssh.idleTimeout",
                format!("expected 1 to {MAX_IDLE_TIMEOUT} seconds, got {}", self.idle_timeout),
            ));
        }
        errors
    }

    /// The authorized keys (the lines that parse; [`Ssh::validate`] reports the others).
    pub fn authorized(&self) -> keys::Authorized {
        keys::Authorized::new(
            self.authorized_keys.iter().filter_map(|l| keys::parse_authorized_key(l).ok()).collect(),
        )
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.to_owned(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMZ5dDDVcdgKKBt90jJhTpJ6Kdcw+QQvtjKK5ZwANGvz a@b";

    fn parse(json: &str) -> Ssh {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_follow_openssh_and_the_issue() {
        let s = parse(&format!(r#"{{"hostKeys": ["/etc/lethe/k"], "authorizedKeys": ["{KEY}"]}}"#));
        assert_eq!(
            (s.port, s.max_auth_tries, s.max_auth_per_minute, s.max_connections, s.idle_timeout),
            (22, 3, 30, 4, 300)
        );
        assert!(s.validate().is_empty());
        assert!(s.authorized().contains(&keys::parse_authorized_key(KEY).unwrap()));
    }

    #[test]
    fn every_problem_names_its_path() {
        let s = parse(
            r#"{"port": 0, "hostKeys": ["etc/k", "/a/../b"], "authorizedKeys": ["no-pty ssh-ed25519 AAAA"],
                "maxAuthTries": 0, "maxConnections": 0, "idleTimeout": 0}"#,
        );
        let e: Vec<String> = s.validate().iter().map(|e| e.to_string()).collect();
        assert_eq!(e.len(), 7, "{e:#?}");
        assert!(e[0].starts_with("ssh.port: "));
        assert!(e[1].starts_with("ssh.hostKeys[0]: expected an absolute path"));
        assert!(e[2].starts_with("ssh.hostKeys[1]: "));
        assert!(e[3].starts_with("ssh.authorizedKeys[0]: options before the key type"), "{}", e[3]);
        assert!(e[4].starts_with("ssh.maxAuthTries: expected 1 to"));
        assert!(e[5].starts_with("ssh.maxConnections: "));
        assert!(e[6].starts_with("ssh.idleTimeout: "));
        let s = parse(r#"{"hostKeys": [], "authorizedKeys": []}"#);
        let e: Vec<String> = s.validate().iter().map(|e| e.to_string()).collect();
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].starts_with("ssh.hostKeys: at least one"));
        assert!(e[1].starts_with("ssh.authorizedKeys: at least one"));
        assert!(serde_json::from_str::<Ssh>(r#"{"hostKeys": [], "authorizedKeys": [], "typo": 1}"#).is_err());
    }
}
