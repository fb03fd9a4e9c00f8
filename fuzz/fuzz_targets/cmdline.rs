//! The kernel command-line parser never panics, and what it returns came from the line (init= and the words after `--`).
#![no_main]

use initrd_tool::cmdline::Cmdline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let c = Cmdline::parse(&line);
    let quoted = line.contains('"');
    if let Some(init) = &c.init {
        assert!(!init.is_empty());
        // Without quotes, words are exactly the space-separated pieces.
        if !quoted {
            assert!(line.split_whitespace().any(|w| w == format!("init={init}")), "init {init:?} from nowhere");
        }
    }
    for a in &c.init_args {
        // Only quotes make an empty word (`""`, or a lone unterminated `"`).
        assert!(!a.is_empty() || quoted, "an empty argument from {line:?}");
    }
    if !c.init_args.is_empty() {
        assert!(line.contains("--"), "arguments without --");
    }
});
