//! `initrd-tool luks` and `initrd-tool unlock` against headers `cryptsetup luksFormat` makes on the host.
//!
//! cryptsetup is the oracle: `luks volume-key` must print what `cryptsetup luksDump
//! --dump-volume-key` prints, `luks open-test` must accept and refuse what `cryptsetup open
//! --test-passphrase` does, with the same exit statuses. Device-mapper is not on this host:
//! the activation itself is tested in the QEMU guests (vm-tests).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_initrd-tool");
const PASS: &str = "correct horse battery staple";

struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("lethe-luks-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Temp(p)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have_cryptsetup() -> bool {
    let ok =
        Command::new("cryptsetup").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok || std::env::var("CI").as_deref() != Ok("true"), "CI=true and cryptsetup is missing");
    if !ok {
        eprintln!("skipped: cryptsetup is missing (scripts/install-deps.sh installs it)");
    }
    ok
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A command that reads no key may exit before taking its stdin: a broken pipe is fine.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().unwrap()
}

/// A 16 MiB image formatted by cryptsetup with a cheap KDF; the passphrase PASS in keyslot 0.
fn format(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let img = dir.join(name);
    std::fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    let out = run(
        Command::new("cryptsetup")
            .args([
                "luksFormat",
                "--batch-mode",
                "--key-file=-",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
            ])
            .args(extra)
            .arg(&img),
        PASS.as_bytes(),
    );
    assert!(out.status.success(), "luksFormat: {}", String::from_utf8_lossy(&out.stderr));
    img
}

/// The volume key as cryptsetup prints it, lower-case hex without spaces.
fn cryptsetup_volume_key(img: &Path, key: &[u8], extra: &[&str]) -> String {
    let out = run(
        Command::new("cryptsetup")
            .args(["luksDump", "--dump-volume-key", "--batch-mode", "--key-file=-"])
            .args(extra)
            .arg(img),
        key,
    );
    assert!(out.status.success(), "luksDump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut hex = String::new();
    let mut in_key = false;
    for line in text.lines() {
        if line.starts_with("MK dump:") {
            in_key = true;
            hex.push_str(line.trim_start_matches("MK dump:"));
        } else if in_key && line.starts_with(char::is_whitespace) {
            hex.push_str(line);
        } else if in_key {
            break;
        }
    }
    hex.split_whitespace().collect::<String>().to_lowercase()
}

fn luks(args: &[&str], stdin: &[u8]) -> Output {
    run(Command::new(BIN).arg("luks").args(args), stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn volume_key_equals_cryptsetups_for_a_passphrase_from_stdin() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("vk");
    for (name, extra) in [("l2.img", &["--type", "luks2"][..]), ("l1.img", &["--type", "luks1"][..])] {
        let img = format(&t.0, name, extra);
        let want = cryptsetup_volume_key(&img, PASS.as_bytes(), &[]);
        assert_eq!(want.len(), 128, "a 512-bit xts key by default");
        // Piped passphrases end at the newline, as cryptsetup reads them.
        let o = luks(&["volume-key", img.to_str().unwrap()], format!("{PASS}\n").as_bytes());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), want, "{name}");
    }
}

#[test]
fn open_test_accepts_and_refuses_as_cryptsetup_does() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("ot");
    let img = format(&t.0, "l2.img", &["--type", "luks2"]);
    let path = img.to_str().unwrap();
    for (pass, want) in [(PASS, 0), ("wrong", 2), ("", 2)] {
        let ours = luks(&["open-test", path], format!("{pass}\n").as_bytes());
        // The same bytes on stdin for both: a piped passphrase is its first line.
        let theirs = run(
            Command::new("cryptsetup").args(["open", "--test-passphrase", path]),
            format!("{pass}\n").as_bytes(),
        );
        assert_eq!(ours.status.code(), Some(want), "{pass:?}: {}", stderr(&ours));
        assert_eq!(ours.status.code(), theirs.status.code(), "{pass:?}: cryptsetup said {}", stderr(&theirs));
        // Nothing secret on the terminal.
        assert!(!stdout(&ours).contains(pass) || pass.is_empty());
        assert!(!stderr(&ours).contains(pass) || pass.is_empty());
    }
}

#[test]
fn key_file_offset_and_size_select_the_same_bytes_as_cryptsetup() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("kf");
    let keyfile = t.0.join("key.bin");
    let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&keyfile, &bytes).unwrap();
    let img = format(&t.0, "kf.img", &["--type", "luks2"]);
    let k = keyfile.to_str().unwrap();
    let add = run(
        Command::new("cryptsetup")
            .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
            .args(["--new-keyfile-offset", "512", "--new-keyfile-size", "4096"])
            .arg(&img)
            .arg(k),
        PASS.as_bytes(),
    );
    assert!(add.status.success(), "luksAddKey: {}", stderr(&add));
    let want = cryptsetup_volume_key(&img, PASS.as_bytes(), &[]);
    let path = img.to_str().unwrap();
    let ok = luks(
        &["volume-key", path, "--key-file", k, "--keyfile-offset", "512", "--keyfile-size", "4096"],
        b"",
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).trim(), want);
    // One byte off either way opens nothing.
    for (off, size) in [("511", "4096"), ("512", "4095")] {
        let o =
            luks(&["open-test", path, "--key-file", k, "--keyfile-offset", off, "--keyfile-size", size], b"");
        assert_eq!(o.status.code(), Some(2), "offset {off} size {size}: {}", stderr(&o));
    }
    // Past the end of the file: an error naming it, not a wrong key.
    let o = luks(&["open-test", path, "--key-file", k, "--keyfile-offset", "9000"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("key.bin"), "{}", stderr(&o));
}

#[test]
fn a_detached_header_is_read_from_its_file() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("dh");
    let hdr = t.0.join("hdr.img");
    std::fs::File::create(&hdr).unwrap().set_len(16 << 20).unwrap();
    let data = format(&t.0, "data.img", &["--type", "luks2", "--header", hdr.to_str().unwrap()]);
    let want = cryptsetup_volume_key(&hdr, PASS.as_bytes(), &[]);
    let o = luks(
        &["volume-key", data.to_str().unwrap(), "--header", hdr.to_str().unwrap()],
        format!("{PASS}\n").as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), want);
    // The data device alone has no header: not a LUKS device, as cryptsetup says (exit 1).
    let o = luks(&["dump", data.to_str().unwrap()], b"");
    let theirs = run(Command::new("cryptsetup").arg("luksDump").arg(&data), b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(o.status.code(), theirs.status.code(), "cryptsetup said {}", stderr(&theirs));
}

#[test]
fn exit_statuses_tell_a_missing_device_from_a_bad_header_as_cryptsetups_do() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("exit");
    let img = format(&t.0, "l2.img", &["--type", "luks2"]);
    let zeros = t.0.join("zeros.img");
    std::fs::File::create(&zeros).unwrap().set_len(16 << 20).unwrap();
    let (img, zeros) = (img.to_str().unwrap(), zeros.to_str().unwrap());
    let missing = t.0.join("missing.img");
    let missing = missing.to_str().unwrap();
    let pass = format!("{PASS}\n");
    let cases: [(&str, &[&str], &[&str], i32); 7] = [
        ("dump of no LUKS device", &["dump", zeros], &["luksDump", zeros], 1),
        ("dump of a missing device", &["dump", missing], &["luksDump", missing], 4),
        ("dump of no block device or file", &["dump", "/dev/null"], &["luksDump", "/dev/null"], 4),
        ("open-test of no LUKS device", &["open-test", zeros], &["open", "--test-passphrase", zeros], 1),
        (
            "open-test of a missing device",
            &["open-test", missing],
            &["open", "--test-passphrase", missing],
            4,
        ),
        (
            "open-test with a header but a missing data device",
            &["open-test", missing, "--header", img],
            &["open", "--test-passphrase", "--header", img, missing],
            4,
        ),
        (
            "volume-key of no LUKS device",
            &["volume-key", zeros],
            &["luksDump", "--dump-volume-key", "--batch-mode", zeros],
            1,
        ),
    ];
    for (what, ours, theirs, want) in cases {
        let o = luks(ours, pass.as_bytes());
        let c = run(Command::new("cryptsetup").args(theirs), pass.as_bytes());
        assert_eq!(c.status.code(), Some(want), "{what}: cryptsetup said {}", stderr(&c));
        assert_eq!(o.status.code(), Some(want), "{what}: {}", stderr(&o));
    }
}

#[test]
fn dump_shows_the_header_and_no_secrets() {
    if !have_cryptsetup() {
        return;
    }
    let t = Temp::new("dump");
    let img = format(&t.0, "d.img", &["--type", "luks2", "--label", "lethe-test", "--sector-size", "4096"]);
    let uuid =
        String::from_utf8(Command::new("cryptsetup").args(["luksUUID"]).arg(&img).output().unwrap().stdout)
            .unwrap();
    let o = luks(&["dump", img.to_str().unwrap(), "--json"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = v.to_string();
    assert!(text.contains(uuid.trim()), "{text}");
    assert!(text.contains("lethe-test"), "{text}");
    assert!(text.contains("4096"), "{text}");
    let vk = cryptsetup_volume_key(&img, PASS.as_bytes(), &[]);
    assert!(!text.to_lowercase().contains(&vk[..16]), "the dump holds key material");
    let o = luks(&["dump", img.to_str().unwrap()], b"");
    assert!(stdout(&o).contains(uuid.trim()), "{}", stdout(&o));
}

#[test]
fn unlock_dry_run_prints_the_plan_without_secrets() {
    let t = Temp::new("plan");
    let cfg = t.0.join("config.json");
    std::fs::write(
        &cfg,
        r#"{"version": 1, "luks": {"devices": {
            "cryptroot": {"device": "UUID=0f1e2d3c-0000-4000-8000-000000000001", "fallbackToPassword": true,
                "keyFile": {"path": "/root.key", "device": "UUID=ABCD-1234", "offset": 512, "size": 4096, "timeout": 5},
                "allowDiscards": true},
            "cryptswap": {"device": "/dev/vdb2", "tries": 5}}}}"#,
    )
    .unwrap();
    let o = run(Command::new(BIN).args(["unlock", "--dry-run", "--config"]).arg(&cfg), b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(
            "cryptroot: open UUID=0f1e2d3c-0000-4000-8000-000000000001 as /dev/mapper/cryptroot"
        ),
        "{out}"
    );
    assert!(
        lines[0].contains(
            "key file /root.key on UUID=ABCD-1234 (waiting up to 5s), offset 512, 4096 bytes, then"
        ),
        "{out}"
    );
    assert!(lines[0].contains("(3 tries)") && lines[0].contains("discards allowed"), "{out}");
    assert!(lines[1].starts_with("cryptswap: open /dev/vdb2 as /dev/mapper/cryptswap"), "{out}");
    assert!(lines[1].contains("(5 tries)"), "{out}");
    // Only the names asked for; an unknown name is an error.
    let o = run(Command::new(BIN).args(["unlock", "--dry-run", "--config"]).arg(&cfg).arg("cryptswap"), b"");
    assert_eq!(stdout(&o).lines().count(), 1);
    let o = run(Command::new(BIN).args(["unlock", "--dry-run", "--config"]).arg(&cfg).arg("nope"), b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no LUKS device \"nope\""), "{}", stderr(&o));
}

#[test]
fn unlock_without_device_mapper_fails_before_asking_for_a_key() {
    if Path::new("/sys/module/dm_mod").exists() {
        eprintln!("skipped: this host has device-mapper (the guests test activation)");
        return;
    }
    let t = Temp::new("nodm");
    let cfg = t.0.join("config.json");
    std::fs::write(&cfg, r#"{"version": 1, "luks": {"devices": {"cryptroot": {"device": "/dev/vdz9"}}}}"#)
        .unwrap();
    let o = run(Command::new(BIN).args(["unlock", "--config"]).arg(&cfg), b"");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cryptroot") && err.contains("/dev/mapper/control"), "{err}");
    assert!(!err.contains("passphrase") && stdout(&o).is_empty(), "asked for a key: {err}");
}
