//! PGMCC with OpenPGM 5.3's own PGMCC (`pgmpeer --pgmcc`, PGM_USE_PGMCC) on the wire, over
//! PGM/UDP between two namespaces, messages of 1000 bytes (OpenPGM's PGMCC fragments are
//! laid out otherwise, see `docs/pgmcc.md`):
//!
//! - **our source to an OpenPGM receiver with PGMCC**, named acker with `--acker` (OpenPGM's
//!   receivers never volunteer): it ACKs every ODATA, those ACKs clock our window, and the
//!   transfer completes, with no loss and at 5% loss (where halvings must happen);
//! - **our source to an OpenPGM receiver without PGMCC**, named all the same: it never ACKs,
//!   and our source drops it after three timeouts and goes on: a receiver without PGMCC only
//!   slows the session down;
//! - **an OpenPGM source with PGMCC to our receiver**: our receiver volunteers with an ACK
//!   (OpenPGM's source elects only from ACKs), is named, ACKs, and the transfer completes.
//!   OpenPGM's PGMCC source is slow (it waits 3 s after the election, and holds packets back
//!   while advertising them), so this case is short, and without loss: under loss it sends
//!   RDATA with bad checksums and ends with a FIN past packets it never sent (docs/pgmcc.md).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_netns_tests::bins::{openpgm_peer, workspace_bin};
use pgm_netns_tests::lab::{Lab, LossSpec, Selector, skip_without_root};

/// One at a time, as the other interop cases: OpenPGM's timers run only inside its
/// application's calls, and it does badly on a shared, loaded machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const UDP_OURS: [&str; 4] = ["--unicast-port", "3056", "--multicast-port", "3056"];
const UDP_OPENPGM: [&str; 5] = ["--udp", "--ucast-port", "3056", "--mcast-port", "3056"];

/// The arguments of one end over PGM/UDP on 3056/3056: our `pgm` or the OpenPGM peer
/// (`openpgm`), `send` or `recv` (the sender on `{snd}`, the receiver on `{rcv}`), `count`
/// messages of `size` bytes, then `extra`.
fn end(
    bin: &str,
    openpgm: bool,
    role: &str,
    count: &str,
    size: &str,
    extra: &[&str],
) -> Vec<String> {
    let host = if role == "send" { "{snd}" } else { "{rcv}" };
    let network = format!("{host};{{group}}");
    let size_flag = if openpgm { "--sizes" } else { "--size" };
    let udp: &[&str] = if openpgm { &UDP_OPENPGM } else { &UDP_OURS };
    [
        bin,
        role,
        "--network",
        &network,
        "--count",
        count,
        size_flag,
        size,
    ]
    .iter()
    .chain(extra)
    .chain(udp)
    .map(|a| (*a).to_owned())
    .collect()
}

struct Outcome {
    /// The receiver's RESULT line (OpenPGM) or its last lines (ours).
    receiver: String,
    /// `pgm send`'s or `pgm recv`'s stderr.
    ours: String,
}

/// Runs `sender` in one namespace and `receiver` in the other (`{snd}`/`{rcv}`/`{group}` in
/// their arguments are replaced), with `loss`% of the receiver's inbound UDP 3056 dropped.
fn run(
    name: &str,
    sender: &[String],
    receiver: &[String],
    loss: u8,
    ours_sends: bool,
) -> Result<Outcome> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lab = Lab::new(name)?;
    let b = lab.block();
    let (snd, rcv) = (lab.add_ns("snd")?, lab.add_ns("rcv")?);
    lab.add_veth(&snd, "eth0", &rcv, "eth0")?;
    let (snd_addr, rcv_addr): (Ipv4Addr, Ipv4Addr) = (b.addr(1, 1), b.addr(1, 2));
    lab.add_addr(&snd, "eth0", snd_addr, 24)?;
    lab.add_addr(&rcv, "eth0", rcv_addr, 24)?;
    for ns in [&snd, &rcv] {
        lab.link_up(ns, "lo")?;
        lab.route_dev(ns, "224.0.0.0/4", "eth0")?;
        lab.ip(ns, &["link", "set", "dev", "eth0", "gso_max_segs", "1"])?;
    }
    let group = b.group(1);
    let rule = if loss > 0 {
        Some(lab.add_loss(
            &rcv,
            &LossSpec::ingress("eth0", loss).only(Selector::Udp(3056)),
        )?)
    } else {
        None
    };
    let fill = |args: &[String]| -> Vec<String> {
        args.iter()
            .map(|a| {
                a.replace("{snd}", &snd_addr.to_string())
                    .replace("{rcv}", &rcv_addr.to_string())
                    .replace("{group}", &group.to_string())
            })
            .collect()
    };
    let rx = lab.spawn(&rcv, &fill(receiver))?;
    std::thread::sleep(Duration::from_millis(500));
    let tx = lab.spawn(&snd, &fill(sender))?;
    let status = rx
        .wait_timeout(Duration::from_secs(90))?
        .context("receiver did not finish within 90 s")?;
    let tx_status = tx.wait_timeout(Duration::from_secs(20))?;
    let _ = tx.stop(Duration::from_secs(2));
    let (rx_out, rx_err) = (rx.stdout()?, rx.stderr()?);
    let tx_err = tx.stderr().unwrap_or_default();
    let drops = match &rule {
        Some(r) => r.counters()?.dropped,
        None => 0,
    };
    eprintln!(
        "{name}: receiver {status}, sender {tx_status:?}, nftables dropped {drops}\n\
         receiver: {}\nsender: {}",
        last_lines(&format!("{rx_out}{rx_err}"), 4),
        last_lines(&tx_err, 4)
    );
    if !status.success() {
        bail!("{name}: receiver failed ({status})\n{rx_out}{rx_err}\nsender:\n{tx_err}");
    }
    if loss > 0 && drops == 0 {
        bail!("{name}: the loss rule dropped nothing");
    }
    let receiver_text = rx_out
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or(&rx_err)
        .to_owned();
    Ok(Outcome {
        receiver: receiver_text,
        ours: if ours_sends { tx_err } else { rx_err },
    })
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A counter of `pgm send`'s PGMCC line (`pgm: PGMCC: acks N (others ..., invalid ...),
/// reports ..., elections ..., halvings ..., probes ..., timeouts ..., ackers dropped ...`).
fn pgmcc(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pgm: PGMCC: "))
        .unwrap_or("");
    let Some(at) = line.find(&format!("{key} ")) else {
        return 0;
    };
    line[at + key.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

fn ours_to_openpgm(name: &str, loss: u8, openpgm_pgmcc: bool) -> Result<Outcome> {
    let pgm = workspace_bin("pgm")?.display().to_string();
    let peer = openpgm_peer()?.display().to_string();
    let sender = end(
        &pgm,
        false,
        "send",
        "3000",
        "1000",
        &["--acker", "{rcv}", "--linger", "3"],
    );
    let mut extra = vec!["--timeout", "80"];
    if openpgm_pgmcc {
        extra.push("--pgmcc");
    }
    let receiver = end(&peer, true, "recv", "3000", "1000", &extra);
    let o = run(name, &sender, &receiver, loss, true)?;
    if !o.receiver.contains("status=ok") || !o.receiver.contains("received=3000") {
        bail!("{name}: OpenPGM receiver: {}", o.receiver);
    }
    Ok(o)
}

#[test]
fn ours_to_openpgm_pgmcc_acker() -> Result<()> {
    let name = "pgmcc_ours_openpgm";
    if skip_without_root(name) {
        return Ok(());
    }
    let o = ours_to_openpgm(name, 0, true)?;
    // Every ODATA named it; it ACKs each (OpenPGM does not coalesce).
    let acks = pgmcc(&o.ours, "acks");
    if acks < 2000 || pgmcc(&o.ours, "timeouts") != 0 || pgmcc(&o.ours, "ackers dropped") != 0 {
        bail!(
            "{name}: OpenPGM's ACKs did not clock the window: {}",
            o.ours
        );
    }
    Ok(())
}

#[test]
fn ours_to_openpgm_pgmcc_acker_loss5() -> Result<()> {
    let name = "pgmcc_ours_openpgm_l5";
    if skip_without_root(name) {
        return Ok(());
    }
    let o = ours_to_openpgm(name, 5, true)?;
    // OpenPGM's bitmaps show the holes: the window is halved.
    if pgmcc(&o.ours, "acks") < 1000 || pgmcc(&o.ours, "halvings") == 0 {
        bail!("{name}: no halving on OpenPGM's loss reports: {}", o.ours);
    }
    Ok(())
}

#[test]
fn ours_to_openpgm_without_pgmcc_drops_the_silent_acker() -> Result<()> {
    let name = "pgmcc_ours_openpgm_plain";
    if skip_without_root(name) {
        return Ok(());
    }
    let o = ours_to_openpgm(name, 0, false)?;
    if pgmcc(&o.ours, "acks") != 0 || pgmcc(&o.ours, "ackers dropped") != 1 {
        bail!(
            "{name}: expected no ACK and the named acker dropped once: {}",
            o.ours
        );
    }
    Ok(())
}

#[test]
fn openpgm_pgmcc_to_ours() -> Result<()> {
    let name = "pgmcc_openpgm_ours";
    if skip_without_root(name) {
        return Ok(());
    }
    let pgm = workspace_bin("pgm")?.display().to_string();
    let peer = openpgm_peer()?.display().to_string();
    let sender = end(
        &peer,
        true,
        "send",
        "300",
        "1000",
        &["--pgmcc", "--linger", "3"],
    );
    let receiver = end(
        &pgm,
        false,
        "recv",
        "300",
        "1000",
        &["--verify", "--idle-timeout", "30"],
    );
    let o = run(name, &sender, &receiver, 0, false)?;
    if !o.receiver.contains("status=ok") {
        bail!("{name}: our receiver: {}", o.receiver);
    }
    // Our receiver volunteered and was named: it sent ACKs.
    let acks: u64 = o
        .ours
        .lines()
        .find_map(|l| l.strip_prefix("pgm: PGMCC: acks_sent="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if acks == 0 {
        bail!(
            "{name}: our receiver sent no ACK to OpenPGM's PGMCC source:\n{}",
            o.ours
        );
    }
    Ok(())
}

#[test]
fn ours_to_ours_pgmcc_loss5() -> Result<()> {
    // Our own ends at 5% loss, uncapped: PGMCC slows the source to what the path repairs,
    // without stalling (repairs gated by tokens once made this run time out 22 times and
    // end in the idle timeout).
    let name = "pgmcc_ours_ours_l5";
    if skip_without_root(name) {
        return Ok(());
    }
    let pgm = workspace_bin("pgm")?.display().to_string();
    let sender = end(&pgm, false, "send", "20000", "1400", &["--linger", "1"]);
    let receiver = end(
        &pgm,
        false,
        "recv",
        "20000",
        "1400",
        &["--verify", "--idle-timeout", "10"],
    );
    let o = run(name, &sender, &receiver, 5, true)?;
    if !o.receiver.contains("status=ok") {
        bail!("{name}: receiver: {}", o.receiver);
    }
    if pgmcc(&o.ours, "halvings") == 0 || pgmcc(&o.ours, "timeouts") > 2 {
        bail!(
            "{name}: expected halvings and (almost) no timeout: {}",
            o.ours
        );
    }
    Ok(())
}
