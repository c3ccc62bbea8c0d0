//! Owned models of packets and options for the property and fuzz tests: proptest strategies
//! generate these, and `Model::repr` borrows a `Repr` from them.

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pgm_core::wire::{
    AckRepr, Body, DataRepr, Gsi, NakRepr, Nla, OptFlags, OptionList, OptionValue, PgmOption,
    PollRepr, PollSubtype, PolrRepr, Repr, SpmRepr, Sqn, SqnList,
};
use proptest::prelude::*;

/// An option with owned contents.
#[derive(Debug, Clone)]
pub enum OwnedValue {
    Fragment(u32, u32, u32),
    NakList(Vec<Sqn>),
    Join(u32),
    NakBoIvl(u32, u32),
    NakBoRng(u32, u32),
    Redirect(Nla),
    ParityPrm(bool, bool, u32),
    ParityGrp(u32),
    CurrTgsize(u32),
    NbrUnreach,
    PathNla(Nla),
    Syn,
    Fin,
    Rst(bool, u8),
    Cr(u8, u32, u16, u16, u16, Nla),
    Crqst(u8),
    PgmccData(u32, Nla),
    PgmccFeedback(u32, u16, Nla),
    Invalid(u8, Vec<u8>),
    Unknown(u8, u8, Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct OwnedOption {
    pub flags: OptFlags,
    pub value: OwnedValue,
}

impl OwnedOption {
    pub fn as_option(&self) -> PgmOption<'_> {
        let value = match &self.value {
            OwnedValue::Fragment(a, b, c) => OptionValue::Fragment {
                first_sqn: Sqn(*a),
                offset: *b,
                length: *c,
            },
            OwnedValue::NakList(v) => OptionValue::NakList(SqnList::Slice(v)),
            OwnedValue::Join(a) => OptionValue::Join { min_sqn: Sqn(*a) },
            OwnedValue::NakBoIvl(a, b) => OptionValue::NakBoIvl {
                ivl_us: *a,
                poll_sqn: Sqn(*b),
            },
            OwnedValue::NakBoRng(a, b) => OptionValue::NakBoRng {
                max_us: *a,
                min_us: *b,
            },
            OwnedValue::Redirect(n) => OptionValue::Redirect(*n),
            OwnedValue::ParityPrm(p, o, t) => OptionValue::ParityPrm {
                proactive: *p,
                on_demand: *o,
                tg_size: *t,
            },
            OwnedValue::ParityGrp(g) => OptionValue::ParityGrp { group: *g },
            OwnedValue::CurrTgsize(s) => OptionValue::CurrTgsize { size: *s },
            OwnedValue::NbrUnreach => OptionValue::NbrUnreach,
            OwnedValue::PathNla(n) => OptionValue::PathNla(*n),
            OwnedValue::Syn => OptionValue::Syn,
            OwnedValue::Fin => OptionValue::Fin,
            OwnedValue::Rst(n, c) => OptionValue::Rst {
                no_naks: *n,
                error_code: *c,
            },
            OwnedValue::Cr(w, l, a, b, c, n) => OptionValue::Cr {
                which: *w,
                lead: Sqn(*l),
                ne_worst_link: *a,
                ne_worst_path: *b,
                rx_worst_path: *c,
                receiver: *n,
            },
            OwnedValue::Crqst(w) => OptionValue::Crqst { which: *w },
            OwnedValue::PgmccData(t, n) => OptionValue::PgmccData {
                tstamp: *t,
                acker: *n,
            },
            OwnedValue::PgmccFeedback(t, l, n) => OptionValue::PgmccFeedback {
                tstamp: *t,
                loss_rate: *l,
                receiver: *n,
            },
            OwnedValue::Invalid(s, d) => OptionValue::Invalid {
                specific: *s,
                data: d,
            },
            OwnedValue::Unknown(code, s, d) => OptionValue::Unknown {
                code: *code,
                specific: *s,
                data: d,
            },
        };
        PgmOption {
            flags: self.flags,
            value,
        }
    }
}

#[derive(Debug, Clone)]
pub enum OwnedBody {
    Spm(SpmRepr),
    Poll(PollRepr),
    Polr(PolrRepr),
    Odata(u32, u32, Vec<u8>),
    Rdata(u32, u32, Vec<u8>),
    Nak(NakRepr),
    Nnak(NakRepr),
    Ncf(NakRepr),
    Spmr,
    Ack(AckRepr),
}

/// A whole packet with owned contents.
#[derive(Debug, Clone)]
pub struct Model {
    pub sport: u16,
    pub dport: u16,
    pub gsi: [u8; 6],
    pub parity: bool,
    pub var_pktlen: bool,
    pub body: OwnedBody,
    pub options: Vec<OwnedOption>,
}

impl Model {
    /// Borrows the options; the caller keeps the Vec alive.
    pub fn option_values(&self) -> Vec<PgmOption<'_>> {
        self.options.iter().map(OwnedOption::as_option).collect()
    }

    pub fn repr<'a>(&'a self, opts: &'a [PgmOption<'a>]) -> Repr<'a> {
        let body = match &self.body {
            OwnedBody::Spm(r) => Body::Spm(*r),
            OwnedBody::Poll(r) => Body::Poll(*r),
            OwnedBody::Polr(r) => Body::Polr(*r),
            OwnedBody::Odata(s, t, p) => Body::Odata(DataRepr {
                sqn: Sqn(*s),
                trail: Sqn(*t),
                payload: p,
            }),
            OwnedBody::Rdata(s, t, p) => Body::Rdata(DataRepr {
                sqn: Sqn(*s),
                trail: Sqn(*t),
                payload: p,
            }),
            OwnedBody::Nak(r) => Body::Nak(*r),
            OwnedBody::Nnak(r) => Body::Nnak(*r),
            OwnedBody::Ncf(r) => Body::Ncf(*r),
            OwnedBody::Spmr => Body::Spmr,
            OwnedBody::Ack(r) => Body::Ack(*r),
        };
        Repr {
            sport: self.sport,
            dport: self.dport,
            gsi: Gsi(self.gsi),
            parity: self.parity,
            var_pktlen: self.var_pktlen,
            body,
            options: if opts.is_empty() {
                OptionList::EMPTY
            } else {
                OptionList::Slice(opts)
            },
        }
    }

    /// Emits the model into a fresh buffer.
    pub fn emit(&self) -> Vec<u8> {
        let opts = self.option_values();
        let repr = self.repr(&opts);
        let mut buf = vec![0u8; repr.buffer_len()];
        let n = repr.emit(&mut buf).expect("emit");
        assert_eq!(n, buf.len());
        buf
    }
}

pub fn nla() -> impl Strategy<Value = Nla> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Nla(IpAddr::V4(Ipv4Addr::from(a)))),
        any::<[u8; 16]>().prop_map(|a| Nla(IpAddr::V6(Ipv6Addr::from(a)))),
    ]
}

fn sqn() -> impl Strategy<Value = Sqn> {
    any::<u32>().prop_map(Sqn)
}

pub fn option_value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        any::<(u32, u32, u32)>().prop_map(|(a, b, c)| OwnedValue::Fragment(a, b, c)),
        prop::collection::vec(sqn(), 1..=62).prop_map(OwnedValue::NakList),
        any::<u32>().prop_map(OwnedValue::Join),
        any::<(u32, u32)>().prop_map(|(a, b)| OwnedValue::NakBoIvl(a, b)),
        any::<(u32, u32)>().prop_map(|(a, b)| OwnedValue::NakBoRng(a, b)),
        nla().prop_map(OwnedValue::Redirect),
        any::<(bool, bool, u32)>().prop_map(|(p, o, t)| OwnedValue::ParityPrm(p, o, t)),
        any::<u32>().prop_map(OwnedValue::ParityGrp),
        any::<u32>().prop_map(OwnedValue::CurrTgsize),
        Just(OwnedValue::NbrUnreach),
        nla().prop_map(OwnedValue::PathNla),
        Just(OwnedValue::Syn),
        Just(OwnedValue::Fin),
        (any::<bool>(), 0u8..64).prop_map(|(n, c)| OwnedValue::Rst(n, c)),
        (
            0u8..8,
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            nla()
        )
            .prop_map(|(w, l, a, b, c, n)| OwnedValue::Cr(w, l, a, b, c, n)),
        (0u8..8).prop_map(OwnedValue::Crqst),
        (any::<u32>(), nla()).prop_map(|(t, n)| OwnedValue::PgmccData(t, n)),
        (any::<u32>(), any::<u16>(), nla())
            .prop_map(|(t, l, n)| OwnedValue::PgmccFeedback(t, l, n)),
        (0u8..128, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(s, d)| OwnedValue::Invalid(s, d)),
        (
            prop::sample::select(vec![0x06u8, 0x14, 0x20, 0x3C, 0x7E]),
            0u8..128,
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(c, s, d)| OwnedValue::Unknown(c, s, d)),
    ]
}

pub fn option() -> impl Strategy<Value = OwnedOption> {
    (any::<u8>(), any::<bool>(), option_value()).prop_map(|(byte2, u, value)| OwnedOption {
        flags: OptFlags {
            byte2,
            encoded_null: u,
        },
        value,
    })
}

fn nak_repr() -> impl Strategy<Value = NakRepr> {
    (sqn(), nla(), nla()).prop_map(|(sqn, source, group)| NakRepr { sqn, source, group })
}

pub fn body() -> impl Strategy<Value = OwnedBody> {
    let payload = || prop::collection::vec(any::<u8>(), 0..1500);
    prop_oneof![
        (sqn(), sqn(), sqn(), nla()).prop_map(|(sqn, trail, lead, path)| OwnedBody::Spm(SpmRepr {
            sqn,
            trail,
            lead,
            path
        })),
        (
            sqn(),
            any::<u16>(),
            any::<u16>(),
            nla(),
            any::<u32>(),
            any::<[u8; 4]>(),
            any::<u32>()
        )
            .prop_map(
                |(sqn, round, st, path, bo, rand, mask)| OwnedBody::Poll(PollRepr {
                    sqn,
                    round,
                    subtype: PollSubtype::from_value(st),
                    path,
                    backoff_ivl_us: bo,
                    rand,
                    mask,
                })
            ),
        (sqn(), any::<u16>()).prop_map(|(sqn, round)| OwnedBody::Polr(PolrRepr { sqn, round })),
        (any::<u32>(), any::<u32>(), payload()).prop_map(|(s, t, p)| OwnedBody::Odata(s, t, p)),
        (any::<u32>(), any::<u32>(), payload()).prop_map(|(s, t, p)| OwnedBody::Rdata(s, t, p)),
        nak_repr().prop_map(OwnedBody::Nak),
        nak_repr().prop_map(OwnedBody::Nnak),
        nak_repr().prop_map(OwnedBody::Ncf),
        Just(OwnedBody::Spmr),
        (sqn(), any::<u32>())
            .prop_map(|(rx_max, bitmap)| OwnedBody::Ack(AckRepr { rx_max, bitmap })),
    ]
}

pub fn model() -> impl Strategy<Value = Model> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<[u8; 6]>(),
        any::<bool>(),
        any::<bool>(),
        body(),
        prop::collection::vec(option(), 0..=16),
    )
        .prop_map(
            |(sport, dport, gsi, parity, var_pktlen, body, options)| Model {
                sport,
                dport,
                gsi,
                parity,
                var_pktlen,
                body,
                options,
            },
        )
}
