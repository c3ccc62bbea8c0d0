//! Interoperability with OpenPGM 5.3 on the wire, in both directions, over PGM/UDP and PGM/IP,
//! with no loss and with 5% random loss (nftables) on the receiver's inbound multicast:
//! 20,000 messages of mixed sizes (1 byte to 8 KiB, so fragments cross), all delivered in
//! order and verified byte for byte against the shared message pattern
//! (`netns-tests/peers/openpgm/PATTERN.md`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_netns_tests::bins::{openpgm_peer, workspace_bin};
use pgm_netns_tests::lab::{Lab, LossSpec, Selector, skip_without_root};

const COUNT: &str = "20000";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Ours,
    OpenPgm,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encap {
    Udp,
    Ip,
}

/// The cases run one at a time: each saturates a core at 10 MB/s, and OpenPGM's source, which
/// answers NAKs only from its application's receive thread, misses repairs when 2 cores are
/// shared by eight transfers at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(name: &str, sender: Peer, receiver: Peer, encap: Encap, loss: u8) -> Result<()> {
    if skip_without_root(name) {
        return Ok(());
    }
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pgm = workspace_bin("pgm")?;
    let peer = openpgm_peer()?;
    let lab = Lab::new(name)?;
    let b = lab.block();
    let (snd, rcv) = (lab.add_ns("snd")?, lab.add_ns("rcv")?);
    lab.add_veth(&snd, "eth0", &rcv, "eth0")?;
    let (snd_addr, rcv_addr) = (b.addr(1, 1), b.addr(1, 2));
    lab.add_addr(&snd, "eth0", snd_addr, 24)?;
    lab.add_addr(&rcv, "eth0", rcv_addr, 24)?;
    for ns in [&snd, &rcv] {
        lab.link_up(ns, "lo")?;
        lab.route_dev(ns, "224.0.0.0/4", "eth0")?;
        // A veth passes UDP GSO trains through whole, so the loss rule would drop a train of
        // up to 64 datagrams as one packet: with one segment per packet at most, the kernel
        // cuts trains before the veth, as a NIC would on the wire, and the loss stays 5% of
        // PGM packets for every sender.
        lab.ip(ns, &["link", "set", "dev", "eth0", "gso_max_segs", "1"])?;
    }
    let group = b.group(1);
    let rule = if loss > 0 {
        let sel = match encap {
            Encap::Udp => Selector::Udp(3056),
            Encap::Ip => Selector::Nft("ip protocol 113 ip daddr 224.0.0.0/4".into()),
        };
        Some(lab.add_loss(&rcv, &LossSpec::ingress("eth0", loss).only(sel))?)
    } else {
        None
    };
    // OpenPGM completes under loss only when capped well below line rate (ARCHITECTURE.md),
    // and its per-millisecond rate bucket stalls on 8 KiB messages below about 10 MB/s; ours
    // is capped alike so both directions are comparable. Throughput is measured by the
    // benchmark harness, not here.
    let rate = "10000000";
    let pgm_net = |addr: std::net::Ipv4Addr| format!("{addr};{group}");
    let mut rx_args: Vec<String> = match receiver {
        Peer::Ours => vec![
            pgm.display().to_string(),
            "recv".into(),
            "--network".into(),
            pgm_net(rcv_addr),
            "--count".into(),
            COUNT.into(),
            "--verify".into(),
            "--idle-timeout".into(),
            "30".into(),
        ],
        Peer::OpenPgm => vec![
            peer.display().to_string(),
            "recv".into(),
            "--network".into(),
            pgm_net(rcv_addr),
            "--count".into(),
            COUNT.into(),
            "--timeout".into(),
            "150".into(),
        ],
    };
    let mut tx_args: Vec<String> = match sender {
        Peer::Ours => vec![
            pgm.display().to_string(),
            "send".into(),
            "--network".into(),
            pgm_net(snd_addr),
            "--count".into(),
            COUNT.into(),
            "--rate".into(),
            rate.into(),
            "--linger".into(),
            "10".into(),
        ],
        Peer::OpenPgm => vec![
            peer.display().to_string(),
            "send".into(),
            "--network".into(),
            pgm_net(snd_addr),
            "--count".into(),
            COUNT.into(),
            "--rate".into(),
            rate.into(),
            "--linger".into(),
            "10".into(),
            "--txw-sqns".into(),
            "32768".into(),
        ],
    };
    if sender == Peer::OpenPgm && encap == Encap::Ip {
        // Over PGM/IP an OpenPGM send-only socket (the peer's default) takes no NAKs, so
        // nothing would be repaired: give it a socket that also receives. (Over PGM/UDP the
        // send-only socket does take them, and a receiving one loses repairs.)
        tx_args.push("--bus".into());
    }
    // OpenPGM receives PGM/UDP only on its multicast encapsulation port, so an OpenPGM
    // source never sees NAKs sent to a separate unicast port: both peers use 3056 for both.
    for (args, who) in [(&mut rx_args, receiver), (&mut tx_args, sender)] {
        match (encap, who) {
            (Encap::Udp, Peer::OpenPgm) => {
                args.extend(
                    ["--udp", "--ucast-port", "3056", "--mcast-port", "3056"].map(String::from),
                );
            }
            (Encap::Udp, Peer::Ours) => {
                args.extend(
                    ["--unicast-port", "3056", "--multicast-port", "3056"].map(String::from),
                );
            }
            (Encap::Ip, Peer::Ours) => args.push("--ip".into()),
            (Encap::Ip, Peer::OpenPgm) => {}
        }
    }
    let rx = lab.spawn(&rcv, &rx_args)?;
    std::thread::sleep(Duration::from_millis(500));
    let tx = lab.spawn(&snd, &tx_args)?;
    let status = rx
        .wait_timeout(Duration::from_secs(180))?
        .context("receiver did not finish within 180 s")?;
    let out = rx.stdout()?;
    let err = rx.stderr()?;
    let _ = tx.stop(Duration::from_secs(2));
    let drops = match &rule {
        Some(r) => r.counters()?.dropped,
        None => 0,
    };
    let result = out
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or("no RESULT line");
    eprintln!("{name}: {result} (nftables dropped {drops})");
    if !status.success()
        || !result.contains("status=ok")
        || !result.contains(&format!("received={COUNT}"))
    {
        bail!(
            "{name}: receiver failed ({status}): {result}\nreceiver stderr:\n{err}\nsender stderr:\n{}",
            tx.stderr().unwrap_or_default()
        );
    }
    if loss > 0 && drops == 0 {
        bail!("{name}: the loss rule dropped nothing, so repair was not exercised");
    }
    Ok(())
}

/// Runs a case; an OpenPGM receiver under loss gets up to three attempts, because OpenPGM
/// 5.3's receiver tolerates a loaded machine badly (its timers run only inside `pgm_recv*`),
/// and every failed attempt is printed.
///
/// Our source with an OpenPGM receiver at 5% loss used to fail most attempts. Captures
/// (`peers/openpgm/interop-capture.sh` and `pgmtrace.py`) showed two causes, both in our
/// source and both fixed there (`core/tests/source_engine.rs` has a test for each):
/// - packets queued behind TXW_LEAD counted against TXW_SQNS, so with the sender faster than
///   its 10 MB/s cap the window held at times only 6,000 of its 32,768 sequence numbers
///   (0.8 s). A sequence number whose ODATA and first two RDATA were lost (0.05^3 of ~60,000
///   packets: about 7 a run) was still being repaired when the trail passed it, and OpenPGM's
///   receiver gives up what falls behind the trail;
/// - the session opened with one SPM. When it was lost, OpenPGM's receiver, which cannot NAK
///   before it knows the source's path, gave up everything lost before its SPMR was
///   answered (~250 ms), without a NAK. OpenPGM's source opens with three SPMs, ours now too.
fn run_case(name: &str, sender: Peer, receiver: Peer, encap: Encap, loss: u8) -> Result<()> {
    let attempts = if receiver == Peer::OpenPgm && loss > 0 {
        3
    } else {
        1
    };
    let mut last = Ok(());
    for attempt in 1..=attempts {
        last = run(name, sender, receiver, encap, loss);
        match &last {
            Ok(()) => return Ok(()),
            Err(e) if attempt < attempts => {
                eprintln!("{name}: attempt {attempt} of {attempts} failed: {e:#}");
            }
            Err(_) => {}
        }
    }
    last
}

macro_rules! interop {
    ($(#[$attr:meta])* $name:ident, $tx:expr, $rx:expr, $encap:expr, $loss:expr) => {
        #[test]
        $(#[$attr])*
        fn $name() -> Result<()> {
            run_case(stringify!($name), $tx, $rx, $encap, $loss)
        }
    };
}

interop!(
    openpgm_to_ours_udp,
    Peer::OpenPgm,
    Peer::Ours,
    Encap::Udp,
    0
);
interop!(
    openpgm_to_ours_udp_loss5,
    Peer::OpenPgm,
    Peer::Ours,
    Encap::Udp,
    5
);
interop!(openpgm_to_ours_ip, Peer::OpenPgm, Peer::Ours, Encap::Ip, 0);
interop!(
    openpgm_to_ours_ip_loss5,
    Peer::OpenPgm,
    Peer::Ours,
    Encap::Ip,
    5
);
interop!(
    ours_to_openpgm_udp,
    Peer::Ours,
    Peer::OpenPgm,
    Encap::Udp,
    0
);
interop!(
    ours_to_openpgm_udp_loss5,
    Peer::Ours,
    Peer::OpenPgm,
    Encap::Udp,
    5
);
interop!(ours_to_openpgm_ip, Peer::Ours, Peer::OpenPgm, Encap::Ip, 0);
interop!(
    ours_to_openpgm_ip_loss5,
    Peer::Ours,
    Peer::OpenPgm,
    Encap::Ip,
    5
);
