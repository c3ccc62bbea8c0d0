//! ICMP echo from the calling thread's network namespace (a raw socket; needs CAP_NET_RAW).
//!
//! Written in Rust because `ping` (iputils) is not installed on every lab machine. Run it inside
//! a namespace with [`Lab::ping`](super::Lab::ping) or [`Ns::run`](super::Ns::run).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use super::util::Deadline;

const ECHO_REPLY: u8 = 0x00;
const ECHO_REQUEST: u8 = 0x08;

/// How long to wait for a reply before sending the next request.
const RETRY: Duration = Duration::from_millis(500);

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// Sends ICMP echo requests to `dst` (one every 500 ms) until a reply from `dst` arrives, or
/// fails after `timeout`.
pub fn ping(dst: Ipv4Addr, timeout: Duration) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("raw ICMP socket (needs CAP_NET_RAW)")?;
    // Distinct per process and per call, so concurrent pings never take each other's replies.
    let id = (std::process::id() as u16).wrapping_mul(31) ^ NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let deadline = Deadline::after(timeout);
    let mut buf = [0; 1500];
    let mut seq: u16 = 0;
    while !deadline.expired() {
        seq = seq.wrapping_add(1);
        let request = echo_request(id, seq);
        sock.send_to(&request, &SocketAddrV4::new(dst, 0).into())
            .with_context(|| format!("send echo request to {dst}"))?;
        let round = Deadline::after(RETRY.min(deadline.remaining()));
        loop {
            let wait = round.remaining();
            if wait.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(wait))?;
            match (&sock).read(&mut buf) {
                Ok(len) => {
                    if is_reply(buf.get(..len).unwrap_or_default(), dst, id) {
                        return Ok(());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e).context("receive ICMP"),
            }
        }
    }
    bail!("no echo reply from {dst} within {timeout:?}")
}

/// An ICMP echo request with a small payload.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![ECHO_REQUEST, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"pgm-netns-lab ping");
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt
}

/// Whether `packet` (IPv4 header included, as raw sockets deliver it) is an echo reply from
/// `from` carrying our `id`.
fn is_reply(packet: &[u8], from: Ipv4Addr, id: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let (Some(src), Some(icmp)) = (packet.get(12..16), packet.get(ihl..)) else {
        return false;
    };
    src == from.octets()
        && icmp.len() >= 8
        && icmp[0] == ECHO_REPLY
        && icmp[1] == 0
        && icmp[4..6] == id.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero() {
        let pkt = echo_request(0x1234, 7);
        assert_eq!(checksum(&pkt), 0);
        assert_eq!(&pkt[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn reply_matching() {
        let mut pkt = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 16, 1, 2, 10, 16, 3, 11,
        ];
        pkt.extend_from_slice(&[ECHO_REPLY, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let from = Ipv4Addr::new(10, 16, 1, 2);
        assert!(is_reply(&pkt, from, 0x1234));
        assert!(!is_reply(&pkt, from, 0x1235));
        assert!(!is_reply(&pkt, Ipv4Addr::new(10, 16, 1, 3), 0x1234));
        assert!(!is_reply(&pkt[..22], from, 0x1234));
        assert!(!is_reply(&[], from, 0x1234));
    }
}
