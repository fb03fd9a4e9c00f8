//! What rustix lacks for the packet socket: its link-layer address (`sockaddr_ll`) and the checksum status of received packets (PACKET_AUXDATA).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Asks the kernel for a `tpacket_auxdata` with every packet (PACKET_AUXDATA), for [`recv_status`].
pub fn enable_auxdata(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value is a c_int that lives across the call,
    // with its size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)))
    }
}

/// Receives one packet without blocking: its length, and whether the kernel left its transport
/// checksum uncomputed (TP_STATUS_CSUMNOTREADY: sent from this host or a veth peer with checksum
/// offload, so the field holds only a partial sum and must not be checked).
pub fn recv_status(fd: BorrowedFd<'_>, buf: &mut [u8]) -> rustix::io::Result<(usize, bool)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (into `buf`, writable for its length) and `control` (writable
    // for msg_controllen bytes), all of which outlive the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    let mut not_ready = false;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled in, within msg_controllen;
    // the auxdata is read unaligned from a cmsg of the right level, type and length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET
                && (*c).cmsg_type == libc::PACKET_AUXDATA
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize
            {
                let aux: libc::tpacket_auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                not_ready = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    Ok((n as usize, not_ready))
}
