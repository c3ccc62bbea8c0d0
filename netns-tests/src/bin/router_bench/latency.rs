//! The NAK-to-NCF latency benchmark: a live session through the router, a NAK generator in
//! `rcv`, and a capture on r1's downstream interface.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pgm_core::wire::{Body, NakRepr, Nla, OptionList, Repr, Sqn, Tsi};
use pgm_netns_tests::admin;
use pgm_netns_tests::lab::{kernel_drops, read_pgm};

use crate::blast::{emit, raw_pgm_socket};
use crate::opts::{Mode, Opts};
use crate::topo::{Bins, Routing, build_topo, start_routing};
use crate::util::{check_stop, loadavg, now, realtime_ns, setsockopt_int};
use crate::{NAK_BEHIND, PGM_NAK, PGM_NCF, RCVBUF};

/// One NAK sent by the generator.
#[derive(Clone, Debug)]
struct NakSent {
    sqn: u32,
    /// CLOCK_REALTIME just before `sendto`.
    sent_ns: i64,
    /// Kernel receive timestamp of the first NCF for `sqn` at the receiver.
    ncf_ns: Option<i64>,
}

#[derive(Debug)]
struct NakGenOut {
    naks: Vec<NakSent>,
    router: Ipv4Addr,
    spm_seen: u64,
    odata_seen: u64,
}

/// Receives one datagram (IP header included) without waiting: its length and its kernel
/// receive timestamp (`SO_TIMESTAMPNS`, CLOCK_REALTIME ns).
fn recv_with_ts(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 32];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; CMSG_DATA of a SCM_TIMESTAMPNS header holds one timespec, read
    // unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                ts = Some(t.tv_sec * 1_000_000_000 + t.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ts))
}

/// Waits until `fd` is readable or `timeout` passes.
fn wait_readable(fd: RawFd, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd and one timespec, both alive for the call; no signal mask.
    unsafe {
        libc::ppoll(&mut p, 1, &ts, std::ptr::null());
    }
}

/// Serial-number "a < b" (§3.1.3 style, 32-bit wrap).
fn sqn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The session learnt from the wire.
#[derive(Clone, Copy)]
struct Session {
    tsi: Tsi,
    dport: u16,
    source: Ipv4Addr,
    router: Ipv4Addr,
}

/// What the NAK generator knows and has done.
struct GenState {
    want_router: Ipv4Addr,
    session: Option<Session>,
    /// The newest sequence number of the session seen (ODATA or SPM_LEAD).
    lead: Option<u32>,
    first_odata: Option<u32>,
    spm_seen: u64,
    odata_seen: u64,
    by_sqn: HashMap<u32, usize>,
    naks: Vec<NakSent>,
}

impl GenState {
    /// Takes one received IPv4 datagram (PGM) with its kernel timestamp.
    fn handle(&mut self, ip: &[u8], ts: Option<i64>) {
        let Some(&b0) = ip.first() else { return };
        let ihl = usize::from(b0 & 0x0f) * 4;
        if ip.len() < ihl + 24 {
            return;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let Ok(repr) = Repr::parse_bytes(&ip[ihl..]) else {
            return;
        };
        match repr.body {
            Body::Spm(spm) => {
                self.spm_seen += 1;
                if self.session.is_none() && spm.path.0 == IpAddr::V4(self.want_router) {
                    self.session = Some(Session {
                        tsi: repr.tsi(),
                        dport: repr.dport,
                        source: src,
                        router: self.want_router,
                    });
                }
                if self.session.is_some_and(|s| s.tsi == repr.tsi()) {
                    self.advance(spm.lead.0);
                }
            }
            Body::Odata(d) => {
                self.odata_seen += 1;
                if self.session.is_some_and(|s| s.tsi == repr.tsi()) {
                    self.first_odata.get_or_insert(d.sqn.0);
                    self.advance(d.sqn.0);
                }
            }
            Body::Ncf(n) => {
                if let (Some(ts), Some(&i)) = (ts, self.by_sqn.get(&n.sqn.0)) {
                    if let Some(rec) = self.naks.get_mut(i) {
                        if rec.ncf_ns.is_none() && ts >= rec.sent_ns {
                            rec.ncf_ns = Some(ts);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn advance(&mut self, sqn: u32) {
        if self.lead.is_none_or(|l| sqn_lt(l, sqn)) {
            self.lead = Some(sqn);
        }
    }

    /// Reads everything queued on `fd`.
    fn drain(&mut self, fd: RawFd, buf: &mut [u8]) {
        while let Ok((n, ts)) = recv_with_ts(fd, buf) {
            self.handle(&buf[..n.min(buf.len())], ts);
        }
    }
}

/// Runs in `rcv`: joins `group`, learns the session and its router from SPMs, then sends
/// `naks` NAKs at `rate`/s for new sequence numbers and records the NCFs.
fn nak_gen(
    bind: Ipv4Addr,
    group: Ipv4Addr,
    want_router: Ipv4Addr,
    naks: usize,
    rate: f64,
) -> Result<NakGenOut> {
    let rx = raw_pgm_socket()?;
    rx.join_multicast_v4(&group, &bind)?;
    rx.set_multicast_all_v4(false)?;
    rx.set_recv_buffer_size(RCVBUF)?;
    let fd = rx.as_raw_fd();
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    let tx = raw_pgm_socket()?;
    tx.bind(&SocketAddrV4::new(bind, 0).into())?;

    let mut buf = vec![0u8; 65_536];
    let mut g = GenState {
        want_router,
        session: None,
        lead: None,
        first_odata: None,
        spm_seen: 0,
        odata_seen: 0,
        by_sqn: HashMap::new(),
        naks: Vec::with_capacity(naks),
    };

    // Phase 1: an SPM through the router and enough ODATA to NAK inside the window.
    let start = now();
    let sess = loop {
        check_stop()?;
        wait_readable(fd, Duration::from_millis(20));
        g.drain(fd, &mut buf);
        if let (Some(s), Some(l), Some(f)) = (g.session, g.lead, g.first_odata) {
            if l.wrapping_sub(f) >= 4 * NAK_BEHIND {
                break s;
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!(
                "no session through the router after 20 s: {} SPMs ({}), {} ODATA seen",
                g.spm_seen,
                if g.session.is_some() {
                    "one with the router's address in SPM_PATH"
                } else {
                    "none with the router's address in SPM_PATH"
                },
                g.odata_seen
            );
        }
    };
    let dest = SocketAddrV4::new(sess.router, 0);

    // Phase 2: the NAKs, each for a new sequence number NAK_BEHIND behind the newest.
    let ivl = Duration::from_secs_f64(1.0 / rate);
    let mut next_sqn = g.lead.unwrap_or(0).wrapping_sub(NAK_BEHIND);
    let mut due = now();
    let mut nak_buf = [0u8; 64];
    while g.naks.len() < naks {
        check_stop()?;
        let t = now();
        if t >= due {
            let l = g.lead.unwrap_or(0);
            let floor = l.wrapping_sub(NAK_BEHIND);
            if sqn_lt(next_sqn, floor) {
                next_sqn = floor;
            }
            if !sqn_lt(l, next_sqn) {
                let repr = Repr {
                    sport: sess.dport,
                    dport: sess.tsi.sport,
                    gsi: sess.tsi.gsi,
                    parity: false,
                    var_pktlen: false,
                    body: Body::Nak(NakRepr {
                        sqn: Sqn(next_sqn),
                        source: Nla(IpAddr::V4(sess.source)),
                        group: Nla(IpAddr::V4(group)),
                    }),
                    options: OptionList::EMPTY,
                };
                let len = emit(&repr, &mut nak_buf)?;
                let sent_ns = realtime_ns();
                tx.send_to(&nak_buf[..len], &dest.into())
                    .context("sending a NAK")?;
                g.by_sqn.insert(next_sqn, g.naks.len());
                g.naks.push(NakSent {
                    sqn: next_sqn,
                    sent_ns,
                    ncf_ns: None,
                });
                next_sqn = next_sqn.wrapping_add(1);
                due += ivl;
                // Never burst to catch up after a stall.
                if due < t {
                    due = t + ivl;
                }
            } else {
                due = t + Duration::from_millis(1);
            }
        }
        wait_readable(fd, due.saturating_duration_since(now()));
        g.drain(fd, &mut buf);
    }
    // Phase 3: the last NCFs.
    let end = now();
    while end.elapsed() < Duration::from_secs(1) {
        wait_readable(fd, Duration::from_millis(20));
        g.drain(fd, &mut buf);
    }
    Ok(NakGenOut {
        naks: g.naks,
        router: sess.router,
        spm_seen: g.spm_seen,
        odata_seen: g.odata_seen,
    })
}

#[derive(Debug)]
pub(crate) struct LatencyOutcome {
    pub(crate) mode: Mode,
    pub(crate) rep: usize,
    pub(crate) naks_sent: usize,
    /// NAK in -> NCF out on the router's downstream interface, ns, sorted.
    pub(crate) wire: Vec<i64>,
    pub(crate) naks_captured: usize,
    pub(crate) ncfs_captured: usize,
    /// Receiver's view: send call -> NCF kernel receive timestamp, ns, sorted.
    pub(crate) rtt: Vec<i64>,
    /// Packets tcpdump lost for lack of buffer space.
    pub(crate) capture_drops: u64,
    pub(crate) metrics: String,
    pub(crate) duration: f64,
    pub(crate) load: (String, String),
}

pub(crate) fn latency(o: &Opts, bins: &Bins, mode: Mode, rep: usize) -> Result<LatencyOutcome> {
    let load0 = loadavg();
    let t = build_topo("rbnak", true)?;
    let routing = start_routing(&t, mode, bins)?;
    let r1 = t.r1()?;
    let Routing::Daemon(daemon) = &routing else {
        bail!("the latency benchmark needs pgm-routerd");
    };
    // NAK (0x08) and NCF (0x0a) only: ODATA and RDATA stay out of the capture.
    let filter = "ip proto 113 and (ip[((ip[0] & 0xf) << 2) + 4] = 8 or \
                  ip[((ip[0] & 0xf) << 2) + 4] = 10)";
    let pcap = t.lab.file("r1-to-rcv", "pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    // As `Lab::capture`, with nanosecond timestamps.
    #[rustfmt::skip]
    let cap = t.lab.spawn(&r1.ns, &["tcpdump", "-i", "to-rcv", "-w", &pcap_s, "-U",
                                   "--immediate-mode", "-n", "-Z", "root",
                                   "--time-stamp-precision=nano", "-B", "65536", filter])?;
    cap.wait_for_output("listening on", Duration::from_secs(10))?;

    let size = 200usize;
    let secs = o.naks as f64 / o.nak_rate + 30.0;
    let count = ((o.src_rate as f64 / (size + 44) as f64) * secs) as u64;
    let pgm = bins.pgm.to_string_lossy().into_owned();
    let net = format!("{};{}", t.src_addr, t.group);
    #[rustfmt::skip]
    let source = t.lab.spawn(&t.src, &[
        pgm.as_str(), "send", "--ip", "--network", &net, "--count", &count.to_string(),
        "--size", &size.to_string(), "--rate", &o.src_rate.to_string(),
        "--txw-sqns", "262144", "--linger", "1",
    ])?;

    let started = now();
    let (rcv_addr, group, r1_down, naks, rate) = (t.rcv_addr, t.group, r1.down, o.naks, o.nak_rate);
    let gen_out = t
        .rcv
        .spawn_thread(move || nak_gen(rcv_addr, group, r1_down, naks, rate))
        .join()
        .map_err(|_| anyhow::anyhow!("NAK generator panicked"))?;
    let duration = started.elapsed().as_secs_f64();
    let metrics = admin::get(&r1.ns, admin::DEFAULT_LISTEN, "/metrics").unwrap_or_default();
    let source_alive = source.is_running();
    let _ = source.kill();
    let pcap = {
        thread::sleep(Duration::from_millis(200));
        let st = cap.stop(Duration::from_secs(5))?;
        ensure!(
            st.success(),
            "tcpdump exited with {st}: {}",
            cap.stderr().unwrap_or_default()
        );
        pcap
    };
    let capture_drops = kernel_drops(&cap.stderr().unwrap_or_default());
    let gen_out = gen_out.map_err(|e| {
        e.context(format!(
            "source {}: {}",
            if source_alive { "running" } else { "exited" },
            source.stderr().unwrap_or_default()
        ))
    })??;
    let _ = daemon.stop(Duration::from_secs(5));

    // Match each NAK entering the interface with the router's first NCF for its sqn.
    let frames = read_pgm(&pcap)?;
    let mut nak_in: HashMap<u32, i64> = HashMap::new();
    let mut wire = Vec::new();
    let (mut naks_captured, mut ncfs_captured) = (0, 0);
    for f in &frames {
        let (ts, dst) = (i64::try_from(f.at.as_nanos()).unwrap_or(i64::MAX), f.dst);
        let Some(&ty) = f.pgm.get(4) else { continue };
        let Ok(repr) = Repr::parse_bytes(&f.pgm) else {
            continue;
        };
        let sqn = match repr.body {
            Body::Nak(n) | Body::Ncf(n) => n.sqn.0,
            _ => continue,
        };
        if ty == PGM_NAK && dst == gen_out.router {
            naks_captured += 1;
            nak_in.entry(sqn).or_insert(ts);
        } else if ty == PGM_NCF && dst.is_multicast() {
            // Only the router sends NCFs onto this link (NCFs are never forwarded); their IP
            // source is the ODATA source's address (§7.2).
            ncfs_captured += 1;
            if let Some(t_in) = nak_in.remove(&sqn) {
                wire.push(ts - t_in);
            }
        }
    }
    wire.sort_unstable();
    let mut rtt: Vec<i64> = gen_out
        .naks
        .iter()
        .filter_map(|n| n.ncf_ns.map(|t| t - n.sent_ns))
        .collect();
    rtt.sort_unstable();
    if o.verbose {
        eprintln!(
            "  generator: {} SPMs, {} ODATA seen; first NAK sqn {:?}",
            gen_out.spm_seen,
            gen_out.odata_seen,
            gen_out.naks.first().map(|n| n.sqn)
        );
    }
    drop(routing);
    drop(t);
    Ok(LatencyOutcome {
        mode,
        rep,
        naks_sent: gen_out.naks.len(),
        wire,
        naks_captured,
        ncfs_captured,
        rtt,
        capture_drops,
        metrics,
        duration,
        load: (load0, loadavg()),
    })
}
