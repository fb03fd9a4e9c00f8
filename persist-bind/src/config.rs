//! The `persistence` section of /etc/lethe/config.json (impermanence's schema) and its validation.
//!
//! The document is what the NixOS module writes: `builtins.toJSON` of
//! `environment.persistence`, either as the user wrote it (strings or
//! `{directory, user, group, mode}` objects) or fully evaluated (with
//! impermanence's internal fields such as `dirPath` and `defaultPerms`).
//! Unknown fields are refused and every error names its JSON path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny};

use crate::mode::Mode;
use crate::path::{PathError, RootPath};

/// The config version this build reads.
pub const VERSION: u64 = 1;

/// The whole config document, as far as persist-bind reads it.
///
/// Sections owned by other lethe components are accepted here and
/// validated by `initrd-tool check-config`; anything else is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub version: Version,
    #[serde(default)]
    pub persistence: BTreeMap<String, Storage>,
    /// Numeric user ids by name; consulted before the root's /etc/passwd.
    #[serde(default)]
    pub uids: BTreeMap<String, u32>,
    /// Numeric group ids by name; consulted before the root's /etc/group.
    #[serde(default)]
    pub gids: BTreeMap<String, u32>,
    // Other components' sections.
    #[serde(default, rename = "modules")]
    _modules: Option<IgnoredAny>,
    #[serde(default, rename = "luks")]
    _luks: Option<IgnoredAny>,
    #[serde(default, rename = "ssh")]
    _ssh: Option<IgnoredAny>,
    #[serde(default, rename = "network")]
    _network: Option<IgnoredAny>,
    #[serde(default, rename = "pools")]
    _pools: Option<IgnoredAny>,
    #[serde(default, rename = "rollback")]
    _rollback: Option<IgnoredAny>,
    #[serde(default, rename = "root")]
    _root: Option<IgnoredAny>,
    #[serde(default, rename = "mounts")]
    _mounts: Option<IgnoredAny>,
}

/// `"version"`: only [`VERSION`] is accepted.
#[derive(Debug, Clone, Copy)]
pub struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == VERSION {
            Ok(Version)
        } else {
            Err(de::Error::custom(format!(
                "unsupported config version {v} (this lethe reads version {VERSION})"
            )))
        }
    }
}

/// One `environment.persistence.<name>` location.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    #[serde(default = "yes")]
    pub enable: bool,
    /// Defaults to the attribute name.
    #[serde(default)]
    pub persistent_storage_path: Option<String>,
    #[serde(default)]
    pub hide_mounts: bool,
    #[serde(default)]
    pub allow_trash: bool,
    #[serde(default)]
    pub directories: Vec<DirSpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub users: BTreeMap<String, UserSpec>,
    // impermanence options with no effect here.
    #[serde(default, rename = "enableDebugging")]
    _enable_debugging: Option<bool>,
    #[serde(default, rename = "enableWarnings")]
    _enable_warnings: Option<bool>,
    #[serde(default, rename = "assertions")]
    _assertions: Option<IgnoredAny>,
}

fn yes() -> bool {
    true
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn nullable<'de, D: de::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `users.<name>`: entries relative to the user's home.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    #[serde(default)]
    pub directories: Vec<DirSpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The home directory; `/home/<name>` when absent.
    #[serde(default)]
    pub home: Option<String>,
    /// The user's primary group (the NixOS module writes
    /// `users.users.<name>.group`); else the root's /etc/passwd decides.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default, rename = "assertions")]
    _assertions: Option<IgnoredAny>,
}

/// Owner and mode fields shared by directories and a file's parent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirFields {
    #[serde(default)]
    pub directory: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// `null` means the user's primary group.
    #[serde(default, deserialize_with = "nullable")]
    pub group: Option<Option<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub hide_mount: Option<bool>,
    #[serde(default)]
    pub allow_trash: Option<bool>,
    #[serde(default)]
    pub persistent_storage_path: Option<String>,
    /// impermanence's internal permissions for created parents.
    #[serde(default)]
    pub default_perms: Option<PermFields>,
    /// impermanence's internal derived fields: checked, not trusted.
    #[serde(default)]
    pub dir_path: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub home: Option<Option<String>>,
    #[serde(default, rename = "enableDebugging")]
    _enable_debugging: Option<bool>,
    #[serde(default, rename = "assertions")]
    _assertions: Option<IgnoredAny>,
}

/// `{user, group, mode}` as in impermanence's `defaultPerms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermFields {
    pub user: String,
    #[serde(default)]
    pub group: Option<String>,
    pub mode: Mode,
}

/// A `directories` element: a string or an object.
#[derive(Debug)]
pub struct DirSpec(pub DirFields);

/// A `files` element: a string or an object.
#[derive(Debug)]
pub struct FileSpec(pub FileFields);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileFields {
    pub file: String,
    #[serde(default)]
    pub parent_directory: Option<DirFields>,
    #[serde(default)]
    pub method: FileMethod,
    #[serde(default)]
    pub persistent_storage_path: Option<String>,
    #[serde(default)]
    pub file_path: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub home: Option<Option<String>>,
    #[serde(default, rename = "enableDebugging")]
    _enable_debugging: Option<bool>,
    #[serde(default, rename = "assertions")]
    _assertions: Option<IgnoredAny>,
}

/// How a file reaches its target: impermanence's `method`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileMethod {
    /// Bind mount when the persistent file exists, else a symlink.
    #[default]
    Auto,
    /// Always a symlink.
    Symlink,
}

/// Deserialises "a string or an object" with errors that keep their path.
macro_rules! string_or_object {
    ($ty:ident, $fields:ident, $key:ident, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        Ok($ty($fields { $key: s.to_owned().into(), ..Default::default() }))
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        $fields::deserialize(de::value::MapAccessDeserializer::new(map)).map($ty)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
string_or_object!(DirSpec, DirFields, directory, "a path string or a {directory, user, group, mode} object");
string_or_object!(FileSpec, FileFields, file, "a path string or a {file, parentDirectory, method} object");

/// A config problem, with the JSON path where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found in a config; `Display` lists one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Largest config file [`read_config`] reads.
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// Deserializes one whole JSON document (lethe's config, or the part of it
/// a tool reads); the error names the JSON path and the position.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigErrors> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(document)".to_owned() } else { path };
        ConfigErrors(vec![ConfigError { path, message: e.into_inner().to_string() }])
    })?;
    de.end()
        .map_err(|e| ConfigErrors(vec![ConfigError { path: "(document)".into(), message: e.to_string() }]))?;
    Ok(doc)
}

/// Reads a config file of at most [`CONFIG_LIMIT`] bytes; errors name the file.
pub fn read_config(path: &std::path::Path) -> Result<Vec<u8>, ConfigErrors> {
    use std::io::Read;
    let file_error = |message: String| ConfigErrors(vec![ConfigError { path: "(file)".into(), message }]);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CONFIG_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| file_error(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > CONFIG_LIMIT {
        return Err(file_error(format!("{} is larger than {CONFIG_LIMIT} bytes", path.display())));
    }
    Ok(bytes)
}

impl Document {
    /// Parses a document; the error names the JSON path and the position.
    pub fn from_slice(bytes: &[u8]) -> Result<Document, ConfigErrors> {
        parse_json(bytes)
    }

    /// Parses and validates, returning the entries in apply order.
    pub fn entries_from_slice(bytes: &[u8]) -> Result<(Document, Vec<Entry>), ConfigErrors> {
        let doc = Document::from_slice(bytes)?;
        let entries = doc.entries()?;
        Ok((doc, entries))
    }

    /// The storage paths of the enabled locations.
    pub fn storage_paths(&self) -> Vec<RootPath> {
        self.persistence
            .iter()
            .filter(|(_, s)| s.enable)
            .filter_map(|(name, s)| {
                RootPath::parse(s.persistent_storage_path.as_deref().unwrap_or(name)).ok()
            })
            .collect()
    }

    /// Flattens the enabled locations into entries, validated and ordered
    /// parents first. All problems are reported, not just the first.
    pub fn entries(&self) -> Result<Vec<Entry>, ConfigErrors> {
        let mut cx = Flatten::default();
        for (name, id) in self.uids.keys().map(|n| (n, "uids")).chain(self.gids.keys().map(|n| (n, "gids"))) {
            if let Err(m) = check_name(name) {
                cx.err(format!("{id}.{name}"), m);
            }
        }
        for (name, storage) in &self.persistence {
            if storage.enable {
                cx.storage(name, storage);
            }
        }
        cx.finish()
    }
}

/// What to persist at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where in the config it came from (`persistence./persist.files[0]`).
    pub origin: String,
    pub kind: EntryKind,
    /// The path on the ephemeral root.
    pub target: RootPath,
    /// The persistent storage location (`/persist`).
    pub storage: RootPath,
    /// Owner and mode of the entry's directory (for a file: its parent).
    pub perms: Perms,
    /// Owner and mode for missing parents.
    pub parent_perms: Perms,
    /// The home the entry lies in: for `users.<name>` entries, and for
    /// other entries below a home some `users.<name>` declares.
    pub home: Option<Home>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory { hide: bool, trash: bool },
    File { method: FileMethod },
}

/// Owner names and a mode, resolved to ids when planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perms {
    pub user: String,
    pub group: Group,
    pub mode: Mode,
}

/// A group by name, or "the primary group of this user".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    Named(String),
    PrimaryOf(String),
}

/// A user's home: created 0700 and owned by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub path: RootPath,
    pub user: String,
    pub group: Group,
}

impl Perms {
    fn root_default() -> Perms {
        Perms { user: "root".into(), group: Group::Named("root".into()), mode: Mode::DEFAULT_DIR }
    }
}

#[derive(Default)]
struct Flatten {
    entries: Vec<Entry>,
    errors: Vec<ConfigError>,
    storages: Vec<(RootPath, String)>,
}

/// Context of one `users.<name>` block.
struct UserCx {
    name: String,
    home: RootPath,
    group: Group,
}

impl Flatten {
    fn err(&mut self, path: String, message: impl Into<String>) {
        self.errors.push(ConfigError { path, message: message.into() });
    }

    fn path(&mut self, at: &str, field: &str, base: &RootPath, s: &str) -> Option<RootPath> {
        match base.join(s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(format!("{at}.{field}"), path_message(e));
                None
            }
        }
    }

    fn storage(&mut self, name: &str, s: &Storage) {
        let at = format!("persistence.{name}");
        let raw = s.persistent_storage_path.as_deref().unwrap_or(name);
        let field = if s.persistent_storage_path.is_some() { "persistentStoragePath" } else { "(name)" };
        let Some(storage) = self.storage_path(&at, field, raw) else { return };
        self.storages.push((storage.clone(), at.clone()));
        let sys = Perms::root_default();
        for (i, d) in s.directories.iter().enumerate() {
            self.dir(&format!("{at}.directories[{i}]"), &d.0, s, &storage, &sys, None);
        }
        for (i, f) in s.files.iter().enumerate() {
            self.file(&format!("{at}.files[{i}]"), &f.0, &storage, &sys, None);
        }
        for (uname, u) in &s.users {
            let uat = format!("{at}.users.{uname}");
            if let Err(m) = check_name(uname) {
                self.err(uat, m);
                continue;
            }
            let home = match &u.home {
                Some(h) if !h.starts_with('/') => {
                    self.err(format!("{uat}.home"), format!("expected an absolute path, got {h:?}"));
                    continue;
                }
                Some(h) => self.path(&uat, "home", &RootPath::root(), h),
                None => self.path(&uat, "home", &RootPath::parse("/home").unwrap(), uname),
            };
            let Some(home) = home else { continue };
            if home.is_root() {
                self.err(format!("{uat}.home"), "a home of / cannot hold persisted entries");
                continue;
            }
            let group = match &u.group {
                Some(g) => match check_name(g) {
                    Ok(()) => Group::Named(g.clone()),
                    Err(m) => {
                        self.err(format!("{uat}.group"), m);
                        continue;
                    }
                },
                None => Group::PrimaryOf(uname.clone()),
            };
            let ucx = UserCx { name: uname.clone(), home, group };
            let up = Perms { user: ucx.name.clone(), group: ucx.group.clone(), mode: Mode::DEFAULT_DIR };
            for (i, d) in u.directories.iter().enumerate() {
                self.dir(&format!("{uat}.directories[{i}]"), &d.0, s, &storage, &up, Some(&ucx));
            }
            for (i, f) in u.files.iter().enumerate() {
                self.file(&format!("{uat}.files[{i}]"), &f.0, &storage, &up, Some(&ucx));
            }
        }
    }

    fn storage_path(&mut self, at: &str, field: &str, raw: &str) -> Option<RootPath> {
        if !raw.starts_with('/') {
            self.err(
                format!("{at}.{field}"),
                format!("the persistent storage path must be absolute, got {raw:?}"),
            );
            return None;
        }
        let p = self.path(at, field, &RootPath::root(), raw)?;
        if p.is_root() {
            self.err(format!("{at}.{field}"), "the persistent storage path cannot be /");
            return None;
        }
        Some(p)
    }

    fn perms(
        &mut self,
        at: &str,
        user: Option<&String>,
        group: Option<&Option<String>>,
        mode: Option<Mode>,
        def: &Perms,
    ) -> Option<Perms> {
        let user = user.cloned().unwrap_or_else(|| def.user.clone());
        if let Err(m) = check_name(&user) {
            self.err(format!("{at}.user"), m);
            return None;
        }
        let group = match group {
            None => def.group.clone(),
            Some(None) => Group::PrimaryOf(user.clone()),
            Some(Some(g)) => {
                if let Err(m) = check_name(g) {
                    self.err(format!("{at}.group"), m);
                    return None;
                }
                Group::Named(g.clone())
            }
        };
        Some(Perms { user, group, mode: mode.unwrap_or(def.mode) })
    }

    fn default_perms(&mut self, at: &str, f: Option<&PermFields>, def: &Perms) -> Option<Perms> {
        match f {
            None => Some(def.clone()),
            Some(p) => {
                self.perms(&format!("{at}.defaultPerms"), Some(&p.user), Some(&p.group), Some(p.mode), def)
            }
        }
    }

    /// The base a relative entry is joined to, checking an evaluated `home`.
    fn base(&mut self, at: &str, home: Option<&Option<String>>, user: Option<&UserCx>) -> Option<RootPath> {
        let expected = user.map(|u| u.home.clone());
        if let Some(given) = home {
            let given = match given {
                Some(h) => Some(self.path(at, "home", &RootPath::root(), h)?),
                None => None,
            };
            if given != expected {
                self.err(
                    format!("{at}.home"),
                    format!(
                        "{} does not match the entry's place ({})",
                        given.map_or("null".into(), |g| g.to_string()),
                        expected.as_ref().map_or("a system entry".into(), |e| format!("home of {}", e)),
                    ),
                );
                return None;
            }
        }
        Some(expected.unwrap_or_else(RootPath::root))
    }

    fn entry_storage(&mut self, at: &str, given: Option<&String>, storage: &RootPath) -> Option<RootPath> {
        match given {
            None => Some(storage.clone()),
            Some(raw) => self.storage_path(at, "persistentStoragePath", raw),
        }
    }

    fn dir(
        &mut self,
        at: &str,
        d: &DirFields,
        s: &Storage,
        storage: &RootPath,
        def: &Perms,
        user: Option<&UserCx>,
    ) {
        let Some(raw) = &d.directory else {
            self.err(format!("{at}.directory"), "missing field `directory`");
            return;
        };
        let Some(base) = self.base(at, d.home.as_ref(), user) else { return };
        let Some(target) = self.path(at, "directory", &base, raw) else { return };
        let Some(storage) = self.entry_storage(at, d.persistent_storage_path.as_ref(), storage) else {
            return;
        };
        let Some(perms) = self.perms(at, d.user.as_ref(), d.group.as_ref(), d.mode, def) else { return };
        let Some(parent_perms) = self.default_perms(at, d.default_perms.as_ref(), def) else { return };
        if !self.derived(at, "dirPath", d.dir_path.as_deref(), &target) {
            return;
        }
        let kind = EntryKind::Directory {
            hide: d.hide_mount.unwrap_or(s.hide_mounts),
            trash: d.allow_trash.unwrap_or(s.allow_trash),
        };
        self.push(at, kind, target, storage, perms, parent_perms, user);
    }

    fn file(&mut self, at: &str, f: &FileFields, storage: &RootPath, def: &Perms, user: Option<&UserCx>) {
        let Some(base) = self.base(at, f.home.as_ref(), user) else { return };
        let Some(target) = self.path(at, "file", &base, &f.file) else { return };
        let Some(storage) = self.entry_storage(at, f.persistent_storage_path.as_ref(), storage) else {
            return;
        };
        let (perms, parent_perms) = match &f.parent_directory {
            None => (def.clone(), def.clone()),
            Some(p) => {
                let pat = format!("{at}.parentDirectory");
                let Some(perms) = self.perms(&pat, p.user.as_ref(), p.group.as_ref(), p.mode, def) else {
                    return;
                };
                let Some(pp) = self.default_perms(&pat, p.default_perms.as_ref(), def) else { return };
                if let Some(dir_path) = &p.dir_path {
                    // impermanence writes `dirOf file` under the home, `.` included.
                    let parent = target.parent().unwrap_or_else(RootPath::root);
                    if !self.derived(&pat, "dirPath", Some(dir_path), &parent) {
                        return;
                    }
                }
                (perms, pp)
            }
        };
        if !self.derived(at, "filePath", f.file_path.as_deref(), &target) {
            return;
        }
        self.push(at, EntryKind::File { method: f.method }, target, storage, perms, parent_perms, user);
    }

    /// An evaluated config's derived path must be the one we derive.
    fn derived(&mut self, at: &str, field: &str, given: Option<&str>, ours: &RootPath) -> bool {
        match given.map(RootPath::parse) {
            None => true,
            Some(Ok(p)) if &p == ours => true,
            Some(Ok(p)) => {
                self.err(format!("{at}.{field}"), format!("{p} does not match the entry's path {ours}"));
                false
            }
            Some(Err(e)) => {
                self.err(format!("{at}.{field}"), path_message(e));
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        at: &str,
        kind: EntryKind,
        target: RootPath,
        storage: RootPath,
        perms: Perms,
        parent_perms: Perms,
        user: Option<&UserCx>,
    ) {
        if target.is_root() {
            self.err(at.to_owned(), "cannot persist / itself");
            return;
        }
        let home = user.map(|u| Home { path: u.home.clone(), user: u.name.clone(), group: u.group.clone() });
        if let Some(h) = &home
            && target == h.path
        {
            self.err(at.to_owned(), format!("cannot persist the home {} itself; list what is in it", h.path));
            return;
        }
        self.entries.push(Entry { origin: at.to_owned(), kind, target, storage, perms, parent_perms, home });
    }

    fn finish(mut self) -> Result<Vec<Entry>, ConfigErrors> {
        // A target must not be, contain, or lie in a storage location: the
        // bind mount would hide the storage or loop into itself.
        // Entries' own persistentStoragePath count as storage locations too.
        let mut storages: Vec<RootPath> =
            std::mem::take(&mut self.storages).into_iter().map(|(s, _)| s).collect();
        storages.extend(self.entries.iter().map(|e| e.storage.clone()));
        storages.sort();
        storages.dedup();
        let mut clashes = Vec::new();
        for e in &self.entries {
            let hit = storages.iter().find(|s| e.target.starts_with(s) || s.starts_with(&e.target));
            if let Some(s) = hit {
                clashes.push((
                    e.origin.clone(),
                    format!("{} overlaps the persistent storage path {s}", e.target),
                ));
            }
        }
        for (at, m) in clashes {
            self.err(at, m);
        }
        // Duplicates: one target, one entry (impermanence asserts the same).
        let mut seen: BTreeMap<&RootPath, &str> = BTreeMap::new();
        let mut dups = Vec::new();
        for e in &self.entries {
            if let Some(first) = seen.insert(&e.target, &e.origin) {
                dups.push((e.origin.clone(), format!("{} is already persisted by {first}", e.target)));
                seen.insert(&e.target, first);
            }
        }
        for (at, m) in dups {
            self.err(at, m);
        }
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        // A system entry inside a user's home must not create that home with
        // its own (root's) permissions when it comes first: impermanence
        // creates every home, the user's and 0700, before any other directory.
        let mut homes: Vec<Home> = self.entries.iter().filter_map(|e| e.home.clone()).collect();
        homes.dedup(); // a user's entries are consecutive
        for e in self.entries.iter_mut().filter(|e| e.home.is_none()) {
            e.home = homes
                .iter()
                .filter(|h| e.target.starts_with(&h.path) && e.target != h.path)
                .max_by_key(|h| h.path.depth())
                .cloned();
        }
        // Parents before children; ties keep config order.
        self.entries.sort_by(|a, b| a.target.tree_cmp(&b.target));
        Ok(self.entries)
    }
}

fn path_message(e: PathError) -> String {
    format!("expected a path without `..` or NUL bytes: {e}")
}

/// A user or group name as chown would take it.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("expected a user or group name, got an empty string".into());
    }
    if n.contains([':', '/', '\0', '\n']) || n.chars().any(char::is_whitespace) {
        return Err(format!("{n:?} is not a valid user or group name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(json: &str) -> Result<Vec<Entry>, ConfigErrors> {
        Document::entries_from_slice(json.as_bytes()).map(|(_, e)| e)
    }

    fn errors(json: &str) -> Vec<String> {
        entries(json).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn strings_get_impermanence_defaults() {
        let e = entries(r#"{"version": 1, "persistence": {"/persist": {"directories": ["var/log"], "files": ["/etc/machine-id"]}}}"#)
            .unwrap();
        assert_eq!(e.len(), 2);
        let root = Perms { user: "root".into(), group: Group::Named("root".into()), mode: Mode::DEFAULT_DIR };
        assert_eq!(e[0].target.as_str(), "/etc/machine-id");
        assert_eq!(e[0].kind, EntryKind::File { method: FileMethod::Auto });
        assert_eq!(e[1].target.as_str(), "/var/log");
        assert_eq!(e[1].kind, EntryKind::Directory { hide: false, trash: false });
        assert_eq!((&e[1].perms, &e[1].parent_perms, &e[1].home), (&root, &root, &None));
        assert_eq!(e[1].storage.as_str(), "/persist");
    }

    #[test]
    fn users_entries_are_relative_to_the_home_and_owned_by_the_user() {
        let e = entries(
            r#"{"version": 1, "persistence": {"/persist": {"users": {
                "alice": {"directories": [".ssh"]},
                "bob": {"home": "/srv/bob", "group": "staff", "files": ["/.profile"]}}}}}"#,
        )
        .unwrap();
        let alice = e.iter().find(|e| e.target.as_str() == "/home/alice/.ssh").unwrap();
        assert_eq!(alice.perms.user, "alice");
        assert_eq!(alice.perms.group, Group::PrimaryOf("alice".into()));
        assert_eq!(alice.home.as_ref().unwrap().path.as_str(), "/home/alice");
        let bob = e.iter().find(|e| e.target.as_str() == "/srv/bob/.profile").unwrap();
        assert_eq!(bob.perms.group, Group::Named("staff".into()));
    }

    #[test]
    fn the_evaluated_impermanence_form_is_accepted_and_checked() {
        // What builtins.toJSON of an evaluated environment.persistence holds.
        let evaluated = r#"{"version": 1, "persistence": {"/persist": {
            "enable": true, "enableDebugging": false, "enableWarnings": true, "hideMounts": false,
            "allowTrash": false, "persistentStoragePath": "/persist", "assertions": [], "users": {},
            "directories": [{"allowTrash": false, "assertions": [], "defaultPerms": {"group": "root", "mode": "0755", "user": "root"},
                "dirPath": "/var/lib/colord", "directory": "/var/lib/colord", "enableDebugging": false, "group": "colord",
                "hideMount": true, "home": null, "mode": "u=rwx,g=rx,o=", "persistentStoragePath": "/persist", "user": "colord"}],
            "files": [{"assertions": [], "enableDebugging": false, "file": "/etc/machine-id", "filePath": "/etc/machine-id",
                "home": null, "method": "auto", "persistentStoragePath": "/persist",
                "parentDirectory": {"allowTrash": false, "assertions": [], "defaultPerms": {"group": "root", "mode": "0755", "user": "root"},
                  "dirPath": "/etc", "directory": "/etc", "enableDebugging": false, "group": "root", "hideMount": false,
                  "home": null, "mode": "0755", "persistentStoragePath": "/persist", "user": "root"}}]}}}"#;
        let e = entries(evaluated).unwrap();
        let colord = e.iter().find(|e| e.target.as_str() == "/var/lib/colord").unwrap();
        assert_eq!(colord.kind, EntryKind::Directory { hide: true, trash: false });
        assert_eq!(colord.perms.mode.bits(), 0o750);
        let wrong = evaluated.replace(r#""dirPath": "/var/lib/colord""#, r#""dirPath": "/var/lib/other""#);
        assert_eq!(
            errors(&wrong),
            [
                "persistence./persist.directories[0].dirPath: /var/lib/other does not match the entry's path /var/lib/colord"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_json_path() {
        let e = errors(
            r#"{"version": 1, "uids": {"a:b": 1}, "persistence": {
                "relative": {"directories": ["/x"]},
                "/p": {"directories": ["/", "/p/inside", {"directory": "/o", "user": ""}], "files": ["/etc/a", "/etc/a"],
                       "users": {"u": {"home": "/", "directories": ["d"]}}}}}"#,
        );
        assert_eq!(
            e,
            [
                "uids.a:b: \"a:b\" is not a valid user or group name",
                "persistence./p.directories[0]: cannot persist / itself",
                "persistence./p.directories[2].user: expected a user or group name, got an empty string",
                "persistence./p.users.u.home: a home of / cannot hold persisted entries",
                "persistence.relative.(name): the persistent storage path must be absolute, got \"relative\"",
                "persistence./p.directories[1]: /p/inside overlaps the persistent storage path /p",
                "persistence./p.files[1]: /etc/a is already persisted by persistence./p.files[0]",
            ]
        );
    }

    #[test]
    fn parse_errors_name_the_path_and_position() {
        let e =
            errors(r#"{"version": 1, "persistence": {"/p": {"files": [{"file": "/a", "method": "copy"}]}}}"#);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("persistence./p.files[0].method: unknown variant `copy`"), "{e:?}");
        assert!(e[0].ends_with("expected `auto` or `symlink` at line 1 column 79"), "{e:?}");
        assert_eq!(
            errors(r#"{"persistence": {}}"#)[0],
            "(document): missing field `version` at line 1 column 19"
        );
        assert!(errors(r#"{"version": 1} trailing"#)[0].starts_with("(document): trailing characters"));
    }

    #[test]
    fn a_null_group_means_the_users_primary_group() {
        let e = entries(
            r#"{"version": 1, "persistence": {"/p": {"directories": [
                {"directory": "/x", "user": "alice", "group": null}, {"directory": "/y", "user": "alice"}]}}}"#,
        )
        .unwrap();
        assert_eq!(e[0].perms.group, Group::PrimaryOf("alice".into()));
        assert_eq!(e[1].perms.group, Group::Named("root".into()), "absent: the level's default");
        let err = errors(
            r#"{"version": 1, "persistence": {"/p": {"users": {"u": {"files": [{"file": "f", "home": null}]}}}}}"#,
        );
        assert_eq!(
            err,
            ["persistence./p.users.u.files[0].home: null does not match the entry's place (home of /home/u)"]
        );
    }

    #[test]
    fn targets_may_not_overlap_an_entrys_own_storage_path() {
        // An entry-level persistentStoragePath is a storage location too:
        // binding /mnt over it would hide it, /mnt/data/x would cover part of it.
        let e = errors(
            r#"{"version": 1, "persistence": {"/persist": {"directories": [
                {"directory": "/x", "persistentStoragePath": "/mnt/data"}, "/mnt", "/mnt/data/x"]}}}"#,
        );
        assert_eq!(
            e,
            [
                "persistence./persist.directories[1]: /mnt overlaps the persistent storage path /mnt/data",
                "persistence./persist.directories[2]: /mnt/data/x overlaps the persistent storage path /mnt/data",
            ]
        );
    }

    #[test]
    fn disabled_locations_and_other_sections_are_ignored() {
        let e = entries(
            r#"{"version": 1, "luks": {"devices": {}}, "rollback": {"zfs": {}},
                          "persistence": {"/p": {"enable": false, "directories": ["/x"]}}}"#,
        )
        .unwrap();
        assert!(e.is_empty());
        assert_eq!(errors(r#"{"version": 1, "bogus": 1}"#).len(), 1);
    }
}
