//! The tree impermanence produces for the README's own example, as a table, and persist-bind producing the same tree.
//!
//! Each row is impermanence's documented outcome (its README, and what its
//! create-directories and mount-file steps do) for one path: a bind mount
//! from the persistent side, a symlink to it, or a directory with an owner
//! and mode. A user who swaps the impermanence import for lethe's module
//! keeps their config and gets this same tree.

mod common;

use common::{Tree, in_namespace, stderr};

/// impermanence's README example (users.bird included), as builtins.toJSON
/// writes it, plus a few entries whose sources already exist.
const CONFIG: &str = r#"{
  "version": 1,
  "uids": {"bird": 1000, "colord": 997},
  "gids": {"users": 100, "colord": 997},
  "persistence": {
    "/persistent": {
      "hideMounts": true,
      "directories": [
        "/var/log",
        "/var/lib/bluetooth",
        "/var/lib/nixos",
        "/var/lib/systemd/coredump",
        "/etc/NetworkManager/system-connections",
        {"directory": "/var/lib/colord", "user": "colord", "group": "colord", "mode": "u=rwx,g=rx,o="},
        "/var/lib/private",
        {"directory": "/srv/data", "mode": "0700"}
      ],
      "files": [
        "/etc/machine-id",
        {"file": "/var/keys/secret_file", "parentDirectory": {"mode": "u=rwx,g=,o="}},
        "/etc/ssh/ssh_host_ed25519_key",
        {"file": "/etc/nix/netrc", "method": "symlink"}
      ],
      "users": {
        "bird": {
          "group": "users",
          "directories": [
            "Downloads",
            {"directory": ".gnupg", "mode": "0700"},
            {"directory": ".local/share/keyrings", "mode": "0700"}
          ],
          "files": [".screenrc"]
        }
      }
    }
  }
}"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// A bind mount of this persistent path.
    Bind(&'static str),
    /// A symlink with this target.
    Link(&'static str),
    /// A directory (or file) with uid, gid and mode.
    Owned(u32, u32, u32),
}

use Outcome::*;

/// (path on the running system, what impermanence leaves there, why)
const TABLE: &[(&str, Outcome, &str)] = &[
    ("/var/log", Bind("/persistent/var/log"), "directories are bind-mounted"),
    ("/var/log", Owned(0, 0, 0o755), "a missing source is created root:root 0755; the target mirrors it"),
    ("/persistent/var/log", Owned(0, 0, 0o755), "created with the entry's defaults"),
    ("/var/lib", Owned(0, 0, 0o755), "parents are created with default permissions"),
    ("/var/lib/colord", Bind("/persistent/var/lib/colord"), "directory object"),
    ("/persistent/var/lib/colord", Owned(997, 997, 0o750), "user, group and symbolic mode apply on creation"),
    ("/var/lib/colord", Owned(997, 997, 0o750), "the target takes the source's owner and mode"),
    ("/var/lib/private", Owned(0, 0, 0o700), "an existing source's mode is mirrored to the target"),
    ("/persistent/srv/data", Owned(1234, 1234, 0o755), "config mode has no effect once the source exists"),
    ("/srv/data", Owned(1234, 1234, 0o755), "the persistent side is the truth"),
    ("/etc/NetworkManager/system-connections", Bind("/persistent/etc/NetworkManager/system-connections"), ""),
    (
        "/etc/machine-id",
        Bind("/persistent/etc/machine-id"),
        "machine-id is bound even when missing (PR #242)",
    ),
    (
        "/etc/ssh/ssh_host_ed25519_key",
        Bind("/persistent/etc/ssh/ssh_host_ed25519_key"),
        "an existing file is bound",
    ),
    ("/var/keys/secret_file", Link("/persistent/var/keys/secret_file"), "a missing file becomes a symlink"),
    ("/var/keys", Owned(0, 0, 0o700), "parentDirectory perms apply to the file's directory"),
    ("/persistent/var/keys", Owned(0, 0, 0o700), "parentDirectory perms apply on the persistent side too"),
    ("/etc/nix/netrc", Link("/persistent/etc/nix/netrc"), "method = symlink links even an existing file"),
    ("/home", Owned(0, 0, 0o755), "a home's parent is root's"),
    ("/home/bird", Owned(1000, 100, 0o700), "the home is the user's, 0700"),
    ("/persistent/home/bird", Owned(1000, 100, 0o700), "on both sides"),
    (
        "/home/bird/Downloads",
        Bind("/persistent/home/bird/Downloads"),
        "users' entries are relative to the home",
    ),
    ("/home/bird/Downloads", Owned(1000, 100, 0o755), "owned by the user and the user's group"),
    ("/home/bird/.gnupg", Owned(1000, 100, 0o700), ""),
    ("/home/bird/.local", Owned(1000, 100, 0o755), "parents inside a home are the user's, 0755"),
    ("/home/bird/.local/share", Owned(1000, 100, 0o755), ""),
    ("/home/bird/.local/share/keyrings", Owned(1000, 100, 0o700), ""),
    (
        "/home/bird/.screenrc",
        Link("/persistent/home/bird/.screenrc"),
        "a missing user file becomes a symlink",
    ),
];

#[test]
fn persist_bind_builds_the_tree_impermanence_builds() {
    in_namespace("persist_bind_builds_the_tree_impermanence_builds", |t: &Tree| {
        t.mkdir_owned("/persistent", 0, 0, 0o755);
        t.mkdir_owned("/persistent/var/lib/private", 0, 0, 0o700);
        t.mkdir_owned("/persistent/srv/data", 1234, 1234, 0o755);
        t.write("/persistent/etc/ssh/ssh_host_ed25519_key", "key");
        t.write("/persistent/etc/nix/netrc", "machine example");
        let o = t.run(CONFIG, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let mounts = t.mounts();
        let mut wrong = Vec::new();
        for &(path, want, why) in TABLE {
            let got = match want {
                Bind(_) => mounts.get(path).map(|r| Bind(r.clone().leak())),
                Link(_) => t.link(path).map(|l| Link(l.leak())),
                Owned(..) => t.exists(path).then(|| {
                    let (u, g, m) = t.owner_mode(path);
                    Owned(u, g, m)
                }),
            };
            if got != Some(want) {
                wrong.push(format!("{path}: want {want:?} ({why}), got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "differs from impermanence:\n{}", wrong.join("\n"));
        assert_eq!(t.read("/persistent/etc/machine-id"), "uninitialized\n");
        // Nothing else was mounted: one mount per directory entry and per bound file.
        assert_eq!(mounts.len(), 8 + 3 + 2, "{mounts:?}");
    });
}
