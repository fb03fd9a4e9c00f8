//! Test support: each test runs as root in its own mount namespace on a fresh tmpfs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHILD: &str = "LETHE_NS_TEST";

/// Runs `body` inside a private mount namespace with a fresh tmpfs tree.
///
/// The test binary re-executes itself for this one test under
/// `unshare -m`, so mounts never reach the host and tests cannot see each
/// other's. Without root this fails under `CI=true` and is reported as
/// skipped otherwise.
pub fn in_namespace(name: &str, body: impl FnOnce(&Tree)) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        let tree = Tree::new();
        body(&tree);
        return;
    }
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} needs root (CI=true: not skipping)");
        eprintln!("SKIPPED {name}: needs root");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in its namespace:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// A scratch area: `root` is the ephemeral root, `outside` lies beside it
/// (what a planted symlink would point at), `config` is written next to them.
pub struct Tree {
    pub base: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub utab: std::cell::RefCell<PathBuf>,
}

impl Tree {
    fn new() -> Tree {
        let base = PathBuf::from("/tmp/lethe-test");
        fs::create_dir_all(&base).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&base).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        let root = base.join("root");
        let outside = base.join("outside");
        for d in [&root, &outside, &base.join("run")] {
            fs::create_dir(d).unwrap();
        }
        // The ephemeral root is a file system of its own, as on a machine.
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs root");
        Tree { utab: base.join("run/utab").into(), base, root, outside }
    }

    /// Host path of `p` (absolute, as seen after switch_root).
    pub fn p(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn mkdir(&self, p: &str) -> &Self {
        fs::create_dir_all(self.p(p)).unwrap();
        self
    }

    pub fn mkdir_owned(&self, p: &str, uid: u32, gid: u32, mode: u32) -> &Self {
        let h = self.p(p);
        fs::create_dir_all(&h).unwrap();
        std::os::unix::fs::chown(&h, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(&h, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn write(&self, p: &str, data: &str) -> &Self {
        let h = self.p(p);
        fs::create_dir_all(h.parent().unwrap()).unwrap();
        fs::write(h, data).unwrap();
        self
    }

    pub fn symlink(&self, p: &str, to: &Path) -> &Self {
        let h = self.p(p);
        fs::create_dir_all(h.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, h).unwrap();
        self
    }

    pub fn config(&self, json: &str) -> PathBuf {
        let c = self.base.join("config.json");
        fs::write(&c, json).unwrap();
        c
    }

    /// Runs the persist-bind binary on this tree with `json` as config.
    pub fn run(&self, json: &str, args: &[&str]) -> Output {
        let cfg = self.config(json);
        Command::new(env!("CARGO_BIN_EXE_persist-bind"))
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .arg("--config")
            .arg(cfg)
            .arg("--utab")
            .arg(&*self.utab.borrow())
            .output()
            .unwrap()
    }

    /// Records mount options at `p` inside the root instead of beside it.
    pub fn utab_at(&self, p: &str) {
        *self.utab.borrow_mut() = self.p(p);
    }

    /// Runs `script` with the root as `/`, as after switch_root (the host's
    /// programs bound in read-only), in a nested mount namespace.
    pub fn after_switch_root(&self, script: &str) -> String {
        let r = self.root.display();
        let setup = format!(
            "set -e; cd {r}; mkdir -p proc etc .old usr; for d in usr bin sbin lib lib64; do \
             if [ -L /$d ]; then ln -sfn \"$(readlink /$d)\" $d; elif [ -d /$d ]; then mkdir -p $d; mount --rbind -o ro /$d $d; fi; done; \
             mount -t proc proc proc; ln -sfn /proc/self/mounts etc/mtab; pivot_root . .old; umount -l /.old; {script}"
        );
        let o = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &setup])
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn read(&self, p: &str) -> String {
        fs::read_to_string(self.p(p)).unwrap()
    }

    /// (uid, gid, mode) of `p`, not following a final symlink.
    pub fn owner_mode(&self, p: &str) -> (u32, u32, u32) {
        let m = fs::symlink_metadata(self.p(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    pub fn link(&self, p: &str) -> Option<String> {
        fs::read_link(self.p(p)).ok().map(|l| l.to_string_lossy().into_owned())
    }

    pub fn exists(&self, p: &str) -> bool {
        fs::symlink_metadata(self.p(p)).is_ok()
    }

    /// Mounts below the root: target (as after switch_root) -> root of the
    /// mount within its file system, from /proc/self/mountinfo.
    pub fn mounts(&self) -> BTreeMap<String, String> {
        let prefix = self.root.to_str().unwrap();
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mi.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let target = unescape(f[4]);
                let rest = target.strip_prefix(prefix)?;
                if rest.is_empty() {
                    return None;
                }
                Some((rest.to_owned(), unescape(f[3])))
            })
            .collect()
    }

    /// Mount ids of the mounts below the root, by target.
    pub fn mount_ids(&self) -> BTreeMap<String, u64> {
        let prefix = self.root.to_str().unwrap();
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mi.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let rest = unescape(f[4]).strip_prefix(prefix)?.to_owned();
                (!rest.is_empty()).then(|| (rest, f[0].parse().unwrap()))
            })
            .collect()
    }

    /// Everything under `base`: type, owner, mode, size, link, content hash,
    /// plus the mount table below it; equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        walk(&self.base, &self.base, &mut out);
        out.push_str(&format!("{:?}\n", self.mounts()));
        out
    }
}

fn walk(base: &Path, p: &Path, out: &mut String) {
    let m = fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(base).unwrap().display().to_string();
    let link = fs::read_link(p).map(|l| l.display().to_string()).unwrap_or_default();
    let content =
        if m.is_file() { fs::read(p).map(|b| format!("{b:?}")).unwrap_or_default() } else { String::new() };
    out.push_str(&format!(
        "/{rel} {:o} {}:{} {} {link} {content} {}\n",
        m.mode(),
        m.uid(),
        m.gid(),
        if m.is_dir() { 0 } else { m.len() },
        m.ino()
    ));
    if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        // The config is the test's input, not part of the tree.
        for n in names.into_iter().filter(|n| n != &base.join("config.json")) {
            walk(base, &n, out);
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
