//! The kernel command-line parser never panics, and what it returns came from the line (init= and the words after `--`).
#![no_main]

use std::os::unix::ffi::OsStrExt;

use initrd_tool::cmdline::Cmdline;
use libfuzzer_sys::fuzz_target;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The kernel's `isspace`, byte by byte (0xA0 too, even inside a UTF-8 character).
fn space(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0))
}

fuzz_target!(|data: &[u8]| {
    let c = Cmdline::parse_bytes(data);
    let quoted = data.contains(&b'"');
    if let Some(init) = &c.init {
        let init = init.as_os_str().as_bytes();
        assert!(!init.is_empty());
        // The value is a piece of the line, byte for byte, never made up.
        assert!(contains(data, init), "init {init:?} from nowhere");
        // Only quotes keep a space inside a word.
        assert!(quoted || !space(init), "init {init:?} has a space without quotes");
    }
    for a in &c.init_args {
        let a = a.as_bytes();
        // Only quotes make an empty word (`""`, or a lone `"`).
        assert!(!a.is_empty() || quoted, "an empty argument from {data:?}");
        assert!(quoted || !space(a), "argument {a:?} has a space without quotes");
        // Without quotes an argument is a piece of the line as it is.
        assert!(quoted || contains(data, a), "argument {a:?} from nowhere");
    }
    if !c.init_args.is_empty() {
        assert!(contains(data, b"--"), "arguments without --");
    }
});
