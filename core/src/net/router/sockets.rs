//! The network element's PGM sockets: three receive sockets that tell the arrival interface
//! and one `IP_HDRINCL` sender per interface.
//!
//! Receive sockets ([`RecvSocketKind`]):
//!
//! - **Router Alert**: raw `IPPROTO_PGM` (113), `IP_ROUTER_ALERT` set; the kernel hands it
//!   (instead of forwarding) every transit packet bearing the option: SPM, NCF, RDATA, POLL.
//!   A BPF filter keeps only multicast destinations (a raw socket also sees local unicast,
//!   which the next one takes).
//! - **Unicast**: raw `IPPROTO_PGM`; NAKs, NNAKs and POLRs sent to one of our addresses. BPF:
//!   unicast only.
//! - **Intercept** ([`RecvSocket::open_intercept`]): one `AF_PACKET` socket (`SOCK_DGRAM`,
//!   `ETH_P_ALL`, `PACKET_IGNORE_OUTGOING`) per upstream interface of an assisted group, bound
//!   to it by index. It taps the IP packets the interface receives before the kernel routes
//!   them, so it needs no group membership: the kernel forwards ODATA without delivering a
//!   local copy, and nftables stops the forwarding of every other type of an assisted group
//!   (see [`super::nft`]), which the daemon then handles itself. Its BPF filter passes only
//!   unfragmented PGM with a multicast destination whose type is not ODATA: ODATA costs one
//!   filter run and never reaches user space. Frames of groups nobody joined still reach
//!   the tap because a multicast-routing VIF puts its interface in all-multicast mode.
//!
//! The raw sockets have `IP_MULTICAST_ALL` off so that none gets copies of groups joined by
//! another. [`RecvSocket::open`] of [`RecvSocketKind::Intercept`] gives the older,
//! membership-based variant (a raw socket that sees a group's packets only once
//! [`joined`](RecvSocket::join) on the interface); the daemon no longer uses it, and it is
//! kept as the baseline the router benchmark measures the cost of a membership with.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};

use super::sys::{pktinfo_ifindex, recvmsg_with_control, setsockopt_int};
use crate::net::IPPROTO_PGM;
use crate::net::raw::ROUTER_ALERT_OPTION;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_JSET_K: u16 = 0x45;
const BPF_LDX_B_MSH: u16 = 0xb1;
const BPF_LD_B_IND: u16 = 0x50;
const BPF_JGE_K: u16 = 0x35;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const IP_DST: u32 = 16;
const IP_FRAG: u32 = 6;
const IP_PROTO: u32 = 9;
/// The More Fragments flag and the fragment offset.
const IP_FRAG_MASK: u32 = 0x3fff;
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

/// `SKF_AD_OFF + SKF_AD_PROTOCOL` (linux/filter.h): a load at this offset reads the frame's
/// EtherType (`skb->protocol`) instead of packet data.
const SKF_AD_PROTOCOL: u32 = 0xffff_f000;

/// For the intercept's `AF_PACKET` socket, whose packets start at the network header
/// (`SOCK_DGRAM`) and are every frame the interface receives (`ETH_P_ALL`): IPv4, then
/// unfragmented PGM (an IP fragment has no PGM type at the header length + 4), then
/// [`MULTICAST_NOT_ODATA`]'s tests. As `(code, jt, jf, k)`, so that the unit tests can run it.
const PGM_MULTICAST_NOT_ODATA: [(u16, u8, u8, u32); 14] = [
    (BPF_LD_H_ABS, 0, 0, SKF_AD_PROTOCOL),
    (BPF_JEQ_K, 0, 11, libc::ETH_P_IP as u32),
    (BPF_LD_B_ABS, 0, 0, IP_PROTO),
    (BPF_JEQ_K, 0, 9, IPPROTO_PGM as u32),
    (BPF_LD_H_ABS, 0, 0, IP_FRAG),
    (BPF_JSET_K, 7, 0, IP_FRAG_MASK),
    (BPF_LD_W_ABS, 0, 0, IP_DST),
    (BPF_JGE_K, 0, 5, 0xe000_0000),
    (BPF_JGE_K, 4, 0, 0xf000_0000),
    (BPF_LDX_B_MSH, 0, 0, 0),
    (BPF_LD_B_IND, 0, 0, 4),
    (BPF_JEQ_K, 1, 0, PGM_ODATA),
    (BPF_RET_K, 0, 0, ACCEPT),
    (BPF_RET_K, 0, 0, 0),
];

/// Which receive socket; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvSocketKind {
    /// `IP_ROUTER_ALERT`.
    RouterAlert,
    /// Unicast to our addresses.
    Unicast,
    /// What an upstream interface receives of assisted groups (an `AF_PACKET` tap), ODATA
    /// filtered out in the kernel.
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
    /// Whether the IP header carried the Router Alert option.
    pub router_alert: bool,
    /// Where the PGM packet starts in the buffer.
    pub pgm_offset: usize,
    /// Total bytes received (IP header included).
    pub len: usize,
}

/// One receive socket.
#[derive(Debug)]
pub struct RecvSocket {
    sock: Socket,
    kind: RecvSocketKind,
    /// The interface an `AF_PACKET` intercept socket is bound to (`None` for raw sockets).
    bound: Option<u32>,
}

impl RecvSocket {
    /// Opens a raw receive socket of `kind` (needs `CAP_NET_RAW`). For
    /// [`RecvSocketKind::Intercept`] this is the membership-based variant (see the
    /// [module documentation](self)); the daemon's intercept is [`Self::open_intercept`].
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
        Ok(Self {
            sock,
            kind,
            bound: None,
        })
    }

    /// Opens the intercept socket of upstream interface `ifindex`: `AF_PACKET`, `SOCK_DGRAM`,
    /// `ETH_P_ALL`, outgoing packets ignored, filtered to multicast PGM but ODATA (needs
    /// `CAP_NET_RAW`). It joins no group.
    ///
    /// `ETH_P_ALL`, not `ETH_P_IP`: a tap of all protocols sees a frame before the IP layer
    /// does and, when its filter drops it, gives it back before IP takes it. A tap bound to
    /// `ETH_P_IP` is handed the frame after the IP layer, which then holds a shared buffer:
    /// it clones every packet and multicast forwarding copies each header (measured: a
    /// quarter of the forwarding cost).
    pub fn open_intercept(ifindex: u32) -> io::Result<Self> {
        let ifindex_c = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
        // Protocol 0 until bound: nothing is queued before the filter is in place.
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, None)?;
        sock.set_nonblocking(true)?;
        sock.attach_filter(
            &PGM_MULTICAST_NOT_ODATA.map(|(c, t, f, k)| SockFilter::new(c, t, f, k)),
        )?;
        // The copies the kernel forwards out of this interface are not arrivals.
        setsockopt_int(&sock, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        let _ = sock.set_recv_buffer_size(4 << 20);
        bind_packet(&sock, ifindex_c)?;
        Ok(Self {
            sock,
            kind: RecvSocketKind::Intercept,
            bound: Some(ifindex),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> RecvSocketKind {
        self.kind
    }

    /// Joins `group` on interface `ifindex` (the membership-based intercept variant; an
    /// [`open_intercept`](Self::open_intercept) socket needs no membership).
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
        if let Some(ifindex) = self.bound {
            // A tap sees packets the IP layer has not checked yet, padded to the minimum
            // frame length.
            let p = buf.get(..n).unwrap_or_default();
            return parse_ip(checked_ip(p)?, ifindex);
        }
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
    let addr = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    Ok(Received {
        ifindex,
        source: addr(12),
        destination: addr(16),
        ttl: p[8],
        router_alert: has_router_alert(&p[20..ihl]),
        pgm_offset: ihl,
        len: p.len(),
    })
}

/// `PACKET_IGNORE_OUTGOING` (linux/if_packet.h, since Linux 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Binds an `AF_PACKET` socket to `ETH_P_ALL` on interface `ifindex`.
#[allow(unsafe_code)]
fn bind_packet(sock: &Socket, ifindex: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the life of `sock`; the pointer and length describe
    // `sll`, which outlives the call, and the kernel only reads it.
    let r = unsafe { libc::bind(sock.as_raw_fd(), (&raw const sll).cast(), len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the IP layer would have checked of a tapped IPv4 packet: the header checksum and the
/// total length, which trims the link layer's padding. `InvalidData` if it is not valid.
fn checked_ip(p: &[u8]) -> io::Result<&[u8]> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let ihl = usize::from(p.first().copied().unwrap_or(0) & 0x0f) * 4;
    if p.len() < 20 || ihl < 20 || ihl > p.len() {
        return Err(bad("bad IPv4 header length"));
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total < ihl || total > p.len() {
        return Err(bad("bad IPv4 total length"));
    }
    // A valid header sums to all ones, its checksum field included (RFC 1071).
    if crate::wire::checksum_sum(&p[..ihl]) != 0xffff {
        return Err(bad("bad IPv4 header checksum"));
    }
    Ok(&p[..total])
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
    }

    /// Runs a classic BPF program of the opcodes the filters use over an IPv4 packet `p`.
    fn run_bpf(prog: &[(u16, u8, u8, u32)], p: &[u8]) -> u32 {
        run_bpf_frame(prog, p, libc::ETH_P_IP as u16)
    }

    /// Runs a classic BPF program over `p`, a frame of EtherType `proto` (out-of-bounds loads
    /// reject, as in the kernel).
    fn run_bpf_frame(prog: &[(u16, u8, u8, u32)], p: &[u8], proto: u16) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let at = |o: usize, n: usize| p.get(o..o + n);
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { jt } else { jf });
            match code {
                BPF_LD_W_ABS => match at(k as usize, 4) {
                    Some(b) => a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    None => return 0,
                },
                BPF_LD_H_ABS if k == SKF_AD_PROTOCOL => a = u32::from(proto),
                BPF_LD_H_ABS => match at(k as usize, 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                BPF_LD_B_ABS => match at(k as usize, 1) {
                    Some(b) => a = u32::from(b[0]),
                    None => return 0,
                },
                BPF_LD_B_IND => match at(x as usize + k as usize, 1) {
                    Some(b) => a = u32::from(b[0]),
                    None => return 0,
                },
                BPF_LDX_B_MSH => match at(k as usize, 1) {
                    Some(b) => x = u32::from(b[0] & 0x0f) * 4,
                    None => return 0,
                },
                BPF_JEQ_K => pc += jump(a == k),
                BPF_JGE_K => pc += jump(a >= k),
                BPF_JSET_K => pc += jump(a & k != 0),
                BPF_RET_K => return k,
                other => panic!("opcode {other:#x} not interpreted"),
            }
        }
    }

    /// An IPv4 packet as a tap sees it: checksum set, padded like a short Ethernet frame.
    fn tapped(src: Ipv4Addr, dst: Ipv4Addr, pgm: &[u8], ra: bool, pad: usize) -> Vec<u8> {
        let mut b = Vec::new();
        build_ipv4(&mut b, src, dst, 9, ra, pgm);
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let c = crate::wire::checksum(&b[..ihl]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b.resize(b.len() + pad, 0);
        b
    }

    #[test]
    fn intercept_filter_passes_multicast_pgm_but_odata() {
        let (s, g, u) = (
            Ipv4Addr::new(10, 0, 1, 2),
            Ipv4Addr::new(239, 1, 1, 1),
            Ipv4Addr::new(10, 0, 2, 1),
        );
        // PGM header: ports, type at byte 4.
        let pgm = |ty: u8| [0, 1, 0, 2, ty, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let prog = &PGM_MULTICAST_NOT_ODATA;
        for (ty, name) in [
            (0x00, "SPM"),
            (0x05, "RDATA"),
            (0x0a, "NCF"),
            (0x01, "POLL"),
        ] {
            for ra in [false, true] {
                let p = tapped(s, g, &pgm(ty), ra, 0);
                assert_eq!(run_bpf(prog, &p), ACCEPT, "{name}, router alert {ra}");
            }
        }
        for ra in [false, true] {
            assert_eq!(run_bpf(prog, &tapped(s, g, &pgm(0x04), ra, 0)), 0, "ODATA");
        }
        assert_eq!(
            run_bpf(prog, &tapped(s, u, &pgm(0x08), false, 0)),
            0,
            "unicast NAK"
        );
        let broadcast = Ipv4Addr::new(255, 255, 255, 255);
        assert_eq!(run_bpf(prog, &tapped(s, broadcast, &pgm(0), false, 0)), 0);
        let mut udp = tapped(s, g, &pgm(0), false, 0);
        udp[9] = 17;
        assert_eq!(run_bpf(prog, &udp), 0, "not PGM");
        let spm = tapped(s, g, &pgm(0), false, 0);
        assert_eq!(run_bpf_frame(prog, &spm, 0x86dd), 0, "not IPv4");
        assert_eq!(run_bpf_frame(prog, &spm, 0x0806), 0, "ARP");
        for frag in [0x2000u16, 0x0001] {
            let mut f = tapped(s, g, &pgm(0), false, 0);
            f[6..8].copy_from_slice(&frag.to_be_bytes());
            assert_eq!(run_bpf(prog, &f), 0, "fragment {frag:#x}");
        }
        assert_eq!(
            run_bpf(prog, &tapped(s, g, &pgm(0), false, 0)[..22]),
            0,
            "truncated"
        );
    }

    #[test]
    fn tapped_packets_are_checked_and_trimmed() {
        let (s, g) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(239, 1, 1, 1));
        let p = tapped(s, g, &[1, 2, 3, 4], true, 18);
        let ip = checked_ip(&p).unwrap();
        assert_eq!(ip.len(), 28);
        let r = parse_ip(ip, 5).unwrap();
        assert_eq!((r.len, r.pgm_offset, r.ifindex), (28, 24, 5));
        assert!(r.router_alert);
        let mut bad = p.clone();
        bad[8] ^= 1;
        assert!(checked_ip(&bad).is_err(), "checksum");
        assert!(
            checked_ip(&p[..27]).is_err(),
            "shorter than the total length"
        );
        let mut short = p.clone();
        short[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(checked_ip(&short).is_err(), "total length below the header");
        assert!(checked_ip(&p[..12]).is_err());
        assert!(checked_ip(&[]).is_err());
    }

    #[test]
    fn router_alert_is_found_after_other_options() {
        assert!(has_router_alert(&[1, 1, 0x94, 4, 0, 0]));
        assert!(has_router_alert(&[0x07, 3, 0, 0x94, 4, 0, 0]));
        assert!(!has_router_alert(&[0x07, 9, 0]));
        assert!(!has_router_alert(&[0, 0x94]));
    }
}
