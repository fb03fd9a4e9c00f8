//! The nvlist encoder and decoder against libnvpair itself: byte-for-byte XDR, both encodings decoded, and hostile input.
//!
//! tests/nvpair_helper.c is built with gcc against the system's libnvpair.so.3
//! (Debian's libnvpair3linux). Without it the comparisons are skipped with a
//! note, or fail when CI=true.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use rollback::zfs::nvlist::{MAX_DEPTH, NV_UNIQUE_NAME, NvList, Value};

const LIBNVPAIR: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libnvpair.so.3",
    "/usr/lib/x86_64-linux-gnu/libnvpair.so.3",
    "/usr/lib64/libnvpair.so.3",
    "/usr/lib/libnvpair.so.3",
];

fn build_helper() -> Result<PathBuf, String> {
    let lib = LIBNVPAIR
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("libnvpair.so.3 is not installed (Debian: libnvpair3linux from contrib)")?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvpair_helper.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvpair_helper");
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let status = Command::new(&cc)
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg(lib)
        .status()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !status.success() {
        return Err(format!("{cc} failed to build {}", src.display()));
    }
    Ok(out)
}

/// The helper, or `None` (with a note) when libnvpair or a C compiler is missing; with
/// CI=true that is a failure instead.
fn helper() -> Option<&'static Path> {
    static HELPER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELPER.get_or_init(build_helper) {
        Ok(p) => Some(p),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn run(helper: &Path, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(helper)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn libnvpair_pack(helper: &Path, case: &str, encoding: &str) -> Vec<u8> {
    run(helper, &["pack", case, encoding], &[]).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The lists tests/nvpair_helper.c builds, by case name.
fn case(name: &str) -> NvList {
    let l = NvList::new();
    match name {
        "empty" => l,
        "rollback" => l.with("target", Value::String("rpool/local/root@blank".into())),
        "destroy-snaps" => l.with(
            "snaps",
            Value::NvList(
                NvList::new()
                    .with("rpool/local/root@later", Value::Boolean)
                    .with("rpool/local/root@a", Value::Boolean),
            ),
        ),
        "destroy-bookmarks" => {
            l.with("rpool/local/root#mark", Value::Boolean).with("rpool/local/root#bm2", Value::Boolean)
        }
        "get-bookmarks" => l.with("createtxg", Value::Boolean),
        "scalars" => l
            .with("b", Value::Boolean)
            .with("t", Value::BooleanValue(true))
            .with("f", Value::BooleanValue(false))
            .with("byte", Value::Byte(0x7f))
            .with("i8", Value::Int8(100))
            .with("u8", Value::Uint8(127))
            .with("i16", Value::Int16(1000))
            .with("u16", Value::Uint16(65535))
            .with("i32", Value::Int32(-7))
            .with("u32", Value::Uint32(4_000_000_000))
            .with("i64", Value::Int64(-9))
            .with("u64", Value::Uint64(u64::MAX))
            .with("hrtime", Value::Hrtime(123_456_789_012))
            .with("double", Value::Double(1.5))
            .with("s", Value::String("hello, world".into()))
            .with("empty", Value::String(String::new())),
        "negative-small" => l
            .with("i8", Value::Int8(-1))
            .with("u8", Value::Uint8(200))
            .with("byte", Value::Byte(0x80))
            .with("i16", Value::Int16(-2))
            .with("i8s", Value::Int8Array(vec![-1, 5]))
            .with("u8s", Value::Uint8Array(vec![255, 0]))
            .with("i16s", Value::Int16Array(vec![-300])),
        "arrays" => l
            .with("bytes", Value::ByteArray(vec![1, 2, 3, 0xff, 0]))
            .with("bools", Value::BooleanArray(vec![true, false, true]))
            .with("i8s", Value::Int8Array(vec![1, 2, 127]))
            .with("u8s", Value::Uint8Array(vec![3, 4, 5, 0]))
            .with("i16s", Value::Int16Array(vec![0, 32767]))
            .with("u16s", Value::Uint16Array(vec![1, 65535]))
            .with("i32s", Value::Int32Array(vec![-1, 2, i32::MIN]))
            .with("u32s", Value::Uint32Array(vec![4_000_000_000]))
            .with("i64s", Value::Int64Array(vec![-1, i64::MIN]))
            .with("u64s", Value::Uint64Array(vec![0, 1, u64::MAX]))
            .with("strs", Value::StringArray(strings(&["a", "", "a longer string"]))),
        "empty-arrays" => l
            .with("bytes", Value::ByteArray(vec![]))
            .with("bools", Value::BooleanArray(vec![]))
            .with("i8s", Value::Int8Array(vec![]))
            .with("u16s", Value::Uint16Array(vec![]))
            .with("i32s", Value::Int32Array(vec![]))
            .with("u64s", Value::Uint64Array(vec![]))
            .with("strs", Value::StringArray(vec![]))
            .with("lists", Value::NvListArray(vec![])),
        "nested" => {
            let inner = NvList::new()
                .with("x", Value::Uint64(1))
                .with("names", Value::StringArray(strings(&["p", "q"])));
            let mid = NvList::new().with("inner", Value::NvList(inner.clone()));
            let outer = NvList::new().with("mid", Value::NvList(mid)).with("s", Value::String("v".into()));
            let a = NvList::new().with("a", Value::Boolean);
            let b =
                NvList::new().with("b", Value::NvList(NvList::new().with("c", Value::String("d".into()))));
            l.with("outer", Value::NvList(outer))
                .with("arr", Value::NvListArray(vec![a, b, inner]))
                .with("empty", Value::NvList(NvList::new()))
                .with("after", Value::Int32(3))
        }
        "names" => l
            .with("", Value::Boolean)
            .with("a", Value::Uint64(1))
            .with("ab", Value::Uint64(2))
            .with("abc", Value::Uint64(3))
            .with("abcd", Value::Uint64(4))
            .with("abcde", Value::Uint64(5))
            .with("abcdefgh", Value::Uint64(8))
            .with("abcdefghi", Value::Uint64(9))
            .with("n".repeat(300), Value::String("grün".into())),
        "props-answer" => {
            let clones = NvList::new().with("rpool/other", Value::Boolean);
            l.with(
                "createtxg",
                Value::NvList(
                    NvList::new()
                        .with("value", Value::Uint64(42))
                        .with("source", Value::String(String::new())),
                ),
            )
            .with("clones", Value::NvList(NvList::new().with("value", Value::NvList(clones))))
            .with("userrefs", Value::NvList(NvList::new().with("value", Value::Uint64(0))))
        }
        "replace" => l.with("a", Value::Uint64(1)).with("b", Value::Boolean).with("a", Value::Uint64(2)),
        "non-unique" => {
            NvList { flags: 0, pairs: vec![("a".into(), Value::Uint64(1)), ("a".into(), Value::Uint64(2))] }
        }
        _ => panic!("no case {name}"),
    }
}

/// Cases whose XDR encoding is the same from libnvpair and from lethe.
const SAME_XDR: [&str; 13] = [
    "empty",
    "rollback",
    "destroy-snaps",
    "destroy-bookmarks",
    "get-bookmarks",
    "scalars",
    "arrays",
    "empty-arrays",
    "nested",
    "names",
    "props-answer",
    "replace",
    "non-unique",
];

fn all_cases() -> impl Iterator<Item = &'static str> {
    SAME_XDR.into_iter().chain(["negative-small"])
}

#[test]
fn xdr_is_byte_for_byte_libnvpairs() {
    let Some(h) = helper() else { return };
    for name in SAME_XDR {
        let ours = case(name).pack_xdr().unwrap();
        let theirs = libnvpair_pack(h, name, "xdr");
        assert_eq!(ours, theirs, "case {name}");
    }
}

#[test]
fn small_negatives_are_zero_extended_as_the_kernel_wants() {
    let Some(h) = helper() else { return };
    let l = case("negative-small");
    let ours = l.pack_xdr().unwrap();
    let theirs = libnvpair_pack(h, "negative-small", "xdr");
    // libtirpc sign-extends (0xffffffff for int8 -1); the kernel's XDR refuses that, so lethe
    // writes 0x000000ff. Same length, different bytes, and both read back the same.
    assert_eq!(ours.len(), theirs.len());
    assert_ne!(ours, theirs);
    assert_eq!(NvList::unpack(&theirs).unwrap(), l);
    assert_eq!(NvList::unpack(&ours).unwrap(), l);
    // libnvpair reads ours as the same values.
    let back = run(h, &["repack", "native"], &ours).unwrap();
    assert_eq!(NvList::unpack(&back).unwrap(), l);
}

#[test]
fn libnvpairs_native_and_xdr_packs_decode() {
    let Some(h) = helper() else { return };
    for name in all_cases() {
        let want = case(name);
        for encoding in ["native", "xdr"] {
            let packed = libnvpair_pack(h, name, encoding);
            assert_eq!(NvList::unpack(&packed).as_ref(), Ok(&want), "case {name}, {encoding}");
        }
    }
}

#[test]
fn libnvpair_reads_what_we_write() {
    let Some(h) = helper() else { return };
    for name in SAME_XDR {
        let ours = case(name).pack_xdr().unwrap();
        assert_eq!(run(h, &["repack", "xdr"], &ours).unwrap(), ours, "case {name}");
        assert_eq!(
            run(h, &["repack", "native"], &ours).unwrap(),
            libnvpair_pack(h, name, "native"),
            "case {name}"
        );
    }
}

#[test]
fn round_trips() {
    for name in all_cases() {
        let l = case(name);
        assert_eq!(NvList::unpack(&l.pack_xdr().unwrap()).unwrap(), l, "case {name}");
    }
    // Every level the encoder accepts, the decoder reads back.
    let mut deep = NvList::new().with("leaf", Value::Uint64(1));
    for _ in 0..MAX_DEPTH {
        deep = NvList::new().with("n", Value::NvList(deep));
    }
    assert_eq!(NvList::unpack(&deep.pack_xdr().unwrap()).unwrap(), deep);
}

#[test]
fn truncated_input_is_an_error() {
    let mut packs: Vec<(String, Vec<u8>)> =
        all_cases().map(|n| (format!("{n} ours"), case(n).pack_xdr().unwrap())).collect();
    if let Some(h) = helper() {
        for n in all_cases() {
            for e in ["native", "xdr"] {
                packs.push((format!("{n} {e}"), libnvpair_pack(h, n, e)));
            }
        }
    }
    for (name, p) in &packs {
        // Below the list's own length every prefix fails; from there on, what follows (the
        // zeros libnvpair pads with) is ignored.
        let whole = NvList::unpack(p).unwrap();
        let end = (0..=p.len()).find(|&n| NvList::unpack(&p[..n]).is_ok()).unwrap();
        assert!(p.len() - end <= 64, "{name}: {} trailing bytes", p.len() - end);
        for len in end..=p.len() {
            assert_eq!(NvList::unpack(&p[..len]).as_ref(), Ok(&whole), "{name} cut to {len} bytes");
        }
    }
}

/// xorshift64*, so that the garbage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn garbage_and_corruption_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut packs: Vec<Vec<u8>> = all_cases().map(|n| case(n).pack_xdr().unwrap()).collect();
    if let Some(h) = helper() {
        packs.extend(all_cases().map(|n| libnvpair_pack(h, n, "native")));
    }
    for p in &packs {
        // Every single byte set to a few telling values.
        for i in 0..p.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut q = p.clone();
                q[i] = v;
                if let Ok(l) = NvList::unpack(&q) {
                    // Whatever decodes, encodes, and reads back the same.
                    let again = l.pack_xdr().unwrap();
                    assert_eq!(NvList::unpack(&again).unwrap().pack_xdr().unwrap(), again);
                }
            }
        }
        // Random bytes under a valid header.
        for _ in 0..200 {
            let mut q = p.clone();
            for _ in 0..4 {
                let i = 4 + (rng.next() as usize) % (q.len() - 4).max(1);
                if let Some(b) = q.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            let _ = NvList::unpack(&q);
        }
    }
    for len in 0..512 {
        let mut q: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(h) = q.get_mut(..2) {
            h.copy_from_slice(&[(len % 2) as u8, 1]);
        }
        let _ = NvList::unpack(&q);
    }
}

#[test]
fn lists_built_here_have_unique_names() {
    assert_eq!(NvList::new().flags, NV_UNIQUE_NAME);
    assert_eq!(case("replace").pairs.len(), 2);
}
