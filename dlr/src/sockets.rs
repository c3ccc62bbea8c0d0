//! The DLR's receive sockets, one or two per interface, each read by a tokio task that hands
//! the packets to the driver through a channel.
//!
//! - **IP** (`serve = "listed"` and `"all"`): a raw `IPPROTO_PGM` socket bound to the
//!   interface (`SO_BINDTODEVICE`), `IP_MULTICAST_ALL` off. It receives the PGM packets
//!   unicast to this host (NAKs from downstream or from the parent) and, with `"listed"`, the
//!   multicast of the groups it joins on the interface (ODATA, RDATA, SPM, NCF, POLL). With
//!   `"all"` a BPF filter keeps only unicast here: the next socket takes the multicast.
//! - **Link** (`serve = "all"` only): an `AF_PACKET` datagram socket (IP payloads) with
//!   `PACKET_MR_ALLMULTI` on the interface and a BPF filter that keeps incoming (not
//!   outgoing) IPv4 protocol 113 packets with a multicast destination that arrived on the
//!   interface: every PGM session heard on the link, without joining its group. (A router
//!   still forwards a group onto the link only if something asks it to: a static route or a
//!   member.)
//!
//! Our own transmits leave through the core's `IP_HDRINCL` sender, whose multicast loopback
//! is off, so they never come back here.

use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

use pgm_core::net::IPPROTO_PGM;
use pgm_core::net::router::{Received, sockets::parse_ip};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_JGE_K: u16 = 0x35;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const ACCEPT: u32 = 0x0004_0000;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the packet type (`PACKET_OUTGOING` = 4).
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
/// `SKF_AD_OFF + SKF_AD_IFINDEX`: the arrival interface.
const AD_IFINDEX: u32 = 0xffff_f000 + 8;
const PACKET_OUTGOING: u32 = 4;
const ETH_P_IP: u16 = 0x0800;

/// Unicast destinations only.
const UNICAST_ONLY: [SockFilter; 5] = [
    SockFilter::new(BPF_LD_W_ABS, 0, 0, 16),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xe000_0000),
    SockFilter::new(BPF_JGE_K, 0, 1, 0xf000_0000),
    SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
    SockFilter::new(BPF_RET_K, 0, 0, 0),
];

/// The link socket's filter for interface `ifindex`.
fn link_filter(ifindex: u32) -> [SockFilter; 11] {
    [
        SockFilter::new(BPF_LD_W_ABS, 0, 0, AD_PKTTYPE),
        SockFilter::new(BPF_JEQ_K, 8, 0, PACKET_OUTGOING),
        SockFilter::new(BPF_LD_W_ABS, 0, 0, AD_IFINDEX),
        SockFilter::new(BPF_JEQ_K, 0, 6, ifindex),
        SockFilter::new(BPF_LD_B_ABS, 0, 0, 9),
        SockFilter::new(BPF_JEQ_K, 0, 4, IPPROTO_PGM as u32),
        SockFilter::new(BPF_LD_W_ABS, 0, 0, 16),
        SockFilter::new(BPF_JGE_K, 0, 2, 0xe000_0000),
        SockFilter::new(BPF_JGE_K, 1, 0, 0xf000_0000),
        SockFilter::new(BPF_RET_K, 0, 0, ACCEPT),
        SockFilter::new(BPF_RET_K, 0, 0, 0),
    ]
}

/// A received packet: the IP header fields and the whole IP packet.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) ifindex: u32,
    pub(crate) ip: Received,
    pub(crate) bytes: Vec<u8>,
}

/// The raw PGM/IP socket of one interface.
pub(crate) fn open_ip(name: &str, unicast_only: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))?;
    sock.set_nonblocking(true)?;
    sock.bind_device(Some(name.as_bytes()))?;
    sock.set_multicast_all_v4(false)?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    if unicast_only {
        sock.attach_filter(&UNICAST_ONLY)?;
    }
    Ok(sock)
}

/// Joins `group` on interface `ifindex` with the IP socket.
pub(crate) fn join(sock: &Socket, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
    sock.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))
}

/// The link socket of one interface (`serve = "all"`).
pub(crate) fn open_link(ifindex: u32) -> io::Result<Socket> {
    let proto = Protocol::from(i32::from(ETH_P_IP.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))?;
    sock.set_nonblocking(true)?;
    sock.attach_filter(&link_filter(ifindex))?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    allmulti(&sock, ifindex)?;
    Ok(sock)
}

/// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_ALLMULTI`: the NIC passes every multicast frame
/// for as long as the socket lives. socket2 has no setter for it.
#[allow(unsafe_code)]
fn allmulti(sock: &Socket, ifindex: u32) -> io::Result<()> {
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?,
        mr_type: libc::PACKET_MR_ALLMULTI as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: the descriptor is open for the life of `sock`; the pointer and length describe
    // `mreq`, which outlives the call, and the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const mreq).cast(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `sock` (of interface `ifindex`) forever, sending each IPv4 packet to `tx`. Ends when
/// the driver is gone.
///
/// Readiness comes from a `dup(2)` of the descriptor registered with tokio as a `UdpSocket`
/// that never does I/O itself (as the router daemon does); all reads go through `sock`.
pub(crate) fn spawn_reader(
    sock: Socket,
    ifindex: u32,
    label: &'static str,
    tx: mpsc::Sender<Incoming>,
) -> io::Result<()> {
    let ready = UdpSocket::from_std(std::net::UdpSocket::from(
        sock.as_fd().try_clone_to_owned()?,
    ))?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            if let Err(e) = ready.readable().await {
                tracing::error!(socket = label, ifindex, error = %e, "receive socket failed");
                return;
            }
            loop {
                match ready.try_io(Interest::READABLE, || (&sock).read(&mut buf)) {
                    Ok(n) => {
                        let Ok(ip) = parse_ip(&buf[..n], ifindex) else {
                            continue;
                        };
                        let pkt = Incoming {
                            ifindex,
                            ip,
                            bytes: buf[..n].to_vec(),
                        };
                        if tx.send(pkt).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(socket = label, ifindex, error = %e, "receive failed");
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}
