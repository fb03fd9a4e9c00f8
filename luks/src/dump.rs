//! A header summary for people and scripts (`initrd-tool luks dump`): what `luksDump` shows,
//! without salts, digests or anything else derived from a key.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{
    Header, HeaderCopy, Kdf, Keyslot, KeyslotKind, Priority, Segment, SegmentKind, SegmentSize, Version,
};

/// The summary of a header: its identity, layout, and every keyslot, segment, digest and
/// token with their parameters, but no salts or digest values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub version: Version,
    pub uuid: String,
    pub label: Option<String>,
    pub subsystem: Option<String>,
    /// The copy the header was read from (LUKS1 has only the primary).
    pub copy: HeaderCopy,
    pub seqid: u64,
    pub metadata_size: u64,
    pub keyslots_size: u64,
    pub segments: Vec<SegmentSummary>,
    pub keyslots: Vec<KeyslotSummary>,
    pub digests: Vec<DigestSummary>,
    pub tokens: Vec<TokenSummary>,
    pub flags: Vec<String>,
    pub requirements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentSummary {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: u64,
    /// Bytes, or `None` when the segment runs to the end of the device.
    pub size: Option<u64>,
    pub iv_tweak: u64,
    pub encryption: String,
    pub sector_size: u32,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyslotSummary {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub key_size: usize,
    pub priority: Priority,
    pub kdf: KdfSummary,
    pub af_stripes: u32,
    pub af_hash: String,
    pub area_offset: u64,
    pub area_size: u64,
    pub area_encryption: String,
    pub area_key_size: usize,
    /// The digests that verify this keyslot's key.
    pub digests: Vec<u32>,
    /// No digest binds the key to a segment: it opens nothing.
    pub unbound: bool,
}

/// A KDF's parameters, its salt left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KdfSummary {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_kib: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
}

/// A digest's parameters, its salt and value left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestSummary {
    pub id: u32,
    pub hash: String,
    pub iterations: u32,
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenSummary {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub keyslots: Vec<u32>,
}

impl Summary {
    pub fn of(h: &Header) -> Summary {
        Summary {
            version: h.version,
            uuid: h.uuid.clone(),
            label: h.label.clone(),
            subsystem: h.subsystem.clone(),
            copy: h.copy,
            seqid: h.seqid,
            metadata_size: h.metadata_size,
            keyslots_size: h.keyslots_size,
            segments: h.segments.iter().map(segment).collect(),
            keyslots: h.keyslots.iter().map(|k| keyslot(h, k)).collect(),
            digests: h
                .digests
                .iter()
                .map(|d| DigestSummary {
                    id: d.id,
                    hash: d.hash.name().to_owned(),
                    iterations: d.iterations,
                    keyslots: d.keyslots.clone(),
                    segments: d.segments.clone(),
                })
                .collect(),
            tokens: h
                .tokens
                .iter()
                .map(|t| TokenSummary { id: t.id, kind: t.kind.clone(), keyslots: t.keyslots.clone() })
                .collect(),
            flags: h.flags.clone(),
            requirements: h.mandatory_requirements.clone(),
        }
    }
}

fn segment(s: &Segment) -> SegmentSummary {
    SegmentSummary {
        id: s.id,
        kind: match &s.kind {
            SegmentKind::Crypt => "crypt".to_owned(),
            SegmentKind::Linear => "linear".to_owned(),
            SegmentKind::Unknown(t) => t.clone(),
        },
        offset: s.offset,
        size: match s.size {
            SegmentSize::Dynamic => None,
            SegmentSize::Bytes(n) => Some(n),
        },
        iv_tweak: s.iv_tweak,
        encryption: s.encryption.0.clone(),
        sector_size: s.sector_size,
        flags: s.flags.clone(),
    }
}

fn keyslot(h: &Header, k: &Keyslot) -> KeyslotSummary {
    let digests: Vec<u32> = h.digests.iter().filter(|d| d.keyslots.contains(&k.id)).map(|d| d.id).collect();
    let bound = h.digests.iter().any(|d| d.keyslots.contains(&k.id) && !d.segments.is_empty());
    KeyslotSummary {
        id: k.id,
        kind: match &k.kind {
            KeyslotKind::Luks2 => "luks2".to_owned(),
            KeyslotKind::Reencrypt => "reencrypt".to_owned(),
            KeyslotKind::Unknown(t) => t.clone(),
        },
        key_size: k.key_size,
        priority: k.priority,
        kdf: kdf(&k.kdf),
        af_stripes: k.af.stripes,
        af_hash: k.af.hash.name().to_owned(),
        area_offset: k.area.offset,
        area_size: k.area.size,
        area_encryption: k.area.encryption.0.clone(),
        area_key_size: k.area.key_size,
        digests,
        unbound: k.kind == KeyslotKind::Luks2 && !bound,
    }
}

fn kdf(k: &Kdf) -> KdfSummary {
    let none = KdfSummary {
        kind: String::new(),
        hash: None,
        iterations: None,
        time: None,
        memory_kib: None,
        cpus: None,
    };
    match k {
        Kdf::Pbkdf2 { hash, iterations, .. } => KdfSummary {
            kind: "pbkdf2".into(),
            hash: Some(hash.name().to_owned()),
            iterations: Some(*iterations),
            ..none
        },
        Kdf::Argon2i { time, memory_kib, cpus, .. } | Kdf::Argon2id { time, memory_kib, cpus, .. } => {
            KdfSummary {
                kind: if matches!(k, Kdf::Argon2i { .. }) { "argon2i" } else { "argon2id" }.into(),
                time: Some(*time),
                memory_kib: Some(*memory_kib),
                cpus: Some(*cpus),
                ..none
            }
        }
        Kdf::Unsupported { name } => KdfSummary { kind: name.clone(), ..none },
    }
}

/// The summary as JSON.
pub fn json(h: &Header) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(Summary::of(h))
}

fn bits(bytes: usize) -> usize {
    bytes * 8
}

fn list(ids: &[u32]) -> String {
    match ids {
        [] => "none".to_owned(),
        ids => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
    }
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() { "(none)".to_owned() } else { items.join(" ") }
}

/// The summary as text, a compact `luksDump`.
pub fn text(h: &Header) -> String {
    let s = Summary::of(h);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    match s.version {
        Version::Luks1 => line("LUKS1 header".into()),
        Version::Luks2 => {
            let copy = if s.copy == HeaderCopy::Primary { "primary" } else { "secondary" };
            line(format!("LUKS2 header ({copy} copy, seqid {})", s.seqid));
        }
    }
    line(format!("UUID:         {}", s.uuid));
    if s.version == Version::Luks2 {
        line(format!("Label:        {}", s.label.as_deref().unwrap_or("(none)")));
        line(format!("Subsystem:    {}", s.subsystem.as_deref().unwrap_or("(none)")));
        line(format!("Flags:        {}", or_none(&s.flags)));
        line(format!("Requirements: {}", or_none(&s.requirements)));
    }
    line(format!("Metadata:     {} bytes; keyslots area {} bytes", s.metadata_size, s.keyslots_size));
    line("Data segments:".into());
    for g in &s.segments {
        let mut t = format!("  {}: {} at offset {}, ", g.id, g.kind, g.offset);
        match g.size {
            Some(n) => t.push_str(&format!("{n} bytes")),
            None => t.push_str("to the end of the device"),
        }
        if !g.encryption.is_empty() {
            let _ = write!(t, ", {}, sector {}, iv_tweak {}", g.encryption, g.sector_size, g.iv_tweak);
        }
        if !g.flags.is_empty() {
            let _ = write!(t, ", flags {}", g.flags.join(" "));
        }
        line(t);
    }
    line("Keyslots:".into());
    for k in &s.keyslots {
        let mut t = format!("  {}: {}", k.id, k.kind);
        if k.unbound {
            t.push_str(" (unbound)");
        }
        let _ = write!(
            t,
            ", {}-bit key, priority {}, {}",
            bits(k.key_size),
            priority(k.priority),
            kdf_text(&k.kdf)
        );
        if k.kind == "luks2" {
            let _ = write!(t, ", AF {} stripes {}", k.af_stripes, k.af_hash);
        }
        let _ = write!(t, ", area {}+{}", k.area_offset, k.area_size);
        if !k.area_encryption.is_empty() {
            let _ = write!(t, " {} ({}-bit key)", k.area_encryption, bits(k.area_key_size));
        }
        let _ = write!(t, ", digest {}", list(&k.digests));
        line(t);
    }
    if !s.tokens.is_empty() {
        line("Tokens:".into());
        for tk in &s.tokens {
            line(format!("  {}: {}, keyslots {}", tk.id, tk.kind, list(&tk.keyslots)));
        }
    }
    line("Digests:".into());
    for d in &s.digests {
        line(format!(
            "  {}: pbkdf2 {}, {} iterations, keyslots {}, segments {}",
            d.id,
            d.hash,
            d.iterations,
            list(&d.keyslots),
            list(&d.segments)
        ));
    }
    out
}

fn priority(p: Priority) -> &'static str {
    match p {
        Priority::Ignore => "ignore",
        Priority::Normal => "normal",
        Priority::Prefer => "prefer",
    }
}

fn kdf_text(k: &KdfSummary) -> String {
    match (k.hash.as_deref(), k.iterations, k.time, k.memory_kib, k.cpus) {
        (Some(hash), Some(iterations), ..) => format!("{} {hash} {iterations} iterations", k.kind),
        (_, _, Some(time), Some(memory), Some(cpus)) => {
            format!("{} time {time}, memory {memory} KiB, {cpus} threads", k.kind)
        }
        _ if k.kind.is_empty() => "no KDF".to_owned(),
        _ => format!("KDF {}", k.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AfParams, Area, CipherSpec, Digest, HashAlg, Token};

    fn header() -> Header {
        Header {
            version: Version::Luks2,
            uuid: "5f1d41f8-e5a9-4f6a-9b1c-1f8f6a7e2b3c".into(),
            label: Some("cryptroot".into()),
            subsystem: None,
            seqid: 9,
            copy: HeaderCopy::Secondary,
            metadata_size: 32768,
            keyslots_size: 16744448,
            keyslots: vec![
                Keyslot {
                    id: 0,
                    kind: KeyslotKind::Luks2,
                    key_size: 64,
                    priority: Priority::Prefer,
                    kdf: Kdf::Argon2id { time: 4, memory_kib: 1048576, cpus: 4, salt: vec![0xAB; 32] },
                    af: AfParams { stripes: 4000, hash: HashAlg::Sha256 },
                    area: Area {
                        offset: 32768,
                        size: 258048,
                        encryption: CipherSpec("aes-xts-plain64".into()),
                        key_size: 64,
                    },
                },
                Keyslot {
                    id: 2,
                    kind: KeyslotKind::Luks2,
                    key_size: 32,
                    priority: Priority::Normal,
                    kdf: Kdf::Pbkdf2 { hash: HashAlg::Sha512, iterations: 1000, salt: vec![0xCD; 32] },
                    af: AfParams { stripes: 4000, hash: HashAlg::Sha512 },
                    area: Area {
                        offset: 290816,
                        size: 131072,
                        encryption: CipherSpec("aes-xts-plain64".into()),
                        key_size: 32,
                    },
                },
            ],
            segments: vec![Segment {
                id: 0,
                kind: SegmentKind::Crypt,
                offset: 16 << 20,
                size: SegmentSize::Dynamic,
                iv_tweak: 0,
                encryption: CipherSpec("aes-xts-plain64".into()),
                sector_size: 4096,
                flags: vec![],
            }],
            digests: vec![
                Digest {
                    id: 0,
                    keyslots: vec![0],
                    segments: vec![0],
                    hash: HashAlg::Sha256,
                    iterations: 117_000,
                    salt: vec![0xEF; 32],
                    digest: vec![0x12; 32],
                },
                Digest {
                    id: 1,
                    keyslots: vec![2],
                    segments: vec![],
                    hash: HashAlg::Sha256,
                    iterations: 1000,
                    salt: vec![0xEF; 32],
                    digest: vec![0x34; 32],
                },
            ],
            tokens: vec![Token { id: 0, kind: "systemd-tpm2".into(), keyslots: vec![0] }],
            flags: vec!["allow-discards".into()],
            mandatory_requirements: vec![],
        }
    }

    #[test]
    fn text_is_a_compact_luksdump() {
        assert_eq!(
            text(&header()),
            "LUKS2 header (secondary copy, seqid 9)
UUID:         5f1d41f8-e5a9-4f6a-9b1c-1f8f6a7e2b3c
Label:        cryptroot
Subsystem:    (none)
Flags:        allow-discards
Requirements: (none)
Metadata:     32768 bytes; keyslots area 16744448 bytes
Data segments:
  0: crypt at offset 16777216, to the end of the device, aes-xts-plain64, sector 4096, iv_tweak 0
Keyslots:
  0: luks2, 512-bit key, priority prefer, argon2id time 4, memory 1048576 KiB, 4 threads, AF 4000 stripes sha256, area 32768+258048 aes-xts-plain64 (512-bit key), digest 0
  2: luks2 (unbound), 256-bit key, priority normal, pbkdf2 sha512 1000 iterations, AF 4000 stripes sha512, area 290816+131072 aes-xts-plain64 (256-bit key), digest 1
Tokens:
  0: systemd-tpm2, keyslots 0
Digests:
  0: pbkdf2 sha256, 117000 iterations, keyslots 0, segments 0
  1: pbkdf2 sha256, 1000 iterations, keyslots 2, segments none
"
        );
    }

    #[test]
    fn json_has_the_parameters_but_no_salt_or_digest() {
        let v = json(&header()).unwrap();
        assert_eq!(v["version"], "luks2");
        assert_eq!(v["copy"], "secondary");
        assert_eq!(
            v["keyslots"][0]["kdf"],
            serde_json::json!({"type": "argon2id", "time": 4, "memory_kib": 1048576, "cpus": 4})
        );
        assert_eq!(v["keyslots"][1]["unbound"], true);
        assert_eq!(v["segments"][0]["size"], serde_json::Value::Null);
        assert_eq!(
            v["digests"][0],
            serde_json::json!({"id": 0, "hash": "sha256", "iterations": 117000, "keyslots": [0], "segments": [0]})
        );
        // None of the salt or digest bytes (0xAB, 0xCD, 0xEF, 0x12, 0x34) appear in any form.
        let text = v.to_string() + &text(&header());
        for needle in
            ["171", "205", "239", "abab", "cdcd", "efef", "1212", "3434", "q6ur", "salt", "digest\""]
        {
            assert!(!text.to_lowercase().contains(needle), "{needle} in {text}");
        }
    }
}
