//! The network element's PGM sockets: three receive sockets that tell the arrival interface
//! (`IP_PKTINFO`) and one `IP_HDRINCL` sender per interface.
//!
//! Receive sockets ([`RecvSocketKind`]), all raw `IPPROTO_PGM` (113) with
//! `IP_MULTICAST_ALL` off so that none gets copies of groups joined by another:
//!
//! - **Router Alert**: `IP_ROUTER_ALERT` set; the kernel hands it (instead of forwarding)
//!   every transit packet bearing the option: SPM, NCF, RDATA, POLL. A BPF filter keeps only
//!   multicast destinations (a raw socket also sees local unicast, which the next one takes).
//! - **Unicast**: NAKs, NNAKs and POLRs sent to one of our addresses. BPF: unicast only.
//! - **Intercept**: the membership-based intercept the daemon used before
//!   [`super::nflog`]: it joins assisted groups on their upstream interface, so it gets a
//!   local copy of every packet of the group while the kernel forwards it; its BPF filter
//!   drops ODATA in the kernel. Kept as the baseline the router benchmark measures the cost
//!   of a membership with (the kernel clones every forwarded packet for it, and then copies
//!   each forwarded header, the buffer being shared). The daemon no longer opens it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};

use super::sys::{pktinfo_ifindex, recvmsg_with_control, setsockopt_int};
use crate::net::IPPROTO_PGM;
use crate::net::raw::ROUTER_ALERT_OPTION;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_LDX_B_MSH: u16 = 0xb1;
const BPF_LD_B_IND: u16 = 0x50;
const BPF_JGE_K: u16 = 0x35;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const IP_DST: u32 = 16;
const ACCEPT: u32 = 0x0004_0000;
const PGM_ODATA: u32 = 0x04;

/// Multicast destinations only.
const MULTICAST_ONLY: [SockFilter; 5] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, IP_DST),
    SockFilter::new(BPF_JGE_K, 0, 2, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 1, 0, 0xf000_0000),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// Unicast destinations only.
const UNICAST_ONLY: [SockFilter; 5] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, IP_DST),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xf000_0000),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// Multicast destinations whose PGM type byte (at the IP header length + 4) is not ODATA.
const MULTICAST_NOT_ODATA: [SockFilter; 8] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, IP_DST),
    SockFilter::new(BPF_JGE_K, 0, 5, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 4, 0, 0xf000_0000),
    SockFilter::new(BPF_LDX_B_MSH, 0, 0, 0),
    SockFilter::new(BPF_LD_B_IND, 0, 0, 4),
    SockFilter::new(BPF_JEQ_K, 1, 0, PGM_ODATA),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// Which receive socket; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvSocketKind {
    /// `IP_ROUTER_ALERT`.
    RouterAlert,
    /// Unicast to our addresses.
    Unicast,
    /// Local copies of joined groups, ODATA filtered out in the kernel.
    Intercept,
}

/// A received packet: the PGM bytes are `buf[pgm_offset..len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Arrival interface (0 if the kernel did not say).
    pub ifindex: u32,
    /// IP source.
    pub source: Ipv4Addr,
    /// IP destination.
    pub destination: Ipv4Addr,
    /// IP TTL as received.
    pub ttl: u8,
    /// IP protocol (113 for PGM; 2 for IGMP, which the netdev plane's log rule hands over too).
    pub protocol: u8,
    /// Whether the IP header carried the Router Alert option.
    pub router_alert: bool,
    /// Where the PGM packet starts in the buffer.
    pub pgm_offset: usize,
    /// Bytes of the IP packet (header included): its total length field, the link's padding
    /// left out.
    pub len: usize,
    /// An IP fragment (more-fragments set, or a fragment offset): its bytes past the IP header
    /// are not a whole PGM packet, and drivers drop and count it (sockets that see packets
    /// before reassembly: link-layer and nfnetlink_log).
    pub fragment: bool,
}

/// One receive socket.
#[derive(Debug)]
pub struct RecvSocket {
    sock: Socket,
    kind: RecvSocketKind,
}

impl RecvSocket {
    /// Opens a receive socket of `kind` (needs `CAP_NET_RAW`).
    pub fn open(kind: RecvSocketKind) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))?;
        sock.set_nonblocking(true)?;
        sock.set_multicast_all_v4(false)?;
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        let _ = sock.set_recv_buffer_size(4 << 20);
        match kind {
            RecvSocketKind::RouterAlert => {
                sock.attach_filter(&MULTICAST_ONLY)?;
                setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_ROUTER_ALERT, 1)?;
            }
            RecvSocketKind::Unicast => sock.attach_filter(&UNICAST_ONLY)?,
            RecvSocketKind::Intercept => sock.attach_filter(&MULTICAST_NOT_ODATA)?,
        }
        Ok(Self { sock, kind })
    }

    /// Its kind.
    pub fn kind(&self) -> RecvSocketKind {
        self.kind
    }

    /// Joins `group` on interface `ifindex` (intercept socket).
    pub fn join(&self, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
        self.sock
            .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))
    }

    /// Leaves `group` on interface `ifindex`.
    pub fn leave(&self, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
        self.sock
            .leave_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))
    }

    /// Receives one packet into `buf` (`WouldBlock` when none is queued; `InvalidData` for
    /// something that is not an IPv4 packet, which a driver skips).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let (n, control, clen) = recvmsg_with_control(&self.sock, buf)?;
        let ifindex = pktinfo_ifindex(&control[..clen]).unwrap_or(0);
        parse_ip(&buf[..n], ifindex)
    }
}

impl AsRawFd for RecvSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for RecvSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The IPv4 header fields of a received packet.
pub fn parse_ip(p: &[u8], ifindex: u32) -> io::Result<Received> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Err(bad("not an IPv4 packet"));
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || ihl > p.len() {
        return Err(bad("bad IPv4 header length"));
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total < ihl || total > p.len() {
        return Err(bad("bad IPv4 total length"));
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    let addr = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    Ok(Received {
        ifindex,
        source: addr(12),
        destination: addr(16),
        ttl: p[8],
        protocol: p[9],
        router_alert: has_router_alert(&p[20..ihl]),
        pgm_offset: ihl,
        len: total,
        fragment: frag & 0x3fff != 0,
    })
}

/// Whether IPv4 options contain Router Alert (type 148).
fn has_router_alert(mut opts: &[u8]) -> bool {
    while let Some(&ty) = opts.first() {
        match ty {
            0 => return false,
            1 => opts = &opts[1..],
            148 => return true,
            _ => {
                let len = usize::from(*opts.get(1).unwrap_or(&0));
                if len < 2 || len > opts.len() {
                    return false;
                }
                opts = &opts[len..];
            }
        }
    }
    false
}

/// A header-including sender per interface, bound to it (`SO_BINDTODEVICE`), with multicast
/// loopback off so that our own transmits never come back to the receive sockets.
#[derive(Debug)]
pub struct HdrInclSender {
    sock: Socket,
    ifindex: u32,
    buf: std::cell::RefCell<Vec<u8>>,
}

impl HdrInclSender {
    /// Opens a sender for interface `name` (index `ifindex`).
    pub fn open(name: &str, ifindex: u32) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))?;
        sock.set_nonblocking(true)?;
        sock.set_header_included_v4(true)?;
        sock.bind_device(Some(name.as_bytes()))?;
        sock.set_multicast_loop_v4(false)?;
        sock.set_multicast_all_v4(false)?;
        // A send-only socket: never queue what arrives.
        sock.attach_filter(&[SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
        Ok(Self {
            sock,
            ifindex,
            buf: std::cell::RefCell::new(Vec::with_capacity(2048)),
        })
    }

    /// The interface it sends on.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `pgm` in an IP header of our own: `source` (any address, typically the ODATA
    /// source's), `destination`, `ttl`, and the Router Alert option if `router_alert`.
    pub fn send(
        &self,
        source: IpAddr,
        destination: IpAddr,
        ttl: u8,
        router_alert: bool,
        pgm: &[u8],
    ) -> io::Result<()> {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (source, destination) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 is not supported by the router's sender",
            ));
        };
        let mut buf = self.buf.borrow_mut();
        build_ipv4(&mut buf, src, dst, ttl, router_alert, pgm);
        let to = SockAddr::from(SocketAddrV4::new(dst, 0));
        self.sock.send_to(&buf, &to).map(drop)
    }
}

impl AsFd for HdrInclSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Writes an IPv4 header (protocol 113; identification and checksum left to the kernel)
/// followed by `pgm` into `out`.
//= https://www.rfc-editor.org/rfc/rfc3208#section-8
//# All of the packet formats described in this section are transport-
//# layer headers that MUST immediately follow the network-layer header
//# in the packet.
//= https://www.rfc-editor.org/rfc/rfc3208#section-14.7
//# The packet formats described in this section are transport-layer
//# headers that MUST immediately follow the network-layer header in the
//# packet.
// What network elements and DLRs send (POLLs among them) is built here: the PGM packet
// right after the IPv4 header and its Router Alert option.
pub fn build_ipv4(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    router_alert: bool,
    pgm: &[u8],
) {
    let hlen = if router_alert { 24 } else { 20 };
    let total = u16::try_from(hlen + pgm.len()).unwrap_or(u16::MAX);
    out.clear();
    out.push(0x40 | (hlen / 4) as u8);
    out.push(0);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.push(ttl);
    out.push(IPPROTO_PGM as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    if router_alert {
        out.extend_from_slice(&ROUTER_ALERT_OPTION);
    }
    out.extend_from_slice(pgm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-8
        //= type=test
        //# All of the packet formats described in this section are transport-
        //# layer headers that MUST immediately follow the network-layer header
        //# in the packet.
        let mut b = Vec::new();
        let (s, d) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(239, 1, 1, 1));
        build_ipv4(&mut b, s, d, 7, true, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 28);
        let r = parse_ip(&b, 3).unwrap();
        assert_eq!(
            (r.source, r.destination, r.ttl, r.pgm_offset),
            (s, d, 7, 24)
        );
        assert!(r.router_alert);
        build_ipv4(&mut b, s, d, 7, false, &[1, 2, 3, 4]);
        let r = parse_ip(&b, 3).unwrap();
        assert!(!r.router_alert);
        assert_eq!(r.pgm_offset, 20);
        assert!(parse_ip(&b[..10], 3).is_err());
        assert!(!r.fragment);
        // Link-layer padding after the packet is left out.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(parse_ip(&padded, 3).unwrap().len, b.len());
        // A total length beyond the bytes received is refused.
        let mut long = b.clone();
        long[3] += 1;
        assert!(parse_ip(&long, 3).is_err());
        // Fragments are marked: more-fragments, or an offset.
        for (hi, lo) in [(0x20, 0x00), (0x00, 0x01), (0x20, 0xb9)] {
            let mut f = b.clone();
            f[6] = hi;
            f[7] = lo;
            assert!(parse_ip(&f, 3).unwrap().fragment);
        }
        let mut df = b.clone();
        df[6] = 0x40; // don't fragment: a whole packet
        assert!(!parse_ip(&df, 3).unwrap().fragment);
    }

    #[test]
    fn router_alert_is_found_after_other_options() {
        assert!(has_router_alert(&[1, 1, 0x94, 4, 0, 0]));
        assert!(has_router_alert(&[0x07, 3, 0, 0x94, 4, 0, 0]));
        assert!(!has_router_alert(&[0x07, 9, 0]));
        assert!(!has_router_alert(&[0, 0x94]));
    }
}
