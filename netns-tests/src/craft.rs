//! A PGM packet crafter for adversarial tests.
//!
//! Well-formed packets are built with the wire module's [`Repr`] (so their checksums, option
//! chains and lengths are right); malformed ones are well-formed packets whose bytes are then
//! mangled, in the ways `Repr` cannot express: truncations at every length, TSDU lengths that
//! disagree with the packet, bad checksums, option chains whose `OPT_LENGTH` or option
//! lengths are wrong, odd-length unknown options, too many options, bad NLA families.
//!
//! An attack is a list of [`Wave`]s, each an [`Attack`] kind, a packet count and a
//! destination ([`To`]). [`run`] sends them, interleaved in a random order that keeps each
//! wave's own packets in order (the made-up session of [`Attack::FakeSession`] is a script),
//! from a thread inside a lab namespace, over PGM/IP (a raw IP protocol 113 socket, the
//! kernel writing the IP header with the attacker's own address) or PGM/UDP, at a fixed
//! packet rate. Everything is derived from one seed: two runs with the same seed, session and
//! window send the same bytes. Runs are bounded: at most [`MAX_PACKETS`] packets at most
//! [`MAX_PPS`] per second.
//!
//! The attacker learns the session it attacks as a host on the LAN would, by listening:
//! a [`Sniffer`] on the attacker's host takes the session's TSI from the first ODATA or SPM
//! of its source and keeps its transmit window's edges up to date ([`Edges`]), so that
//! sequence numbers "just ahead of the lead" or "the lead with one byte flipped" follow the
//! live transfer. It also counts what comes back to the attacker's address (POLRs answering
//! its POLLs, NAKs of its made-up session): reflection.
//!
//! [`Tally`] records what was sent: packets per attack, and per wire error reason for every
//! malformed packet (the reason the wire module gives it, which is the label every daemon and
//! `pgm recv` count it under).

use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pgm_core::wire::{
    AckRepr, Body, DataRepr, Gsi, HEADER_LEN, NakRepr, Nla, OptFlags, OptionList, OptionValue, Opx,
    Packet, PacketType, PgmOption, PollRepr, PollSubtype, PolrRepr, Repr, SpmRepr, Sqn, SqnList,
    Tsi, WireError, flags,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::Ns;

/// The most packets one [`run`] sends.
pub const MAX_PACKETS: usize = 200_000;

/// The highest rate [`run`] sends at, in packets per second.
pub const MAX_PPS: u32 = 50_000;

/// PGM's IP protocol number.
const IPPROTO_PGM: i32 = 113;

/// 2^30: "far" ahead of or behind a window.
const FAR: u32 = 1 << 30;

/// How far past a made-up session's first sequence number [`Attack::WindowStretch`] sends
/// its second packet: inside the default receive window (32768), so that a receiver that
/// took the session grows its window to hold the gap.
pub const STRETCH: u32 = 30_000;

// ---- randomness ---------------------------------------------------------------------------

/// splitmix64: the crafter's only source of randomness (no `rand` dependency here).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 32 random bits.
    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A number in `0..n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A random TSI.
    pub fn tsi(&mut self) -> Tsi {
        let b = self.next_u64().to_le_bytes();
        Tsi::new(
            Gsi([b[0], b[1], b[2], b[3], b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
        )
    }
}

// ---- packet builders ----------------------------------------------------------------------

/// The session under attack, as the attacker learnt it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its TSI.
    pub tsi: Tsi,
    /// The data-destination port.
    pub dport: u16,
    /// The source's address.
    pub source: Ipv4Addr,
    /// The group.
    pub group: Ipv4Addr,
}

/// Emits `repr` into a new buffer. The crafter only builds representable packets: a failure
/// is a bug of the crafter, reported with the packet.
pub fn emit(repr: &Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0; repr.buffer_len()];
    match repr.emit(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(e) => panic!("the crafter built a packet the wire cannot carry ({e}): {repr}"),
    }
}

/// A packet of session `tsi` (data-destination port `dport`) with the ports the right way
/// round for its direction (§8.3).
fn repr<'a>(tsi: Tsi, dport: u16, body: Body<'a>, options: &'a [PgmOption<'a>]) -> Repr<'a> {
    let (sport, dport) = if body.packet_type().is_upstream() {
        (dport, tsi.sport)
    } else {
        (tsi.sport, dport)
    };
    Repr {
        sport,
        dport,
        gsi: tsi.gsi,
        parity: false,
        var_pktlen: false,
        body,
        options: OptionList::Slice(options),
    }
}

fn nla(a: Ipv4Addr) -> Nla {
    Nla(IpAddr::V4(a))
}

/// ODATA (or RDATA if `rdata`) of `tsi`.
pub fn data(
    rdata: bool,
    tsi: Tsi,
    dport: u16,
    sqn: u32,
    trail: u32,
    payload: &[u8],
    opts: &[PgmOption<'_>],
) -> Vec<u8> {
    let d = DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        payload,
    };
    let body = if rdata {
        Body::Rdata(d)
    } else {
        Body::Odata(d)
    };
    emit(&repr(tsi, dport, body, opts))
}

/// An SPM of `tsi` with path `path`.
pub fn spm(
    tsi: Tsi,
    dport: u16,
    (sqn, trail, lead): (u32, u32, u32),
    path: Ipv4Addr,
    opts: &[PgmOption<'_>],
) -> Vec<u8> {
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        lead: Sqn(lead),
        path: nla(path),
    });
    emit(&repr(tsi, dport, body, opts))
}

/// A NAK, NNAK or NCF (`ty`) of `tsi` for `sqn` and the sequence numbers of `list`.
pub fn nak(ty: PacketType, s: &Session, tsi: Tsi, sqn: u32, list: &[Sqn]) -> Vec<u8> {
    let n = NakRepr {
        sqn: Sqn(sqn),
        source: nla(s.source),
        group: nla(s.group),
    };
    let body = match ty {
        PacketType::Nnak => Body::Nnak(n),
        PacketType::Ncf => Body::Ncf(n),
        _ => Body::Nak(n),
    };
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(list)))];
    let opts: &[PgmOption<'_>] = if list.is_empty() { &[] } else { &opts };
    emit(&repr(tsi, s.dport, body, opts))
}

/// A PGMCC ACK of `tsi` up to `rx_max` with `bitmap`, with OPT_PGMCC_FEEDBACK (loss rate
/// 65535, timestamp 0) naming `receiver` if `feedback`.
pub fn ack(
    tsi: Tsi,
    dport: u16,
    rx_max: u32,
    bitmap: u32,
    receiver: Ipv4Addr,
    feedback: bool,
) -> Vec<u8> {
    let body = Body::Ack(AckRepr {
        rx_max: Sqn(rx_max),
        bitmap,
    });
    let opts = [PgmOption::from(OptionValue::PgmccFeedback {
        tstamp: 0,
        loss_rate: u16::MAX,
        receiver: nla(receiver),
    })];
    let opts: &[PgmOption<'_>] = if feedback { &opts } else { &[] };
    emit(&repr(tsi, dport, body, opts))
}

/// An SPMR of `tsi`.
pub fn spmr(tsi: Tsi, dport: u16) -> Vec<u8> {
    emit(&repr(tsi, dport, Body::Spmr, &[]))
}

/// A POLL of `tsi` whose answers go to `path`; mask 0: every receiver answers (§14.4).
pub fn poll(tsi: Tsi, dport: u16, sqn: u32, subtype: PollSubtype, path: Ipv4Addr) -> Vec<u8> {
    let body = Body::Poll(PollRepr {
        sqn: Sqn(sqn),
        round: 0,
        subtype,
        path: nla(path),
        backoff_ivl_us: 100_000,
        rand: [0; 4],
        mask: 0,
    });
    emit(&repr(tsi, dport, body, &[]))
}

/// A POLR of `tsi`.
pub fn polr(tsi: Tsi, dport: u16, sqn: u32) -> Vec<u8> {
    let body = Body::Polr(PolrRepr {
        sqn: Sqn(sqn),
        round: 0,
    });
    emit(&repr(tsi, dport, body, &[]))
}

/// Why `bytes` is not a packet every PGM receiver must take, as the wire module says: the
/// first structural problem ([`Packet::new_checked`]), then the checksum.
pub fn classify(bytes: &[u8]) -> Result<(), WireError> {
    Packet::new_checked(bytes)?.verify_checksum()
}

// ---- byte mangling ------------------------------------------------------------------------

/// Offset of the header's Options field.
const OPTIONS_AT: usize = 5;
/// Offset of the TSDU length.
const TSDU_AT: usize = 14;
/// Offset of the checksum.
const CHECKSUM_AT: usize = 6;

/// Recomputes the checksum of a buffer at least a header long.
fn fill_checksum(p: &mut [u8]) {
    if p.len() >= HEADER_LEN {
        Packet::new_unchecked(p).fill_checksum();
    }
}

fn set_tsdu(p: &mut [u8], len: usize) {
    let v = u16::try_from(len).unwrap_or(u16::MAX);
    p[TSDU_AT..TSDU_AT + 2].copy_from_slice(&v.to_be_bytes());
}

/// One option's bytes: type `code` (with OPT_END if `end`), length `4 + body.len()` unless
/// `len` overrides it, byte 2 and 3 zero.
fn raw_option(code: u8, body: &[u8], end: bool, len: Option<u8>) -> Vec<u8> {
    let natural = u8::try_from(4 + body.len()).unwrap_or(u8::MAX);
    let mut o = vec![
        code | if end { 0x80 } else { 0 },
        len.unwrap_or(natural),
        0,
        0,
    ];
    o.extend_from_slice(body);
    o
}

/// An option chain: `OPT_LENGTH` (own length `own_len`, total `total` or the real one), then
/// `opts` as given.
fn raw_chain(opts: &[Vec<u8>], own_len: u8, total: Option<u16>) -> Vec<u8> {
    let body: Vec<u8> = opts.concat();
    let real = u16::try_from(4 + body.len()).unwrap_or(u16::MAX);
    let t = total.unwrap_or(real);
    let mut c = vec![0x00, own_len, (t >> 8) as u8, t as u8];
    c.extend_from_slice(&body);
    c
}

/// `base` (a packet emitted without options or TSDU) with `chain` as its option bytes and
/// `payload` after them; the Options bit, the TSDU length and the checksum set to match.
fn splice(base: &[u8], chain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    p[OPTIONS_AT] |= flags::OPT_PRESENT;
    p.extend_from_slice(chain);
    p.extend_from_slice(payload);
    set_tsdu(&mut p, payload.len());
    fill_checksum(&mut p);
    p
}

/// One way of breaking a packet, each refused by the wire module for one reason
/// ([`Malformation::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Malformation {
    /// TSDU length larger than the data carried.
    TsduTooLong,
    /// TSDU length smaller than the data carried.
    TsduTooShort,
    /// A checksum that does not match (of ODATA, NAK and SPM in turn).
    BadChecksum,
    /// ODATA without checksum (§8 makes it mandatory on data).
    NoChecksum,
    /// `OPT_LENGTH` total past the end of the packet.
    OptTotalPastEnd,
    /// `OPT_LENGTH` total that ends inside the last option.
    OptTotalShort,
    /// `OPT_LENGTH` whose own length is not 4.
    OptLengthWrongSize,
    /// An option whose length is below its own header.
    OptionTooShort,
    /// `OPT_FRAGMENT` one byte short of its fixed size.
    FragmentWrongLength,
    /// An option whose length runs past the chain.
    OptionOverrun,
    /// A chain whose last option lacks OPT_END.
    NoOptEnd,
    /// Options present, but the chain starts with another option than `OPT_LENGTH`.
    NoOptLength,
    /// 17 options (§9: at most 16).
    TooManyOptions,
    /// An odd-length unknown option ending the chain one byte before `OPT_LENGTH`'s total.
    OddOptionWrongTotal,
    /// Version bits set in the type byte.
    BadVersion,
    /// A type byte that names no PGM type.
    BadType,
    /// An NLA of address family 3.
    BadAfi,
}

impl Malformation {
    /// Every malformation.
    pub const ALL: [Self; 17] = [
        Self::TsduTooLong,
        Self::TsduTooShort,
        Self::BadChecksum,
        Self::NoChecksum,
        Self::OptTotalPastEnd,
        Self::OptTotalShort,
        Self::OptLengthWrongSize,
        Self::OptionTooShort,
        Self::FragmentWrongLength,
        Self::OptionOverrun,
        Self::NoOptEnd,
        Self::NoOptLength,
        Self::TooManyOptions,
        Self::OddOptionWrongTotal,
        Self::BadVersion,
        Self::BadType,
        Self::BadAfi,
    ];

    /// The [`WireError::reason`] label the packet is refused with.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TsduTooLong | Self::TsduTooShort => "bad_length",
            Self::BadChecksum => "bad_checksum",
            Self::NoChecksum => "missing_checksum",
            Self::OptTotalPastEnd | Self::OddOptionWrongTotal => "bad_opt_length",
            Self::OptTotalShort | Self::OptionOverrun => "option_overrun",
            Self::OptLengthWrongSize | Self::NoOptLength => "missing_opt_length",
            Self::OptionTooShort | Self::FragmentWrongLength => "bad_option_length",
            Self::NoOptEnd => "missing_opt_end",
            Self::TooManyOptions => "too_many_options",
            Self::BadVersion => "bad_version",
            Self::BadType => "bad_type",
            Self::BadAfi => "bad_afi",
        }
    }

    /// The malformed packet, built from a packet of session `s` (`i` varies it).
    fn packet(self, s: &Session, w: Window, i: usize, rng: &mut Rng) -> Vec<u8> {
        let sqn = w.lead.wrapping_add(1 + (i as u32 % 16));
        let payload = rng.bytes(32 + i % 64);
        let odata = |payload: &[u8]| data(false, s.tsi, s.dport, sqn, w.trail, payload, &[]);
        let bare = data(false, s.tsi, s.dport, sqn, w.trail, &[], &[]);
        let unknown = |code: u8, n: usize, end: bool| raw_option(code, &vec![0xA5; n], end, None);
        match self {
            Self::TsduTooLong | Self::TsduTooShort => {
                let mut p = odata(&payload);
                let len = payload.len() as u16;
                let wrong = if self == Self::TsduTooLong {
                    len + 1 + (i as u16 % 200)
                } else {
                    len - 1 - (i as u16 % 16)
                };
                p[TSDU_AT..TSDU_AT + 2].copy_from_slice(&wrong.to_be_bytes());
                fill_checksum(&mut p);
                p
            }
            Self::BadChecksum => {
                // ODATA, NAK and SPM in turn: every receiver, source or network element
                // verifies the checksum of some of them.
                let mut p = match i % 3 {
                    0 => odata(&payload),
                    1 => nak(PacketType::Nak, s, s.tsi, sqn, &[]),
                    _ => spm(s.tsi, s.dport, (sqn, w.trail, w.lead), s.source, &[]),
                };
                let at = CHECKSUM_AT + i % 2;
                p[at] ^= 1 << (i % 8);
                if p[CHECKSUM_AT] == 0 && p[CHECKSUM_AT + 1] == 0 {
                    p[CHECKSUM_AT + 1] = 1;
                }
                p
            }
            Self::NoChecksum => {
                let mut p = odata(&payload);
                p[CHECKSUM_AT] = 0;
                p[CHECKSUM_AT + 1] = 0;
                p
            }
            Self::OptTotalPastEnd => {
                let chain = raw_chain(&[unknown(0x21, 4, true)], 4, Some(0xFFF0));
                splice(&bare, &chain, &payload)
            }
            Self::OptTotalShort => {
                let chain = raw_chain(&[unknown(0x21, 4, true)], 4, Some(4 + 8 - 2));
                splice(&bare, &chain, &payload)
            }
            Self::OptLengthWrongSize => {
                let chain = raw_chain(&[unknown(0x21, 4, true)], 8, None);
                splice(&bare, &chain, &payload)
            }
            Self::OptionTooShort => {
                let chain = raw_chain(&[raw_option(0x21, &[], true, Some(2))], 4, None);
                splice(&bare, &chain, &payload)
            }
            Self::FragmentWrongLength => {
                let chain = raw_chain(&[raw_option(0x01, &[0; 11], true, None)], 4, None);
                splice(&bare, &chain, &payload)
            }
            Self::OptionOverrun => {
                let chain = raw_chain(&[raw_option(0x21, &[0; 4], true, Some(200))], 4, None);
                splice(&bare, &chain, &payload)
            }
            Self::NoOptEnd => {
                let chain = raw_chain(&[unknown(0x21, 4, false)], 4, None);
                splice(&bare, &chain, &payload)
            }
            Self::NoOptLength => {
                let chain = raw_option(0x01, &[0; 12], true, None);
                splice(&bare, &chain, &payload)
            }
            Self::TooManyOptions => {
                let opts: Vec<Vec<u8>> = (0..17).map(|k| unknown(0x21, 0, k == 16)).collect();
                splice(&bare, &raw_chain(&opts, 4, None), &payload)
            }
            Self::OddOptionWrongTotal => {
                let mut chain = raw_chain(&[unknown(0x23, 1 + 2 * (i % 3), true)], 4, None);
                // One byte more than the options: the chain's OPT_END is not its last byte.
                chain.push(0);
                let total = chain.len() as u16;
                chain[2..4].copy_from_slice(&total.to_be_bytes());
                splice(&bare, &chain, &payload)
            }
            Self::BadVersion => {
                let mut p = odata(&payload);
                p[4] |= 0x40 << (i % 2);
                fill_checksum(&mut p);
                p
            }
            Self::BadType => {
                let mut p = odata(&payload);
                p[4] = [0x03, 0x0B, 0x0F, 0x10, 0x3F][i % 5];
                fill_checksum(&mut p);
                p
            }
            Self::BadAfi => {
                let mut p = nak(PacketType::Nak, s, s.tsi, sqn, &[]);
                // NAK_SRC's AFI (§8.3: sqn at 16, the source NLA at 20).
                p[20..22].copy_from_slice(&[0, 3 + (i % 100) as u8]);
                fill_checksum(&mut p);
                p
            }
        }
    }
}

/// The templates whose every truncation [`Attack::Truncations`] sends: an ODATA with
/// OPT_FRAGMENT and data, an SPM with OPT_JOIN, a NAK with a NAK list.
fn truncation_templates(s: &Session, w: Window, me: Ipv4Addr) -> [Vec<u8>; 3] {
    let frag = [PgmOption::from(OptionValue::Fragment {
        first_sqn: Sqn(w.lead.wrapping_add(1)),
        offset: 0,
        length: 24,
    })];
    let join = [PgmOption::from(OptionValue::Join {
        min_sqn: Sqn(w.trail),
    })];
    let list = [Sqn(w.lead), Sqn(w.lead ^ 1), Sqn(7), Sqn(w.trail)];
    [
        data(
            false,
            s.tsi,
            s.dport,
            w.lead.wrapping_add(1),
            w.trail,
            &[0x5A; 24],
            &frag,
        ),
        spm(s.tsi, s.dport, (w.lead, w.trail, w.lead), me, &join),
        nak(PacketType::Nak, s, s.tsi, w.lead, &list),
    ]
}

// ---- attacks ------------------------------------------------------------------------------

/// A kind of attack packet. Unless said otherwise, packets are of the real session, from the
/// attacker's own address, and sequence numbers are relative to the live window ([`Edges`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Attack {
    /// Every truncation (0 to length - 1 bytes) of three valid packets, in turn.
    Truncations,
    /// One malformation.
    Malformed(Malformation),
    /// Random bytes of random length (0 to 1499).
    RandomBytes,
    /// ODATA and SPMs of made-up TSIs (a new one each packet): fake sources.
    FakeSources,
    /// SPMs and ODATA with OPT_FIN for made-up TSIs.
    FakeFin,
    /// SPMs with OPT_RST for made-up TSIs.
    FakeRst,
    /// SPMs (and ODATA) with OPT_FIN for the real TSI.
    SpoofFin,
    /// SPMs with OPT_RST for the real TSI.
    SpoofRst,
    /// ODATA of the real TSI just ahead of the lead, with garbage data.
    SpoofData,
    /// RDATA of the real TSI just ahead of and just behind the lead, with garbage data.
    SpoofRepair,
    /// ODATA, RDATA and SPM leads 2^30 ahead of the lead.
    FarAhead,
    /// ODATA, RDATA and SPM leads 2^30 behind the lead.
    FarBehind,
    /// SPMs and ODATA whose trail is 2^31 - 2 behind their lead: lead - trail beyond any
    /// window.
    WideWindow,
    /// ODATA, RDATA and SPM leads at the lead with one byte flipped.
    FlippedSqn,
    /// RDATA and ODATA ahead of the lead whose OPT_FRAGMENTs contradict each other (one
    /// APDU's first sequence number with different lengths, offsets past the length, an
    /// APDU of 4 GiB).
    Fragments,
    /// Well-formed ODATA carrying an unknown option of odd length, of the real TSI and of
    /// made-up ones in turn.
    OddOptions,
    /// Pairs of ODATA of made-up TSIs, the second [`STRETCH`] sequence numbers after the
    /// first: each pair stretches a receiver's window that takes the session.
    WindowStretch,
    /// NAKs for random sequence numbers (a quarter with an OPT_NAK_LIST of 8 more).
    NakRandom,
    /// NAKs for data just behind the lead (repairable: legitimate-looking).
    NakInWindow,
    /// NAKs 2^30 ahead of, 2^30 behind, and at the lead with one byte flipped.
    NakFar,
    /// NAKs for random sequence numbers of made-up TSIs.
    NakFakeTsi,
    /// NNAKs for random sequence numbers.
    Nnak,
    /// NCFs for random sequence numbers.
    Ncf,
    /// SPMRs.
    Spmr,
    /// General POLLs, answers to the attacker.
    Poll,
    /// `PGM_POLL_DLR` POLLs, answers to the attacker.
    PollDlr,
    /// POLRs for random POLL sequence numbers.
    Polr,
    /// PGMCC ACKs of the real session, in turn: feedback naming another host than the
    /// sender, acknowledging data never sent, without feedback, and (from the attacker as
    /// itself, reporting all loss) acknowledging the lead with random bitmaps: the last kind
    /// gets the attacker elected acker, which then falls silent.
    Ack,
    /// A made-up session of its own ([`fake_session_tsi`]), played in order from the
    /// attacker's address: OPT_SYN data, an SPM naming the attacker as path, then cycles of
    /// ordinary data; contradictory OPT_FRAGMENTs on contiguous data (an APDU's first
    /// sequence number with two lengths, an offset past the length, an APDU of 4 GiB); data
    /// 4000 ahead (a gap of 3999 to NAK); ODATA 2^30 ahead twice (a window jump two packets
    /// agree on); ODATA 2^30 behind; an SPM with lead - trail beyond any window. An SPM with
    /// OPT_FIN is last.
    FakeSession,
}

impl Attack {
    /// A short label, for tallies and messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Truncations => "truncations",
            Self::Malformed(_) => "malformed",
            Self::RandomBytes => "random_bytes",
            Self::FakeSources => "fake_sources",
            Self::FakeFin => "fake_fin",
            Self::FakeRst => "fake_rst",
            Self::SpoofFin => "spoof_fin",
            Self::SpoofRst => "spoof_rst",
            Self::SpoofData => "spoof_data",
            Self::SpoofRepair => "spoof_repair",
            Self::FarAhead => "far_ahead",
            Self::FarBehind => "far_behind",
            Self::WideWindow => "wide_window",
            Self::FlippedSqn => "flipped_sqn",
            Self::Fragments => "fragments",
            Self::OddOptions => "odd_options",
            Self::WindowStretch => "window_stretch",
            Self::NakRandom => "nak_random",
            Self::NakInWindow => "nak_in_window",
            Self::NakFar => "nak_far",
            Self::NakFakeTsi => "nak_fake_tsi",
            Self::Nnak => "nnak",
            Self::Ncf => "ncf",
            Self::Spmr => "spmr",
            Self::Poll => "poll",
            Self::PollDlr => "poll_dlr",
            Self::Polr => "polr",
            Self::Ack => "ack",
            Self::FakeSession => "fake_session",
        }
    }
}

/// Where a wave's packets go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The session's group (PGM/UDP: its multicast port).
    Group,
    /// A unicast address (PGM/UDP: its unicast port).
    Unicast(Ipv4Addr),
    /// Another multicast group than the session's (PGM/UDP: the multicast port).
    Multicast(Ipv4Addr),
}

/// `count` packets of one attack to one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wave {
    /// What to send.
    pub attack: Attack,
    /// How many packets.
    pub count: usize,
    /// Where to.
    pub to: To,
}

impl Wave {
    /// `count` packets of `attack` to `to`.
    pub fn new(attack: Attack, count: usize, to: To) -> Self {
        Self { attack, count, to }
    }
}

/// The session's transmit window edges, as last seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// The highest sequence number sent (ODATA or an SPM's lead).
    pub lead: u32,
    /// The trailing edge.
    pub trail: u32,
}

/// The TSI of the made-up session [`Attack::FakeSession`] plays for `seed`, so that a test
/// can start a receiver for it before the attack.
pub fn fake_session_tsi(seed: u64) -> Tsi {
    let s = Rng::new(seed ^ 0xFA4E_5E55_10A0_0000)
        .next_u64()
        .to_le_bytes();
    Tsi::new(
        Gsi([0xFA, 0xCE, s[0], s[1], s[2], s[3]]),
        0x4000 | (u16::from_le_bytes([s[4], s[5]]) & 0x3FFF),
    )
}

/// The state of [`Attack::FakeSession`]'s script.
#[derive(Clone, Copy, Debug)]
struct FakeScript {
    tsi: Tsi,
    /// The last sequence number sent.
    cur: u32,
    trail: u32,
    spm_sqn: u32,
    /// The first sequence number of the APDU being contradicted.
    frag_first: u32,
}

/// Makes the packets of attacks: see [`Attack`]. Deterministic for a seed, a session and the
/// windows it is given.
#[derive(Clone, Debug)]
pub struct Crafter {
    rng: Rng,
    session: Session,
    me: Ipv4Addr,
    fake: FakeScript,
    /// [`Attack::WindowStretch`]: the pair being sent (TSI, first sequence number).
    stretch: (Tsi, u32),
}

impl Crafter {
    /// A crafter attacking `session` from the address `me`.
    pub fn new(seed: u64, session: Session, me: Ipv4Addr) -> Self {
        let mut rng = Rng::new(seed);
        let cur = rng.u32();
        Self {
            fake: FakeScript {
                tsi: fake_session_tsi(seed),
                cur,
                trail: cur,
                spm_sqn: 1,
                frag_first: cur,
            },
            stretch: (rng.tsi(), 0),
            rng,
            session,
            me,
        }
    }

    /// Packet `i` of `n` of `attack`, the session's window being `w`.
    pub fn packet(&mut self, attack: Attack, i: usize, n: usize, w: Window) -> Vec<u8> {
        let s = self.session;
        let me = self.me;
        let (lead, trail) = (w.lead, w.trail);
        let garbage = |rng: &mut Rng| {
            let n = 200 + rng.below(800) as usize;
            rng.bytes(n)
        };
        let rng = &mut self.rng;
        match attack {
            Attack::Truncations => {
                let t = truncation_templates(&s, w, me);
                let total: usize = t.iter().map(Vec::len).sum();
                let mut k = i % total;
                for p in t {
                    if k < p.len() {
                        return p[..k].to_vec();
                    }
                    k -= p.len();
                }
                Vec::new()
            }
            Attack::Malformed(m) => m.packet(&s, w, i, rng),
            Attack::RandomBytes => {
                let len = rng.below(1500) as usize;
                rng.bytes(len)
            }
            Attack::FakeSources => {
                let t = rng.tsi();
                let sqn = rng.u32();
                if i % 2 == 0 {
                    data(false, t, s.dport, sqn, sqn, &garbage(rng), &[])
                } else {
                    spm(t, s.dport, (rng.u32(), sqn, sqn), me, &[])
                }
            }
            Attack::FakeFin | Attack::FakeRst => {
                let t = rng.tsi();
                let sqn = rng.u32();
                let opt = if attack == Attack::FakeFin {
                    OptionValue::Fin
                } else {
                    OptionValue::Rst {
                        no_naks: true,
                        error_code: 1,
                    }
                };
                let opts = [PgmOption::from(opt)];
                if attack == Attack::FakeFin && i % 2 == 1 {
                    data(false, t, s.dport, sqn, sqn, &garbage(rng), &opts)
                } else {
                    spm(t, s.dport, (rng.u32(), sqn, sqn), me, &opts)
                }
            }
            Attack::SpoofFin | Attack::SpoofRst => {
                let opt = if attack == Attack::SpoofFin {
                    OptionValue::Fin
                } else {
                    OptionValue::Rst {
                        no_naks: true,
                        error_code: 2,
                    }
                };
                let opts = [PgmOption::from(opt)];
                if attack == Attack::SpoofFin && i % 2 == 1 {
                    let payload = garbage(rng);
                    data(
                        false,
                        s.tsi,
                        s.dport,
                        lead.wrapping_add(1),
                        trail,
                        &payload,
                        &opts,
                    )
                } else {
                    // An SPM sequence number the source has not reached, so that it reads
                    // as in sequence (§6.2).
                    let spm_sqn = rng.u32() | 0x0100_0000;
                    spm(s.tsi, s.dport, (spm_sqn, trail, lead), me, &opts)
                }
            }
            Attack::SpoofData => {
                let sqn = lead.wrapping_add(1 + rng.below(64) as u32);
                data(false, s.tsi, s.dport, sqn, trail, &garbage(rng), &[])
            }
            Attack::SpoofRepair => {
                let sqn = if i % 2 == 0 {
                    lead.wrapping_add(1 + rng.below(64) as u32)
                } else {
                    lead.wrapping_sub(rng.below(64) as u32)
                };
                data(true, s.tsi, s.dport, sqn, trail, &garbage(rng), &[])
            }
            Attack::FarAhead | Attack::FarBehind | Attack::FlippedSqn => {
                let far = match attack {
                    Attack::FarAhead => lead.wrapping_add(FAR + rng.below(1000) as u32),
                    Attack::FarBehind => lead.wrapping_sub(FAR + rng.below(1000) as u32),
                    _ => lead ^ (0xFF << (8 * (i / 3 % 4))),
                };
                match i % 3 {
                    0 => data(false, s.tsi, s.dport, far, trail, &garbage(rng), &[]),
                    1 => data(true, s.tsi, s.dport, far, trail, &garbage(rng), &[]),
                    _ => {
                        let spm_sqn = rng.u32() | 0x0100_0000;
                        spm(s.tsi, s.dport, (spm_sqn, trail, far), me, &[])
                    }
                }
            }
            Attack::WideWindow => {
                let wide = lead.wrapping_sub((1 << 31) - 2);
                if i % 2 == 0 {
                    let spm_sqn = rng.u32() | 0x0100_0000;
                    spm(s.tsi, s.dport, (spm_sqn, wide, lead), me, &[])
                } else {
                    let payload = garbage(rng);
                    data(
                        false,
                        s.tsi,
                        s.dport,
                        lead.wrapping_add(1),
                        wide,
                        &payload,
                        &[],
                    )
                }
            }
            Attack::Fragments => {
                let first = lead.wrapping_add(1);
                let sqn = first.wrapping_add((i % 8) as u32);
                let (f, off, len) = match i % 4 {
                    0 => (first, 0, 3000),
                    1 => (first, 1000, 7000),
                    2 => (first, 64_000, 3000),
                    _ => (first.wrapping_add(100), 0, u32::MAX),
                };
                let opts = [PgmOption::from(OptionValue::Fragment {
                    first_sqn: Sqn(f),
                    offset: off,
                    length: len,
                })];
                let payload = rng.bytes(1000);
                data(i % 2 == 0, s.tsi, s.dport, sqn, trail, &payload, &opts)
            }
            Attack::OddOptions => {
                let t = if i % 2 == 0 { s.tsi } else { rng.tsi() };
                let body = vec![0xC3; 1 + 2 * (i % 4)];
                let opx = if i % 3 == 0 {
                    Opx::Invalidate
                } else {
                    Opx::Ignore
                };
                let opts = [PgmOption {
                    flags: OptFlags::with_opx(opx),
                    value: OptionValue::Unknown {
                        code: 0x21 + (i % 8) as u8,
                        specific: 0,
                        data: &body,
                    },
                }];
                let sqn = lead.wrapping_add(1 + rng.below(16) as u32);
                data(false, t, s.dport, sqn, trail, &garbage(rng), &opts)
            }
            Attack::WindowStretch => {
                if i % 2 == 0 {
                    self.stretch = (rng.tsi(), rng.u32());
                }
                let (t, first) = self.stretch;
                let sqn = if i % 2 == 0 {
                    first
                } else {
                    first.wrapping_add(STRETCH)
                };
                data(false, t, s.dport, sqn, first, &garbage(rng), &[])
            }
            Attack::NakRandom | Attack::Nnak | Attack::Ncf => {
                let ty = match attack {
                    Attack::Nnak => PacketType::Nnak,
                    Attack::Ncf => PacketType::Ncf,
                    _ => PacketType::Nak,
                };
                let list: Vec<Sqn> = if i % 4 == 3 {
                    (0..8).map(|_| Sqn(rng.u32())).collect()
                } else {
                    Vec::new()
                };
                nak(ty, &s, s.tsi, rng.u32(), &list)
            }
            Attack::NakInWindow => {
                let span = u64::from(lead.wrapping_sub(trail)).min(256);
                nak(
                    PacketType::Nak,
                    &s,
                    s.tsi,
                    lead.wrapping_sub(rng.below(span) as u32),
                    &[],
                )
            }
            Attack::NakFar => {
                let sqn = match i % 3 {
                    0 => lead.wrapping_add(FAR + rng.below(1000) as u32),
                    1 => lead.wrapping_sub(FAR + rng.below(1000) as u32),
                    _ => lead ^ (0xFF << (8 * (i / 3 % 4))),
                };
                nak(PacketType::Nak, &s, s.tsi, sqn, &[])
            }
            Attack::NakFakeTsi => {
                let t = rng.tsi();
                nak(PacketType::Nak, &s, t, rng.u32(), &[])
            }
            Attack::Spmr => spmr(s.tsi, s.dport),
            Attack::Poll | Attack::PollDlr => {
                let sub = if attack == Attack::Poll {
                    PollSubtype::General
                } else {
                    PollSubtype::Dlr
                };
                poll(s.tsi, s.dport, rng.u32(), sub, me)
            }
            Attack::Polr => polr(s.tsi, s.dport, rng.u32()),
            Attack::Ack => {
                let (rx_max, named, opt) = match i % 4 {
                    // Feedback naming a host other than the one the ACK comes from.
                    0 => (lead, Ipv4Addr::from(rng.u32() | 0x0100_0000), true),
                    // Data never sent.
                    1 => (lead.wrapping_add(1000 + rng.u32() % 1000), me, true),
                    // No feedback option: OpenPGM's source ignores such ACKs, ours too.
                    2 => (lead, me, false),
                    // The attacker as itself: all loss, the lead, any bitmap.
                    _ => (lead.wrapping_sub(rng.u32() % 4), me, true),
                };
                ack(s.tsi, s.dport, rx_max, rng.u32(), named, opt)
            }
            Attack::FakeSession => self.fake_session(i, n),
        }
    }

    /// Packet `i` of `n` of [`Attack::FakeSession`].
    fn fake_session(&mut self, i: usize, n: usize) -> Vec<u8> {
        let dport = self.session.dport;
        let me = self.me;
        let f = &mut self.fake;
        let rng = &mut self.rng;
        let payload = rng.bytes(500);
        let spm_of = |f: &mut FakeScript, trail: u32, opts: &[PgmOption<'_>]| {
            f.spm_sqn += 1;
            spm(f.tsi, dport, (f.spm_sqn, trail, f.cur), me, opts)
        };
        if i == 0 {
            let syn = [PgmOption::from(OptionValue::Syn)];
            return data(false, f.tsi, dport, f.cur, f.trail, &payload, &syn);
        }
        if i == 1 {
            let trail = f.trail;
            return spm_of(f, trail, &[]);
        }
        if i + 1 == n {
            let fin = [PgmOption::from(OptionValue::Fin)];
            let trail = f.trail;
            return spm_of(f, trail, &fin);
        }
        let frag = |first: u32, offset: u32, length: u32| {
            [PgmOption::from(OptionValue::Fragment {
                first_sqn: Sqn(first),
                offset,
                length,
            })]
        };
        // Fragments first, on contiguous data, so that each APDU is complete (by its first
        // fragment's length) and reassembled; then a gap, a jump past it, and the rest.
        match (i - 2) % 12 {
            1 | 3 | 5 => {
                f.cur = f.cur.wrapping_add(1);
                f.frag_first = f.cur;
                let len = if (i - 2) % 12 == 5 { u32::MAX } else { 1000 };
                data(
                    false,
                    f.tsi,
                    dport,
                    f.cur,
                    f.trail,
                    &payload,
                    &frag(f.cur, 0, len),
                )
            }
            2 => {
                // The same APDU's first sequence number with another length.
                f.cur = f.cur.wrapping_add(1);
                let o = frag(f.frag_first, 500, 3000);
                data(false, f.tsi, dport, f.cur, f.trail, &payload, &o)
            }
            4 => {
                // An offset past the APDU's length.
                f.cur = f.cur.wrapping_add(1);
                let o = frag(f.frag_first, 60_000, 1000);
                data(false, f.tsi, dport, f.cur, f.trail, &payload, &o)
            }
            7 => {
                // A gap of 3999 sequence numbers, inside the window: NAKed to us.
                f.cur = f.cur.wrapping_add(4000);
                data(false, f.tsi, dport, f.cur, f.trail, &payload, &[])
            }
            8 => {
                let far = f.cur.wrapping_add(FAR);
                data(false, f.tsi, dport, far, f.trail, &payload, &[])
            }
            9 => {
                // A second packet agreeing with the jump: the window may move there.
                f.cur = f.cur.wrapping_add(FAR + 1);
                f.trail = f.cur.wrapping_sub(10);
                data(false, f.tsi, dport, f.cur, f.trail, &payload, &[])
            }
            10 => {
                let behind = f.cur.wrapping_sub(FAR);
                data(false, f.tsi, dport, behind, f.trail, &payload, &[])
            }
            11 => {
                let wide = f.cur.wrapping_sub((1 << 31) - 2);
                spm_of(f, wide, &[])
            }
            _ => {
                f.cur = f.cur.wrapping_add(1);
                data(false, f.tsi, dport, f.cur, f.trail, &payload, &[])
            }
        }
    }
}

// ---- what was sent ------------------------------------------------------------------------

/// The longest PGM packet (IP payload; PGM/UDP: UDP payload + 8) that leaves a 1500-byte
/// MTU unfragmented.
pub const UNFRAGMENTED: usize = 1480;

/// What a [`run`] sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets sent, per [`Attack::label`].
    pub sent: BTreeMap<&'static str, u64>,
    /// Malformed packets sent (whatever their attack), per [`WireError::reason`].
    pub malformed: BTreeMap<&'static str, u64>,
    /// Packets sent per (attack label, destination).
    pub by_dest: BTreeMap<(&'static str, To), u64>,
    /// Packets the kernel refused to queue (`ENOBUFS`, `EAGAIN`): not sent.
    pub refused: u64,
    /// Packets sent longer than [`UNFRAGMENTED`] per destination: the kernel sent them as
    /// IP fragments (a receiver that reads the link layer sees each fragment).
    pub fragmented: BTreeMap<To, u64>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Tally {
    /// Packets sent of the attack labelled `label`.
    pub fn of(&self, label: &str) -> u64 {
        self.sent.get(label).copied().unwrap_or(0)
    }

    /// Packets sent of the attacks labelled `labels`.
    pub fn sum(&self, labels: &[&str]) -> u64 {
        labels.iter().map(|l| self.of(l)).sum()
    }

    /// Packets of attack `label` sent to `to`.
    pub fn to(&self, label: &'static str, to: To) -> u64 {
        self.by_dest.get(&(label, to)).copied().unwrap_or(0)
    }

    /// Every packet sent.
    pub fn total(&self) -> u64 {
        self.sent.values().sum()
    }
}

impl Ord for To {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |t: &Self| match t {
            Self::Group => (0, 0),
            Self::Unicast(a) => (1, u32::from(*a)),
            Self::Multicast(a) => (2, u32::from(*a)),
        };
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for To {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// ---- sockets ------------------------------------------------------------------------------

/// How packets travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// PGM/IP: IP protocol 113.
    Ip,
    /// PGM/UDP: unicast packets to `unicast_port`, multicast to `multicast_port`.
    Udp {
        /// The port of unicast packets (NAKs, SPMRs, POLRs); OpenPGM's default 3055.
        unicast_port: u16,
        /// The port of multicast packets; OpenPGM's default 3056.
        multicast_port: u16,
    },
}

impl Encap {
    /// PGM/UDP on OpenPGM's (and `pgm`'s) default ports.
    pub const UDP: Self = Self::Udp {
        unicast_port: 3055,
        multicast_port: 3056,
    };
}

/// The socket the attacker sends from.
struct Out {
    socket: Socket,
    encap: Encap,
    group: Ipv4Addr,
}

impl Out {
    fn open(encap: Encap, me: Ipv4Addr, group: Ipv4Addr) -> Result<Self> {
        let socket = match encap {
            Encap::Ip => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))
                .context("raw IP protocol 113 socket (needs CAP_NET_RAW)")?,
            Encap::Udp { .. } => {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
                    .context("UDP socket")?;
                s.bind(&SockAddr::from(SocketAddrV4::new(me, 0)))
                    .with_context(|| format!("bind a UDP socket to {me}"))?;
                s
            }
        };
        socket
            .set_multicast_if_v4(&me)
            .with_context(|| format!("IP_MULTICAST_IF {me}"))?;
        socket
            .set_multicast_loop_v4(false)
            .context("IP_MULTICAST_LOOP off")?;
        socket
            .set_send_buffer_size(1 << 20)
            .context("SO_SNDBUF 1 MiB")?;
        Ok(Self {
            socket,
            encap,
            group,
        })
    }

    /// Sends one packet; `Ok(false)` if the kernel had no room for it.
    fn send(&self, bytes: &[u8], to: To) -> Result<bool> {
        let (addr, port) = match (to, self.encap) {
            (To::Group, Encap::Ip) => (self.group, 0),
            (To::Unicast(a), Encap::Ip) => (a, 0),
            (To::Group, Encap::Udp { multicast_port, .. }) => (self.group, multicast_port),
            (To::Unicast(a), Encap::Udp { unicast_port, .. }) => (a, unicast_port),
            (To::Multicast(a), Encap::Ip) => (a, 0),
            (To::Multicast(a), Encap::Udp { multicast_port, .. }) => (a, multicast_port),
        };
        let dest = SockAddr::from(SocketAddrV4::new(addr, port));
        match self.socket.send_to(bytes, &dest) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => Ok(false),
            Err(e) => {
                Err(e).with_context(|| format!("send {} bytes to {addr}:{port}", bytes.len()))
            }
        }
    }
}

/// What [`run`] needs besides the plan.
#[derive(Clone, Copy, Debug)]
pub struct AttackConfig {
    /// How packets travel.
    pub encap: Encap,
    /// The attacker's own address (its interface in the namespace it runs in).
    pub me: Ipv4Addr,
    /// The session attacked.
    pub session: Session,
    /// The seed of every random choice.
    pub seed: u64,
    /// Packets per second.
    pub pps: u32,
}

/// Sends `plan` from a thread inside `ns` (see the [module documentation](self)) and returns
/// what was sent. Each packet is made with the window as `edges` show it at that moment.
pub fn run(ns: &Ns, cfg: &AttackConfig, edges: &Edges, plan: &[Wave]) -> Result<Tally> {
    let total: usize = plan.iter().map(|w| w.count).sum();
    ensure!(
        total <= MAX_PACKETS,
        "an attack of {total} packets: at most {MAX_PACKETS}"
    );
    ensure!(
        (1..=MAX_PPS).contains(&cfg.pps),
        "an attack at {} packets/s: 1 to {MAX_PPS}",
        cfg.pps
    );
    let cfg = *cfg;
    let edges = edges.clone();
    ns.run(move || send_plan(&cfg, &edges, plan))
        .with_context(|| format!("enter {ns}"))?
}

#[expect(
    clippy::disallowed_methods,
    reason = "the attack is paced on the wall clock"
)]
fn send_plan(cfg: &AttackConfig, edges: &Edges, plan: &[Wave]) -> Result<Tally> {
    let out = Out::open(cfg.encap, cfg.me, cfg.session.group)?;
    let mut crafter = Crafter::new(cfg.seed, cfg.session, cfg.me);
    let mut order = Rng::new(cfg.seed ^ 0x000D_DE12_DE12);
    let mut done = vec![0usize; plan.len()];
    let mut left: usize = plan.iter().map(|w| w.count).sum();
    let mut tally = Tally::default();
    let gap = Duration::from_secs(1) / cfg.pps;
    let t0 = Instant::now();
    let mut n: u32 = 0;
    while left > 0 {
        // A wave with probability proportional to what it has left: its packets spread over
        // the run, each wave's in its own order.
        let mut pick = order.below(left as u64) as usize;
        let Some(k) = (0..plan.len()).find(|&k| {
            let rest = plan[k].count - done[k];
            if pick < rest {
                true
            } else {
                pick -= rest;
                false
            }
        }) else {
            bail!("no wave left to pick with {left} packets to send");
        };
        let wave = plan[k];
        let bytes = crafter.packet(wave.attack, done[k], wave.count, edges.window());
        done[k] += 1;
        left -= 1;
        let due = t0 + gap * n;
        n += 1;
        let now = Instant::now();
        if due > now + Duration::from_millis(2) {
            thread::sleep(due - now);
        }
        if out.send(&bytes, wave.to)? {
            let label = wave.attack.label();
            *tally.sent.entry(label).or_default() += 1;
            *tally.by_dest.entry((label, wave.to)).or_default() += 1;
            if let Err(e) = classify(&bytes) {
                *tally.malformed.entry(e.reason()).or_default() += 1;
            }
            let udp = if matches!(cfg.encap, Encap::Udp { .. }) {
                8
            } else {
                0
            };
            if bytes.len() + udp > UNFRAGMENTED {
                *tally.fragmented.entry(wave.to).or_default() += 1;
            }
        } else {
            tally.refused += 1;
            thread::sleep(Duration::from_millis(1));
        }
    }
    tally.elapsed = t0.elapsed();
    Ok(tally)
}

// ---- listening ----------------------------------------------------------------------------

/// The live edges of the session's transmit window, shared between a [`Sniffer`] and the
/// attack.
#[derive(Clone, Debug, Default)]
pub struct Edges(Arc<(AtomicU32, AtomicU32)>);

impl Edges {
    /// The window as last seen.
    pub fn window(&self) -> Window {
        Window {
            lead: self.0.0.load(Ordering::Relaxed),
            trail: self.0.1.load(Ordering::Relaxed),
        }
    }

    fn see(&self, lead: u32, trail: u32, first: bool) {
        let w = self.window();
        if first || Sqn(lead).gt(Sqn(w.lead)) {
            self.0.0.store(lead, Ordering::Relaxed);
        }
        if first || Sqn(trail).gt(Sqn(w.trail)) {
            self.0.1.store(trail, Ordering::Relaxed);
        }
    }
}

/// What a [`Sniffer`] heard addressed to the attacker, per `"<type>/<whose>"` (`whose`:
/// `session` for the real TSI, `fake` for [`fake_session_tsi`], `other`), e.g. `polr/session`,
/// and per `"<type>/<whose>@<IP source>"`, e.g. `nnak/session@10.20.2.1`: who sent it.
pub type Heard = BTreeMap<String, u64>;

#[derive(Debug, Default)]
struct SniffState {
    session: Option<Session>,
    heard: Heard,
    from_source: u64,
}

/// Listens on the attacker's host: learns the session from its source's packets, keeps
/// [`Edges`] up to date, and counts what is addressed to the attacker. Stops when dropped or
/// [`Sniffer::stop`]ped.
#[derive(Debug)]
pub struct Sniffer {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<SniffState>>,
    edges: Edges,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

/// What a [`Sniffer`] listens for.
#[derive(Clone, Copy, Debug)]
pub struct SniffConfig {
    /// How packets travel.
    pub encap: Encap,
    /// The attacker's address.
    pub me: Ipv4Addr,
    /// The session's source address.
    pub source: Ipv4Addr,
    /// The session's group.
    pub group: Ipv4Addr,
    /// The session's data-destination port.
    pub dport: u16,
    /// The seed of the attack (for [`fake_session_tsi`]).
    pub seed: u64,
}

impl Sniffer {
    /// Starts listening in `ns`. Fails if the sockets cannot be opened there.
    pub fn start(ns: &Ns, cfg: SniffConfig) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(SniffState::default()));
        let edges = Edges::default();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let thread = {
            let (stop, state, edges) = (Arc::clone(&stop), Arc::clone(&state), edges.clone());
            ns.spawn_thread(move || sniff(cfg, &stop, &state, &edges, &ready_tx))
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("sniffer in {ns}"))),
            Err(_) => {
                let why = match thread.join() {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "it did not start".to_owned(),
                };
                bail!("sniffer in {ns}: {why}");
            }
        }
        Ok(Self {
            stop,
            state,
            edges,
            thread: Some(thread),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SniffState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` until the session's source has been heard; returns the session.
    pub fn session(&self, timeout: Duration) -> Result<Session> {
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            if let Some(s) = self.state().session {
                return Ok(s);
            }
            if waited >= timeout {
                bail!("no ODATA or SPM of the session heard within {timeout:?}");
            }
            thread::sleep(step);
            waited += step;
        }
    }

    /// The live window edges.
    pub fn edges(&self) -> Edges {
        self.edges.clone()
    }

    /// Packets heard from the session's source so far.
    pub fn from_source(&self) -> u64 {
        self.state().from_source
    }

    /// Stops listening; returns what was addressed to the attacker.
    pub fn stop(mut self) -> Result<Heard> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r??,
                Err(_) => bail!("the sniffer thread panicked"),
            }
        }
        Ok(std::mem::take(&mut self.state().heard))
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sniffer's sockets: PGM/IP one raw socket (IP header included in what it reads),
/// PGM/UDP the group's port and the attacker's unicast port.
fn sniff_sockets(cfg: &SniffConfig) -> Result<Vec<Socket>> {
    let timeout = Some(Duration::from_millis(50));
    let join = |s: &Socket| {
        s.join_multicast_v4(&cfg.group, &cfg.me)
            .with_context(|| format!("join {} on {}", cfg.group, cfg.me))
    };
    let mut out = Vec::new();
    match cfg.encap {
        Encap::Ip => {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))
                .context("raw IP protocol 113 socket (needs CAP_NET_RAW)")?;
            join(&s)?;
            out.push(s);
        }
        Encap::Udp {
            unicast_port,
            multicast_port,
        } => {
            let m = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            m.set_reuse_address(true)?;
            m.bind(&SockAddr::from(SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                multicast_port,
            )))
            .with_context(|| format!("bind UDP port {multicast_port}"))?;
            join(&m)?;
            let u = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            u.bind(&SockAddr::from(SocketAddrV4::new(cfg.me, unicast_port)))
                .with_context(|| format!("bind UDP {}:{unicast_port}", cfg.me))?;
            out.push(m);
            out.push(u);
        }
    }
    for s in &out {
        s.set_read_timeout(timeout)?;
        s.set_nonblocking(false)?;
        let _ = s.set_recv_buffer_size(4 << 20);
    }
    Ok(out)
}

fn sniff(
    cfg: SniffConfig,
    stop: &AtomicBool,
    state: &Mutex<SniffState>,
    edges: &Edges,
    ready: &mpsc::SyncSender<Result<()>>,
) -> Result<()> {
    let sockets = match sniff_sockets(&cfg) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            bail!("{msg}");
        }
    };
    let fake = fake_session_tsi(cfg.seed);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 65_536];
    let mut seen_first = false;
    while !stop.load(Ordering::Relaxed) {
        for (k, s) in sockets.iter().enumerate() {
            let (n, from) = match s.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("sniffer receive"),
            };
            // SAFETY: recv_from initialised the first `n` bytes.
            let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
            let (src, dst, pgm) = match cfg.encap {
                Encap::Ip => {
                    let Some(ihl) = bytes.first().map(|b| usize::from(b & 0x0F) * 4) else {
                        continue;
                    };
                    if bytes.len() < ihl.max(20) {
                        continue;
                    }
                    let a = |at: usize| {
                        Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
                    };
                    (a(12), Some(a(16)), &bytes[ihl..])
                }
                Encap::Udp { .. } => {
                    let Some(src) = from.as_socket_ipv4().map(|a| *a.ip()) else {
                        continue;
                    };
                    // The second socket is the attacker's unicast port.
                    let dst = (k == 1).then_some(cfg.me);
                    (src, dst, bytes)
                }
            };
            if src == cfg.me || classify(pgm).is_err() {
                continue;
            }
            let p = Packet::new_unchecked(pgm);
            let tsi = p.tsi();
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            if src == cfg.source {
                st.from_source += 1;
                let ty = p.packet_type();
                let port = p.dest_port();
                if port != cfg.dport || !matches!(ty, PacketType::Odata | PacketType::Spm) {
                    continue;
                }
                let session = *st.session.get_or_insert(Session {
                    tsi,
                    dport: cfg.dport,
                    source: cfg.source,
                    group: cfg.group,
                });
                if session.tsi != tsi {
                    continue;
                }
                if let Some(w) = window_of(pgm) {
                    edges.see(w.lead, w.trail, !seen_first);
                    seen_first = true;
                }
            } else if dst == Some(cfg.me) {
                let whose = if st.session.is_some_and(|s| s.tsi == tsi) {
                    "session"
                } else if tsi == fake {
                    "fake"
                } else {
                    "other"
                };
                let key = format!("{}/{whose}", p.packet_type().label());
                // And by sender: a router that relays NAKs or NNAKs upstream to us is not the
                // role that sent them first.
                *st.heard.entry(format!("{key}@{src}")).or_default() += 1;
                *st.heard.entry(key).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// The window an ODATA (its sqn as lead) or an SPM says the source has.
fn window_of(pgm: &[u8]) -> Option<Window> {
    match Repr::parse_bytes(pgm).ok()?.body {
        Body::Odata(d) => Some(Window {
            lead: d.sqn.0,
            trail: d.trail.0,
        }),
        Body::Spm(s) if s.trail != Sqn(0) || s.lead != Sqn(0x8000_0000) => Some(Window {
            lead: s.lead.0,
            trail: s.trail.0,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            tsi: Tsi::new(Gsi([1, 2, 3, 4, 5, 6]), 4242),
            dport: 7500,
            source: Ipv4Addr::new(10, 20, 1, 2),
            group: Ipv4Addr::new(239, 192, 20, 1),
        }
    }

    const ME: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 66);
    const W: Window = Window {
        lead: 5000,
        trail: 100,
    };

    #[test]
    fn each_malformation_is_refused_for_its_reason() {
        let mut rng = Rng::new(1);
        for m in Malformation::ALL {
            for i in 0..40 {
                let p = m.packet(&session(), W, i, &mut rng);
                let got = classify(&p).map_err(|e| e.reason());
                assert_eq!(got, Err(m.reason()), "{m:?} #{i}: {p:02x?}");
            }
        }
    }

    #[test]
    fn every_truncation_is_malformed_and_the_templates_are_not() {
        let s = session();
        for t in truncation_templates(&s, W, ME) {
            assert_eq!(classify(&t), Ok(()));
            for len in 0..t.len() {
                assert!(classify(&t[..len]).is_err(), "{len} of {}", t.len());
            }
        }
        let mut c = Crafter::new(3, s, ME);
        let total: usize = truncation_templates(&s, W, ME).iter().map(Vec::len).sum();
        for i in 0..total {
            assert!(classify(&c.packet(Attack::Truncations, i, total, W)).is_err());
        }
    }

    #[test]
    fn well_formed_attacks_parse_and_carry_what_they_say() {
        let s = session();
        let mut c = Crafter::new(7, s, ME);
        for attack in [
            Attack::FakeSources,
            Attack::FakeFin,
            Attack::FakeRst,
            Attack::SpoofFin,
            Attack::SpoofRst,
            Attack::SpoofData,
            Attack::SpoofRepair,
            Attack::FarAhead,
            Attack::FarBehind,
            Attack::WideWindow,
            Attack::FlippedSqn,
            Attack::Fragments,
            Attack::OddOptions,
            Attack::WindowStretch,
            Attack::NakRandom,
            Attack::NakInWindow,
            Attack::NakFar,
            Attack::NakFakeTsi,
            Attack::Nnak,
            Attack::Ncf,
            Attack::Spmr,
            Attack::Poll,
            Attack::PollDlr,
            Attack::Polr,
            Attack::Ack,
            Attack::FakeSession,
        ] {
            for i in 0..40 {
                let p = c.packet(attack, i, 40, W);
                assert_eq!(classify(&p), Ok(()), "{attack:?} #{i}");
                let r = Repr::parse_bytes(&p).expect("parses");
                let real = r.tsi() == s.tsi;
                match attack {
                    Attack::FakeSources
                    | Attack::FakeFin
                    | Attack::FakeRst
                    | Attack::NakFakeTsi
                    | Attack::WindowStretch => assert!(!real, "{attack:?}"),
                    Attack::FakeSession => assert_eq!(r.tsi(), fake_session_tsi(7)),
                    Attack::OddOptions => assert_eq!(real, i % 2 == 0),
                    _ => assert!(real, "{attack:?} #{i}: {r}"),
                }
                if matches!(attack, Attack::SpoofFin | Attack::FakeFin) {
                    assert!(r.options.iter().any(|o| o.value == OptionValue::Fin), "{r}");
                }
            }
        }
    }

    #[test]
    fn odd_unknown_options_are_well_formed() {
        let mut c = Crafter::new(9, session(), ME);
        let odd = (0..8)
            .map(|i| c.packet(Attack::OddOptions, i, 8, W))
            .filter(|p| {
                let r = Repr::parse_bytes(p).expect("parses");
                r.options.iter().any(
                    |o| matches!(o.value, OptionValue::Unknown { data, .. } if data.len() % 2 == 1),
                )
            })
            .count();
        assert_eq!(odd, 8);
    }

    #[test]
    fn the_same_seed_crafts_the_same_bytes() {
        let make = |seed| {
            let mut c = Crafter::new(seed, session(), ME);
            (0..50)
                .map(|i| c.packet(Attack::RandomBytes, i, 50, W))
                .collect::<Vec<_>>()
        };
        assert_eq!(make(11), make(11));
        assert_ne!(make(11), make(12));
    }

    #[test]
    fn window_stretch_pairs_one_tsi() {
        let mut c = Crafter::new(5, session(), ME);
        let a_bytes = c.packet(Attack::WindowStretch, 0, 2, W);
        let a = Repr::parse_bytes(&a_bytes).expect("parses");
        let b_bytes = c.packet(Attack::WindowStretch, 1, 2, W);
        let b = Repr::parse_bytes(&b_bytes).expect("parses");
        assert_eq!(a.tsi(), b.tsi());
        let (Body::Odata(x), Body::Odata(y)) = (a.body, b.body) else {
            panic!("not ODATA");
        };
        assert_eq!(y.sqn.0.wrapping_sub(x.sqn.0), STRETCH);
    }
}
