//! cryptsetup's LUKS2 metadata rules (`LUKS2_hdr_validate` and the keyslot handlers' checks)
//! over the parsed JSON, and the mapping of metadata that passes them into the model.
//!
//! Where cryptsetup's outcome depends on the order of object members (json-c keeps file
//! order), members are taken in id order, which gives the rule cryptsetup means. Beyond
//! cryptsetup, what the model needs typed is checked here too (base64 salts, pbkdf2 digests,
//! 32-bit counts), so that a header that loads is one that unlock can use or refuse by name.

use serde_json::{Map, Value};

use super::json::{Obj, Problem, err, join, parse_id, parse_uint64, rule, type_name};
use crate::model::{
    AfParams, Area, CipherSpec, Digest, HashAlg, Kdf, Keyslot, KeyslotKind, Priority, Segment, SegmentKind,
    SegmentSize, Token,
};
use crate::secret::MAX_KEY;

pub use super::json::JsonError;

/// Bytes of the binary header that precedes each JSON area.
pub const BIN_HDR_LEN: u64 = 4096;
/// The sizes one metadata copy (binary header and JSON area) may have.
pub const METADATA_SIZES: [u64; 9] =
    [0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000];
/// Largest keyslots area.
pub const MAX_KEYSLOTS_SIZE: u64 = 128 << 20;

const SECTOR: u64 = 512;

/// What valid metadata gives the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// `config.json_size`: bytes of one JSON area.
    pub json_size: u64,
    /// `config.keyslots_size`: bytes of the keyslots area after both metadata copies.
    pub keyslots_size: u64,
    pub keyslots: Vec<Keyslot>,
    pub segments: Vec<Segment>,
    pub digests: Vec<Digest>,
    pub tokens: Vec<Token>,
    pub flags: Vec<String>,
    pub mandatory_requirements: Vec<String>,
}

impl Metadata {
    /// Bytes of one metadata copy (binary header and JSON area).
    pub fn copy_size(&self) -> u64 {
        self.json_size + BIN_HDR_LEN
    }

    /// Where the keyslots area ends: the least a device must hold.
    pub fn areas_end(&self) -> u64 {
        2 * self.copy_size() + self.keyslots_size
    }
}

/// Checks the metadata of a JSON area of `json_area_size` bytes as cryptsetup does and maps
/// it into the model.
pub(crate) fn metadata(root: &Map<String, Value>, json_area_size: u64) -> Result<Metadata, JsonError> {
    let root = Obj::new(root, "");
    let requirements = requirements(&root)?;
    check_tokens(&root)?;
    check_digests(&root)?;
    check_segments(&root, &requirements)?;
    check_keyslots(&root)?;
    let (json_size, keyslots_size) = check_config(&root)?;
    check_areas(&root, json_size + BIN_HDR_LEN, keyslots_size)?;
    check_json_size(&root, json_size, json_area_size)?;
    check_keyslot_types(&root, &requirements)?;

    let config = root.object("config")?;
    let flags = match config.has("flags") {
        true => strings(config.array("flags")?, &config.path_of("flags"))?,
        false => Vec::new(),
    };
    Ok(Metadata {
        json_size,
        keyslots_size,
        keyslots: keyslots(&root)?,
        segments: segments(&root)?,
        digests: digests(&root)?,
        tokens: tokens(&root)?,
        flags,
        mandatory_requirements: requirements,
    })
}

/// A member that must be an object.
fn as_obj<'a>(v: &'a Value, path: String) -> Result<Obj<'a>, JsonError> {
    match v {
        Value::Object(map) => Ok(Obj::new(map, path)),
        other => Err(err(path, Problem::Type { expected: "an object", found: type_name(other) })),
    }
}

/// An array whose elements must all be strings.
fn strings(arr: &[Value], path: &str) -> Result<Vec<String>, JsonError> {
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(err(
                join(path, &i.to_string()),
                Problem::Type { expected: "a string", found: type_name(other) },
            )),
        })
        .collect()
}

/// An array of ids that must each name an object member of `target` (`validate_keyslots_array`
/// and `validate_segments_array`).
fn references(
    arr: &[Value],
    path: &str,
    target: Option<&Map<String, Value>>,
    what: &str,
) -> Result<Vec<u32>, JsonError> {
    let mut ids = Vec::with_capacity(arr.len());
    for (i, name) in strings(arr, path)?.iter().enumerate() {
        let here = join(path, &i.to_string());
        if !matches!(target.and_then(|t| t.get(name)), Some(Value::Object(_))) {
            return Err(rule(here, format!("{what} {name:?} does not exist")));
        }
        ids.push(parse_id(name).ok_or_else(|| err(here, Problem::Id(name.clone())))?);
    }
    Ok(ids)
}

/// `online-reencrypt` or `online-reencrypt-v<digits>`.
fn reencrypt_candidate(name: &str) -> bool {
    name == "online-reencrypt"
        || name
            .strip_prefix("online-reencrypt-v")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// The names cryptsetup reads as its online-reencryption requirement.
fn online_reencrypt(requirements: &[String]) -> bool {
    requirements
        .iter()
        .any(|n| matches!(n.as_str(), "online-reencrypt" | "online-reencrypt-v2" | "online-reencrypt-v3"))
}

/// `config.requirements.mandatory`: optional, strings, at most one online-reencrypt flag.
fn requirements(root: &Obj) -> Result<Vec<String>, JsonError> {
    let config = root.object("config")?;
    if !config.has("requirements") {
        return Ok(Vec::new());
    }
    let req = config.object("requirements")?;
    if !req.has("mandatory") {
        return Ok(Vec::new());
    }
    let path = req.path_of("mandatory");
    let names = strings(req.array("mandatory")?, &path)?;
    if names.iter().filter(|n| reencrypt_candidate(n)).count() > 1 {
        return Err(rule(path, "more than one online-reencrypt requirement"));
    }
    Ok(names)
}

fn check_tokens(root: &Obj) -> Result<(), JsonError> {
    let tokens = root.object("tokens")?;
    let keyslots = keyslots_target(root)?;
    for (_, key, v) in tokens.members()? {
        let t = as_obj(v, tokens.path_of(key))?;
        t.string("type")?;
        references(t.array("keyslots")?, &t.path_of("keyslots"), keyslots, "keyslot")?;
    }
    Ok(())
}

/// The keyslots object as a reference target: cryptsetup needs it to exist here (its type is
/// checked with the keyslots), and a reference into anything but an object finds nothing.
fn keyslots_target<'a>(root: &Obj<'a>) -> Result<Option<&'a Map<String, Value>>, JsonError> {
    Ok(root.value("keyslots")?.as_object())
}

fn check_digests(root: &Obj) -> Result<(), JsonError> {
    let digests = root.object("digests")?;
    let keyslots = root.object("keyslots")?;
    let segments = root.object("segments")?;
    for (_, key, v) in digests.members()? {
        let d = as_obj(v, digests.path_of(key))?;
        d.string("type")?;
        let (ks, segs) = (d.array("keyslots")?, d.array("segments")?);
        references(ks, &d.path_of("keyslots"), Some(keyslots.map), "keyslot")?;
        references(segs, &d.path_of("segments"), Some(segments.map), "segment")?;
    }
    Ok(())
}

/// A segment's flags (optional array of strings).
fn segment_flags(s: &Obj) -> Result<Vec<String>, JsonError> {
    match s.has("flags") {
        true => strings(s.array("flags")?, &s.path_of("flags")),
        false => Ok(Vec::new()),
    }
}

fn is_backup(flags: &[String]) -> bool {
    flags.iter().any(|f| f.starts_with("backup-"))
}

/// Size in bytes, 0 for `dynamic`.
fn segment_size(s: &Obj) -> Result<u64, JsonError> {
    let text = s.string("size")?;
    if text == "dynamic" {
        return Ok(0);
    }
    match parse_uint64(text) {
        Some(0) => Err(rule(s.path_of("size"), "a segment size must not be 0")),
        Some(n) => Ok(n),
        None => Err(err(s.path_of("size"), Problem::NotUint64(text.to_owned()))),
    }
}

/// A segment as `hdr_validate_segments` sees it.
struct SegmentView {
    id: u32,
    offset: u64,
    /// 0 for `dynamic`.
    size: u64,
    kind: String,
    flags: Vec<String>,
    sector_size: u32,
    cipher: String,
}

fn check_segments(root: &Obj, requirements: &[String]) -> Result<(), JsonError> {
    let segs = root.object("segments")?;
    let digests = root.object("digests")?;
    let members = segs.members()?;
    if members.is_empty() {
        return Err(rule("segments", "no segment"));
    }
    let mut first_backup: Option<u32> = None;
    let mut views = Vec::with_capacity(members.len());
    for (id, key, v) in &members {
        let s = as_obj(v, segs.path_of(key))?;
        let kind = s.string("type")?;
        let offset = s.uint64_string("offset")?;
        let size = segment_size(&s)?;
        // Device-mapper tables count 512-byte sectors.
        if !offset.is_multiple_of(SECTOR) {
            return Err(rule(s.path_of("offset"), format!("offset {offset} is not a multiple of 512")));
        }
        if !size.is_multiple_of(SECTOR) {
            return Err(rule(s.path_of("size"), format!("size {size} is not a multiple of 512")));
        }
        let flags = segment_flags(&s)?;
        if is_backup(&flags) {
            first_backup = Some(first_backup.map_or(*id, |b| b.min(*id)));
        } else if let Some(b) = first_backup {
            return Err(rule(s.path, format!("regular segment {id} comes after backup segment {b}")));
        }
        if kind == "crypt" {
            check_crypt_segment(&s, key, size, &digests)?;
        }
        if kind.starts_with("hw-opal") {
            check_opal_segment(&s, size)?;
            if kind == "hw-opal-crypt" {
                check_crypt_segment(&s, key, size, &digests)?;
            }
        }
        // What json_segment_cmp compares, read as leniently as cryptsetup reads it.
        let sector_size = match s.map.get("sector_size").and_then(Value::as_i64) {
            Some(n) => u32::try_from(n).unwrap_or(SECTOR as u32),
            None => SECTOR as u32,
        };
        let cipher = s.map.get("encryption").and_then(Value::as_str).unwrap_or("null").to_owned();
        views.push(SegmentView { id: *id, offset, size, kind: kind.to_owned(), flags, sector_size, cipher });
    }
    let count = views.len() as u64;
    let regular = match first_backup {
        Some(0) => return Err(rule("segments", "no regular segment, only backup segments")),
        Some(b) if u64::from(b) >= count => {
            return Err(rule("segments", format!("gap between the regular segments and backup segment {b}")));
        }
        Some(b) => u64::from(b),
        None => count,
    };
    // Ids must run 0, 1, 2, ... without a gap (they are sorted and unique).
    if let Some((i, v)) = views.iter().enumerate().find(|(i, v)| u64::from(v.id) != *i as u64) {
        return Err(rule("segments", format!("gap at segment {i} (next is {})", v.id)));
    }
    let regular_views = views.get(..regular as usize).unwrap_or_default();
    check_segment_intervals(regular_views)?;
    if online_reencrypt(requirements) {
        check_reencrypt_segments(&views, regular as usize)?;
    }
    Ok(())
}

fn check_crypt_segment(s: &Obj, key: &str, size: u64, digests: &Obj) -> Result<(), JsonError> {
    s.uint64_string("iv_tweak")?;
    s.string("encryption")?;
    s.int("sector_size")?;
    if s.has("integrity") {
        let i = s.object("integrity")?;
        for field in ["type", "journal_encryption", "journal_integrity"] {
            i.string(field)?;
        }
    }
    let sector_size = s.uint32("sector_size")?;
    if sector_size == 0 || !u64::from(sector_size).is_multiple_of(SECTOR) {
        return Err(rule(
            s.path_of("sector_size"),
            format!("sector size {sector_size} is not a multiple of 512"),
        ));
    }
    if !size.is_multiple_of(u64::from(sector_size)) {
        return Err(rule(
            s.path_of("size"),
            format!("size {size} is not a multiple of the sector size {sector_size}"),
        ));
    }
    let has_digest = digests.map.values().any(|d| {
        d.get("segments").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x.as_str() == Some(key)))
    });
    if !has_digest {
        return Err(rule(s.path.clone(), "crypt segment not assigned to any digest"));
    }
    Ok(())
}

fn check_opal_segment(s: &Obj, size: u64) -> Result<(), JsonError> {
    if size == 0 {
        return Err(rule(s.path_of("size"), "an OPAL segment cannot have dynamic size"));
    }
    s.int("opal_segment_number")?;
    s.int("opal_key_size")?;
    let opal_size = s.uint64_string("opal_segment_size")?;
    if opal_size == 0 {
        return Err(rule(s.path_of("opal_segment_size"), "must not be 0"));
    }
    if size > opal_size {
        return Err(rule(
            s.path_of("size"),
            format!("size {size} exceeds the OPAL locking range ({opal_size})"),
        ));
    }
    Ok(())
}

/// `validate_segment_intervals`: only the last regular segment may be dynamic, and no
/// segment may start inside another. A size of 2^64 - 1 counts as dynamic, as in cryptsetup.
fn check_segment_intervals(views: &[SegmentView]) -> Result<(), JsonError> {
    let len = |v: &SegmentView| if v.size == 0 { u64::MAX } else { v.size };
    let last = views.len().saturating_sub(1);
    for (i, a) in views.iter().enumerate() {
        if len(a) == u64::MAX && i != last {
            return Err(rule(
                join("segments", &a.id.to_string()),
                "only the last regular segment may be dynamic",
            ));
        }
        for (j, b) in views.iter().enumerate() {
            if i == j {
                continue;
            }
            let b_len = len(b);
            let b_end = match b_len {
                u64::MAX => None,
                n => Some(b.offset.checked_add(n).ok_or_else(|| {
                    rule(join("segments", &b.id.to_string()), "offset + size overflows 64 bits")
                })?),
            };
            if a.offset >= b.offset && b_end.is_none_or(|end| a.offset < end) {
                return Err(rule(
                    join("segments", &a.id.to_string()),
                    format!("segment at offset {} overlaps segment {}", a.offset, b.id),
                ));
            }
        }
    }
    Ok(())
}

/// `validate_reencrypt_segments`: with online reencryption, the backup segments hold the
/// final and previous layouts, and every regular segment matches one of them.
fn check_reencrypt_segments(views: &[SegmentView], regular: usize) -> Result<(), JsonError> {
    let backups = views.get(regular..).unwrap_or_default();
    let has = |v: &SegmentView, f: &str| v.flags.iter().any(|x| x == f);
    let mut fin = None;
    let mut prev = None;
    for v in backups {
        if has(v, "backup-final") {
            fin = Some(v);
        } else if has(v, "backup-previous") {
            prev = Some(v);
        }
    }
    let (Some(fin), Some(prev)) = (fin, prev) else {
        return Err(rule("segments", "online reencryption needs backup-final and backup-previous segments"));
    };
    let same = |a: &SegmentView, b: &SegmentView| {
        a.kind == b.kind && (a.kind != "crypt" || (a.sector_size == b.sector_size && a.cipher == b.cipher))
    };
    for v in views.get(..regular).unwrap_or_default() {
        let ok = match has(v, "in-reencryption") {
            true => same(v, fin),
            false => same(v, fin) || same(v, prev),
        };
        if !ok {
            return Err(rule(join("segments", &v.id.to_string()), "matches neither backup segment"));
        }
    }
    Ok(())
}

fn check_keyslots(root: &Obj) -> Result<(), JsonError> {
    let keyslots = root.object("keyslots")?;
    for (_, key, v) in keyslots.members()? {
        let k = as_obj(v, keyslots.path_of(key))?;
        k.string("type")?;
        k.uint32("key_size")?;
    }
    Ok(())
}

/// Non-backup segments' least offset; 0 when one starts at 0 (a detached header).
fn min_segment_offset(root: &Obj) -> u64 {
    let Some(Value::Object(segs)) = root.map.get("segments") else { return 0 };
    let mut min = u64::MAX;
    for v in segs.values() {
        let flags: Vec<String> = v
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if is_backup(&flags) {
            continue;
        }
        let offset = v.get("offset").and_then(Value::as_str).and_then(parse_uint64).unwrap_or(0);
        if offset == 0 {
            return 0;
        }
        min = min.min(offset);
    }
    min
}

/// `config`: JSON and keyslots area sizes LUKS2 allows, keyslots that end before the data,
/// flags. Returns `(json_size, keyslots_size)`.
fn check_config(root: &Obj) -> Result<(u64, u64), JsonError> {
    let config = root.object("config")?;
    let json_size = config.uint64_string("json_size")?;
    let keyslots_size = config.uint64_string("keyslots_size")?;
    let copy_size = json_size.checked_add(BIN_HDR_LEN).filter(|s| METADATA_SIZES.contains(s));
    let Some(copy_size) = copy_size else {
        return Err(rule(
            config.path_of("json_size"),
            format!(
                "{json_size} + {BIN_HDR_LEN} is not a LUKS2 metadata size (16 KiB to 4 MiB, a power of two)"
            ),
        ));
    };
    if !keyslots_size.is_multiple_of(4096) || keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(rule(
            config.path_of("keyslots_size"),
            format!("{keyslots_size} is not a multiple of 4096 up to {MAX_KEYSLOTS_SIZE}"),
        ));
    }
    let data = min_segment_offset(root);
    if data != 0 && (data < keyslots_size || data - keyslots_size < 2 * copy_size) {
        return Err(rule(
            config.path_of("keyslots_size"),
            format!(
                "{keyslots_size} bytes of keyslots after {} bytes of metadata reach past the data at offset {data}",
                2 * copy_size
            ),
        ));
    }
    if config.has("flags") {
        strings(config.array("flags")?, &config.path_of("flags"))?;
    }
    Ok((json_size, keyslots_size))
}

/// `hdr_validate_areas`: every keyslot area after both metadata copies, inside the keyslots
/// area, not empty, and not starting inside another keyslot's area.
fn check_areas(root: &Obj, copy_size: u64, keyslots_size: u64) -> Result<(), JsonError> {
    let keyslots = root.object("keyslots")?;
    let start = 2 * copy_size;
    let end = start + keyslots_size;
    let mut areas = Vec::with_capacity(keyslots.map.len());
    for (id, key, v) in keyslots.members()? {
        let k = as_obj(v, keyslots.path_of(key))?;
        let area = k.object("area")?;
        area.string("type")?;
        areas.push((id, area.path.clone(), area.uint64_string("offset")?, area.uint64_string("size")?));
    }
    for (i, (_, path, offset, size)) in areas.iter().enumerate() {
        if *offset < start {
            return Err(rule(
                join(path, "offset"),
                format!("area at {offset} lies in the first {start} bytes of metadata"),
            ));
        }
        if *size == 0 {
            return Err(rule(join(path, "size"), "area of 0 bytes"));
        }
        let Some(area_end) = offset.checked_add(*size) else {
            return Err(rule(path.clone(), "offset + size overflows 64 bits"));
        };
        if area_end > end {
            return Err(rule(
                path.clone(),
                format!("area ends at {area_end}, past the keyslots area's end at {end}"),
            ));
        }
        for (j, (other, _, o_offset, o_size)) in areas.iter().enumerate() {
            if i == j {
                continue;
            }
            let Some(o_end) = o_offset.checked_add(*o_size) else {
                return Err(rule(
                    join("keyslots", &other.to_string()),
                    "area offset + size overflows 64 bits",
                ));
            };
            if offset >= o_offset && *offset < o_end {
                return Err(rule(path.clone(), format!("area at {offset} overlaps keyslot {other}'s area")));
            }
        }
    }
    Ok(())
}

/// `config.json_size` is the binary header's JSON area, and the metadata written compactly
/// fits it.
fn check_json_size(root: &Obj, json_size: u64, json_area_size: u64) -> Result<(), JsonError> {
    if json_size != json_area_size {
        return Err(rule(
            "config.json_size",
            format!("{json_size} differs from the {json_area_size}-byte JSON area of the binary header"),
        ));
    }
    let compact = serde_json::to_string(root.map).map_or(u64::MAX, |s| s.len() as u64);
    if compact > json_size {
        return Err(rule(
            "",
            format!("the metadata ({compact} bytes written compactly) does not fit {json_size} bytes"),
        ));
    }
    Ok(())
}

/// `LUKS2_keyslots_validate`: the luks2 and reencrypt keyslot handlers' checks, each luks2
/// keyslot in exactly one digest, and reencrypt keyslots only with online reencryption.
fn check_keyslot_types(root: &Obj, requirements: &[String]) -> Result<(), JsonError> {
    let keyslots = root.object("keyslots")?;
    let digests = root.object("digests")?;
    let mut reencrypt = 0;
    for (id, key, v) in keyslots.members()? {
        let k = as_obj(v, keyslots.path_of(key))?;
        match k.string("type")? {
            "luks2" => {
                check_luks2_keyslot(&k)?;
                let n = digests
                    .map
                    .values()
                    .filter(|d| {
                        d.get("keyslots")
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(key)))
                    })
                    .count();
                if n != 1 {
                    return Err(rule(
                        k.path,
                        format!("keyslot {id} is in {n} digests; it must be in exactly one"),
                    ));
                }
            }
            "reencrypt" => {
                check_reencrypt_keyslot(&k)?;
                reencrypt += 1;
            }
            // cryptsetup has no handler for other types and checks nothing more.
            _ => {}
        }
    }
    if online_reencrypt(requirements) && reencrypt == 0 {
        return Err(rule("keyslots", "the online-reencrypt requirement needs a reencrypt keyslot"));
    }
    if reencrypt > 0 && !requirements.iter().any(|n| reencrypt_candidate(n)) {
        return Err(rule("keyslots", "a reencrypt keyslot without the online-reencrypt requirement"));
    }
    if reencrypt > 1 {
        return Err(rule("keyslots", "more than one reencrypt keyslot"));
    }
    Ok(())
}

/// `luks2_keyslot_validate`. Members beyond a KDF's parameters are left over from an earlier
/// KDF; cryptsetup drops them in memory, so they are ignored here.
fn check_luks2_keyslot(k: &Obj) -> Result<(), JsonError> {
    let kdf = k.object("kdf")?;
    let af = k.object("af")?;
    let area = k.object("area")?;
    match kdf.string("type")? {
        "pbkdf2" => {
            kdf.string("hash")?;
            kdf.int("iterations")?;
            kdf.string("salt")?;
        }
        "argon2i" | "argon2id" => {
            for field in ["time", "memory", "cpus"] {
                kdf.int(field)?;
            }
            kdf.string("salt")?;
        }
        _ => {}
    }
    let af_type = af.string("type")?;
    if af_type != "luks1" {
        return Err(rule(af.path_of("type"), format!("unknown anti-forensic splitter {af_type:?}")));
    }
    af.string("hash")?;
    af.int("stripes")?;
    let area_type = area.string("type")?;
    if area_type != "raw" {
        return Err(rule(area.path_of("type"), format!("unknown keyslot area type {area_type:?}")));
    }
    area.string("encryption")?;
    area.int("key_size")?;
    area.string("offset")?;
    area.string("size")?;
    Ok(())
}

/// `reenc_keyslot_validate`.
fn check_reencrypt_keyslot(k: &Obj) -> Result<(), JsonError> {
    let area = k.object("area")?;
    let area_type = area.string("type")?;
    k.int("key_size")?;
    let mode = k.string("mode")?;
    let direction = k.string("direction")?;
    if k.uint32("key_size")? != 1 {
        return Err(rule(k.path_of("key_size"), "a reencrypt keyslot's key size must be 1"));
    }
    if !matches!(mode, "reencrypt" | "encrypt" | "decrypt") {
        return Err(rule(k.path_of("mode"), format!("unknown reencryption mode {mode:?}")));
    }
    if !matches!(direction, "forward" | "backward") {
        return Err(rule(k.path_of("direction"), format!("unknown reencryption direction {direction:?}")));
    }
    match area_type {
        "checksum" | "datashift-checksum" => {
            area.string("hash")?;
            area.int("sector_size")?;
            let s = area.uint32("sector_size")?;
            if s < SECTOR as u32 || !s.is_power_of_two() {
                return Err(rule(area.path_of("sector_size"), format!("{s} is not a power of two from 512")));
            }
        }
        "datashift" | "datashift-journal" => {
            let shift = area.string("shift_size").map(|s| parse_uint64(s).unwrap_or(0))?;
            if shift == 0 || !shift.is_multiple_of(SECTOR) {
                return Err(rule(
                    area.path_of("shift_size"),
                    format!("shift size {shift} is not a positive multiple of 512"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

// The model, from metadata that passed the checks above: what remains to check is only what
// the model needs typed.

fn keyslots(root: &Obj) -> Result<Vec<Keyslot>, JsonError> {
    let keyslots = root.object("keyslots")?;
    let mut out = Vec::with_capacity(keyslots.map.len());
    for (id, key, v) in keyslots.members()? {
        let k = as_obj(v, keyslots.path_of(key))?;
        let kind = match k.string("type")? {
            "luks2" => KeyslotKind::Luks2,
            "reencrypt" => KeyslotKind::Reencrypt,
            other => KeyslotKind::Unknown(other.to_owned()),
        };
        let luks2 = kind == KeyslotKind::Luks2;
        let key_size = k.uint32("key_size")? as usize;
        let area = k.object("area")?;
        let (area_key_size, encryption) = match luks2 {
            true => (area.uint32("key_size")? as usize, area.string("encryption")?.to_owned()),
            false => (0, area.map.get("encryption").and_then(Value::as_str).unwrap_or_default().to_owned()),
        };
        if luks2 && key_size > MAX_KEY {
            return Err(rule(
                k.path_of("key_size"),
                format!("{key_size}-byte key, more than the {MAX_KEY} supported"),
            ));
        }
        if luks2 && area_key_size > MAX_KEY {
            return Err(rule(
                area.path_of("key_size"),
                format!("{area_key_size}-byte key, more than the {MAX_KEY} supported"),
            ));
        }
        let (kdf, af) = match luks2 {
            true => {
                let af = k.object("af")?;
                let af =
                    AfParams { stripes: af.uint32("stripes")?, hash: HashAlg::from_name(af.string("hash")?) };
                (kdf(&k.object("kdf")?)?, af)
            }
            false => {
                let name =
                    k.map.get("kdf").and_then(|v| v.get("type")).and_then(Value::as_str).unwrap_or("none");
                (
                    Kdf::Unsupported { name: name.to_owned() },
                    AfParams { stripes: 0, hash: HashAlg::Unsupported("none".into()) },
                )
            }
        };
        out.push(Keyslot {
            id,
            kind,
            key_size,
            priority: priority(&k)?,
            kdf,
            af,
            area: Area {
                offset: area.uint64_string("offset")?,
                size: area.uint64_string("size")?,
                encryption: CipherSpec(encryption),
                key_size: area_key_size,
            },
        });
    }
    Ok(out)
}

/// `priority`: absent is normal; cryptsetup writes 0 (ignore) and 2 (prefer).
fn priority(k: &Obj) -> Result<Priority, JsonError> {
    if !k.has("priority") {
        return Ok(Priority::Normal);
    }
    match k.int("priority")? {
        0 => Ok(Priority::Ignore),
        1 => Ok(Priority::Normal),
        2 => Ok(Priority::Prefer),
        n => Err(rule(k.path_of("priority"), format!("{n} is not 0 (ignore), 1 (normal) or 2 (prefer)"))),
    }
}

fn kdf(kdf: &Obj) -> Result<Kdf, JsonError> {
    let name = kdf.string("type")?;
    Ok(match name {
        "pbkdf2" => Kdf::Pbkdf2 {
            hash: HashAlg::from_name(kdf.string("hash")?),
            iterations: kdf.uint32("iterations")?,
            salt: kdf.base64("salt")?,
        },
        "argon2i" | "argon2id" => {
            let (time, memory_kib, cpus) = (kdf.uint32("time")?, kdf.uint32("memory")?, kdf.uint32("cpus")?);
            let salt = kdf.base64("salt")?;
            match name {
                "argon2i" => Kdf::Argon2i { time, memory_kib, cpus, salt },
                _ => Kdf::Argon2id { time, memory_kib, cpus, salt },
            }
        }
        other => Kdf::Unsupported { name: other.to_owned() },
    })
}

fn segments(root: &Obj) -> Result<Vec<Segment>, JsonError> {
    let segs = root.object("segments")?;
    let mut out = Vec::with_capacity(segs.map.len());
    for (id, key, v) in segs.members()? {
        let s = as_obj(v, segs.path_of(key))?;
        let type_name = s.string("type")?;
        let kind = match type_name {
            "crypt" => SegmentKind::Crypt,
            "linear" => SegmentKind::Linear,
            other => SegmentKind::Unknown(other.to_owned()),
        };
        let crypt = matches!(type_name, "crypt" | "hw-opal-crypt");
        let (iv_tweak, encryption, sector_size) = match crypt {
            true => {
                (s.uint64_string("iv_tweak")?, s.string("encryption")?.to_owned(), s.uint32("sector_size")?)
            }
            false => (
                s.map.get("iv_tweak").and_then(Value::as_str).and_then(parse_uint64).unwrap_or(0),
                s.map.get("encryption").and_then(Value::as_str).unwrap_or_default().to_owned(),
                s.map
                    .get("sector_size")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(512),
            ),
        };
        out.push(Segment {
            id,
            kind,
            offset: s.uint64_string("offset")?,
            size: match segment_size(&s)? {
                0 => SegmentSize::Dynamic,
                n => SegmentSize::Bytes(n),
            },
            iv_tweak,
            encryption: CipherSpec(encryption),
            sector_size,
            flags: segment_flags(&s)?,
        });
    }
    Ok(out)
}

fn digests(root: &Obj) -> Result<Vec<Digest>, JsonError> {
    let digests = root.object("digests")?;
    let keyslots = root.object("keyslots")?;
    let segments = root.object("segments")?;
    let mut out = Vec::with_capacity(digests.map.len());
    for (id, key, v) in digests.members()? {
        let d = as_obj(v, digests.path_of(key))?;
        let kind = d.string("type")?;
        if kind != "pbkdf2" {
            return Err(rule(
                d.path_of("type"),
                format!("digest type {kind:?} is not supported (only pbkdf2)"),
            ));
        }
        out.push(Digest {
            id,
            keyslots: references(
                d.array("keyslots")?,
                &d.path_of("keyslots"),
                Some(keyslots.map),
                "keyslot",
            )?,
            segments: references(
                d.array("segments")?,
                &d.path_of("segments"),
                Some(segments.map),
                "segment",
            )?,
            hash: HashAlg::from_name(d.string("hash")?),
            iterations: d.uint32("iterations")?,
            salt: d.base64("salt")?,
            digest: d.base64("digest")?,
        });
    }
    Ok(out)
}

fn tokens(root: &Obj) -> Result<Vec<Token>, JsonError> {
    let tokens = root.object("tokens")?;
    let keyslots = keyslots_target(root)?;
    let mut out = Vec::with_capacity(tokens.map.len());
    for (id, key, v) in tokens.members()? {
        let t = as_obj(v, tokens.path_of(key))?;
        out.push(Token {
            id,
            kind: t.string("type")?.to_owned(),
            keyslots: references(t.array("keyslots")?, &t.path_of("keyslots"), keyslots, "keyslot")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// Metadata as `cryptsetup luksFormat --luks2-metadata-size 16k` writes it (JSON area 12 KiB),
    /// with an argon2id and a pbkdf2 keyslot, a token and a flag.
    pub(crate) fn valid() -> Value {
        json!({
            "keyslots": {
                "0": {
                    "type": "luks2", "key_size": 64,
                    "af": {"type": "luks1", "stripes": 4000, "hash": "sha256"},
                    "area": {"type": "raw", "offset": "32768", "size": "258048",
                             "encryption": "aes-xts-plain64", "key_size": 64},
                    "kdf": {"type": "argon2id", "time": 4, "memory": 32, "cpus": 1,
                            "salt": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
                },
                "1": {
                    "type": "luks2", "key_size": 64, "priority": 2,
                    "af": {"type": "luks1", "stripes": 4000, "hash": "sha512"},
                    "area": {"type": "raw", "offset": "290816", "size": "258048",
                             "encryption": "aes-xts-plain64", "key_size": 64},
                    "kdf": {"type": "pbkdf2", "hash": "sha512", "iterations": 1000, "salt": "c2FsdA=="}
                }
            },
            "tokens": {"0": {"type": "systemd-tpm2", "keyslots": ["1"]}},
            "segments": {
                "0": {"type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
                      "encryption": "aes-xts-plain64", "sector_size": 4096}
            },
            "digests": {
                "0": {"type": "pbkdf2", "keyslots": ["0", "1"], "segments": ["0"], "hash": "sha256",
                      "iterations": 1000, "salt": "ZGlnZXN0LXNhbHQ=", "digest": "ZGlnZXN0"}
            },
            "config": {"json_size": "12288", "keyslots_size": "16744448", "flags": ["allow-discards"]}
        })
    }

    pub(crate) const JSON_AREA: u64 = 12288;

    fn check(v: &Value) -> Result<Metadata, JsonError> {
        metadata(v.as_object().unwrap(), JSON_AREA)
    }

    /// The JSON path and the message of the refusal of `v`.
    fn refusal(v: &Value) -> (String, String) {
        let e = check(v).expect_err("refused");
        (e.path.clone(), e.to_string())
    }

    fn set(v: &mut Value, pointer: &str, new: Value) {
        *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = new;
    }

    fn remove(v: &mut Value, pointer: &str) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
    }

    #[test]
    fn valid_metadata_maps_into_the_model() {
        let m = check(&valid()).unwrap();
        assert_eq!(
            (m.json_size, m.keyslots_size, m.copy_size(), m.areas_end()),
            (12288, 16744448, 16384, 16777216)
        );
        let k0 = &m.keyslots[0];
        assert_eq!(
            (k0.id, &k0.kind, k0.key_size, k0.priority),
            (0, &KeyslotKind::Luks2, 64, Priority::Normal)
        );
        assert_eq!(k0.kdf, Kdf::Argon2id { time: 4, memory_kib: 32, cpus: 1, salt: (0..32).collect() });
        assert_eq!(k0.af, AfParams { stripes: 4000, hash: HashAlg::Sha256 });
        assert_eq!((k0.area.offset, k0.area.size, k0.area.key_size), (32768, 258048, 64));
        let k1 = &m.keyslots[1];
        assert_eq!(k1.priority, Priority::Prefer);
        assert_eq!(k1.kdf, Kdf::Pbkdf2 { hash: HashAlg::Sha512, iterations: 1000, salt: b"salt".to_vec() });
        let s = &m.segments[0];
        assert_eq!((s.offset, s.size, s.sector_size, s.iv_tweak), (16 << 20, SegmentSize::Dynamic, 4096, 0));
        let d = &m.digests[0];
        assert_eq!((&d.keyslots, &d.segments, &d.digest), (&vec![0, 1], &vec![0], &b"digest".to_vec()));
        assert_eq!(m.tokens, [Token { id: 0, kind: "systemd-tpm2".into(), keyslots: vec![1] }]);
        assert_eq!(m.flags, ["allow-discards"]);
        assert!(m.mandatory_requirements.is_empty());
    }

    #[test]
    fn a_keyslot_must_be_in_exactly_one_digest() {
        let mut v = valid();
        set(&mut v, "/digests/0/keyslots", json!(["0"]));
        assert_eq!(refusal(&v).0, "keyslots.1");
        let mut v = valid();
        set_or_insert(&mut v, "/digests/1", json!({"type": "pbkdf2", "keyslots": ["1"], "segments": []}));
        assert_eq!(
            refusal(&v),
            ("keyslots.1".into(), "keyslots.1: keyslot 1 is in 2 digests; it must be in exactly one".into())
        );
    }

    #[test]
    fn references_must_name_existing_objects() {
        let mut v = valid();
        set(&mut v, "/digests/0/segments", json!(["0", "1"]));
        assert_eq!(refusal(&v).1, "digests.0.segments.1: segment \"1\" does not exist");
        let mut v = valid();
        set(&mut v, "/tokens/0/keyslots", json!(["7"]));
        assert_eq!(refusal(&v).0, "tokens.0.keyslots.0");
        let mut v = valid();
        set(&mut v, "/tokens/0/keyslots", json!([1]));
        assert_eq!(refusal(&v).1, "tokens.0.keyslots.0: expected a string, found an integer");
    }

    #[test]
    fn keyslot_areas_lie_after_the_metadata_inside_the_keyslots_area_and_apart() {
        let mut v = valid();
        set(&mut v, "/keyslots/1/area/offset", json!("28672"));
        set(&mut v, "/keyslots/1/area/size", json!("4096"));
        assert_eq!(
            refusal(&v).1,
            "keyslots.1.area.offset: area at 28672 lies in the first 32768 bytes of metadata"
        );
        let mut v = valid();
        set(&mut v, "/keyslots/1/area/offset", json!("290815"));
        assert_eq!(refusal(&v).1, "keyslots.1.area: area at 290815 overlaps keyslot 0's area");
        let mut v = valid();
        set(&mut v, "/keyslots/1/area/size", json!("16486401"));
        assert!(refusal(&v).1.contains("past the keyslots area's end at 16777216"));
        let mut v = valid();
        set(&mut v, "/keyslots/1/area/size", json!("0"));
        assert_eq!(refusal(&v).0, "keyslots.1.area.size");
    }

    #[test]
    fn uint64_strings_are_strict() {
        for bad in ["-1", "18446744073709551616", "+512", " 512", "0x200", ""] {
            let mut v = valid();
            set(&mut v, "/segments/0/offset", json!(bad));
            assert_eq!(refusal(&v).0, "segments.0.offset", "{bad:?}");
        }
        let mut v = valid();
        // The largest size that is a multiple of the 4096-byte sectors.
        set(&mut v, "/segments/0/size", json!("18446744073709547520"));
        assert_eq!(check(&v).unwrap().segments[0].size, SegmentSize::Bytes(u64::MAX - 4095));
    }

    #[test]
    fn crypt_segments_need_their_fields() {
        for (pointer, bad) in [
            ("/segments/0/sector_size", json!(1023)),
            ("/segments/0/sector_size", json!("4096")),
            ("/segments/0/sector_size", json!(0)),
            ("/segments/0/iv_tweak", json!(0)),
            ("/segments/0/encryption", json!("")),
            ("/segments/0/flags", json!("backup")),
            ("/segments/0/flags", json!([1])),
        ] {
            let mut v = valid();
            set_or_insert(&mut v, pointer, bad.clone());
            assert!(refusal(&v).0.starts_with("segments.0"), "{pointer} = {bad}");
        }
    }

    fn set_or_insert(v: &mut Value, pointer: &str, new: Value) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.into(), new);
    }

    #[test]
    fn segments_run_from_0_and_backups_come_last() {
        let linear = |offset: &str, flags: Value| json!({"type": "linear", "offset": offset, "size": "512", "flags": flags});
        let mut v = valid();
        set(&mut v, "/segments/0/size", json!("1048576"));
        set_or_insert(&mut v, "/segments/1", linear("17825792", json!([])));
        set_or_insert(&mut v, "/segments/2", linear("512", json!(["backup-x"])));
        let m = check(&v).unwrap();
        assert_eq!(
            m.segments.iter().map(|s| &s.kind).collect::<Vec<_>>(),
            [&SegmentKind::Crypt, &SegmentKind::Linear, &SegmentKind::Linear]
        );
        let mut gap = v.clone();
        remove(&mut gap, "/segments/1");
        assert!(refusal(&gap).1.contains("gap"));
        let mut after = v.clone();
        set(&mut after, "/segments/1/flags", json!(["backup-y"]));
        set(&mut after, "/segments/2/flags", json!([]));
        assert_eq!(refusal(&after).1, "segments.2: regular segment 2 comes after backup segment 1");
    }

    #[test]
    fn only_the_last_regular_segment_is_dynamic_and_none_overlap() {
        let mut v = valid();
        set_or_insert(&mut v, "/segments/1", json!({"type": "linear", "offset": "33554432", "size": "512"}));
        assert_eq!(refusal(&v).1, "segments.0: only the last regular segment may be dynamic");
        set(&mut v, "/segments/0/size", json!("16777216"));
        assert!(check(&v).is_ok());
        set(&mut v, "/segments/0/size", json!("16781312"));
        assert_eq!(refusal(&v).1, "segments.1: segment at offset 33554432 overlaps segment 0");
    }

    #[test]
    fn config_sizes_are_luks2_sizes_that_leave_room_for_the_data() {
        let mut v = valid();
        set(&mut v, "/config/json_size", json!("12289"));
        assert_eq!(refusal(&v).0, "config.json_size");
        let mut v = valid();
        set(&mut v, "/config/keyslots_size", json!("16748544"));
        assert!(refusal(&v).1.contains("reach past the data at offset 16777216"));
        let mut v = valid();
        set(&mut v, "/config/keyslots_size", json!("4095"));
        assert_eq!(refusal(&v).0, "config.keyslots_size");
        // A detached header's data starts at 0: no room to check.
        let mut v = valid();
        set(&mut v, "/segments/0/offset", json!("0"));
        assert!(check(&v).is_ok());
        // The binary header's area size must be the one the JSON states.
        assert_eq!(metadata(valid().as_object().unwrap(), 28672).unwrap_err().path, "config.json_size");
    }

    #[test]
    fn leftover_kdf_parameters_are_ignored_as_cryptsetup_drops_them() {
        let mut v = valid();
        set_or_insert(&mut v, "/keyslots/1/kdf/time", json!(4));
        set_or_insert(&mut v, "/keyslots/0/kdf/iterations", json!(1000));
        assert!(check(&v).is_ok());
        remove(&mut v, "/keyslots/1/kdf/iterations");
        assert_eq!(refusal(&v).1, "keyslots.1.kdf.iterations: missing");
    }

    #[test]
    fn typed_fields_the_model_needs_name_their_path() {
        let mut v = valid();
        set(&mut v, "/keyslots/0/kdf/salt", json!("not base64!"));
        assert_eq!(refusal(&v).1, "keyslots.0.kdf.salt: \"not base64!\" is not valid base64");
        let mut v = valid();
        set(&mut v, "/keyslots/1/priority", json!(3));
        assert_eq!(refusal(&v).0, "keyslots.1.priority");
        let mut v = valid();
        set(&mut v, "/keyslots/0/key_size", json!(-1));
        assert_eq!(refusal(&v).1, "keyslots.0.key_size: -1 is not an unsigned 32-bit integer");
        let mut v = valid();
        set(&mut v, "/digests/0/type", json!("hmac"));
        assert_eq!(refusal(&v).0, "digests.0.type");
        let mut v = valid();
        set(&mut v, "/keyslots/0/af/type", json!(42));
        assert_eq!(refusal(&v).1, "keyslots.0.af.type: expected a string, found an integer");
    }

    #[test]
    fn unknown_kdf_and_keyslot_types_load_for_unlock_to_refuse_by_name() {
        let mut v = valid();
        set(&mut v, "/keyslots/0/kdf", json!({"type": "argon2", "time": 1}));
        assert_eq!(check(&v).unwrap().keyslots[0].kdf, Kdf::Unsupported { name: "argon2".into() });
        let mut v = valid();
        set(
            &mut v,
            "/keyslots/0",
            json!({"type": "future", "key_size": 64,
            "area": {"type": "exotic", "offset": "32768", "size": "4096"}}),
        );
        set(&mut v, "/digests/0/keyslots", json!(["1"]));
        let k = check(&v).unwrap().keyslots[0].clone();
        assert_eq!(
            (k.kind, k.kdf),
            (KeyslotKind::Unknown("future".into()), Kdf::Unsupported { name: "none".into() })
        );
    }

    #[test]
    fn mandatory_requirements_are_kept_and_reencryption_is_consistent() {
        let mut v = valid();
        set_or_insert(&mut v, "/config/requirements", json!({"mandatory": ["unknown-feature"]}));
        assert_eq!(check(&v).unwrap().mandatory_requirements, ["unknown-feature"]);
        // Online reencryption needs its backup segments (checked first) and its keyslot.
        set(&mut v, "/config/requirements/mandatory", json!(["online-reencrypt-v2"]));
        assert_eq!(
            refusal(&v).1,
            "segments: online reencryption needs backup-final and backup-previous segments"
        );
        set(&mut v, "/config/requirements/mandatory", json!(["online-reencrypt-v2", "online-reencrypt-v3"]));
        assert_eq!(refusal(&v).0, "config.requirements.mandatory");
        set(&mut v, "/config/requirements/mandatory", json!([1]));
        assert_eq!(refusal(&v).0, "config.requirements.mandatory.0");
    }

    #[test]
    fn top_level_objects_are_required_with_their_types() {
        for key in ["keyslots", "tokens", "segments", "digests", "config"] {
            let mut v = valid();
            remove(&mut v, &format!("/{key}"));
            assert!(check(&v).is_err(), "without {key}");
            let mut v = valid();
            set(&mut v, &format!("/{key}"), json!(42));
            assert!(check(&v).is_err(), "{key} = 42");
        }
        let mut v = valid();
        set(&mut v, "/tokens", json!({}));
        set(&mut v, "/digests/0/keyslots", json!([]));
        set(&mut v, "/keyslots", json!({"01": {}}));
        assert_eq!(
            refusal(&v).1,
            "keyslots.01: \"01\" is not an object id (a decimal number without leading zeros)"
        );
    }
}
