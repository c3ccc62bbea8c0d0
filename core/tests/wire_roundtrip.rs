//! Round trips of every packet type and option: `Repr -> emit -> check -> parse == Repr`, and
//! the typed views read back the fields that were emitted.

mod common;

use common::{Model, OwnedBody, model};
use pgm_core::wire::{
    AckPacket, DataPacket, NakPacket, OptionList, Packet, PacketType, PollPacket, PolrPacket, Repr,
    SpmPacket, flags,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn emit_parse_round_trip(m in model()) {
        let bytes = m.emit();
        let opts = m.option_values();
        let want = m.repr(&opts);

        // `new_checked` refuses an option chain without its OPT_LENGTH, with a wrong total, or
        // whose OPT_END is not on the last option.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //= type=test
        //# When option extensions are appended to the standard PGM header, the
        //# extensions MUST be preceded by an option extension length field
        //# specifying the total length of all option extensions.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //= type=test
        //# To provide an indication of the end of option extensions, OPT_END
        //# (0x80) MUST be set in the Option Type field of the trailing option
        //# extension.
        let packet = Packet::new_checked(&bytes[..]).expect("emitted packet checks");
        packet.verify_checksum().expect("emitted checksum verifies");
        let got = Repr::parse(&packet).expect("emitted packet parses");
        prop_assert_eq!(got, want);

        // Re-emitting the parsed packet reproduces the bytes exactly.
        let mut again = vec![0u8; got.buffer_len()];
        got.emit(&mut again).expect("re-emit");
        prop_assert_eq!(&again, &bytes);

        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //= type=test
        //# In addition, the presence of the options MUST be encoded in the
        //# Options field of the standard PGM header before the Checksum is
        //# computed.
        // Header flags follow the options.
        let f = packet.options_flags();
        prop_assert_eq!(f & flags::OPT_PRESENT != 0, !m.options.is_empty());
        prop_assert_eq!(f & flags::OPT_PARITY != 0, m.parity);
        prop_assert_eq!(f & flags::OPT_VAR_PKTLEN != 0, m.var_pktlen);
        prop_assert_eq!(packet.gsi().0, m.gsi);
        prop_assert_eq!(packet.source_port(), m.sport);
        prop_assert_eq!(packet.dest_port(), m.dport);

        check_typed_view(&m, &bytes)?;
    }
}

fn check_typed_view(m: &Model, bytes: &[u8]) -> Result<(), TestCaseError> {
    match &m.body {
        OwnedBody::Spm(r) => {
            let p = SpmPacket::new_checked(bytes).expect("spm view");
            prop_assert_eq!(p.sqn(), r.sqn);
            prop_assert_eq!(p.trail(), r.trail);
            prop_assert_eq!(p.lead(), r.lead);
            prop_assert_eq!(p.path(), r.path);
            prop_assert!(DataPacket::new_checked(bytes).is_err());
        }
        OwnedBody::Poll(r) => {
            let p = PollPacket::new_checked(bytes).expect("poll view");
            prop_assert_eq!(p.sqn(), r.sqn);
            prop_assert_eq!(p.round(), r.round);
            prop_assert_eq!(p.subtype(), r.subtype);
            prop_assert_eq!(p.path(), r.path);
            prop_assert_eq!(p.backoff_ivl_us(), r.backoff_ivl_us);
            prop_assert_eq!(p.rand(), r.rand);
            prop_assert_eq!(p.mask(), r.mask);
        }
        OwnedBody::Polr(r) => {
            let p = PolrPacket::new_checked(bytes).expect("polr view");
            prop_assert_eq!(p.sqn(), r.sqn);
            prop_assert_eq!(p.round(), r.round);
            prop_assert_eq!(p.tsi().sport, m.dport);
        }
        OwnedBody::Odata(s, t, payload) | OwnedBody::Rdata(s, t, payload) => {
            let p = DataPacket::new_checked(bytes).expect("data view");
            prop_assert_eq!(p.sqn().0, *s);
            prop_assert_eq!(p.trail().0, *t);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(usize::from(p.tsdu_length()), payload.len());
            prop_assert_eq!(p.tsi().sport, m.sport);
        }
        OwnedBody::Nak(r) | OwnedBody::Nnak(r) | OwnedBody::Ncf(r) => {
            let p = NakPacket::new_checked(bytes).expect("nak view");
            prop_assert_eq!(p.sqn(), r.sqn);
            prop_assert_eq!(p.source_nla(), r.source);
            prop_assert_eq!(p.group_nla(), r.group);
            let want_port = if p.packet_type() == PacketType::Ncf {
                m.sport
            } else {
                m.dport
            };
            prop_assert_eq!(p.tsi().sport, want_port);
        }
        OwnedBody::Spmr => {
            let p = Packet::new_checked(bytes).expect("spmr");
            prop_assert_eq!(p.packet_type(), PacketType::Spmr);
            prop_assert_eq!(p.tsi().sport, m.dport);
        }
        OwnedBody::Ack(r) => {
            let p = AckPacket::new_checked(bytes).expect("ack view");
            prop_assert_eq!(p.rx_max(), r.rx_max);
            prop_assert_eq!(p.bitmap(), r.bitmap);
            prop_assert_eq!(p.tsi().sport, m.dport);
            prop_assert!(NakPacket::new_checked(bytes).is_err());
        }
    }
    let p = Packet::new_checked(bytes).expect("view");
    let opts = m.option_values();
    let want = if opts.is_empty() {
        OptionList::EMPTY
    } else {
        OptionList::Slice(&opts)
    };
    prop_assert_eq!(p.options(), want);
    Ok(())
}
