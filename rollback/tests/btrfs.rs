//! The BTRFS rollback against the real kernel: loop devices, mkfs.btrfs, and the `btrfs` CLI as the oracle.
//!
//! Needs root; without it (or without loop devices) each test is skipped, or
//! fails under CI=true.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Fs, Loop, Scratch, missing_capability, run, tool, unavailable};
use rollback::btrfs::{self, Error, Hooks, Options, Step};
use rollback::config::{OldRoots, SubvolPath};
use rollback::{Mode, Outcome};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn p(s: &str) -> SubvolPath {
    SubvolPath::parse(s).unwrap()
}

/// The usual layout: `root` and its read-only snapshot `blank` taken while
/// `root` was nearly empty, then state written into `root` (files and
/// subvolumes three deep), and siblings that must survive.
fn machine(test: &str) -> Option<Fs> {
    let fs = Fs::new(test, 256)?;
    fs.subvolume_create("root");
    fs.write("root/etc/hostname", "blank\n");
    std::fs::create_dir(fs.path("root/home")).unwrap();
    fs.snapshot_ro("root", "blank");
    dirty(&fs, "first boot");
    fs.subvolume_create("persist");
    fs.write("persist/etc/ssh/ssh_host_ed25519_key", "secret\n");
    fs.subvolume_create("nix");
    fs.write("nix/store/abc-hello/bin/hello", "#!hello\n");
    // Names a prefix match (`btrfs subvolume list -o` guesswork) would confuse with the root's.
    fs.subvolume_create("root-data");
    fs.write("root-data/keep", "keep\n");
    fs.write("rootx/keep", "keep\n");
    Some(fs)
}

/// What a boot leaves in the root: files, and subvolumes nested three deep.
fn dirty(fs: &Fs, marker: &str) {
    fs.write("root/marker", marker);
    fs.write("root/etc/hostname", "changed\n");
    fs.write("root/var/log/messages", "lots\n");
    if !fs.path("root/var/lib/machines").exists() {
        fs.subvolume_create("root/var/lib/machines");
        fs.subvolume_create("root/var/lib/machines/a");
        fs.write("root/var/lib/machines/a/dir/file", "nested\n");
        fs.subvolume_create("root/var/lib/machines/a/dir/b");
        fs.write("root/var/lib/machines/a/dir/b/file", "deepest\n");
    }
}

fn opts(fs: &Fs) -> Options {
    Options { device: fs.lo.dev.clone(), subvolume: p("root"), blank: p("blank"), old_roots: None }
}

fn with_old_roots(fs: &Fs, keep_days: u32, keep_at_least: u32) -> Options {
    Options { old_roots: Some(OldRoots { path: p("old_roots"), keep_days, keep_at_least }), ..opts(fs) }
}

fn reset(o: &Options) -> Vec<Step> {
    match btrfs::rollback(o, Mode::Apply).expect("rollback") {
        Outcome::Reset(steps) => steps,
        other => panic!("expected a reset, got {other:?}"),
    }
}

fn reset_at(o: &Options, now: SystemTime) -> Vec<Step> {
    match btrfs::rollback_with(o, Mode::Apply, &Hooks { now: Some(now), ..Hooks::default() })
        .expect("rollback")
    {
        Outcome::Reset(steps) => steps,
        other => panic!("expected a reset, got {other:?}"),
    }
}

fn planned(o: &Options) -> Vec<Step> {
    match btrfs::rollback(o, Mode::DryRun).expect("dry run") {
        Outcome::Planned(steps) => steps,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn kept(o: &Options) -> String {
    match btrfs::rollback(o, Mode::Apply).expect("rollback") {
        Outcome::Kept(k) => k.reason,
        other => panic!("expected the old root kept, got {other:?}"),
    }
}

/// Everything observable about the file system: each subvolume's id and content.
fn snapshot_of(fs: &Fs) -> BTreeMap<String, (u64, BTreeMap<String, String>)> {
    let mut all: BTreeMap<_, _> =
        fs.subvolumes().into_iter().map(|(path, id)| (path.clone(), (id, fs.tree(&path)))).collect();
    all.insert("<top>".into(), (5, fs.tree("")));
    all
}

/// No `.lethe-*` temporaries anywhere in the top level.
fn no_temporaries(fs: &Fs) {
    let left: Vec<String> = fs.names("").into_iter().filter(|n| n.contains(".lethe-")).collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

#[test]
fn nested_subvolumes_three_deep_under_the_root_are_gone_afterwards() {
    let Some(mut fs) = machine("nested") else { return };
    let before = fs.subvolumes();
    let nested: Vec<u64> =
        before.iter().filter(|(path, _)| path.starts_with("root/")).map(|(_, id)| *id).collect();
    assert_eq!(nested.len(), 3, "{before:?}");
    let old_root = before["root"];

    fs.unmount(); // as at boot: nobody has the file system mounted
    let steps = reset(&opts(&fs));
    fs.mount();

    // Deleted by id, deepest first, then the old root itself.
    let deleted: Vec<u64> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut deepest_first = nested.clone();
    deepest_first.sort_by_key(|id| std::cmp::Reverse(before.iter().find(|(_, i)| *i == id).unwrap().0.len()));
    assert_eq!(deleted, [deepest_first, vec![old_root]].concat());
    let after = fs.subvolumes();
    for id in deleted {
        assert!(!after.values().any(|&i| i == id), "subvolume {id} still listed: {after:?}");
    }
    assert!(!after.keys().any(|p| p.starts_with("root/")), "{after:?}");
    assert!(!fs.path("root/var/lib/machines").exists());
    no_temporaries(&fs);
}

#[test]
fn files_in_the_root_are_gone_and_everything_outside_it_is_untouched() {
    let Some(fs) = machine("outside") else { return };
    let outside = |fs: &Fs| {
        let mut s = snapshot_of(fs);
        s.retain(|k, _| k != "<top>" && k != "root" && !k.starts_with("root/"));
        s
    };
    let before = outside(&fs);
    assert!(before.contains_key("persist") && before.contains_key("nix") && before.contains_key("root-data"));

    reset(&opts(&fs));

    assert_eq!(outside(&fs), before);
    assert_eq!(fs.tree("rootx"), BTreeMap::from([("keep".into(), "file 644 keep\n".into())]));
    assert!(!fs.path("root/marker").exists());
    assert!(!fs.path("root/var").exists());
}

#[test]
fn the_new_root_equals_the_blank_snapshot_and_is_a_writable_subvolume() {
    let Some(fs) = machine("equals") else { return };
    reset(&opts(&fs));
    assert_eq!(fs.tree("root"), fs.tree("blank"));
    assert_eq!(fs.tree("root")["etc/hostname"], "file 644 blank\n");
    assert!(fs.is_subvolume("root"));
    assert!(!fs.readonly("root"));
    let show = fs.show("root");
    assert_eq!(show["Parent UUID"], fs.show("blank")["UUID"], "the root is a snapshot of the blank");
}

#[test]
fn the_blank_stays_read_only_and_unchanged() {
    let Some(fs) = machine("blank") else { return };
    let content = fs.tree("blank");
    let show = fs.show("blank");
    for i in 0..3 {
        dirty(&fs, &format!("boot {i}"));
        reset(&opts(&fs));
    }
    assert!(fs.readonly("blank"));
    assert_eq!(fs.tree("blank"), content);
    let after = fs.show("blank");
    for key in ["Subvolume ID", "Gen at creation", "Creation time", "Flags", "UUID", "Parent UUID"] {
        assert_eq!(after[key], show[key], "{key} of the blank changed");
    }
    // Its generation moves with every snapshot taken of it (the kernel copies its
    // root node; `btrfs subvolume snapshot` does the same), but no file in it changed.
    let since: u64 = show["Generation"].parse::<u64>().unwrap() + 1;
    let changed =
        run(tool("btrfs").args(["subvolume", "find-new"]).arg(fs.path("blank")).arg(since.to_string()));
    assert!(changed.lines().all(|l| l.starts_with("transid marker")), "{changed}");
}

#[test]
fn two_rollbacks_in_the_same_second_keep_two_distinct_old_roots() {
    let Some(fs) = machine("same-second") else { return };
    let o = with_old_roots(&fs, 30, 5);
    let now = SystemTime::now();
    reset_at(&o, now);
    dirty(&fs, "second boot");
    reset_at(&o, now);

    let names = fs.names("old_roots");
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], format!("{}-2", names[0]));
    assert!(names[0].ends_with('Z') && names[0].contains('T'), "{names:?}");
    let markers: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(fs.path(&format!("old_roots/{n}/marker"))).unwrap())
        .collect();
    assert_eq!(markers, ["first boot", "second boot"]);
    for n in &names {
        assert!(fs.is_subvolume(&format!("old_roots/{n}")));
    }
    // Old roots keep their nested subvolumes.
    assert!(fs.is_subvolume(&format!("old_roots/{}/var/lib/machines/a/dir/b", names[0])));
}

#[test]
fn pruning_never_drops_the_newest_k_and_drops_the_old_ones() {
    let Some(fs) = machine("prune") else { return };
    let keep_all = with_old_roots(&fs, 3650, 1);
    // Three old roots created before `split`: the first boot's root and those of boots 1 and 2.
    for i in 1..=3 {
        reset(&keep_all);
        dirty(&fs, &format!("boot {i}"));
    }
    // Kernel creation times have a resolution of a second or better: leave a clear gap.
    std::thread::sleep(Duration::from_millis(1100));
    let split = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    reset(&keep_all); // retires boot 3's root, created before the split
    dirty(&fs, "boot 4");
    reset(&keep_all); // retires boot 4's root, created after
    dirty(&fs, "boot 5");
    assert_eq!(fs.names("old_roots").len(), 5);
    let listed_before = fs.subvolumes();

    // 30 days after the split: what was created before it is old, what after is young.
    let steps = reset_at(&with_old_roots(&fs, 30, 1), split + 30 * DAY);
    let markers = |fs: &Fs| -> Vec<String> {
        let mut m: Vec<String> = fs
            .names("old_roots")
            .iter()
            .map(|n| std::fs::read_to_string(fs.path(&format!("old_roots/{n}/marker"))).unwrap())
            .collect();
        m.sort();
        m
    };
    assert_eq!(markers(&fs), ["boot 4", "boot 5"]);
    let pruned =
        steps.iter().filter(|s| matches!(s, Step::Delete { why: btrfs::Why::Pruned { .. }, .. })).count();
    assert_eq!(pruned, 4, "{steps:#?}");
    // Their nested subvolumes went with them, by id; nothing else did.
    let after = fs.subvolumes();
    let gone: Vec<&String> =
        listed_before.iter().filter(|(_, id)| !after.values().any(|i| i == *id)).map(|(p, _)| p).collect();
    // Four old roots with three nested subvolumes each.
    assert_eq!(gone.len(), 4 * 4, "{gone:?}");
    assert!(gone.iter().all(|p| p.starts_with("old_roots/")), "{gone:?}");

    // Years later, everything is old: exactly the newest 2 stay (the root retired now and boot 5's).
    dirty(&fs, "boot 6");
    reset_at(&with_old_roots(&fs, 30, 2), split + 3650 * DAY);
    assert_eq!(markers(&fs), ["boot 5", "boot 6"]);
}

#[test]
fn a_plain_directory_inside_old_roots_is_never_deleted() {
    let Some(fs) = machine("plain-dir") else { return };
    fs.write("old_roots/notes/readme", "mine\n");
    fs.write("old_roots/file", "mine too\n");
    fs.subvolume_create("old_roots/plain-parent");
    std::fs::create_dir_all(fs.path("old_roots/plain-parent/dir")).unwrap();
    let o = with_old_roots(&fs, 0, 1); // prune everything prunable
    for i in 0..3 {
        dirty(&fs, &format!("boot {i}"));
        reset_at(&o, SystemTime::now() + 10 * DAY);
    }
    assert_eq!(fs.tree("old_roots/notes"), BTreeMap::from([("readme".into(), "file 644 mine\n".into())]));
    assert_eq!(std::fs::read_to_string(fs.path("old_roots/file")).unwrap(), "mine too\n");
    // Subvolumes directly in old roots are candidates: only the newest one is left.
    let subvols: Vec<String> =
        fs.names("old_roots").into_iter().filter(|n| fs.is_subvolume(&format!("old_roots/{n}"))).collect();
    assert_eq!(subvols.len(), 1, "{subvols:?}");
}

/// Stops a rollback after each step in turn (as a power cut would: a cut
/// mid-transaction loses that transaction and looks like a stop one step
/// earlier), checks the machine could still boot, then runs a whole rollback.
fn stop_after_each_step(fs: &Fs, old_roots: bool) {
    // A new old-roots directory each round, so that creating it is among the steps cut after.
    let options = |n: usize| {
        let o = opts(fs);
        match old_roots {
            false => o,
            true => Options {
                old_roots: Some(OldRoots {
                    path: p(&format!("old_roots/{n}")),
                    keep_days: 3650,
                    keep_at_least: 1,
                }),
                ..o
            },
        }
    };
    let len = planned(&options(0)).len();
    assert!(len >= if old_roots { 5 } else { 8 }, "{len}");
    for n in 0..=len {
        let o = &options(n);
        dirty(fs, &format!("cut after {n}"));
        let old_root = fs.subvolumes()["root"];
        assert_eq!(planned(o).len(), len);
        let done = match btrfs::rollback_stopping_after(o, n).expect("partial rollback") {
            Outcome::Reset(steps) => steps,
            other => panic!("{other:?}"),
        };
        assert_eq!(done.len(), n);
        // Bootable: a complete root, or a complete new root the next run moves in.
        assert!(
            fs.is_subvolume("root") || fs.tree("root.lethe-new") == fs.tree("blank"),
            "after {n} steps: {:?}",
            fs.names("")
        );

        let again = reset(o);
        assert!(!again.is_empty());
        assert_eq!(fs.tree("root"), fs.tree("blank"), "after {n} steps and a rerun");
        no_temporaries(fs);
        let listed = fs.subvolumes();
        assert!(!listed.keys().any(|p| p.starts_with("root/")), "after {n}: {listed:?}");
        match &o.old_roots {
            None => {
                assert!(!listed.values().any(|&id| id == old_root), "after {n}: old root {old_root} left")
            }
            Some(dir) => {
                let dir = dir.path.as_str();
                let holding: Vec<String> = fs
                    .names(dir)
                    .into_iter()
                    .filter(|d| {
                        std::fs::read_to_string(fs.path(&format!("{dir}/{d}/marker"))).ok()
                            == Some(format!("cut after {n}"))
                    })
                    .collect();
                assert_eq!(holding.len(), 1, "after {n}: {:?}", fs.names(dir));
                let path = format!("{dir}/{}", holding[0]);
                assert_eq!(listed.get(&path), Some(&old_root), "after {n}");
            }
        }
    }
}

#[test]
fn a_rollback_cut_off_after_any_step_ends_with_a_correct_root_when_run_again() {
    let Some(fs) = machine("cut") else { return };
    stop_after_each_step(&fs, false);
}

#[test]
fn a_rollback_with_old_roots_cut_off_after_any_step_ends_with_a_correct_root_when_run_again() {
    let Some(fs) = machine("cut-old-roots") else { return };
    stop_after_each_step(&fs, true);
}

#[test]
fn an_error_after_the_old_root_moved_aside_puts_it_back() {
    let Some(fs) = machine("restore") else { return };
    let o = opts(&fs);
    let root = fs.tree("root");
    let steps = planned(&o);
    let switch = steps.iter().position(|s| matches!(s, Step::Switch { .. })).unwrap();
    let hooks = Hooks { fail_at: Some(switch), ..Hooks::default() };
    let err = btrfs::rollback_with(&o, Mode::Apply, &hooks).unwrap_err();
    assert!(matches!(err, Error::Restored { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&fs.lo.dev.display().to_string()) && msg.contains("put back at root"), "{msg}");
    assert_eq!(fs.tree("root"), root);
    // The next run clears what the failed one left and resets.
    reset(&o);
    assert_eq!(fs.tree("root"), fs.tree("blank"));
    no_temporaries(&fs);
}

#[test]
fn a_missing_blank_keeps_the_old_root() {
    let Some(fs) = machine("no-blank") else { return };
    let mut o = opts(&fs);
    o.blank = p("no-such-blank");
    let before = snapshot_of(&fs);
    let reason = kept(&o);
    assert!(reason.contains(&fs.lo.dev.display().to_string()), "{reason}");
    assert!(reason.contains("no-such-blank does not exist"), "{reason}");
    assert!(reason.contains("root"), "{reason}");
    assert_eq!(snapshot_of(&fs), before);
}

#[test]
fn a_blank_or_root_that_is_not_what_was_expected_keeps_the_old_root() {
    let Some(fs) = machine("unexpected") else { return };
    fs.subvolume_create("writable-blank");
    fs.write("plain-blank/etc/hostname", "x");
    fs.write("plain-root/etc/hostname", "x");
    std::os::unix::fs::symlink("root", fs.path("link-root")).unwrap();
    let before = snapshot_of(&fs);
    let with = |root: &str, blank: &str| Options { subvolume: p(root), blank: p(blank), ..opts(&fs) };
    assert!(kept(&with("root", "writable-blank")).contains("writable"));
    assert!(kept(&with("root", "plain-blank")).contains("plain-blank is a plain directory, not a subvolume"));
    assert!(
        kept(&with("plain-root", "blank"))
            .contains("plain-root is a plain directory: expected the root subvolume")
    );
    assert!(kept(&with("link-root", "blank")).contains("link-root is a symlink"));
    assert!(kept(&with("no-root", "blank")).contains("no-root does not exist"));
    assert!(kept(&with("root", "root/var/lib/machines")).contains("inside the root"));
    // A stray file where lethe's temporary would go.
    fs.write("root.lethe-new", "not mine");
    let before_with_file = snapshot_of(&fs);
    assert!(kept(&opts(&fs)).contains("root.lethe-new is a regular file"));
    assert_eq!(snapshot_of(&fs), before_with_file);
    std::fs::remove_file(fs.path("root.lethe-new")).unwrap();
    assert_eq!(snapshot_of(&fs), before);
}

#[test]
fn a_dry_run_changes_nothing() {
    let Some(fs) = machine("dry-run") else { return };
    let before = snapshot_of(&fs);
    let o = with_old_roots(&fs, 30, 1);
    let steps = planned(&o);
    let text: Vec<String> = steps.iter().map(Step::to_string).collect();
    assert_eq!(text[0], "create directory old_roots");
    assert_eq!(text[1], "snapshot blank -> root.lethe-new");
    assert!(text[2].starts_with("move root -> old_roots/"), "{text:?}");
    assert_eq!(text[3], "rename root.lethe-new -> root");
    assert_eq!(text[4], "sync");
    assert_eq!(planned(&opts(&fs)).len(), 4 + 4); // three nested and the old root deleted
    assert_eq!(snapshot_of(&fs), before);
    assert!(!fs.path("old_roots").exists());
}

#[test]
fn scanning_both_devices_makes_a_two_device_file_system_ready() {
    const TEST: &str = "scanning_both_devices_makes_a_two_device_file_system_ready";
    if let Some(why) = missing_capability() {
        return unavailable(TEST, &why);
    }
    let scratch = Scratch::new("two-devices");
    let a = Loop::new(&scratch.0.join("a.img"), 256);
    let b = Loop::new(&scratch.0.join("b.img"), 256);
    run(tool("mkfs.btrfs").args(["-f", "-q", "-d", "raid1", "-m", "raid1"]).arg(&a.dev).arg(&b.dev));
    // mkfs registers both: make the kernel forget them, as after a reboot.
    run(tool("btrfs").args(["device", "scan", "--forget"]).arg(&a.dev).arg(&b.dev));

    assert!(!btrfs::devices_ready(&a.dev).unwrap(), "only {} is known", a.dev.display());
    btrfs::scan_device(&a.dev).unwrap();
    assert!(!btrfs::devices_ready(&a.dev).unwrap());
    btrfs::scan_device(&b.dev).unwrap();
    assert!(btrfs::devices_ready(&a.dev).unwrap());
    assert!(btrfs::devices_ready(&b.dev).unwrap());

    // And it mounts without a degraded option.
    let top = scratch.0.join("top");
    std::fs::create_dir(&top).unwrap();
    run(tool("mount").args(["-t", "btrfs"]).arg(&a.dev).arg(&top));
    run(tool("umount").arg(&top));

    let err = btrfs::scan_device(Path::new("/nonexistent/disk")).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/disk: cannot register"), "{err}");
}

#[test]
fn diff_lists_what_the_next_rollback_erases_and_nothing_outside_the_root() {
    let Some(fs) = machine("diff") else { return };
    let o = opts(&fs);
    let before = snapshot_of(&fs);
    let changes: Vec<String> = btrfs::diff(&o).unwrap().iter().map(ToString::to_string).collect();
    assert!(changes.contains(&"+ /marker".to_owned()), "{changes:?}");
    assert!(changes.contains(&"~ /etc/hostname".to_owned()), "{changes:?}");
    assert!(changes.iter().any(|c| c.starts_with("+ /var/")), "{changes:?}");
    assert!(!changes.iter().any(|c| c.contains("ssh_host") || c.contains("hello")), "{changes:?}");
    assert_eq!(snapshot_of(&fs), before, "diff changes nothing");

    reset(&o);
    assert_eq!(btrfs::diff(&o).unwrap(), [], "a fresh root differs in nothing");
    let err = btrfs::diff(&Options { blank: p("gone"), ..o }).unwrap_err();
    assert!(err.to_string().contains("gone does not exist"), "{err}");
}

#[test]
fn old_roots_may_be_a_subvolume_of_their_own() {
    let Some(fs) = machine("old-roots-subvolume") else { return };
    fs.subvolume_create("old_roots");
    reset(&with_old_roots(&fs, 30, 1));
    let names = fs.names("old_roots");
    assert_eq!(names.len(), 1, "{names:?}");
    let old = format!("old_roots/{}", names[0]);
    assert!(fs.is_subvolume(&old));
    assert_eq!(std::fs::read_to_string(fs.path(&format!("{old}/marker"))).unwrap(), "first boot");
    assert_eq!(fs.tree("root"), fs.tree("blank"));
}

#[test]
fn a_device_without_btrfs_is_an_error_naming_it() {
    const TEST: &str = "a_device_without_btrfs_is_an_error_naming_it";
    if let Some(why) = missing_capability() {
        return unavailable(TEST, &why);
    }
    let scratch = Scratch::new("no-fs");
    let lo = Loop::new(&scratch.0.join("empty.img"), 64);
    let o = Options { device: lo.dev.clone(), subvolume: p("root"), blank: p("blank"), old_roots: None };
    let err = btrfs::rollback(&o, Mode::Apply).unwrap_err();
    assert!(matches!(err, Error::Mount { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}: cannot mount the top level", lo.dev.display())), "{msg}");
    assert!(msg.contains("root") && msg.contains("no btrfs"), "{msg}");
}

#[test]
fn configured_paths_that_collide_with_the_temporaries_keep_the_old_root() {
    let Some(fs) = machine("collide") else { return };
    // Old roots kept in a subvolume named like the root's temporary, holding an
    // old root: the leftover cleanup must not take them for its own.
    fs.subvolume_create("root.lethe-old");
    fs.snapshot_ro("root", "root.lethe-old/2024-01-01T00:00:00Z");
    let o = Options {
        old_roots: Some(OldRoots { path: p("root.lethe-old"), keep_days: 30, keep_at_least: 5 }),
        ..opts(&fs)
    };
    let before = snapshot_of(&fs);
    let reason = kept(&o);
    assert!(reason.contains("root.lethe-old") && reason.contains("overlap"), "{reason}");
    assert_eq!(snapshot_of(&fs), before);
    // A blank named like the new root's temporary is never deleted as a leftover.
    fs.snapshot_ro("blank", "root.lethe-new");
    let before = snapshot_of(&fs);
    for blank in ["root.lethe-new", "root.lethe-new/x"] {
        let reason = kept(&Options { blank: p(blank), ..opts(&fs) });
        assert!(reason.contains("root.lethe-new") && reason.contains("overlap"), "{reason}");
    }
    assert_eq!(snapshot_of(&fs), before);
}

#[test]
fn nothing_the_rollback_would_delete_or_move_is_touched_while_mounted() {
    // A running system's root, or a subvolume in it, mounted (the rollback run by
    // hand, or after the root was mounted): deleting it would pull the files from
    // under the running system.
    let Some(fs) = machine("mounted") else { return };
    let o = opts(&fs);
    for subvolume in ["root", "root/var/lib/machines/a"] {
        let m = fs.mount_subvolume(subvolume);
        let before = snapshot_of(&fs);
        for o in [&o, &with_old_roots(&fs, 30, 1)] {
            let reason = kept(o);
            let at = m.at.display().to_string();
            assert!(reason.contains(&format!("{subvolume} (id ")) && reason.contains(&at), "{reason}");
            assert!(reason.starts_with(&fs.lo.dev.display().to_string()), "{reason}");
        }
        assert_eq!(snapshot_of(&fs), before);
        if subvolume != "root" {
            assert_eq!(std::fs::read_to_string(m.at.join("dir/file")).unwrap(), "nested\n");
        }
        // What the next boot would erase is still there to see.
        assert!(btrfs::diff(&o).unwrap().iter().any(|c| c.to_string() == "+ /marker"));
    }
    // Nor an old root due for pruning.
    reset(&with_old_roots(&fs, 3650, 1));
    let old = format!("old_roots/{}", fs.names("old_roots")[0]);
    let m = fs.mount_subvolume(&old);
    let before = snapshot_of(&fs);
    let tomorrow = Hooks { now: Some(SystemTime::now() + DAY), ..Hooks::default() };
    let reason = match btrfs::rollback_with(&with_old_roots(&fs, 0, 1), Mode::Apply, &tomorrow).unwrap() {
        Outcome::Kept(k) => k.reason,
        other => panic!("expected the old root kept, got {other:?}"),
    };
    assert!(reason.contains(&old) && reason.contains(&m.at.display().to_string()), "{reason}");
    assert_eq!(snapshot_of(&fs), before);
    drop(m);
    // Subvolumes outside the root's tree may be mounted anywhere, even inside the root.
    let persist = fs.tree("persist");
    let _m = fs.mount_subvolume("persist");
    std::fs::create_dir(fs.path("root/persist")).unwrap();
    run(tool("mount")
        .args(["-t", "btrfs", "-o", "subvol=persist"])
        .arg(&fs.lo.dev)
        .arg(fs.path("root/persist")));
    reset(&o);
    assert_eq!(fs.tree("root"), fs.tree("blank"));
    assert_eq!(fs.tree("persist"), persist);
}

#[test]
fn the_mount_for_kernels_without_fsmount_resets_too_and_leaves_nothing_behind() {
    let Some(mut fs) = machine("legacy-mount") else { return };
    fs.unmount();
    let hooks = Hooks { legacy_mount: true, ..Hooks::default() };
    let steps = match btrfs::rollback_with(&opts(&fs), Mode::Apply, &hooks).unwrap() {
        Outcome::Reset(steps) => steps,
        other => panic!("expected a reset, got {other:?}"),
    };
    assert!(steps.iter().any(|s| matches!(s, Step::Switch { .. })), "{steps:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dev = fs.lo.dev.display().to_string();
    assert!(!mountinfo.lines().any(|l| l.contains(&format!(" {dev} "))), "{mountinfo}");
    let mine = format!("lethe-btrfs-top.{}.", std::process::id());
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&mine))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    fs.mount();
    assert_eq!(fs.tree("root"), fs.tree("blank"));
    // A device without btrfs is an error naming it, through this mount as well.
    let err = btrfs::rollback_with(&Options { device: "/dev/null".into(), ..opts(&fs) }, Mode::Apply, &hooks)
        .unwrap_err();
    assert!(err.to_string().starts_with("/dev/null: cannot mount the top level"), "{err}");
}

#[test]
fn the_default_subvolume_is_read_from_the_file_system_and_never_retired() {
    let Some(fs) = machine("default") else { return };
    let root = fs.subvolumes()["root"];
    for (what, id) in [("root", root), ("a nested subvolume", fs.subvolumes()["root/var/lib/machines/a"])] {
        run(tool("btrfs").args(["subvolume", "set-default", &id.to_string()]).arg(&fs.top));
        let before = snapshot_of(&fs);
        let reason = kept(&opts(&fs));
        assert!(reason.contains(&format!("subvolume {id} is the file system's default")), "{what}: {reason}");
        assert_eq!(snapshot_of(&fs), before, "{what}");
    }
    // Another default (the blank, say) is no reason to keep the root.
    run(tool("btrfs").args(["subvolume", "set-default"]).arg(fs.path("blank")));
    reset(&opts(&fs));
    assert_eq!(fs.tree("root"), fs.tree("blank"));
}

#[test]
fn an_old_roots_path_that_is_a_symlink_or_a_file_keeps_the_old_root() {
    let Some(fs) = machine("old-roots-kinds") else { return };
    std::fs::create_dir(fs.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink("elsewhere", fs.path("link")).unwrap();
    fs.write("file", "x");
    let with = |path: &str| Options {
        old_roots: Some(OldRoots { path: p(path), keep_days: 30, keep_at_least: 1 }),
        ..opts(&fs)
    };
    let before = snapshot_of(&fs);
    for (path, kind) in [
        ("link", "a symlink"),
        ("file", "a regular file"),
        ("link/old", "below a symlink or a file"),
        ("file/old", "below a symlink or a file"),
    ] {
        let reason = kept(&with(path));
        assert!(
            reason.contains(&format!("the old-roots path {path} is {kind}: expected a directory")),
            "{reason}"
        );
        assert_eq!(snapshot_of(&fs), before, "{path}");
    }
    assert!(fs.names("elsewhere").is_empty());
    // In another subvolume, created as needed.
    reset(&with("persist/old_roots"));
    let names = fs.names("persist/old_roots");
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(
        std::fs::read_to_string(fs.path(&format!("persist/old_roots/{}/marker", names[0]))).unwrap(),
        "first boot"
    );
}

#[test]
fn a_rollback_cut_off_while_pruning_finishes_the_pruning_when_run_again() {
    let Some(fs) = machine("cut-prune") else { return };
    let keep_all = with_old_roots(&fs, 3650, 1);
    for i in 1..=3 {
        reset(&keep_all);
        dirty(&fs, &format!("boot {i}"));
    }
    // Three old roots with three nested subvolumes each; a year on, all but the newest go.
    let o = with_old_roots(&fs, 30, 2);
    let later = Hooks { now: Some(SystemTime::now() + 365 * DAY), ..Hooks::default() };
    let plan = match btrfs::rollback_with(&o, Mode::DryRun, &later).unwrap() {
        Outcome::Planned(steps) => steps,
        other => panic!("{other:?}"),
    };
    let first_prune = plan.iter().position(|s| matches!(s, Step::Delete { .. })).unwrap();
    assert_eq!(plan.len() - first_prune, 2 * 4, "{plan:#?}");
    // Cut off halfway through the second old root's deletion.
    let cut = Hooks { stop_after: Some(first_prune + 6), ..later.clone() };
    btrfs::rollback_with(&o, Mode::Apply, &cut).unwrap();
    let marker = |n: &String| std::fs::read_to_string(fs.path(&format!("old_roots/{n}/marker"))).unwrap();
    let markers: Vec<String> = fs.names("old_roots").iter().map(marker).collect();
    assert_eq!(markers.len(), 3, "{markers:?}");
    assert!(markers.contains(&"boot 3".to_owned()), "the root retired by the cut run: {markers:?}");

    // The next boot retires another root and finishes: the newest two stay, whole.
    dirty(&fs, "boot 4");
    btrfs::rollback_with(&o, Mode::Apply, &later).unwrap();
    let mut markers: Vec<String> = fs.names("old_roots").iter().map(marker).collect();
    markers.sort();
    assert_eq!(markers, ["boot 3", "boot 4"]);
    for n in fs.names("old_roots") {
        assert!(fs.is_subvolume(&format!("old_roots/{n}/var/lib/machines/a/dir/b")), "{n}");
    }
    assert_eq!(fs.tree("root"), fs.tree("blank"));
    no_temporaries(&fs);
}

#[test]
fn a_second_rollback_while_one_runs_keeps_the_root() {
    // Two runs at once (a script and a unit, say) would each take the other's
    // temporaries for leftovers, and could delete the new root by id once it is in place.
    let Some(fs) = machine("concurrent") else { return };
    // Another run holds the lock on the top level (shared by every mount of it).
    let held = std::fs::File::open(&fs.top).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let before = snapshot_of(&fs);
    let reason = kept(&opts(&fs));
    assert!(reason.starts_with(&fs.lo.dev.display().to_string()), "{reason}");
    assert!(reason.contains("another rollback"), "{reason}");
    assert_eq!(snapshot_of(&fs), before);
    // A dry run only reads, and may run alongside.
    assert!(!planned(&opts(&fs)).is_empty());
    drop(held);
    reset(&opts(&fs));
    assert_eq!(fs.tree("root"), fs.tree("blank"));
}
