//! The multicast-routing control socket (`MRT_*` on a raw IGMP socket, `linux/mroute.h`).
//!
//! One process per network namespace (per routing table) may own it: `MRT_INIT` fails with
//! `EADDRINUSE` while smcroute, pimd or another `pgm-routerd` holds it. While it is open the
//! kernel forwards multicast along the MFC entries it is given and sends this socket an
//! `IGMPMSG_NOCACHE` upcall for the first packet of an `(S,G)` that has none. The socket also
//! receives the IGMP membership reports of the hosts on its VIFs (it joins 224.0.0.22, the
//! IGMPv3 report address, on the interfaces it is asked to listen on). Closing it, or
//! [`MrouteSocket::done`], removes every VIF and MFC entry it installed.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::igmp::{self, IgmpReport};
use super::sys::{pktinfo_ifindex, recvmsg_with_control, setsockopt_bytes, setsockopt_int};

const MRT_INIT: libc::c_int = 200;
const MRT_DONE: libc::c_int = 201;
const MRT_ADD_VIF: libc::c_int = 202;
const MRT_DEL_VIF: libc::c_int = 203;
const MRT_ADD_MFC: libc::c_int = 204;
const MRT_DEL_MFC: libc::c_int = 205;
const VIFF_USE_IFINDEX: u8 = 0x8;
/// The most VIFs the kernel supports (`MAXVIFS`).
pub const MAXVIFS: usize = 32;

/// The IGMPv3 report address, joined to hear reports.
pub const IGMPV3_REPORTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);

/// The kind of a kernel upcall (`igmpmsg.im_msgtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpcallKind {
    /// `IGMPMSG_NOCACHE`: a packet arrived for an `(S,G)` without an MFC entry.
    NoCache,
    /// `IGMPMSG_WRONGVIF`: a packet arrived on a VIF other than the entry's parent.
    WrongVif,
    /// `IGMPMSG_WHOLEPKT` or newer kinds, not used here.
    Other(u8),
}

/// What the mroute socket received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MrouteMsg {
    /// A kernel upcall.
    Upcall {
        /// Its kind.
        kind: UpcallKind,
        /// The VIF the packet arrived on.
        vif: u16,
        /// The packet's source.
        source: Ipv4Addr,
        /// The packet's group.
        group: Ipv4Addr,
    },
    /// An IGMP membership report or leave.
    Igmp(IgmpReport),
    /// Anything else (queries, our own packets): ignored.
    Other,
}

/// The mroute socket. See the [module documentation](self).
#[derive(Debug)]
pub struct MrouteSocket {
    sock: Socket,
}

impl MrouteSocket {
    /// Opens a raw IGMP socket and becomes the namespace's multicast router (`MRT_INIT`).
    pub fn open() -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_IGMP)),
        )?;
        sock.set_nonblocking(true)?;
        setsockopt_int(&sock, libc::IPPROTO_IP, MRT_INIT, 1).map_err(|e| {
            if e.raw_os_error() == Some(libc::EADDRINUSE) {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another multicast routing daemon (smcroute, pimd, ...) owns the kernel's \
                     multicast routing table: stop it or use mode = \"assist-only\"",
                )
            } else {
                e
            }
        })?;
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        igmp::prepare_sender(&sock)?;
        Ok(Self { sock })
    }

    /// Adds VIF `vif` for interface `ifindex` (TTL threshold 1).
    pub fn add_vif(&self, vif: u16, ifindex: u32) -> io::Result<()> {
        setsockopt_bytes(
            &self.sock,
            libc::IPPROTO_IP,
            MRT_ADD_VIF,
            &vifctl(vif, ifindex),
        )
    }

    /// Removes VIF `vif`.
    pub fn del_vif(&self, vif: u16, ifindex: u32) -> io::Result<()> {
        setsockopt_bytes(
            &self.sock,
            libc::IPPROTO_IP,
            MRT_DEL_VIF,
            &vifctl(vif, ifindex),
        )
    }

    /// Installs or replaces the MFC entry of `(source, group)`: arriving on VIF `parent`,
    /// forwarded out of `oifs`.
    pub fn add_mfc(
        &self,
        source: Ipv4Addr,
        group: Ipv4Addr,
        parent: u16,
        oifs: &[u16],
    ) -> io::Result<()> {
        let m = mfcctl(source, group, parent, oifs);
        setsockopt_bytes(&self.sock, libc::IPPROTO_IP, MRT_ADD_MFC, &m)
    }

    /// Removes the MFC entry of `(source, group)`.
    pub fn del_mfc(&self, source: Ipv4Addr, group: Ipv4Addr) -> io::Result<()> {
        let m = mfcctl(source, group, 0, &[]);
        setsockopt_bytes(&self.sock, libc::IPPROTO_IP, MRT_DEL_MFC, &m)
    }

    /// Stops being the multicast router (`MRT_DONE`): the kernel drops our VIFs and entries.
    pub fn done(&self) -> io::Result<()> {
        setsockopt_int(&self.sock, libc::IPPROTO_IP, MRT_DONE, 1)
    }

    /// Listens for IGMPv3 reports on interface `ifindex` (joins 224.0.0.22 there). IGMPv1/v2
    /// reports, sent to the group itself with Router Alert, reach the socket anyway.
    pub fn listen_reports(&self, ifindex: u32) -> io::Result<()> {
        self.sock
            .join_multicast_v4_n(&IGMPV3_REPORTS, &InterfaceIndexOrAddress::Index(ifindex))
    }

    /// Sends an IGMPv3 general query out of the interface with address `iface_addr`
    /// (answers within `max_resp` tenths of a second).
    pub fn send_general_query(&self, iface_addr: Ipv4Addr, max_resp: u8) -> io::Result<()> {
        igmp::send_general_query(&self.sock, iface_addr, max_resp)
    }

    /// Sends an IGMPv3 group-specific query for `group` out of the interface with address
    /// `iface_addr`.
    pub fn send_group_query(&self, iface_addr: Ipv4Addr, group: Ipv4Addr) -> io::Result<()> {
        igmp::send_group_query(&self.sock, iface_addr, group)
    }

    /// Receives one message (`WouldBlock` when none is queued).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<MrouteMsg> {
        let (n, control, clen) = recvmsg_with_control(&self.sock, buf)?;
        let ifindex = pktinfo_ifindex(&control[..clen]).unwrap_or(0);
        Ok(parse_mroute_msg(&buf[..n], ifindex))
    }
}

impl AsRawFd for MrouteSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for MrouteSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn vifctl(vif: u16, ifindex: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0..2].copy_from_slice(&vif.to_ne_bytes());
    v[2] = VIFF_USE_IFINDEX;
    v[3] = 1; // threshold
    v[8..12].copy_from_slice(&ifindex.to_ne_bytes());
    v
}

/// `struct mfcctl`: origin, group, parent (u16), ttls[32], 2 bytes padding, 4 ints.
fn mfcctl(source: Ipv4Addr, group: Ipv4Addr, parent: u16, oifs: &[u16]) -> [u8; 60] {
    let mut m = [0u8; 60];
    m[0..4].copy_from_slice(&source.octets());
    m[4..8].copy_from_slice(&group.octets());
    m[8..10].copy_from_slice(&parent.to_ne_bytes());
    for &o in oifs {
        if usize::from(o) < MAXVIFS && o != parent {
            m[10 + usize::from(o)] = 1;
        }
    }
    m
}

/// Parses what a raw IGMP socket of a multicast router receives: an upcall (an `igmpmsg`
/// overlaying an IP header whose protocol byte is 0) or an IGMP packet.
pub fn parse_mroute_msg(p: &[u8], ifindex: u32) -> MrouteMsg {
    if p.len() < 20 {
        return MrouteMsg::Other;
    }
    let addr = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    if p[9] == 0 {
        let kind = match p[8] {
            1 => UpcallKind::NoCache,
            2 => UpcallKind::WrongVif,
            k => UpcallKind::Other(k),
        };
        return MrouteMsg::Upcall {
            kind,
            vif: u16::from(p[10]) | (u16::from(p[11]) << 8),
            source: addr(12),
            group: addr(16),
        };
    }
    match igmp::parse_report(p, ifindex) {
        Some(r) => MrouteMsg::Igmp(r),
        None => MrouteMsg::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::raw::ROUTER_ALERT_OPTION;

    fn ip(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 1, proto, 0, 0, 10, 0, 3, 11, 224, 0, 0, 22,
        ];
        p.extend_from_slice(&ROUTER_ALERT_OPTION);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn upcall_is_parsed() {
        let mut p = [0u8; 20];
        p[8] = 1;
        p[10] = 3;
        p[12..16].copy_from_slice(&[10, 0, 1, 2]);
        p[16..20].copy_from_slice(&[239, 1, 1, 1]);
        assert_eq!(
            parse_mroute_msg(&p, 0),
            MrouteMsg::Upcall {
                kind: UpcallKind::NoCache,
                vif: 3,
                source: Ipv4Addr::new(10, 0, 1, 2),
                group: Ipv4Addr::new(239, 1, 1, 1)
            }
        );
    }

    #[test]
    fn igmp_reports_are_passed_on() {
        let p = ip(2, &[0x16, 0, 0, 0, 239, 1, 1, 1]);
        assert!(matches!(parse_mroute_msg(&p, 4), MrouteMsg::Igmp(r) if r.ifindex == 4));
        assert_eq!(
            parse_mroute_msg(&ip(2, &[0x11, 0, 0, 0, 0, 0, 0, 0]), 4),
            MrouteMsg::Other
        );
    }

    #[test]
    fn mfcctl_layout_matches_the_kernel() {
        let m = mfcctl(
            Ipv4Addr::new(10, 0, 1, 2),
            Ipv4Addr::new(239, 1, 1, 1),
            0,
            &[1, 0, 40],
        );
        assert_eq!(&m[0..8], &[10, 0, 1, 2, 239, 1, 1, 1]);
        assert_eq!(m[10], 0, "the parent is never an outgoing VIF");
        assert_eq!(m[11], 1);
        assert_eq!(m[10..42].iter().filter(|&&b| b == 1).count(), 1);
        assert_eq!(vifctl(1, 7)[8..12], 7u32.to_ne_bytes());
    }
}
