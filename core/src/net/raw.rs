//! PGM over IP (protocol 113) on raw sockets. Needs `CAP_NET_RAW`.
//!
//! Two sockets, the kernel writing the IP header of both:
//!
//! - socket 0, *plain*: receives every PGM packet for this host (unicast, and the group's
//!   multicast when listening for it) and sends the transmits without Router Alert. A
//!   classic BPF filter keeps out what the role does not want (a source takes no multicast,
//!   so never sees its own looped-back ODATA; a receiver takes no unicast).
//! - socket 1, *router alert*: `IP_OPTIONS` holds the 4-byte Router Alert option
//!   (RFC 2113: `0x94 0x04 0x00 0x00`), so everything sent on it carries it (§4: SPM, NCF,
//!   RDATA, POLL). A drop-all filter keeps it from queueing copies of received packets.
//!
//! Two sockets rather than toggling `IP_OPTIONS` per packet: no extra syscalls and no race
//! between concurrent senders.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};

use super::{
    Encapsulation, IPPROTO_PGM, RecvBatch, Transport, TransportConfig, TtlCache, mmsg,
    privilege_error, uniform_prefix, v4_destination,
};
use crate::proto::{RecvMeta, Transmit};

/// The IP Router Alert option (RFC 2113), value 0: "router shall examine packet".
pub const ROUTER_ALERT_OPTION: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offset of the destination address in the IPv4 header.
const IP_DST: u32 = 16;
const ACCEPT: u32 = 0x0004_0000;

/// Accept only packets with a multicast (224.0.0.0/4) destination.
const MULTICAST_ONLY: [SockFilter; 5] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, IP_DST),
    SockFilter::new(BPF_JGE_K, 0, 2, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 1, 0, 0xf000_0000),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// Accept only packets with a non-multicast destination.
const UNICAST_ONLY: [SockFilter; 5] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, IP_DST),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xf000_0000),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// Accept nothing.
const DROP_ALL: [SockFilter; 1] = [SockFilter::new(BPF_RET_K, 0, 0, 0)];

/// A PGM/IP transport. See the [module documentation](self).
#[derive(Debug)]
pub struct RawTransport {
    plain: Socket,
    router_alert: Socket,
    receives: bool,
    ttl_plain: TtlCache,
    ttl_ra: TtlCache,
}

impl RawTransport {
    /// Opens the sockets `config` describes. Its encapsulation must be
    /// [`Encapsulation::Ip`]. Fails with `PermissionDenied`, naming `CAP_NET_RAW`, without
    /// the capability.
    pub fn open(config: &TransportConfig) -> io::Result<Self> {
        if config.encapsulation != Encapsulation::Ip {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "RawTransport needs Encapsulation::Ip",
            ));
        }
        if !config.group.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a multicast group", config.group),
            ));
        }
        let plain = raw_socket(config)?;
        let filter: &[SockFilter] = match (config.listen_multicast, config.listen_unicast) {
            (true, true) => &[],
            (true, false) => &MULTICAST_ONLY,
            (false, true) => &UNICAST_ONLY,
            (false, false) => &DROP_ALL,
        };
        if !filter.is_empty() {
            plain.attach_filter(filter)?;
        }
        if config.listen_multicast {
            plain.join_multicast_v4(&config.group, &config.interface)?;
            plain.set_multicast_all_v4(false)?;
        }
        if let Some(size) = config.recv_buffer {
            plain.set_recv_buffer_size(size)?;
        }
        let router_alert = raw_socket(config)?;
        router_alert.attach_filter(&DROP_ALL)?;
        set_ip_options(&router_alert, &ROUTER_ALERT_OPTION)?;
        Ok(Self {
            plain,
            router_alert,
            receives: config.listen_multicast || config.listen_unicast,
            ttl_plain: TtlCache::new(config.ttl),
            ttl_ra: TtlCache::new(config.ttl),
        })
    }
}

fn raw_socket(config: &TransportConfig) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))
        .map_err(|e| privilege_error(e, "a raw IP socket for PGM (protocol 113)"))?;
    s.set_nonblocking(true)?;
    if !config.interface.is_unspecified() {
        s.set_multicast_if_v4(&config.interface)?;
    }
    s.set_multicast_ttl_v4(u32::from(config.ttl))?;
    s.set_multicast_loop_v4(config.loopback)?;
    Ok(s)
}

/// Sets `IP_OPTIONS` (the IPv4 options of every packet sent); socket2 has no setter for it.
#[allow(unsafe_code)]
fn set_ip_options(socket: &Socket, options: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(options.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is open for the life of `socket`; the pointer and length
    // describe `options`, which outlives the call, and the kernel only reads them.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            options.as_ptr().cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Transport for RawTransport {
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# All of the packet formats described in this section are transport-
    //# layer headers that MUST immediately follow the network-layer header
    //# in the packet.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.7
    //# The packet formats described in this section are transport-layer
    //# headers that MUST immediately follow the network-layer header in the
    //# packet.
    // The PGM bytes are the payload of a raw IP protocol 113 socket: the kernel's IPv4 header
    // (with Router Alert on socket 1) and nothing else comes before them. PGM over UDP
    // (`UdpTransport`) puts a UDP header in between: see the exception.
    fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV4::new(v4_destination(transmit)?, 0));
        let (sock, ttl) = if transmit.router_alert {
            (&self.router_alert, &self.ttl_ra)
        } else {
            (&self.plain, &self.ttl_plain)
        };
        ttl.apply(transmit, |t| sock.set_multicast_ttl_v4(t))?;
        sock.send_to(packet, &addr).map(drop)
    }

    fn send_socket(&self, transmit: &Transmit) -> usize {
        usize::from(transmit.router_alert)
    }

    fn recv(&self, socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
        if socket != 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = (&self.plain).read(buf)?;
        let (meta, ihl) = parse_ipv4_header(&buf[..n])?;
        buf.copy_within(ihl..n, 0);
        Ok((meta, n - ihl))
    }

    fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
        let Some((first, _)) = batch.first() else {
            return Ok(0);
        };
        let (sock, ttl) = if first.router_alert {
            (&self.router_alert, &self.ttl_ra)
        } else {
            (&self.plain, &self.ttl_plain)
        };
        let n = uniform_prefix(batch, ttl.default).min(mmsg::SEND_BATCH);
        let mut msgs = [(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), &[][..]); mmsg::SEND_BATCH];
        for (i, (t, p)) in batch[..n].iter().enumerate() {
            msgs[i] = (SocketAddrV4::new(v4_destination(t)?, 0), p);
        }
        let group_ttl = batch[..n]
            .iter()
            .find(|(t, _)| matches!(t.destination, crate::proto::Destination::Group(_)));
        ttl.apply(group_ttl.map_or(first, |(t, _)| t), |t| {
            sock.set_multicast_ttl_v4(t)
        })?;
        mmsg::send_batch(sock.as_fd(), &msgs[..n])
    }

    fn recv_batch(&self, socket: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        if socket != 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        batch.clear();
        let n = mmsg::recv_batch(self.plain.as_fd(), &mut batch.bufs)?;
        for i in 0..n {
            let item = match batch.bufs.get(i) {
                Some((_, packet)) => parse_ipv4_header(packet)
                    .map(|(meta, ihl)| (meta, i, ihl, packet.len()))
                    .map_err(|e| e.kind()),
                None => Err(io::ErrorKind::InvalidData),
            };
            batch.items.push(item);
        }
        Ok(n)
    }

    fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        vec![
            (self.plain.as_fd(), self.receives),
            (self.router_alert.as_fd(), false),
        ]
    }
}

/// The addresses and header length (IHL, options included) of an IPv4 packet.
pub fn parse_ipv4_header(packet: &[u8]) -> io::Result<(RecvMeta, usize)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if packet.len() < 20 {
        return Err(bad("IPv4 packet shorter than its header"));
    }
    if packet[0] >> 4 != 4 {
        return Err(bad("not an IPv4 packet"));
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || ihl > packet.len() {
        return Err(bad("bad IPv4 header length"));
    }
    let addr = |o: usize| Ipv4Addr::new(packet[o], packet[o + 1], packet[o + 2], packet[o + 3]);
    let meta = RecvMeta {
        source: addr(12).into(),
        destination: addr(16).into(),
    };
    Ok((meta, ihl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_router_alert_is_stripped() {
        let mut p = vec![0x46, 0, 0, 32, 0, 0, 0, 0, 1, 113, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 239, 192, 0, 1]);
        p.extend_from_slice(&ROUTER_ALERT_OPTION);
        p.extend_from_slice(&[0xaa; 8]);
        let (meta, ihl) = parse_ipv4_header(&p).unwrap();
        assert_eq!(ihl, 24);
        assert_eq!(meta.source, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(meta.destination, Ipv4Addr::new(239, 192, 0, 1));
        assert!(parse_ipv4_header(&p[..19]).is_err());
        p[0] = 0x4f; // IHL 60 > 32 bytes
        assert!(parse_ipv4_header(&p).is_err());
        p[0] = 0x65;
        assert!(parse_ipv4_header(&p).is_err());
    }
}
