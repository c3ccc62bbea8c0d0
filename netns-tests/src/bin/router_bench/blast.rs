//! The throughput benchmark's traffic: the UDP and PGM senders (`sendmmsg`) and the
//! receiver (`recvmmsg`) that counts what arrives.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pgm_core::wire::{Body, DataRepr, Nla, OptionList, Repr, SpmRepr, Sqn};
use pgm_netns_tests::mmsg::Mmsg;
use socket2::{Domain, Protocol, Socket, Type};

use crate::opts::SenderKind;
use crate::util::{check_stop, now, setsockopt_bytes, thread_cpu_ns};
use crate::{
    BATCH, BENCH_DPORT, BENCH_GSI, IPPROTO_PGM, ODATA_OVERHEAD, PGM_ODATA, RCVBUF, ROUTER_ALERT,
    TTL, UDP_PORT,
};

#[derive(Clone, Debug)]
pub(crate) struct SendStats {
    pub(crate) sent: u64,
    pub(crate) secs: f64,
    /// CPU time of the sending thread over the same interval.
    pub(crate) cpu_secs: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct RecvStats {
    pub(crate) received: u64,
    pub(crate) bytes: u64,
    pub(crate) missing: u64,
    pub(crate) secs: f64,
}

pub(crate) fn raw_pgm_socket() -> Result<Socket> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))
        .context("raw IPPROTO_PGM socket (needs CAP_NET_RAW)")
}

pub(crate) fn emit(repr: &Repr<'_>, out: &mut [u8]) -> Result<usize> {
    repr.emit(out)
        .map_err(|e| anyhow::anyhow!("emitting {}: {e}", repr.packet_type()))
}

fn spm_repr(sport: u16, sqn: u32, lead: u32, path: Ipv4Addr) -> Repr<'static> {
    Repr {
        sport,
        dport: BENCH_DPORT,
        gsi: BENCH_GSI,
        parity: false,
        var_pktlen: false,
        body: Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            lead: Sqn(lead),
            path: Nla(IpAddr::V4(path)),
        }),
        options: OptionList::EMPTY,
    }
}

/// Sends `count` datagrams of `size` payload bytes to `group` from `bind`, as fast as
/// `sendmmsg` goes. PGM: ODATA sqn 0.. of the TSI (bench GSI, `sport`), with an SPM (Router
/// Alert) first, every 100 ms and last.
pub(crate) fn blast_send(
    kind: SenderKind,
    bind: Ipv4Addr,
    group: Ipv4Addr,
    sport: u16,
    count: u64,
    size: usize,
) -> Result<SendStats> {
    let sock = match kind {
        SenderKind::Udp => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?,
        SenderKind::Pgm => raw_pgm_socket()?,
    };
    sock.set_multicast_if_v4(&bind)?;
    sock.set_multicast_ttl_v4(TTL)?;
    sock.set_multicast_loop_v4(false)?;
    sock.set_send_buffer_size(RCVBUF)?;
    sock.bind(&SocketAddrV4::new(bind, 0).into())?;
    let port = if kind == SenderKind::Udp { UDP_PORT } else { 0 };
    sock.connect(&SocketAddrV4::new(group, port).into())?;
    let fd = sock.as_raw_fd();

    // SPMs go on their own socket, with the Router Alert option.
    let spm_sock = raw_pgm_socket()?;
    spm_sock.set_multicast_if_v4(&bind)?;
    spm_sock.set_multicast_ttl_v4(TTL)?;
    spm_sock.set_multicast_loop_v4(false)?;
    spm_sock.bind(&SocketAddrV4::new(bind, 0).into())?;
    spm_sock.connect(&SocketAddrV4::new(group, 0).into())?;
    setsockopt_bytes(
        spm_sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_OPTIONS,
        &ROUTER_ALERT,
    )?;
    let mut spm_sqn = 0u32;
    let mut spm_buf = [0u8; 64];
    let mut send_spm = |lead: u32| -> Result<()> {
        let n = emit(&spm_repr(sport, spm_sqn, lead, bind), &mut spm_buf)?;
        spm_sqn = spm_sqn.wrapping_add(1);
        spm_sock.send(&spm_buf[..n]).context("sending an SPM")?;
        Ok(())
    };

    let payload = vec![0xa5u8; size];
    let len = match kind {
        SenderKind::Udp => size,
        SenderKind::Pgm => size + ODATA_OVERHEAD,
    };
    let mut m = Mmsg::new(BATCH, len);
    if kind == SenderKind::Pgm {
        for _ in 0..3 {
            send_spm(0)?;
            thread::sleep(Duration::from_millis(20));
        }
    }
    let t0 = now();
    let cpu0 = thread_cpu_ns();
    let mut last_spm = t0;
    let mut i = 0u64;
    while i < count {
        check_stop()?;
        let n = (count - i).min(BATCH as u64) as usize;
        for k in 0..n {
            let idx = i + k as u64;
            let slot = m.slot_mut(k);
            match kind {
                SenderKind::Udp => {
                    slot[..8].copy_from_slice(&idx.to_be_bytes()[..8.min(size)]);
                    slot[8..].copy_from_slice(&payload[8..]);
                }
                SenderKind::Pgm => {
                    let repr = Repr {
                        sport,
                        dport: BENCH_DPORT,
                        gsi: BENCH_GSI,
                        parity: false,
                        var_pktlen: false,
                        body: Body::Odata(DataRepr {
                            sqn: Sqn(idx as u32),
                            trail: Sqn(0),
                            payload: &payload,
                        }),
                        options: OptionList::EMPTY,
                    };
                    emit(&repr, slot)?;
                }
            }
        }
        m.send(fd, n, len)?;
        i += n as u64;
        if kind == SenderKind::Pgm && last_spm.elapsed() >= Duration::from_millis(100) {
            last_spm = now();
            send_spm((i - 1) as u32)?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    if kind == SenderKind::Pgm {
        send_spm((count - 1) as u32)?;
    }
    Ok(SendStats {
        sent: i,
        secs,
        cpu_secs,
    })
}

/// What one run's receiver expects.
pub(crate) struct RecvJob {
    pub(crate) kind: SenderKind,
    /// The receiving interface's address, and the group joined there.
    pub(crate) bind: Ipv4Addr,
    pub(crate) group: Ipv4Addr,
    pub(crate) sport: u16,
    pub(crate) count: u64,
    pub(crate) size: usize,
    /// Poll instead of sleeping (`--recv busy`).
    pub(crate) busy: bool,
}

/// Receives what `blast_send` sends, until `count` arrived or nothing came for `idle` after
/// the first (or for 30 s before it). Sends `()` on `ready` once joined.
pub(crate) fn blast_recv(job: RecvJob, ready: &mpsc::Sender<()>) -> Result<RecvStats> {
    let RecvJob {
        kind,
        bind,
        group,
        sport,
        count,
        size,
        busy,
    } = job;
    let sock = match kind {
        SenderKind::Udp => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddrV4::new(group, UDP_PORT).into())?;
            s
        }
        SenderKind::Pgm => raw_pgm_socket()?,
    };
    sock.join_multicast_v4(&group, &bind)
        .with_context(|| format!("join {group} on {bind}"))?;
    sock.set_multicast_all_v4(false)?;
    sock.set_recv_buffer_size(RCVBUF)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let fd = sock.as_raw_fd();
    // Raw sockets see the IP header; one spare byte reveals longer datagrams.
    let mut m = Mmsg::new(BATCH, size + ODATA_OVERHEAD + 60 + 1);
    let _ = ready.send(());

    let idle = Duration::from_millis(500);
    let t0 = now();
    let (mut received, mut bytes, mut next, mut missing) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = t0;
    'outer: loop {
        check_stop()?;
        let n = m.recv(fd, busy)?;
        let t = now();
        if n == 0 {
            let quiet = match first {
                Some(_) => t.duration_since(last) > idle,
                None => t.duration_since(t0) > Duration::from_secs(30),
            };
            if quiet {
                break;
            }
            continue;
        }
        for k in 0..n {
            let d = m.received(k);
            let (idx, len) = match kind {
                SenderKind::Udp => {
                    if d.len() != size || size < 8 {
                        continue;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&d[..8]);
                    (u64::from_be_bytes(b), size)
                }
                SenderKind::Pgm => {
                    let Some((sqn, tsdu)) = odata_of_bench(d, sport) else {
                        continue;
                    };
                    (u64::from(sqn), tsdu)
                }
            };
            if first.is_none() {
                first = Some(t);
            }
            last = t;
            if idx > next {
                missing += idx - next;
            }
            next = next.max(idx + 1);
            received += 1;
            bytes += len as u64;
            if next >= count {
                break 'outer;
            }
        }
    }
    missing += count.saturating_sub(next);
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(RecvStats {
        received,
        bytes,
        missing,
        secs,
    })
}

/// (sqn, TSDU length) of an ODATA packet of the bench TSI (port `sport`) in an IPv4
/// datagram.
fn odata_of_bench(ip: &[u8], sport: u16) -> Option<(u32, usize)> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let pgm = ip.get(ihl..)?;
    if pgm.len() < ODATA_OVERHEAD || pgm[4] != PGM_ODATA {
        return None;
    }
    if pgm[0..2] != sport.to_be_bytes() || pgm[8..14] != BENCH_GSI.0 {
        return None;
    }
    let tsdu = usize::from(u16::from_be_bytes([pgm[14], pgm[15]]));
    let sqn = u32::from_be_bytes([pgm[16], pgm[17], pgm[18], pgm[19]]);
    Some((sqn, tsdu))
}
