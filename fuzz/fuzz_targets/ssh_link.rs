//! The SSH server's link messages: whatever the (unprivileged, network-facing) server sends, the unlocking process decodes it or refuses it, never panics; what decodes re-encodes to the same bytes.
#![no_main]

use initrd_tool::ssh::link::{MAX_MESSAGE, ToParent, ToServer};
use libfuzzer_sys::fuzz_target;
use luks::secret::Secret;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ToParent::decode(data) {
        let mut buf = Secret::with_capacity(MAX_MESSAGE);
        m.encode_into(&mut buf).expect("a decoded message fits");
        assert_eq!(buf.as_bytes(), data, "re-encodes to the same bytes");
    }
    if let Ok(m) = ToServer::decode(data) {
        assert_eq!(m.encode(), data, "re-encodes to the same bytes");
    }
});
