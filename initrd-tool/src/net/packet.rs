//! IPv4 + UDP framing for DHCP on a packet socket, before the link has an address: built, and checked on receipt.

use std::net::Ipv4Addr;

const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;

/// A UDP datagram that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// The internet checksum (RFC 1071) over `parts`, as if concatenated (each part but the last even-sized).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO_UDP;
    p[10..].copy_from_slice(&udp_len.to_be_bytes());
    p
}

/// An IPv4 packet (no options, TTL 64, DF unset) carrying one UDP datagram. None when the payload
/// does not fit in one packet.
pub fn build(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    id: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).ok()?;
    let total = u16::try_from(IPV4_HEADER + usize::from(udp_len)).ok()?;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 64, PROTO_UDP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let c = match checksum(&[&pseudo_header(src, dst, udp_len), &udp]) {
        0 => 0xffff, // 0 means "no checksum" in UDP
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&udp);
    Some(p)
}

/// The UDP datagram in an IPv4 packet, or None for anything else or anything malformed: a wrong
/// version, header length or total length, a bad header or UDP checksum, a fragment, another protocol.
/// `udp_checksum` false skips the UDP checksum, for packets the kernel says it left uncomputed.
pub fn parse(packet: &[u8], udp_checksum: bool) -> Option<Udp<'_>> {
    let header = packet.get(..IPV4_HEADER)?;
    if header[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if ihl < IPV4_HEADER || total < ihl || total > packet.len() {
        return None;
    }
    // Trailing bytes past the total length are link-layer padding.
    let packet = &packet[..total];
    if checksum(&[&packet[..ihl]]) != 0 {
        return None;
    }
    let frag = u16::from_be_bytes([header[6], header[7]]);
    if frag & 0x3fff != 0 || header[9] != PROTO_UDP {
        return None; // a fragment (MF set or an offset), or not UDP
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let udp = &packet[ihl..];
    let head = udp.get(..UDP_HEADER)?;
    let udp_len = u16::from_be_bytes([head[4], head[5]]);
    if usize::from(udp_len) < UDP_HEADER || usize::from(udp_len) > udp.len() {
        return None;
    }
    let udp = &udp[..usize::from(udp_len)];
    if udp_checksum
        && u16::from_be_bytes([head[6], head[7]]) != 0
        && checksum(&[&pseudo_header(src, dst, udp_len), udp]) != 0
    {
        return None;
    }
    Some(Udp {
        src,
        dst,
        src_port: u16::from_be_bytes([head[0], head[1]]),
        dst_port: u16::from_be_bytes([head[2], head[3]]),
        payload: &udp[UDP_HEADER..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const B: Ipv4Addr = Ipv4Addr::BROADCAST;

    #[test]
    fn a_built_packet_parses_back() {
        let p = build(A, B, 67, 68, 7, b"hello").unwrap();
        assert_eq!(p.len(), 20 + 8 + 5);
        let u = parse(&p, true).unwrap();
        assert_eq!(u, Udp { src: A, dst: B, src_port: 67, dst_port: 68, payload: b"hello" });
        // Ethernet pads short frames: the bytes past the IPv4 total length are ignored.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(parse(&padded, true).unwrap().payload, b"hello");
    }

    #[test]
    fn the_checksums_are_the_ones_the_kernel_computes() {
        // An IPv4 header from RFC 1071's worked examples' usual test vector (Wikipedia's): checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_dropped() {
        let p = build(A, B, 67, 68, 1, b"payload!").unwrap();
        for i in 0..p.len() {
            for bit in 0..8 {
                let mut q = p.clone();
                q[i] ^= 1 << bit;
                // Either refused, or (a flip in a field the checks cannot see, e.g. TTL paired
                // with the header checksum cannot happen with one flip) never the same datagram.
                if let Some(u) = parse(&q, true) {
                    panic!("byte {i} bit {bit} passed: {u:?}");
                }
            }
        }
    }

    #[test]
    fn fragments_other_protocols_and_short_packets_are_dropped() {
        let p = build(A, B, 67, 68, 1, b"x").unwrap();
        let reseal = |mut q: Vec<u8>| {
            q[10] = 0;
            q[11] = 0;
            let c = checksum(&[&q[..20]]);
            q[10..12].copy_from_slice(&c.to_be_bytes());
            q
        };
        let mut mf = p.clone();
        mf[6] = 0x20;
        assert_eq!(parse(&reseal(mf), true), None);
        let mut tcp = p.clone();
        tcp[9] = 6;
        assert_eq!(parse(&reseal(tcp), true), None);
        for n in 0..p.len() {
            assert_eq!(parse(&p[..n], true), None, "{n} bytes");
        }
        // A zero UDP checksum means none was computed (RFC 768): accepted.
        let mut nosum = p.clone();
        nosum[26] = 0;
        nosum[27] = 0;
        assert!(parse(&nosum, true).is_some());
        // A wrong UDP checksum passes only when the kernel said it left it uncomputed.
        let mut partial = p.clone();
        partial[26] ^= 0x5a;
        assert_eq!(parse(&partial, true), None);
        assert_eq!(parse(&partial, false).unwrap().payload, b"x");
    }
}
