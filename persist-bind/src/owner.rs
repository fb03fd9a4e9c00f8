//! Resolving user and group names to ids: config maps, the new root's passwd/group, NixOS's persisted uid-map/gid-map.

use std::collections::BTreeMap;

use crate::beneath::{FsError, Root};
use crate::config::{Document, Group};
use crate::path::RootPath;

/// Owner databases larger than this are refused rather than read.
const DB_LIMIT: u64 = 16 << 20;

/// Name-to-id tables, in the order they are consulted.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    config_uids: BTreeMap<String, u32>,
    config_gids: BTreeMap<String, u32>,
    passwd: BTreeMap<String, PasswdEntry>,
    group: BTreeMap<String, u32>,
    uid_map: BTreeMap<String, u32>,
    gid_map: BTreeMap<String, u32>,
    /// Where the tables were read from, for error messages.
    sources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswdEntry {
    pub uid: u32,
    pub gid: u32,
}

/// A name no table knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("unknown user {name:?} (looked in {looked})")]
    User { name: String, looked: String },
    #[error("unknown group {name:?} (looked in {looked})")]
    Group { name: String, looked: String },
    #[error(
        "the primary group of user {name:?} is unknown (no /etc/passwd entry; looked in {looked}): set users.{name}.group or add it to `gids`"
    )]
    PrimaryGroup { name: String, looked: String },
}

impl Ids {
    /// Reads the tables for `doc` beneath `root`. Missing files are fine;
    /// a file that exists but cannot be read is an error.
    pub fn load(doc: &Document, root: &Root) -> Result<Ids, FsError> {
        let mut ids = Ids {
            config_uids: doc.uids.clone(),
            config_gids: doc.gids.clone(),
            sources: vec!["the config's uids/gids".into()],
            ..Ids::default()
        };
        let etc_passwd = RootPath::parse("/etc/passwd").unwrap();
        if let Some(b) = root.read(&etc_passwd, DB_LIMIT)? {
            ids.passwd = parse_passwd(&b);
            ids.sources.push(etc_passwd.to_string());
        }
        let etc_group = RootPath::parse("/etc/group").unwrap();
        if let Some(b) = root.read(&etc_group, DB_LIMIT)? {
            ids.group = parse_group(&b);
            ids.sources.push(etc_group.to_string());
        }
        // NixOS keeps the ids it allocated in /var/lib/nixos: look on the
        // root (already persisted) and in every storage location.
        let mut bases = vec![RootPath::root()];
        bases.extend(doc.storage_paths());
        for base in bases {
            for (file, map) in [("uid-map", &mut ids.uid_map), ("gid-map", &mut ids.gid_map)] {
                let p = base.join("var/lib/nixos").unwrap().join(file).unwrap();
                // A planted symlink or unreadable map is skipped, not fatal:
                // it is only a fallback, and a name it would have resolved
                // is reported as unknown.
                if let Ok(Some(b)) = root.read(&p, DB_LIMIT) {
                    for (k, v) in parse_id_map(&b) {
                        map.entry(k).or_insert(v);
                    }
                    ids.sources.push(p.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Tables from the config alone (for planning without a root).
    pub fn from_config(doc: &Document) -> Ids {
        Ids {
            config_uids: doc.uids.clone(),
            config_gids: doc.gids.clone(),
            sources: vec!["the config's uids/gids".into()],
            ..Ids::default()
        }
    }

    fn looked(&self) -> String {
        self.sources.join(", ")
    }

    pub fn uid(&self, name: &str) -> Result<u32, OwnerError> {
        numeric(name)
            .or_else(|| (name == "root").then_some(0))
            .or_else(|| self.config_uids.get(name).copied())
            .or_else(|| self.passwd.get(name).map(|e| e.uid))
            .or_else(|| self.uid_map.get(name).copied())
            .ok_or_else(|| OwnerError::User { name: name.into(), looked: self.looked() })
    }

    pub fn gid(&self, name: &str) -> Result<u32, OwnerError> {
        numeric(name)
            .or_else(|| (name == "root").then_some(0))
            .or_else(|| self.config_gids.get(name).copied())
            .or_else(|| self.group.get(name).copied())
            .or_else(|| self.gid_map.get(name).copied())
            .ok_or_else(|| OwnerError::Group { name: name.into(), looked: self.looked() })
    }

    /// Resolves a [`Group`], which may be "the user's primary group".
    pub fn group_id(&self, g: &Group) -> Result<u32, OwnerError> {
        match g {
            Group::Named(n) => self.gid(n),
            Group::PrimaryOf(u) if u == "root" => Ok(0),
            Group::PrimaryOf(u) => self
                .passwd
                .get(u)
                .map(|e| e.gid)
                .ok_or_else(|| OwnerError::PrimaryGroup { name: u.clone(), looked: self.looked() }),
        }
    }

    /// The name to show for `uid` (a name we resolved, else the number).
    pub fn user_name(&self, uid: u32) -> String {
        reverse(uid, [&self.config_uids, &self.uid_map])
            .or_else(|| self.passwd.iter().find(|(_, e)| e.uid == uid).map(|(n, _)| n.clone()))
            .unwrap_or_else(|| if uid == 0 { "root".into() } else { uid.to_string() })
    }

    pub fn group_name(&self, gid: u32) -> String {
        reverse(gid, [&self.config_gids, &self.group, &self.gid_map])
            .unwrap_or_else(|| if gid == 0 { "root".into() } else { gid.to_string() })
    }
}

fn reverse<const N: usize>(id: u32, maps: [&BTreeMap<String, u32>; N]) -> Option<String> {
    maps.iter().find_map(|m| m.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone()))
}

fn numeric(name: &str) -> Option<u32> {
    if name.bytes().all(|b| b.is_ascii_digit()) { name.parse().ok() } else { None }
}

/// Parses passwd(5): `name:x:uid:gid:gecos:home:shell`. Malformed lines
/// are skipped (the first entry for a name wins, as in glibc).
pub fn parse_passwd(bytes: &[u8]) -> BTreeMap<String, PasswdEntry> {
    let mut out = BTreeMap::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(uid), Some(gid)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Some(uid), Some(gid)) = (numeric(uid), numeric(gid)) else { continue };
        if !name.is_empty() && !name.starts_with(['+', '-', '#']) {
            out.entry(name.to_owned()).or_insert(PasswdEntry { uid, gid });
        }
    }
    out
}

/// Parses group(5): `name:x:gid:members`.
pub fn parse_group(bytes: &[u8]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(gid)) = (f.next(), f.next(), f.next()) else { continue };
        let Some(gid) = numeric(gid) else { continue };
        if !name.is_empty() && !name.starts_with(['+', '-', '#']) {
            out.entry(name.to_owned()).or_insert(gid);
        }
    }
    out
}

/// Parses NixOS's /var/lib/nixos/uid-map (a JSON object of name to id);
/// anything else yields an empty map.
pub fn parse_id_map(bytes: &[u8]) -> BTreeMap<String, u32> {
    serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(bytes)
        .map(|m| m.into_iter().filter_map(|(k, v)| Some((k, u32::try_from(v.as_u64()?).ok()?))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Ids {
        Ids {
            config_uids: [("alice".to_string(), 1000)].into(),
            config_gids: [("wheel".to_string(), 1)].into(),
            passwd: parse_passwd(
                b"root:x:0:0::/root:/bin/sh\nbob:x:1001:100::/home/bob:/bin/sh\nalice:x:4242:4242::/:/\n",
            ),
            group: parse_group(b"root:x:0:\nusers:x:100:bob\nbroken\n"),
            uid_map: parse_id_map(br#"{"carol": 1002, "neg": -1}"#),
            gid_map: parse_id_map(br#"{"carol": 1002}"#),
            sources: vec!["test".into()],
        }
    }

    #[test]
    fn config_maps_win_over_passwd_then_uid_map() {
        let ids = ids();
        assert_eq!(ids.uid("alice"), Ok(1000));
        assert_eq!(ids.uid("bob"), Ok(1001));
        assert_eq!(ids.uid("carol"), Ok(1002));
        assert_eq!(ids.uid("root"), Ok(0));
        assert_eq!(ids.uid("1234"), Ok(1234));
        assert_eq!(ids.gid("wheel"), Ok(1));
        assert_eq!(ids.gid("users"), Ok(100));
        assert_eq!(ids.gid("carol"), Ok(1002));
    }

    #[test]
    fn unknown_names_are_errors_never_guesses() {
        let ids = ids();
        assert!(matches!(ids.uid("mallory"), Err(OwnerError::User { .. })));
        assert!(matches!(ids.gid("neg"), Err(OwnerError::Group { .. })));
        assert!(matches!(
            ids.group_id(&Group::PrimaryOf("carol".into())),
            Err(OwnerError::PrimaryGroup { .. })
        ));
        assert_eq!(ids.group_id(&Group::PrimaryOf("bob".into())), Ok(100));
    }

    #[test]
    fn malformed_database_lines_are_skipped() {
        let p = parse_passwd(b"::::\nx\nok:x:1:2\nbad:x:-1:2\n+nis:x:3:3\n\xff:x:4:4\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p["ok"], PasswdEntry { uid: 1, gid: 2 });
        assert!(parse_id_map(b"not json").is_empty());
    }
}
