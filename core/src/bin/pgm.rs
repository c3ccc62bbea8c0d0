//! `pgm`: send and receive PGM sessions from the command line.
//!
//! ```text
//! pgm send --network "eth0;239.192.0.1" --file big.iso
//! pgm recv --network "eth0;239.192.0.1" --out big.iso
//! pgm --config /etc/pgm/host.toml recv --out big.iso
//! ```
//!
//! Settings come from the command line, else from the `[host]` section of `--config` (the
//! schema of `pgm-config`, example in `deploy/examples/host.toml`), else from the defaults.

use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pgm_config::{Config, HostEncapsulation, HostSection};
use pgm_core::host::{Receiver, ReceiverConfig, Sender, SenderConfig};
use pgm_core::net::{Encapsulation, TransportConfig, iface};
use pgm_core::proto::receiver::{self, Event};
use pgm_core::proto::source::SourceConfig;
use pgm_core::wire::Gsi;

#[derive(Parser)]
#[command(
    name = "pgm",
    version,
    about = "Send and receive PGM (RFC 3208) sessions"
)]
struct Cli {
    /// A TOML file whose `[host]` section gives defaults for the options below (see
    /// `deploy/examples/host.toml`); options given on the command line win.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a file, standard input, or generated test messages.
    Send(SendArgs),
    /// Receive one session and write its data to standard output or a file.
    Recv(RecvArgs),
}

#[derive(Args, Clone)]
struct NetArgs {
    /// "INTERFACE;GROUP": the interface by name or address, then the multicast group
    /// (default: `host.network` of --config).
    #[arg(long, short = 'n')]
    network: Option<String>,
    /// The data-destination port (the session's well-known port) [default: `host.port` of
    /// --config, else 7500].
    #[arg(long)]
    port: Option<u16>,
    /// Use PGM/IP (raw IP protocol 113, needs CAP_NET_RAW) instead of PGM/UDP (default:
    /// `host.encapsulation` of --config, else PGM/UDP).
    #[arg(long)]
    ip: bool,
    /// PGM/UDP port of unicast packets (NAKs, SPMRs) [default: 3055].
    #[arg(long)]
    unicast_port: Option<u16>,
    /// PGM/UDP port of multicast packets [default: 3056].
    #[arg(long)]
    multicast_port: Option<u16>,
    /// Multicast TTL [default: 16].
    #[arg(long)]
    ttl: Option<u8>,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Send this file (as messages of --size bytes).
    #[arg(long, conflicts_with = "count")]
    file: Option<PathBuf>,
    /// Send this many generated test messages instead of data (the message pattern of
    /// `netns-tests/peers/openpgm/PATTERN.md`, shared with the OpenPGM test peer).
    #[arg(long)]
    count: Option<u64>,
    /// Message size in bytes: file chunks (default 1024), or every generated message (default:
    /// mixed sizes from 1 to --max-size).
    #[arg(long)]
    size: Option<usize>,
    #[command(flatten)]
    pattern: PatternArgs,
    /// Rate limit in bytes per second (TXW_MAX_RTE); 0 for none [default: 0].
    #[arg(long)]
    rate: Option<u64>,
    /// Transmit window in sequence numbers (TXW_SQNS) [default: 32768].
    #[arg(long)]
    txw_sqns: Option<u32>,
    /// Seconds to keep answering NAKs after the last message.
    #[arg(long, default_value_t = 2.0)]
    linger: f64,
    /// Data-source port; random if not given.
    #[arg(long)]
    sport: Option<u16>,
    /// Let receivers that join late recover the whole transmit window (OPT_JOIN).
    #[arg(long)]
    late_join: bool,
    /// Largest PGM packet in bytes, IP and UDP headers excluded. Default: what the
    /// interface's MTU (up to 9000) leaves after the IPv4 header and the UDP header (PGM/UDP)
    /// or the Router Alert option (PGM/IP), so that a packet fills a frame.
    #[arg(long)]
    max_tpdu: Option<usize>,
    #[command(flatten)]
    pgmcc: PgmccArgs,
    /// PGMCC: prefer this receiver as acker while it sends feedback (for receivers that
    /// never volunteer, such as OpenPGM's) [default: `host.pgmcc_acker` of --config, else
    /// elected].
    #[arg(long)]
    acker: Option<Ipv4Addr>,
}

#[derive(Args, Clone, Copy)]
struct PgmccArgs {
    /// PGMCC congestion control (draft-ietf-rmt-bb-pgmcc-03), "on" or "off" [default:
    /// `host.pgmcc` of --config, else on]. A sender clocks its data by the acker's ACKs; a
    /// receiver reports loss and ACKs when named acker.
    #[arg(long, value_parser = parse_on_off)]
    pgmcc: Option<bool>,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

#[derive(Args)]
struct RecvArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Write the data here instead of standard output.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Check every message against the generated test pattern (see `pgm send --count`),
    /// print a RESULT line, and fail on any mismatch.
    #[arg(long)]
    verify: bool,
    /// With --verify: the fixed message size the sender used (default: mixed sizes).
    #[arg(long)]
    size: Option<usize>,
    #[command(flatten)]
    pattern: PatternArgs,
    /// Stop after this many seconds without any event.
    #[arg(long, default_value_t = 30.0)]
    idle_timeout: f64,
    /// Receive window in sequence numbers [default: 32768].
    #[arg(long)]
    rxw_sqns: Option<u32>,
    /// Receive only this session (TSI as printed, e.g. 1.2.3.4.5.6.4000). Without it, and
    /// without --source, the first session heard on the group and port is received; other
    /// sessions' packets are dropped and counted.
    #[arg(long)]
    tsi: Option<pgm_core::wire::Tsi>,
    /// Receive only the first session whose source has this address.
    #[arg(long)]
    source: Option<IpAddr>,
    #[command(flatten)]
    pgmcc: PgmccArgs,
}

#[derive(Args, Clone, Copy)]
struct PatternArgs {
    /// Seed of the generated test messages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest generated message when sizes are mixed.
    #[arg(long, default_value_t = 8192)]
    max_size: u64,
}

/// The `[host]` section of `--config`, or the defaults without one. Every problem of the
/// file is reported, each with its file, line, column and key.
fn host_settings(config: Option<&Path>) -> Result<HostSection> {
    let Some(path) = config else {
        return Ok(HostSection::default());
    };
    let config = Config::from_file(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    Ok(config.host.unwrap_or_default())
}

fn parse_network(
    net: &NetArgs,
    host: &HostSection,
) -> Result<(iface::Interface, Ipv4Addr, TransportConfig)> {
    let (interface, group) = match (&net.network, &host.network) {
        (Some(spec), _) => {
            let (ifspec, group) = spec
                .split_once(';')
                .context("--network must be \"INTERFACE;GROUP\"")?;
            let group: Ipv4Addr = group
                .trim()
                .parse()
                .with_context(|| format!("group {group:?}"))?;
            (ifspec.to_string(), group)
        }
        (None, Some(n)) => (n.interface.clone(), n.group),
        (None, None) => {
            bail!("no network: give --network \"INTERFACE;GROUP\" or host.network in --config")
        }
    };
    let ifspec = interface.as_str();
    let interface = iface::resolve(ifspec).with_context(|| format!("interface {ifspec:?}"))?;
    if !group.is_multicast() {
        bail!("{group} is not a multicast group");
    }
    let encap = if net.ip || host.encapsulation == HostEncapsulation::Ip {
        Encapsulation::Ip
    } else {
        Encapsulation::Udp {
            unicast_port: net.unicast_port.unwrap_or(host.udp_unicast_port),
            multicast_port: net.multicast_port.unwrap_or(host.udp_multicast_port),
        }
    };
    let mut t = TransportConfig::new(encap, group, interface.addr);
    t.ttl = net.ttl.unwrap_or(host.ttl);
    Ok((interface, group, t))
}

/// The data-destination port: the command line's, the configuration's, or 7500.
fn port(net: &NetArgs, host: &HostSection) -> u16 {
    net.port.or(host.port).unwrap_or(7500)
}

/// A GSI from the host's interface address and the process id: unique per host and run.
fn gsi(addr: Ipv4Addr) -> Gsi {
    let a = addr.octets();
    let pid = std::process::id().to_be_bytes();
    Gsi([a[2], a[3], pid[0] ^ a[0], pid[1] ^ a[1], pid[2], pid[3]])
}

/// Generated test message `i`: pattern version 1 of `netns-tests/peers/openpgm/PATTERN.md`,
/// the one the OpenPGM test peer sends and checks. `fixed` = 0 means mixed sizes.
fn test_message(p: PatternArgs, fixed: u64, i: u64) -> Vec<u8> {
    let mut state = p.seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let r0 = next();
    let size = if fixed > 0 {
        fixed
    } else {
        1 + r0 % p.max_size.max(1)
    } as usize;
    let mut m = Vec::with_capacity(size + 8);
    m.extend_from_slice(&i.to_be_bytes());
    while m.len() < size {
        m.extend_from_slice(&next().to_be_bytes());
    }
    m.truncate(size);
    m
}

async fn send(args: SendArgs, host: HostSection) -> Result<()> {
    let (interface, group, transport) = parse_network(&args.net, &host)?;
    // One session per process: a port from the process id is unique within this source.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# This port number
    //# MUST be unique within the source.
    let sport = args
        .sport
        .unwrap_or_else(|| (std::process::id() as u16) | 0x8000);
    let mut engine = SourceConfig::new(
        gsi(interface.addr),
        sport,
        port(&args.net, &host),
        IpAddr::V4(group),
        IpAddr::V4(interface.addr),
    );
    engine.txw_max_rte = args.rate.unwrap_or(host.rate);
    engine.txw_sqns = args.txw_sqns.unwrap_or(host.txw_sqns);
    engine.txw_secs = host.txw_secs;
    engine.late_join = args.late_join;
    engine.pgmcc.enabled = args.pgmcc.pgmcc.unwrap_or(host.pgmcc);
    engine.pgmcc.acker = args.acker.or(host.pgmcc_acker).map(IpAddr::V4);
    engine.max_tpdu = match args.max_tpdu {
        Some(n) => n,
        None => {
            let mtu = if interface.addr.is_unspecified() {
                1500
            } else {
                iface::mtu(&interface.name)
                    .with_context(|| format!("reading the MTU of {}", interface.name))?
            };
            // IPv4 header, then UDP (PGM/UDP) or the Router Alert option (PGM/IP).
            let below = 20 + if args.net.ip { 4 } else { 8 };
            (mtu.min(9000) as usize).saturating_sub(below)
        }
    };
    if engine.max_tpdu < 128 {
        bail!("--max-tpdu {} is too small (at least 128)", engine.max_tpdu);
    }
    let engine_pgmcc = engine.pgmcc.enabled;
    let mut cfg = SenderConfig::new(engine, transport);
    cfg.linger = Duration::from_secs_f64(args.linger.max(0.0));
    let sender = Sender::bind(cfg).context("opening the sender")?;
    eprintln!("pgm: sending as TSI {} to {group}", sender.tsi());
    let mut messages = 0u64;
    let mut bytes = 0u64;
    if let Some(n) = args.count {
        let fixed = args.size.unwrap_or(0) as u64;
        for i in 0..n {
            let m = test_message(args.pattern, fixed, i);
            sender.send(&m).await?;
            messages += 1;
            bytes += m.len() as u64;
        }
    } else {
        let (mut input, total): (Box<dyn Read>, Option<u64>) = match &args.file {
            Some(p) => {
                let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
                let len = f.metadata().map(|m| m.len()).ok();
                (Box::new(f), len)
            }
            None => (Box::new(std::io::stdin()), None),
        };
        let bar = match total {
            Some(t) if std::io::stderr().is_terminal() => indicatif::ProgressBar::new(t),
            _ => indicatif::ProgressBar::hidden(),
        };
        let mut buf = vec![0u8; args.size.unwrap_or(1024).max(1)];
        loop {
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            sender.send(&buf[..n]).await?;
            messages += 1;
            bytes += n as u64;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
    }
    sender.flush().await?;
    let stats = sender.close().await?;
    let e = &stats.engine;
    eprintln!(
        "pgm: sent {messages} messages, {bytes} bytes; ODATA {}, RDATA {}, NAKs received {}, NCFs {}, SPMs {}",
        e.odata_sent, e.rdata_sent, e.naks_received, e.ncf_sent, e.spm_sent
    );
    if e.malformed.total() > 0 {
        let reasons: Vec<String> = e
            .malformed
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        eprintln!("pgm: dropped malformed packets: {}", reasons.join(" "));
    }
    // What receivers and strangers asked of the source, and what it did not do, by reason.
    let refused = [
        ("nak_sqns_outside_window", e.nak_sqns_outside_window),
        ("nak_sqns_merged", e.nak_sqns_merged),
        ("parity_naks_ignored", e.parity_naks_ignored),
        ("ncfs_held_off", e.ncfs_held_off),
        ("ncfs_dropped", e.ncfs_dropped),
        ("nnaks_received", e.nnaks_received),
        ("spmrs_received", e.spmrs_received),
        ("ignored", e.ignored),
    ];
    print_counters("request counters", &refused);
    let cc = &e.pgmcc;
    if engine_pgmcc {
        eprintln!(
            "pgm: PGMCC: acks {} (others {}, invalid {}), reports {}, elections {}, halvings {}, probes {}, timeouts {}, ackers dropped {}",
            cc.acks,
            cc.acks_other,
            cc.acks_invalid,
            cc.reports,
            cc.elections,
            cc.halvings,
            cc.probes,
            cc.timeouts,
            cc.ackers_dropped
        );
    }
    Ok(())
}

/// Prints `pgm: LABEL: key=n ...` for the counters that are not zero, if any.
fn print_counters(label: &str, counters: &[(&str, u64)]) {
    let list: Vec<String> = counters
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if !list.is_empty() {
        eprintln!("pgm: {label}: {}", list.join(" "));
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

async fn recv(args: RecvArgs, host: HostSection) -> Result<()> {
    let (interface, group, mut transport) = parse_network(&args.net, &host)?;
    transport.listen_unicast = false;
    let mut engine = receiver::ReceiverConfig::new(port(&args.net, &host), IpAddr::V4(group));
    engine.rxw_sqns = args.rxw_sqns.unwrap_or(host.rxw_sqns);
    engine.max_buffer_bytes = usize::try_from(host.max_buffer_bytes).unwrap_or(usize::MAX);
    engine.nak_bo_ivl = host.nak_bo_ivl;
    engine.nak_rpt_ivl = host.nak_rpt_ivl;
    engine.nak_rdata_ivl = host.nak_rdata_ivl;
    engine.nak_ncf_retries = host.nak_ncf_retries;
    engine.nak_data_retries = host.nak_data_retries;
    engine.rng_seed = u64::from(std::process::id());
    engine.pgmcc = args.pgmcc.pgmcc.unwrap_or(host.pgmcc);
    // The acker is named by its address: the interface's, which its ACKs leave from.
    engine.local_addr = Some(IpAddr::V4(interface.addr)).filter(|a| !a.is_unspecified());
    // One session: the output is one stream, and only its own source can end it.
    engine.sessions = receiver::SessionFilter::One {
        tsi: args.tsi,
        source: args.source,
    };
    let mut rx =
        Receiver::bind(ReceiverConfig::new(engine, transport)).context("opening the receiver")?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (mut messages, mut bytes, mut losses, mut lost_sqns) = (0u64, 0u64, 0u64, 0u64);
    let mut bad = 0u64;
    let mut next_index = 0u64;
    let (mut unreported, mut loss_since_data) = (0u64, false);
    let fixed = args.size.unwrap_or(0) as u64;
    let idle = Duration::from_secs_f64(args.idle_timeout.max(0.001));
    let mut reason = "idle timeout";
    while let Ok(Some(ev)) = tokio::time::timeout(idle, rx.next_event()).await {
        match ev {
            Event::SessionStart { tsi } => eprintln!("pgm: session {tsi} started"),
            Event::Data { data, .. } => {
                if args.verify {
                    // After an unrecoverable loss, resynchronise on the index in the first
                    // 8 bytes, as the pattern's receivers do (PATTERN.md).
                    if data.len() >= 8 {
                        let mut idx = [0u8; 8];
                        idx.copy_from_slice(&data[..8]);
                        let index = u64::from_be_bytes(idx);
                        if index != next_index && messages > 0 && !loss_since_data {
                            // Messages skipped (or repeated) with no loss event to say so;
                            // where the first one starts is where this receiver joined.
                            eprintln!(
                                "pgm: verify: message #{index} follows #{} with no loss reported",
                                next_index.wrapping_sub(1) as i64
                            );
                            unreported += 1;
                        }
                        next_index = index;
                    }
                    loss_since_data = false;
                    if data != test_message(args.pattern, fixed, next_index) {
                        bad += 1;
                    }
                    next_index += 1;
                } else {
                    out.write_all(&data)?;
                }
                messages += 1;
                bytes += data.len() as u64;
                if args.count.is_some_and(|c| messages >= c) {
                    reason = "count reached";
                    break;
                }
            }
            Event::Loss { tsi, first, count } => {
                eprintln!(
                    "pgm: session {tsi}: unrecoverable loss of {count} packets from #{first}"
                );
                losses += 1;
                lost_sqns += u64::from(count);
                loss_since_data = true;
            }
            Event::SessionEnd { tsi, reason: r } => {
                eprintln!("pgm: session {tsi} ended ({r:?})");
                reason = "session ended";
                break;
            }
            _ => {}
        }
    }
    out.flush()?;
    let stats = rx.stats().await?;
    let e = &stats.engine;
    eprintln!(
        "pgm: {reason}: received {messages} messages, {bytes} bytes; losses {losses} ({lost_sqns} packets); repairs requested {} (in {} NAKs), RDATA received {}",
        e.nak_sqns_sent, e.naks_sent, e.rdata_received
    );
    if e.malformed.total() > 0 || e.bad_fragments > 0 {
        let reasons: Vec<String> = e
            .malformed
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        eprintln!(
            "pgm: dropped malformed packets: {}; bad fragments {}",
            reasons.join(" "),
            e.bad_fragments
        );
    }
    let refused = [
        ("other_sessions", e.other_sessions),
        ("wrong_source", e.wrong_source),
        ("no_session", e.no_session),
        ("beyond_window", e.beyond_window),
        ("jumps_held", e.jumps_held),
        ("buffer_full", e.buffer_full),
        ("sources_refused", e.sources_refused),
        ("sources_evicted", e.sources_evicted),
    ];
    print_counters("packets not taken", &refused);
    print_counters("PGMCC", &[("acks_sent", e.acks_sent)]);
    if e.naks_limited > 0 || e.spmrs_limited > 0 {
        eprintln!(
            "pgm: requests held back: naks_limited={} spmrs_limited={}",
            e.naks_limited, e.spmrs_limited
        );
    }
    rx.stop().await?;
    if args.verify {
        let ok = bad == 0
            && unreported == 0
            && lost_sqns == 0
            && args.count.is_none_or(|c| messages == c);
        println!(
            "RESULT received={messages} bytes={bytes} bad={bad} lost_events={losses} unreported_gaps={unreported} status={}",
            if ok { "ok" } else { "fail" }
        );
        if !ok {
            bail!(
                "verification failed: {bad} bad messages, {unreported} gaps without a loss event, {lost_sqns} packets lost"
            );
        }
    }
    if lost_sqns > 0 {
        bail!("{lost_sqns} packets were lost unrecoverably");
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let host = host_settings(cli.config.as_deref())?;
    // One thread: the application task and the driver hand work to each other without
    // crossing threads (no futex wakeups per batch), and the other cores stay free for the
    // kernel's packet processing and the peer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Send(a) => send(a, host).await,
            Command::Recv(a) => recv(a, host).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Vectors printed by the OpenPGM peer (`pgmpeer pattern --count 2 --seed 1`), so that
    /// both implementations of pattern version 1 agree.
    #[test]
    fn pattern_matches_the_openpgm_peer() {
        let p = PatternArgs {
            seed: 1,
            max_size: 8192,
        };
        let m0 = test_message(p, 0, 0);
        assert_eq!(m0.len(), 7362);
        assert_eq!(
            hex(&m0[..32]),
            "0000000000000000beeb8da1658eec67f893a2eefb32555e71c18690ee42c90b"
        );
        let m1 = test_message(p, 0, 1);
        assert_eq!(m1.len(), 3952);
        assert_eq!(
            hex(&m1[..24]),
            "00000000000000018596845e7ea88ca14c71f30e500f0b72"
        );
        // A fixed size keeps the same bytes, cut.
        assert_eq!(test_message(p, 3, 1), m1[..3]);
    }
}
