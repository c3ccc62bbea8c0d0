//! Netlink framing for the daemon's netfilter sockets ([`super::nflog`] and
//! [`super::nftables`]): writing requests (`nlmsghdr`, `nfgenmsg`, attributes, nested
//! attributes) and reading what the kernel sends back, every length checked.
//!
//! Hand-written because no maintained crate speaks both `nfnetlink_log` and `nf_tables` with
//! what the data planes need (netdev `dup`, payload writes with checksum update, verdict
//! maps, tables owned by their socket); the framing itself is small.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

// linux/netlink.h
/// `sizeof(struct nlmsghdr)`.
pub(crate) const NLMSG_HDR: usize = 16;
/// `NLMSG_ERROR`: an acknowledgement or an error.
pub(crate) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub(crate) const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub(crate) const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CREATE`.
pub(crate) const NLM_F_CREATE: u16 = 0x400;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_TYPE_MASK`: the attribute type without the nested / byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(struct nfgenmsg)`.
pub(crate) const NFGENMSG: usize = 4;

/// Rounds `n` up to the netlink alignment (4).
pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// `nlmsg_type`.
    pub(crate) kind: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// What follows the header.
    pub(crate) body: &'a [u8],
}

impl Message<'_> {
    /// The errno of an `NLMSG_ERROR` message (0: an acknowledgement); `None` for other kinds
    /// or a truncated error.
    pub(crate) fn errno(&self) -> Option<i32> {
        if self.kind != NLMSG_ERROR {
            return None;
        }
        let e = self.body.get(..4)?;
        Some(-i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
    }
}

/// The first netlink message of `data` and the offset of the next; `None` if truncated.
pub(crate) fn next_message(data: &[u8]) -> Option<(Message<'_>, usize)> {
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

/// Every complete message of a datagram, in order.
pub(crate) fn messages(mut data: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        let (m, next) = next_message(data)?;
        data = data.get(next.max(NLMSG_HDR)..).unwrap_or_default();
        Some(m)
    })
}

/// The errno of the acknowledgement of request `seq` in `data` (0: success); `None` if
/// `data` holds none.
pub(crate) fn ack_of(data: &[u8], seq: u32) -> Option<i32> {
    messages(data)
        .filter(|m| m.seq == seq)
        .find_map(|m| m.errno())
}

/// The attributes of `data`: `(type without flags, value)`, or an error for an attribute
/// whose length is impossible (the walk stops there).
pub(crate) fn attrs(mut data: &[u8]) -> impl Iterator<Item = io::Result<(u16, &[u8])>> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        let Some(value) = data.get(4..len.max(4)).filter(|_| len >= 4) else {
            data = &[];
            return Some(Err(invalid("bad netlink attribute length")));
        };
        data = data.get(align4(len)..).unwrap_or_default();
        Some(Ok((kind, value)))
    })
}

/// An `InvalidData` error.
pub(crate) fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// A nested attribute being written: where its header is.
#[derive(Debug)]
#[must_use = "a nest must be closed with Writer::end_nest"]
pub(crate) struct Nest(usize);

/// Writes netlink requests, one after the other, into one buffer (a batch is several).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    /// Where the message being written starts.
    start: usize,
}

impl Writer {
    /// Starts a message with an `nfgenmsg` (`family`, version 0, `res_id` big-endian).
    pub(crate) fn begin(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Ends the message started last: writes its length.
    pub(crate) fn end(&mut self) {
        let len = u32::try_from(self.buf.len() - self.start).unwrap_or(u32::MAX);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute with `value`, padded to 4 bytes.
    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// A big-endian `u32` attribute (netfilter's byte order).
    pub(crate) fn put_u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A big-endian `u16` attribute.
    pub(crate) fn put_u16(&mut self, kind: u16, value: u16) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A big-endian `u64` attribute.
    pub(crate) fn put_u64(&mut self, kind: u16, value: u64) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn put_str(&mut self, kind: u16, value: &str) {
        let len = u16::try_from(4 + value.len() + 1).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Opens a nested attribute; close it with [`Writer::end_nest`].
    pub(crate) fn nest(&mut self, kind: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    /// Closes a nested attribute: writes its length.
    pub(crate) fn end_nest(&mut self, nest: Nest) {
        let len = u16::try_from(self.buf.len() - nest.0).unwrap_or(u16::MAX);
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The bytes written so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A `NETLINK_NETFILTER` socket.
pub(crate) fn netfilter_socket() -> io::Result<Socket> {
    Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_NETFILTER)),
    )
}

/// Sets a receive timeout, so that a request whose answer never comes fails instead of
/// blocking its thread.
pub(crate) fn set_recv_timeout(sock: &Socket, timeout: Duration) -> io::Result<()> {
    sock.set_read_timeout(Some(timeout))
}

/// `recv(2)` into `buf`.
#[allow(unsafe_code)]
pub(crate) fn recv_into(sock: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the descriptor is open for the life of `sock`; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_lays_out_headers_attributes_and_nests() {
        let mut w = Writer::default();
        w.begin(0x0a00, NLM_F_REQUEST | NLM_F_ACK, 7, 5, 0x0a);
        w.put_str(1, "tbl");
        let n = w.nest(2);
        w.put_u32(1, 3);
        w.end_nest(n);
        w.end();
        let b = w.bytes();
        assert_eq!(b.len(), 16 + 4 + 8 + 4 + 8);
        let (m, next) = next_message(b).unwrap();
        assert_eq!((m.kind, m.seq, next), (0x0a00, 7, b.len()));
        assert_eq!(&m.body[..4], &[5, 0, 0, 0x0a]);
        let a: Vec<_> = attrs(&m.body[4..]).map(Result::unwrap).collect();
        assert_eq!(a[0], (1, &b"tbl\0"[..]));
        assert_eq!(a[1].0, 2);
        assert_eq!(
            attrs(a[1].1).next().unwrap().unwrap(),
            (1, &[0, 0, 0, 3][..])
        );
        // The nested flag is set on the wire and masked when read.
        assert_eq!(u16::from_ne_bytes([b[30], b[31]]), 2 | NLA_F_NESTED);
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let mut a = Vec::new();
        a.extend_from_slice(&500u16.to_ne_bytes());
        a.extend_from_slice(&1u16.to_ne_bytes());
        a.extend_from_slice(&[0; 4]);
        assert!(attrs(&a).next().unwrap().is_err());
        a[0..2].copy_from_slice(&2u16.to_ne_bytes());
        assert!(attrs(&a).next().unwrap().is_err());
        for cut in 0..a.len() {
            let _ = attrs(&a[..cut]).count();
        }
        let mut m = Writer::default();
        m.begin(NLMSG_ERROR, 0, 3, 0, 0);
        m.end();
        let mut short = m.bytes().to_vec();
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(next_message(&short).is_none());
        assert_eq!(messages(&short).count(), 0);
    }

    #[test]
    fn acks_are_matched_by_sequence() {
        let ack = |seq: u32, errno: i32| {
            let mut w = Writer::default();
            w.begin(NLMSG_ERROR, 0, seq, 0, 0);
            w.end();
            let mut b = w.bytes().to_vec();
            // the errno replaces the nfgenmsg the writer put there
            b[16..20].copy_from_slice(&(-errno).to_ne_bytes());
            b.extend(vec![0; 16]);
            let len = u32::try_from(b.len()).unwrap();
            b[0..4].copy_from_slice(&len.to_ne_bytes());
            b
        };
        assert_eq!(ack_of(&ack(3, 0), 3), Some(0));
        assert_eq!(ack_of(&ack(3, libc::EBUSY), 3), Some(libc::EBUSY));
        let mut two = ack(2, 0);
        two.extend(ack(3, libc::EPERM));
        assert_eq!(ack_of(&two, 3), Some(libc::EPERM));
        assert_eq!(ack_of(&ack(2, 0), 3), None);
        assert_eq!(ack_of(&[1, 2, 3], 3), None);
    }
}
