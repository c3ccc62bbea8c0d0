//! Rewriting packets on their way through: the OPX rules for unknown options (§9), and NAKs
//! cut down to the sequence numbers the element lets through.

use super::NetworkElement;
use crate::wire::{
    Body, OptionList, OptionType, OptionValue, Opx, Packet, PgmOption, Repr, Sqn, SqnList,
    checksum_update, flags,
};

/// Bytes of an option's common header (type, length, flags, flags/specific).
const OPTION_HEADER_LEN: usize = 4;

impl NetworkElement {
    /// Applies the OPX rules (§9) to a copy about to be forwarded: returns `None` if an
    /// unknown option says "discard", otherwise the bytes with "invalidate" options
    /// rewritten to OPT_INVALID and the checksum updated. `bytes` passed `new_checked`.
    pub(super) fn apply_opx(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let p = Packet::new_unchecked(bytes);
        let mut discard = false;
        let mut invalidate = Vec::new();
        if p.options_flags() & flags::OPT_PRESENT != 0 {
            // Walk the chain by offset so the type bytes can be rewritten in place. The chain
            // ends where the TSDU starts, and starts with OPT_LENGTH.
            let options = p.options();
            let start = bytes
                .len()
                .checked_sub(usize::from(p.tsdu_length()))
                .and_then(|end| end.checked_sub(options.wire_len()));
            let mut at = start.map_or(0, |s| s + OPTION_HEADER_LEN);
            for o in options {
                if let OptionType::Unknown(_) = o.option_type() {
                    match o.flags.opx() {
                        Opx::Discard => discard = true,
                        Opx::Invalidate if start.is_some() => invalidate.push(at),
                        Opx::Invalidate | Opx::Ignore | Opx::Reserved => {}
                    }
                }
                at += o.wire_len();
            }
        }
        if discard {
            self.stats.opx_discarded += 1;
            return None;
        }
        let mut out = bytes.to_vec();
        if invalidate.is_empty() {
            return Some(out);
        }
        let mut checksum = p.checksum();
        for at in invalidate {
            // The checksum sums 16-bit words from the start of the packet, and options
            // need not be 4-byte aligned (an unknown option may be any length): the type
            // byte is the high byte of its word at an even offset, the low byte at an odd one.
            let word = at & !1;
            let old = word_at(&out, word);
            let Some(ty) = out.get_mut(at) else {
                continue;
            };
            // Keep the OPT_END bit.
            *ty = (*ty & 0x80) | OptionType::Invalid.code();
            checksum = checksum_update(checksum, &old, &word_at(&out, word));
            self.stats.opx_invalidated += 1;
        }
        Packet::new_unchecked(&mut out[..]).set_checksum(checksum);
        Some(out)
    }
}

/// The 16-bit word of `bytes` at the even offset `at`, zero-padded past the end.
fn word_at(bytes: &[u8], at: usize) -> [u8; 2] {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
    [byte(at), byte(at + 1)]
}

/// Rebuilds a NAK or NNAK for `sqns` only, a subset of its own in their order: NAK_SQN becomes
/// the first, OPT_NAK_LIST holds the others (or goes if there are none), the other options
/// stay as they were. `None` if `bytes` is not a NAK or NNAK or `sqns` is empty.
pub(super) fn rebuild_nak(bytes: &[u8], sqns: &[Sqn]) -> Option<Vec<u8>> {
    let (&first, rest) = sqns.split_first()?;
    let mut repr = Repr::parse_bytes(bytes).ok()?;
    match &mut repr.body {
        Body::Nak(n) | Body::Nnak(n) => n.sqn = first,
        _ => return None,
    }
    let mut options: Vec<PgmOption<'_>> = Vec::new();
    for o in repr.options {
        match o.value {
            OptionValue::NakList(_) if rest.is_empty() => {}
            OptionValue::NakList(_) => options.push(PgmOption {
                flags: o.flags,
                value: OptionValue::NakList(SqnList::Slice(rest)),
            }),
            _ => options.push(o),
        }
    }
    repr.options = if options.is_empty() {
        OptionList::EMPTY
    } else {
        OptionList::Slice(&options)
    };
    let mut out = vec![0; repr.buffer_len()];
    let len = repr.emit(&mut out).ok()?;
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::wire::{Gsi, NakPacket, NakRepr, Nla, OptFlags};

    #[test]
    fn a_rebuilt_nak_keeps_its_other_options_and_a_valid_checksum() {
        let list = [Sqn(7), Sqn(8), Sqn(9)];
        let unknown = PgmOption {
            flags: OptFlags::with_opx(Opx::Ignore),
            value: OptionValue::Unknown {
                code: 0x21,
                specific: 0,
                data: &[1, 2, 3],
            },
        };
        let options = [
            PgmOption::from(OptionValue::NakList(SqnList::Slice(&list))),
            unknown,
        ];
        let repr = Repr {
            sport: 7500,
            dport: 4000,
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            parity: false,
            var_pktlen: false,
            body: Body::Nak(NakRepr {
                sqn: Sqn(6),
                source: Nla(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                group: Nla(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 1))),
            }),
            options: OptionList::Slice(&options),
        };
        let mut bytes = vec![0; repr.buffer_len()];
        repr.emit(&mut bytes).expect("emit");
        let check = |b: &[u8], want: &[u32], unknown_kept: bool| {
            let p = NakPacket::new_checked(b).expect("a NAK");
            p.verify_checksum().expect("checksum");
            assert_eq!(p.sqns().map(|s| s.0).collect::<Vec<_>>(), want);
            let kept = p
                .options()
                .iter()
                .any(|o| o.option_type() == OptionType::Unknown(0x21));
            assert_eq!(kept, unknown_kept);
        };
        check(
            &rebuild_nak(&bytes, &[Sqn(7), Sqn(9)]).expect("rebuilt"),
            &[7, 9],
            true,
        );
        check(
            &rebuild_nak(&bytes, &[Sqn(8)]).expect("rebuilt"),
            &[8],
            true,
        );
        assert_eq!(rebuild_nak(&bytes, &[]), None);
    }
}
