//! The intercept of nftables mode: every PGM packet but ODATA of an assisted group (see
//! [`super::nft`]) is handed to the daemon by a PREROUTING rule's `log group` statement, over
//! `nfnetlink_log` (`NETLINK_NETFILTER`), once per packet and as it arrived; a FORWARD rule
//! stops the kernel forwarding it.
//!
//! So ODATA pays for the rules' compares and nothing else: no group membership (which
//! would make the kernel deliver a local copy of every forwarded packet, and copy each
//! forwarded header because the buffer is then shared), and no packet tap running a filter
//! on every frame of the upstream interface. Both were measured (`BENCHMARKS.md`).
//!
//! The socket binds one log group of its network namespace, asks for whole packets
//! (`NFULNL_COPY_PACKET`) and for each to be sent at once (queue threshold 1; the rule says
//! the same), and takes a large receive buffer (`SO_RCVBUFFORCE`, past `rmem_max`). Each message carries the packet from its IP header and the interface it came
//! in on. The kernel's messages are parsed here, by hand: no maintained Rust crate speaks
//! `nfnetlink_log` without linking the C `libnetfilter_log`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::sockets::{Received, parse_ip};
use super::sys::setsockopt_int;

// linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_log.h.
const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NFGENMSG: usize = 4;
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
/// `NLA_TYPE_MASK`: the attribute type without the nested / byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

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
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_NETFILTER)),
        )?;
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

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[allow(unsafe_code)]
fn recv_into(sock: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the descriptor is open for the life of `sock`; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// An `nfnetlink_log` config request for `group`: one attribute.
fn config_message(seq: u32, group: u16, attr: u16, value: &[u8]) -> Vec<u8> {
    let attr_len = 4 + value.len();
    let len = NLMSG_HDR + NFGENMSG + align4(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group (big-endian).
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    m.extend_from_slice(&u16::try_from(attr_len).unwrap_or(u16::MAX).to_ne_bytes());
    m.extend_from_slice(&attr.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(len, 0);
    m
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message: its type and what follows its header.
struct Message<'a> {
    kind: u16,
    seq: u32,
    body: &'a [u8],
}

/// The first netlink message of `data` and the offset of the next; `None` if truncated.
fn next_message(data: &[u8]) -> Option<(Message<'_>, usize)> {
    let hdr = data.get(..NLMSG_HDR)?;
    let len = usize::try_from(u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]])).ok()?;
    let body = data.get(NLMSG_HDR..len)?;
    let msg = Message {
        kind: u16::from_ne_bytes([hdr[4], hdr[5]]),
        seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        body,
    };
    Some((msg, align4(len).min(data.len())))
}

/// The errno of the acknowledgement of request `seq` in `data` (0: success); `None` if
/// `data` holds none.
fn ack_of(data: &[u8], seq: u32) -> Option<i32> {
    let mut rest = data;
    while let Some((m, next)) = next_message(rest) {
        if m.kind == NLMSG_ERROR && m.seq == seq {
            let e = m.body.get(..4)?;
            return Some(-i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
        }
        if next == 0 {
            break;
        }
        rest = &rest[next..];
    }
    None
}

/// The arrival interface and the packet of an `NFULNL_MSG_PACKET` body.
fn packet_attrs(body: &[u8]) -> io::Result<(u32, &[u8])> {
    let mut attrs = body
        .get(NFGENMSG..)
        .ok_or_else(|| invalid("short nfnetlink message"))?;
    let (mut ifindex, mut payload) = (None, None);
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        let value = attrs
            .get(4..len)
            .ok_or_else(|| invalid("bad netlink attribute length"))?;
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
        attrs = attrs.get(align4(len)..).unwrap_or_default();
    }
    match (ifindex, payload) {
        (Some(i), Some(p)) => Ok((i, p)),
        (None, _) => Err(invalid("logged packet without an input interface")),
        (_, None) => Err(invalid("logged packet without its payload")),
    }
}

#[cfg(test)]
mod tests {
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
    fn acks_are_matched_by_sequence() {
        let ack = |seq: u32, errno: i32| {
            let mut body = (-errno).to_ne_bytes().to_vec();
            body.extend(vec![0; 16]);
            message(NLMSG_ERROR, seq, &body)
        };
        assert_eq!(ack_of(&ack(3, 0), 3), Some(0));
        assert_eq!(ack_of(&ack(3, libc::EBUSY), 3), Some(libc::EBUSY));
        let mut two = ack(2, 0);
        two.extend(ack(3, libc::EPERM));
        assert_eq!(ack_of(&two, 3), Some(libc::EPERM));
        assert_eq!(ack_of(&ack(2, 0), 3), None);
        assert_eq!(ack_of(&[1, 2, 3], 3), None);
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
