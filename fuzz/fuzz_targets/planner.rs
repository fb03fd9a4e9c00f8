//! Planning any valid config against any in-memory tree never panics and never emits a step outside the entry's target chain or its persistent mirror, all as absolute normalised paths.
#![no_main]

// Input: a JSON config, optionally followed by a NUL byte and tree bytes.
// Every storage path starts out as a directory (with its parents); the tree
// bytes are then read three at a time as (path, kind, attributes), the path
// picked among the entries' targets, sources and their parents, so the
// fuzzer can plant files, symlinks, foreign owners and shared inodes
// exactly where the planner looks.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use libfuzzer_sys::fuzz_target;
use persist_bind::beneath::{FsError, Kind, Meta};
use persist_bind::mode::Mode;
use persist_bind::owner::Ids;
use persist_bind::plan::{self, Outcome, Step, View};
use persist_bind::{Document, RootPath};

const ENOTDIR: i32 = 20;
const EINVAL: i32 = 22;

#[derive(Default)]
struct Tree {
    nodes: BTreeMap<RootPath, Meta>,
    links: BTreeMap<RootPath, String>,
}

fn meta(kind: Kind, uid: u32, gid: u32, mode: u32, size: u64, ino: u64) -> Meta {
    Meta { kind, uid, gid, mode: Mode::from_bits(mode & 0o7777).unwrap(), size, dev: 1, ino }
}

impl Tree {
    /// `mkdir -p` of the parents of `p` (and of `p` too if `itself`), keeping what is there.
    fn mkdir_p(&mut self, p: &RootPath, itself: bool, ino: &mut u64) {
        let last = itself.then(|| p.clone());
        for a in p.ancestors().into_iter().chain(last) {
            self.nodes.entry(a).or_insert_with(|| {
                *ino += 1;
                meta(Kind::Directory, 0, 0, 0o755, 0, *ino)
            });
        }
    }
}

impl View for Tree {
    fn lstat(&self, p: &RootPath) -> Result<Option<Meta>, FsError> {
        if p.is_root() {
            return Ok(Some(meta(Kind::Directory, 0, 0, 0o755, 0, 1)));
        }
        // Resolved like openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
        for a in p.ancestors() {
            match self.nodes.get(&a) {
                None => return Ok(None),
                Some(m) if m.kind == Kind::Symlink => {
                    return Err(FsError::SymlinkOnPath { path: p.clone(), link: a });
                }
                Some(m) if m.kind != Kind::Directory => {
                    let source = io::Error::from_raw_os_error(ENOTDIR);
                    return Err(FsError::Io { path: p.clone(), op: "stat", source });
                }
                Some(_) => {}
            }
        }
        Ok(self.nodes.get(p).copied())
    }

    fn readlink(&self, p: &RootPath) -> Result<String, FsError> {
        self.links.get(p).cloned().ok_or_else(|| FsError::Io {
            path: p.clone(),
            op: "readlink",
            source: io::Error::from_raw_os_error(EINVAL),
        })
    }
}

/// Absolute, with no empty, `.` or `..` component and no NUL (only `/` itself may end in `/`).
fn assert_normalised(what: &str, p: &RootPath) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "{what} {s:?} is not absolute");
    assert!(!s.contains('\0'), "{what} {s:?} holds a NUL");
    if s != "/" {
        for c in s[1..].split('/') {
            assert!(!matches!(c, "" | "." | ".."), "{what} {s:?} has a {c:?} component");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (json, tree_bytes) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok((doc, entries)) = Document::entries_from_slice(json) else { return };
    let ids = Ids::from_config(&doc);

    // The paths the planner may look at: each target with its parents, and
    // their mirrors under the storage path.
    let chain = |t: &RootPath| t.ancestors().into_iter().chain([t.clone()]).collect::<Vec<_>>();
    let mut candidates = BTreeSet::new();
    for e in &entries {
        for d in chain(&e.target) {
            candidates.insert(e.storage.concat(&d));
            candidates.insert(d);
        }
        candidates.extend(chain(&e.storage));
    }
    candidates.remove(&RootPath::root());
    let candidates: Vec<RootPath> = candidates.into_iter().collect();

    let mut tree = Tree::default();
    let mut ino = 1000;
    for e in &entries {
        tree.mkdir_p(&e.storage, true, &mut ino);
    }
    if !candidates.is_empty() {
        const UIDS: [u32; 4] = [0, 1000, 997, 4242];
        const GIDS: [u32; 4] = [0, 100, 997, 4242];
        const MODES: [u32; 8] = [0o755, 0o700, 0o750, 0o644, 0o1777, 0o2755, 0o000, 0o777];
        for rec in tree_bytes.chunks_exact(3) {
            let (idx, kind, attr) = (rec[0] as usize, rec[1], rec[2]);
            let p = candidates[idx % candidates.len()].clone();
            let uid = UIDS[(attr & 3) as usize];
            let gid = GIDS[((attr >> 2) & 3) as usize];
            let mode = MODES[((attr >> 4) & 7) as usize];
            // Small inode numbers collide on purpose ("already bound").
            let ino_here = u64::from(kind >> 3);
            let m = match kind % 6 {
                0 => meta(Kind::Directory, uid, gid, mode, 0, ino_here),
                1 => meta(Kind::File, uid, gid, mode & 0o777, 0, ino_here),
                2 => meta(Kind::File, uid, gid, mode & 0o777, 1 + u64::from(attr), ino_here),
                3 => {
                    let to = if attr & 0x80 != 0 {
                        candidates[(attr as usize) % candidates.len()].to_string()
                    } else {
                        "../../outside".to_owned()
                    };
                    tree.links.insert(p.clone(), to);
                    meta(Kind::Symlink, uid, gid, 0o777, 0, ino_here)
                }
                4 => meta(Kind::Other, uid, gid, mode, 0, ino_here),
                _ => {
                    tree.nodes.remove(&p);
                    continue;
                }
            };
            tree.mkdir_p(&p, false, &mut ino);
            tree.nodes.insert(p, m);
        }
    }

    let plan = plan::plan(&entries, &ids, &tree);
    assert_eq!(plan.entries.len(), entries.len());
    for (e, ep) in entries.iter().zip(&plan.entries) {
        assert_eq!(ep.origin, e.origin);
        let targets: BTreeSet<RootPath> = chain(&e.target).into_iter().collect();
        let mirrors: BTreeSet<RootPath> = targets.iter().map(|d| e.storage.concat(d)).collect();
        let within = |what: &str, p: &RootPath| {
            assert_normalised(what, p);
            assert!(
                targets.contains(p) || mirrors.contains(p),
                "{what} {p} of {} is outside its target chain and the mirror under {}",
                e.origin,
                e.storage
            );
        };
        let steps = match &ep.outcome {
            Outcome::Steps(steps) => steps,
            Outcome::Error(err) => {
                std::hint::black_box(err.to_string());
                continue;
            }
        };
        for step in steps {
            std::hint::black_box(step.to_string());
            match step {
                Step::Mkdir { path, owner: _, mode: _ } => within("mkdir", path),
                Step::Chown { path, owner: _ } => within("chown", path),
                Step::Chmod { path, mode: _ } => within("chmod", path),
                Step::Touch { path } => within("touch", path),
                Step::InitMachineId { path } => within("init-machine-id", path),
                Step::Bind { source, target, options: _ } => {
                    within("bind source", source);
                    within("bind target", target);
                    assert!(mirrors.contains(source), "bind source {source} is not under {}", e.storage);
                }
                Step::Symlink { path, target } => {
                    within("symlink", path);
                    within("symlink target", target);
                }
            }
        }
    }
});
