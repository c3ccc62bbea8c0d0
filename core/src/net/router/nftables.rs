//! `nf_tables` over netlink: the requests the daemon's data planes make, written as one
//! atomic batch per change, and the socket that sends them and reads the kernel's answers.
//!
//! A [`Batch`] is `NFNL_MSG_BATCH_BEGIN`, the requests, `NFNL_MSG_BATCH_END`: the kernel
//! applies all of it or none of it. Every request asks for an acknowledgement, so a failure
//! is reported with the request that caused it ([`NftError`]). A batch sent without its end
//! ([`NftSocket::check`]) is validated and then aborted by the kernel, which is how the data
//! planes find out what the kernel supports without changing anything.
//!
//! Tables may be created with [`TABLE_F_OWNER`]: the kernel then removes the table, with
//! everything in it, when the socket that created it is closed (the daemon exits or is
//! killed), and refuses changes from any other socket.
//!
//! Expressions are the kernel's ([`Expr`]), not nft's language: what nft 1.0.6 cannot write
//! (a payload field set from a map lookup) is one more expression here.

use std::io;
use std::time::Duration;

use socket2::Socket;

use super::netlink::{
    self, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, Writer, attrs, messages,
    recv_into,
};
use super::sys::setsockopt_int;

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;

// linux/netfilter/nf_tables.h: message types.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_PAYLOAD_SREG: u16 = 5;
const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_LOG_GROUP: u16 = 1;
const NFTA_LOG_PREFIX: u16 = 2;
const NFTA_LOG_QTHRESHOLD: u16 = 4;
const NFTA_LIMIT_RATE: u16 = 1;
const NFTA_LIMIT_UNIT: u16 = 2;
const NFTA_LIMIT_BURST: u16 = 3;
const NFTA_LIMIT_TYPE: u16 = 4;
const NFTA_DUP_SREG_DEV: u16 = 2;
const NFTA_OBJREF_IMM_TYPE: u16 = 1;
const NFTA_OBJREF_IMM_NAME: u16 = 2;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_EXTHDR_DREG: u16 = 1;
const NFTA_EXTHDR_TYPE: u16 = 2;
const NFTA_EXTHDR_OFFSET: u16 = 3;
const NFTA_EXTHDR_LEN: u16 = 4;
const NFTA_EXTHDR_FLAGS: u16 = 5;
const NFTA_EXTHDR_OP: u16 = 6;
const NFT_EXTHDR_F_PRESENT: u32 = 1;
const NFT_EXTHDR_OP_IPV4: u32 = 2;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFT_LIMIT_PKTS: u32 = 0;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// `NFPROTO_IPV4`: the `ip` family.
pub const FAMILY_IPV4: u8 = 2;
/// `NFPROTO_NETDEV`: the `netdev` family.
pub const FAMILY_NETDEV: u8 = 5;
/// `NFT_TABLE_F_OWNER`: the table lives as long as the socket that created it.
pub const TABLE_F_OWNER: u32 = 0x2;
/// `NFT_SET_MAP`.
pub const SET_F_MAP: u32 = 0x8;
/// `NF_INET_PRE_ROUTING`.
pub const HOOK_PREROUTING: u32 = 0;
/// `NF_INET_FORWARD`.
pub const HOOK_FORWARD: u32 = 2;
/// `NF_NETDEV_INGRESS`.
pub const HOOK_INGRESS: u32 = 0;
/// `NF_NETDEV_EGRESS`.
pub const HOOK_EGRESS: u32 = 1;

/// Set key and data types, as nft names them (they only matter to `nft list`).
pub mod types {
    /// `integer`.
    pub const INTEGER: u32 = 4;
    /// `ipv4_addr`.
    pub const IPV4_ADDR: u32 = 7;
    /// `iface_index`.
    pub const IFACE_INDEX: u32 = 20;
    /// A concatenation of `a . b` (nft's encoding: 6 bits per type).
    pub const fn concat(a: u32, b: u32) -> u32 {
        (a << 6) | b
    }
}

/// A 32-bit register (`NFT_REG32_00` + n). Registers 0-15 exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

impl Reg {
    fn id(self) -> u32 {
        8 + u32::from(self.0.min(15))
    }
}

/// Where a payload offset counts from (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The link-layer header.
    Link = 0,
    /// The network header.
    Network = 1,
    /// The transport header.
    Transport = 2,
}

/// `enum nft_meta_keys`, the keys used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `skb->protocol` (the EtherType, big-endian, 2 bytes).
    Protocol = 1,
    /// The input interface index (4 bytes, host order).
    Iif = 4,
    /// The layer-4 protocol (1 byte).
    L4Proto = 16,
}

/// `enum nft_cmp_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq = 0,
    /// Not equal.
    Neq = 1,
    /// Less than or equal.
    Lte = 3,
    /// Greater than or equal.
    Gte = 5,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// `NF_DROP`.
    Drop,
    /// `NF_ACCEPT`.
    Accept,
    /// `NFT_RETURN`.
    Return,
    /// `NFT_JUMP` to a chain.
    Jump(&'a str),
    /// `NFT_GOTO` a chain.
    Goto(&'a str),
}

impl Verdict<'_> {
    fn code(self) -> u32 {
        match self {
            Self::Drop => 0,
            Self::Accept => 1,
            Self::Return => (-5i32) as u32,
            Self::Jump(_) => (-3i32) as u32,
            Self::Goto(_) => (-4i32) as u32,
        }
    }

    fn write(self, w: &mut Writer) {
        let n = w.nest(NFTA_DATA_VERDICT);
        w.put_u32(NFTA_VERDICT_CODE, self.code());
        if let Self::Jump(c) | Self::Goto(c) = self {
            w.put_str(NFTA_VERDICT_CHAIN, c);
        }
        w.end_nest(n);
    }
}

/// One expression of a rule (the kernel's, `net/netfilter/nft_*.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expr<'a> {
    /// Loads packet metadata into a register.
    Meta {
        /// What.
        key: MetaKey,
        /// Into.
        dreg: Reg,
    },
    /// Loads `len` bytes at `offset` from `base` into a register; no match if the packet is
    /// too short or has no such header.
    Payload {
        /// From.
        base: Base,
        /// Byte offset.
        offset: u32,
        /// Bytes.
        len: u32,
        /// Into.
        dreg: Reg,
    },
    /// Writes `len` bytes from a register at `offset` from `base`, updating the internet
    /// checksum at `csum_offset` of the same header if given.
    PayloadSet {
        /// Into.
        base: Base,
        /// Byte offset.
        offset: u32,
        /// Bytes.
        len: u32,
        /// From.
        sreg: Reg,
        /// Offset of the header's checksum to update incrementally (RFC 1624).
        csum_offset: Option<u32>,
    },
    /// Compares a register with `data` (its length); no match stops the rule.
    Cmp {
        /// The register.
        sreg: Reg,
        /// How.
        op: CmpOp,
        /// With what.
        data: &'a [u8],
    },
    /// Looks the key in `sreg` up in a set: no match stops the rule. With a `dreg`, a map's
    /// data is loaded there; with `verdict`, a verdict map's verdict is taken.
    Lookup {
        /// The set's name.
        set: &'a str,
        /// The key's first register.
        sreg: Reg,
        /// Where a data map's value goes.
        dreg: Option<Reg>,
        /// Whether the set is a verdict map.
        verdict: bool,
    },
    /// Loads a value into a register.
    Immediate {
        /// Into.
        dreg: Reg,
        /// What (at most 16 bytes).
        data: &'a [u8],
    },
    /// A verdict.
    Verdict(Verdict<'a>),
    /// Sends a copy of the packet (from its link-layer header) out of the interface whose
    /// index is in `sreg_dev` (netdev family).
    Dup {
        /// Holds the output interface index.
        sreg_dev: Reg,
    },
    /// Hands the packet to `nfnetlink_log` group `group`, sent at once (queue threshold 1).
    Log {
        /// The group.
        group: u16,
        /// A prefix the log message carries.
        prefix: &'a str,
    },
    /// An anonymous counter.
    Counter,
    /// Counts into the named counter object of the table.
    NamedCounter(&'a str),
    /// Matches at most `rate` packets per second with bursts of `burst`.
    Limit {
        /// Packets per second.
        rate: u64,
        /// Packets allowed above the rate at once.
        burst: u32,
    },
    /// Loads 1 if the IPv4 header carries option `option`, else 0, into the register's first
    /// byte.
    Ipv4OptionPresent {
        /// The option type (148: Router Alert).
        option: u8,
        /// Into.
        dreg: Reg,
    },
}

impl Expr<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Meta { .. } => "meta",
            Self::Payload { .. } | Self::PayloadSet { .. } => "payload",
            Self::Cmp { .. } => "cmp",
            Self::Lookup { .. } => "lookup",
            Self::Immediate { .. } | Self::Verdict(_) => "immediate",
            Self::Dup { .. } => "dup",
            Self::Log { .. } => "log",
            Self::Counter => "counter",
            Self::NamedCounter(_) => "objref",
            Self::Limit { .. } => "limit",
            Self::Ipv4OptionPresent { .. } => "exthdr",
        }
    }

    fn write(&self, w: &mut Writer) {
        let elem = w.nest(NFTA_LIST_ELEM);
        w.put_str(NFTA_EXPR_NAME, self.name());
        let data = w.nest(NFTA_EXPR_DATA);
        match *self {
            Self::Meta { key, dreg } => {
                w.put_u32(NFTA_META_DREG, dreg.id());
                w.put_u32(NFTA_META_KEY, key as u32);
            }
            Self::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.put_u32(NFTA_PAYLOAD_DREG, dreg.id());
                w.put_u32(NFTA_PAYLOAD_BASE, base as u32);
                w.put_u32(NFTA_PAYLOAD_OFFSET, offset);
                w.put_u32(NFTA_PAYLOAD_LEN, len);
            }
            Self::PayloadSet {
                base,
                offset,
                len,
                sreg,
                csum_offset,
            } => {
                w.put_u32(NFTA_PAYLOAD_SREG, sreg.id());
                w.put_u32(NFTA_PAYLOAD_BASE, base as u32);
                w.put_u32(NFTA_PAYLOAD_OFFSET, offset);
                w.put_u32(NFTA_PAYLOAD_LEN, len);
                if let Some(c) = csum_offset {
                    // NFT_PAYLOAD_CSUM_INET
                    w.put_u32(NFTA_PAYLOAD_CSUM_TYPE, 1);
                    w.put_u32(NFTA_PAYLOAD_CSUM_OFFSET, c);
                }
            }
            Self::Cmp { sreg, op, data } => {
                w.put_u32(NFTA_CMP_SREG, sreg.id());
                w.put_u32(NFTA_CMP_OP, op as u32);
                let d = w.nest(NFTA_CMP_DATA);
                w.put(NFTA_DATA_VALUE, data);
                w.end_nest(d);
            }
            Self::Lookup {
                set,
                sreg,
                dreg,
                verdict,
            } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_u32(NFTA_LOOKUP_SREG, sreg.id());
                if verdict {
                    // NFT_REG_VERDICT
                    w.put_u32(NFTA_LOOKUP_DREG, 0);
                } else if let Some(d) = dreg {
                    w.put_u32(NFTA_LOOKUP_DREG, d.id());
                }
            }
            Self::Immediate { dreg, data } => {
                w.put_u32(NFTA_IMMEDIATE_DREG, dreg.id());
                let d = w.nest(NFTA_IMMEDIATE_DATA);
                w.put(NFTA_DATA_VALUE, data);
                w.end_nest(d);
            }
            Self::Verdict(v) => {
                w.put_u32(NFTA_IMMEDIATE_DREG, 0);
                let d = w.nest(NFTA_IMMEDIATE_DATA);
                v.write(w);
                w.end_nest(d);
            }
            Self::Dup { sreg_dev } => w.put_u32(NFTA_DUP_SREG_DEV, sreg_dev.id()),
            Self::Log { group, prefix } => {
                w.put_u16(NFTA_LOG_GROUP, group);
                w.put_u16(NFTA_LOG_QTHRESHOLD, 1);
                if !prefix.is_empty() {
                    w.put_str(NFTA_LOG_PREFIX, prefix);
                }
            }
            Self::Counter => {}
            Self::NamedCounter(name) => {
                w.put_u32(NFTA_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
                w.put_str(NFTA_OBJREF_IMM_NAME, name);
            }
            Self::Limit { rate, burst } => {
                w.put_u64(NFTA_LIMIT_RATE, rate);
                w.put_u64(NFTA_LIMIT_UNIT, 1);
                w.put_u32(NFTA_LIMIT_BURST, burst);
                w.put_u32(NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS);
            }
            Self::Ipv4OptionPresent { option, dreg } => {
                w.put_u32(NFTA_EXTHDR_DREG, dreg.id());
                w.put(NFTA_EXTHDR_TYPE, &[option]);
                w.put_u32(NFTA_EXTHDR_OFFSET, 0);
                w.put_u32(NFTA_EXTHDR_LEN, 1);
                w.put_u32(NFTA_EXTHDR_FLAGS, NFT_EXTHDR_F_PRESENT);
                w.put_u32(NFTA_EXTHDR_OP, NFT_EXTHDR_OP_IPV4);
            }
        }
        w.end_nest(data);
        w.end_nest(elem);
    }
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook<'a> {
    /// The hook number ([`HOOK_INGRESS`], [`HOOK_PREROUTING`], ...).
    pub num: u32,
    /// The priority (lower runs first).
    pub priority: i32,
    /// The device, for the netdev family.
    pub device: Option<&'a str>,
}

/// A set or map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSpec<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its key's type ([`types`]) and length in bytes.
    pub key: (u32, u32),
    /// For a data map, the data's type and length; for a verdict map, use `verdict`.
    pub data: Option<(u32, u32)>,
    /// Whether it is a verdict map.
    pub verdict: bool,
}

/// The data of a map element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemData<'a> {
    /// A value.
    Value(&'a [u8]),
    /// A verdict.
    Verdict(Verdict<'a>),
}

/// Most elements written per request (a request's attributes are at most 64 KiB).
const ELEMS_PER_MESSAGE: usize = 256;

/// One atomic change of `nf_tables`: every request goes in or none does.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    family: u8,
    /// The sequence number of each request and what it does (for errors).
    requests: Vec<(u32, String)>,
    next_seq: u32,
    begin_seq: u32,
}

impl Batch {
    /// A batch of requests for tables of `family`.
    pub fn new(family: u8) -> Self {
        let mut w = Writer::default();
        w.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end();
        Self {
            w,
            family,
            requests: Vec::new(),
            next_seq: 1,
            begin_seq: 0,
        }
    }

    /// Whether it holds no request.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// How many requests it holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    fn request(&mut self, msg: u16, flags: u16, what: impl FnOnce() -> String) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            self.family,
            0,
        );
        self.requests.push((seq, what()));
    }

    /// Creates table `name` (an existing one is kept) with `flags`.
    pub fn add_table(&mut self, name: &str, flags: u32) {
        self.request(NFT_MSG_NEWTABLE, NLM_F_CREATE, || {
            format!("create table {name}")
        });
        self.w.put_str(NFTA_TABLE_NAME, name);
        self.w.put_u32(NFTA_TABLE_FLAGS, flags);
        self.w.end();
    }

    /// Deletes table `name` and everything in it.
    pub fn del_table(&mut self, name: &str) {
        self.request(NFT_MSG_DELTABLE, 0, || format!("delete table {name}"));
        self.w.put_str(NFTA_TABLE_NAME, name);
        self.w.end();
    }

    /// Creates chain `name`: a base chain of type `filter` with policy accept if `hook` is
    /// given, else a regular chain.
    pub fn add_chain(&mut self, table: &str, name: &str, hook: Option<Hook<'_>>) {
        self.request(NFT_MSG_NEWCHAIN, NLM_F_CREATE, || {
            format!("create chain {name}{}", hook_text(hook))
        });
        self.w.put_str(NFTA_CHAIN_TABLE, table);
        self.w.put_str(NFTA_CHAIN_NAME, name);
        if let Some(h) = hook {
            let n = self.w.nest(NFTA_CHAIN_HOOK);
            self.w.put_u32(NFTA_HOOK_HOOKNUM, h.num);
            self.w.put_u32(NFTA_HOOK_PRIORITY, h.priority as u32);
            if let Some(d) = h.device {
                self.w.put_str(NFTA_HOOK_DEV, d);
            }
            self.w.end_nest(n);
            self.w.put_u32(NFTA_CHAIN_POLICY, 1);
            self.w.put_str(NFTA_CHAIN_TYPE, "filter");
        }
        self.w.end();
    }

    /// Deletes every rule of chain `name`.
    pub fn flush_chain(&mut self, table: &str, name: &str) {
        self.request(NFT_MSG_DELRULE, 0, || format!("flush chain {name}"));
        self.w.put_str(NFTA_RULE_TABLE, table);
        self.w.put_str(NFTA_RULE_CHAIN, name);
        self.w.end();
    }

    /// Deletes chain `name` (no longer referenced, its rules deleted with it).
    pub fn del_chain(&mut self, table: &str, name: &str) {
        self.flush_chain(table, name);
        self.request(NFT_MSG_DELCHAIN, 0, || format!("delete chain {name}"));
        self.w.put_str(NFTA_CHAIN_TABLE, table);
        self.w.put_str(NFTA_CHAIN_NAME, name);
        self.w.end();
    }

    /// Appends a rule of `exprs` to chain `chain`; `what` names it in errors.
    pub fn add_rule(&mut self, table: &str, chain: &str, exprs: &[Expr<'_>], what: &str) {
        self.request(NFT_MSG_NEWRULE, NLM_F_CREATE | 0x800, || {
            format!("add rule to chain {chain} ({what})")
        });
        self.w.put_str(NFTA_RULE_TABLE, table);
        self.w.put_str(NFTA_RULE_CHAIN, chain);
        let list = self.w.nest(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            e.write(&mut self.w);
        }
        self.w.end_nest(list);
        self.w.end();
    }

    /// Creates a set or map.
    pub fn add_set(&mut self, table: &str, set: &SetSpec<'_>, id: u32) {
        self.request(NFT_MSG_NEWSET, NLM_F_CREATE, || {
            format!("create set {}", set.name)
        });
        self.w.put_str(NFTA_SET_TABLE, table);
        self.w.put_str(NFTA_SET_NAME, set.name);
        let map = set.verdict || set.data.is_some();
        self.w
            .put_u32(NFTA_SET_FLAGS, if map { SET_F_MAP } else { 0 });
        self.w.put_u32(NFTA_SET_KEY_TYPE, set.key.0);
        self.w.put_u32(NFTA_SET_KEY_LEN, set.key.1);
        if set.verdict {
            self.w.put_u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
        } else if let Some((ty, len)) = set.data {
            self.w.put_u32(NFTA_SET_DATA_TYPE, ty);
            self.w.put_u32(NFTA_SET_DATA_LEN, len);
        }
        self.w.put_u32(NFTA_SET_ID, id);
        self.w.end();
    }

    /// Creates a named counter.
    pub fn add_counter(&mut self, table: &str, name: &str) {
        self.request(NFT_MSG_NEWOBJ, NLM_F_CREATE, || {
            format!("create counter {name}")
        });
        self.w.put_str(NFTA_OBJ_TABLE, table);
        self.w.put_str(NFTA_OBJ_NAME, name);
        self.w.put_u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
        let d = self.w.nest(NFTA_OBJ_DATA);
        self.w.end_nest(d);
        self.w.end();
    }

    /// Adds elements to a set (data `None`) or map.
    pub fn add_elems<'k>(
        &mut self,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = (&'k [u8], Option<ElemData<'k>>)>,
    ) {
        self.elems(NFT_MSG_NEWSETELEM, table, set, elems);
    }

    /// Deletes elements (by key) from a set or map.
    pub fn del_elems<'k>(
        &mut self,
        table: &str,
        set: &str,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) {
        self.elems(
            NFT_MSG_DELSETELEM,
            table,
            set,
            keys.into_iter().map(|k| (k, None)),
        );
    }

    /// Deletes every element of a set or map.
    pub fn flush_set(&mut self, table: &str, set: &str) {
        self.request(NFT_MSG_DELSETELEM, 0, || format!("flush set {set}"));
        self.w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
        self.w.put_str(NFTA_SET_ELEM_LIST_SET, set);
        self.w.end();
    }

    fn elems<'k>(
        &mut self,
        msg: u16,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = (&'k [u8], Option<ElemData<'k>>)>,
    ) {
        let verb = if msg == NFT_MSG_NEWSETELEM {
            "add"
        } else {
            "delete"
        };
        let mut elems = elems.into_iter().peekable();
        while elems.peek().is_some() {
            self.request(msg, NLM_F_CREATE, || {
                format!("{verb} elements of set {set}")
            });
            self.w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
            self.w.put_str(NFTA_SET_ELEM_LIST_SET, set);
            let list = self.w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            for (key, data) in elems.by_ref().take(ELEMS_PER_MESSAGE) {
                let e = self.w.nest(NFTA_LIST_ELEM);
                let k = self.w.nest(NFTA_SET_ELEM_KEY);
                self.w.put(NFTA_DATA_VALUE, key);
                self.w.end_nest(k);
                match data {
                    Some(ElemData::Value(v)) => {
                        let d = self.w.nest(NFTA_SET_ELEM_DATA);
                        self.w.put(NFTA_DATA_VALUE, v);
                        self.w.end_nest(d);
                    }
                    Some(ElemData::Verdict(v)) => {
                        let d = self.w.nest(NFTA_SET_ELEM_DATA);
                        v.write(&mut self.w);
                        self.w.end_nest(d);
                    }
                    None => {}
                }
                self.w.end_nest(e);
            }
            self.w.end_nest(list);
            self.w.end();
        }
    }

    /// The batch's bytes, ended (applied) or not (validated and aborted).
    fn bytes(&mut self, end: bool) -> Vec<u8> {
        let mut out = self.w.bytes().to_vec();
        if end {
            let mut e = Writer::default();
            e.begin(
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                self.next_seq,
                0,
                NFNL_SUBSYS_NFTABLES,
            );
            e.end();
            out.extend_from_slice(e.bytes());
        }
        out
    }

    fn what(&self, seq: u32) -> &str {
        if seq == self.begin_seq {
            return "the batch";
        }
        self.requests
            .iter()
            .find(|r| r.0 == seq)
            .map_or("a request", |r| r.1.as_str())
    }
}

fn hook_text(hook: Option<Hook<'_>>) -> String {
    match hook {
        Some(Hook {
            device: Some(d), ..
        }) => format!(" on {d}"),
        _ => String::new(),
    }
}

/// A batch the kernel refused: which request, and why.
#[derive(Debug, thiserror::Error)]
#[error("nf_tables refused to {what}: {source}")]
pub struct NftError {
    /// The request (`add rule to chain fwd (dup)`).
    pub what: String,
    /// The kernel's error.
    #[source]
    pub source: io::Error,
}

impl NftError {
    /// The kernel's errno.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// `what` failed with `source`.
    pub fn new(what: &str, source: io::Error) -> Self {
        Self {
            what: what.to_owned(),
            source,
        }
    }
}

/// How long the kernel may take to answer a batch.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket buffers: a whole resynchronisation goes in one batch.
const SOCKET_BUFFER: libc::c_int = 16 << 20;

/// A netlink socket for `nf_tables` requests. A table created with [`TABLE_F_OWNER`] through
/// it belongs to it: only it may change the table, and closing it deletes the table.
#[derive(Debug)]
pub struct NftSocket {
    sock: Socket,
    rx: Vec<u8>,
}

impl NftSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let sock = netlink::netfilter_socket()?;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            let _ = setsockopt_int(&sock, libc::SOL_SOCKET, opt, SOCKET_BUFFER);
        }
        netlink::set_recv_timeout(&sock, ANSWER_TIMEOUT)?;
        Ok(Self {
            sock,
            rx: vec![0; 1 << 16],
        })
    }

    /// Applies `batch`: all of it, or, on error, none of it.
    pub fn commit(&mut self, batch: &mut Batch) -> Result<(), NftError> {
        self.send(batch, true)
    }

    /// Sends `batch` without its end: the kernel checks every request (tables, chains,
    /// expressions and the devices they name) and then throws the batch away.
    pub fn check(&mut self, batch: &mut Batch) -> Result<(), NftError> {
        self.send(batch, false)
    }

    fn send(&mut self, batch: &mut Batch, end: bool) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let bytes = batch.bytes(end);
        self.sock
            .send(&bytes)
            .map_err(|e| NftError::new("send the batch", e))?;
        // Every request asked for an acknowledgement; a failure of the batch as a whole
        // comes as an error for its first message.
        let mut pending: Vec<u32> = batch.requests.iter().map(|r| r.0).collect();
        let mut first_error: Option<NftError> = None;
        while !pending.is_empty() {
            let n = recv_into(&self.sock, &mut self.rx, 0)
                .map_err(|e| NftError::new("read the kernel's answer", e))?;
            for m in messages(&self.rx[..n]) {
                let Some(errno) = m.errno() else { continue };
                if m.seq == batch.begin_seq && errno != 0 {
                    return Err(NftError::new(
                        batch.what(m.seq),
                        io::Error::from_raw_os_error(errno),
                    ));
                }
                pending.retain(|&s| s != m.seq);
                if errno != 0 && first_error.is_none() {
                    first_error = Some(NftError::new(
                        batch.what(m.seq),
                        io::Error::from_raw_os_error(errno),
                    ));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The packets counted by each named counter of table `table` of `family`.
    pub fn counters(&mut self, family: u8, table: &str) -> io::Result<Vec<(String, u64)>> {
        let mut w = Writer::default();
        w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ,
            NLM_F_REQUEST | NLM_F_DUMP,
            u32::MAX,
            family,
            0,
        );
        w.put_str(NFTA_OBJ_TABLE, table);
        w.put_u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
        w.end();
        self.sock.send(w.bytes())?;
        let mut out = Vec::new();
        loop {
            let n = recv_into(&self.sock, &mut self.rx, 0)?;
            for m in messages(&self.rx[..n]) {
                if m.kind == NLMSG_DONE {
                    return Ok(out);
                }
                if let Some(errno) = m.errno() {
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(errno));
                    }
                    continue;
                }
                if m.kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ {
                    continue;
                }
                if let Some(c) = parse_counter(m.body) {
                    out.push(c);
                }
            }
        }
    }
}

/// `(name, packets)` of an `NFT_MSG_NEWOBJ` counter.
fn parse_counter(body: &[u8]) -> Option<(String, u64)> {
    let (mut name, mut packets) = (None, None);
    for a in attrs(body.get(netlink::NFGENMSG..)?) {
        let (kind, value) = a.ok()?;
        match kind {
            NFTA_OBJ_NAME => {
                let s = value.split(|&b| b == 0).next()?;
                name = Some(String::from_utf8_lossy(s).into_owned());
            }
            NFTA_OBJ_DATA => {
                for inner in attrs(value) {
                    let (k, v) = inner.ok()?;
                    if k == NFTA_COUNTER_PACKETS {
                        packets = Some(u64::from_be_bytes(v.try_into().ok()?));
                    }
                }
            }
            _ => {}
        }
    }
    Some((name?, packets?))
}

impl std::os::fd::AsFd for NftSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::super::netlink::next_message;
    use super::*;

    fn walk(bytes: &[u8]) -> Vec<(u16, u32)> {
        messages(bytes).map(|m| (m.kind, m.seq)).collect()
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let mut b = Batch::new(FAMILY_NETDEV);
        b.add_table("t", TABLE_F_OWNER);
        b.add_chain(
            "t",
            "in",
            Some(Hook {
                num: HOOK_INGRESS,
                priority: 100,
                device: Some("eth0"),
            }),
        );
        b.add_rule(
            "t",
            "in",
            &[Expr::Counter, Expr::Verdict(Verdict::Drop)],
            "x",
        );
        let sent = b.bytes(true);
        let kinds = walk(&sent);
        assert_eq!(kinds.first(), Some(&(NFNL_MSG_BATCH_BEGIN, 0)));
        assert_eq!(kinds.last().map(|k| k.0), Some(NFNL_MSG_BATCH_END));
        assert_eq!(
            kinds[1..4].iter().map(|k| k.0 & 0xff).collect::<Vec<_>>(),
            [NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE]
        );
        // A check leaves the end out.
        assert_eq!(walk(&b.bytes(false)).len(), 4);
        assert_eq!(b.what(3), "add rule to chain in (x)");
        assert_eq!(b.what(2), "create chain in on eth0");
    }

    #[test]
    fn elements_are_split_across_requests() {
        let mut b = Batch::new(FAMILY_NETDEV);
        let keys: Vec<[u8; 4]> = (0..600u32).map(u32::to_be_bytes).collect();
        b.add_elems(
            "t",
            "s",
            keys.iter()
                .map(|k| (&k[..], Some(ElemData::Verdict(Verdict::Goto("c"))))),
        );
        assert_eq!(b.len(), 3);
        for m in messages(&b.bytes(true)).skip(1).take(3) {
            // Each request's attributes fit the 16-bit length of the element list.
            assert!(m.body.len() < 65_536);
        }
    }

    #[test]
    fn expressions_encode_their_name_and_registers() {
        let mut w = Writer::default();
        w.begin(0, 0, 0, 0, 0);
        Expr::Lookup {
            set: "routes",
            sreg: Reg(0),
            dreg: None,
            verdict: true,
        }
        .write(&mut w);
        w.end();
        let (m, _) = next_message(w.bytes()).unwrap();
        let (_, elem) = attrs(&m.body[4..]).next().unwrap().unwrap();
        let a: Vec<_> = attrs(elem).map(Result::unwrap).collect();
        assert_eq!(a[0], (NFTA_EXPR_NAME, &b"lookup\0"[..]));
        let data: Vec<_> = attrs(a[1].1).map(Result::unwrap).collect();
        assert_eq!(data[0], (NFTA_LOOKUP_SET, &b"routes\0"[..]));
        assert_eq!(data[1], (NFTA_LOOKUP_SREG, &8u32.to_be_bytes()[..]));
        assert_eq!(data[2], (NFTA_LOOKUP_DREG, &0u32.to_be_bytes()[..]));
    }

    #[test]
    fn counters_are_parsed_from_object_messages() {
        const NFTA_COUNTER_BYTES: u16 = 1;
        let mut w = Writer::default();
        w.begin((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ, 0, 1, 5, 0);
        w.put_str(NFTA_OBJ_TABLE, "t");
        w.put_str(NFTA_OBJ_NAME, "rpf");
        let d = w.nest(NFTA_OBJ_DATA);
        w.put_u64(NFTA_COUNTER_BYTES, 9);
        w.put_u64(NFTA_COUNTER_PACKETS, 7);
        w.end_nest(d);
        w.end();
        let (m, _) = next_message(w.bytes()).unwrap();
        assert_eq!(parse_counter(m.body), Some(("rpf".to_owned(), 7)));
        assert_eq!(parse_counter(&m.body[..10]), None);
    }
}
