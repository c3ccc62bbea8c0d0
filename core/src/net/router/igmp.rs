//! IGMP for the network element: the membership reports of hosts (v1, v2, v3) as joins and
//! leaves, and the queries of the router's querier (RFC 3376), sent from a raw IGMP socket
//! with Router Alert and TTL 1.
//!
//! Reports reach the daemon through the multicast-routing socket (mroute plane) or through
//! the netdev plane's log rule; both hand the IP packet to [`parse_report`].

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};

use super::sys::setsockopt_bytes;
use crate::net::raw::ROUTER_ALERT_OPTION;

const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// A membership change heard in an IGMP report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpChange {
    /// The group.
    pub group: Ipv4Addr,
    /// Joined (true) or left (false).
    pub join: bool,
}

/// An IGMP membership report or leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgmpReport {
    /// Interface index of arrival (0 if unknown).
    pub ifindex: u32,
    /// The reporting host.
    pub reporter: Ipv4Addr,
    /// The changes it reports.
    pub changes: Vec<IgmpChange>,
}

/// The report or leave in IPv4 packet `p` (from its IP header) that arrived on `ifindex`;
/// `None` for anything else (queries, other protocols, truncated packets).
pub fn parse_report(p: &[u8], ifindex: u32) -> Option<IgmpReport> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != libc::IPPROTO_IGMP as u8 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl + 8 {
        return None;
    }
    let reporter = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let igmp = &p[ihl..];
    let group = Ipv4Addr::new(igmp[4], igmp[5], igmp[6], igmp[7]);
    let changes = match igmp[0] {
        // v1 and v2 reports
        0x12 | 0x16 if group.is_multicast() => vec![IgmpChange { group, join: true }],
        // v2 leave
        0x17 if group.is_multicast() => vec![IgmpChange { group, join: false }],
        0x22 => parse_v3_report(igmp),
        _ => return None,
    };
    Some(IgmpReport {
        ifindex,
        reporter,
        changes,
    })
}

/// The group records of an IGMPv3 report (RFC 3376 §4.2), as joins and leaves. Source lists
/// are not tracked: any interest in a group makes the interface an outgoing one.
fn parse_v3_report(igmp: &[u8]) -> Vec<IgmpChange> {
    let n = usize::from(u16::from_be_bytes([igmp[6], igmp[7]]));
    let mut out = Vec::new();
    let mut at = 8;
    for _ in 0..n {
        if igmp.len() < at + 8 {
            break;
        }
        let (ty, aux, nsrc) = (
            igmp[at],
            usize::from(igmp[at + 1]),
            usize::from(u16::from_be_bytes([igmp[at + 2], igmp[at + 3]])),
        );
        let group = Ipv4Addr::new(igmp[at + 4], igmp[at + 5], igmp[at + 6], igmp[at + 7]);
        at += 8 + 4 * nsrc + 4 * aux;
        if !group.is_multicast() {
            continue;
        }
        let join = match ty {
            // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE
            2 | 4 => Some(true),
            // MODE_IS_INCLUDE, ALLOW_NEW with sources
            1 | 5 if nsrc > 0 => Some(true),
            // CHANGE_TO_INCLUDE {} is a leave
            3 if nsrc == 0 => Some(false),
            3 => Some(true),
            _ => None,
        };
        if let Some(join) = join {
            out.push(IgmpChange { group, join });
        }
    }
    out
}

/// Prepares a raw IGMP socket for sending queries: no loopback, TTL 1, Router Alert.
pub(crate) fn prepare_sender(sock: &Socket) -> io::Result<()> {
    sock.set_multicast_loop_v4(false)?;
    sock.set_multicast_ttl_v4(1)?;
    setsockopt_bytes(
        sock,
        libc::IPPROTO_IP,
        libc::IP_OPTIONS,
        &ROUTER_ALERT_OPTION,
    )
}

/// The Max Resp Code of general queries: 10 s (RFC 3376's default Query Response Interval).
pub const QUERY_RESPONSE: u8 = 100;
/// The Max Resp Code of the start-up queries: 1 s, so that a restarted router learns the
/// memberships again at once.
pub const STARTUP_QUERY_RESPONSE: u8 = 10;

/// Sends an IGMPv3 general query out of the interface with address `iface_addr`, so hosts
/// already members report within `max_resp` tenths of a second.
pub(crate) fn send_general_query(
    sock: &Socket,
    iface_addr: Ipv4Addr,
    max_resp: u8,
) -> io::Result<()> {
    sock.set_multicast_if_v4(&iface_addr)?;
    let mut q = [0x11, max_resp, 0, 0, 0, 0, 0, 0, 0x02, 125, 0, 0];
    let c = crate::wire::checksum(&q);
    q[2..4].copy_from_slice(&c.to_be_bytes());
    let dst = SockAddr::from(SocketAddrV4::new(ALL_SYSTEMS, 0));
    sock.send_to(&q, &dst).map(drop)
}

/// Sends an IGMPv3 group-specific query for `group` (max response 1 s, the Last Member
/// Query Interval of RFC 3376 §8.8) to the group, out of the interface with address
/// `iface_addr`: after a leave, members that remain report within a second.
pub(crate) fn send_group_query(
    sock: &Socket,
    iface_addr: Ipv4Addr,
    group: Ipv4Addr,
) -> io::Result<()> {
    sock.set_multicast_if_v4(&iface_addr)?;
    let g = group.octets();
    let mut q = [0x11, 10, 0, 0, g[0], g[1], g[2], g[3], 0x02, 125, 0, 0];
    let c = crate::wire::checksum(&q);
    q[2..4].copy_from_slice(&c.to_be_bytes());
    let dst = SockAddr::from(SocketAddrV4::new(group, 0));
    sock.send_to(&q, &dst).map(drop)
}

/// A raw IGMP socket that only sends queries (the netdev plane's querier: without kernel
/// multicast routing, reports reach the daemon through the plane's log rule).
#[derive(Debug)]
pub struct IgmpQuerier {
    sock: Socket,
}

impl IgmpQuerier {
    /// Opens the socket (needs `CAP_NET_RAW`).
    pub fn open() -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_IGMP)),
        )?;
        sock.set_nonblocking(true)?;
        sock.set_multicast_all_v4(false)?;
        // A send-only socket: never queue what arrives.
        sock.attach_filter(&[SockFilter::new(0x06, 0, 0, 0)])?;
        prepare_sender(&sock)?;
        Ok(Self { sock })
    }

    /// Sends an IGMPv3 general query out of the interface with address `iface_addr`
    /// (answers within `max_resp` tenths of a second).
    pub fn send_general_query(&self, iface_addr: Ipv4Addr, max_resp: u8) -> io::Result<()> {
        send_general_query(&self.sock, iface_addr, max_resp)
    }

    /// Sends an IGMPv3 group-specific query for `group` out of the interface with address
    /// `iface_addr`.
    pub fn send_group_query(&self, iface_addr: Ipv4Addr, group: Ipv4Addr) -> io::Result<()> {
        send_group_query(&self.sock, iface_addr, group)
    }
}

impl AsFd for IgmpQuerier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 1, proto, 0, 0, 10, 0, 3, 11, 224, 0, 0, 22,
        ];
        p.extend_from_slice(&ROUTER_ALERT_OPTION);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn v2_and_v3_reports_are_parsed() {
        let p = ip(2, &[0x16, 0, 0, 0, 239, 1, 1, 1]);
        let IgmpReport {
            changes,
            ifindex,
            reporter,
        } = parse_report(&p, 4).unwrap();
        assert_eq!((ifindex, reporter), (4, Ipv4Addr::new(10, 0, 3, 11)));
        assert_eq!(
            changes,
            vec![IgmpChange {
                group: Ipv4Addr::new(239, 1, 1, 1),
                join: true
            }]
        );
        let p = ip(2, &[0x17, 0, 0, 0, 239, 1, 1, 1]);
        let changes = parse_report(&p, 4).unwrap().changes;
        assert!(!changes[0].join);
        // v3: TO_EX {} for 239.1.1.2, TO_IN {} for 239.1.1.3, ALLOW {10.0.0.1} for 239.1.1.4
        let mut v3 = vec![0x22, 0, 0, 0, 0, 0, 0, 3];
        v3.extend_from_slice(&[4, 0, 0, 0, 239, 1, 1, 2]);
        v3.extend_from_slice(&[3, 0, 0, 0, 239, 1, 1, 3]);
        v3.extend_from_slice(&[5, 0, 0, 1, 239, 1, 1, 4, 10, 0, 0, 1]);
        let changes = parse_report(&ip(2, &v3), 4).unwrap().changes;
        let g = |d| Ipv4Addr::new(239, 1, 1, d);
        assert_eq!(
            changes,
            vec![
                IgmpChange {
                    group: g(2),
                    join: true
                },
                IgmpChange {
                    group: g(3),
                    join: false
                },
                IgmpChange {
                    group: g(4),
                    join: true
                },
            ]
        );
        // truncated records are ignored, queries are Other
        assert!(parse_report(&ip(2, &v3[..20]), 4).is_some());
        assert_eq!(parse_report(&ip(2, &[0x11, 0, 0, 0, 0, 0, 0, 0]), 4), None);
        assert_eq!(parse_report(&[1, 2, 3], 4), None);
        assert_eq!(
            parse_report(&ip(113, &[0x16, 0, 0, 0, 239, 1, 1, 1]), 4),
            None
        );
    }
}
