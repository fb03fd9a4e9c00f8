//! Every `unlock` line of the cryptsetup corpus (and its activation-refusal `load` line): our
//! volume keys and refusals against what cryptsetup decides on the same images.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ManifestLine, manifest, scratch_dir, unpack};
use luks::unlock::{self, Options, UnlockError};

/// The volume key `cryptsetup luksDump --dump-volume-key` prints, or its stderr if it refuses.
fn cryptsetup_volume_key(image: &Path, key_file: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-volume-key", "--batch-mode", "--key-file"])
        .arg(key_file)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cryptsetup: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    parse_key_dump(&String::from_utf8_lossy(&out.stdout))
}

/// The hex bytes after "MK dump:" (cryptsetup 2.6) or "Volume key:" (later), over as many
/// indented continuation lines as there are.
fn parse_key_dump(text: &str) -> Result<Vec<u8>, String> {
    let mut lines = text.lines();
    let first = lines
        .by_ref()
        .find_map(|l| l.split_once("MK dump:").or_else(|| l.split_once("Volume key:")).map(|(_, rest)| rest))
        .ok_or_else(|| format!("no key dump in cryptsetup's output:\n{text}"))?;
    let mut hex = String::from(first);
    for l in lines {
        if !l.starts_with(char::is_whitespace) || l.trim().is_empty() {
            break;
        }
        hex.push_str(l);
    }
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).map_err(|e| format!("bad byte {b:?} in key dump: {e}")))
        .collect()
}

/// The secret of a manifest line as bytes (a key file's whole contents), and a file holding it
/// for cryptsetup.
fn secret_of(line: &ManifestLine, dir: &Path) -> (Vec<u8>, PathBuf) {
    let secret = line.secret.as_deref().unwrap_or("");
    match line.secret_kind.as_deref() {
        Some("keyfile") => {
            let (archive, member) = secret.split_once(':').expect("keyfile secret is ARCHIVE:MEMBER");
            let path = unpack(archive, Some(member), &dir.join("keyfile"));
            (std::fs::read(&path).unwrap(), path)
        }
        _ => {
            let path = dir.join("passphrase");
            File::create(&path).unwrap().write_all(secret.as_bytes()).unwrap();
            (secret.as_bytes().to_vec(), path)
        }
    }
}

/// Checks one line; `Err` describes a mismatch.
fn check(line: &ManifestLine, dir: &Path) -> Result<(), String> {
    let image = unpack(&line.file, line.member.as_deref(), &dir.join("image"));
    let header = luks::header::read_path(&image).map_err(|e| format!("header not read: {e}"))?;
    let mut dev = File::open(&image).unwrap();
    if line.check == "load" {
        // Refused before any key derivation, so no passphrase is needed.
        return match unlock::open(&header, &mut dev, b"", &Options::default()) {
            Err(UnlockError::UnsupportedRequirement { .. }) => Ok(()),
            other => Err(format!("expected UnsupportedRequirement, got {other:?}")),
        };
    }
    let (secret, secret_file) = secret_of(line, dir);
    let ours = unlock::open(&header, &mut dev, &secret, &Options::default());
    let theirs = cryptsetup_volume_key(&image, &secret_file);
    match line.expect.as_str() {
        "ok" => {
            let ours = ours.map_err(|e| format!("unlock failed: {e}"))?;
            let theirs = theirs.map_err(|e| format!("cryptsetup failed: {e}"))?;
            if ours.volume_key.as_bytes() != theirs {
                return Err("volume key differs from cryptsetup's".into());
            }
            // The key also stands on its own against the header's digest.
            match unlock::volume_key_matches(&header, &ours.volume_key) {
                Some(seg) if seg == ours.segment => Ok(()),
                other => Err(format!("volume_key_matches gave {other:?}, unlock gave {:?}", ours.segment)),
            }
        }
        "wrong-key" => match (ours, theirs) {
            (Err(UnlockError::WrongKey { tried }), Err(_)) if tried > 0 => Ok(()),
            (ours, theirs) => {
                Err(format!("expected WrongKey and a cryptsetup refusal, got {ours:?} / {theirs:?}"))
            }
        },
        "refuse-unbound-keyslot" => match ours {
            Err(UnlockError::UnboundKeyslot { .. }) => Ok(()),
            other => Err(format!("expected UnboundKeyslot, got {other:?}")),
        },
        "ok-or-clear-unsupported-cipher-error" => {
            let specs: Vec<&str> = header.keyslots.iter().map(|k| k.area.encryption.0.as_str()).collect();
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) if ours.volume_key.as_bytes() == theirs => Ok(()),
                (Ok(_), Ok(_)) => Err("volume key differs from cryptsetup's".into()),
                // cryptsetup on this host cannot decrypt this cipher (it has no kernel crypto
                // API here); ours was verified against the header's digest inside unlock, and
                // is checked against it once more.
                (Ok(ours), Err(_)) => match unlock::volume_key_matches(&header, &ours.volume_key) {
                    Some(_) => {
                        eprintln!(
                            "{}: unlocked {specs:?}; cryptsetup cannot here, digest verified",
                            line.name()
                        );
                        Ok(())
                    }
                    None => Err("unlocked, but the key fails the header's digest".into()),
                },
                (Err(e), _) => {
                    let msg = e.to_string();
                    if specs.iter().any(|s| msg.contains(s)) {
                        eprintln!("{}: refused with {msg}", line.name());
                        Ok(())
                    } else {
                        Err(format!("error does not name the cipher {specs:?}: {msg}"))
                    }
                }
            }
        }
        other => Err(format!("unknown expectation {other:?}")),
    }
}

fn is_unlock_check(line: &ManifestLine) -> bool {
    line.check == "unlock" || (line.check == "load" && line.expect == "refuse-activation-unknown-requirement")
}

#[test]
fn every_unlock_line_matches_cryptsetup() {
    let lines: Vec<ManifestLine> = manifest().into_iter().filter(is_unlock_check).collect();
    assert!(lines.len() >= 29, "the manifest lost unlock lines: {}", lines.len());
    let mut mismatches = Vec::new();
    for line in &lines {
        let dir = scratch_dir(&format!("unlock-{}", line.line));
        if let Err(why) = check(line, &dir) {
            mismatches.push(format!("MANIFEST.tsv:{} {} ({}): {why}", line.line, line.name(), line.expect));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} lines differ:\n{}",
        mismatches.len(),
        lines.len(),
        mismatches.join("\n")
    );
}

#[test]
fn key_dumps_of_both_cryptsetup_generations_parse() {
    let dump = "MK bits:       \t256\nMK dump:\ta6 d5 e2 18 \n\t\te0 40 \nKeyslots:\n";
    assert_eq!(parse_key_dump(dump).unwrap(), [0xa6, 0xd5, 0xe2, 0x18, 0xe0, 0x40]);
    let dump = "Volume key:\t01 02\n\t\t03\n";
    assert_eq!(parse_key_dump(dump).unwrap(), [1, 2, 3]);
    assert!(parse_key_dump("nothing").is_err());
}
