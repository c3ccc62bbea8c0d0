//! The plain UDP multicast peer of the throughput harness (`throughput udpmc send|recv`):
//! `sendmmsg`/`recvmmsg` in batches, no rate cap and no repair, sending and checking the
//! message pattern of `peers/openpgm/PATTERN.md` (version 1) with a fixed size.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use socket2::{Domain, Protocol, Socket, Type};

use super::{PORT, now};
use crate::mmsg::Mmsg;

/// Pattern seed of every run (`--seed` of the PGM peers).
pub const SEED: u64 = 1;

/// Message `i` of the pattern (version 1) with seed `seed`, `out.len()` bytes long.
pub fn pattern_fill(seed: u64, i: u64, out: &mut [u8]) {
    let mut state = seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let _size_draw = next(); // r0 is always drawn, even for fixed sizes
    let head = i.to_be_bytes();
    let n = out.len().min(8);
    out[..n].copy_from_slice(&head[..n]);
    let mut k = 8;
    while k < out.len() {
        let w = next().to_be_bytes();
        let n = (out.len() - k).min(8);
        out[k..k + n].copy_from_slice(&w[..n]);
        k += 8;
    }
}

fn udpmc_usage() -> &'static str {
    "usage: throughput udpmc send --bind ADDR --group GROUP [--port P] --count N --size S \
     [--batch B]\n       throughput udpmc recv --bind ADDR --group GROUP [--port P] --count N \
     --size S [--batch B] [--rcvbuf BYTES] [--idle SECS] [--timeout SECS]\n\
     recv prints READY once joined, then one line:\n  RESULT received=N bytes=B bad=K \
     missing=M seconds=T status=ok|fail\n(seconds: first to last message received)"
}

struct UdpOpts {
    bind: Ipv4Addr,
    group: Ipv4Addr,
    port: u16,
    count: u64,
    size: usize,
    batch: usize,
    rcvbuf: usize,
    idle: f64,
    timeout: f64,
}

/// `udpmc send|recv ...`: the peer's command line (see its usage).
pub fn main(args: &[String]) -> Result<()> {
    let Some(cmd) = args.first() else {
        bail!("{}", udpmc_usage());
    };
    let mut o = UdpOpts {
        bind: Ipv4Addr::UNSPECIFIED,
        group: Ipv4Addr::UNSPECIFIED,
        port: PORT,
        count: 0,
        size: 0,
        batch: 64,
        rcvbuf: 4 << 20,
        idle: 1.0,
        timeout: 120.0,
    };
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--bind" => o.bind = v()?.parse()?,
            "--group" => o.group = v()?.parse()?,
            "--port" => o.port = v()?.parse()?,
            "--count" => o.count = v()?.parse()?,
            "--size" => o.size = v()?.parse()?,
            "--batch" => o.batch = v()?.parse()?,
            "--rcvbuf" => o.rcvbuf = v()?.parse()?,
            "--idle" => o.idle = v()?.parse()?,
            "--timeout" => o.timeout = v()?.parse()?,
            "-h" | "--help" => {
                println!("{}", udpmc_usage());
                return Ok(());
            }
            _ => bail!("unknown option {a}\n{}", udpmc_usage()),
        }
    }
    ensure!(o.group.is_multicast(), "--group must be a multicast group");
    ensure!((1..=65_000).contains(&o.size), "--size must be 1..=65000");
    ensure!((1..=1024).contains(&o.batch), "--batch must be 1..=1024");
    match cmd.as_str() {
        "send" => udpmc_send(&o),
        "recv" => udpmc_recv(&o),
        _ => bail!("{}", udpmc_usage()),
    }
}

fn udpmc_send(o: &UdpOpts) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_multicast_if_v4(&o.bind)
        .with_context(|| format!("IP_MULTICAST_IF {}", o.bind))?;
    sock.set_multicast_ttl_v4(1)?;
    sock.set_multicast_loop_v4(false)?;
    sock.bind(&SocketAddrV4::new(o.bind, 0).into())?;
    sock.connect(&SocketAddrV4::new(o.group, o.port).into())?;
    let fd = sock.as_raw_fd();
    let mut b = Mmsg::new(o.batch, o.size);
    let t0 = now();
    let mut i = 0u64;
    while i < o.count {
        let n = (o.count - i).min(o.batch as u64) as usize;
        for k in 0..n {
            pattern_fill(SEED, i + k as u64, b.slot_mut(k));
        }
        b.send(fd, n, o.size)?;
        i += n as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "SENT count={i} bytes={} seconds={secs:.3} rate_msgs={:.0}",
        i * o.size as u64,
        i as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn udpmc_recv(o: &UdpOpts) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddrV4::new(o.group, o.port).into())
        .with_context(|| format!("bind {}:{}", o.group, o.port))?;
    sock.join_multicast_v4(&o.group, &o.bind)
        .with_context(|| format!("join {} on {}", o.group, o.bind))?;
    sock.set_multicast_all_v4(false)?;
    sock.set_recv_buffer_size(o.rcvbuf)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fd = sock.as_raw_fd();
    // One spare byte per slot reveals a datagram longer than expected (MSG_TRUNC).
    let mut b = Mmsg::new(o.batch, o.size + 1);
    let mut expect = vec![0u8; o.size];
    println!("READY");

    let t0 = now();
    let (mut received, mut bad, mut missing, mut next) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = t0;
    'outer: loop {
        let r = b.recv(fd, false)?;
        let t = now();
        if r == 0 {
            let quiet = match first {
                Some(_) => t.duration_since(last).as_secs_f64() > o.idle,
                None => t.duration_since(t0).as_secs_f64() > o.timeout,
            };
            if quiet {
                break;
            }
            continue;
        }
        if first.is_none() {
            first = Some(t);
        }
        last = t;
        for k in 0..r {
            // A longer datagram fills the spare byte of its slot: its length is not `size`.
            let data = b.received(k);
            let len = data.len();
            if len != o.size {
                bad += 1;
                continue;
            }
            let idx = if len >= 8 {
                u64::from_be_bytes(data[..8].try_into().unwrap_or_default())
            } else {
                next
            };
            if idx != next {
                if idx > next && idx < o.count {
                    missing += idx - next;
                    next = idx;
                } else {
                    bad += 1;
                    continue;
                }
            }
            pattern_fill(SEED, next, &mut expect);
            if data != expect.as_slice() {
                bad += 1;
            }
            received += 1;
            next += 1;
            if next >= o.count {
                break 'outer;
            }
        }
    }
    if next < o.count && received > 0 {
        missing += o.count - next;
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let ok = received == o.count && bad == 0 && missing == 0;
    println!(
        "RESULT received={received} bytes={} bad={bad} missing={missing} seconds={secs:.4} \
         status={}",
        received * o.size as u64,
        if ok { "ok" } else { "fail" }
    );
    Ok(())
}
