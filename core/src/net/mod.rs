//! Transports that move engine transmits to and from the kernel (IPv4).
//!
//! Two encapsulations, behind one [`Transport`] trait so that the `host` layer is generic over
//! them:
//!
//! - [`udp::UdpTransport`], PGM over UDP, unprivileged and compatible with OpenPGM's
//!   `PGM_UDP_ENCAP_*` ports: packets for the group go to `group:3056`
//!   ([`DEFAULT_MULTICAST_PORT`]), packets for a unicast address (NAK, SPMR, POLR) go to
//!   `addr:3055` ([`DEFAULT_UNICAST_PORT`]). No Router Alert is possible.
//! - [`raw::RawTransport`], PGM over IP (protocol 113) on raw sockets, with the IP Router Alert
//!   option on the transmits that ask for it (§4). Needs `CAP_NET_RAW`.
//!
//! [`iface`] resolves interfaces by name or address.
//!
//! # Guarantees
//!
//! - Every socket is non-blocking: `send` and `recv` return
//!   [`io::ErrorKind::WouldBlock`] instead of waiting. A driver waits for readiness on the
//!   descriptors of [`Transport::sockets`] (the `host` layer does so with tokio).
//! - `recv` yields the PGM bytes only (IP header stripped for PGM/IP) and the IP source and
//!   destination addresses as [`RecvMeta`]; it never parses the PGM packet: the engines do.
//! - Per-transmit settings are honoured: [`Transmit::ttl`] overrides the multicast TTL for one
//!   packet; [`Transmit::router_alert`] selects the Router Alert socket on PGM/IP.

pub mod iface;
pub mod mmsg;
pub mod raw;
pub mod router;
pub mod udp;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use crate::proto::{RecvMeta, Transmit};

/// OpenPGM's default UDP port for unicast packets (`DEFAULT_UDP_ENCAP_UCAST_PORT`).
pub const DEFAULT_UNICAST_PORT: u16 = 3055;
/// OpenPGM's default UDP port for multicast packets (`DEFAULT_UDP_ENCAP_MCAST_PORT`).
pub const DEFAULT_MULTICAST_PORT: u16 = 3056;
/// IP protocol number of PGM.
pub const IPPROTO_PGM: i32 = 113;
/// Default multicast TTL (OpenPGM's `PGM_MULTICAST_HOPS` default is 16).
pub const DEFAULT_TTL: u8 = 16;

/// Moves engine transmits to the kernel and arriving packets to the engines.
///
/// Implementations own non-blocking sockets; see the [module documentation](self).
pub trait Transport: Send + Sync {
    /// Sends one transmit whose PGM bytes are `packet`. Returns `WouldBlock` when the
    /// socket's send buffer is full; the caller then waits until socket
    /// [`Transport::send_socket`] is writable and retries.
    fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()>;

    /// The index (into [`Transport::sockets`]) of the socket `transmit` leaves by.
    fn send_socket(&self, transmit: &Transmit) -> usize;

    /// Receives one packet from socket `socket` into `buf`: its metadata and the length of
    /// the PGM bytes at the start of `buf`. `WouldBlock` when none is queued. Packets too
    /// short to be PGM are reported as `InvalidData` errors, which a driver just skips.
    fn recv(&self, socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)>;

    /// The sockets to wait on, each with whether packets are received on it.
    fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)>;

    /// Sends the transmits of `batch` in order, as many as one system call takes where the
    /// transport can batch (at least one). Returns how many were sent, or the error of the
    /// first (`WouldBlock` as for [`Transport::send`]); the caller retries the rest. The
    /// default sends one.
    fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
        match batch.first() {
            Some((t, p)) => self.send(t, p).map(|()| 1),
            None => Ok(0),
        }
    }

    /// Receives the packets queued on socket `socket` into `batch`, as many as one system
    /// call gives where the transport can batch (at least one): `WouldBlock` when none is
    /// queued. Returns how many; see [`RecvBatch::get`]. The default receives one.
    fn recv_batch(&self, socket: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let (meta, n) = self.recv(socket, batch.bufs.slot_mut(0))?;
        batch.bufs.set_one(None, n);
        batch.items.push(Ok((meta, 0, 0, n)));
        Ok(1)
    }
}

/// A shared transport is a transport: the host's sender sends from the driver task and,
/// when it is idle, from the sending task.
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
        (**self).send(transmit, packet)
    }

    fn send_socket(&self, transmit: &Transmit) -> usize {
        (**self).send_socket(transmit)
    }

    fn recv(&self, socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
        (**self).recv(socket, buf)
    }

    fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        (**self).sockets()
    }

    fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
        (**self).send_batch(batch)
    }

    fn recv_batch(&self, socket: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        (**self).recv_batch(socket, batch)
    }
}

/// Packets received by one [`Transport::recv_batch`].
#[derive(Debug)]
pub struct RecvBatch {
    bufs: mmsg::RecvBuffers,
    /// Per packet: its metadata, slot, and the PGM bytes' range in the slot; or why it was
    /// unusable.
    items: Vec<Result<(RecvMeta, usize, usize, usize), io::ErrorKind>>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Buffers for [`mmsg::RECV_BATCH`] packets of up to 65,536 bytes (the largest IPv4
    /// datagram), about 2 MiB.
    pub fn new() -> Self {
        Self {
            bufs: mmsg::RecvBuffers::new(65_536),
            items: Vec::with_capacity(mmsg::RECV_BATCH),
        }
    }

    fn clear(&mut self) {
        self.items.clear();
    }

    /// How many packets the last receive gave.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the last receive gave none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Packet `i` of the last receive: its metadata and PGM bytes, or why it is unusable
    /// (`InvalidData`: truncated, or too short to be PGM), as [`Transport::recv`] reports.
    pub fn get(&self, i: usize) -> io::Result<(RecvMeta, &[u8])> {
        match self.items.get(i) {
            None => Err(io::ErrorKind::NotFound.into()),
            Some(Err(kind)) => Err((*kind).into()),
            Some(&Ok((meta, slot, start, end))) => {
                let (_, bytes) = self
                    .bufs
                    .get(slot)
                    .ok_or(io::Error::from(io::ErrorKind::InvalidData))?;
                Ok((meta, bytes.get(start..end).unwrap_or_default()))
            }
        }
    }
}

/// How many transmits at the front of `batch` can go out by one system call on a socket
/// whose multicast TTL is one setting: those with the first's Router Alert choice whose
/// group destinations ask for the same TTL (`None`: the socket's default `default_ttl`).
fn uniform_prefix(batch: &[(Transmit, &[u8])], default_ttl: u8) -> usize {
    let Some((first, _)) = batch.first() else {
        return 0;
    };
    let mut ttl: Option<u8> = None;
    let mut n = 0;
    for (t, _) in batch {
        if t.router_alert != first.router_alert {
            break;
        }
        if matches!(t.destination, crate::proto::Destination::Group(_)) {
            let want = t.ttl.unwrap_or(default_ttl);
            if *ttl.get_or_insert(want) != want {
                break;
            }
        }
        n += 1;
    }
    n
}

/// Which encapsulation a [`TransportConfig`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encapsulation {
    /// PGM/IP: raw sockets, IP protocol 113 (needs `CAP_NET_RAW`).
    Ip,
    /// PGM/UDP with OpenPGM's port pair.
    Udp {
        /// Destination port of unicast packets (NAK, SPMR, POLR), and the port listened on
        /// for them. Default [`DEFAULT_UNICAST_PORT`].
        unicast_port: u16,
        /// Port of the multicast packets. Default [`DEFAULT_MULTICAST_PORT`].
        multicast_port: u16,
    },
}

impl Encapsulation {
    /// PGM/UDP on OpenPGM's default ports.
    pub const UDP: Self = Self::Udp {
        unicast_port: DEFAULT_UNICAST_PORT,
        multicast_port: DEFAULT_MULTICAST_PORT,
    };
}

/// What a transport is opened with. [`TransportConfig::new`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// PGM/IP or PGM/UDP.
    pub encapsulation: Encapsulation,
    /// The session's multicast group.
    pub group: Ipv4Addr,
    /// The address of the interface multicast leaves by and is received on (see
    /// [`iface::resolve`] to get it from a name). Unicast sockets bind to it, so it is also
    /// the source address of every packet; it should be the source's `source_addr`.
    pub interface: Ipv4Addr,
    /// Multicast TTL unless a transmit says otherwise. Default [`DEFAULT_TTL`].
    pub ttl: u8,
    /// Whether multicast sent is looped back to sockets of this host. Default true, so that
    /// a sender and receivers may share a host.
    pub loopback: bool,
    /// Receive the group's multicast (receivers). Default true.
    pub listen_multicast: bool,
    /// Receive unicast packets (sources: NAKs and SPMRs). On PGM/UDP this binds the unicast
    /// port on `interface` exclusively, since the kernel would hand each unicast datagram to
    /// only one of several sockets sharing a port. Default true.
    pub listen_unicast: bool,
    /// Requested socket receive buffer in bytes (capped by `net.core.rmem_max`); `None`
    /// keeps the system default. Default 4 MiB.
    pub recv_buffer: Option<usize>,
}

impl TransportConfig {
    /// A configuration with the documented defaults.
    pub fn new(encapsulation: Encapsulation, group: Ipv4Addr, interface: Ipv4Addr) -> Self {
        Self {
            encapsulation,
            group,
            interface,
            ttl: DEFAULT_TTL,
            loopback: true,
            listen_multicast: true,
            listen_unicast: true,
            recv_buffer: Some(4 << 20),
        }
    }

    /// Opens the transport this configuration describes.
    pub fn open(&self) -> io::Result<AnyTransport> {
        match self.encapsulation {
            Encapsulation::Ip => raw::RawTransport::open(self).map(AnyTransport::Ip),
            Encapsulation::Udp { .. } => udp::UdpTransport::open(self).map(AnyTransport::Udp),
        }
    }
}

/// Either transport, as opened by [`TransportConfig::open`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyTransport {
    /// PGM/IP.
    Ip(raw::RawTransport),
    /// PGM/UDP.
    Udp(udp::UdpTransport),
}

impl Transport for AnyTransport {
    fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
        match self {
            Self::Ip(t) => t.send(transmit, packet),
            Self::Udp(t) => t.send(transmit, packet),
        }
    }

    fn send_socket(&self, transmit: &Transmit) -> usize {
        match self {
            Self::Ip(t) => t.send_socket(transmit),
            Self::Udp(t) => t.send_socket(transmit),
        }
    }

    fn recv(&self, socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
        match self {
            Self::Ip(t) => t.recv(socket, buf),
            Self::Udp(t) => t.recv(socket, buf),
        }
    }

    fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        match self {
            Self::Ip(t) => t.sockets(),
            Self::Udp(t) => t.sockets(),
        }
    }

    fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
        match self {
            Self::Ip(t) => t.send_batch(batch),
            Self::Udp(t) => t.send_batch(batch),
        }
    }

    fn recv_batch(&self, socket: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        match self {
            Self::Ip(t) => t.recv_batch(socket, batch),
            Self::Udp(t) => t.recv_batch(socket, batch),
        }
    }
}

/// The IPv4 address of a transmit's destination, or an error for IPv6 (not supported yet).
fn v4_destination(transmit: &Transmit) -> io::Result<Ipv4Addr> {
    match transmit.destination.addr() {
        std::net::IpAddr::V4(a) => Ok(a),
        std::net::IpAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "IPv6 destinations are not supported by the IPv4 transports",
        )),
    }
}

/// Keeps a socket's multicast TTL equal to what each transmit asks for, setting the option
/// only when it changes (per-transmit TTLs are rare: the SPMR multicast of §13.5).
#[derive(Debug)]
struct TtlCache {
    default: u8,
    current: std::sync::atomic::AtomicU32,
}

impl TtlCache {
    fn new(default: u8) -> Self {
        Self {
            default,
            current: std::sync::atomic::AtomicU32::new(u32::from(default)),
        }
    }

    /// Calls `set` with the TTL `transmit` needs if the socket has another one.
    fn apply(
        &self,
        transmit: &Transmit,
        set: impl FnOnce(u32) -> io::Result<()>,
    ) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if !matches!(transmit.destination, crate::proto::Destination::Group(_)) {
            return Ok(());
        }
        let want = u32::from(transmit.ttl.unwrap_or(self.default));
        if self.current.load(Ordering::Relaxed) != want {
            set(want)?;
            self.current.store(want, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Maps a permission error from creating or configuring a privileged socket to one that
/// names the missing capability.
fn privilege_error(e: io::Error, what: &str) -> io::Error {
    let denied = matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
    if denied {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} needs CAP_NET_RAW (run as root or grant cap_net_raw): {e}"),
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_the_capability() {
        for code in [libc::EPERM, libc::EACCES] {
            let e = privilege_error(io::Error::from_raw_os_error(code), "a raw socket");
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        }
        let e = privilege_error(io::Error::from_raw_os_error(libc::ENOBUFS), "a raw socket");
        assert!(!e.to_string().contains("CAP_NET_RAW"));
    }
}
