//! The daemon's `nfnetlink_log` socket: the packets the data planes' nftables rules hand to the
//! daemon, each once and as it arrived, with the interface it came in on. On the netdev plane
//! ([`super::netdev`]) that is every PGM packet but ODATA of an assisted group, the first
//! ODATA of a new source, and IGMP; on the mroute plane with the nftables intercept
//! ([`super::intercept`]), every PGM packet but ODATA of an assisted group that carries no
//! Router Alert (a FORWARD rule stops the kernel forwarding those).
//!
//! So ODATA pays for the rules' compares and nothing else: no group membership (which
//! would make the kernel deliver a local copy of every forwarded packet, and copy each
//! forwarded header because the buffer is then shared), and no packet tap running a filter
//! on every frame of the upstream interface. Both were measured (`BENCHMARKS.md`).
//!
//! The socket binds one log group of its network namespace, asks for whole packets
//! (`NFULNL_COPY_PACKET`) and for each to be sent at once (queue threshold 1; the rules say
//! the same), and takes a large receive buffer (`SO_RCVBUFFORCE`, past `rmem_max`). Each
//! message carries the packet from its IP header and the interface it came in on. The
//! kernel's messages are parsed here, by hand (the `netlink` module's framing): no maintained Rust
//! crate speaks `nfnetlink_log` without linking the C `libnetfilter_log`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::Socket;

use super::netlink::{
    self, NFGENMSG, NLM_F_ACK, NLM_F_REQUEST, Writer, ack_of, attrs, invalid, next_message,
    recv_into,
};
use super::sockets::{Received, parse_ip};
use super::sys::setsockopt_int;

// linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_log.h.
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_PAYLOAD: u16 = 9;

/// The receive buffer for datagrams: a whole IP packet and the message around it. (The
/// kernel's log buffer is left at its default: with a queue threshold of 1 a larger one buys
/// nothing, and it would be allocated for every packet.)
const NLBUFSIZ: usize = 70 * 1024;
/// The socket's receive buffer, forced past `net.core.rmem_max`.
const RCVBUF: libc::c_int = 8 << 20;

/// One `nfnetlink_log` group, bound for receiving.
#[derive(Debug)]
pub struct NflogSocket {
    sock: Socket,
    group: u16,
    /// The last datagram and how far it has been read: with a queue threshold of 1 the kernel
    /// sends one packet per datagram, but a datagram of several is read whole all the same.
    rx: RefCell<Batch>,
}

#[derive(Debug)]
struct Batch {
    buf: Vec<u8>,
    len: usize,
    at: usize,
}

/// The kernel's answer to a config request that failed: the errno of its `NLMSG_ERROR`.
fn nl_error(errno: i32, what: &str) -> io::Error {
    let e = io::Error::from_raw_os_error(errno);
    io::Error::new(e.kind(), format!("nfnetlink_log {what}: {e}"))
}

impl NflogSocket {
    /// Binds log group `group` of the calling thread's network namespace (needs
    /// `CAP_NET_ADMIN`). Fails if another socket holds the group (`EPERM`).
    pub fn open(group: u16) -> io::Result<Self> {
        let sock = netlink::netfilter_socket()?;
        if setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = sock.set_recv_buffer_size(RCVBUF as usize);
        }
        let s = Self {
            sock,
            group,
            rx: RefCell::new(Batch {
                buf: vec![0; NLBUFSIZ],
                len: 0,
                at: 0,
            }),
        };
        let copy_range = 0xffffu32.to_be_bytes();
        let mode = [
            copy_range[0],
            copy_range[1],
            copy_range[2],
            copy_range[3],
            NFULNL_COPY_PACKET,
            0,
        ];
        let steps: [(&str, u16, &[u8]); 4] = [
            ("bind", NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]),
            ("copy mode", NFULA_CFG_MODE, &mode),
            ("queue threshold", NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
            // 1/100 s, in case a rule sets a larger queue threshold.
            ("flush timeout", NFULA_CFG_TIMEOUT, &1u32.to_be_bytes()),
        ];
        for (seq, (what, attr, value)) in (1u32..).zip(steps) {
            s.configure(seq, what, attr, value)?;
        }
        s.sock.set_nonblocking(true)?;
        Ok(s)
    }

    /// The bound group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Sends one config request and waits for its acknowledgement.
    fn configure(&self, seq: u32, what: &str, attr: u16, value: &[u8]) -> io::Result<()> {
        let msg = config_message(seq, self.group, attr, value);
        self.sock.send(&msg)?;
        let mut buf = [0u8; 1024];
        loop {
            let n = recv_into(&self.sock, &mut buf, 0)?;
            match ack_of(&buf[..n], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(nl_error(errno, what)),
                None => continue,
            }
        }
    }

    /// Receives the next logged packet into `buf` (from its IP header) and where it arrived.
    /// `WouldBlock` when none is waiting; `InvalidData` for a message that holds no usable
    /// packet (skip it); `ENOBUFS` ([`is_overrun`]) once after the kernel dropped one or more
    /// messages because the socket's buffer was full.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut rx = self.rx.borrow_mut();
        loop {
            if rx.at >= rx.len {
                rx.at = 0;
                rx.len = 0;
                let n = recv_into(&self.sock, &mut rx.buf, libc::MSG_DONTWAIT)?;
                rx.len = n;
            }
            let Batch { buf: data, len, at } = &mut *rx;
            let Some((msg, next)) = next_message(&data[*at..*len]) else {
                *at = *len;
                return Err(invalid("truncated netlink message"));
            };
            *at += next;
            match msg.kind {
                k if k == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET => {
                    let (ifindex, payload) = packet_attrs(msg.body)?;
                    let dst = buf
                        .get_mut(..payload.len())
                        .ok_or_else(|| invalid("packet longer than the buffer"))?;
                    dst.copy_from_slice(payload);
                    return parse_ip(dst, ifindex);
                }
                // NLMSG_DONE after a batch, or anything else: not a packet.
                _ => continue,
            }
        }
    }
}

/// Whether `e`, from [`NflogSocket::recv`], says the kernel dropped log messages (one or
/// more) because the socket's buffer was full (`ENOBUFS`). Reading goes on after it.
pub fn is_overrun(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS)
}

impl AsFd for NflogSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// An `nfnetlink_log` config request for `group`: one attribute.
fn config_message(seq: u32, group: u16, attr: u16, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.begin(
        (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        0,
        group,
    );
    w.put(attr, value);
    w.end();
    w.bytes().to_vec()
}

/// The arrival interface and the packet of an `NFULNL_MSG_PACKET` body.
fn packet_attrs(body: &[u8]) -> io::Result<(u32, &[u8])> {
    let all = body
        .get(NFGENMSG..)
        .ok_or_else(|| invalid("short nfnetlink message"))?;
    let (mut ifindex, mut payload) = (None, None);
    for a in attrs(all) {
        let (kind, value) = a?;
        match kind {
            NFULA_IFINDEX_INDEV => {
                let b: [u8; 4] = value
                    .try_into()
                    .map_err(|_| invalid("bad interface attribute"))?;
                ifindex = Some(u32::from_be_bytes(b));
            }
            NFULA_PAYLOAD => payload = Some(value),
            _ => {}
        }
    }
    match (ifindex, payload) {
        (Some(i), Some(p)) => Ok((i, p)),
        (None, _) => Err(invalid("logged packet without an input interface")),
        (_, None) => Err(invalid("logged packet without its payload")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::netlink::{NLMSG_HDR, align4};
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    /// A minimal IPv4 header + 4 bytes, to 239.1.1.1.
    fn ip_packet() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 9, 113, 0, 0];
        p.extend_from_slice(&[10, 0, 1, 2, 239, 1, 1, 1, 0, 0, 0, 0]);
        p
    }

    fn packet_message(ifindex: Option<u32>, payload: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 113];
        body.extend(attr(1, &[0x08, 0x00, 3, 0])); // NFULA_PACKET_HDR
        if let Some(i) = ifindex {
            body.extend(attr(NFULA_IFINDEX_INDEV, &i.to_be_bytes()));
        }
        body.extend(attr(NFULA_PREFIX_FOR_TEST, b"x\0"));
        if let Some(p) = payload {
            body.extend(attr(NFULA_PAYLOAD | 0x4000, p));
        }
        message(NFNL_SUBSYS_ULOG << 8, 0, &body)
    }
    const NFULA_PREFIX_FOR_TEST: u16 = 10;

    #[test]
    fn config_request_layout() {
        let m = config_message(7, 113, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        assert_eq!(m.len(), 28);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0401);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[0, 0, 0, 113]);
        assert_eq!(u16::from_ne_bytes([m[20], m[21]]), 5);
        assert_eq!(u16::from_ne_bytes([m[22], m[23]]), NFULA_CFG_CMD);
        assert_eq!(m[24], NFULNL_CFG_CMD_BIND);
    }

    #[test]
    fn packet_messages_give_the_packet_and_interface() {
        let p = ip_packet();
        let m = packet_message(Some(6), Some(&p));
        let (msg, next) = next_message(&m).unwrap();
        assert_eq!(next, m.len());
        assert_eq!(msg.kind, NFNL_SUBSYS_ULOG << 8);
        let (ifindex, payload) = packet_attrs(msg.body).unwrap();
        assert_eq!((ifindex, payload), (6, &p[..]));
        let r = parse_ip(&p, ifindex).unwrap();
        assert_eq!((r.pgm_offset, r.len, r.ifindex), (20, 24, 6));
    }

    #[test]
    fn incomplete_messages_are_errors_not_panics() {
        let p = ip_packet();
        for m in [
            packet_message(None, Some(&p)),
            packet_message(Some(1), None),
        ] {
            let (msg, _) = next_message(&m).unwrap();
            assert!(packet_attrs(msg.body).is_err());
        }
        let m = packet_message(Some(1), Some(&p));
        for cut in 0..m.len() {
            if let Some((msg, _)) = next_message(&m[..cut]) {
                let _ = packet_attrs(msg.body);
            }
        }
        // An attribute claiming more than the message holds.
        let mut bad = packet_message(Some(1), Some(&p));
        let at = NLMSG_HDR + NFGENMSG;
        bad[at..at + 2].copy_from_slice(&500u16.to_ne_bytes());
        let (msg, _) = next_message(&bad).unwrap();
        assert!(packet_attrs(msg.body).is_err());
        // A message length below its header.
        let mut short = m.clone();
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(next_message(&short).is_none());
    }
}
