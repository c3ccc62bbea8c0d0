//! Real bytes from OpenPGM 5.3 (captured in namespaces by `netns-tests/peers/openpgm/`, see
//! `core/tests/data/openpgm/`): every PGM packet in the captures, over PGM/IP (with and
//! without Router Alert) and PGM/UDP, must pass our checked parser and checksum, and
//! re-emitting its parsed `Repr` must reproduce it byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pgm_core::wire::{Packet, PacketType, Repr};

/// The PGM bytes of an Ethernet frame carrying PGM/IP or PGM/UDP (ports 3055/3056 or any
/// port pair the capture used for PGM, given in `udp_ports`).
fn pgm_payload<'a>(frame: &'a [u8], udp_ports: &[u16]) -> Option<&'a [u8]> {
    let eth = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(eth.first()? & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([*eth.get(2)?, *eth.get(3)?]));
    let ip = eth.get(..total)?;
    let payload = ip.get(ihl..)?;
    match ip.get(9)? {
        113 => Some(payload),
        17 => {
            let sport = u16::from_be_bytes([payload[0], payload[1]]);
            let dport = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
            (udp_ports.contains(&sport) || udp_ports.contains(&dport)).then(|| &payload[8..])
        }
        _ => None,
    }
}

#[test]
fn every_openpgm_packet_parses_verifies_and_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openpgm");
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("capture directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        files += 1;
        let file = std::fs::File::open(&path).expect("open pcap");
        let mut reader = PcapReader::new(file).expect("pcap header");
        let mut n = 0;
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.expect("pcap record");
            let Some(pgm) = pgm_payload(&pkt.data, &[3055, 3056]) else {
                continue;
            };
            n += 1;
            let p = Packet::new_checked(pgm).unwrap_or_else(|e| {
                panic!("{}: packet {n} refused: {e}: {pgm:02x?}", path.display())
            });
            p.verify_checksum()
                .unwrap_or_else(|e| panic!("{}: packet {n}: {e}", path.display()));
            let repr = Repr::parse(&p).expect("parses");
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).expect("re-emit");
            assert_eq!(
                out,
                pgm,
                "{}: packet {n} ({}) does not re-emit identically",
                path.display(),
                p.packet_type()
            );
            *seen.entry(p.packet_type().label()).or_default() += 1;
        }
        assert!(n > 0, "{}: no PGM packet found", path.display());
    }
    assert!(files > 0, "no captures in {}", dir.display());
    eprintln!("OpenPGM packets checked: {seen:?}");
    for ty in [
        PacketType::Spm,
        PacketType::Odata,
        PacketType::Rdata,
        PacketType::Nak,
        PacketType::Ncf,
    ] {
        assert!(
            seen.contains_key(ty.label()),
            "the captures hold no {ty}: {seen:?}"
        );
    }
}
