//! Packets decoded from the fuzz input: mostly well-formed ones built with the wire module's
//! `Repr`, for a small world of sessions and hosts so that packets meet state, with fields
//! the input chooses (sequence numbers near the session's and far, options of every type);
//! some mutated after emission, some raw bytes, some echoes of what the engine sent.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pgm_core::wire::{
    AckRepr, Body, DataRepr, Gsi, MAX_NAK_LIST, NakRepr, Nla, OptFlags, OptionList, OptionValue,
    Packet, PacketType, PgmOption, PollRepr, PollSubtype, PolrRepr, Repr, SpmRepr, Sqn, SqnList,
    Tsi,
};

use crate::input::Input;

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The session's source host.
pub(crate) const SRC: IpAddr = v4(10, 1, 1, 2);
/// The upstream network element of the receivers (their SPM_PATH).
pub(crate) const PARENT: IpAddr = v4(10, 1, 2, 1);
/// A receiver on the network element's LAN A.
pub(crate) const RCV_A: IpAddr = v4(10, 1, 3, 11);
/// A receiver on LAN B.
pub(crate) const RCV_B: IpAddr = v4(10, 1, 4, 11);
/// The designated local repairer.
pub(crate) const DLR: IpAddr = v4(10, 1, 3, 9);
/// A host that belongs to no session.
pub(crate) const STRANGER: IpAddr = v4(192, 0, 2, 66);
/// An IPv6 host.
pub(crate) const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2));
/// The session's group.
pub(crate) const GROUP: IpAddr = v4(239, 192, 0, 1);
/// Another group.
pub(crate) const GROUP2: IpAddr = v4(239, 192, 0, 2);
/// An IPv6 group.
pub(crate) const GROUP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1));

/// The network element's interfaces: (index, address). The first is upstream.
pub(crate) const NE_IFACES: [(u32, IpAddr); 4] = [
    (1, v4(10, 1, 2, 2)),
    (2, v4(10, 1, 3, 1)),
    (3, v4(10, 1, 4, 1)),
    (4, IpAddr::V6(Ipv6Addr::new(0xfd00, 4, 0, 0, 0, 0, 0, 1))),
];
/// Interface indices packets may arrive on: the element's and one it does not have.
const IFACES: [u32; 5] = [1, 2, 3, 4, 99];

const HOSTS: [IpAddr; 10] = [
    SRC,
    PARENT,
    RCV_A,
    RCV_B,
    DLR,
    STRANGER,
    SRC6,
    NE_IFACES[0].1,
    NE_IFACES[1].1,
    NE_IFACES[3].1,
];
const GROUPS: [IpAddr; 3] = [GROUP, GROUP2, GROUP6];

/// The data-destination port of the world's sessions.
pub(crate) const DPORT: u16 = 7500;
/// The main session, the one the engine under test serves or is.
pub(crate) const MAIN: Tsi = Tsi {
    gsi: Gsi([1, 2, 3, 4, 5, 6]),
    sport: 4000,
};
const TSIS: [Tsi; 3] = [
    MAIN,
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4001,
    },
    Tsi {
        gsi: Gsi([9, 9, 9, 9, 9, 9]),
        sport: 4000,
    },
];

/// A packet and what the driver knows of its arrival.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) bytes: Vec<u8>,
    pub(crate) from: IpAddr,
    pub(crate) to: IpAddr,
    pub(crate) ifindex: u32,
    pub(crate) ttl: u8,
}

/// The sessions packets are made for, and what the harness knows of their progress.
pub(crate) struct World {
    /// Packet types by weight, for the engine under test.
    types: &'static [(u32, PacketType)],
    /// Per TSI: the sequence number data has reached (sqns are chosen around it).
    pub(crate) bases: [Sqn; 3],
    /// Per TSI: the last SPM sequence number sent.
    spm_sqns: [Sqn; 3],
    /// The window size sequence numbers are scaled by ("near", "at the window's edge").
    pub(crate) scale: u32,
    /// The last packets the engine sent, to feed back.
    pub(crate) recent: VecDeque<(PacketType, Vec<u8>)>,
    /// Where NAKs are usually sent (the engine's address if it takes NAKs).
    pub(crate) nak_to: IpAddr,
}

impl World {
    pub(crate) fn new(
        inp: &mut Input<'_>,
        types: &'static [(u32, PacketType)],
        scale: u32,
    ) -> Self {
        let start = match inp.below(4) {
            0 => Sqn(0),
            1 => Sqn(u32::MAX - inp.below(64)),
            2 => Sqn(0x8000_0000 - inp.below(64)),
            _ => Sqn(inp.u32()),
        };
        let other = Sqn(inp.u32());
        Self {
            types,
            bases: [start, other, Sqn(other.0 ^ 0x5555_5555)],
            spm_sqns: [Sqn(0); 3],
            scale: scale.max(1),
            recent: VecDeque::new(),
            nak_to: PARENT,
        }
    }

    /// Remembers a packet the engine sent.
    pub(crate) fn sent(&mut self, ty: PacketType, bytes: &[u8]) {
        if self.recent.len() == 8 {
            self.recent.pop_front();
        }
        self.recent.push_back((ty, bytes.to_vec()));
    }

    fn tsi_index(inp: &mut Input<'_>) -> usize {
        inp.weighted(&[(8, 0), (2, 1), (1, 2)])
    }

    /// The usual (IP source, IP destination, interface) of a packet of type `ty`.
    fn default_meta(&self, ty: PacketType) -> (IpAddr, IpAddr, u32) {
        match ty {
            PacketType::Nak | PacketType::Nnak => (RCV_A, self.nak_to, 2),
            PacketType::Spmr | PacketType::Ack => (RCV_A, SRC, 2),
            PacketType::Polr => (RCV_A, NE_IFACES[1].1, 2),
            _ => (SRC, GROUP, 1),
        }
    }

    /// A sequence number around `base`: mostly just ahead, sometimes behind, at the window's
    /// edge, half the number space away or anywhere.
    pub(crate) fn sqn_near(&self, inp: &mut Input<'_>, base: Sqn) -> Sqn {
        let s = self.scale;
        match inp.below(12) {
            0..=4 => base + inp.below(16),
            5 => base - inp.below(16),
            6 => base + inp.below(s.saturating_mul(2).max(2)),
            7 => base - inp.below(s.saturating_mul(2).max(2)),
            8 => base + s - 2 + inp.below(4),
            9 => base + 0x8000_0000 - 2 + inp.below(4),
            10 => base + inp.below(0x10_0000),
            _ => Sqn(inp.u32()),
        }
    }

    /// A trailing edge for data up to `base`.
    fn trail_near(&self, inp: &mut Input<'_>, base: Sqn) -> Sqn {
        match inp.below(8) {
            0..=2 => base - inp.below(self.scale),
            3 => base + 1,
            4 => base + inp.below(self.scale.saturating_mul(2).max(2)),
            5 => base - self.scale - inp.below(4),
            6 => Sqn(inp.u32()),
            _ => base - inp.below(4),
        }
    }

    /// The next packet for the engine.
    pub(crate) fn packet(&mut self, inp: &mut Input<'_>) -> Delivery {
        let mut d = match inp.below(16) {
            0..=11 => self.built(inp),
            12 | 13 => {
                let mut d = self.built(inp);
                mutate(inp, &mut d.bytes);
                d
            }
            14 => raw(inp),
            _ => match self.recent.len() {
                0 => self.built(inp),
                n => {
                    let (ty, mut bytes) = self.recent[inp.below(n as u32) as usize].clone();
                    if inp.one_in(3) {
                        mutate(inp, &mut bytes);
                    }
                    let (from, to, ifindex) = self.default_meta(ty);
                    Delivery {
                        bytes,
                        from,
                        to,
                        ifindex,
                        ttl: 64,
                    }
                }
            },
        };
        // Anyone can send anything from anywhere.
        if inp.one_in(4) {
            d.from = inp.pick(&HOSTS);
        }
        if inp.one_in(6) {
            d.to = if inp.bool() {
                inp.pick(&GROUPS)
            } else {
                inp.pick(&HOSTS)
            };
        }
        if inp.one_in(6) {
            d.ifindex = inp.pick(&IFACES);
        }
        if inp.one_in(8) {
            d.ttl = inp.pick(&[0, 1, 2, 255]);
        }
        d
    }

    /// A well-formed packet of a type the engine cares about.
    fn built(&mut self, inp: &mut Input<'_>) -> Delivery {
        let ty = inp.weighted(self.types);
        let ti = Self::tsi_index(inp);
        let tsi = TSIS[ti];
        let base = self.bases[ti];
        let port = match inp.below(12) {
            0 => DPORT + 1,
            1 => inp.u16(),
            _ => DPORT,
        };
        let (sport, dport) = if ty.is_upstream() {
            (port, tsi.sport)
        } else {
            (tsi.sport, port)
        };
        let sqn = self.sqn_near(inp, base);
        let nla = |inp: &mut Input<'_>, usual: IpAddr| {
            if inp.one_in(5) {
                Nla(if inp.bool() {
                    inp.pick(&HOSTS)
                } else {
                    inp.pick(&GROUPS)
                })
            } else {
                Nla(usual)
            }
        };
        let payload_len = match inp.below(16) {
            0 => 0,
            1..=9 => 1 + inp.below(16),
            10..=13 => 17 + inp.below(200),
            _ => 217 + inp.below(1300),
        } as usize;
        let payload = vec![inp.u8(); payload_len];
        let mut trail = self.trail_near(inp, base);
        let body = match ty {
            PacketType::Spm => {
                let s = &mut self.spm_sqns[ti];
                let spm_sqn = match inp.below(8) {
                    0..=5 => *s + 1,
                    6 => *s - inp.below(3),
                    _ => Sqn(inp.u32()),
                };
                if spm_sqn.gt(*s) {
                    *s = spm_sqn;
                }
                let lead = match inp.below(4) {
                    0 | 1 => base,
                    2 => sqn,
                    _ => trail - 1,
                };
                if inp.one_in(8) {
                    // The "no window" SPM of §8.1 (trail 0, lead 2^31).
                    trail = Sqn(0);
                    Body::Spm(SpmRepr {
                        sqn: spm_sqn,
                        trail,
                        lead: Sqn(0x8000_0000),
                        path: nla(inp, PARENT),
                    })
                } else {
                    Body::Spm(SpmRepr {
                        sqn: spm_sqn,
                        trail,
                        lead,
                        path: nla(inp, PARENT),
                    })
                }
            }
            PacketType::Poll => Body::Poll(PollRepr {
                sqn: Sqn(inp.below(4)),
                round: inp.pick(&[0, 0, 1, 2, u16::MAX]),
                subtype: inp.pick(&[
                    PollSubtype::General,
                    PollSubtype::General,
                    PollSubtype::Dlr,
                    PollSubtype::Unknown(7),
                ]),
                path: nla(inp, PARENT),
                backoff_ivl_us: inp.pick(&[0, 1, 1000, 100_000, 5_000_000, u32::MAX]),
                rand: inp.u32().to_be_bytes(),
                mask: inp.pick(&[0, 0, 1, 0xFF, u32::MAX]),
            }),
            PacketType::Polr => Body::Polr(PolrRepr {
                sqn: Sqn(inp.below(4)),
                round: inp.below(3) as u16,
            }),
            PacketType::Odata | PacketType::Rdata => {
                let d = DataRepr {
                    sqn,
                    trail,
                    payload: &[],
                };
                if ty == PacketType::Odata {
                    Body::Odata(d)
                } else {
                    Body::Rdata(d)
                }
            }
            PacketType::Nak | PacketType::Nnak | PacketType::Ncf => {
                let n = NakRepr {
                    sqn,
                    source: nla(inp, SRC),
                    group: nla(inp, GROUP),
                };
                match ty {
                    PacketType::Nak => Body::Nak(n),
                    PacketType::Nnak => Body::Nnak(n),
                    _ => Body::Ncf(n),
                }
            }
            PacketType::Ack => {
                let any = inp.u32();
                Body::Ack(AckRepr {
                    rx_max: sqn,
                    bitmap: inp.pick(&[u32::MAX, u32::MAX - 1, 0b1011, 0, any]),
                })
            }
            _ => Body::Spmr,
        };
        let opts = self.options(inp, ty, sqn, base, payload_len);
        let bytes = emit(sport, dport, tsi.gsi, inp.one_in(16), body, &opts, &payload);
        if ti == 0 && ty.is_data() && sqn.gt(base) && sqn.since(base).is_some_and(|d| d < 64) {
            self.bases[ti] = sqn;
        }
        let (from, to, ifindex) = self.default_meta(ty);
        Delivery {
            bytes,
            from,
            to,
            ifindex,
            ttl: 64,
        }
    }

    /// Options for a packet of type `ty`: mostly none, sometimes those of its type, sometimes
    /// anything.
    fn options(
        &self,
        inp: &mut Input<'_>,
        ty: PacketType,
        sqn: Sqn,
        base: Sqn,
        payload_len: usize,
    ) -> Vec<OwnedOpt> {
        let count = inp.weighted(&[(8, 0), (4, 1), (2, 2), (1, 3), (1, 5)]);
        let mut v = Vec::new();
        for _ in 0..count {
            let relevant = !inp.one_in(4);
            let pick = if relevant {
                match ty {
                    PacketType::Odata | PacketType::Rdata => {
                        inp.pick(&[0u32, 0, 0, 2, 3, 4, 5, 6, 20, 23, 23])
                    }
                    PacketType::Ack => inp.pick(&[22, 22, 22, 20]),
                    PacketType::Spm => inp.pick(&[2, 4, 5, 6, 15, 20]),
                    PacketType::Nak | PacketType::Nnak | PacketType::Ncf => {
                        inp.pick(&[1, 1, 1, 20, 21, 22])
                    }
                    PacketType::Polr => inp.pick(&[7, 7, 20, 21]),
                    PacketType::Poll => inp.pick(&[8, 9, 20]),
                    _ => inp.below(24),
                }
            } else {
                inp.below(24)
            };
            let value = match pick {
                0 => {
                    let first = if inp.one_in(3) {
                        sqn - inp.below(4)
                    } else {
                        sqn
                    };
                    let len = payload_len as u32;
                    let (any_offset, any_length) = (inp.u32() % 4096, inp.u32());
                    Opt::V(OptionValue::Fragment {
                        first_sqn: first,
                        offset: inp.pick(&[0, 0, len, 2 * len, any_offset, u32::MAX]),
                        length: inp.pick(&[len, 2 * len, 3 * len, len + 1, any_length]),
                    })
                }
                1 => {
                    let n = if inp.one_in(4) {
                        MAX_NAK_LIST as u32
                    } else {
                        inp.below(MAX_NAK_LIST as u32 + 1)
                    };
                    let list = (0..n).map(|_| self.sqn_near(inp, base)).collect();
                    Opt::NakList(list)
                }
                2 => Opt::V(OptionValue::Join {
                    min_sqn: base - inp.below(self.scale.saturating_mul(2).max(2)),
                }),
                3 => Opt::V(OptionValue::Syn),
                4 => Opt::V(OptionValue::Fin),
                5 => Opt::V(OptionValue::Rst {
                    no_naks: inp.bool(),
                    error_code: inp.u8() & 0x3F,
                }),
                6 => Opt::V(OptionValue::ParityGrp { group: inp.u32() }),
                7 => Opt::V(OptionValue::Redirect(Nla(
                    inp.pick(&[DLR, DLR, STRANGER, SRC6])
                ))),
                8 => Opt::V(OptionValue::NakBoIvl {
                    ivl_us: inp.u32(),
                    poll_sqn: Sqn(inp.u32()),
                }),
                9 => Opt::V(OptionValue::NakBoRng {
                    max_us: inp.u32(),
                    min_us: inp.u32(),
                }),
                10 => Opt::V(OptionValue::ParityPrm {
                    proactive: inp.bool(),
                    on_demand: inp.bool(),
                    tg_size: inp.u32(),
                }),
                11 => Opt::V(OptionValue::CurrTgsize { size: inp.u32() }),
                12 => Opt::V(OptionValue::NbrUnreach),
                13 => Opt::V(OptionValue::PathNla(Nla(inp.pick(&HOSTS)))),
                14 => Opt::V(OptionValue::Crqst { which: inp.u8() }),
                15 => Opt::V(OptionValue::Cr {
                    which: inp.u8(),
                    lead: sqn,
                    ne_worst_link: inp.u16(),
                    ne_worst_path: inp.u16(),
                    rx_worst_path: inp.u16(),
                    receiver: Nla(inp.pick(&HOSTS)),
                }),
                22 => {
                    let (t, l) = (inp.u32(), inp.u16());
                    Opt::V(OptionValue::PgmccFeedback {
                        tstamp: inp.pick(&[0, 1, t]),
                        loss_rate: inp.pick(&[0, 500, u16::MAX, l]),
                        receiver: Nla(inp.pick(&HOSTS)),
                    })
                }
                23 => Opt::V(OptionValue::PgmccData {
                    tstamp: inp.u32(),
                    acker: Nla(inp.pick(&[RCV_A, RCV_A, RCV_B, STRANGER, v4(0, 0, 0, 0)])),
                }),
                16 => {
                    let specific = inp.u8() & 0x7F;
                    let n = inp.below(9) as usize;
                    Opt::Invalid {
                        specific,
                        data: inp.bytes(n).to_vec(),
                    }
                }
                _ => {
                    // Unknown options, with every OPX and odd lengths (which misalign what
                    // follows).
                    let code = inp.pick(&[0x06, 0x12, 0x21, 0x40, 0x7E]);
                    let specific = inp.u8() & 0x7F;
                    let n = inp.below(9) as usize;
                    Opt::Unknown {
                        code,
                        specific,
                        data: inp.bytes(n).to_vec(),
                    }
                }
            };
            let flags = if matches!(value, Opt::Unknown { .. }) || inp.one_in(8) {
                OptFlags {
                    byte2: inp.u8(),
                    encoded_null: inp.one_in(4),
                }
            } else {
                OptFlags::default()
            };
            v.push(OwnedOpt { flags, value });
        }
        v
    }
}

/// An option with owned contents.
#[derive(Debug, Clone)]
pub(crate) enum Opt {
    V(OptionValue<'static>),
    NakList(Vec<Sqn>),
    Invalid {
        specific: u8,
        data: Vec<u8>,
    },
    Unknown {
        code: u8,
        specific: u8,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedOpt {
    pub(crate) flags: OptFlags,
    pub(crate) value: Opt,
}

impl OwnedOpt {
    fn as_option(&self) -> PgmOption<'_> {
        let value = match &self.value {
            Opt::V(v) => *v,
            Opt::NakList(l) => OptionValue::NakList(SqnList::Slice(l)),
            Opt::Invalid { specific, data } => OptionValue::Invalid {
                specific: *specific,
                data,
            },
            Opt::Unknown {
                code,
                specific,
                data,
            } => OptionValue::Unknown {
                code: *code,
                specific: *specific,
                data,
            },
        };
        PgmOption {
            flags: self.flags,
            value,
        }
    }
}

/// Emits a packet; the payload replaces a data body's. A packet the emitter refuses comes out
/// as its header alone (which every engine drops as malformed).
pub(crate) fn emit(
    sport: u16,
    dport: u16,
    gsi: Gsi,
    parity: bool,
    body: Body<'_>,
    opts: &[OwnedOpt],
    payload: &[u8],
) -> Vec<u8> {
    let body = match body {
        Body::Odata(d) => Body::Odata(DataRepr { payload, ..d }),
        Body::Rdata(d) => Body::Rdata(DataRepr { payload, ..d }),
        other => other,
    };
    let options: Vec<PgmOption<'_>> = opts.iter().map(OwnedOpt::as_option).collect();
    let repr = Repr {
        sport,
        dport,
        gsi,
        parity,
        var_pktlen: false,
        body,
        options: OptionList::Slice(&options),
    };
    let mut buf = vec![0; repr.buffer_len()];
    match repr.emit(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(_) => buf[..16.min(buf.len())].to_vec(),
    }
}

/// Recomputes the checksum of anything long enough to have one. Every packet handed to an
/// engine has a valid checksum: the engines skip the check under `cfg(fuzzing)`, and a replay
/// under `cargo test` must take the same paths as the fuzzer did.
pub(crate) fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() >= 16 {
        Packet::new_unchecked(bytes).fill_checksum();
    }
}

/// A few random edits of a packet, biased towards the fields that carry lengths and sequence
/// numbers. The checksum is fixed afterwards, so that the edits reach the engine.
fn mutate(inp: &mut Input<'_>, b: &mut Vec<u8>) {
    for _ in 0..=inp.below(3) {
        let len = b.len() as u32;
        match inp.below(7) {
            0 if len > 0 => {
                let i = inp.below(len) as usize;
                b[i] ^= 1 << inp.below(8);
            }
            1 if len > 0 => {
                let i = inp.below(len) as usize;
                b[i] = inp.u8();
            }
            2 => b.truncate(inp.below(len + 1) as usize),
            3 => {
                let i = inp.below(len + 1) as usize;
                b.insert(i, inp.u8());
            }
            4 if len > 16 => {
                let i = 14 + inp.below(len - 14) as usize;
                b[i] = b[i].wrapping_add(inp.below(9) as u8).wrapping_sub(4);
            }
            5 if len >= 20 => {
                let at = 16 + 4 * inp.below((len - 16) / 4) as usize;
                if let Some(w) = b.get_mut(at..at + 4) {
                    w.copy_from_slice(&inp.u32().to_be_bytes());
                }
            }
            _ if len > 5 => b[5] ^= inp.pick(&[0x01, 0x02, 0x40, 0x80]),
            _ => {}
        }
    }
    fix_checksum(b);
}

/// Raw bytes, with a plausible header now and then so that they get past the first checks.
fn raw(inp: &mut Input<'_>) -> Delivery {
    let n = inp.below(96) as usize;
    let mut bytes = inp.bytes(n).to_vec();
    if bytes.len() > 5 && inp.bool() {
        bytes[4] = inp.pick(&[0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0C]);
        bytes[5] &= 0xC3;
    }
    fix_checksum(&mut bytes);
    Delivery {
        bytes,
        from: SRC,
        to: GROUP,
        ifindex: 1,
        ttl: 64,
    }
}

/// A run of ODATA of the main session from its source: consecutive sequence numbers after
/// the base, optionally the fragments of one message.
pub(crate) fn burst(w: &mut World, inp: &mut Input<'_>) -> Vec<Delivery> {
    let n = 1 + inp.below(8);
    let base = w.bases[0];
    let first = base + 1;
    let fragmented = inp.bool();
    let chunk = 1 + inp.below(64);
    let total = n * chunk - if fragmented { inp.below(chunk) } else { 0 };
    let trail = w.trail_near(inp, base);
    let mut out = Vec::new();
    for i in 0..n {
        let sqn = first + i;
        let mut opts = Vec::new();
        let len = if fragmented {
            let offset = i * chunk;
            opts.push(OwnedOpt {
                flags: OptFlags::default(),
                value: Opt::V(OptionValue::Fragment {
                    first_sqn: first,
                    offset,
                    length: total,
                }),
            });
            chunk.min(total.saturating_sub(offset))
        } else {
            chunk
        };
        if i + 1 == n && inp.one_in(8) {
            opts.push(OwnedOpt {
                flags: OptFlags::default(),
                value: Opt::V(OptionValue::Fin),
            });
        }
        let payload = vec![sqn.0 as u8; len as usize];
        let bytes = emit(
            MAIN.sport,
            DPORT,
            MAIN.gsi,
            false,
            Body::Odata(DataRepr {
                sqn,
                trail,
                payload: &[],
            }),
            &opts,
            &payload,
        );
        out.push(Delivery {
            bytes,
            from: SRC,
            to: GROUP,
            ifindex: 1,
            ttl: 64,
        });
    }
    // Deliveries may be reordered or lost on the way.
    if inp.one_in(3) && out.len() > 1 {
        let i = inp.below(out.len() as u32) as usize;
        out.remove(i);
    }
    if inp.one_in(3) && out.len() > 1 {
        let i = inp.below(out.len() as u32) as usize;
        let j = inp.below(out.len() as u32) as usize;
        out.swap(i, j);
    }
    w.bases[0] = first + (n - 1);
    out
}
