//! `pgm-routerd` on the reference topology (source - R1 - R2 - {LAN A: rcv1, rcv2; LAN B:
//! rcv3}) with 5% PGM loss on R2's LAN A egress: every receiver delivers everything, the
//! receivers NAK R2, R2 NAKs R1, R2 confirms on LAN A, RDATA for LAN A never leaves on LAN B,
//! and the source sees at most 1.1 NAKed sequence numbers per lost one.
//!
//! Shown from the daemons' `/metrics`, their admin API and packet captures decoded with
//! `pgm_core::wire`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use pgm_core::wire::{DataPacket, NakPacket, OptionValue, Packet, PacketType};
use pgm_netns_tests::lab::{self, Capture, LossSpec, McRoute, Ns, Process, RefTopology, Selector};

const ADMIN: &str = "127.0.0.1:9470";

/// `target/debug/<bin>`, built once per test process if missing or stale.
fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _g = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    let path = target.join("debug").join(bin);
    assert!(path.exists(), "{} missing", path.display());
    path
}

fn routerd(topo: &RefTopology, ns: &Ns, name: &str, toml: &str) -> Process {
    let path = topo.lab.file(&format!("{name}-router"), "toml");
    std::fs::write(&path, toml).expect("write config");
    let bin = binary("pgm-router", "pgm-routerd");
    let check = topo
        .lab
        .exec_unchecked(
            ns,
            &[
                bin.as_os_str(),
                "--check-config".as_ref(),
                "--config".as_ref(),
                path.as_os_str(),
            ],
            Duration::from_secs(10),
        )
        .expect("run --check-config");
    assert!(
        check.status.success(),
        "{name}: --check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = topo.lab.command(
        ns,
        &[bin.as_os_str(), "--config".as_ref(), path.as_os_str()],
    );
    cmd.env("RUST_LOG", "info,pgm_routerd=debug");
    let p = topo
        .lab
        .spawn_command(cmd, &format!("routerd-{name}"))
        .expect("spawn routerd");
    p.wait_for_output("pgm-routerd started", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    p
}

/// A plain HTTP/1.0 request to the admin listener inside `ns`.
fn http(ns: &Ns, method: &str, path: &str) -> String {
    let (method, path) = (method.to_owned(), path.to_owned());
    ns.run(move || {
        let mut s = TcpStream::connect(ADMIN).expect("connect to the admin API");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
            "{out}"
        );
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    })
    .expect("enter namespace")
}

/// Sums the samples of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, lab) = key.split_once('{').unwrap_or((key, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| lab.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

/// (IP source, IP destination, PGM bytes) of every PGM/IP packet of an Ethernet pcap.
fn pcap_pgm(path: &Path) -> Vec<(Ipv4Addr, Ipv4Addr, Vec<u8>)> {
    let data = std::fs::read(path).expect("read pcap");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..(at + 16 + caplen).min(data.len())];
        at += 16 + caplen;
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 113 || ip.len() < ihl {
            continue;
        }
        let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
        out.push((a(12), a(16), ip[ihl..].to_vec()));
    }
    out
}

fn ptype(pgm: &[u8]) -> Option<PacketType> {
    Packet::new_checked(pgm).ok().map(|p| p.packet_type())
}

/// Sequence numbers of a NAK (main + OPT_NAK_LIST).
fn nak_sqns(pgm: &[u8]) -> Vec<u32> {
    let Ok(nak) = NakPacket::new_checked(pgm) else {
        return vec![];
    };
    let mut v = vec![nak.sqn().0];
    for o in nak.options().iter() {
        if let OptionValue::NakList(l) = o.value {
            v.extend(l.iter().map(|s| s.0));
        }
    }
    v
}

fn odata_sqns(pkts: &[(Ipv4Addr, Ipv4Addr, Vec<u8>)]) -> BTreeSet<u32> {
    pkts.iter()
        .filter(|(_, _, p)| ptype(p) == Some(PacketType::Odata))
        .filter_map(|(_, _, p)| DataPacket::new_checked(&p[..]).ok().map(|d| d.sqn().0))
        .collect()
}

fn count(
    pkts: &[(Ipv4Addr, Ipv4Addr, Vec<u8>)],
    f: impl Fn(&(Ipv4Addr, Ipv4Addr, Vec<u8>)) -> bool,
) -> usize {
    pkts.iter().filter(|p| f(p)).count()
}

fn stop(c: Capture) -> Vec<(Ipv4Addr, Ipv4Addr, Vec<u8>)> {
    pcap_pgm(&c.stop().expect("stop capture"))
}

struct Setup<'a> {
    intercept: &'a str,
    /// R2 has a static (S,G) route to LAN A and LAN B (else none: the route comes from the
    /// NOCACHE upcall and LAN A and LAN B from IGMP).
    r2_static_downstream: bool,
    /// Run smcroute and the daemons in assist-only mode.
    assist_only: bool,
}

/// Runs the whole scenario and checks every claim; returns R2's metrics text.
fn scenario(tag: &str, setup: Setup<'_>) {
    let topo = RefTopology::build(tag).expect("build the reference topology");
    let group = topo.group(1);
    let src = topo.source.addr();
    let pgm = binary("pgm-core", "pgm");
    let intercept = setup.intercept;
    let mode = if setup.assist_only {
        "assist-only"
    } else {
        "full"
    };
    let (r1_routes, r2_routes) = if setup.assist_only {
        let r1 = topo
            .lab
            .start_smcroute(
                &topo.r1.ns,
                &[McRoute::sg("to-src", src, group, &["to-r2"])],
            )
            .unwrap();
        let r2 = topo
            .lab
            .start_smcroute(
                &topo.r2.ns,
                &[McRoute::sg("to-r1", src, group, &["lana", "lanb"])],
            )
            .unwrap();
        std::mem::forget((r1, r2)); // the lab kills them
        (String::new(), String::new())
    } else {
        (
            format!(
                "[[router.route]]\ngroup = \"{group}\"\nsource = \"{src}\"\nupstream = \"to-src\"\ndownstream = [\"to-r2\"]\n"
            ),
            // Without a static route, R2 routes from the upcall's arrival interface and the
            // IGMP memberships of LAN A and LAN B.
            if setup.r2_static_downstream {
                format!(
                    "[[router.route]]\ngroup = \"{group}\"\nsource = \"{src}\"\nupstream = \"to-r1\"\ndownstream = [\"lana\", \"lanb\"]\n"
                )
            } else {
                String::new()
            },
        )
    };
    let common = format!("[router]\nmode = \"{mode}\"\nintercept = \"{intercept}\"\n");
    let r1_cfg = format!(
        "{common}[[router.interface]]\nname = \"to-src\"\n[[router.interface]]\nname = \"to-r2\"\n{r1_routes}[admin]\nlisten = \"{ADMIN}\"\n"
    );
    let r2_cfg = format!(
        "{common}[[router.interface]]\nname = \"to-r1\"\n[[router.interface]]\nname = \"lana\"\n[[router.interface]]\nname = \"lanb\"\n{r2_routes}[admin]\nlisten = \"{ADMIN}\"\n"
    );
    let _r1 = routerd(&topo, &topo.r1.ns, "r1", &r1_cfg);
    let _r2 = routerd(&topo, &topo.r2.ns, "r2", &r2_cfg);

    let cap_src = topo
        .lab
        .capture(&topo.source.ns, "eth0", Some("ip proto 113"))
        .unwrap();
    let cap_r2up = topo
        .lab
        .capture(&topo.r2.ns, "to-r1", Some("ip proto 113"))
        .unwrap();
    let cap_lana = topo
        .lab
        .capture(&topo.receivers[0].ns, "eth0", Some("ip proto 113"))
        .unwrap();
    let cap_lanb = topo
        .lab
        .capture(&topo.r2.ns, "lanb", Some("ip proto 113"))
        .unwrap();

    const COUNT: usize = 3000;
    let network = |h: &lab::Host| format!("{};{group}", h.addr());
    let receivers: Vec<Process> = topo
        .receivers
        .iter()
        .map(|h| {
            topo.lab
                .spawn(
                    &h.ns,
                    &[
                        pgm.to_str().unwrap(),
                        "recv",
                        "--ip",
                        "--network",
                        &network(h),
                        "--count",
                        &COUNT.to_string(),
                        "--verify",
                        "--size",
                        "1000",
                        "--idle-timeout",
                        "15",
                        "-o",
                        "/dev/null",
                    ],
                )
                .expect("spawn receiver")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let sender = topo
        .lab
        .spawn(
            &topo.source.ns,
            &[
                pgm.to_str().unwrap(),
                "send",
                "--ip",
                "--network",
                &network(&topo.source),
                "--count",
                &COUNT.to_string(),
                "--size",
                "1000",
                "--rate",
                "1000000",
                "--linger",
                "8",
            ],
        )
        .expect("spawn sender");
    // Loss starts once every receiver has the session: a receiver whose very first ODATA is
    // lost starts its window after it and never asks for it (no OPT_JOIN).
    for r in &receivers {
        r.wait_for_output("started", Duration::from_secs(10))
            .expect("session start");
    }
    let loss = topo
        .lab
        .add_loss(
            &topo.r2.ns,
            &LossSpec::egress("lana", 5).only(Selector::Pgm),
        )
        .expect("loss rule");
    for (i, r) in receivers.iter().enumerate() {
        let st = r.wait_timeout(Duration::from_secs(60)).unwrap();
        assert!(
            matches!(st, Some(s) if s.success()),
            "receiver {} ({st:?}) did not deliver everything: {}\nR2 log:\n{}",
            i + 1,
            r.stderr().unwrap_or_default(),
            _r2.stderr().unwrap_or_default()
        );
    }
    let _ = sender.wait_timeout(Duration::from_secs(20));
    let dropped = loss.counters().unwrap().dropped;
    assert!(dropped > 0, "the loss rule dropped nothing");

    let m1 = http(&topo.r1.ns, "GET", "/metrics");
    let m2 = http(&topo.r2.ns, "GET", "/metrics");
    let state2 = http(&topo.r2.ns, "GET", "/api/v1/state");
    let traffic2 = http(&topo.r2.ns, "GET", "/api/v1/traffic");
    let src_pkts = stop(cap_src);
    let up_pkts = stop(cap_r2up);
    let lana_pkts = stop(cap_lana);
    let lanb_pkts = stop(cap_lanb);
    eprintln!("R1 metrics:\n{m1}\nR2 metrics:\n{m2}\nR2 state: {state2}\nR2 traffic: {traffic2}");

    // The receivers NAK R2, R2 NAKs R1, R1 NAKs the source.
    let r2_lana = topo.r2_lan_a().addr;
    let r2_up = topo.r2.upstream.addr;
    let r1_down = topo.r1.downstream[0].addr;
    let r1_up = topo.r1.upstream.addr;
    let naks_to_r2 = count(&lana_pkts, |(_, d, p)| {
        *d == r2_lana && ptype(p) == Some(PacketType::Nak)
    });
    assert!(naks_to_r2 > 0, "no receiver NAKed R2");
    // Once R2's first SPM is on LAN A, receivers NAK R2 only. (Before it, with a route
    // resolved on the first ODATA, a receiver may NAK the ODATA source directly.)
    let first_spm = lana_pkts
        .iter()
        .position(|(_, _, p)| ptype(p) == Some(PacketType::Spm))
        .expect("an SPM on LAN A");
    let direct: Vec<usize> = lana_pkts
        .iter()
        .enumerate()
        .filter(|(_, (_, d, p))| *d == src && ptype(p) == Some(PacketType::Nak))
        .map(|(i, _)| i)
        .collect();
    assert!(
        direct.iter().all(|&i| i < first_spm),
        "receivers NAKed the source directly after R2's SPM: {direct:?} (first SPM {first_spm})"
    );
    let naks_r2_r1 = count(&up_pkts, |(s, d, p)| {
        *s == r2_up && *d == r1_down && ptype(p) == Some(PacketType::Nak)
    });
    assert!(naks_r2_r1 > 0, "R2 did not NAK R1");
    assert!(metric(&m2, "pgm_router_naks_received_total", &[]) > 0);
    assert!(metric(&m2, "pgm_router_naks_forwarded_total", &[]) > 0);
    assert!(metric(&m1, "pgm_router_naks_received_total", &[]) > 0);
    assert!(
        metric(
            &m2,
            "pgm_router_received_packets_total",
            &[("interface", "lana"), ("type", "nak")]
        ) > 0
    );
    assert!(
        metric(
            &m2,
            "pgm_router_sent_packets_total",
            &[("interface", "to-r1"), ("type", "nak")]
        ) > 0
    );
    let naks_at_src: Vec<u32> = src_pkts
        .iter()
        .filter(|(_, d, p)| *d == src && ptype(p) == Some(PacketType::Nak))
        .flat_map(|(_, _, p)| nak_sqns(p))
        .collect();
    assert!(
        src_pkts
            .iter()
            .any(|(s, d, p)| *s == r1_up && *d == src && ptype(p) == Some(PacketType::Nak)),
        "R1 did not NAK the source"
    );

    // R2 confirms on LAN A (NCFs are never forwarded, so every NCF there is R2's) and sends
    // the NCFs counted in its metrics.
    let ncfs_lana = count(&lana_pkts, |(_, _, p)| ptype(p) == Some(PacketType::Ncf));
    assert!(ncfs_lana > 0, "no NCF on LAN A");
    assert!(
        metric(
            &m2,
            "pgm_router_sent_packets_total",
            &[("interface", "lana"), ("type", "ncf")]
        ) > 0
    );
    assert!(metric(&m2, "pgm_router_ncfs_sent_total", &[]) > 0);

    // RDATA for LAN A losses never leaves on LAN B: any RDATA there repairs a sequence
    // number that rcv3 itself NAKed (the kernel drops the first few ODATA of an (S,G) while
    // its MFC entry is being resolved, on both LANs).
    let naked_lanb: BTreeSet<u32> = lanb_pkts
        .iter()
        .filter(|(_, _, p)| ptype(p) == Some(PacketType::Nak))
        .flat_map(|(_, _, p)| nak_sqns(p))
        .collect();
    let rdata_lanb: Vec<u32> = lanb_pkts
        .iter()
        .filter(|(_, _, p)| ptype(p) == Some(PacketType::Rdata))
        .filter_map(|(_, _, p)| DataPacket::new_checked(&p[..]).ok().map(|d| d.sqn().0))
        .collect();
    let leaked: Vec<u32> = rdata_lanb
        .iter()
        .filter(|s| !naked_lanb.contains(s))
        .copied()
        .collect();
    assert!(
        leaked.is_empty(),
        "RDATA for LAN A's losses leaked onto LAN B: {leaked:?}"
    );
    let rdata_lana = count(&lana_pkts, |(_, _, p)| ptype(p) == Some(PacketType::Rdata));
    assert!(
        rdata_lana > rdata_lanb.len() * 5,
        "{rdata_lana} RDATA on LAN A, {} on LAN B",
        rdata_lanb.len()
    );
    assert!(count(&lanb_pkts, |(_, _, p)| ptype(p) == Some(PacketType::Odata)) >= COUNT * 95 / 100);
    assert!(metric(&m2, "pgm_router_rdata_forwarded_total", &[]) > 0);

    // NAKs at the source per lost sequence number. A loss on LAN A is an ODATA that never
    // reached it, or an RDATA sent towards it that never arrived (which the receivers NAK
    // again): count both.
    let sent = odata_sqns(&src_pkts);
    let seen_lana = odata_sqns(&lana_pkts);
    let lost_odata = sent.difference(&seen_lana).count();
    // The loss rule's drop count: ODATA and RDATA lost on LAN A (each needs a NAK) plus the
    // few NCFs, SPMs and POLLs it hit; an upper bound of the losses that need repair.
    // ODATA missing on LAN B too was dropped by R2's kernel while the (S,G) entry was being
    // resolved, before the loss rule started: every receiver NAKs those.
    let unresolved = sent.difference(&odata_sqns(&lanb_pkts)).count();
    let lost = usize::try_from(dropped).unwrap() + unresolved;
    let ratio = naks_at_src.len() as f64 / lost as f64;
    eprintln!(
        "{tag}: {lost_odata} ODATA lost on LAN A, {dropped} PGM packets dropped there, \
         {unresolved} before the MFC entry, {} NAKed \
         sequence numbers at the source ({ratio:.3} per loss, {:.3} per lost ODATA), \
         {naks_to_r2} NAKs to R2, {naks_r2_r1} NAKs R2->R1, {ncfs_lana} NCFs on LAN A",
        naks_at_src.len(),
        naks_at_src.len() as f64 / lost_odata.max(1) as f64
    );
    assert!(
        ratio <= 1.1,
        "{ratio:.3} NAKs per lost sequence number at the source"
    );

    // Admin API: the state names the upstream neighbour and interface; clearing works.
    assert!(
        state2.contains(&format!("\"upstream_neighbour\":\"{r1_down}\"")),
        "{state2}"
    );
    assert!(
        state2.contains("\"upstream_interface\":\"to-r1\""),
        "{state2}"
    );
    assert!(traffic2.contains("\"lana\""), "{traffic2}");
    http(&topo.r2.ns, "POST", "/api/v1/clear/repair-state");
    http(&topo.r2.ns, "POST", "/api/v1/clear/counters");
    let m2 = http(&topo.r2.ns, "GET", "/metrics");
    assert_eq!(metric(&m2, "pgm_router_naks_received_total", &[]), 0);
    assert_eq!(metric(&m2, "pgm_router_repair_states", &[]), 0);
}

#[test]
fn full_mode_router_alert() {
    if lab::skip_without_root("full_mode_router_alert") {
        return;
    }
    scenario(
        "rafull",
        Setup {
            intercept: "router-alert",
            r2_static_downstream: true,
            assist_only: false,
        },
    );
}

#[test]
fn full_mode_nftables_intercept_and_igmp_learned_routes() {
    if lab::skip_without_root("full_mode_nftables_intercept_and_igmp_learned_routes") {
        return;
    }
    scenario(
        "nftigmp",
        Setup {
            intercept: "nftables",
            r2_static_downstream: false,
            assist_only: false,
        },
    );
}

#[test]
fn assist_only_beside_smcroute() {
    if lab::skip_without_root("assist_only_beside_smcroute") {
        return;
    }
    scenario(
        "assist",
        Setup {
            intercept: "router-alert",
            r2_static_downstream: true,
            assist_only: true,
        },
    );
}
