//! persist-bind against the real kernel: mounts, owners, modes and links after apply, as root.

mod common;

use common::{Tree, in_namespace, stderr, stdout};

const ALICE: u32 = 1000;
const USERS: u32 = 100;

fn config(storage_body: &str) -> String {
    format!(
        r#"{{"version": 1, "uids": {{"alice": {ALICE}, "colord": 997}}, "gids": {{"users": {USERS}, "colord": 997}},
            "persistence": {{"/persist": {storage_body}}}}}"#
    )
}

fn persist(t: &Tree) {
    t.mkdir_owned("/persist", 0, 0, 0o755);
}

#[test]
fn nested_directory_entries_are_bound_parents_first() {
    in_namespace("nested_directory_entries_are_bound_parents_first", |t| {
        persist(t);
        t.mkdir_owned("/data", 0, 0, 0o755);
        t.write("/persist/var/lib/nixos/uid-map", "{}");
        t.write("/data/var/lib/big/blob", "payload");
        // Listed children first: the order must not matter.
        let json = r#"{"version": 1, "persistence": {
            "/persist": {"directories": ["/var/lib/nixos", "/var/lib", "/var/lib/bluetooth"]},
            "/data": {"directories": ["/var/lib/big"]}}}"#;
        let o = t.run(json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let m = t.mounts();
        assert_eq!(m.get("/var/lib").map(String::as_str), Some("/persist/var/lib"), "{m:?}");
        assert_eq!(m.get("/var/lib/big").map(String::as_str), Some("/data/var/lib/big"), "{m:?}");
        // Children of a bound parent show the persistent tree already.
        assert_eq!(t.read("/var/lib/nixos/uid-map"), "{}");
        assert_eq!(t.read("/var/lib/big/blob"), "payload");
        assert!(t.exists("/persist/var/lib/bluetooth"));
        // The mount point for /data's entry was created on the persistent side
        // of /var/lib (through its bind), not on the volatile root.
        assert!(t.exists("/persist/var/lib/big"));
        assert_eq!(t.owner_mode("/var"), (0, 0, 0o755));
    });
}

#[test]
fn target_takes_the_persistent_owner_and_mode() {
    in_namespace("target_takes_the_persistent_owner_and_mode", |t| {
        persist(t);
        t.mkdir_owned("/persist/srv", 0, 0, 0o711);
        t.mkdir_owned("/persist/srv/www", 33, 33, 0o750);
        t.mkdir_owned("/srv", 0, 0, 0o755);
        // Config says 0700 and root, but an existing source is the truth.
        let json = config(
            r#"{"directories": [{"directory": "/srv/www", "mode": "0700"},
                                             {"directory": "/var/lib/colord", "user": "colord", "group": "colord", "mode": "u=rwx,g=rx,o="}]}"#,
        );
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.owner_mode("/srv"), (0, 0, 0o711), "parents mirror the persistent parents");
        assert_eq!(t.owner_mode("/persist/srv/www"), (33, 33, 0o750), "an existing source is never changed");
        assert_eq!(t.owner_mode("/srv/www"), (33, 33, 0o750));
        assert_eq!(t.owner_mode("/persist/var/lib/colord"), (997, 997, 0o750));
        assert_eq!(t.owner_mode("/persist/var/lib"), (0, 0, 0o755), "missing parents get root:root 0755");
        assert_eq!(t.mounts().get("/var/lib/colord").map(String::as_str), Some("/persist/var/lib/colord"));
    });
}

#[test]
fn users_entries_live_in_a_private_home() {
    in_namespace("users_entries_live_in_a_private_home", |t| {
        persist(t);
        let json = config(
            r#"{"users": {"alice": {"group": "users",
                 "directories": [".local/share/keyrings", {"directory": ".ssh", "mode": "0700"}],
                 "files": [".screenrc"]}}}"#,
        );
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for side in ["", "/persist"] {
            assert_eq!(t.owner_mode(&format!("{side}/home")), (0, 0, 0o755), "{side}/home");
            assert_eq!(t.owner_mode(&format!("{side}/home/alice")), (ALICE, USERS, 0o700), "{side} home");
            assert_eq!(t.owner_mode(&format!("{side}/home/alice/.local")), (ALICE, USERS, 0o755));
            assert_eq!(
                t.owner_mode(&format!("{side}/home/alice/.local/share/keyrings")),
                (ALICE, USERS, 0o755)
            );
            assert_eq!(t.owner_mode(&format!("{side}/home/alice/.ssh")), (ALICE, USERS, 0o700));
        }
        let m = t.mounts();
        assert!(
            m.contains_key("/home/alice/.ssh") && m.contains_key("/home/alice/.local/share/keyrings"),
            "{m:?}"
        );
        // A missing file becomes a link, written as seen after switch_root.
        assert_eq!(t.link("/home/alice/.screenrc").as_deref(), Some("/persist/home/alice/.screenrc"));
    });
}

#[test]
fn files_present_missing_and_clashing() {
    in_namespace("files_present_missing_and_clashing", |t| {
        persist(t);
        t.write("/persist/etc/ssh/ssh_host_ed25519_key", "secret-key");
        t.write("/etc/clash", "volatile content");
        t.write("/persist/etc/clash", "persistent content");
        let json = config(
            r#"{"files": ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/clash",
                         {"file": "/etc/always-link", "method": "symlink"}]}"#,
        );
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(1), "a clashing file fails its entry: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("persistence./persist.files[2]") && err.contains("non-empty file"), "{err}");
        // The clashing file is untouched on both sides.
        assert_eq!(t.read("/etc/clash"), "volatile content");
        assert_eq!(t.read("/persist/etc/clash"), "persistent content");
        assert!(!t.mounts().contains_key("/etc/clash"));
        // The other entries were still applied.
        assert_eq!(
            t.mounts().get("/etc/ssh/ssh_host_ed25519_key").map(String::as_str),
            Some("/persist/etc/ssh/ssh_host_ed25519_key")
        );
        assert_eq!(t.read("/etc/ssh/ssh_host_ed25519_key"), "secret-key");
        assert_eq!(
            t.link("/etc/ssh/ssh_host_ed25519_key.pub").as_deref(),
            Some("/persist/etc/ssh/ssh_host_ed25519_key.pub")
        );
        assert_eq!(t.link("/etc/always-link").as_deref(), Some("/persist/etc/always-link"));
    });
}

#[test]
fn machine_id_first_boot_is_committed_to_persistent_storage() {
    in_namespace("machine_id_first_boot_is_committed_to_persistent_storage", |t| {
        persist(t);
        let o = t.run(&config(r#"{"files": ["/etc/machine-id"]}"#), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.read("/persist/etc/machine-id"), "uninitialized\n");
        assert_eq!(t.mounts().get("/etc/machine-id").map(String::as_str), Some("/persist/etc/machine-id"));
        // What systemd writes lands on the persistent side.
        std::fs::write(t.p("/etc/machine-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(t.read("/persist/etc/machine-id"), "0123456789abcdef0123456789abcdef\n");
    });
}

#[test]
fn a_second_apply_changes_nothing() {
    in_namespace("a_second_apply_changes_nothing", |t| {
        persist(t);
        t.write("/persist/etc/machine-id", "abc\n");
        let json = config(
            r#"{"hideMounts": true, "directories": ["/var/log", "/var/lib/nixos"], "files": ["/etc/machine-id", "/etc/adjtime"],
                "users": {"alice": {"group": "users", "directories": ["Documents"]}}}"#,
        );
        let first = t.run(&json, &[]);
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
        let before = t.snapshot();
        let utab = std::fs::read_to_string(&*t.utab.borrow()).unwrap();
        let second = t.run(&json, &[]);
        assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
        assert!(stderr(&second).contains("0 changed, 5 already in place"), "{}", stderr(&second));
        assert_eq!(t.snapshot(), before);
        assert_eq!(std::fs::read_to_string(&*t.utab.borrow()).unwrap(), utab);
        let plan = t.run(&json, &["--dry-run"]);
        assert!(stdout(&plan).contains("# 5 entries, 0 steps, 0 errors"), "{}", stdout(&plan));
        let check = t.run(&json, &["check"]);
        assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    });
}

#[test]
fn symlink_planted_on_a_target_path_is_never_followed() {
    in_namespace("symlink_planted_on_a_target_path_is_never_followed", |t| {
        persist(t);
        // /etc on the ephemeral root points outside the root.
        t.symlink("/etc", &t.outside);
        t.symlink("/var/log", &t.outside);
        let json =
            config(r#"{"directories": ["/etc/ssh", "/var/log", "/srv"], "files": ["/etc/machine-id"]}"#);
        let before_outside = std::fs::read_dir(&t.outside).unwrap().count();
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("symlink on its path (/etc)"), "{err}");
        assert!(err.contains("directories[1]") && err.contains("/var/log"), "{err}");
        assert_eq!(std::fs::read_dir(&t.outside).unwrap().count(), before_outside, "nothing created outside");
        let m = t.mounts();
        assert!(
            !m.contains_key("/etc/ssh") && !m.contains_key("/var/log") && !m.contains_key("/etc/machine-id"),
            "{m:?}"
        );
        assert_eq!(m.get("/srv").map(String::as_str), Some("/persist/srv"), "other entries still applied");
    });
}

#[test]
fn symlink_planted_in_the_persistent_tree_is_never_followed() {
    in_namespace("symlink_planted_in_the_persistent_tree_is_never_followed", |t| {
        persist(t);
        t.symlink("/persist/var", &t.outside);
        t.symlink("/persist/etc/shadow", &t.outside.join("stolen"));
        let json = config(r#"{"directories": ["/var/lib/secret"], "files": ["/etc/shadow"]}"#);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(std::fs::read_dir(&t.outside).unwrap().count(), 0, "nothing created outside");
        assert!(t.mounts().is_empty(), "{:?}", t.mounts());
        assert!(!t.exists("/var/lib/secret"));
    });
}

#[test]
fn a_bad_config_exits_2_and_changes_nothing() {
    in_namespace("a_bad_config_exits_2_and_changes_nothing", |t| {
        persist(t);
        t.write("/persist/etc/machine-id", "abc\n");
        let before = t.snapshot();
        let cases = [
            (
                config(r#"{"directories": ["/a", "/b", "/c", {"directory": "/d", "mode": "rwx"}]}"#),
                "persistence./persist.directories[3].mode: expected an octal string like \"0755\"",
            ),
            (
                config(r#"{"directories": ["/var/log"], "files": ["/var/log"]}"#),
                "persistence./persist.files[0]: /var/log is already persisted by persistence./persist.directories[0]",
            ),
            (
                config(r#"{"directories": ["/etc/../../x"]}"#),
                "persistence./persist.directories[0].directory: expected a path without `..`",
            ),
            (config(r#"{"dirs": []}"#), "persistence./persist.dirs: unknown field `dirs`"),
            (r#"{"version": 2}"#.to_owned(), "version: unsupported config version 2"),
            (
                r#"{"version": 1, "persistence": {"/persist": {"directories": ["/persist/x"]}}}"#.to_owned(),
                "overlaps",
            ),
            ("{not json".to_owned(), "key must be a string"),
        ];
        for (json, want) in cases {
            let o = t.run(&json, &["apply"]);
            assert_eq!(o.status.code(), Some(2), "{json}: {}", stderr(&o));
            assert!(stderr(&o).contains(want), "{json}: want {want:?} in {}", stderr(&o));
            assert_eq!(t.snapshot(), before, "{json} changed the tree");
        }
    });
}

#[test]
fn an_unresolvable_owner_fails_only_its_entry() {
    in_namespace("an_unresolvable_owner_fails_only_its_entry", |t| {
        persist(t);
        let json =
            config(r#"{"directories": [{"directory": "/var/lib/ghost", "user": "ghost"}, "/var/log"]}"#);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("unknown user \"ghost\""), "{}", stderr(&o));
        assert!(!t.exists("/persist/var/lib/ghost"), "never created with a guessed owner");
        assert!(t.mounts().contains_key("/var/log"));
        // Once it exists on the persistent side, its owner no longer matters.
        t.mkdir_owned("/persist/var/lib/ghost", 4242, 4242, 0o750);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.owner_mode("/var/lib/ghost"), (4242, 4242, 0o750));
    });
}

#[test]
fn owners_resolve_from_the_roots_passwd_then_nixos_uid_map() {
    in_namespace("owners_resolve_from_the_roots_passwd_then_nixos_uid_map", |t| {
        persist(t);
        t.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n");
        t.write("/etc/group", "root:x:0:\nbob:x:1001:\n");
        t.write("/persist/var/lib/nixos/uid-map", r#"{"carol": 1002}"#);
        t.write("/persist/var/lib/nixos/gid-map", r#"{"carol": 1003}"#);
        let json = r#"{"version": 1, "persistence": {"/persist": {
            "directories": [{"directory": "/srv/bob", "user": "bob", "group": "bob"},
                            {"directory": "/srv/carol", "user": "carol", "group": "carol"}],
            "users": {"bob": {"directories": ["Music"]}}}}}"#;
        let o = t.run(json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.owner_mode("/srv/bob"), (1001, 1001, 0o755));
        assert_eq!(t.owner_mode("/srv/carol"), (1002, 1003, 0o755));
        assert_eq!(t.owner_mode("/home/bob"), (1001, 1001, 0o700), "the primary group comes from passwd");
    });
}

#[test]
fn a_missing_storage_path_is_refused_not_created() {
    in_namespace("a_missing_storage_path_is_refused_not_created", |t| {
        let o = t.run(&config(r#"{"directories": ["/var/log"]}"#), &[]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("/persist does not exist (is its file system mounted?)"),
            "{}",
            stderr(&o)
        );
        assert!(!t.exists("/persist") && !t.exists("/var/log"));
    });
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    in_namespace("dry_run_prints_the_plan_and_changes_nothing", |t| {
        persist(t);
        t.write("/persist/etc/ssh/key", "k");
        let json = config(
            r#"{"hideMounts": true, "directories": ["/var/log"], "files": ["/etc/ssh/key", "/etc/adjtime", "/etc/machine-id"],
                "users": {"alice": {"group": "users", "directories": [".ssh"]}}}"#,
        );
        let before = t.snapshot();
        let o = t.run(&json, &["--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.snapshot(), before, "dry run changed the tree or the mount table");
        assert!(!t.utab.borrow().exists());
        let plan = stdout(&o);
        for line in [
            "mkdir    /persist/var/log root:root (0:0) 0755",
            "bind     /persist/var/log -> /var/log (x-gvfs-hide)",
            "touch    /etc/ssh/key",
            "bind     /persist/etc/ssh/key -> /etc/ssh/key",
            "symlink  /etc/adjtime -> /persist/etc/adjtime",
            "write    /persist/etc/machine-id \"uninitialized\"",
            "mkdir    /persist/home/alice alice:users (1000:100) 0700",
        ] {
            assert!(plan.contains(line), "missing {line:?} in\n{plan}");
        }
        // The JSON form is the same plan.
        let o = t.run(&json, &["--dry-run", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 5);
        let log = entries.iter().find(|e| e["target"] == "/var/log").unwrap();
        assert_eq!(
            log["steps"][2],
            serde_json::json!({"op": "mkdir", "path": "/persist/var/log",
            "owner": {"uid": 0, "gid": 0, "user": "root", "group": "root"}, "mode": "0755"})
        );
        assert_eq!(
            log["steps"][4],
            serde_json::json!({"op": "bind", "source": "/persist/var/log",
            "target": "/var/log", "options": ["x-gvfs-hide"]})
        );
        assert_eq!(t.snapshot(), before);
        // Then applying does exactly that.
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let targets: Vec<_> = t.mounts().into_keys().collect();
        assert_eq!(targets, ["/etc/machine-id", "/etc/ssh/key", "/home/alice/.ssh", "/var/log"]);
    });
}

#[test]
fn hide_mounts_reach_libmount_after_switch_root() {
    in_namespace("hide_mounts_reach_libmount_after_switch_root", |t| {
        persist(t);
        let json = config(
            r#"{"hideMounts": true, "directories": ["/var/log", {"directory": "/srv", "hideMount": false}]}"#,
        );
        t.utab_at("/run/mount/utab");
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let id = t.mount_ids()["/var/log"];
        assert_eq!(
            t.read("/run/mount/utab"),
            format!(
                "ID={id} SRC=tmpfs TARGET=/var/log ROOT=/persist/var/log BINDSRC=/persist/var/log OPTS=x-gvfs-hide\n"
            )
        );
        // The oracle: util-linux's findmnt, run inside the root as it is
        // after switch_root, merges the option into the mount it belongs to.
        let out = t.after_switch_root("findmnt --mtab -n -o TARGET,OPTIONS --target /var/log; findmnt --mtab -n -o TARGET,OPTIONS --target /srv");
        assert!(out.contains("/var/log") && out.lines().next().unwrap().contains("x-gvfs-hide"), "{out}");
        assert!(!out.lines().nth(1).unwrap().contains("x-gvfs-hide"), "{out}");
    });
}

#[test]
fn check_lists_what_differs_until_applied() {
    in_namespace("check_lists_what_differs_until_applied", |t| {
        persist(t);
        let json = config(r#"{"directories": ["/var/log"], "files": ["/etc/adjtime"]}"#);
        let o = t.run(&json, &["check"]);
        assert_eq!(o.status.code(), Some(1));
        let out = stdout(&o);
        assert!(
            out.contains("/var/log: /var/log is missing") && out.contains("0 of 2 entries in place"),
            "{out}"
        );
        assert_eq!(t.run(&json, &[]).status.code(), Some(0));
        let o = t.run(&json, &["check"]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        assert!(stdout(&o).contains("2 of 2 entries in place"));
    });
}

#[test]
fn audit_lists_what_the_next_boot_erases() {
    in_namespace("audit_lists_what_the_next_boot_erases", |t| {
        persist(t);
        let json = config(r#"{"directories": ["/var/log"], "files": ["/etc/machine-id"]}"#);
        assert_eq!(t.run(&json, &[]).status.code(), Some(0));
        t.write("/etc/adjtime", "0.0 0 0\n");
        t.write("/var/cache/app/a", "aaaa");
        t.write("/var/cache/app/b", "bb");
        t.write("/var/log/kept", "persisted already");
        t.write("/tmp/scratch", "skipped");
        t.symlink("/etc/static-link", std::path::Path::new("/etc/static/foo"));
        let o = t.run(&json, &["audit"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("/etc/adjtime  (8 bytes)"), "{out}");
        assert!(out.contains("/var/cache/  (2 files, 6 bytes)"), "{out}");
        for absent in ["/var/log", "/tmp", "/persist", "/etc/machine-id", "/etc/static-link"] {
            assert!(
                !out.lines()
                    .any(|l| l.starts_with(&format!("{absent} ")) || l.starts_with(&format!("{absent}/"))),
                "{absent} listed:\n{out}"
            );
        }
        assert!(out.contains("environment.persistence.\"/persist\" = {\n  directories = [\n    \"/var/cache\"\n  ];\n  files = [\n    \"/etc/adjtime\"\n  ];\n};"), "{out}");
    });
}

#[test]
fn check_agrees_with_apply_for_a_file_inside_a_bound_directory() {
    in_namespace("check_agrees_with_apply_for_a_file_inside_a_bound_directory", |t| {
        persist(t);
        // The file's source is missing, but its target lies inside the bound
        // /var/lib, so it already is on the persistent side: nothing to do.
        let json = config(r#"{"directories": ["/var/lib"], "files": ["/var/lib/foo"]}"#);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains("0 failed"), "{}", stderr(&o));
        let o = t.run(&json, &["check"]);
        assert_eq!(o.status.code(), Some(0), "check disagrees with apply: {}", stdout(&o));
        assert!(stdout(&o).contains("2 of 2 entries in place"), "{}", stdout(&o));
    });
}

#[test]
fn chown_and_chmod_never_land_on_a_file_swapped_in_after_planning() {
    in_namespace("chown_and_chmod_never_land_on_a_file_swapped_in_after_planning", |t| {
        use persist_bind::{apply, beneath::Root, owner::Ids, plan};
        persist(t);
        t.mkdir_owned("/persist/srv", 33, 33, 0o750);
        t.mkdir_owned("/srv", 0, 0, 0o755);
        t.write("/etc/shadow", "root:secret");
        std::fs::set_permissions(t.p("/etc/shadow"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let json = config(r#"{"directories": ["/srv"]}"#);
        let (doc, entries) = persist_bind::Document::entries_from_slice(json.as_bytes()).unwrap();
        let root = Root::open(&t.root).unwrap();
        let plan = plan::plan(&entries, &Ids::from_config(&doc), &root);
        // Between plan and apply, the directory becomes a hard link to a
        // file the planner never looked at.
        std::fs::remove_dir(t.p("/srv")).unwrap();
        std::fs::hard_link(t.p("/etc/shadow"), t.p("/srv")).unwrap();
        let report = apply::apply(&plan, &root, &apply::UtabTarget::default());
        assert_eq!(report.failed(), 1, "{report:?}");
        let apply::Status::Failed { error } = &report.entries[0].status else { panic!("{report:?}") };
        assert_eq!(error, "/srv: expected a directory, found File");
        assert_eq!(t.owner_mode("/etc/shadow"), (0, 0, 0o600), "chown/chmod followed the swap");
        assert!(t.mounts().is_empty(), "{:?}", t.mounts());
    });
}

#[test]
fn owner_databases_that_are_devices_are_never_opened() {
    in_namespace("owner_databases_that_are_devices_are_never_opened", |t| {
        use persist_bind::{beneath::Root, owner::Ids};
        persist(t);
        t.mkdir("/etc");
        // An unregistered character device: opening it fails with ENXIO, so
        // the error tells whether it was opened.
        let st = std::process::Command::new("mknod").arg(t.p("/etc/passwd")).args(["c", "240", "7"]).status();
        assert!(st.unwrap().success());
        let (doc, _) = persist_bind::Document::entries_from_slice(config("{}").as_bytes()).unwrap();
        let err = Ids::load(&doc, &Root::open(&t.root).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "/etc/passwd: expected a regular file, found Other");
    });
}

#[test]
fn a_system_entry_inside_a_users_home_does_not_take_the_home() {
    in_namespace("a_system_entry_inside_a_users_home_does_not_take_the_home", |t| {
        persist(t);
        // "/home/alice/.cache" sorts before the user's own "Documents".
        let json = config(
            r#"{"directories": ["/home/alice/.cache"],
                "users": {"alice": {"group": "users", "directories": ["Documents"]}}}"#,
        );
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for side in ["", "/persist"] {
            assert_eq!(t.owner_mode(&format!("{side}/home")), (0, 0, 0o755), "{side}/home");
            assert_eq!(t.owner_mode(&format!("{side}/home/alice")), (ALICE, USERS, 0o700), "{side} home");
            assert_eq!(t.owner_mode(&format!("{side}/home/alice/.cache")), (0, 0, 0o755), "{side} .cache");
        }
    });
}

#[test]
fn an_empty_file_where_a_link_belongs_is_named_as_such() {
    in_namespace("an_empty_file_where_a_link_belongs_is_named_as_such", |t| {
        persist(t);
        t.write("/etc/link-me", "");
        t.write("/persist/etc/link-me", "kept");
        let json = config(r#"{"files": [{"file": "/etc/link-me", "method": "symlink"}]}"#);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(
                "/etc/link-me is an empty file where a symlink to /persist/etc/link-me belongs; remove it to link the file"
            ),
            "{err}"
        );
        assert_eq!(t.read("/persist/etc/link-me"), "kept");
    });
}

#[test]
fn a_source_swapped_for_a_symlink_after_planning_is_never_mounted() {
    in_namespace("a_source_swapped_for_a_symlink_after_planning_is_never_mounted", |t| {
        use persist_bind::{apply, beneath::Root, owner::Ids, plan};
        persist(t);
        t.write("/persist/etc/key", "key");
        std::fs::write(t.outside.join("elsewhere"), "outside the root").unwrap();
        let json = config(r#"{"files": ["/etc/key"]}"#);
        let (doc, entries) = persist_bind::Document::entries_from_slice(json.as_bytes()).unwrap();
        let root = Root::open(&t.root).unwrap();
        let plan = plan::plan(&entries, &Ids::from_config(&doc), &root);
        std::fs::remove_file(t.p("/persist/etc/key")).unwrap();
        std::os::unix::fs::symlink(t.outside.join("elsewhere"), t.p("/persist/etc/key")).unwrap();
        let report = apply::apply(&plan, &root, &apply::UtabTarget::default());
        assert_eq!(report.failed(), 1, "{report:?}");
        let apply::Status::Failed { error } = &report.entries[0].status else { panic!("{report:?}") };
        assert_eq!(error, "/persist/etc/key: expected a directory or a file, found Symlink");
        assert!(t.mounts().is_empty(), "{:?}", t.mounts());
        assert_ne!(std::fs::read_to_string(t.p("/etc/key")).ok().as_deref(), Some("outside the root"));
    });
}

#[test]
fn storages_that_disagree_on_a_shared_parent_converge() {
    in_namespace("storages_that_disagree_on_a_shared_parent_converge", |t| {
        persist(t);
        t.mkdir_owned("/persist/srv", 0, 0, 0o755);
        t.mkdir_owned("/persist/var/lib", 0, 0, 0o755);
        t.mkdir_owned("/data/srv", 0, 0, 0o700);
        t.mkdir_owned("/data/var/lib", 0, 0, 0o700);
        let json = r#"{"version": 1, "persistence": {
            "/persist": {"directories": ["/srv/a", "/var/lib"]},
            "/data": {"directories": ["/srv/b", "/var/lib/nixos"]}}}"#;
        let o = t.run(json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // /var/lib is an entry of /persist: another storage's parent never
        // rewrites that persistent directory.
        assert_eq!(t.owner_mode("/persist/var/lib"), (0, 0, 0o755));
        assert_eq!(t.owner_mode("/data/var/lib"), (0, 0, 0o700));
        // The first entry through /srv decides its mode, every time.
        assert_eq!(t.owner_mode("/srv"), (0, 0, 0o755));
        let plan = t.run(json, &["--dry-run"]);
        assert!(stdout(&plan).contains("# 4 entries, 0 steps, 0 errors"), "{}", stdout(&plan));
    });
}

#[test]
fn directories_appear_whole_after_an_interrupted_run() {
    in_namespace("directories_appear_whole_after_an_interrupted_run", |t| {
        persist(t);
        // What a power cut during an earlier mkdir leaves: the private
        // temporary directory, never the final name with the wrong owner.
        t.mkdir_owned("/persist/home/.alice.lethe-new", 0, 0, 0o700);
        let json = config(r#"{"users": {"alice": {"group": "users", "directories": ["Documents"]}}}"#);
        let o = t.run(&json, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(t.owner_mode("/persist/home/alice"), (ALICE, USERS, 0o700));
        assert!(!t.exists("/persist/home/.alice.lethe-new"), "the leftover is cleaned up");
        let names: Vec<_> =
            std::fs::read_dir(t.p("/persist/home/alice")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["Documents"], "no temporary names remain");
    });
}
