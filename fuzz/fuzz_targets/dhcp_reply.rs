//! A frame received during DHCP never panics the client: IPv4/UDP framing, then the DHCP reply and the options lethe reads.
#![no_main]

use initrd_tool::net::dhcp::{Reply, parse_frame, parse_reply};
use initrd_tool::net::packet;
use libfuzzer_sys::fuzz_target;

const MAC: [u8; 6] = [2, 0, 0, 0x77, 0, 2];

fuzz_target!(|data: &[u8]| {
    // The xid is taken from the DHCP header's place so that mutations reach the options.
    let xid = |p: &[u8]| p.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    for checked in [true, false] {
        if let Some(udp) = packet::parse(data, checked) {
            assert!(udp.payload.len() <= data.len());
            let _ = parse_frame(data, checked, xid(udp.payload), MAC);
        }
    }
    // The same bytes as a bare UDP payload, which is where most of the parsing is.
    if let Some(Reply::Offer(l) | Reply::Ack(l)) = parse_reply(data, xid(data), MAC) {
        assert!(l.prefix <= 32);
        assert!(!l.address.is_unspecified() && !l.address.is_broadcast());
    }
});
