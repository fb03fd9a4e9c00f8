//! The packet socket's link-layer address (`sockaddr_ll`), which rustix has no type for.
#![allow(unsafe_code)]

use rustix::net::addr::{SocketAddrArg, SocketAddrLen, SocketAddrOpaque};

/// `sockaddr_ll` for an AF_PACKET socket: a link, a protocol and (for sending) the hardware destination.
pub struct SocketAddrLink {
    ll: libc::sockaddr_ll,
}

impl SocketAddrLink {
    /// `protocol` in network byte order, as `socket(AF_PACKET, ..., htons(ETH_P_IP))` takes it.
    pub fn new(ifindex: u32, protocol_be: u16, destination: Option<[u8; 6]>) -> SocketAddrLink {
        let mut addr = [0u8; 8];
        if let Some(d) = destination {
            addr[..6].copy_from_slice(&d);
        }
        SocketAddrLink {
            ll: libc::sockaddr_ll {
                sll_family: libc::AF_PACKET as u16,
                sll_protocol: protocol_be,
                sll_ifindex: ifindex as i32,
                sll_hatype: 0,
                sll_pkttype: 0,
                sll_halen: if destination.is_some() { 6 } else { 0 },
                sll_addr: addr,
            },
        }
    }
}

// SAFETY: `f` gets a pointer to the `sockaddr_ll` owned by `self`, valid and readable for its
// whole size for the duration of the call, and a sockaddr_ll is what AF_PACKET's bind and sendto read.
unsafe impl SocketAddrArg for SocketAddrLink {
    unsafe fn with_sockaddr<R>(&self, f: impl FnOnce(*const SocketAddrOpaque, SocketAddrLen) -> R) -> R {
        f((&raw const self.ll).cast(), size_of::<libc::sockaddr_ll>() as SocketAddrLen)
    }
}
