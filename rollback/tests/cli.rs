//! The `rollback` command line as a boot runs it: tmpfs roots for real (in a private mount namespace), the switches that keep the old root, config errors, and `diff`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rollback");

/// Runs `script` with `sh` in a private mount namespace (mounts never reach
/// the host). Without root: a failure under CI=true, else `None` (skipped).
fn in_namespace(name: &str, script: &str) -> Option<Output> {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} needs root (CI=true: not skipping)");
        eprintln!("SKIPPED {name}: needs root");
        return None;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-euc", script])
        .env("ROLLBACK", BIN)
        .output()
        .expect("run unshare (util-linux)");
    Some(out)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lethe-rollback-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A swap header page at `dir/swap` whose last 10 bytes are `signature`.
fn swap_header(dir: &Path, signature: &[u8; 10]) -> PathBuf {
    let swap = dir.join("swap");
    let mut page = vec![0u8; 4096];
    page[4086..4096].copy_from_slice(signature);
    fs::write(&swap, &page).unwrap();
    swap
}

fn cmdline(dir: &Path, line: &str) -> PathBuf {
    let p = dir.join("cmdline");
    fs::write(&p, line).unwrap();
    p
}

#[test]
fn tmpfs_mounts_a_fresh_root_with_the_size_and_mode_asked_for() {
    let d = scratch("tmpfs");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let cl = cmdline(&d, "quiet");
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --size 16M --mode 0700 --cmdline {cl}\n\
         findmnt -n -o FSTYPE,OPTIONS --mountpoint {t}\n\
         stat -c 'mode %a' {t}",
        t = target.display(),
        cl = cl.display()
    );
    let Some(out) = in_namespace("tmpfs", &script) else { return };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("mount tmpfs at"), "{stdout}");
    let mnt =
        stdout.lines().find(|l| l.starts_with("tmpfs ")).unwrap_or_else(|| panic!("no tmpfs: {stdout}"));
    assert!(mnt.contains("size=16384k") && mnt.contains("mode=700"), "{mnt}");
    assert!(stdout.contains("mode 700"), "{stdout}");
    // The namespace is gone: nothing of it is left on the host.
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&target.display().to_string()));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn tmpfs_defaults_to_0755_because_a_1777_root_breaks_sshd() {
    let d = scratch("tmpfs-default");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let cl = cmdline(&d, "");
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --cmdline {cl} >/dev/null\nstat -c 'mode %a' {t}",
        t = target.display(),
        cl = cl.display()
    );
    let Some(out) = in_namespace("tmpfs-default", &script) else { return };
    assert!(text(&out.stdout).contains("mode 755"), "{}{}", text(&out.stdout), text(&out.stderr));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn dry_run_prints_the_plan_and_mounts_nothing() {
    let d = scratch("dry");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --size 1G --dry-run\n\
         if findmnt --mountpoint {t} >/dev/null; then echo MOUNTED; fi",
        t = target.display()
    );
    let Some(out) = in_namespace("dry", &script) else { return };
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("plan for tmpfs at") && stdout.contains("mode=0755,size=1G"), "{stdout}");
    assert!(!stdout.contains("MOUNTED"), "{stdout}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn lethe_rollback_0_keeps_the_old_root_and_exits_0() {
    let d = scratch("off");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let cl = cmdline(&d, "root=x lethe.rollback=0 quiet");
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --cmdline {cl}\n\
         if findmnt --mountpoint {t} >/dev/null; then echo MOUNTED; fi",
        t = target.display(),
        cl = cl.display()
    );
    let Some(out) = in_namespace("off", &script) else { return };
    assert!(out.status.success(), "exit 0 so the boot goes on");
    assert!(
        text(&out.stderr).contains("WARNING: keeping the old root: lethe.rollback=0"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("MOUNTED"));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_hibernation_image_on_the_resume_device_keeps_the_old_root() {
    let d = scratch("hibernate");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    // A swap header page whose signature the kernel replaced with its image's.
    let swap = swap_header(&d, b"S1SUSPEND\0");
    let cl = cmdline(&d, &format!("resume={}", swap.display()));
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --cmdline {cl}\n\
         if findmnt --mountpoint {t} >/dev/null; then echo MOUNTED; fi",
        t = target.display(),
        cl = cl.display()
    );
    let Some(out) = in_namespace("hibernate", &script) else { return };
    let stderr = text(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("keeping the old root") && stderr.contains("swsusp hibernation image"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("MOUNTED"));

    // The same device with a plain swap signature: the rollback happens.
    swap_header(&d, b"SWAPSPACE2");
    let Some(out) = in_namespace("hibernate", &script) else { return };
    assert!(text(&out.stdout).contains("MOUNTED"), "{}{}", text(&out.stdout), text(&out.stderr));
    fs::remove_dir_all(&d).unwrap();
}

/// "Touch nothing" holds for a dry run too: a BTRFS plan mounts the file system to read it,
/// and a mount under a hibernated system can write to it (log replay).
#[test]
fn a_dry_run_under_a_hibernation_image_keeps_the_old_root_too() {
    let d = scratch("hibernate-dry");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let swap = swap_header(&d, b"S1SUSPEND\0");
    let cl = cmdline(&d, &format!("resume={}", swap.display()));
    let out = Command::new(BIN)
        .args(["tmpfs", "--dry-run", "--target"])
        .arg(&target)
        .arg("--cmdline")
        .arg(&cl)
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("keeping the old root") && stderr.contains("hibernation image"), "{stderr}");
    assert!(!stdout.contains("plan for"), "{stdout}");

    // lethe.rollback=0 only keeps a real run: a dry run still shows the plan.
    let cl = cmdline(&d, "lethe.rollback=0");
    let out = Command::new(BIN)
        .args(["tmpfs", "--dry-run", "--target"])
        .arg(&target)
        .arg("--cmdline")
        .arg(&cl)
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("plan for tmpfs"), "{}{}", text(&out.stdout), text(&out.stderr));
    fs::remove_dir_all(&d).unwrap();
}

/// With --json every outcome is one JSON document on stdout, the kept ones included: here the
/// config's btrfs device, which does not appear (after the 10 s wait).
#[test]
fn json_says_the_old_root_is_kept_when_the_configs_device_is_missing() {
    let d = scratch("json-kept");
    let cfg = d.join("config.json");
    fs::write(
        &cfg,
        r#"{"version": 1, "rollback": {"btrfs": {"device": "/dev/lethe-test-no-such-device",
            "subvolume": "@root", "blank": "@blank"}}}"#,
    )
    .unwrap();
    let cl = cmdline(&d, "");
    let out =
        Command::new(BIN).arg("--config").arg(&cfg).arg("--cmdline").arg(&cl).arg("--json").output().unwrap();
    assert!(out.status.success(), "exit 0 so the boot goes on: {}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", text(&out.stdout)));
    assert_eq!(json["outcome"], "kept");
    let reason = json["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("/dev/lethe-test-no-such-device"), "{reason}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_config_section_is_run_and_its_errors_name_the_json_path() {
    let d = scratch("config");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let cfg = d.join("config.json");
    fs::write(&cfg, r#"{"version": 1, "rollback": {"tmpfs": {"size": "64M"}}, "persistence": {}}"#).unwrap();
    let cl = cmdline(&d, "");
    let script = format!(
        "\"$ROLLBACK\" --config {c} --root {t} --cmdline {cl} >/dev/null\n\
         findmnt -n -o FSTYPE,OPTIONS --mountpoint {t}",
        c = cfg.display(),
        t = target.display(),
        cl = cl.display()
    );
    let Some(out) = in_namespace("config", &script) else { return };
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("tmpfs ") && stdout.contains("size=65536k"), "{stdout}{}", text(&out.stderr));

    fs::write(&cfg, r#"{"version": 1, "rollback": {"zfs": {"dataset": "rpool"}}}"#).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad config changes nothing and says so");
    assert!(text(&out.stderr).contains("rollback.zfs.dataset: "), "{}", text(&out.stderr));

    fs::write(&cfg, r#"{"version": 1}"#).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&cfg).output().unwrap();
    assert!(out.status.success(), "no rollback section: nothing to do");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn diff_of_a_tmpfs_root_lists_what_is_not_mounted_from_elsewhere() {
    let d = scratch("diff");
    let root = d.join("root");
    let persist = d.join("persist");
    for p in [root.join("etc"), root.join("var/lib/app"), root.join("home/alice"), persist.clone()] {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(root.join("etc/machine-id"), "x").unwrap();
    fs::write(root.join("var/lib/app/state"), "x").unwrap();
    fs::write(persist.join("kept"), "x").unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    // The root as given, and through a symlink: mounts are found either way.
    for given in [&root, &link] {
        let script = format!(
            "mount --bind {p} {r}/home/alice\n\"$ROLLBACK\" diff tmpfs --root {g}",
            p = persist.display(),
            r = root.display(),
            g = given.display()
        );
        let Some(out) = in_namespace("diff", &script) else { return };
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        let listed: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
        // alice's home is a bind mount of persisted state: not listed, not counted.
        assert_eq!(listed, ["+ /etc/ (1 entry)", "+ /home/", "+ /var/ (3 entries)"], "{given:?}: {stdout}");
    }
    fs::remove_dir_all(&d).unwrap();
}

/// Whether `rollback tmpfs` keeps the old root under the kernel command line `line` (bytes, as
/// /proc/cmdline is), and what it warned.
fn keeps_the_old_root(name: &str, line: &[u8]) -> (bool, String) {
    let d = scratch(name);
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let cl = d.join("cmdline");
    fs::write(&cl, line).unwrap();
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --cmdline {cl} >/dev/null\n\
         if findmnt --mountpoint {t} >/dev/null; then echo MOUNTED; fi",
        t = target.display(),
        cl = cl.display()
    );
    let out = in_namespace(name, &script).expect("needs root");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "exit 0 either way: {stderr}");
    let kept = !text(&out.stdout).contains("MOUNTED");
    // Whatever rollback decides, stage 1 (`initrd-tool init`) decides the same.
    assert_eq!(kept, !rollback::cmdline::Cmdline::parse_bytes(line).rollback, "{line:?}: {stderr}");
    fs::remove_dir_all(&d).unwrap();
    (kept, stderr)
}

#[test]
fn a_byte_that_is_not_utf8_does_not_hide_lethe_rollback_0() {
    let (kept, stderr) = keeps_the_old_root("not-utf8", b"quiet vga=\xff\xfe lethe.rollback=0");
    assert!(kept && stderr.contains("keeping the old root: lethe.rollback=0"), "{stderr}");
    // 0xA0 is a space to the kernel, and not UTF-8 on its own.
    assert!(keeps_the_old_root("nbsp", b"quiet\xa0lethe.rollback=0").0);
}

#[test]
fn a_quoted_lethe_rollback_0_keeps_the_old_root() {
    assert!(keeps_the_old_root("quoted", br#"quiet "lethe.rollback=0""#).0);
}

#[test]
fn lethe_rollback_0_after_dashdash_is_inits_argument_not_the_kernels() {
    assert!(!keeps_the_old_root("dashdash", b"init=/init -- lethe.rollback=0").0);
}

#[test]
fn a_bare_lethe_rollback_after_lethe_rollback_0_turns_it_back_on_as_init_decides() {
    assert!(!keeps_the_old_root("bare", b"lethe.rollback=0 lethe.rollback").0);
}

#[test]
fn a_kernel_command_line_that_cannot_be_read_keeps_the_old_root() {
    let d = scratch("unreadable");
    let target = d.join("sysroot");
    fs::create_dir(&target).unwrap();
    let script = format!(
        "\"$ROLLBACK\" tmpfs --target {t} --cmdline {d}/no-such-cmdline\n\
         if findmnt --mountpoint {t} >/dev/null; then echo MOUNTED; fi",
        t = target.display(),
        d = d.display()
    );
    let out = in_namespace("unreadable", &script).expect("needs root");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "exit 0 so the boot goes on: {stderr}");
    assert!(
        stderr.contains("WARNING: keeping the old root: cannot read the kernel command line"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("MOUNTED"));
    fs::remove_dir_all(&d).unwrap();
}

/// A file name that is not UTF-8 (or holds a backslash) comes out of `diff --json` escaped:
/// `\xNN` for a byte that is not UTF-8, `\\` for a backslash; never an empty document.
#[test]
fn diff_json_escapes_file_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let d = scratch("diff-json");
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), "x").unwrap();
    fs::write(root.join(r"back\slash"), "x").unwrap();
    let out = Command::new(BIN).args(["diff", "--json", "tmpfs", "--root"]).arg(&root).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", text(&out.stdout)));
    let mut paths: Vec<&str> = json.as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, [r"back\\slash", r"caf\xe9"]);
    fs::remove_dir_all(&d).unwrap();
}
