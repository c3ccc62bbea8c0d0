//! PGM over UDP (OpenPGM's UDP encapsulation), unprivileged.
//!
//! Two sockets:
//!
//! - socket 0, the *unicast* socket, bound to `interface:unicast_port` when listening for
//!   unicast (sources: NAKs, SPMRs) or to an ephemeral port otherwise. Every packet is sent
//!   from it: multicast to `group:multicast_port`, unicast to `addr:unicast_port`. It is bound
//!   exclusively (no `SO_REUSEADDR`/`SO_REUSEPORT`): the kernel hands a unicast datagram to one
//!   socket only, so sharing the port would lose NAKs silently; a second binder gets
//!   `AddrInUse` instead.
//! - socket 1, the *multicast* socket (when listening for multicast), bound to
//!   `group:multicast_port` with `SO_REUSEADDR` and `SO_REUSEPORT`, so several processes of a
//!   host share the port (the kernel copies multicast to every such socket), joined to the
//!   group on the interface, with `IP_MULTICAST_ALL` off so that it gets this group only.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::{
    Encapsulation, RecvBatch, Transport, TransportConfig, TtlCache, mmsg, uniform_prefix,
    v4_destination,
};
use crate::proto::{Destination, RecvMeta, Transmit};

/// A PGM/UDP transport. See the [module documentation](self).
#[derive(Debug)]
pub struct UdpTransport {
    unicast: UdpSocket,
    multicast: Option<UdpSocket>,
    listen_unicast: bool,
    group: Ipv4Addr,
    interface: Ipv4Addr,
    unicast_port: u16,
    multicast_port: u16,
    ttl: TtlCache,
}

impl UdpTransport {
    /// Opens the sockets `config` describes. Its encapsulation must be
    /// [`Encapsulation::Udp`].
    pub fn open(config: &TransportConfig) -> io::Result<Self> {
        let Encapsulation::Udp {
            unicast_port,
            multicast_port,
        } = config.encapsulation
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UdpTransport needs Encapsulation::Udp",
            ));
        };
        if !config.group.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a multicast group", config.group),
            ));
        }
        let unicast = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        unicast.set_nonblocking(true)?;
        let port = if config.listen_unicast {
            unicast_port
        } else {
            0
        };
        unicast.bind(&SocketAddrV4::new(config.interface, port).into())?;
        if !config.interface.is_unspecified() {
            unicast.set_multicast_if_v4(&config.interface)?;
        }
        unicast.set_multicast_ttl_v4(u32::from(config.ttl))?;
        unicast.set_multicast_loop_v4(config.loopback)?;
        if let Some(size) = config.recv_buffer.filter(|_| config.listen_unicast) {
            unicast.set_recv_buffer_size(size)?;
        }

        let multicast = if config.listen_multicast {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_nonblocking(true)?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            // Binding to the group, not INADDR_ANY, keeps unicast to the port out of it.
            s.bind(&SocketAddrV4::new(config.group, multicast_port).into())?;
            s.join_multicast_v4(&config.group, &config.interface)?;
            s.set_multicast_all_v4(false)?;
            if let Some(size) = config.recv_buffer {
                s.set_recv_buffer_size(size)?;
            }
            Some(UdpSocket::from(s))
        } else {
            None
        };

        Ok(Self {
            unicast: UdpSocket::from(unicast),
            multicast,
            listen_unicast: config.listen_unicast,
            group: config.group,
            interface: config.interface,
            unicast_port,
            multicast_port,
            ttl: TtlCache::new(config.ttl),
        })
    }

    /// The local address of the unicast socket (the source address and port of every
    /// packet sent).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.unicast.local_addr()
    }
}

impl Transport for UdpTransport {
    fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
        let addr = v4_destination(transmit)?;
        let port = match transmit.destination {
            Destination::Group(_) => self.multicast_port,
            _ => self.unicast_port,
        };
        self.ttl
            .apply(transmit, |ttl| self.unicast.set_multicast_ttl_v4(ttl))?;
        self.unicast
            .send_to(packet, SocketAddrV4::new(addr, port))
            .map(drop)
    }

    fn send_socket(&self, _transmit: &Transmit) -> usize {
        0
    }

    fn recv(&self, socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
        let (sock, destination) = match (socket, &self.multicast) {
            (0, _) => (&self.unicast, self.interface),
            (_, Some(m)) => (m, self.group),
            (_, None) => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let (n, from) = sock.recv_from(buf)?;
        let meta = RecvMeta {
            source: from.ip(),
            destination: destination.into(),
        };
        Ok((meta, n))
    }

    fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
        if let [(t, p)] = batch {
            // One datagram (a paced sender's message): `sendto`, without the batch headers.
            return self.send(t, p).map(|()| 1);
        }
        let n = uniform_prefix(batch, self.ttl.default).min(mmsg::SEND_BATCH);
        let Some((first, _)) = batch.first() else {
            return Ok(0);
        };
        let mut msgs = [(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), &[][..]); mmsg::SEND_BATCH];
        for (i, (t, p)) in batch[..n].iter().enumerate() {
            let port = match t.destination {
                Destination::Group(_) => self.multicast_port,
                _ => self.unicast_port,
            };
            msgs[i] = (SocketAddrV4::new(v4_destination(t)?, port), p);
        }
        let group_ttl = batch[..n]
            .iter()
            .find(|(t, _)| matches!(t.destination, Destination::Group(_)));
        self.ttl.apply(group_ttl.map_or(first, |(t, _)| t), |ttl| {
            self.unicast.set_multicast_ttl_v4(ttl)
        })?;
        mmsg::send_batch(self.unicast.as_fd(), &msgs[..n])
    }

    fn recv_batch(&self, socket: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        let (sock, destination) = match (socket, &self.multicast) {
            (0, _) => (&self.unicast, self.interface),
            (_, Some(m)) => (m, self.group),
            (_, None) => return Err(io::ErrorKind::WouldBlock.into()),
        };
        batch.clear();
        let n = mmsg::recv_batch(sock.as_fd(), &mut batch.bufs)?;
        for i in 0..n {
            batch.items.push(match batch.bufs.get(i) {
                Some((Some(from), data)) => Ok((
                    RecvMeta {
                        source: (*from.ip()).into(),
                        destination: destination.into(),
                    },
                    i,
                    0,
                    data.len(),
                )),
                _ => Err(io::ErrorKind::InvalidData),
            });
        }
        Ok(n)
    }

    fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut v = vec![(self.unicast.as_fd(), self.listen_unicast)];
        if let Some(m) = &self.multicast {
            v.push((m.as_fd(), true));
        }
        v
    }
}
