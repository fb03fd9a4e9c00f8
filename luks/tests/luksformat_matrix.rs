//! Headers made by `cryptsetup luksFormat` over a matrix of versions, KDFs, hashes, ciphers,
//! key and sector sizes, keyslot priorities, key-file slices and detached headers: our volume
//! key equals cryptsetup's, a wrong key is refused, keyslots are tried in cryptsetup's order.

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::scratch_dir;
use luks::unlock::{self, Options, UnlockError, Unlocked};

const PASS: &[u8] = b"matrix passphrase";
const WRONG: &[u8] = b"matrix passphrasf";

/// Runs cryptsetup; `Err` carries its stderr when it fails.
fn cryptsetup<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("cryptsetup")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cryptsetup is needed for this test: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Writes `bytes` to `dir/name` and returns the path (cryptsetup reads key files whole).
fn key_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A 20 MiB image file.
fn image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    File::create(&path).unwrap().set_len(20 << 20).unwrap();
    path
}

/// The hex after "MK dump:" (or "Volume key:") of `luksDump --dump-volume-key`.
fn dumped_key(text: &str) -> Vec<u8> {
    let mut lines = text.lines();
    let first = lines
        .by_ref()
        .find_map(|l| l.split_once("MK dump:").or_else(|| l.split_once("Volume key:")).map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no key dump in:\n{text}"));
    let mut hex = first.to_owned();
    for l in lines.take_while(|l| l.starts_with(char::is_whitespace) && !l.trim().is_empty()) {
        hex.push_str(l);
    }
    hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

/// cryptsetup's volume key for `header_file` opened by the key file `key`, with `extra` options.
fn cryptsetup_key(header_file: &Path, key: &Path, extra: &[&str]) -> Result<Vec<u8>, String> {
    let mut args: Vec<&OsStr> =
        vec!["luksDump".as_ref(), "--dump-volume-key".as_ref(), "--batch-mode".as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--key-file".as_ref(), key.as_os_str(), header_file.as_os_str()]);
    cryptsetup(args).map(|out| dumped_key(&out))
}

/// The keyslot `cryptsetup open --test-passphrase -v` reports for the key file.
fn cryptsetup_keyslot(header_file: &Path, key: &Path, extra: &[&str]) -> Result<u32, String> {
    let mut args: Vec<&OsStr> = vec!["open".as_ref(), "--test-passphrase".as_ref(), "-v".as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--key-file".as_ref(), key.as_os_str(), header_file.as_os_str()]);
    let out = cryptsetup(args)?;
    out.lines()
        .find_map(|l| l.strip_prefix("Key slot ")?.strip_suffix(" unlocked.")?.parse().ok())
        .ok_or_else(|| format!("no \"Key slot N unlocked.\" in:\n{out}"))
}

fn ours(header_file: &Path, secret: &[u8], keyslot: Option<u32>) -> Result<Unlocked, String> {
    let header = luks::header::read_path(header_file).map_err(|e| format!("header: {e}"))?;
    let mut dev = File::open(header_file).unwrap();
    unlock::open(&header, &mut dev, secret, &Options { keyslot }).map_err(|e| match e {
        UnlockError::WrongKey { tried } => format!("WrongKey {{ tried: {tried} }}"),
        e => format!("{e}"),
    })
}

/// Formats an image with `args` and `PASS`, then checks ours against cryptsetup for the right
/// and a wrong passphrase.
fn check_format(dir: &Path, name: &str, args: &[&str]) -> Result<(), String> {
    let img = image(dir, name);
    let pass = key_file(dir, "pass", PASS);
    let mut format: Vec<&OsStr> = vec!["luksFormat".as_ref(), "--batch-mode".as_ref()];
    format.extend(args.iter().map(OsStr::new));
    format.extend(["--key-file".as_ref(), pass.as_os_str(), img.as_os_str()]);
    cryptsetup(format).map_err(|e| format!("luksFormat refused: {e}"))?;
    let theirs = cryptsetup_key(&img, &pass, &[])?;
    let unlocked = ours(&img, PASS, None)?;
    if unlocked.volume_key.as_bytes() != theirs {
        return Err(format!(
            "volume key differs from cryptsetup's ({} vs {} bytes)",
            unlocked.volume_key.len(),
            theirs.len()
        ));
    }
    let wrong = key_file(dir, "wrong", WRONG);
    match (ours(&img, WRONG, None), cryptsetup_key(&img, &wrong, &[])) {
        (Err(e), Err(_)) if e.starts_with("WrongKey") => Ok(()),
        (o, t) => {
            Err(format!("wrong passphrase: ours {:?}, cryptsetup {:?}", o.map(|u| u.keyslot), t.is_ok()))
        }
    }
}

fn run_matrix(name: &str, cases: &[(&str, &[&str])]) {
    let dir = scratch_dir(name);
    let mut failures = Vec::new();
    for (case, args) in cases {
        if let Err(why) = check_format(&dir, &format!("{}.img", case.replace(' ', "_")), args) {
            failures.push(format!("{case} ({}): {why}", args.join(" ")));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const PBKDF2_1000: [&str; 4] = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

fn args(parts: &[&[&'static str]]) -> Vec<&'static str> {
    parts.concat()
}

#[test]
fn luks1_over_hashes_ciphers_and_key_sizes() {
    let v1: &[&str] = &["--type", "luks1"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "sha1 xts 256",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "sha1", "--cipher", "aes-xts-plain64", "--key-size", "256"],
            ]),
        ),
        (
            "sha256 xts 512",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "sha256", "--cipher", "aes-xts-plain64", "--key-size", "512"],
            ]),
        ),
        (
            "sha512 essiv 256",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "sha512", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"],
            ]),
        ),
        (
            "ripemd160 cbc-plain 256",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "ripemd160", "--cipher", "aes-cbc-plain", "--key-size", "256"],
            ]),
        ),
        (
            "whirlpool xts 512",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "whirlpool", "--cipher", "aes-xts-plain64", "--key-size", "512"],
            ]),
        ),
        (
            "sha224 cbc-plain64 128",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "sha224", "--cipher", "aes-cbc-plain64", "--key-size", "128"],
            ]),
        ),
        (
            "sha384 essiv 128",
            args(&[
                v1,
                &PBKDF2_1000,
                &["--hash", "sha384", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "128"],
            ]),
        ),
    ];
    let cases: Vec<(&str, &[&str])> = cases.iter().map(|(n, a)| (*n, a.as_slice())).collect();
    run_matrix("luks1", &cases);
}

#[test]
fn luks2_over_kdfs_hashes_ciphers_key_and_sector_sizes() {
    let v2: &[&str] = &["--type", "luks2"];
    let argon2i: &[&str] = &[
        "--pbkdf",
        "argon2i",
        "--pbkdf-memory",
        "32768",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-parallel",
        "1",
    ];
    let argon2id: &[&str] = &[
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "32768",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-parallel",
        "4",
    ];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "pbkdf2-sha1 xts 256 s512",
            args(&[
                v2,
                &PBKDF2_1000,
                &[
                    "--hash",
                    "sha1",
                    "--cipher",
                    "aes-xts-plain64",
                    "--key-size",
                    "256",
                    "--sector-size",
                    "512",
                ],
            ]),
        ),
        (
            "pbkdf2-sha256 xts 512 s4096",
            args(&[
                v2,
                &PBKDF2_1000,
                &[
                    "--hash",
                    "sha256",
                    "--cipher",
                    "aes-xts-plain64",
                    "--key-size",
                    "512",
                    "--sector-size",
                    "4096",
                ],
            ]),
        ),
        (
            "pbkdf2-sha512 essiv 256 s4096",
            args(&[
                v2,
                &PBKDF2_1000,
                &[
                    "--hash",
                    "sha512",
                    "--cipher",
                    "aes-cbc-essiv:sha256",
                    "--key-size",
                    "256",
                    "--sector-size",
                    "4096",
                ],
            ]),
        ),
        (
            "pbkdf2-whirlpool cbc-plain 256",
            args(&[
                v2,
                &PBKDF2_1000,
                &["--hash", "whirlpool", "--cipher", "aes-cbc-plain", "--key-size", "256"],
            ]),
        ),
        (
            "argon2i xts 512 s512",
            args(&[
                v2,
                argon2i,
                &["--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "512"],
            ]),
        ),
        (
            "argon2i xts 256 s4096",
            args(&[
                v2,
                argon2i,
                &["--cipher", "aes-xts-plain64", "--key-size", "256", "--sector-size", "4096"],
            ]),
        ),
        (
            "argon2id xts 512 s4096",
            args(&[
                v2,
                argon2id,
                &["--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096"],
            ]),
        ),
        (
            "argon2id xts 256 s512",
            args(&[
                v2,
                argon2id,
                &["--cipher", "aes-xts-plain64", "--key-size", "256", "--sector-size", "512"],
            ]),
        ),
        (
            "argon2id essiv 256",
            args(&[v2, argon2id, &["--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"]]),
        ),
        (
            "argon2id cbc-plain 256",
            args(&[v2, argon2id, &["--cipher", "aes-cbc-plain", "--key-size", "256"]]),
        ),
    ];
    let cases: Vec<(&str, &[&str])> = cases.iter().map(|(n, a)| (*n, a.as_slice())).collect();
    run_matrix("luks2", &cases);
}

/// Adds a keyslot opened by `new_key` (authorised by `PASS`), at `slot`.
fn add_key(img: &Path, pass: &Path, new_key: &Path, slot: u32, kdf: &[&str]) {
    let slot = slot.to_string();
    let mut a: Vec<&OsStr> = vec!["luksAddKey".as_ref(), "--batch-mode".as_ref()];
    a.extend(kdf.iter().map(OsStr::new));
    a.extend(["--key-slot".as_ref(), slot.as_ref(), "--key-file".as_ref(), pass.as_os_str()]);
    a.extend([img.as_os_str(), new_key.as_os_str()]);
    cryptsetup(a).unwrap_or_else(|e| panic!("luksAddKey slot {slot}: {e}"));
}

fn set_priority(img: &Path, slot: u32, priority: &str) {
    cryptsetup([
        "config".as_ref(),
        "--priority".as_ref(),
        priority.as_ref(),
        "--key-slot".as_ref(),
        slot.to_string().as_ref(),
        img.as_os_str(),
    ] as [&OsStr; 6])
    .unwrap_or_else(|e| panic!("config --priority {priority} --key-slot {slot}: {e}"));
}

#[test]
fn keyslots_are_tried_in_cryptsetups_order_and_ignore_only_when_named() {
    let dir = scratch_dir("priorities");
    let img = image(&dir, "prio.img");
    let pass = key_file(&dir, "pass", PASS);
    let other = key_file(&dir, "other", b"another passphrase");
    let hidden = key_file(&dir, "hidden", b"hidden passphrase");
    cryptsetup(
        ["luksFormat", "--batch-mode", "--type", "luks2", "--key-size", "256"]
            .iter()
            .map(OsStr::new)
            .chain(PBKDF2_1000.iter().map(OsStr::new))
            .chain([OsStr::new("--key-file"), pass.as_os_str(), img.as_os_str()]),
    )
    .unwrap();
    // Slot 0: PASS. Slot 1: another. Slot 2: PASS again. Slot 3: hidden.
    add_key(&img, &pass, &other, 1, &PBKDF2_1000);
    add_key(&img, &pass, &pass, 2, &PBKDF2_1000);
    add_key(&img, &pass, &hidden, 3, &PBKDF2_1000);
    let theirs = cryptsetup_key(&img, &pass, &[]).unwrap();
    let mut failures = Vec::new();
    let mut expect_slot = |what: &str, secret: &[u8], file: &Path, named: Option<u32>| {
        let named_arg = named.map(|n| n.to_string());
        let extra: Vec<&str> = named_arg.iter().flat_map(|n| ["--key-slot", n.as_str()]).collect();
        let cs = cryptsetup_keyslot(&img, file, &extra);
        match (ours(&img, secret, named), cs) {
            (Ok(u), Ok(slot)) if u.keyslot == slot && u.volume_key.as_bytes() == theirs => {}
            (Err(o), Err(_)) if o.starts_with("WrongKey") => {}
            (o, t) => failures.push(format!("{what}: ours {:?}, cryptsetup {t:?}", o.map(|u| u.keyslot))),
        }
    };
    expect_slot("all normal: lowest id", PASS, &pass, None);
    set_priority(&img, 2, "prefer");
    expect_slot("slot 2 prefer", PASS, &pass, None);
    expect_slot("slot 1 by its own passphrase", b"another passphrase", &other, None);
    set_priority(&img, 2, "normal");
    set_priority(&img, 0, "ignore");
    expect_slot("slot 0 ignore: next one", PASS, &pass, None);
    expect_slot("slot 0 ignore but named", PASS, &pass, Some(0));
    set_priority(&img, 3, "ignore");
    expect_slot("slot 3 ignore: not tried", b"hidden passphrase", &hidden, None);
    expect_slot("slot 3 ignore but named", b"hidden passphrase", &hidden, Some(3));
    expect_slot("named slot with another slot's passphrase", PASS, &pass, Some(1));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn luks1_keyslots_are_tried_in_id_order() {
    let dir = scratch_dir("luks1-slots");
    let img = image(&dir, "l1.img");
    let pass = key_file(&dir, "pass", PASS);
    let other = key_file(&dir, "other", b"slot five");
    let format = ["luksFormat", "--batch-mode", "--type", "luks1", "--key-slot", "3"];
    cryptsetup(format.iter().map(OsStr::new).chain(PBKDF2_1000.iter().map(OsStr::new)).chain([
        OsStr::new("--key-file"),
        pass.as_os_str(),
        img.as_os_str(),
    ]))
    .unwrap();
    add_key(&img, &pass, &other, 5, &PBKDF2_1000);
    add_key(&img, &pass, &pass, 6, &PBKDF2_1000);
    let theirs = cryptsetup_key(&img, &pass, &[]).unwrap();
    for (secret, file) in [(PASS, &pass), (b"slot five".as_slice(), &other)] {
        let u = ours(&img, secret, None).unwrap();
        assert_eq!(u.keyslot, cryptsetup_keyslot(&img, file, &[]).unwrap());
        assert_eq!(u.volume_key.as_bytes(), theirs);
    }
    assert_eq!(ours(&img, PASS, Some(6)).unwrap().keyslot, 6);
    assert_eq!(ours(&img, WRONG, None).unwrap_err(), "WrongKey { tried: 3 }");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_key_file_slice_opens_as_cryptsetup_slices_it() {
    let dir = scratch_dir("keyfile");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let kf = key_file(&dir, "key.bin", &bytes);
    let slice = ["--keyfile-offset", "100", "--keyfile-size", "64"];
    for version in ["luks1", "luks2"] {
        let img = image(&dir, &format!("{version}.img"));
        cryptsetup(
            ["luksFormat", "--batch-mode", "--type", version]
                .iter()
                .chain(&PBKDF2_1000)
                .chain(&slice)
                .map(OsStr::new)
                .chain([OsStr::new("--key-file"), kf.as_os_str(), img.as_os_str()]),
        )
        .unwrap();
        let theirs = cryptsetup_key(&img, &kf, &slice).unwrap();
        // The key-file slicing belongs to the caller: here it is bytes 100..164.
        let u = ours(&img, &bytes[100..164], None).unwrap();
        assert_eq!(u.volume_key.as_bytes(), theirs, "{version}");
        assert_eq!(ours(&img, &bytes[101..165], None).unwrap_err(), "WrongKey { tried: 1 }", "{version}");
        assert_eq!(ours(&img, &bytes, None).unwrap_err(), "WrongKey { tried: 1 }", "{version}");
        let off_by_one = ["--keyfile-offset", "101", "--keyfile-size", "64"];
        assert!(cryptsetup_key(&img, &kf, &off_by_one).is_err(), "{version}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_detached_header_holds_the_keyslots() {
    let dir = scratch_dir("detached");
    let pass = key_file(&dir, "pass", PASS);
    for version in ["luks1", "luks2"] {
        let data = image(&dir, &format!("{version}-data.img"));
        let hdr = dir.join(format!("{version}-hdr.img"));
        File::create(&hdr).unwrap().set_len(16 << 20).unwrap();
        cryptsetup(
            ["luksFormat", "--batch-mode", "--type", version]
                .iter()
                .chain(&PBKDF2_1000)
                .map(OsStr::new)
                .chain([OsStr::new("--header"), hdr.as_os_str(), OsStr::new("--key-file"), pass.as_os_str()])
                .chain([data.as_os_str()]),
        )
        .unwrap();
        // The data device carries no header at all.
        assert!(luks::header::read_path(&data).is_err(), "{version}: data device read as a header");
        let theirs = cryptsetup_key(&hdr, &pass, &[]).unwrap();
        let u = ours(&hdr, PASS, None).unwrap();
        assert_eq!(u.volume_key.as_bytes(), theirs, "{version}");
        assert_eq!(u.segment.offset, 0, "{version}: a detached header's payload starts at 0");
        assert_eq!(ours(&hdr, WRONG, None).unwrap_err(), "WrongKey { tried: 1 }", "{version}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites both LUKS2 metadata copies of `img` with `edit` applied to the JSON, and reseals
/// their SHA-256 checksums: metadata cryptsetup never writes, but reads.
fn edit_luks2_json(img: &Path, edit: impl Fn(&mut serde_json::Value)) {
    use sha2::{Digest, Sha256};
    let mut dev = std::fs::read(img).unwrap();
    let hdr_size = usize::try_from(u64::from_be_bytes(dev[8..16].try_into().unwrap())).unwrap();
    for at in [0, hdr_size] {
        let area = &dev[at + 4096..at + hdr_size];
        let end = area.iter().position(|b| *b == 0).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&area[..end]).unwrap();
        edit(&mut json);
        let mut text = serde_json::to_vec(&json).unwrap();
        text.resize(hdr_size - 4096, 0);
        dev[at + 4096..at + hdr_size].copy_from_slice(&text);
        dev[at + 448..at + 512].fill(0);
        let sum = Sha256::new().chain_update(&dev[at..at + 4096]).chain_update(&text).finalize();
        dev[at + 448..at + 448 + sum.len()].copy_from_slice(&sum);
    }
    std::fs::write(img, dev).unwrap();
}

#[test]
fn edited_luks2_keyslots_open_or_not_as_cryptsetup_decides() {
    let dir = scratch_dir("edited");
    let pass = key_file(&dir, "pass", PASS);
    let format = |name: &str| {
        let img = image(&dir, name);
        cryptsetup(
            ["luksFormat", "--batch-mode", "--type", "luks2", "--key-size", "256"]
                .iter()
                .chain(&PBKDF2_1000)
                .map(OsStr::new)
                .chain([OsStr::new("--key-file"), pass.as_os_str(), img.as_os_str()]),
        )
        .unwrap();
        img
    };
    // cryptsetup merges 4000 stripes whatever `af.stripes` says, and opens this keyslot.
    let img = format("stripes.img");
    let theirs = cryptsetup_key(&img, &pass, &[]).unwrap();
    edit_luks2_json(&img, |j| j["keyslots"]["0"]["af"]["stripes"] = 1.into());
    assert_eq!(cryptsetup_key(&img, &pass, &[]).unwrap(), theirs, "cryptsetup's verdict changed");
    let u = ours(&img, PASS, None).unwrap();
    assert_eq!(u.volume_key.as_bytes(), theirs);
    // A KDF salt other than 32 bytes: cryptsetup fails the keyslot, not as a wrong passphrase.
    let img = format("salt.img");
    edit_luks2_json(&img, |j| j["keyslots"]["0"]["kdf"]["salt"] = "c2FsdA==".into());
    assert!(cryptsetup_key(&img, &pass, &[]).is_err(), "cryptsetup's verdict changed");
    let err = ours(&img, PASS, None).unwrap_err();
    assert_eq!(err, "keyslot 0: a key derivation salt of 4 bytes, not 32");
    let _ = std::fs::remove_dir_all(&dir);
}
