//! The config's authorized_keys lines: any text parses to a key or a reason, never a panic; a key that parses is matched by its own OpenSSH form.
#![no_main]

use initrd_tool::ssh::keys::{Authorized, parse_authorized_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Ok(key) = parse_authorized_key(line) {
        let again = parse_authorized_key(&key.to_openssh().expect("a parsed key encodes")).expect("re-parses");
        assert!(Authorized::new(vec![key]).contains(&again));
    }
});
