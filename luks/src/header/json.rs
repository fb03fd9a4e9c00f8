//! The LUKS2 JSON area: its framing (one object, then only NUL bytes) and typed access to the
//! parsed metadata that names the JSON path of whatever is wrong.

use serde_json::{Map, Value};

/// Nesting json-c (cryptsetup's parser) accepts by default.
pub const MAX_DEPTH: usize = 32;

/// What is wrong in the JSON metadata, and where (`keyslots.1.area.offset`; empty for the
/// area as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct JsonError {
    pub path: String,
    pub problem: Problem,
}

/// The kinds of JSON problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the JSON area must start with '{{', not byte 0x{0:02x}")]
    Opening(u8),
    #[error("no NUL byte ends the JSON text in its area")]
    Unterminated,
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error(
        "byte 0x{byte:02x} at offset {offset} of the JSON area, after the JSON text (only NUL may follow)"
    )]
    TrailingByte { offset: usize, byte: u8 },
    #[error("missing")]
    Missing,
    #[error("expected {expected}, found {found}")]
    Type { expected: &'static str, found: &'static str },
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} is not a decimal unsigned 64-bit number")]
    NotUint64(String),
    #[error("{0} is not an unsigned 32-bit integer")]
    NotUint32(String),
    #[error("{0:?} is not an object id (a decimal number without leading zeros)")]
    Id(String),
    #[error("{0:?} is not valid base64")]
    Base64(String),
    #[error("{0}")]
    Rule(String),
}

pub(crate) fn err(path: impl Into<String>, problem: Problem) -> JsonError {
    JsonError { path: path.into(), problem }
}

pub(crate) fn rule(path: impl Into<String>, text: impl Into<String>) -> JsonError {
    err(path, Problem::Rule(text.into()))
}

/// Parses the JSON area as cryptsetup does: a JSON object from the first byte, then nothing
/// but NUL bytes to the end of the area.
pub(crate) fn parse_area(area: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let first = area.first().copied().unwrap_or(0);
    if first != b'{' {
        return Err(err("", Problem::Opening(first)));
    }
    let end = area.iter().position(|b| *b == 0).ok_or(err("", Problem::Unterminated))?;
    let text = area.get(..end).unwrap_or_default();
    let value: Value = serde_json::from_slice(text).map_err(|e| err("", Problem::Syntax(e.to_string())))?;
    // json-c stops right after the object: whitespace after it is a byte where NUL must be.
    if text.last() != Some(&b'}') {
        let at = text.iter().rposition(|b| *b == b'}').map_or(end, |p| p + 1);
        return Err(err("", Problem::TrailingByte { offset: at, byte: text.get(at).copied().unwrap_or(0) }));
    }
    if let Some(offset) = area.iter().skip(end).position(|b| *b != 0).map(|p| p + end) {
        let byte = area.get(offset).copied().unwrap_or(0);
        return Err(err("", Problem::TrailingByte { offset, byte }));
    }
    if depth(&value) > MAX_DEPTH {
        return Err(err("", Problem::TooDeep));
    }
    match value {
        Value::Object(map) => Ok(map),
        other => Err(err("", Problem::Type { expected: "an object", found: type_name(&other) })),
    }
}

/// Levels of nesting of arrays and objects: `1` is 0, `{}` is 1, `{"a":[]}` is 2.
fn depth(v: &Value) -> usize {
    // Iterative, so that no input can exhaust the stack (serde_json bounds it too).
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// An object and its path, with the typed getters cryptsetup's `json_contains*` amount to.
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, path: impl Into<String>) -> Obj<'a> {
        Obj { map, path: path.into() }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn value(&self, key: &str) -> Result<&'a Value, JsonError> {
        self.map.get(key).ok_or_else(|| err(self.path_of(key), Problem::Missing))
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        get: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, JsonError> {
        let v = self.value(key)?;
        get(v).ok_or_else(|| err(self.path_of(key), Problem::Type { expected, found: type_name(v) }))
    }

    pub(crate) fn object(&self, key: &str) -> Result<Obj<'a>, JsonError> {
        let map = self.typed(key, "an object", Value::as_object)?;
        Ok(Obj::new(map, self.path_of(key)))
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a Vec<Value>, JsonError> {
        self.typed(key, "an array", Value::as_array)
    }

    /// A non-empty string (`json_contains_string`).
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, JsonError> {
        let s = self.typed(key, "a string", Value::as_str)?;
        if s.is_empty() {
            return Err(err(self.path_of(key), Problem::Empty));
        }
        Ok(s)
    }

    /// A JSON integer (json-c's `json_type_int`: no fraction, no exponent), any sign.
    pub(crate) fn int(&self, key: &str) -> Result<i128, JsonError> {
        self.typed(key, "an integer", |v| match v {
            Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
            _ => None,
        })
    }

    /// An integer from 0 to 2^32 - 1 (`validate_json_uint32`).
    pub(crate) fn uint32(&self, key: &str) -> Result<u32, JsonError> {
        let n = self.int(key)?;
        u32::try_from(n).map_err(|_| err(self.path_of(key), Problem::NotUint32(n.to_string())))
    }

    /// A non-empty string of decimal digits that fits 64 bits: how LUKS2 writes offsets and
    /// sizes.
    pub(crate) fn uint64_string(&self, key: &str) -> Result<u64, JsonError> {
        let s = self.string(key)?;
        parse_uint64(s).ok_or_else(|| err(self.path_of(key), Problem::NotUint64(s.to_owned())))
    }

    /// A base64 string (salts, digests).
    pub(crate) fn base64(&self, key: &str) -> Result<Vec<u8>, JsonError> {
        let s = self.string(key)?;
        super::base64::decode(s).ok_or_else(|| err(self.path_of(key), Problem::Base64(s.to_owned())))
    }

    /// The members in id order (numerically), each key checked to be an id.
    pub(crate) fn members(&self) -> Result<Vec<(u32, &'a str, &'a Value)>, JsonError> {
        let mut out = Vec::with_capacity(self.map.len());
        for (k, v) in self.map {
            let id = parse_id(k).ok_or_else(|| err(self.path_of(k), Problem::Id(k.clone())))?;
            out.push((id, k.as_str(), v));
        }
        out.sort_by_key(|(id, _, _)| *id);
        Ok(out)
    }
}

/// Decimal digits only, no sign, no overflow (stricter than `strtoull`, which would take
/// `-1` as 2^64 - 1).
pub(crate) fn parse_uint64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An object key naming a keyslot, segment, digest or token: canonical decimal (`0`, `17`;
/// not `017`, which would name no object cryptsetup looks up).
pub(crate) fn parse_id(s: &str) -> Option<u32> {
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    parse_uint64(s).and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(text: &str, len: usize) -> Vec<u8> {
        let mut a = text.as_bytes().to_vec();
        a.resize(len, 0);
        a
    }

    #[test]
    fn an_object_then_nul_bytes_is_the_only_framing() {
        assert!(parse_area(&area(r#"{"a":1}"#, 64)).is_ok());
        assert_eq!(parse_area(&area(r#" {"a":1}"#, 64)).unwrap_err().problem, Problem::Opening(b' '));
        assert_eq!(parse_area(&area(r#"{"a":1}"#, 7)).unwrap_err().problem, Problem::Unterminated);
        assert_eq!(
            parse_area(&area(r#"{"a":1} "#, 64)).unwrap_err().problem,
            Problem::TrailingByte { offset: 7, byte: b' ' }
        );
        let mut a = area(r#"{"a":1}"#, 64);
        a[40] = b'x';
        assert_eq!(parse_area(&a).unwrap_err().problem, Problem::TrailingByte { offset: 40, byte: b'x' });
        assert!(matches!(parse_area(&area(r#"{"a":1"#, 64)).unwrap_err().problem, Problem::Syntax(_)));
        assert!(matches!(parse_area(&area(r#"{"a":1}{}"#, 64)).unwrap_err().problem, Problem::Syntax(_)));
    }

    #[test]
    fn nesting_is_bounded_as_json_c_bounds_it() {
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse_area(&area(&ok, 256)).is_ok());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(parse_area(&area(&deep, 256)).unwrap_err().problem, Problem::TooDeep);
    }

    #[test]
    fn numbers_in_strings_are_strict_decimal() {
        assert_eq!(parse_uint64("18446744073709551615"), Some(u64::MAX));
        for bad in ["18446744073709551616", "-1", "+1", " 1", "1 ", "0x10", ""] {
            assert_eq!(parse_uint64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("31"), Some(31));
        assert_eq!(parse_id("01"), None);
        assert_eq!(parse_id("4294967296"), None);
    }

    #[test]
    fn getters_name_the_path_and_the_type_found() {
        let v: Value = serde_json::from_str(r#"{"n":-1,"f":1.0,"s":"","u":"12","big":4294967296}"#).unwrap();
        let o = Obj::new(v.as_object().unwrap(), "keyslots.0");
        assert_eq!(
            o.uint32("n").unwrap_err().to_string(),
            "keyslots.0.n: -1 is not an unsigned 32-bit integer"
        );
        assert_eq!(
            o.int("f").unwrap_err().to_string(),
            "keyslots.0.f: expected an integer, found a fractional number"
        );
        assert_eq!(o.string("s").unwrap_err().to_string(), "keyslots.0.s: must not be empty");
        assert_eq!(o.string("x").unwrap_err().to_string(), "keyslots.0.x: missing");
        assert_eq!(o.uint64_string("u").unwrap(), 12);
        assert!(o.uint32("big").is_err());
    }
}
