//! Plain UDP multicast sender and receiver, to check a topology's multicast forwarding without
//! PGM.
//!
//! Sockets live in the network namespace of the thread that creates them: create and use them
//! inside [`Ns::run`](super::Ns::run) or [`Ns::spawn_thread`](super::Ns::spawn_thread).
//!
//! Sequenced datagrams ([`McastSender::send_seq`]) carry [`MAGIC`] then a big-endian `u32`;
//! [`McastReceiver::collect_seqs`] ignores anything else.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, Protocol, Socket, Type};

use super::Host;
use super::util::Deadline;

/// How long receiver threads may take to enter their namespace and join the group.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The first bytes of a sequenced test datagram.
pub const MAGIC: &[u8; 6] = b"PGMLAB";

/// A UDP socket that sends to one multicast group out of one interface.
#[derive(Debug)]
pub struct McastSender {
    socket: UdpSocket,
    dest: SocketAddrV4,
}

impl McastSender {
    /// Binds to `local` (the address of the outgoing interface, which also becomes
    /// `IP_MULTICAST_IF`) and sends to `group:port` with the given multicast TTL. Loopback of
    /// its own datagrams is off.
    pub fn new(local: Ipv4Addr, group: Ipv4Addr, port: u16, ttl: u32) -> Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket
            .set_multicast_if_v4(&local)
            .with_context(|| format!("IP_MULTICAST_IF {local}"))?;
        socket.set_multicast_ttl_v4(ttl)?;
        socket.set_multicast_loop_v4(false)?;
        socket
            .bind(&SocketAddrV4::new(local, 0).into())
            .with_context(|| format!("bind {local}"))?;
        Ok(Self {
            socket: socket.into(),
            dest: SocketAddrV4::new(group, port),
        })
    }

    /// Sends one datagram.
    pub fn send(&self, payload: &[u8]) -> Result<()> {
        self.socket
            .send_to(payload, self.dest)
            .with_context(|| format!("send to {}", self.dest))?;
        Ok(())
    }

    /// Sends the sequenced datagram [`MAGIC`] `seq`.
    pub fn send_seq(&self, seq: u32) -> Result<()> {
        let mut buf = [0; 10];
        buf[..6].copy_from_slice(MAGIC);
        buf[6..].copy_from_slice(&seq.to_be_bytes());
        self.send(&buf)
    }
}

/// A UDP socket bound to `group:port` that joined the group on one interface.
#[derive(Debug)]
pub struct McastReceiver {
    socket: UdpSocket,
}

impl McastReceiver {
    /// Binds to `group:port` (so only that group's datagrams arrive) and joins `group` on the
    /// interface whose address is `local`.
    pub fn new(local: Ipv4Addr, group: Ipv4Addr, port: u16) -> Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket
            .bind(&SocketAddrV4::new(group, port).into())
            .with_context(|| format!("bind {group}:{port}"))?;
        socket
            .join_multicast_v4(&group, &local)
            .with_context(|| format!("join {group} on {local}"))?;
        Ok(Self {
            socket: socket.into(),
        })
    }

    /// The underlying socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Receives one datagram, waiting at most `timeout`; `None` on timeout.
    pub fn recv_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<(usize, SocketAddr)>> {
        if timeout.is_zero() {
            return Ok(None);
        }
        self.socket.set_read_timeout(Some(timeout))?;
        match self.socket.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).context("recv"),
        }
    }

    /// Collects the distinct sequence numbers of sequenced datagrams until `expected` of them
    /// have arrived, no datagram has arrived for `idle`, or `total` has passed. Sorted.
    pub fn collect_seqs(
        &self,
        expected: usize,
        idle: Duration,
        total: Duration,
    ) -> Result<Vec<u32>> {
        let deadline = Deadline::after(total);
        let mut seqs = BTreeSet::new();
        let mut buf = [0; 2048];
        while seqs.len() < expected {
            let wait = idle.min(deadline.remaining());
            let Some((len, _)) = self.recv_timeout(&mut buf, wait)? else {
                break;
            };
            if let Some(seq) = parse_seq(buf.get(..len).unwrap_or_default()) {
                seqs.insert(seq);
            }
        }
        Ok(seqs.into_iter().collect())
    }
}

/// The sequence number of a sequenced test datagram, `None` for anything else.
pub fn parse_seq(datagram: &[u8]) -> Option<u32> {
    let rest = datagram.strip_prefix(MAGIC.as_slice())?;
    let bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Receiver threads started by [`spawn_receivers`].
#[derive(Debug)]
pub struct ReceiverThreads {
    handles: Vec<(String, JoinHandle<Result<Vec<u32>>>)>,
}

impl ReceiverThreads {
    /// Waits for every receiver and returns the sequence numbers each got (sorted), in the
    /// order of the hosts given to [`spawn_receivers`].
    pub fn join(self) -> Result<Vec<Vec<u32>>> {
        self.handles
            .into_iter()
            .map(|(name, handle)| {
                handle
                    .join()
                    .map_err(|_| anyhow!("receiver thread in {name} panicked"))?
                    .with_context(|| format!("receiver in {name}"))
            })
            .collect()
    }
}

/// Starts one receiver thread per host, each inside the host's namespace with a
/// [`McastReceiver`] on `group:port` joined on the host's interface, and returns once all of
/// them have joined. Each collects sequenced datagrams until it has `expected`, or nothing
/// arrived for `idle` (at most 60 s in all).
pub fn spawn_receivers(
    hosts: &[Host],
    group: Ipv4Addr,
    port: u16,
    expected: usize,
    idle: Duration,
) -> Result<ReceiverThreads> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::new();
    for host in hosts {
        let ns = host.ns.clone();
        let local = host.addr();
        let ready = ready_tx.clone();
        let handle = thread::spawn(move || -> Result<Vec<u32>> {
            let receiver = ns
                .enter()
                .and_then(|()| McastReceiver::new(local, group, port));
            let receiver = match receiver {
                Ok(r) => {
                    let _ = ready.send(Ok(()));
                    r
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("{ns}: {e:#}")));
                    return Err(e);
                }
            };
            receiver.collect_seqs(expected, idle, Duration::from_secs(60))
        });
        handles.push((host.ns.name().to_owned(), handle));
    }
    drop(ready_tx);
    let deadline = Deadline::after(JOIN_TIMEOUT);
    for _ in hosts {
        match ready_rx.recv_timeout(deadline.remaining()) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("receiver failed to start: {e}"),
            Err(_) => bail!("receivers did not join {group} within {JOIN_TIMEOUT:?}"),
        }
    }
    Ok(ReceiverThreads { handles })
}

/// Sends `count` sequenced datagrams (0 to `count - 1`) from `host` to `group:port` with the
/// given TTL, `gap` apart, from a thread inside the host's namespace.
pub fn send_seqs(
    host: &Host,
    group: Ipv4Addr,
    port: u16,
    ttl: u32,
    count: u32,
    gap: Duration,
) -> Result<()> {
    let local = host.addr();
    host.ns.run(|| -> Result<()> {
        let sender = McastSender::new(local, group, port, ttl)?;
        for seq in 0..count {
            sender.send_seq(seq)?;
            if !gap.is_zero() {
                thread::sleep(gap);
            }
        }
        Ok(())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_parsing() {
        assert_eq!(parse_seq(b"PGMLAB\x00\x00\x01\x02"), Some(0x102));
        assert_eq!(parse_seq(b"PGMLAB\x00\x00"), None);
        assert_eq!(parse_seq(b"XGMLAB\x00\x00\x01\x02"), None);
        assert_eq!(parse_seq(b""), None);
    }
}
