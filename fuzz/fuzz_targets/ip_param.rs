//! The `ip=` parser never panics, and what it accepts prints in a form that parses back to the same value.
#![no_main]

use initrd_tool::net::IpParam;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    match value.parse::<IpParam>() {
        Ok(p) => {
            let shown = p.to_string();
            let again: IpParam = shown.parse().unwrap_or_else(|e| panic!("{value:?} -> {shown:?}: {e}"));
            assert_eq!(again, p, "{value:?} -> {shown:?}");
        }
        Err(e) => assert!(e.to_string().starts_with(&format!("ip={value}: "))),
    }
});
