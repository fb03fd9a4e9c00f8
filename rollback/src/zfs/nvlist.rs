//! ZFS's name-value lists: an XDR encoder for ioctl arguments and a bounds-checked decoder for the NATIVE and XDR encodings.
//!
//! The layout follows libnvpair (module/nvpair/nvpair.c in OpenZFS):
//!
//! ```text
//! header   encoding (0 native, 1 XDR), endianness (1 little), 0, 0
//! list     version (0), nvflag (NV_UNIQUE_NAME = 1), pairs…, end marker
//! ```
//!
//! An XDR pair is `encoded size, decoded size, name, type, nelem, data`, all
//! big-endian 4-byte units, and the list ends with two zero words. The
//! decoded size is what the pair takes in memory once unpacked
//! (`NVP_SIZE_CALC`); the kernel's decoder trusts both sizes, so they are
//! computed exactly as libnvpair does, quirks included (an empty numeric
//! array claims a 4-byte count it does not write).
//!
//! A NATIVE pair is the in-memory `nvpair_t` copied out: `nvp_size` (i32),
//! `nvp_name_sz` (i16), reserved (i16), `nvp_value_elem` (i32), `nvp_type`
//! (i32), the name with its NUL padded to 8 bytes, then the value padded to
//! 8 bytes. An embedded list's pairs follow the pair that holds its
//! `nvlist_t`, and every list ends with a zero word. The kernel's ioctls
//! answer in this encoding.
//!
//! One deliberate difference from userland libnvpair: 8- and 16-bit values
//! are XDR-encoded zero-extended, as the kernel's XDR code does (and
//! requires: it rejects a char above 0xff), where libtirpc sign-extends
//! negative ones. The decoder accepts both.

use std::fmt;

/// The only nvlist version there is.
pub const NV_VERSION: i32 = 0;
/// Names are unique within the list (what `fnvlist_alloc` sets).
pub const NV_UNIQUE_NAME: u32 = 0x1;
/// Deepest nesting of embedded lists read or written (the kernel's own limit is 20).
pub const MAX_DEPTH: usize = 64;

const NV_ENCODE_NATIVE: u8 = 0;
const NV_ENCODE_XDR: u8 = 1;
/// sizeof (nvpair_t): nvp_size, nvp_name_sz, nvp_reserve, nvp_value_elem, nvp_type.
const NVPAIR_HEADER: usize = 16;
/// sizeof (nvlist_t), already a multiple of 8: version, nvflag, priv pointer, flag, pad.
const NVLIST_STRUCT: usize = 24;
/// `nvp_name_sz` is an int16_t, and counts the NUL.
const MAX_NAME: usize = i16::MAX as usize - 1;

/// `data_type_t` from include/sys/nvpair.h.
mod ty {
    pub const BOOLEAN: i32 = 1;
    pub const BYTE: i32 = 2;
    pub const INT16: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT32: i32 = 5;
    pub const UINT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const UINT64: i32 = 8;
    pub const STRING: i32 = 9;
    pub const BYTE_ARRAY: i32 = 10;
    pub const INT16_ARRAY: i32 = 11;
    pub const UINT16_ARRAY: i32 = 12;
    pub const INT32_ARRAY: i32 = 13;
    pub const UINT32_ARRAY: i32 = 14;
    pub const INT64_ARRAY: i32 = 15;
    pub const UINT64_ARRAY: i32 = 16;
    pub const STRING_ARRAY: i32 = 17;
    pub const HRTIME: i32 = 18;
    pub const NVLIST: i32 = 19;
    pub const NVLIST_ARRAY: i32 = 20;
    pub const BOOLEAN_VALUE: i32 = 21;
    pub const INT8: i32 = 22;
    pub const UINT8: i32 = 23;
    pub const BOOLEAN_ARRAY: i32 = 24;
    pub const INT8_ARRAY: i32 = 25;
    pub const UINT8_ARRAY: i32 = 26;
    pub const DOUBLE: i32 = 27;
}

/// One value, by libnvpair's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// DATA_TYPE_BOOLEAN: a name without a value, present or not.
    Boolean,
    BooleanValue(bool),
    Byte(u8),
    Int8(i8),
    Uint8(u8),
    Int16(i16),
    Uint16(u16),
    Int32(i32),
    Uint32(u32),
    Int64(i64),
    Uint64(u64),
    Hrtime(i64),
    Double(f64),
    String(String),
    ByteArray(Vec<u8>),
    BooleanArray(Vec<bool>),
    Int8Array(Vec<i8>),
    Uint8Array(Vec<u8>),
    Int16Array(Vec<i16>),
    Uint16Array(Vec<u16>),
    Int32Array(Vec<i32>),
    Uint32Array(Vec<u32>),
    Int64Array(Vec<i64>),
    Uint64Array(Vec<u64>),
    StringArray(Vec<String>),
    NvList(NvList),
    NvListArray(Vec<NvList>),
}

/// A list of named values, in order. Lists built here have [`NV_UNIQUE_NAME`]; decoded ones
/// keep whatever flags and duplicates the stream held.
#[derive(Debug, Clone, PartialEq)]
pub struct NvList {
    pub flags: u32,
    pub pairs: Vec<(String, Value)>,
}

impl Default for NvList {
    fn default() -> Self {
        NvList::new()
    }
}

/// Why a list could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("nvlist name {name:?}: {problem}")]
    Name { name: String, problem: &'static str },
    #[error("nvlist pair {name:?}: a string holds a NUL byte")]
    Nul { name: String },
    #[error("nvlist pair {name:?}: more than 2^31 bytes or elements")]
    TooLarge { name: String },
    #[error("nvlist pair {name:?}: lists nested deeper than {MAX_DEPTH}")]
    TooDeep { name: String },
}

/// Why bytes are not an nvlist; `offset` counts from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("nvlist: {what} is cut off at byte {offset}")]
    Truncated { offset: usize, what: &'static str },
    #[error("nvlist: unknown encoding {encoding} (expected 0 native or 1 XDR)")]
    Encoding { encoding: u8 },
    #[error("nvlist: bad {what} at byte {offset}: {detail}")]
    Invalid { offset: usize, what: &'static str, detail: String },
    #[error("nvlist: lists nested deeper than {MAX_DEPTH} at byte {offset}")]
    TooDeep { offset: usize },
}

impl NvList {
    /// An empty list with unique names (`fnvlist_alloc`).
    pub fn new() -> NvList {
        NvList { flags: NV_UNIQUE_NAME, pairs: Vec::new() }
    }

    /// Adds a pair at the end; with unique names an earlier pair of that name goes, as `nvlist_add_*` does.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) -> &mut NvList {
        let name = name.into();
        if self.flags & NV_UNIQUE_NAME != 0 {
            self.pairs.retain(|(n, _)| *n != name);
        }
        self.pairs.push((name, value));
        self
    }

    /// [`insert`](Self::insert) for building a list in one expression.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> NvList {
        self.insert(name, value);
        self
    }

    /// The value of the last pair named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.pairs.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn get_u64(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(Value::Uint64(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn get_list(&self, name: &str) -> Option<&NvList> {
        match self.get(name) {
            Some(Value::NvList(l)) => Some(l),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `nvlist_pack(…, NV_ENCODE_XDR)`: what the kernel reads from `zc_nvlist_src`.
    pub fn pack_xdr(&self) -> Result<Vec<u8>, EncodeError> {
        let little = u8::from(cfg!(target_endian = "little"));
        let mut out = vec![NV_ENCODE_XDR, little, 0, 0];
        let claimed = xdr_write_list(&mut out, self, 0, "")?;
        // nvs_getsize_pairs refuses a list whose pairs add up past INT32_MAX.
        if claimed + 4 > i32::MAX as u64 {
            return Err(EncodeError::TooLarge { name: String::new() });
        }
        // nvlist_pack hands back the whole buffer nvlist_size asked for, zeros after the list
        // where empty arrays claimed more than they wrote.
        out.resize(out.len().max(4 + claimed as usize), 0);
        Ok(out)
    }

    /// `nvlist_unpack`: a NATIVE or XDR packed list, by its header. Bytes after the list are ignored,
    /// as libnvpair does (the kernel's answers sit in larger buffers).
    pub fn unpack(bytes: &[u8]) -> Result<NvList, DecodeError> {
        let header = bytes.get(..4).ok_or(DecodeError::Truncated { offset: bytes.len(), what: "header" })?;
        let (encoding, endian) = (header[0], header[1]);
        match encoding {
            NV_ENCODE_XDR => {
                let mut r = Reader { buf: bytes, pos: 4, little: false };
                Ok(xdr_read_list(&mut r, 0)?.0)
            }
            NV_ENCODE_NATIVE => {
                let little = match endian {
                    0 => false,
                    1 => true,
                    e => {
                        return Err(DecodeError::Invalid {
                            offset: 1,
                            what: "endianness",
                            detail: format!("{e} (expected 0 or 1)"),
                        });
                    }
                };
                let mut r = Reader { buf: bytes, pos: 4, little };
                native_read_top(&mut r)
            }
            encoding => Err(DecodeError::Encoding { encoding }),
        }
    }
}

impl Value {
    fn type_code(&self) -> i32 {
        match self {
            Value::Boolean => ty::BOOLEAN,
            Value::BooleanValue(_) => ty::BOOLEAN_VALUE,
            Value::Byte(_) => ty::BYTE,
            Value::Int8(_) => ty::INT8,
            Value::Uint8(_) => ty::UINT8,
            Value::Int16(_) => ty::INT16,
            Value::Uint16(_) => ty::UINT16,
            Value::Int32(_) => ty::INT32,
            Value::Uint32(_) => ty::UINT32,
            Value::Int64(_) => ty::INT64,
            Value::Uint64(_) => ty::UINT64,
            Value::Hrtime(_) => ty::HRTIME,
            Value::Double(_) => ty::DOUBLE,
            Value::String(_) => ty::STRING,
            Value::ByteArray(_) => ty::BYTE_ARRAY,
            Value::BooleanArray(_) => ty::BOOLEAN_ARRAY,
            Value::Int8Array(_) => ty::INT8_ARRAY,
            Value::Uint8Array(_) => ty::UINT8_ARRAY,
            Value::Int16Array(_) => ty::INT16_ARRAY,
            Value::Uint16Array(_) => ty::UINT16_ARRAY,
            Value::Int32Array(_) => ty::INT32_ARRAY,
            Value::Uint32Array(_) => ty::UINT32_ARRAY,
            Value::Int64Array(_) => ty::INT64_ARRAY,
            Value::Uint64Array(_) => ty::UINT64_ARRAY,
            Value::StringArray(_) => ty::STRING_ARRAY,
            Value::NvList(_) => ty::NVLIST,
            Value::NvListArray(_) => ty::NVLIST_ARRAY,
        }
    }

    /// `nvp_value_elem`.
    fn nelem(&self) -> usize {
        match self {
            Value::Boolean => 0,
            Value::ByteArray(v) | Value::Uint8Array(v) => v.len(),
            Value::BooleanArray(v) => v.len(),
            Value::Int8Array(v) => v.len(),
            Value::Int16Array(v) => v.len(),
            Value::Uint16Array(v) => v.len(),
            Value::Int32Array(v) => v.len(),
            Value::Uint32Array(v) => v.len(),
            Value::Int64Array(v) => v.len(),
            Value::Uint64Array(v) => v.len(),
            Value::StringArray(v) => v.len(),
            Value::NvListArray(v) => v.len(),
            _ => 1,
        }
    }

    /// `i_get_value_size` with the data: the value's size in an unpacked nvpair.
    fn native_size(&self) -> u64 {
        let n = self.nelem() as u64;
        match self {
            Value::Boolean => 0,
            Value::Byte(_) | Value::Int8(_) | Value::Uint8(_) => 1,
            Value::Int16(_) | Value::Uint16(_) => 2,
            Value::BooleanValue(_) | Value::Int32(_) | Value::Uint32(_) => 4,
            Value::Int64(_) | Value::Uint64(_) | Value::Hrtime(_) | Value::Double(_) => 8,
            Value::String(s) => s.len() as u64 + 1,
            Value::ByteArray(_) | Value::Int8Array(_) | Value::Uint8Array(_) => n,
            Value::Int16Array(_) | Value::Uint16Array(_) => 2 * n,
            Value::BooleanArray(_) | Value::Int32Array(_) | Value::Uint32Array(_) => 4 * n,
            Value::Int64Array(_) | Value::Uint64Array(_) => 8 * n,
            Value::StringArray(v) => 8 * n + v.iter().map(|s| s.len() as u64 + 1).sum::<u64>(),
            Value::NvList(_) => NVLIST_STRUCT as u64,
            Value::NvListArray(_) => (8 + NVLIST_STRUCT as u64) * n,
        }
    }
}

fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// `NVP_SIZE_CALC(name_sz, value_sz)`: the pair's size once unpacked.
fn nvp_size_calc(name_len: usize, value_size: u64) -> u64 {
    align8(NVPAIR_HEADER as u64 + name_len as u64 + 1) + align8(value_size)
}

/// `nvs_xdr_nvp_size` without the nested lists' part: sizes, name, type and nelem, plus the data.
fn xdr_pair_base(name_len: usize) -> u64 {
    4 + 4 + 4 + align4(name_len as u64) + 4 + 4
}

// ---- XDR encoding -------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    put_opaque(out, s.as_bytes());
}

fn put_opaque(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
    out.resize(out.len() + (align4(b.len() as u64) as usize - b.len()), 0);
}

fn check_str(s: &str, name: &str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::Nul { name: name.to_owned() });
    }
    if s.len() > i32::MAX as usize {
        return Err(EncodeError::TooLarge { name: name.to_owned() });
    }
    Ok(())
}

/// Writes a list body (version, flags, pairs, end) and returns the size libnvpair claims for it.
fn xdr_write_list(out: &mut Vec<u8>, list: &NvList, depth: usize, outer: &str) -> Result<u64, EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep { name: outer.to_owned() });
    }
    put_u32(out, NV_VERSION as u32);
    put_u32(out, list.flags);
    let mut claimed: u64 = 2 * 4 + 8;
    for (name, value) in &list.pairs {
        claimed += xdr_write_pair(out, name, value, depth)?;
        if claimed > i32::MAX as u64 {
            return Err(EncodeError::TooLarge { name: name.clone() });
        }
    }
    put_u64(out, 0);
    Ok(claimed)
}

fn xdr_write_pair(out: &mut Vec<u8>, name: &str, value: &Value, depth: usize) -> Result<u64, EncodeError> {
    if name.len() > MAX_NAME {
        return Err(EncodeError::Name { name: name.to_owned(), problem: "longer than 32766 bytes" });
    }
    if name.contains('\0') {
        return Err(EncodeError::Name { name: name.to_owned(), problem: "holds a NUL byte" });
    }
    let too_large = || EncodeError::TooLarge { name: name.to_owned() };
    let nelem = value.nelem();
    if nelem > i32::MAX as usize {
        return Err(too_large());
    }
    let decoded = nvp_size_calc(name.len(), value.native_size());
    if decoded > i32::MAX as u64 {
        return Err(too_large());
    }
    let at = out.len();
    put_u64(out, 0); // both sizes, patched below
    put_string(out, name);
    put_u32(out, value.type_code() as u32);
    put_u32(out, nelem as u32);
    let data = xdr_write_value(out, name, value, depth)?;
    let encoded = xdr_pair_base(name.len()) + data;
    if encoded > i32::MAX as u64 {
        return Err(too_large());
    }
    out[at..at + 4].copy_from_slice(&(encoded as u32).to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&(decoded as u32).to_be_bytes());
    Ok(encoded)
}

/// Writes a value's data and returns the size `nvs_xdr_nvp_size` counts for it.
fn xdr_write_value(out: &mut Vec<u8>, name: &str, value: &Value, depth: usize) -> Result<u64, EncodeError> {
    // libnvpair writes no data at all for zero elements, but counts an array's
    // element count word all the same.
    fn array<T: Copy>(out: &mut Vec<u8>, v: &[T], width: u64, put: impl Fn(&mut Vec<u8>, T)) -> u64 {
        if !v.is_empty() {
            put_u32(out, v.len() as u32);
            for &x in v {
                put(out, x);
            }
        }
        4 + width * v.len() as u64
    }
    let claimed = match value {
        Value::Boolean => 0,
        Value::BooleanValue(b) => {
            put_u32(out, u32::from(*b));
            4
        }
        Value::Byte(b) | Value::Uint8(b) => {
            put_u32(out, u32::from(*b));
            4
        }
        Value::Int8(b) => {
            put_u32(out, u32::from(*b as u8));
            4
        }
        Value::Int16(v) => {
            put_u32(out, u32::from(*v as u16));
            4
        }
        Value::Uint16(v) => {
            put_u32(out, u32::from(*v));
            4
        }
        Value::Int32(v) => {
            put_u32(out, *v as u32);
            4
        }
        Value::Uint32(v) => {
            put_u32(out, *v);
            4
        }
        Value::Int64(v) | Value::Hrtime(v) => {
            put_u64(out, *v as u64);
            8
        }
        Value::Uint64(v) => {
            put_u64(out, *v);
            8
        }
        Value::Double(v) => {
            put_u64(out, v.to_bits());
            8
        }
        Value::String(s) => {
            check_str(s, name)?;
            put_string(out, s);
            4 + align4(s.len() as u64)
        }
        Value::ByteArray(v) => {
            put_opaque(out, v);
            align4(v.len() as u64)
        }
        Value::BooleanArray(v) => array(out, v, 4, |o, x| put_u32(o, u32::from(x))),
        Value::Int8Array(v) => array(out, v, 4, |o, x| put_u32(o, u32::from(x as u8))),
        Value::Uint8Array(v) => array(out, v, 4, |o, x| put_u32(o, u32::from(x))),
        Value::Int16Array(v) => array(out, v, 4, |o, x| put_u32(o, u32::from(x as u16))),
        Value::Uint16Array(v) => array(out, v, 4, |o, x| put_u32(o, u32::from(x))),
        Value::Int32Array(v) => array(out, v, 4, |o, x| put_u32(o, x as u32)),
        Value::Uint32Array(v) => array(out, v, 4, put_u32),
        Value::Int64Array(v) => array(out, v, 8, |o, x| put_u64(o, x as u64)),
        Value::Uint64Array(v) => array(out, v, 8, put_u64),
        Value::StringArray(v) => {
            let mut claimed = 0;
            for s in v {
                check_str(s, name)?;
                put_string(out, s);
                claimed += 4 + align4(s.len() as u64);
            }
            claimed
        }
        Value::NvList(l) => xdr_write_list(out, l, depth + 1, name)?,
        Value::NvListArray(v) => {
            let mut claimed = 0;
            for l in v {
                claimed += xdr_write_list(out, l, depth + 1, name)?;
                if claimed > i32::MAX as u64 {
                    return Err(EncodeError::TooLarge { name: name.to_owned() });
                }
            }
            claimed
        }
    };
    Ok(claimed)
}

// ---- decoding -----------------------------------------------------------------------------

/// A cursor over the whole input, so that errors can name absolute offsets.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Byte order of multi-byte numbers (XDR is always big-endian).
    little: bool,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(DecodeError::Truncated { offset: self.buf.len(), what }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let a = self.array::<4>(what)?;
        Ok(if self.little { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.u32(what).map(|v| v as i32)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let a = self.array::<8>(what)?;
        Ok(if self.little { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) })
    }

    fn invalid(&self, at: usize, what: &'static str, detail: impl fmt::Display) -> DecodeError {
        DecodeError::Invalid { offset: at, what, detail: detail.to_string() }
    }
}

/// A count from the stream, checked against what the rest of the input could hold with at
/// least `min_each` bytes per element, so that a forged count never sizes an allocation.
fn count(
    r: &Reader<'_>,
    at: usize,
    n: i32,
    min_each: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    let n = usize::try_from(n).map_err(|_| r.invalid(at, what, format!("negative count {n}")))?;
    if n.saturating_mul(min_each.max(1)) > r.remaining() {
        return Err(r.invalid(
            at,
            what,
            format!("{n} elements cannot fit in the {} bytes left", r.remaining()),
        ));
    }
    Ok(n)
}

/// Text from the stream, byte for byte: ZFS does not require UTF-8 (user properties hold any
/// bytes), so each byte that is not part of valid UTF-8 becomes one `?`. The length stays that
/// of the bytes, which the pair sizes the stream claims are checked against.
fn text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        s.push_str(chunk.valid());
        s.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    s
}

fn check_version(r: &Reader<'_>, at: usize, version: i32) -> Result<(), DecodeError> {
    if version != NV_VERSION {
        return Err(r.invalid(at, "nvlist version", format!("{version} (expected 0)")));
    }
    Ok(())
}

fn check_depth(r: &Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep { offset: r.pos });
    }
    Ok(())
}

/// Checks nelem for a type, as `i_validate_type_nelem` does.
fn check_nelem(r: &Reader<'_>, at: usize, type_code: i32, nelem: i32) -> Result<(), DecodeError> {
    let ok = match type_code {
        ty::BOOLEAN => nelem == 0,
        ty::BYTE_ARRAY..=ty::STRING_ARRAY | ty::NVLIST_ARRAY | ty::BOOLEAN_ARRAY..=ty::UINT8_ARRAY => {
            nelem >= 0
        }
        _ => nelem == 1,
    };
    if !ok {
        return Err(r.invalid(at, "element count", format!("{nelem} for type {type_code}")));
    }
    Ok(())
}

// XDR

fn xdr_string(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    let at = r.pos;
    let len = r.u32(what)? as usize;
    if len > r.remaining() {
        return Err(DecodeError::Truncated { offset: r.buf.len(), what });
    }
    let bytes = r.take(len, what)?;
    r.take(align4(len as u64) as usize - len, what)?;
    if bytes.contains(&0) {
        return Err(r.invalid(at, what, "a NUL byte inside the string"));
    }
    Ok(text(bytes))
}

/// An 8- or 16-bit value in a 4-byte XDR unit: zero-extended (the kernel) or sign-extended (libtirpc).
fn xdr_small(r: &mut Reader<'_>, bits: u32, what: &'static str) -> Result<u32, DecodeError> {
    let at = r.pos;
    let v = r.u32(what)?;
    let max = (1u32 << bits) - 1;
    let sign_extended = v >= !(max >> 1);
    if v > max && !sign_extended {
        return Err(r.invalid(at, what, format!("{v:#x} does not fit in {bits} bits")));
    }
    Ok(v & max)
}

fn xdr_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    let at = r.pos;
    match r.u32("boolean")? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(r.invalid(at, "boolean", format!("{v} (expected 0 or 1)"))),
    }
}

/// Reads a list body and returns it with the size libnvpair would claim for it.
fn xdr_read_list(r: &mut Reader<'_>, depth: usize) -> Result<(NvList, u64), DecodeError> {
    check_depth(r, depth)?;
    let at = r.pos;
    let version = r.i32("nvlist version")?;
    check_version(r, at, version)?;
    let flags = r.u32("nvlist flags")?;
    let mut list = NvList { flags, pairs: Vec::new() };
    let mut claimed: u64 = 2 * 4 + 8;
    loop {
        let start = r.pos;
        let encoded = r.i32("pair size")?;
        let decoded = r.i32("pair size")?;
        if decoded == 0 {
            // nvs_xdr_nvpair looks at the decoded size only.
            return Ok((list, claimed));
        }
        let name = xdr_string(r, "pair name")?;
        if name.len() > MAX_NAME {
            return Err(r.invalid(start, "pair name", "longer than 32766 bytes"));
        }
        let type_at = r.pos;
        let type_code = r.i32("pair type")?;
        let nelem = r.i32("element count")?;
        check_nelem(r, type_at, type_code, nelem)?;
        let (value, data) = xdr_read_value(r, type_at, type_code, nelem, depth)?;
        let enc = xdr_pair_base(name.len()) + data;
        let dec = nvp_size_calc(name.len(), value.native_size());
        if i64::from(encoded) != enc as i64 || i64::from(decoded) != dec as i64 {
            return Err(r.invalid(
                start,
                "pair sizes",
                format!("{name:?} claims {encoded}/{decoded} bytes, its data makes {enc}/{dec}"),
            ));
        }
        claimed += enc;
        list.pairs.push((name, value));
    }
}

fn xdr_read_value(
    r: &mut Reader<'_>,
    at: usize,
    type_code: i32,
    nelem: i32,
    depth: usize,
) -> Result<(Value, u64), DecodeError> {
    // Arrays: nothing at all for zero elements, else a count that must agree with nelem.
    fn array<T>(
        r: &mut Reader<'_>,
        at: usize,
        nelem: i32,
        width: usize,
        mut get: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> Result<(Vec<T>, u64), DecodeError> {
        let n = count(r, at, nelem, width, "array")?;
        let claimed = 4 + (width * n) as u64;
        if n == 0 {
            return Ok((Vec::new(), claimed));
        }
        let c = r.u32("array count")?;
        if c as usize != n {
            return Err(r.invalid(at, "array count", format!("{c}, but the pair says {n}")));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(get(r)?);
        }
        Ok((v, claimed))
    }
    let v = match type_code {
        ty::BOOLEAN => (Value::Boolean, 0),
        ty::BOOLEAN_VALUE => (Value::BooleanValue(xdr_bool(r)?), 4),
        ty::BYTE => (Value::Byte(xdr_small(r, 8, "byte")? as u8), 4),
        ty::INT8 => (Value::Int8(xdr_small(r, 8, "int8")? as u8 as i8), 4),
        ty::UINT8 => (Value::Uint8(xdr_small(r, 8, "uint8")? as u8), 4),
        ty::INT16 => (Value::Int16(xdr_small(r, 16, "int16")? as u16 as i16), 4),
        ty::UINT16 => (Value::Uint16(xdr_small(r, 16, "uint16")? as u16), 4),
        ty::INT32 => (Value::Int32(r.i32("int32")?), 4),
        ty::UINT32 => (Value::Uint32(r.u32("uint32")?), 4),
        ty::INT64 => (Value::Int64(r.u64("int64")? as i64), 8),
        ty::UINT64 => (Value::Uint64(r.u64("uint64")?), 8),
        ty::HRTIME => (Value::Hrtime(r.u64("hrtime")? as i64), 8),
        ty::DOUBLE => (Value::Double(f64::from_bits(r.u64("double")?)), 8),
        ty::STRING => {
            let s = xdr_string(r, "string")?;
            let claimed = 4 + align4(s.len() as u64);
            (Value::String(s), claimed)
        }
        ty::BYTE_ARRAY => {
            let n = count(r, at, nelem, 1, "byte array")?;
            let b = r.take(n, "byte array")?.to_vec();
            r.take(align4(n as u64) as usize - n, "byte array")?;
            (Value::ByteArray(b), align4(n as u64))
        }
        ty::BOOLEAN_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, xdr_bool)?;
            (Value::BooleanArray(v), c)
        }
        ty::INT8_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| Ok(xdr_small(r, 8, "int8")? as u8 as i8))?;
            (Value::Int8Array(v), c)
        }
        ty::UINT8_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| Ok(xdr_small(r, 8, "uint8")? as u8))?;
            (Value::Uint8Array(v), c)
        }
        ty::INT16_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| Ok(xdr_small(r, 16, "int16")? as u16 as i16))?;
            (Value::Int16Array(v), c)
        }
        ty::UINT16_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| Ok(xdr_small(r, 16, "uint16")? as u16))?;
            (Value::Uint16Array(v), c)
        }
        ty::INT32_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| r.i32("int32"))?;
            (Value::Int32Array(v), c)
        }
        ty::UINT32_ARRAY => {
            let (v, c) = array(r, at, nelem, 4, |r| r.u32("uint32"))?;
            (Value::Uint32Array(v), c)
        }
        ty::INT64_ARRAY => {
            let (v, c) = array(r, at, nelem, 8, |r| Ok(r.u64("int64")? as i64))?;
            (Value::Int64Array(v), c)
        }
        ty::UINT64_ARRAY => {
            let (v, c) = array(r, at, nelem, 8, |r| r.u64("uint64"))?;
            (Value::Uint64Array(v), c)
        }
        ty::STRING_ARRAY => {
            let n = count(r, at, nelem, 4, "string array")?;
            let mut v = Vec::with_capacity(n);
            let mut claimed = 0;
            for _ in 0..n {
                let s = xdr_string(r, "string array")?;
                claimed += 4 + align4(s.len() as u64);
                v.push(s);
            }
            (Value::StringArray(v), claimed)
        }
        ty::NVLIST => {
            let (l, c) = xdr_read_list(r, depth + 1)?;
            (Value::NvList(l), c)
        }
        ty::NVLIST_ARRAY => {
            // An embedded list takes at least version, flags and the end marker.
            let n = count(r, at, nelem, 16, "nvlist array")?;
            let mut v = Vec::with_capacity(n);
            let mut claimed = 0;
            for _ in 0..n {
                let (l, c) = xdr_read_list(r, depth + 1)?;
                claimed += c;
                v.push(l);
            }
            (Value::NvListArray(v), claimed)
        }
        t => return Err(r.invalid(at, "pair type", format!("unknown type {t}"))),
    };
    Ok(v)
}

// NATIVE

fn native_read_top(r: &mut Reader<'_>) -> Result<NvList, DecodeError> {
    let at = r.pos;
    let version = r.i32("nvlist version")?;
    check_version(r, at, version)?;
    let flags = r.u32("nvlist flags")?;
    native_read_pairs(r, flags, 0)
}

/// Pairs up to and including the end word; `flags` come from the list's header or `nvlist_t`.
fn native_read_pairs(r: &mut Reader<'_>, flags: u32, depth: usize) -> Result<NvList, DecodeError> {
    check_depth(r, depth)?;
    let mut list = NvList { flags, pairs: Vec::new() };
    loop {
        let start = r.pos;
        let size = r.i32("pair size")?;
        if size == 0 {
            return Ok(list);
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s >= nvp_size_calc(0, 0) as usize)
            .ok_or_else(|| r.invalid(start, "pair size", format!("{size} is too small")))?;
        r.pos = start;
        let pair = r.take(size, "pair")?;
        let mut p = Reader { buf: pair, pos: 4, little: r.little };
        let name_sz = p.array::<2>("name size")?;
        let name_sz = if r.little { i16::from_le_bytes(name_sz) } else { i16::from_be_bytes(name_sz) };
        p.take(2, "reserved")?;
        let nelem = p.i32("element count")?;
        let type_code = p.i32("pair type")?;
        let bad = |what: &'static str, detail: String| DecodeError::Invalid { offset: start, what, detail };
        let name_sz = usize::try_from(name_sz)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad("name size", format!("{name_sz}")))?;
        let name = pair
            .get(NVPAIR_HEADER..NVPAIR_HEADER + name_sz)
            .ok_or_else(|| bad("name size", format!("{name_sz} overruns the {size}-byte pair")))?;
        let (last, name) = name.split_last().ok_or_else(|| bad("name", String::new()))?;
        if *last != 0 || name.contains(&0) {
            return Err(bad("name", "not one NUL-terminated string".into()));
        }
        let name = text(name);
        check_nelem(r, start, type_code, nelem)?;
        let valoff = align8((NVPAIR_HEADER + name_sz) as u64) as usize;
        let data = pair
            .get(valoff..)
            .ok_or_else(|| bad("pair size", format!("{size} leaves no room for the value")))?;
        let value = native_value(r, start, data, type_code, nelem, depth)?;
        let expected = nvp_size_calc(name.len(), value.native_size());
        if expected != size as u64 {
            return Err(bad(
                "pair size",
                format!("{name:?} claims {size} bytes, its value makes {expected}"),
            ));
        }
        list.pairs.push((name, value));
    }
}

/// Decodes one value from its in-pair bytes; embedded lists continue in the stream `r`.
fn native_value(
    r: &mut Reader<'_>,
    at: usize,
    data: &[u8],
    type_code: i32,
    nelem: i32,
    depth: usize,
) -> Result<Value, DecodeError> {
    let little = r.little;
    let bad = |what: &'static str, detail: String| DecodeError::Invalid { offset: at, what, detail };
    let short = || bad("value", format!("{} bytes are too few for type {type_code}", data.len()));
    let n = usize::try_from(nelem).map_err(|_| bad("element count", format!("{nelem}")))?;
    // Fixed-width elements, with the count checked against the bytes there are.
    fn elems<const N: usize, T>(data: &[u8], n: usize, conv: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
        let bytes = data.get(..n.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    conv(a)
                })
                .collect(),
        )
    }
    let u16_of = |a: [u8; 2]| if little { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) };
    let u32_of = |a: [u8; 4]| if little { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) };
    let u64_of = |a: [u8; 8]| if little { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) };
    let one = |w: usize| -> Result<&[u8], DecodeError> { data.get(..w).ok_or_else(short) };
    let boolean = |v: u32| match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(bad("boolean", format!("{v} (expected 0 or 1)"))),
    };
    let first = |w: usize| -> Result<u64, DecodeError> {
        let b = one(w)?;
        Ok(match w {
            1 => u64::from(b[0]),
            2 => u64::from(u16_of([b[0], b[1]])),
            4 => u64::from(u32_of([b[0], b[1], b[2], b[3]])),
            _ => u64_of([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        })
    };
    let v = match type_code {
        ty::BOOLEAN => Value::Boolean,
        ty::BOOLEAN_VALUE => Value::BooleanValue(boolean(first(4)? as u32)?),
        ty::BYTE => Value::Byte(first(1)? as u8),
        ty::INT8 => Value::Int8(first(1)? as u8 as i8),
        ty::UINT8 => Value::Uint8(first(1)? as u8),
        ty::INT16 => Value::Int16(first(2)? as u16 as i16),
        ty::UINT16 => Value::Uint16(first(2)? as u16),
        ty::INT32 => Value::Int32(first(4)? as u32 as i32),
        ty::UINT32 => Value::Uint32(first(4)? as u32),
        ty::INT64 => Value::Int64(first(8)? as i64),
        ty::UINT64 => Value::Uint64(first(8)?),
        ty::HRTIME => Value::Hrtime(first(8)? as i64),
        ty::DOUBLE => Value::Double(f64::from_bits(first(8)?)),
        ty::STRING => {
            let end = data.iter().position(|&b| b == 0).ok_or_else(|| bad("string", "no NUL".into()))?;
            Value::String(text(&data[..end]))
        }
        ty::BYTE_ARRAY => Value::ByteArray(data.get(..n).ok_or_else(short)?.to_vec()),
        ty::UINT8_ARRAY => Value::Uint8Array(data.get(..n).ok_or_else(short)?.to_vec()),
        ty::INT8_ARRAY => Value::Int8Array(elems(data, n, |[b]: [u8; 1]| b as i8).ok_or_else(short)?),
        ty::INT16_ARRAY => Value::Int16Array(elems(data, n, |a| u16_of(a) as i16).ok_or_else(short)?),
        ty::UINT16_ARRAY => Value::Uint16Array(elems(data, n, u16_of).ok_or_else(short)?),
        ty::INT32_ARRAY => Value::Int32Array(elems(data, n, |a| u32_of(a) as i32).ok_or_else(short)?),
        ty::UINT32_ARRAY => Value::Uint32Array(elems(data, n, u32_of).ok_or_else(short)?),
        ty::INT64_ARRAY => Value::Int64Array(elems(data, n, |a| u64_of(a) as i64).ok_or_else(short)?),
        ty::UINT64_ARRAY => Value::Uint64Array(elems(data, n, u64_of).ok_or_else(short)?),
        ty::BOOLEAN_ARRAY => {
            let raw = elems(data, n, u32_of).ok_or_else(short)?;
            Value::BooleanArray(raw.into_iter().map(boolean).collect::<Result<_, _>>()?)
        }
        ty::STRING_ARRAY => {
            // n pointer slots (zeroed by the encoder), then the strings one after another.
            let mut rest = data.get(n.checked_mul(8).ok_or_else(short)?..).ok_or_else(short)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let end = rest.iter().position(|&b| b == 0).ok_or_else(short)?;
                v.push(text(&rest[..end]));
                rest = &rest[end + 1..];
            }
            Value::StringArray(v)
        }
        ty::NVLIST => {
            let flags = native_embedded_header(data, 0, little, at).ok_or_else(short)??;
            Value::NvList(native_read_pairs(r, flags, depth + 1)?)
        }
        ty::NVLIST_ARRAY => {
            // n pointer slots, then n nvlist_t; the lists' pairs follow in the stream.
            let structs = n.checked_mul(8 + NVLIST_STRUCT).ok_or_else(short)?;
            if structs > data.len() {
                return Err(short());
            }
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let off = 8 * n + NVLIST_STRUCT * i;
                let flags = native_embedded_header(data, off, little, at).ok_or_else(short)??;
                v.push(native_read_pairs(r, flags, depth + 1)?);
            }
            Value::NvListArray(v)
        }
        t => return Err(bad("pair type", format!("unknown type {t}"))),
    };
    Ok(v)
}

/// An embedded `nvlist_t` at `off` of the value of the pair at `at`: its version must be 0;
/// returns its nvflag, or `None` when the value is too short to hold it.
fn native_embedded_header(
    data: &[u8],
    off: usize,
    little: bool,
    at: usize,
) -> Option<Result<u32, DecodeError>> {
    let b = data.get(off..off.checked_add(8)?)?;
    let (v, f) = ([b[0], b[1], b[2], b[3]], [b[4], b[5], b[6], b[7]]);
    let (version, flags) = if little {
        (i32::from_le_bytes(v), u32::from_le_bytes(f))
    } else {
        (i32::from_be_bytes(v), u32::from_be_bytes(f))
    };
    Some(if version == NV_VERSION {
        Ok(flags)
    } else {
        Err(DecodeError::Invalid {
            offset: at,
            what: "embedded nvlist version",
            detail: format!("{version} (expected 0)"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list a rollback sends: {"target": "rpool/local/root@blank"}, worked out by hand from
    /// nvpair.c.
    #[test]
    fn a_string_pair_by_hand() {
        let l = NvList::new().with("target", Value::String("pool/ds@blank".into()));
        let b = l.pack_xdr().unwrap();
        let mut want = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        // encoded: 4+4 sizes + 4+8 name + 4 type + 4 nelem + 4+16 string = 48
        // decoded: NV_ALIGN(16 + 7) + NV_ALIGN(14) = 24 + 16 = 40
        want.extend([0, 0, 0, 48, 0, 0, 0, 40]);
        want.extend([0, 0, 0, 6]);
        want.extend(b"target\0\0");
        want.extend([0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 13]);
        want.extend(b"pool/ds@blank\0\0\0");
        want.extend([0; 8]);
        assert_eq!(b, want);
        assert_eq!(NvList::unpack(&b).unwrap(), l);
    }

    #[test]
    fn unique_names_replace_and_move_to_the_end() {
        let mut l = NvList::new();
        l.insert("a", Value::Uint64(1)).insert("b", Value::Boolean).insert("a", Value::Uint64(2));
        assert_eq!(l.pairs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(l.get_u64("a"), Some(2));
    }

    #[test]
    fn the_encoder_refuses_what_c_cannot_hold() {
        let l = NvList::new().with("a\0b", Value::Boolean);
        assert!(matches!(l.pack_xdr(), Err(EncodeError::Name { .. })));
        let l = NvList::new().with("s", Value::String("x\0y".into()));
        assert!(matches!(l.pack_xdr(), Err(EncodeError::Nul { .. })));
        let mut deep = NvList::new();
        for _ in 0..=MAX_DEPTH {
            deep = NvList::new().with("n", Value::NvList(deep));
        }
        assert!(matches!(deep.pack_xdr(), Err(EncodeError::TooDeep { .. })));
    }

    #[test]
    fn small_integers_read_both_extensions() {
        let l = NvList::new().with("i", Value::Int8(-1)).with("s", Value::Int16(-2));
        let mut b = l.pack_xdr().unwrap();
        // Ours are zero-extended, as the kernel wants.
        let i = b.windows(4).position(|w| w == [0, 0, 0, 0xff]).unwrap();
        // libtirpc's sign-extended form reads the same.
        b[i..i + 4].copy_from_slice(&[0xff; 4]);
        assert_eq!(NvList::unpack(&b).unwrap(), l);
        // Anything else is not an 8-bit value.
        b[i..i + 4].copy_from_slice(&[0, 0, 1, 0]);
        assert!(NvList::unpack(&b).is_err());
    }

    #[test]
    fn forged_counts_do_not_allocate() {
        let l = NvList::new().with("a", Value::Uint64Array(vec![1, 2]));
        let mut b = l.pack_xdr().unwrap();
        // nelem sits after sizes (8), name (4+4) and type (4), after the 12-byte prologue.
        let at = 12 + 8 + 8 + 4;
        b[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert!(matches!(NvList::unpack(&b), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // A hand-made XDR stream nesting far deeper than MAX_DEPTH.
        let mut b = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        for _ in 0..10_000 {
            b.extend([0, 0, 0, 40, 0, 0, 0, 48, 0, 0, 0, 1, b'n', 0, 0, 0, 0, 0, 0, 19, 0, 0, 0, 1]);
            b.extend([0, 0, 0, 0, 0, 0, 0, 1]);
        }
        assert!(matches!(NvList::unpack(&b), Err(DecodeError::TooDeep { .. })));
    }

    /// A NATIVE list (little-endian) holding one string pair, its bytes as given.
    fn native_string_list(name: &[u8], value: &[u8]) -> Vec<u8> {
        let name_sz = name.len() + 1;
        let valoff = align8((NVPAIR_HEADER + name_sz) as u64) as usize;
        let size = valoff + align8(value.len() as u64 + 1) as usize;
        let mut b = vec![NV_ENCODE_NATIVE, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let pair = b.len();
        b.extend((size as i32).to_le_bytes());
        b.extend((name_sz as i16).to_le_bytes());
        b.extend([0, 0]);
        b.extend(1i32.to_le_bytes());
        b.extend(ty::STRING.to_le_bytes());
        b.extend(name);
        b.resize(pair + valoff, 0);
        b.extend(value);
        b.resize(pair + size, 0);
        b.extend(0i32.to_le_bytes());
        b
    }

    /// ZFS does not require UTF-8: a user property (`zfs set com.example:note=…`) holds any
    /// bytes, and the kernel's answer for a snapshot's properties carries it. Such a list is
    /// valid; its text is decoded byte for byte (an invalid byte reads as `?`), so that the
    /// sizes the stream claims still add up.
    #[test]
    fn strings_that_are_not_utf8_decode() {
        let b = native_string_list(b"com.example:note", b"touch\xe9\xe9");
        let l = NvList::unpack(&b).unwrap();
        assert_eq!(l.get_str("com.example:note"), Some("touch??"));
        let b = native_string_list(b"x\xff\xfe", b"\xc3");
        let l = NvList::unpack(&b).unwrap();
        assert_eq!(l.pairs, [("x??".to_owned(), Value::String("?".into()))]);
        // Valid UTF-8 is kept as it is.
        let b = native_string_list("n\u{e9}".as_bytes(), "caf\u{e9}".as_bytes());
        assert_eq!(NvList::unpack(&b).unwrap().get_str("n\u{e9}"), Some("caf\u{e9}"));

        let mut b = NvList::new()
            .with("note", Value::String("cafe".into()))
            .with("list", Value::StringArray(vec!["ab".into()]))
            .pack_xdr()
            .unwrap();
        let at = b.windows(4).position(|w| w == b"cafe").unwrap();
        b[at + 3] = 0xe9;
        let at = b.windows(2).position(|w| w == b"ab").unwrap();
        b[at] = 0x80;
        let l = NvList::unpack(&b).unwrap();
        assert_eq!(l.get_str("note"), Some("caf?"));
        assert_eq!(l.get("list"), Some(&Value::StringArray(vec!["?b".into()])));
    }

    #[test]
    fn truncations_of_a_valid_list_are_errors() {
        let l = NvList::new()
            .with("b", Value::Boolean)
            .with("u", Value::Uint64(7))
            .with("s", Value::StringArray(vec!["x".into(), "".into()]))
            .with("l", Value::NvList(NvList::new().with("x", Value::Int32(-3))));
        let b = l.pack_xdr().unwrap();
        for n in 0..b.len() {
            assert!(NvList::unpack(&b[..n]).is_err(), "{n}");
        }
        assert_eq!(NvList::unpack(&b).unwrap(), l);
    }
}
