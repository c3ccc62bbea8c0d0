//! End-host one-way latency harness (not a timed test): our host API, the OpenPGM 5.3 peer
//! and plain UDP multicast, side by side over one veth pair, at fixed message rates.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin latency -- \
//!     [--sizes 64,1400] [--rates 10000,50000] [--secs 5] [--warmup 0.5] [--repeat 2] \
//!     [--impls ours,openpgm,udp] [--no-sysctl] [--verbose]
//! ```
//!
//! Needs root. For every run it builds a fresh two-namespace lab (`snd` and `rcv` joined by a
//! veth pair, as `throughput` does), starts the receiver, then the sender. The sender paces
//! `rate × (warmup + secs)` messages against absolute deadlines (`bench::stamp::Pacer`:
//! `clock_nanosleep(TIMER_ABSTIME)`, timer slack 1 ns) and writes into each one its index and
//! `CLOCK_MONOTONIC` just before the send call; the receiver reads the clock as soon as the
//! message is handed to it. The messages of the warm-up are left out; every other message
//! gives one sample. Percentiles are nearest-rank over a run's samples; the table gives the
//! median over the repeats and every run's values; "rate kept" counts the runs whose
//! sender achieved the rate (within 2%: a sender that falls behind sends late, and its
//! latencies are not those of the rate). A message already due when the pacer looks is sent
//! without sleeping (a timer set in the past still costs an interrupt).
//!
//! - `ours`: pgm-core's host API in this binary (`latency peer ours-send|ours-recv`) over
//!   PGM/UDP (port 3056 for multicast and unicast, as `throughput` runs it), default engine
//!   settings but `max_tpdu` from the link's MTU (1472) so that 1400 bytes is one packet,
//!   multicast loopback off, and PGMCC off, as OpenPGM's is by default (`--impls
//!   ours-pgmcc` runs it on: the receiver then ACKs every packet, and the sender's data waits
//!   for the ACK clock). The sender's driver runs on a one-worker tokio runtime; the
//!   application's own thread paces and calls `Sender::send` through `Runtime::block_on`,
//!   as the other senders call theirs (`--impls ours-task` runs the application instead as
//!   a task on the driver's current-thread runtime, woken by a `timerfd`). The receiver
//!   runs its driver and the application on one current-thread runtime, as `pgm recv` does.
//! - `openpgm`: the OpenPGM peer (`peers/openpgm`, `--latency`) over PGM/UDP (3056/3056):
//!   `pgm_send` from the pacing thread, `pgm_recvmsgv` one APDU per call.
//! - `udp`: plain UDP multicast in this binary (`latency peer udp-send|udp-recv`): one
//!   `send(2)` per message on a connected socket, a blocking `recv(2)` per message.
//!
//! Socket buffers are raised in the initial namespace for the run as `throughput` does
//! (`bench::SysctlGuard`; `--no-sysctl` leaves them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pgm_netns_tests::bench::stamp::{self, HEADER, Pacer, Recorder};
use pgm_netns_tests::bench::{
    PORT, PairLab, Piped, SysctlGuard, field, fields, loadavg, machine, median, monotonic_ns, now,
    parse_list, read_sysctls,
};
use pgm_netns_tests::bins::openpgm_peer;
use pgm_netns_tests::lab::is_root;

/// The PGM data-destination port of both PGM implementations (OpenPGM's default).
const DPORT: u16 = 7500;
/// How long a receiver waits beyond the run's expected end before it gives up.
const SLACK_SECS: f64 = 10.0;

// ---------------------------------------------------------------------------------------
// Peers: `latency peer ours-send|ours-recv|udp-send|udp-recv`

const PEER_USAGE: &str = "\
usage: latency peer ours-send|udp-send --bind ADDR --group GROUP --rate MSGS --count N --size S
                                       [--task] (ours: the application is a task on the
                                       driver's current-thread runtime, woken by a timerfd)
                                       [--pgmcc] (ours: PGMCC on, as by default)
       latency peer ours-recv|udp-recv --bind ADDR --group GROUP --rate MSGS --count N --size S
                                       --skip K --out PATH
Senders print `SENT count=N seconds=T late_p50_us=.. late_p99_us=.. late_max_us=..`; receivers
print READY once listening, then `RESULT received=N missing=M bad=K samples=S status=ok|fail`
and write the samples (native-endian i64 ns) to PATH.";

struct PeerOpts {
    bind: Ipv4Addr,
    group: Ipv4Addr,
    rate: u64,
    count: u64,
    size: usize,
    skip: u64,
    out: Option<PathBuf>,
    task: bool,
    pgmcc: bool,
}

impl PeerOpts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            bind: Ipv4Addr::UNSPECIFIED,
            group: Ipv4Addr::UNSPECIFIED,
            rate: 0,
            count: 0,
            size: 0,
            skip: 0,
            out: None,
            task: false,
            pgmcc: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut v = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--bind" => o.bind = v()?.parse()?,
                "--group" => o.group = v()?.parse()?,
                "--rate" => o.rate = v()?.parse()?,
                "--count" => o.count = v()?.parse()?,
                "--size" => o.size = v()?.parse()?,
                "--skip" => o.skip = v()?.parse()?,
                "--out" => o.out = Some(PathBuf::from(v()?)),
                "--task" => o.task = true,
                "--pgmcc" => o.pgmcc = true,
                _ => bail!("unknown option {a}\n{PEER_USAGE}"),
            }
        }
        ensure!(o.group.is_multicast(), "--group must be a multicast group");
        ensure!(o.rate > 0 && o.count > 0, "--rate and --count must be > 0");
        ensure!(
            (HEADER..=1400).contains(&o.size),
            "--size must be {HEADER}..=1400"
        );
        Ok(o)
    }

    /// When a receiver gives up: the run's length plus slack.
    fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.count as f64 / self.rate as f64 + SLACK_SECS)
    }

    fn out(&self) -> Result<&PathBuf> {
        self.out.as_ref().context("receivers need --out")
    }
}

fn peer_main(args: &[String]) -> Result<()> {
    let Some(cmd) = args.first() else {
        bail!("{PEER_USAGE}");
    };
    let o = PeerOpts::parse(&args[1..])?;
    match cmd.as_str() {
        "ours-send" => ours_send(&o),
        "ours-recv" => ours_recv(&o),
        "udp-send" => udp_send(&o),
        "udp-recv" => udp_recv(&o),
        _ => bail!("{PEER_USAGE}"),
    }
}

/// Sends `o.count` paced, stamped messages of `o.size` bytes with `send`, then prints SENT.
fn paced(o: &PeerOpts, mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut msg = vec![0u8; o.size];
    let mut pacer = Pacer::new(o.rate);
    let t0 = now();
    for i in 0..o.count {
        let stamp = pacer.wait(i);
        stamp::write_header(&mut msg, i, stamp);
        send(&msg)?;
    }
    print_sent(o, t0, &pacer);
    Ok(())
}

/// The sender's `SENT` line, printed once the last message is sent.
fn print_sent(o: &PeerOpts, t0: std::time::Instant, pacer: &Pacer) {
    println!(
        "SENT count={} seconds={:.3} {}",
        o.count,
        t0.elapsed().as_secs_f64(),
        pacer.lateness()
    );
}

fn pgm_transport(o: &PeerOpts) -> pgm_core::net::TransportConfig {
    use pgm_core::net::{Encapsulation, TransportConfig};
    let mut t = TransportConfig::new(
        Encapsulation::Udp {
            unicast_port: PORT,
            multicast_port: PORT,
        },
        o.group,
        o.bind,
    );
    t.loopback = false;
    t
}

/// A `timerfd` on `CLOCK_MONOTONIC` registered with tokio: waits until an absolute time
/// with the precision of a kernel timer, inside the runtime (tokio's own timers tick in
/// milliseconds).
struct TimerFd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

#[allow(unsafe_code)]
impl TimerFd {
    fn new() -> Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: timerfd_create has no memory effects; the descriptor is owned below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        ensure!(
            fd >= 0,
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `OwnedFd` stays open, and the same descriptor, as long as the `AsyncFd`
        // that owns it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)?;
        Ok(Self(fd))
    }

    /// Waits until [`monotonic_ns`] reaches `due`.
    async fn sleep_until(&self, due: i64) -> Result<()> {
        use std::os::fd::AsRawFd;
        if monotonic_ns() >= due {
            if std::env::var_os("LAT_YIELD").is_some() {
                tokio::task::yield_now().await;
            }
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: due / 1_000_000_000,
                tv_nsec: due % 1_000_000_000,
            },
        };
        // SAFETY: timerfd_settime reads `spec` and writes nothing (no old-value pointer).
        let r = unsafe {
            libc::timerfd_settime(
                self.0.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        ensure!(
            r == 0,
            "timerfd_settime: {}",
            std::io::Error::last_os_error()
        );
        loop {
            let mut guard = self.0.readable().await?;
            let read = guard.try_io(|fd| {
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into the 8-byte buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(r) = read {
                return Ok(r?);
            }
        }
    }
}

fn ours_send(o: &PeerOpts) -> Result<()> {
    use pgm_core::host::{Sender, SenderConfig};
    use pgm_core::net::iface;
    use pgm_core::proto::source::SourceConfig;
    use pgm_core::wire::Gsi;

    let pid = std::process::id().to_be_bytes();
    let gsi = Gsi([b'l', b't', pid[0], pid[1], pid[2], pid[3]]);
    let mut engine = SourceConfig::new(
        gsi,
        0x8000 | std::process::id() as u16,
        DPORT,
        o.group.into(),
        o.bind.into(),
    );
    let link = iface::resolve(&o.bind.to_string())?;
    // IPv4 and UDP headers below the TPDU.
    engine.max_tpdu = iface::mtu(&link.name)? as usize - 28;
    // PGMCC (on by default) clocks data by the acker's ACKs; OpenPGM's is off by default.
    engine.pgmcc.enabled = o.pgmcc;
    let mut cfg = SenderConfig::new(engine, pgm_transport(o));
    cfg.linger = Duration::from_millis(500);
    let mut msg = vec![0u8; o.size];
    let mut pacer = Pacer::new(o.rate);
    let t0 = now();
    if !o.task {
        // The application's own thread paces and sends, as the other peers' do; the
        // driver runs on a one-worker runtime.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let sender = rt.block_on(async { Sender::bind(cfg) })?;
        for i in 0..o.count {
            let stamp = pacer.wait(i);
            stamp::write_header(&mut msg, i, stamp);
            rt.block_on(sender.send(&msg))?;
        }
        print_sent(o, t0, &pacer);
        rt.block_on(async {
            sender.flush().await?;
            sender.close().await
        })?;
    } else {
        // An event-driven application: a task woken by a timer, on the driver's runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let sender = Sender::bind(cfg)?;
            let timer = TimerFd::new()?;
            for i in 0..o.count {
                let due = pacer.due(i);
                timer.sleep_until(due).await?;
                stamp::write_header(&mut msg, i, pacer.woke(due));
                sender.send(&msg).await?;
            }
            print_sent(o, t0, &pacer);
            sender.flush().await?;
            sender.close().await?;
            anyhow::Ok(())
        })?;
    }
    Ok(())
}

fn ours_recv(o: &PeerOpts) -> Result<()> {
    use pgm_core::host::{Event, Receiver, ReceiverConfig};
    use pgm_core::proto::receiver;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut transport = pgm_transport(o);
        transport.listen_unicast = false;
        let engine = receiver::ReceiverConfig::new(DPORT, o.group.into());
        let mut rx = Receiver::bind(ReceiverConfig::new(engine, transport))?;
        println!("READY");
        let mut rec = Recorder::new(o.count, o.skip);
        let deadline = tokio::time::sleep(o.deadline());
        tokio::pin!(deadline);
        while !rec.done() {
            tokio::select! {
                ev = rx.next_event() => match ev {
                    Some(Event::Data { data, .. }) => rec.on_message(&data, monotonic_ns()),
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        rec.finish(o.out()?)
    })
}

fn udp_send(o: &PeerOpts) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_multicast_if_v4(&o.bind)?;
    sock.set_multicast_ttl_v4(1)?;
    sock.set_multicast_loop_v4(false)?;
    sock.bind(&SocketAddrV4::new(o.bind, 0).into())?;
    sock.connect(&SocketAddrV4::new(o.group, PORT).into())?;
    paced(o, |m| {
        // A full send buffer (it cannot fill at these rates) would block: no loss here.
        sock.send(m)?;
        Ok(())
    })
}

fn udp_recv(o: &PeerOpts) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddrV4::new(o.group, PORT).into())?;
    sock.join_multicast_v4(&o.group, &o.bind)?;
    sock.set_multicast_all_v4(false)?;
    sock.set_recv_buffer_size(4 << 20)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sock = std::net::UdpSocket::from(sock);
    println!("READY");
    let mut rec = Recorder::new(o.count, o.skip);
    let mut buf = vec![0u8; 2048];
    let until = now() + o.deadline();
    while !rec.done() && now() < until {
        match sock.recv(&mut buf) {
            Ok(n) => rec.on_message(&buf[..n], monotonic_ns()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rec.finish(o.out()?)
}

// ---------------------------------------------------------------------------------------
// Harness options

/// A sending or receiving end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stack {
    Ours,
    /// Ours, the application a task on the driver's runtime (senders only).
    OursTask,
    /// Ours with PGMCC on, its default (senders only).
    OursPgmcc,
    OpenPgm,
    Udp,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::OursTask => "ours, app task",
            Self::OursPgmcc => "ours, PGMCC on",
            Self::OpenPgm => "OpenPGM",
            Self::Udp => "UDP",
        }
    }
}

/// What one cell runs: a sender and a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Impl {
    tx: Stack,
    rx: Stack,
}

impl Impl {
    const OURS: Self = Self::same(Stack::Ours);
    const OPENPGM: Self = Self::same(Stack::OpenPgm);
    const UDP: Self = Self::same(Stack::Udp);

    const fn same(s: Stack) -> Self {
        Self { tx: s, rx: s }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "ours" => Self::OURS,
            "openpgm" => Self::OPENPGM,
            "udp" => Self::UDP,
            "ours-task" => Self {
                tx: Stack::OursTask,
                rx: Stack::Ours,
            },
            "ours-pgmcc" => Self {
                tx: Stack::OursPgmcc,
                rx: Stack::Ours,
            },
            "ours-openpgm" => Self {
                tx: Stack::Ours,
                rx: Stack::OpenPgm,
            },
            "openpgm-ours" => Self {
                tx: Stack::OpenPgm,
                rx: Stack::Ours,
            },
            x => bail!(
                "unknown implementation {x:?} (ours, openpgm, udp, ours-task, ours-pgmcc, \
                 ours-openpgm, openpgm-ours)"
            ),
        })
    }

    fn name(self) -> String {
        match self {
            Self::OURS => "ours (host API)".to_owned(),
            Self::OPENPGM => "OpenPGM 5.3".to_owned(),
            Self::UDP => "plain UDP mcast".to_owned(),
            Self { tx, rx } => format!("{} -> {}", tx.name(), rx.name()),
        }
    }
}

struct Opts {
    sizes: Vec<usize>,
    rates: Vec<u64>,
    secs: f64,
    warmup: f64,
    repeat: usize,
    impls: Vec<Impl>,
    sysctl: bool,
    verbose: bool,
}

const USAGE: &str = "\
usage: latency [--sizes 64,1400] [--rates 10000,50000] [--secs S] [--warmup S] [--repeat K]
               [--impls ours,openpgm,udp] [--no-sysctl] [--verbose]
  --impls also takes ours-task (our sender's application a task on the driver's
  current-thread runtime), ours-pgmcc (our sender with PGMCC on, its default; the others
  run without congestion control, as OpenPGM does by default), ours-openpgm and
  openpgm-ours (one stack's sender to the other's receiver: which end costs what).
       latency peer ...   (the peers the harness runs; latency peer --help)
Needs root. Prints one line per run on stderr and the summary table on stdout.";

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        sizes: vec![64, 1400],
        rates: vec![10_000, 50_000],
        secs: 5.0,
        warmup: 0.5,
        repeat: 2,
        impls: vec![Impl::OURS, Impl::OPENPGM, Impl::UDP],
        sysctl: true,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" | "--size" => o.sizes = parse_list(v()?, "size")?,
            "--rates" | "--rate" => o.rates = parse_list(v()?, "rate")?,
            "--secs" => o.secs = v()?.parse()?,
            "--warmup" => o.warmup = v()?.parse()?,
            "--repeat" => o.repeat = v()?.parse()?,
            "--impls" => {
                o.impls = v()?.split(',').map(Impl::parse).collect::<Result<_>>()?;
            }
            "--no-sysctl" => o.sysctl = false,
            "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {a}\n{USAGE}"),
        }
    }
    ensure!(
        o.repeat > 0 && o.secs > 0.0,
        "--repeat and --secs must be > 0"
    );
    ensure!(o.warmup >= 0.0, "--warmup must be >= 0");
    ensure!(
        o.sizes.iter().all(|s| (HEADER..=1400).contains(s)),
        "sizes must be {HEADER}..=1400 (one datagram, index and stamp in the first 16 bytes)"
    );
    ensure!(
        o.rates.iter().all(|r| (1..=1_000_000).contains(r)),
        "rates must be 1..=1000000 messages per second"
    );
    o.impls.sort();
    o.impls.dedup();
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// One run

/// A run's result: its samples' percentiles in µs, and what the receiver counted.
#[derive(Clone, Debug)]
struct Outcome {
    /// p50, p99, p99.9, max in µs.
    pcts: [f64; 4],
    samples: usize,
    received: u64,
    missing: u64,
    ok: bool,
    /// The sender's SENT line (pacing lateness).
    sent: String,
    /// Messages per second the sender achieved (its first to last send).
    achieved: f64,
}

impl Outcome {
    /// Whether the sender kept the rate asked (within 2%): a sender that falls behind
    /// sends late, and its latencies are not those of the rate.
    fn kept(&self, rate: u64) -> bool {
        self.achieved >= 0.98 * rate as f64
    }
}

const QUANTILES: [f64; 4] = [0.5, 0.99, 0.999, 1.0];

fn run_once(o: &Opts, peer: &Path, imp: Impl, size: usize, rate: u64) -> Result<Outcome> {
    let pair = PairLab::new("lat")?;
    let count = (rate as f64 * (o.warmup + o.secs)).round() as u64;
    let skip = (rate as f64 * o.warmup).round() as u64;
    let out = pair.lab.file("samples", "bin");
    let me = std::env::current_exe().context("current_exe")?;
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let (count_s, skip_s, size_s, rate_s) = (
        count.to_string(),
        skip.to_string(),
        size.to_string(),
        rate.to_string(),
    );
    let (ra, sa, g) = (
        pair.rcv_addr.to_string(),
        pair.snd_addr.to_string(),
        pair.group.to_string(),
    );
    let out_s = out.display().to_string();
    let me = me.display().to_string();
    let peer = peer.display().to_string();
    let port = PORT.to_string();
    let timeout = format!("{:.0}", count as f64 / rate as f64 + SLACK_SECS);
    let net = |a: &str| format!("{a};{g}");
    let ours = ["--group", &g, "--rate", &rate_s, "--count", &count_s];
    let openpgm = [
        "--udp",
        "--ucast-port",
        &port,
        "--mcast-port",
        &port,
        "--count",
        &count_s,
        "--sizes",
        &size_s,
        "--latency",
    ];
    let rx_args = match imp.rx {
        Stack::Ours | Stack::OursTask | Stack::OursPgmcc | Stack::Udp => {
            let cmd = if imp.rx == Stack::Udp {
                "udp-recv"
            } else {
                "ours-recv"
            };
            let mut r = s(&[&me, "peer", cmd, "--bind", &ra, "--size", &size_s]);
            r.extend(s(&ours));
            r.extend(s(&["--skip", &skip_s, "--out", &out_s]));
            r
        }
        Stack::OpenPgm => {
            let mut r = s(&[&peer, "recv", "--network", &net(&ra)]);
            r.extend(s(&openpgm));
            r.extend(s(&[
                "--skip",
                &skip_s,
                "--latency-out",
                &out_s,
                "--timeout",
                &timeout,
                "--verbose",
            ]));
            r
        }
    };
    let tx_args = match imp.tx {
        Stack::Ours | Stack::OursTask | Stack::OursPgmcc | Stack::Udp => {
            let cmd = if imp.tx == Stack::Udp {
                "udp-send"
            } else {
                "ours-send"
            };
            let mut t = s(&[&me, "peer", cmd, "--bind", &sa, "--size", &size_s]);
            t.extend(s(&ours));
            if imp.tx == Stack::OursTask {
                t.push("--task".to_owned());
            }
            if imp.tx == Stack::OursPgmcc {
                t.push("--pgmcc".to_owned());
            }
            t
        }
        Stack::OpenPgm => {
            let mut t = s(&[&peer, "send", "--network", &net(&sa)]);
            t.extend(s(&openpgm));
            t.extend(s(&["--pace", &rate_s, "--linger", "600"]));
            t
        }
    };

    let mut rx = Piped::spawn(&pair.lab, &pair.rcv, &rx_args)?;
    let ready_until = now() + Duration::from_secs(10);
    loop {
        let ready = match imp.rx {
            Stack::OpenPgm => rx.stderr().iter().any(|(_, l)| l.contains("receiver TSI")),
            Stack::Ours | Stack::OursTask | Stack::OursPgmcc | Stack::Udp => {
                rx.find_out("READY").is_some()
            }
        };
        if ready || now() >= ready_until || rx.try_wait().is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    if let Some(st) = rx.try_wait() {
        let tail = rx.stderr_tail(10);
        rx.kill();
        bail!("{} receiver exited at start ({st}):\n{tail}", imp.name());
    }
    let tx = Piped::spawn(&pair.lab, &pair.snd, &tx_args)?;
    let limit = Duration::from_secs_f64(count as f64 / rate as f64 + 2.0 * SLACK_SECS);
    let t_start = now();
    let status = loop {
        if let Some(st) = rx.try_wait() {
            break Some(st);
        }
        if t_start.elapsed() > limit {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    thread::sleep(Duration::from_millis(50));
    let sent = tx.find_out("SENT").unwrap_or_default();
    let tx_err = tx.stderr_tail(6);
    tx.kill();
    let result = rx.find_out("RESULT");
    let rx_err = rx.stderr_tail(8);
    rx.kill();
    let Some(result) = result else {
        bail!(
            "{} receiver gave no RESULT line (status {status:?}); receiver stderr:\n{rx_err}\
             sender stderr:\n{tx_err}",
            imp.name()
        );
    };
    if o.verbose {
        eprintln!(
            "  {result}\n  {sent}\n  receiver stderr (tail):\n{rx_err}  sender stderr (tail):\n{tx_err}"
        );
    }
    let f = fields(&result);
    let mut samples = stamp::read_samples(&out)?;
    samples.sort_unstable();
    let pcts =
        QUANTILES.map(|q| stamp::percentile(&samples, q).map_or(f64::NAN, |x| x as f64 / 1e3));
    let received: u64 = field(&f, "received").unwrap_or(0);
    let missing: u64 = field(&f, "missing").unwrap_or(0);
    let sf = fields(&sent);
    let achieved = match (field::<f64>(&sf, "count"), field::<f64>(&sf, "seconds")) {
        (Some(n), Some(t)) if t > 0.0 => n / t,
        _ => 0.0,
    };
    drop(pair);
    Ok(Outcome {
        pcts,
        samples: samples.len(),
        received,
        missing,
        ok: f.get("status") == Some(&"ok") && received == count,
        sent,
        achieved,
    })
}

// ---------------------------------------------------------------------------------------
// The matrix and the report

/// (size, rate, implementation).
type Key = (usize, u64, Impl);

fn fmt_us(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Per percentile, the median over the complete runs of a cell.
fn medians(runs: &[Outcome]) -> Option<[f64; 4]> {
    let ok: Vec<&Outcome> = runs.iter().filter(|r| r.ok).collect();
    if ok.is_empty() {
        return None;
    }
    let mut m = [0.0; 4];
    for (k, slot) in m.iter_mut().enumerate() {
        let mut v: Vec<f64> = ok.iter().map(|r| r.pcts[k]).collect();
        *slot = median(&mut v)?;
    }
    Some(m)
}

fn report(res: &BTreeMap<Key, Vec<Outcome>>, errors: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| size | rate (msgs/s) | implementation | complete | rate kept | p50 µs | p99 µs | \
         p99.9 µs | max µs | per run p50/p99/p99.9 µs |"
    );
    let _ = writeln!(s, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (&(size, rate, imp), runs) in res {
        let m = medians(runs);
        let cell = |k: usize| m.map_or("-".to_owned(), |m| fmt_us(m[k]));
        let per_run: Vec<String> = runs
            .iter()
            .map(|r| {
                let v = format!(
                    "{}/{}/{}",
                    fmt_us(r.pcts[0]),
                    fmt_us(r.pcts[1]),
                    fmt_us(r.pcts[2])
                );
                let v = if r.kept(rate) {
                    v
                } else {
                    format!("{v} (sent {:.0}/s)", r.achieved)
                };
                if r.ok {
                    v
                } else {
                    format!("{v} (missing {})", r.missing)
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "| {size} B | {} | {} | {}/{} | {}/{} | {} | {} | {} | {} | {} |",
            rate,
            imp.name(),
            runs.iter().filter(|r| r.ok).count(),
            runs.len(),
            runs.iter().filter(|r| r.kept(rate)).count(),
            runs.len(),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            per_run.join(", ")
        );
    }
    s.push_str("\nTarget: ours' p50 and p99 at or below OpenPGM's (medians over the runs):\n");
    let cells: Vec<(usize, u64)> = res.keys().map(|&(s, r, _)| (s, r)).collect();
    let mut done = Vec::new();
    for (size, rate) in cells {
        if done.contains(&(size, rate)) {
            continue;
        }
        done.push((size, rate));
        let get = |imp| res.get(&(size, rate, imp)).and_then(|r| medians(r));
        if let (Some(a), Some(b)) = (get(Impl::OURS), get(Impl::OPENPGM)) {
            let met = a[0] <= b[0] && a[1] <= b[1];
            let _ = writeln!(
                s,
                "- {size} B at {rate} msgs/s: p50 {} vs {}, p99 {} vs {}: {}",
                fmt_us(a[0]),
                fmt_us(b[0]),
                fmt_us(a[1]),
                fmt_us(b[1]),
                if met { "MET" } else { "MISSED" }
            );
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(s, "\nErrors:");
        for e in errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

fn harness(args: &[String]) -> Result<()> {
    let o = parse_opts(args)?;
    ensure!(is_root(), "the latency harness needs root (namespaces)");
    let peer = openpgm_peer()?;
    let guard = if o.sysctl {
        Some(SysctlGuard::raise()?)
    } else {
        None
    };
    let sysctls = read_sysctls();
    let started = now();
    let load0 = loadavg();
    eprintln!(
        "latency: {}; {sysctls}; load average {load0}; {} s per run after a {} s warm-up",
        machine(),
        o.secs,
        o.warmup
    );
    let mut res: BTreeMap<Key, Vec<Outcome>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut done = 0;
    for _ in 0..o.repeat {
        for &size in &o.sizes {
            for &rate in &o.rates {
                for &imp in &o.impls {
                    done += 1;
                    let label = format!("[{done}] {} {size} B at {rate} msgs/s", imp.name());
                    match run_once(&o, &peer, imp, size, rate) {
                        Ok(out) => {
                            eprintln!(
                                "{label}: {} received {}, {} samples, missing {}; p50/p99/p99.9/max \
                                 {} µs; sender {} (load {})",
                                if out.ok { "ok" } else { "FAIL" },
                                out.received,
                                out.samples,
                                out.missing,
                                out.pcts.map(fmt_us).join("/"),
                                out.sent.trim_start_matches("SENT "),
                                loadavg()
                            );
                            res.entry((size, rate, imp)).or_default().push(out);
                        }
                        Err(e) => {
                            eprintln!("{label}: ERROR {e:#}");
                            errors.push(format!("{label}: {e:#}"));
                        }
                    }
                }
            }
        }
    }
    drop(guard);
    let _ = std::fs::remove_file(&peer);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}\nSysctls during the run: {sysctls}\nLoad average at start {load0}, at end \
         {}; {done} runs in {:.0} s; {} s of messages per run after {} s of warm-up; medians \
         of {} repeats\n",
        machine(),
        loadavg(),
        started.elapsed().as_secs_f64(),
        o.secs,
        o.warmup,
        o.repeat
    );
    out.push_str(&report(&res, &errors));
    println!("{out}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("peer") {
        return peer_main(&args[1..]);
    }
    harness(&args)
}
