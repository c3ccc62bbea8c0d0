//! A `host::Sender` and a `host::Receiver` on real kernel sockets, over PGM/UDP and PGM/IP:
//! 2,000 messages of 1 B to 8 KiB (the large ones fragmented) must all arrive, in order and
//! intact, and the session must end with OPT_FIN.
//!
//! Each test runs in a thread of its own that `unshare(CLONE_NEWNET)`s into a fresh network
//! namespace with only `lo` (up, multicast on, `224.0.0.0/4` routed to it), so no packet
//! leaves it and nothing is left behind: the namespace goes away with the thread and its
//! sockets, whatever happens. Needs root (printed as SKIPPED otherwise).
//!
//! `PGM_TEST_RATE=<bytes/s>` sets the sender's TXW_MAX_RTE (default 40 MB/s; 0 = unlimited).

#![cfg(feature = "host")]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use pgm_core::host::{Event, Receiver, ReceiverConfig, Sender, SenderConfig};
use pgm_core::net::{Encapsulation, TransportConfig};
use pgm_core::proto::receiver::{self, EndReason};
use pgm_core::proto::source::SourceConfig;
use pgm_core::wire::{Gsi, Tsi};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
const MESSAGES: usize = 2000;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs `f` on a new thread inside a new network namespace with a multicast-capable `lo`,
/// after running each of `nft` (nftables commands, e.g. to drop some packets) there.
fn in_fresh_netns<R: Send + 'static>(
    nft: &'static [&'static str],
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespace membership.
        #[allow(unsafe_code)]
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        // Children forked from this thread inherit its namespace.
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "lo", "multicast", "on"],
            &["route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        }
        for cmd in nft {
            let st = Command::new("nft").arg(cmd).status().expect("run nft");
            assert!(st.success(), "nft {cmd:?} failed");
        }
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Deterministic message `i`: mixed sizes 1 B..8 KiB, about a fifth of them fragmented.
fn message(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = match next() % 10 {
        0 => 1,
        1 => 4096 + (next() % 4097) as usize,
        2 => 1400 + (next() % 2700) as usize,
        _ => 1 + (next() % 1300) as usize,
    };
    (0..len).map(|_| next() as u8).collect()
}

fn transfer(encapsulation: Encapsulation, lossy: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let iface = pgm_core::net::iface::resolve("lo").expect("lo").addr;
        let mut transport = TransportConfig::new(encapsulation, GROUP, iface);
        // The sender owns the unicast port of this host.
        transport.listen_unicast = false;
        let engine = receiver::ReceiverConfig::new(7500, GROUP.into());
        let mut rx =
            Receiver::bind(ReceiverConfig::new(engine, transport.clone())).expect("bind receiver");

        let gsi = Gsi([1, 2, 3, 4, 5, 6]);
        let mut engine = SourceConfig::new(gsi, 4000, 7500, GROUP.into(), iface.into());
        engine.txw_max_rte = std::env::var("PGM_TEST_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40_000_000);
        let mut cfg = SenderConfig::new(engine, transport);
        cfg.linger = Duration::from_millis(500);
        let tx = Sender::bind(cfg).expect("bind sender");
        let tsi = tx.tsi();

        let sending = tokio::spawn(async move {
            for i in 0..MESSAGES {
                tx.send(&message(i)).await.expect("send");
            }
            tx.flush().await.expect("flush");
            tx.close().await.expect("close")
        });

        let received = tokio::time::timeout(Duration::from_secs(60), receive(&mut rx, tsi))
            .await
            .expect("the transfer took over 60 s");
        let stats = sending.await.expect("sender task");
        let rstats = rx.stats().await.expect("receiver stats");
        eprintln!(
            "{encapsulation:?}: sender {:?}, receiver {:?}",
            stats, rstats
        );
        assert_eq!(received, MESSAGES);
        assert_eq!(stats.engine.messages_sent, MESSAGES as u64);
        if lossy {
            assert!(rstats.engine.naks_sent > 0, "no NAK sent despite the loss");
            assert!(stats.engine.naks_received > 0, "no NAK reached the sender");
            assert!(stats.engine.rdata_sent > 0, "no repair sent");
            assert!(rstats.engine.rdata_received > 0, "no repair received");
        }
        rx.stop().await.expect("receiver driver");
    });
}

/// Receives until the session ends, checking every message; returns how many arrived.
async fn receive(rx: &mut Receiver, tsi: Tsi) -> usize {
    let mut next = 0;
    let mut started = false;
    while let Some(ev) = rx.next_event().await {
        match ev {
            Event::SessionStart { tsi: t } => {
                assert_eq!(t, tsi);
                started = true;
            }
            Event::Data { tsi: t, data } => {
                assert_eq!(t, tsi);
                assert!(next < MESSAGES, "more messages than sent");
                assert!(data == message(next), "message {next} differs");
                next += 1;
            }
            Event::Loss { first, count, .. } => {
                panic!("unrecoverable loss of {count} from {first:?} after {next} messages")
            }
            Event::SessionEnd { tsi: t, reason } => {
                assert_eq!(t, tsi);
                assert_eq!(reason, EndReason::Fin);
                break;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(started, "no SessionStart");
    next
}

/// Drops 5% of the ODATA arriving at the host (the type byte, §8, follows the UDP header or
/// sits at offset 4 of the IP payload), on the input path, so the sender sees no error.
const DROP_ODATA: &[&str] = &[
    "add table inet loss",
    "add chain inet loss in { type filter hook input priority 0 ; }",
    "add rule inet loss in udp dport 3056 @th,96,8 0x04 numgen random mod 100 < 5 drop",
    "add rule inet loss in ip protocol 113 @th,32,8 0x04 numgen random mod 100 < 5 drop",
];

fn has_nft() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(name: &str, encapsulation: Encapsulation, lossy: bool) {
    if !is_root() {
        println!("SKIPPED {name}: needs root (network namespace, CAP_NET_RAW)");
        return;
    }
    if lossy && !has_nft() {
        println!("SKIPPED {name}: needs nftables");
        return;
    }
    let nft = if lossy { DROP_ODATA } else { &[] };
    in_fresh_netns(nft, move || transfer(encapsulation, lossy));
}

#[test]
fn udp_transfer_in_netns() {
    run("udp_transfer_in_netns", Encapsulation::UDP, false);
}

#[test]
fn ip_transfer_in_netns() {
    run("ip_transfer_in_netns", Encapsulation::Ip, false);
}

#[test]
fn udp_transfer_with_odata_loss_is_repaired() {
    run(
        "udp_transfer_with_odata_loss_is_repaired",
        Encapsulation::UDP,
        true,
    );
}

#[test]
fn ip_transfer_with_odata_loss_is_repaired() {
    run(
        "ip_transfer_with_odata_loss_is_repaired",
        Encapsulation::Ip,
        true,
    );
}

/// What leaves a transport on the wire: Router Alert exactly on the transmits that ask for
/// it (PGM/IP), the default multicast TTL, and a transmit's own TTL when it has one.
#[test]
fn transmit_options_on_the_wire() {
    if !is_root() {
        println!("SKIPPED transmit_options_on_the_wire: needs root");
        return;
    }
    in_fresh_netns(&[], || {
        use std::io::Read;

        use pgm_core::net::Transport;
        use pgm_core::proto::{Destination, Transmit};
        use pgm_core::wire::PacketType;
        use socket2::{Domain, Protocol, Socket, Type};

        let lo = Ipv4Addr::LOCALHOST;
        let sniff = |proto: i32| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(proto))).unwrap();
            s.join_multicast_v4(&GROUP, &lo).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        };
        let transmit = |router_alert, ttl| Transmit {
            destination: Destination::Group(GROUP.into()),
            packet_type: PacketType::Spm,
            router_alert,
            ttl,
            len: 16,
        };
        // (router alert, ttl of the transmit, expected IHL, expected TTL)
        let cases = [
            (true, None, 6, 16),
            (false, None, 5, 16),
            (true, Some(1), 6, 1),
            (false, Some(1), 5, 1),
            (false, None, 5, 16),
        ];
        for encapsulation in [Encapsulation::Ip, Encapsulation::UDP] {
            let (proto, ra_ihl) = match encapsulation {
                Encapsulation::Ip => (113, 6),
                _ => (libc::IPPROTO_UDP, 5), // no Router Alert over UDP
            };
            let mut sniffer = sniff(proto);
            let mut cfg = TransportConfig::new(encapsulation, GROUP, lo);
            cfg.listen_multicast = false;
            let t = cfg.open().expect("open transport");
            let payload = [0x5a; 16];
            for (ra, ttl, ihl, want_ttl) in cases {
                let ihl = if ihl == 6 { ra_ihl } else { ihl };
                t.send(&transmit(ra, ttl), &payload).expect("send");
                let mut buf = [0u8; 2048];
                let n = loop {
                    let n = sniffer.read(&mut buf).expect("sniffed packet");
                    // Skip anything not addressed to the group (none expected).
                    if buf[16..20] == GROUP.octets() {
                        break n;
                    }
                };
                assert_eq!(usize::from(buf[0] & 0x0f), ihl, "{encapsulation:?} ra={ra}");
                if ihl == 6 {
                    assert_eq!(buf[20..24], [0x94, 0x04, 0x00, 0x00]);
                }
                assert_eq!(buf[8], want_ttl, "{encapsulation:?} ttl={ttl:?}");
                assert_eq!(&buf[n - 16..n], &payload);
            }
        }
    });
}
