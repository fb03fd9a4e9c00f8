//! Every line of the cryptsetup corpus manifest gets cryptsetup's header decision: `load`
//! lines load or are refused as the manifest says, and every `unlock` line's header loads.
//! The live oracle (`cryptsetup luksDump` on the same bytes) must agree as well.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ManifestLine, manifest, scratch_dir, unpack};
use luks::header::ReadPathError;
use luks::model::{Header, HeaderCopy};

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
