//! Every line of the cryptsetup corpus manifest gets cryptsetup's header decision: `load`
//! lines load or are refused as the manifest says, and every `unlock` line's header loads.
//! The live oracle (`cryptsetup luksDump` on the same bytes) must agree as well.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ManifestLine, manifest, scratch_dir, unpack};
use luks::header::ReadPathError;
use luks::model::{Header, HeaderCopy, Kdf, SegmentSize};

/// What the manifest expects of the header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Loads from the primary copy, or from the secondary when the primary is damaged.
    Loads,
    /// Loads from the secondary copy only.
    LoadsFromSecondary,
    /// Loads, and names a mandatory requirement.
    LoadsWithRequirement,
    /// Loads, or is refused with an error naming the cipher.
    LoadsOrNamesCipher,
    Refused,
}

fn expectation(l: &ManifestLine) -> Expect {
    match (l.check.as_str(), l.expect.as_str()) {
        // Whatever unlock is to do, its header loads first.
        ("unlock", _) => Expect::Loads,
        ("load", "ok") => Expect::Loads,
        ("load", "ok-from-secondary-header") => Expect::LoadsFromSecondary,
        ("load", "refuse-activation-unknown-requirement") => Expect::LoadsWithRequirement,
        ("load", "ok-or-clear-unsupported-cipher-error") => Expect::LoadsOrNamesCipher,
        ("load", "reject") => Expect::Refused,
        (check, expect) => {
            panic!("MANIFEST.tsv line {}: unknown check {check:?} / expect {expect:?}", l.line)
        }
    }
}

/// Why the result disagrees with the expectation, if it does.
fn judge(expect: Expect, got: &Result<Header, ReadPathError>) -> Option<String> {
    match (expect, got) {
        (Expect::Loads, Ok(_)) => None,
        (Expect::LoadsFromSecondary, Ok(h)) if h.copy == HeaderCopy::Secondary => None,
        (Expect::LoadsFromSecondary, Ok(h)) => Some(format!("loaded from the {:?} copy", h.copy)),
        (Expect::LoadsWithRequirement, Ok(h)) if !h.mandatory_requirements.is_empty() => None,
        (Expect::LoadsWithRequirement, Ok(_)) => Some("loaded without a mandatory requirement".into()),
        (Expect::LoadsOrNamesCipher, Ok(_)) => None,
        (Expect::LoadsOrNamesCipher, Err(ReadPathError::Header { source, .. }))
            if source.to_string().contains("cipher") =>
        {
            None
        }
        (Expect::Refused, Err(e)) if !e.to_string().is_empty() => None,
        (Expect::Refused, Ok(h)) => Some(format!("loaded ({:?}, {} keyslots)", h.version, h.keyslots.len())),
        (_, Err(e)) => Some(format!("refused: {e}")),
    }
}

/// What `cryptsetup luksDump` shows of a header it loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dump {
    version: u32,
    uuid: String,
    /// LUKS2's seqid.
    epoch: Option<u64>,
    keyslots: Vec<u32>,
    /// Offset in bytes and sector size of each data segment.
    segments: Vec<(u64, u32)>,
}

/// Parses the fields of `luksDump`'s text that both LUKS versions show.
fn parse_dump(text: &str) -> Dump {
    let mut d = Dump::default();
    let mut section = "";
    for line in text.lines() {
        let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_owned());
        if let Some(v) = value("Version:") {
            d.version = v.parse().unwrap();
        } else if let Some(v) = value("UUID:") {
            d.uuid = v;
        } else if let Some(v) = value("Epoch:") {
            d.epoch = Some(v.parse().unwrap());
        } else if let Some(v) = value("Payload offset:") {
            d.segments.push((v.parse::<u64>().unwrap() * 512, 512));
        } else if let Some(rest) = line.strip_prefix("Key Slot ") {
            if let Some((n, "ENABLED")) = rest.split_once(": ") {
                d.keyslots.push(n.parse().unwrap());
            }
        } else if !line.starts_with(char::is_whitespace) && line.ends_with(':') {
            section = line;
        } else if let Some((id, _)) = line.strip_prefix("  ").and_then(|l| l.split_once(": ")) {
            match (section, id.parse::<u32>()) {
                ("Keyslots:", Ok(n)) => d.keyslots.push(n),
                ("Data segments:", Ok(_)) => d.segments.push((0, 0)),
                _ => {}
            }
        } else if section == "Data segments:" {
            let field = |name: &str| line.trim().strip_prefix(name).and_then(|v| v.split_whitespace().next());
            if let (Some(last), Some(v)) = (d.segments.last_mut(), field("offset:")) {
                last.0 = v.parse().unwrap();
            }
            if let (Some(last), Some(v)) = (d.segments.last_mut(), field("sector:")) {
                last.1 = v.parse().unwrap();
            }
        }
    }
    d
}

/// Our header as `luksDump` would show it.
fn as_dump(h: &Header) -> Dump {
    Dump {
        version: match h.version {
            luks::model::Version::Luks1 => 1,
            luks::model::Version::Luks2 => 2,
        },
        uuid: h.uuid.clone(),
        epoch: (h.version == luks::model::Version::Luks2).then_some(h.seqid),
        keyslots: h.keyslots.iter().map(|k| k.id).collect(),
        // luksDump shows a sector size for crypt segments only.
        segments: h
            .segments
            .iter()
            .map(|s| (s.offset, if s.kind == luks::model::SegmentKind::Crypt { s.sector_size } else { 0 }))
            .collect(),
    }
}

/// What `cryptsetup luksDump` (the live oracle) makes of the header: `Ok` with its fields,
/// or `Err` with its message. It runs after our read: it may repair a damaged copy in place.
fn cryptsetup_dump(path: &Path) -> Result<Dump, String> {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--batch-mode"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cryptsetup (the oracle) must be installed: {e}"));
    match out.status.success() {
        true => Ok(parse_dump(&String::from_utf8_lossy(&out.stdout))),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

/// Whether our result and cryptsetup's agree; cryptsetup refuses to load a header it would
/// have to repair while blkid sees another signature on the device, which a reader that never
/// repairs has no reason to refuse.
fn oracle_disagreement(
    ours: &Result<Header, ReadPathError>,
    oracle: &Result<Dump, String>,
) -> Option<String> {
    match (ours, oracle) {
        (Ok(h), Ok(d)) if as_dump(h) == *d => None,
        (Ok(h), Ok(d)) => Some(format!("cryptsetup shows {d:?}, ours {:?}", as_dump(h))),
        (Err(_), Err(_)) => None,
        (Ok(h), Err(e)) if h.copy == HeaderCopy::Secondary && e.contains("ambiguous signatures") => None,
        (Ok(_), Err(e)) => Some(format!("cryptsetup refuses ({e}), ours loads")),
        (Err(e), Ok(_)) => Some(format!("cryptsetup loads, ours refuses ({e})")),
    }
}

#[test]
fn every_manifest_line_gets_cryptsetups_header_decision() {
    let lines = manifest();
    assert!(lines.len() > 100, "MANIFEST.tsv has only {} lines", lines.len());
    let scratch = scratch_dir("corpus-load");
    let mut failures = Vec::new();
    for l in &lines {
        let expect = expectation(l);
        let dir = scratch.join(l.line.to_string());
        let path = unpack(&l.file, l.member.as_deref(), &dir);
        let got = luks::header::read_path(&path);
        if let Some(why) = judge(expect, &got) {
            failures.push(format!("line {} {}: expected {expect:?}, {why}", l.line, l.name()));
        }
        if let Some(why) = oracle_disagreement(&got, &cryptsetup_dump(&path)) {
            failures.push(format!("line {} {}: {why}", l.line, l.name()));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{} of {} manifest lines disagree:\n{}",
        failures.len(),
        lines.len(),
        failures.join("\n")
    );
}

// Headers made on the fly by `cryptsetup luksFormat`: each loads with what `luksDump` shows.

/// Runs `cryptsetup` with `args` and returns its stdout; fails the test on failure.
fn cryptsetup(args: &[&str]) -> String {
    let out = Command::new("cryptsetup")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cryptsetup (the oracle) must be installed: {e}"));
    assert!(out.status.success(), "cryptsetup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse file of `size` bytes formatted by `cryptsetup luksFormat --batch-mode` with a key
/// file and fast KDF settings plus `args`; returns its path.
fn format(dir: &Path, name: &str, size: u64, args: &[&str]) -> std::path::PathBuf {
    let key = dir.join("key");
    std::fs::write(&key, b"correct horse battery staple").unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let mut all = vec!["luksFormat", "--batch-mode", "--key-file", key.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    cryptsetup(&all);
    path
}

/// Loads `path` and checks it against `cryptsetup luksDump` of the same file.
fn load_as_luksdump_shows(path: &Path) -> Header {
    let h = luks::header::read_path(path).unwrap_or_else(|e| panic!("{e}"));
    let shown = parse_dump(&cryptsetup(&["luksDump", path.to_str().unwrap()]));
    assert_eq!(as_dump(&h), shown, "{}", path.display());
    h
}

const PBKDF2_FAST: [&str; 4] = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

#[test]
fn luksformat_luks1_headers_load_as_luksdump_shows() {
    let dir = scratch_dir("format-luks1");
    for (key_size, hash, slot) in [("256", "sha256", "0"), ("512", "sha512", "5"), ("256", "sha1", "7")] {
        let name = format!("luks1-{key_size}-{hash}");
        let mut args = vec!["--type", "luks1", "--key-size", key_size, "--hash", hash, "--key-slot", slot];
        args.extend_from_slice(&PBKDF2_FAST);
        let h = load_as_luksdump_shows(&format(&dir, &name, 8 << 20, &args));
        let k = &h.keyslots[0];
        assert_eq!(k.id.to_string(), slot);
        let bytes: usize = key_size.parse::<usize>().unwrap() / 8;
        assert_eq!(
            (k.key_size, k.area.key_size, k.area.encryption.0.as_str()),
            (bytes, bytes, "aes-xts-plain64")
        );
        let Kdf::Pbkdf2 { hash: kdf_hash, iterations, salt } = &k.kdf else { panic!("{:?}", k.kdf) };
        assert_eq!((kdf_hash.name(), *iterations, salt.len()), (hash, 1000, 32));
        assert_eq!(h.digests[0].keyslots, [k.id]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn luksformat_luks2_headers_of_every_metadata_size_load_as_luksdump_shows() {
    let dir = scratch_dir("format-luks2-sizes");
    for (mda, bytes) in
        [("16k", 16u64 << 10), ("64k", 64 << 10), ("256k", 256 << 10), ("1m", 1 << 20), ("4m", 4 << 20)]
    {
        let mut args = vec!["--type", "luks2", "--luks2-metadata-size", mda, "--luks2-keyslots-size", "2m"];
        args.extend_from_slice(&PBKDF2_FAST);
        let path = format(&dir, &format!("luks2-{mda}"), 32 << 20, &args);
        let h = load_as_luksdump_shows(&path);
        assert_eq!((h.copy, h.metadata_size, h.keyslots_size), (HeaderCopy::Primary, 2 * bytes, 2 << 20));
        // Without the primary (its first sector wiped), the secondary is found and used.
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, &[0u8; 512]).unwrap();
        drop(f);
        let h2 = luks::header::read_path(&path).unwrap_or_else(|e| panic!("{mda}: {e}"));
        assert_eq!((h2.copy, &h2.uuid, &h2.keyslots), (HeaderCopy::Secondary, &h.uuid, &h.keyslots), "{mda}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn luksformat_luks2_argon2id_with_4k_sectors_label_and_subsystem() {
    let dir = scratch_dir("format-luks2-argon2id");
    let args = [
        "--type",
        "luks2",
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "32",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-parallel",
        "2",
        "--sector-size",
        "4096",
        "--label",
        "cryptroot",
        "--subsystem",
        "lethe",
        "--key-slot",
        "3",
        "--cipher",
        "aes-xts-plain64",
        "--key-size",
        "512",
    ];
    let h = load_as_luksdump_shows(&format(&dir, "argon2id", 32 << 20, &args));
    assert_eq!((h.label.as_deref(), h.subsystem.as_deref()), (Some("cryptroot"), Some("lethe")));
    let k = h.keyslot(3).expect("keyslot 3");
    let Kdf::Argon2id { time, memory_kib, cpus, salt } = &k.kdf else { panic!("{:?}", k.kdf) };
    assert_eq!((*time, *memory_kib, *cpus, salt.len()), (4, 32, 2, 32));
    assert_eq!((k.key_size, k.priority), (64, luks::model::Priority::Normal));
    let s = &h.segments[0];
    assert_eq!(
        (s.sector_size, s.size, s.encryption.0.as_str()),
        (4096, SegmentSize::Dynamic, "aes-xts-plain64")
    );
    let d = &h.digests[0];
    assert_eq!((d.keyslots.as_slice(), d.segments.as_slice(), d.digest.len()), (&[3][..], &[0][..], 32));
    // The dump shows the parameters, not the salt luksDump shows.
    let text = luks::dump::text(&h);
    assert!(
        text.contains("3: luks2, 512-bit key, priority normal, argon2id time 4, memory 32 KiB, 2 threads"),
        "{text}"
    );
    let salt: String = salt.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let json = luks::dump::json(&h).unwrap().to_string();
    assert!(!text.contains(&salt) && !json.contains(&salt), "{text}\n{json}");
    assert_eq!(luks::dump::json(&h).unwrap()["keyslots"][0]["kdf"]["memory_kib"], 32);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn luksformat_detached_luks2_header_puts_the_data_at_offset_0() {
    let dir = scratch_dir("format-detached");
    let header = dir.join("header.img");
    std::fs::File::create(&header).unwrap().set_len(16 << 20).unwrap();
    let mut args = vec!["--type", "luks2", "--header", header.to_str().unwrap()];
    args.extend_from_slice(&PBKDF2_FAST);
    let data = format(&dir, "data.img", 8 << 20, &args);
    let h = load_as_luksdump_shows(&header);
    assert_eq!(h.segments[0].offset, 0);
    // The data device itself carries no header.
    assert!(matches!(
        luks::header::read_path(&data),
        Err(ReadPathError::Header { source: luks::header::HeaderError::NotLuks, .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fuzz targets start from real headers: every seed loads as the targets read it (on a
/// device larger than the seed, which holds only the headers).
#[test]
fn fuzz_seeds_are_headers_that_load() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for (target, version) in
        [("luks1_header", luks::model::Version::Luks1), ("luks2_header", luks::model::Version::Luks2)]
    {
        let mut n = 0;
        for entry in std::fs::read_dir(seeds.join(target)).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let h = luks::header::read(&mut std::io::Cursor::new(bytes), 64 << 20)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(h.version, version, "{}", path.display());
            n += 1;
        }
        assert!(n > 0, "no seeds for {target}");
    }
}
