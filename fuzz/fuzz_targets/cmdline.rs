//! The kernel command-line parser never panics, and what it returns came from the line (init= and the words after `--`).
#![no_main]

use initrd_tool::cmdline::Cmdline;
use libfuzzer_sys::fuzz_target;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let c = Cmdline::parse_bytes(data);
    let utf8 = std::str::from_utf8(data).is_ok();
    let quoted = data.contains(&b'"');
    let space = |s: &str| s.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0));
    if let Some(init) = &c.init {
        assert!(!init.is_empty());
        // The value is a piece of the line, never made up.
        if utf8 {
            assert!(contains(data, init.as_bytes()), "init {init:?} from nowhere");
        }
        // Only quotes keep a space inside a word.
        assert!(quoted || !space(init), "init {init:?} has a space without quotes");
    }
    for a in &c.init_args {
        // Only quotes make an empty word (`""`, or a lone `"`).
        assert!(!a.is_empty() || quoted, "an empty argument from {data:?}");
        assert!(quoted || !space(a), "argument {a:?} has a space without quotes");
    }
    if !c.init_args.is_empty() {
        assert!(contains(data, b"--"), "arguments without --");
    }
});
