//! Kernel modules without modprobe: modules.dep/alias/builtin/softdep, dependency closure, finit_module, coldplug.
//!
//! The text files depmod writes are the whole interface: `modules.dep` names
//! every module by its path and lists its (already transitive) dependencies,
//! `modules.alias` maps fnmatch patterns to module names, `modules.builtin`
//! lists what is compiled in, and `modules.softdep` adds the "load this first"
//! hints modules declare. Everything here runs as PID 1, so nothing panics on
//! odd input: malformed lines are skipped and kept as [`ParseWarning`]s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

/// Where module trees live: `/lib/modules/<release>`.
pub const MODULES_ROOT: &str = "/lib/modules";
/// Largest index file read; Debian's modules.alias is about 1.2 MB.
const FILE_LIMIT: u64 = 64 << 20;
/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses the module itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
/// How deep /sys/devices is walked; real trees are about 15 levels deep.
const SYS_DEPTH: usize = 32;
/// Coldplug passes: loading a bus driver (virtio_pci) makes new devices (virtio) appear.
const COLDPLUG_PASSES: usize = 8;
/// Suffixes of module files, longest first.
const SUFFIXES: [&str; 4] = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"];

/// The newest kernel release under `root` (`/lib/modules`) that has a `modules.dep`, for
/// tools and tests that build for "the installed kernel": Debian's point releases replace
/// the package's version (6.1.0-56 became 6.1.0-57), so it is looked up, not written down.
pub fn newest_release(root: &Path) -> Option<String> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|v| root.join(v).join("modules.dep").is_file())
        .max_by(|a, b| release_cmp(a, b))
}

/// Orders kernel releases number by number: `6.1.0-100-amd64` after `6.1.0-99-amd64`.
pub fn release_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-']).map(|p| (p.parse::<u64>().unwrap_or(0), p.to_owned())).collect()
    };
    parts(a).cmp(&parts(b))
}

/// A module name as the kernel knows it: `-` and `_` are the same, so `_` is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModuleName(String);

impl ModuleName {
    pub fn new(name: &str) -> ModuleName {
        ModuleName(name.replace('-', "_"))
    }

    /// The name of a module file (`kernel/fs/fat/vfat.ko.xz` -> `vfat`), if it is one.
    pub fn from_path(path: &str) -> Option<ModuleName> {
        let file = path.rsplit('/').next()?;
        let stem = SUFFIXES.iter().find_map(|s| file.strip_suffix(s))?;
        (!stem.is_empty()).then(|| ModuleName::new(stem))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A module of the closure: its name and its file, relative to the module directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulePath {
    pub name: ModuleName,
    pub rel: PathBuf,
    /// Only wanted as a softdep (`ext4` -> `crc32c_intel`): loaded if it can be, and its
    /// failure (crc32c_intel on a CPU without SSE4.2 says ENODEV) is recorded, not fatal.
    pub soft: bool,
}

impl ModulePath {
    /// Whether the kernel has to decompress the file (`MODULE_INIT_COMPRESSED_FILE`).
    pub fn is_compressed(&self) -> bool {
        self.rel.extension().is_some_and(|e| e != "ko")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is larger than {FILE_LIMIT} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("kernel module {name:?} is neither in {}/modules.dep nor built in, and no alias names it", dir.display())]
    Unknown { name: String, dir: PathBuf },
    #[error("opening kernel module {name} ({}): {source}", path.display())]
    Open { name: ModuleName, path: PathBuf, source: std::io::Error },
    #[error("loading kernel module {name} ({}): {errno}{}", path.display(), errno_hint(*errno, path))]
    Load { name: ModuleName, path: PathBuf, errno: rustix::io::Errno },
}

/// What an errno from finit_module usually means, for the one console message.
fn errno_hint(e: rustix::io::Errno, path: &Path) -> &'static str {
    use rustix::io::Errno;
    let compressed = path.extension().is_some_and(|x| x != "ko");
    match e {
        Errno::NOEXEC => " (not a module for this kernel: wrong kernel version or a damaged file?)",
        Errno::NOENT => " (unknown symbol: a dependency is missing or was built for another kernel)",
        Errno::PERM => " (refused: module signature, kernel lockdown, or not running as root)",
        Errno::KEYREJECTED | Errno::BADMSG => " (module signature rejected)",
        Errno::NODEV => " (no device for this driver here)",
        Errno::OPNOTSUPP | Errno::INVAL if compressed => {
            " (a compressed module needs a kernel with CONFIG_MODULE_DECOMPRESS)"
        }
        Errno::INVAL => " (invalid module file or parameters)",
        _ => "",
    }
}

/// A skipped line of an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWarning {
    pub file: &'static str,
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.reason)
    }
}

/// The text of the index files (parsed by [`ModuleIndex::parse`]); an absent file is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFiles {
    pub dep: String,
    pub alias: String,
    pub builtin: String,
    pub softdep: String,
}

#[derive(Debug)]
struct Entry {
    name: ModuleName,
    /// Relative to the module directory, checked: no `..`, no empty components.
    rel: String,
    deps: Vec<usize>,
}

/// `softdep NAME pre: ... post: ...`; the names may be aliases.
#[derive(Debug, Default, Clone)]
struct SoftDeps {
    pre: Vec<String>,
    /// Kept for the subset mkinitrd writes; not loaded: modprobe loads these after the module,
    /// and none is needed to find or mount a root (ipmi_devintf, vfio_iommu_type1, ...).
    post: Vec<String>,
}

/// A parsed module directory.
#[derive(Debug)]
pub struct ModuleIndex {
    dir: PathBuf,
    modules: Vec<Entry>,
    by_name: HashMap<ModuleName, usize>,
    /// Paths as modules.builtin lists them, and their names.
    builtin_paths: Vec<String>,
    builtin: HashSet<ModuleName>,
    aliases: AliasIndex,
    softdeps: Vec<(ModuleName, SoftDeps)>,
    softdep_of: HashMap<ModuleName, usize>,
    warnings: Vec<ParseWarning>,
}

impl ModuleIndex {
    /// Reads `dir/modules.dep` (required) and modules.alias, modules.builtin, modules.softdep (optional).
    pub fn load(dir: &Path) -> Result<ModuleIndex, KmodError> {
        let files = IndexFiles {
            dep: read_index(&dir.join("modules.dep"), true)?,
            alias: read_index(&dir.join("modules.alias"), false)?,
            builtin: read_index(&dir.join("modules.builtin"), false)?,
            softdep: read_index(&dir.join("modules.softdep"), false)?,
        };
        Ok(ModuleIndex::parse(dir.to_owned(), &files))
    }

    /// The running kernel's modules: `/lib/modules/$(uname -r)`.
    pub fn load_running() -> Result<ModuleIndex, KmodError> {
        ModuleIndex::load(&running_dir())
    }

    /// Parses the index files of `dir`; never fails, bad lines become [`ModuleIndex::warnings`].
    pub fn parse(dir: PathBuf, files: &IndexFiles) -> ModuleIndex {
        let mut ix = ModuleIndex {
            dir,
            modules: Vec::new(),
            by_name: HashMap::new(),
            builtin_paths: Vec::new(),
            builtin: HashSet::new(),
            aliases: AliasIndex::default(),
            softdeps: Vec::new(),
            softdep_of: HashMap::new(),
            warnings: Vec::new(),
        };
        ix.parse_dep(&files.dep);
        ix.parse_builtin(&files.builtin);
        ix.parse_alias(&files.alias);
        ix.parse_softdep(&files.softdep);
        ix
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lines skipped while parsing.
    pub fn warnings(&self) -> &[ParseWarning] {
        &self.warnings
    }

    /// Number of modules in modules.dep.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Number of alias patterns.
    pub fn alias_count(&self) -> usize {
        self.aliases.patterns.len()
    }

    /// Whether `name` is a loadable module (in modules.dep).
    pub fn has_module(&self, name: &str) -> bool {
        self.by_name.contains_key(&ModuleName::new(name))
    }

    /// Whether `name` is compiled into the kernel (modules.builtin).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&ModuleName::new(name))
    }

    /// The absolute path of a module of this index.
    pub fn path_of(&self, m: &ModulePath) -> PathBuf {
        self.dir.join(&m.rel)
    }

    fn warn(&mut self, file: &'static str, line: usize, reason: impl Into<String>) {
        self.warnings.push(ParseWarning { file, line: line + 1, reason: reason.into() });
    }

    /// A module path as modules.dep writes it, made relative and checked.
    fn rel_path<'a>(&self, p: &'a str) -> Result<&'a str, String> {
        let rel = match p.strip_prefix('/') {
            // Old depmod wrote absolute paths; accept those inside the directory.
            Some(_) => self
                .dir
                .to_str()
                .and_then(|d| p.strip_prefix(d.trim_end_matches('/')))
                .and_then(|r| r.strip_prefix('/'))
                .ok_or_else(|| format!("{p:?} is outside {}", self.dir.display()))?,
            None => p,
        };
        if rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") || rel.contains('\0') {
            return Err(format!("{p:?} is not a plain relative path"));
        }
        // Dependencies are separated by white space, so such a path could never be one.
        if rel.contains(char::is_whitespace) {
            return Err(format!("{p:?} contains white space"));
        }
        // Written back as a line of its own, it would read as a comment.
        if rel.starts_with('#') {
            return Err(format!("{p:?} starts with `#`"));
        }
        Ok(rel)
    }

    fn parse_dep(&mut self, text: &str) {
        const FILE: &str = "modules.dep";
        let mut pending: Vec<(usize, Vec<&str>)> = Vec::new();
        let mut by_rel: HashMap<String, usize> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, deps)) = line.split_once(':') else {
                self.warn(FILE, n, "expected \"PATH: DEPENDENCIES\"");
                continue;
            };
            let rel = match self.rel_path(key.trim()) {
                Ok(r) => r.to_owned(),
                Err(e) => {
                    self.warn(FILE, n, e);
                    continue;
                }
            };
            let Some(name) = ModuleName::from_path(&rel) else {
                self.warn(FILE, n, format!("{rel:?} is not a module file (.ko, .ko.xz, .ko.zst, .ko.gz)"));
                continue;
            };
            if let Some(&first) = self.by_name.get(&name) {
                let first = &self.modules[first].rel;
                let msg = format!("module {name} is listed twice ({first:?} first, kept)");
                self.warn(FILE, n, msg);
                continue;
            }
            let i = self.modules.len();
            self.by_name.insert(name.clone(), i);
            by_rel.insert(rel.clone(), i);
            self.modules.push(Entry { name, rel, deps: Vec::new() });
            pending.push((n, deps.split_whitespace().collect()));
        }
        // Dependencies by path, once every module is known.
        for (i, (n, deps)) in pending.into_iter().enumerate() {
            for d in deps {
                let found = self.rel_path(d).ok().and_then(|r| by_rel.get(r).copied());
                match found {
                    Some(j) if j != i => self.modules[i].deps.push(j),
                    Some(_) => {}
                    None => {
                        self.warn(FILE, n, format!("dependency {d:?} has no line of its own, ignored"));
                    }
                }
            }
        }
    }

    fn parse_builtin(&mut self, text: &str) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match ModuleName::from_path(line) {
                Some(name) => {
                    self.builtin_paths.push(line.to_owned());
                    self.builtin.insert(name);
                }
                None => self.warn("modules.builtin", n, format!("{line:?} is not a module path")),
            }
        }
    }

    fn parse_alias(&mut self, text: &str) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => {
                    self.aliases.push(pattern, ModuleName::new(module));
                }
                _ => self.warn("modules.alias", n, "expected \"alias PATTERN MODULE\""),
            }
        }
    }

    fn parse_softdep(&mut self, text: &str) {
        #[derive(PartialEq)]
        enum Mode {
            None,
            Pre,
            Post,
        }
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (it.next(), it.next()) else {
                self.warn("modules.softdep", n, "expected \"softdep MODULE pre: ... post: ...\"");
                continue;
            };
            let name = ModuleName::new(module);
            let i = *self.softdep_of.entry(name.clone()).or_insert_with(|| {
                self.softdeps.push((name, SoftDeps::default()));
                self.softdeps.len() - 1
            });
            let mut mode = Mode::None;
            for tok in it {
                match tok {
                    "pre:" => mode = Mode::Pre,
                    "post:" => mode = Mode::Post,
                    // Names before any "pre:"/"post:" mean nothing to modprobe either.
                    _ if mode == Mode::None => {}
                    _ if mode == Mode::Pre => self.softdeps[i].1.pre.push(tok.to_owned()),
                    _ => self.softdeps[i].1.post.push(tok.to_owned()),
                }
            }
        }
    }

    /// Modules whose alias patterns match `modalias` (fnmatch rules), in modules.alias order, each once.
    pub fn modules_for_alias(&self, modalias: &str) -> Vec<ModuleName> {
        let mut hits = self.aliases.matches(modalias.as_bytes());
        hits.sort_unstable();
        let mut seen = HashSet::new();
        hits.into_iter()
            .map(|i| &self.aliases.patterns[i].module)
            .filter(|m| seen.insert(*m))
            .cloned()
            .collect()
    }

    /// Indices of the modules a name stands for: itself, nothing when built in, or what its aliases name.
    fn resolve(&self, name: &str) -> Option<Vec<usize>> {
        let n = ModuleName::new(name);
        if let Some(&i) = self.by_name.get(&n) {
            return Some(vec![i]);
        }
        if self.builtin.contains(&n) {
            return Some(Vec::new());
        }
        // modprobe accepts aliases too (`crc32c`, `fs-vfat`, `platform:idma64`).
        let v: Vec<usize> =
            self.modules_for_alias(name).iter().filter_map(|m| self.by_name.get(m).copied()).collect();
        (!v.is_empty()).then_some(v)
    }

    /// The modules to load for `names`, dependencies (and softdep `pre:` modules) first, each once.
    /// Built-in modules are left out; a name that is no module, built-in or alias is an error.
    pub fn closure<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<ModulePath>, KmodError> {
        let mut state = vec![Visit::New; self.modules.len()];
        let mut order = Vec::new();
        let mut hard = vec![false; self.modules.len()];
        for name in names {
            let name = name.as_ref();
            let roots = self
                .resolve(name)
                .ok_or_else(|| KmodError::Unknown { name: name.to_owned(), dir: self.dir.clone() })?;
            for r in roots {
                self.visit(r, &mut state, &mut order);
                self.mark_hard(r, &mut hard);
            }
        }
        Ok(order
            .into_iter()
            .map(|i| ModulePath {
                name: self.modules[i].name.clone(),
                rel: PathBuf::from(&self.modules[i].rel),
                soft: !hard[i],
            })
            .collect())
    }

    /// Marks `root` and everything modules.dep says it needs.
    fn mark_hard(&self, root: usize, hard: &mut [bool]) {
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut hard[i], true) {
                stack.extend(self.modules[i].deps.iter().copied().filter(|&d| !hard[d]));
            }
        }
    }

    /// Depth-first, post-order, with an explicit stack: a hostile modules.dep cannot overflow PID 1's stack,
    /// and a cycle (possible through softdeps) is cut where it closes.
    fn visit(&self, root: usize, state: &mut [Visit], order: &mut Vec<usize>) {
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                state[i] = Visit::Done;
                order.push(i);
                continue;
            }
            if state[i] != Visit::New {
                continue;
            }
            state[i] = Visit::Open;
            stack.push((i, true));
            // Children are popped in reverse push order: softdeps, then deps in listed order.
            let mut children: Vec<usize> = Vec::new();
            if let Some(&s) = self.softdep_of.get(&self.modules[i].name) {
                for p in &self.softdeps[s].1.pre {
                    // Soft: a pre-module that does not exist is no error.
                    children.extend(self.resolve(p).unwrap_or_default());
                }
            }
            children.extend(&self.modules[i].deps);
            stack.extend(children.into_iter().rev().filter(|&c| state[c] == Visit::New).map(|c| (c, false)));
        }
    }

    /// The index files for a subset of this index (what mkinitrd writes next to the modules it copies):
    /// modules.dep, modules.alias and modules.softdep lines of the included modules, and all of modules.builtin.
    pub fn subset(&self, included: &[ModulePath]) -> IndexFiles {
        let keep: HashSet<&ModuleName> = included.iter().map(|m| &m.name).collect();
        let mut out = IndexFiles::default();
        for e in self.modules.iter().filter(|e| keep.contains(&e.name)) {
            out.dep.push_str(&e.rel);
            out.dep.push(':');
            for &d in &e.deps {
                out.dep.push(' ');
                out.dep.push_str(&self.modules[d].rel);
            }
            out.dep.push('\n');
        }
        for a in self.aliases.patterns.iter().filter(|a| keep.contains(&a.module)) {
            out.alias.push_str(&format!("alias {} {}\n", a.pattern, a.module));
        }
        for p in &self.builtin_paths {
            out.builtin.push_str(p);
            out.builtin.push('\n');
        }
        for (name, sd) in self.softdeps.iter().filter(|(n, _)| keep.contains(n)) {
            let mut line = format!("softdep {name}");
            for (mode, names) in [("pre:", &sd.pre), ("post:", &sd.post)] {
                if !names.is_empty() {
                    line.push_str(&format!(" {mode} {}", names.join(" ")));
                }
            }
            out.softdep.push_str(&line);
            out.softdep.push('\n');
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    Done,
}

/// `/lib/modules/<release of the running kernel>`.
pub fn running_dir() -> PathBuf {
    let u = rustix::system::uname();
    Path::new(MODULES_ROOT).join(u.release().to_string_lossy().as_ref())
}

fn read_index(path: &Path, required: bool) -> Result<String, KmodError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => return Err(KmodError::Read { path: path.to_owned(), source }),
    };
    let mut bytes = Vec::new();
    f.take(FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| KmodError::Read { path: path.to_owned(), source })?;
    if bytes.len() as u64 > FILE_LIMIT {
        return Err(KmodError::TooLarge { path: path.to_owned() });
    }
    // Module paths and aliases are ASCII; a stray byte spoils one line, not the file.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

// ---------------------------------------------------------------------------------------------
// Alias matching

#[derive(Debug)]
struct Alias {
    pattern: String,
    module: ModuleName,
}

/// Alias patterns bucketed by their literal prefix (the bytes before the first `*`, `?`, `[` or `\`).
///
/// A pattern can only match a string that starts with its literal prefix, so a lookup tries each
/// prefix of the modalias (up to the longest literal prefix known) as a hash key and runs fnmatch
/// only on those buckets: `pci:v00001AF4d00001001sv*` is tried against virtio devices only, not
/// against the 26k patterns of a distribution kernel.
#[derive(Debug, Default)]
struct AliasIndex {
    patterns: Vec<Alias>,
    by_prefix: HashMap<Box<[u8]>, Vec<usize>>,
    /// Lengths that occur as a literal prefix, so that only those are looked up.
    prefix_lens: Vec<usize>,
}

impl AliasIndex {
    fn push(&mut self, pattern: &str, module: ModuleName) {
        let b = pattern.as_bytes();
        let lit = b.iter().position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\')).unwrap_or(b.len());
        let i = self.patterns.len();
        self.patterns.push(Alias { pattern: pattern.to_owned(), module });
        self.by_prefix.entry(b[..lit].into()).or_default().push(i);
        if let Err(at) = self.prefix_lens.binary_search(&lit) {
            self.prefix_lens.insert(at, lit);
        }
    }

    /// Indices of the patterns matching `s`.
    fn matches(&self, s: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        for &len in self.prefix_lens.iter().take_while(|&&l| l <= s.len()) {
            if let Some(bucket) = self.by_prefix.get(&s[..len]) {
                out.extend(
                    bucket.iter().copied().filter(|&i| fnmatch(self.patterns[i].pattern.as_bytes(), s)),
                );
            }
        }
        out
    }
}

/// Shell-style matching as `fnmatch(pattern, s, 0)` does it, which is what kmod uses for aliases:
/// `*` any run (also across `/`), `?` one byte, `[a-z]`, `[!x]`/`[^x]`, `\x` a literal x.
/// Character classes (`[:alpha:]`) are not supported (no alias uses them). Linear in
/// `pattern.len() * s.len()` at worst: only the last `*` is ever backtracked to.
pub fn fnmatch(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() && pattern[p] == b'*' {
            p += 1;
            star = Some((p, i));
            continue;
        }
        if p < pattern.len()
            && i < s.len()
            && let Some(next) = match_one(pattern, p, s[i])
        {
            p = next;
            i += 1;
            continue;
        }
        if p == pattern.len() && i == s.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte.
        match star {
            Some((sp, si)) if si < s.len() => {
                star = Some((sp, si + 1));
                p = sp;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

/// Matches one pattern element at `p` (not `*`) against `c`; the index after the element if it matches.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' => match pattern.get(p + 1) {
            Some(&e) => (e == c).then_some(p + 2),
            // A trailing backslash stands for itself.
            None => (c == b'\\').then_some(p + 1),
        },
        b'[' => match bracket(pattern, p + 1, c) {
            Some((matched, end)) => matched.then_some(end),
            // No closing `]`: the `[` is an ordinary character.
            None => (c == b'[').then_some(p + 1),
        },
        lit => (lit == c).then_some(p + 1),
    }
}

/// A bracket expression starting after `[`: whether `c` is in it and the index after its `]`,
/// or None when it is not closed.
fn bracket(pattern: &[u8], mut p: usize, c: u8) -> Option<(bool, usize)> {
    let negate = matches!(pattern.get(p), Some(b'!' | b'^'));
    if negate {
        p += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *pattern.get(p)?;
        if lo == b']' && !first {
            return Some((matched != negate, p + 1));
        }
        first = false;
        if lo == b'\\' {
            p += 1;
            lo = *pattern.get(p)?;
        }
        p += 1;
        // A range `lo-hi`, unless the `-` is the last character before `]`.
        if pattern.get(p) == Some(&b'-') && pattern.get(p + 1).is_some_and(|&h| h != b']') {
            let mut hi = pattern[p + 1];
            p += 2;
            if hi == b'\\' {
                hi = *pattern.get(p)?;
                p += 1;
            }
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// What happened to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Loaded,
    AlreadyLoaded,
    Failed,
}

/// One finit_module call (or its skip), for the timings file.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRecord {
    pub name: ModuleName,
    pub outcome: Outcome,
    pub ms: f64,
    /// Loaded because a device's modalias asked for it.
    pub coldplug: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every module stage 1 touched, in order.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LoadReport {
    pub modules: Vec<LoadRecord>,
}

impl LoadReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.modules.iter().filter(|r| r.outcome == outcome).count()
    }

    fn has(&self, name: &ModuleName) -> bool {
        self.modules.iter().any(|r| &r.name == name && r.outcome != Outcome::Failed)
    }
}

/// Loads `names` and their closure, in order; stops at the first module that fails, except
/// for softdeps, whose failures are only recorded. Modules the report shows as loaded already
/// are not tried again.
pub fn load<S: AsRef<str>>(
    index: &ModuleIndex,
    names: &[S],
    report: &mut LoadReport,
) -> Result<(), KmodError> {
    for m in index.closure(names)? {
        if report.has(&m.name) {
            continue;
        }
        let started = Instant::now();
        let r = load_one(index, &m);
        record(report, &m.name, &r, started, false);
        match r {
            Err(e) if m.soft => crate::log::debug(&format!("softdep skipped: {e}")),
            r => {
                r?;
            }
        }
    }
    Ok(())
}

fn record(
    report: &mut LoadReport,
    name: &ModuleName,
    r: &Result<Outcome, KmodError>,
    started: Instant,
    coldplug: bool,
) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let (outcome, error) = match r {
        Ok(o) => (*o, None),
        Err(e) => (Outcome::Failed, Some(e.to_string())),
    };
    crate::log::debug(&format!("module {name}: {outcome:?} in {ms:.1} ms"));
    report.modules.push(LoadRecord { name: name.clone(), outcome, ms, coldplug, error });
}

/// One finit_module call; `EEXIST` (loaded already, or loading in parallel) is success.
pub fn load_one(index: &ModuleIndex, m: &ModulePath) -> Result<Outcome, KmodError> {
    // /sys/module/NAME/initstate exists for loaded modules only (not for built-ins): skip reading the file.
    if Path::new("/sys/module").join(m.name.as_str()).join("initstate").exists() {
        return Ok(Outcome::AlreadyLoaded);
    }
    let path = index.path_of(m);
    let file = std::fs::File::open(&path).map_err(|source| KmodError::Open {
        name: m.name.clone(),
        path: path.clone(),
        source,
    })?;
    let flags = if m.is_compressed() { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    match rustix::system::finit_module(&file, c"", flags) {
        Ok(()) => Ok(Outcome::Loaded),
        Err(rustix::io::Errno::EXIST) => Ok(Outcome::AlreadyLoaded),
        Err(errno) => Err(KmodError::Load { name: m.name.clone(), path, errno }),
    }
}

// ---------------------------------------------------------------------------------------------
// Coldplug

/// The modaliases of the devices under `sys/devices` (sorted, each once). Symlinks are not
/// followed (sysfs is full of them, and they loop); unreadable files are skipped.
pub fn modaliases(sys: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(sys.join("devices"), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if depth < SYS_DEPTH {
                    stack.push((entry.path(), depth + 1));
                }
            } else if ft.is_file()
                && entry.file_name() == "modalias"
                && let Ok(s) = std::fs::read_to_string(entry.path())
            {
                let s = s.trim_end();
                if !s.is_empty() {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What a coldplug run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ColdplugSummary {
    /// Distinct modaliases seen.
    pub modaliases: usize,
    pub loaded: usize,
    pub failed: usize,
    pub passes: usize,
}

/// Coldplug state: which modaliases were handled and which modules tried, so that it can be
/// run again (while waiting for a disk) and only looks at devices that appeared since.
#[derive(Debug, Default)]
pub struct Coldplug {
    seen: HashSet<String>,
    tried: HashSet<ModuleName>,
    summary: ColdplugSummary,
}

impl Coldplug {
    pub fn new() -> Coldplug {
        Coldplug::default()
    }

    pub fn summary(&self) -> ColdplugSummary {
        self.summary
    }

    /// Passes until one loads nothing new: a bus driver's devices only appear once it is loaded.
    /// Failures are recorded in the report and logged at debug level, never returned: a driver
    /// that finds nothing to drive (ENODEV) is normal.
    pub fn run(&mut self, index: &ModuleIndex, sys: &Path, report: &mut LoadReport) -> ColdplugSummary {
        for _ in 0..COLDPLUG_PASSES {
            if self.pass(index, sys, report) == 0 {
                break;
            }
        }
        self.summary
    }

    /// One pass over the modaliases not seen before; returns how many modules it loaded.
    pub fn pass(&mut self, index: &ModuleIndex, sys: &Path, report: &mut LoadReport) -> usize {
        self.summary.passes += 1;
        let mut wanted: Vec<ModuleName> = Vec::new();
        for alias in modaliases(sys) {
            if self.seen.contains(&alias) {
                continue;
            }
            for m in index.modules_for_alias(&alias) {
                if !self.tried.contains(&m) && !wanted.contains(&m) {
                    wanted.push(m);
                }
            }
            self.seen.insert(alias);
        }
        self.summary.modaliases = self.seen.len();
        let mut loaded = 0;
        for name in wanted {
            self.tried.insert(name.clone());
            let closure = match index.closure(&[name.as_str()]) {
                Ok(c) => c,
                Err(e) => {
                    crate::log::debug(&format!("coldplug: {e}"));
                    self.summary.failed += 1;
                    continue;
                }
            };
            for m in closure {
                if report.has(&m.name) {
                    continue;
                }
                self.tried.insert(m.name.clone());
                let started = Instant::now();
                let r = load_one(index, &m);
                if let Err(e) = &r {
                    crate::log::debug(&format!("coldplug: {e}"));
                }
                record(report, &m.name, &r, started, true);
                match r {
                    Ok(Outcome::Loaded) => loaded += 1,
                    Ok(_) => {}
                    Err(_) => {
                        self.summary.failed += 1;
                        // Whatever depends on it would fail the same way.
                        break;
                    }
                }
            }
        }
        self.summary.loaded += loaded;
        loaded
    }
}

/// Loads every module the devices under `sys` ask for (see [`Coldplug::run`]).
pub fn coldplug(index: &ModuleIndex, sys: &Path, report: &mut LoadReport) -> ColdplugSummary {
    Coldplug::new().run(index, sys, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/arch/x86/crypto/crc32c-intel.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias fs-vfat vfat
alias fs-ext4 ext4
alias usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in* uas
alias acpi*:PNP0501:* serial_8250
";
    const BUILTIN: &str = "kernel/crypto/sha256_generic.ko\nkernel/fs/nls/nls_base.ko\n";
    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep cifs gcm
softdep btrfs pre: blake2b-256 post: nothing
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(
            PathBuf::from("/lib/modules/test"),
            &IndexFiles {
                dep: DEP.into(),
                alias: ALIAS.into(),
                builtin: BUILTIN.into(),
                softdep: SOFTDEP.into(),
            },
        )
    }

    fn names(v: &[ModulePath]) -> Vec<&str> {
        v.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(ModuleName::new("crc32c-intel").as_str(), "crc32c_intel");
        assert_eq!(ModuleName::from_path("a/b/crc32c-intel.ko.xz").unwrap().as_str(), "crc32c_intel");
        assert_eq!(ModuleName::from_path("x.ko.zst").unwrap().as_str(), "x");
        assert_eq!(ModuleName::from_path("x.o"), None);
        assert_eq!(ModuleName::from_path("dir/.ko"), None);
    }

    #[test]
    fn closure_puts_dependencies_and_softdeps_first() {
        let ix = index();
        assert!(ix.warnings().is_empty(), "{:?}", ix.warnings());
        let c = ix.closure(&["virtio-blk"]).unwrap();
        assert_eq!(names(&c), ["virtio", "virtio_ring", "virtio_blk"]);
        let c = ix.closure(&["ext4", "virtio_blk", "ext4"]).unwrap();
        assert_eq!(
            names(&c),
            [
                "crc32c_intel",
                "crc32c_generic",
                "crc16",
                "mbcache",
                "jbd2",
                "ext4",
                "virtio",
                "virtio_ring",
                "virtio_blk"
            ]
        );
        assert!(c[0].is_compressed() && c[1].is_compressed() && !c[2].is_compressed());
        assert!(c[0].soft && c[1].soft && c.iter().skip(2).all(|m| !m.soft));
        assert_eq!(c[0].rel, Path::new("kernel/arch/x86/crypto/crc32c-intel.ko.xz"));
        assert_eq!(ix.path_of(&c[2]), Path::new("/lib/modules/test/kernel/lib/crc16.ko"));
    }

    #[test]
    fn builtins_are_skipped_aliases_resolve_and_unknown_names_are_errors() {
        let ix = index();
        assert!(ix.closure(&["sha256_generic", "nls-base"]).unwrap().is_empty());
        assert_eq!(names(&ix.closure(&["fs-vfat"]).unwrap()), ["fat", "vfat"]);
        let e = ix.closure(&["ext4", "no_such_mod"]).unwrap_err();
        assert!(matches!(&e, KmodError::Unknown { name, .. } if name == "no_such_mod"));
        assert!(e.to_string().contains("\"no_such_mod\""), "{e}");
        assert!(
            ix.is_builtin("sha256-generic")
                && ix.has_module("virtio_pci")
                && !ix.has_module("sha256_generic")
        );
    }

    #[test]
    fn alias_matching() {
        let ix = index();
        let m = |s: &str| ix.modules_for_alias(s).into_iter().map(|n| n.0).collect::<Vec<_>>();
        assert_eq!(m("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"), ["virtio_pci"]);
        assert_eq!(m("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(m("virtio:d00000001v00001AF4"), Vec::<String>::new());
        assert_eq!(m("crypto-crc32c"), ["crc32c_intel", "crc32c_generic"]);
        assert_eq!(m("usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00"), ["uas"]);
        assert!(m("usb:v13FDp3940d0350dc00dsc00dp00ic08isc06ip50in00").is_empty());
        assert_eq!(m("acpi:PNP0501:"), ["serial_8250"]);
        assert!(m("").is_empty());
    }

    #[test]
    fn fnmatch_rules() {
        let f = |p: &str, s: &str| fnmatch(p.as_bytes(), s.as_bytes());
        assert!(f("", ""));
        assert!(!f("", "a"));
        assert!(f("*", ""));
        assert!(f("*", "a/b"));
        assert!(f("a*b*c", "aXbYbc"));
        assert!(!f("a*b*c", "aXbYb"));
        assert!(f("a?c", "abc") && !f("a?c", "ac"));
        assert!(f("[a-c]x", "bx") && !f("[a-c]x", "dx"));
        assert!(f("[!a-c]x", "dx") && !f("[!a-c]x", "ax"));
        assert!(f("[^a]", "b"));
        assert!(f("[]]", "]") && f("[!]]", "a") && !f("[!]]", "]"));
        assert!(f("[a-]", "-") && f("[a-]", "a"));
        assert!(f("[", "[") && f("a[b", "a[b") && !f("[ab", "a"));
        assert!(f("\\*", "*") && !f("\\*", "a"));
        assert!(f("a\\", "a\\"));
        assert!(f("[\\]]", "]"));
        assert!(f("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!f("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn malformed_lines_are_skipped_and_reported() {
        let ix = ModuleIndex::parse(
            PathBuf::from("/lib/modules/x"),
            &IndexFiles {
                dep: "no colon here\n../evil.ko:\n/etc/passwd.ko:\n/lib/modules/x/#.ko:\n/lib/modules/x/ .ko:\n/lib/modules/x/kernel/a.ko: kernel/b.ko kernel/gone.ko\n\
                      kernel/b.ko:\nkernel/a.ko:\nkernel/c.txt:\nkernel//d.ko:\n\u{fffd}:\n"
                    .into(),
                alias: "alias onlytwo\nalias a b c\nnot an alias line\nalias x a\n".into(),
                builtin: "\nnot-a-module\nkernel/y.ko\n".into(),
                softdep: "softdep\nsoftdep a pre: b\nsoftdep a pre: pre: post:\nfoo bar\n".into(),
            },
        );
        let w: Vec<String> = ix.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 16, "{w:#?}");
        assert!(w[0].starts_with("modules.dep line 1:"), "{w:?}");
        assert_eq!(ix.len(), 2);
        assert_eq!(names(&ix.closure(&["a"]).unwrap()), ["b", "a"]);
        assert_eq!(names(&ix.closure(&["x"]).unwrap()), ["b", "a"]);
        assert!(ix.is_builtin("y"));
    }

    #[test]
    fn load_names_the_module_and_file_it_cannot_open() {
        // Never reaches finit_module: the files do not exist.
        let ix = ModuleIndex::parse(
            PathBuf::from("/nonexistent/lethe-test"),
            &IndexFiles {
                dep: "kernel/lethe_test_a.ko: kernel/lethe_test_b.ko\nkernel/lethe_test_b.ko:\nkernel/lethe_test_s.ko:\n"
                    .into(),
                softdep: "softdep lethe_test_a pre: lethe_test_s\n".into(),
                ..IndexFiles::default()
            },
        );
        let mut report = LoadReport::default();
        let e = load(&ix, &["lethe-test-a"], &mut report).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("lethe_test_b") && msg.contains("/nonexistent/lethe-test/kernel/lethe_test_b.ko"),
            "{msg}"
        );
        // The softdep failed first and was only recorded; the hard dependency stopped the load.
        let outcomes: Vec<(&str, Outcome)> =
            report.modules.iter().map(|r| (r.name.as_str(), r.outcome)).collect();
        assert_eq!(outcomes, [("lethe_test_s", Outcome::Failed), ("lethe_test_b", Outcome::Failed)]);
        assert_eq!(report.count(Outcome::Failed), 2);
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""outcome":"failed""#), "{json}");
    }

    #[test]
    fn cycles_are_cut() {
        let ix = ModuleIndex::parse(
            PathBuf::from("/m"),
            &IndexFiles {
                dep: "a.ko: b.ko\nb.ko: a.ko\nc.ko:\n".into(),
                softdep: "softdep c pre: c a\n".into(),
                ..IndexFiles::default()
            },
        );
        assert_eq!(names(&ix.closure(&["a"]).unwrap()), ["b", "a"]);
        assert_eq!(names(&ix.closure(&["c"]).unwrap()), ["b", "a", "c"]);
    }

    #[test]
    fn subset_round_trips() {
        let ix = index();
        let c = ix.closure(&["ext4", "virtio_blk"]).unwrap();
        let sub = ix.subset(&c);
        assert!(sub.dep.contains("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko"));
        assert!(
            !sub.dep.contains("vfat") && !sub.alias.contains("vfat") && !sub.alias.contains("virtio_pci")
        );
        assert!(sub.alias.contains("alias crypto-crc32c crc32c_intel\n"));
        assert_eq!(sub.softdep, "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n");
        assert_eq!(sub.builtin, BUILTIN);
        let again = ModuleIndex::parse(PathBuf::from("/initrd"), &sub);
        assert!(again.warnings().is_empty(), "{:?}", again.warnings());
        assert_eq!(again.closure(&["ext4", "virtio_blk"]).unwrap(), c);
        assert!(again.closure(&["vfat"]).is_err());
    }

    #[test]
    fn modaliases_walks_devices_without_following_symlinks() {
        let root = std::env::temp_dir().join(format!("lethe-kmod-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dev = root.join("devices/pci0000:00/0000:00:01.0");
        std::fs::create_dir_all(dev.join("virtio0")).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
            .unwrap();
        std::fs::write(dev.join("virtio0/modalias"), "virtio:d00000002v00001AF4\n").unwrap();
        std::fs::write(dev.join("virtio0/other"), "x").unwrap();
        std::os::unix::fs::symlink(&root, dev.join("virtio0/loop")).unwrap();
        let a = modaliases(&root);
        assert_eq!(a, ["pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "virtio:d00000002v00001AF4"]);
        assert!(modaliases(&root.join("absent")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Releases compare number by number, and only trees with an index count as installed.
    #[test]
    fn the_newest_release_is_the_highest_numbered_tree_with_an_index() {
        use std::cmp::Ordering::*;
        assert_eq!(release_cmp("6.1.0-100-amd64", "6.1.0-99-amd64"), Greater);
        assert_eq!(release_cmp("6.1.0-57-amd64", "6.10.0-1-amd64"), Less);
        assert_eq!(release_cmp("6.1.0-57-amd64", "6.1.0-57-amd64"), Equal);
        let root = std::env::temp_dir().join(format!("lethe-kmod-releases-{}", std::process::id()));
        for (release, indexed) in
            [("6.1.0-99-amd64", true), ("6.1.0-100-amd64", true), ("6.2.0-1-amd64", false)]
        {
            std::fs::create_dir_all(root.join(release)).unwrap();
            if indexed {
                std::fs::write(root.join(release).join("modules.dep"), "").unwrap();
            }
        }
        assert_eq!(newest_release(&root).as_deref(), Some("6.1.0-100-amd64"));
        assert_eq!(newest_release(&root.join("absent")), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The distribution kernel's index, when the host has it: parse time and lookup speed
    /// (printed, not asserted: run with --nocapture to see).
    #[test]
    fn debian_index_speed() {
        let Some(release) = newest_release(Path::new(MODULES_ROOT)) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no kernel in /lib/modules (apt-get install linux-image-amd64)"
            );
            eprintln!("skipped: no /lib/modules/RELEASE with modules.dep");
            return;
        };
        let dir = &Path::new(MODULES_ROOT).join(release);
        let t = Instant::now();
        let ix = ModuleIndex::load(dir).unwrap();
        let parse = t.elapsed();
        assert!(ix.warnings().is_empty(), "{:?}", &ix.warnings()[..ix.warnings().len().min(5)]);
        assert!(ix.alias_count() > 20_000);
        let mut queries = modaliases(Path::new("/sys"));
        queries.extend([
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".to_owned(),
            "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00".to_owned(),
            "virtio:d00000002v00001AF4".to_owned(),
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_owned(),
            "acpi:PNP0501:".to_owned(),
        ]);
        while queries.len() < 100 {
            let n = queries.len();
            queries.push(format!("pci:v00008086d0000{n:04X}sv00008086sd00000000bc02sc00i00"));
        }
        let t = Instant::now();
        let hits: usize = queries.iter().map(|q| ix.modules_for_alias(q).len()).sum();
        let fast = t.elapsed();
        let t = Instant::now();
        let naive: usize = queries
            .iter()
            .map(|q| {
                ix.aliases.patterns.iter().filter(|a| fnmatch(a.pattern.as_bytes(), q.as_bytes())).count()
            })
            .sum();
        let slow = t.elapsed();
        assert!(naive >= hits);
        let mut c = names(&ix.closure(&["virtio_blk"]).unwrap()).join(" ");
        assert!(c.ends_with(" virtio_blk"), "{c}");
        c.truncate(c.len() - " virtio_blk".len());
        assert!(c == "virtio virtio_ring" || c == "virtio_ring virtio", "{c}");
        assert_eq!(ix.modules_for_alias("virtio:d00000002v00001AF4")[0].as_str(), "virtio_blk");
        assert!(names(&ix.closure(&["ext4"]).unwrap()).contains(&"crc32c_generic"));
        eprintln!(
            "{} modules, {} aliases parsed in {parse:?}; {} modaliases matched in {fast:?} \
             (bucketed) vs {slow:?} (every pattern), {hits} hits",
            ix.len(),
            ix.alias_count(),
            queries.len()
        );
    }
}
