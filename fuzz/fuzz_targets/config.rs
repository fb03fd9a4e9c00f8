//! Config parsing never panics, and every entry it accepts has absolute, normalised target and storage paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persist_bind::{Document, RootPath};

/// Absolute, with no empty, `.` or `..` component and no NUL (only `/` itself may end in `/`).
fn assert_normalised(what: &str, p: &RootPath) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "{what} {s:?} is not absolute");
    assert!(!s.contains('\0'), "{what} {s:?} holds a NUL");
    if s != "/" {
        for c in s[1..].split('/') {
            assert!(!matches!(c, "" | "." | ".."), "{what} {s:?} has a {c:?} component");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((doc, entries)) = Document::entries_from_slice(data) else { return };
    for e in &entries {
        assert_normalised("target", &e.target);
        assert_normalised("storage", &e.storage);
        assert_normalised("source", &e.storage.concat(&e.target));
        if let Some(h) = &e.home {
            assert_normalised("home", &h.path);
        }
    }
    for p in doc.storage_paths() {
        assert_normalised("storage path", &p);
    }
});
