//! The PGM wire format (RFC 3208 §8, §9, and the packet formats of Appendices A–D).
//!
//! Heads up! Read RFC 3208 §8 (packet formats), §9 (options), §14.7 (POLL/POLR) and
//! §13.6 (SPMR) before changing this module, and the "Wire facts" section of the project's
//! `ARCHITECTURE.md`: the header's Options bits and the option common header follow what every
//! deployed implementation (OpenPGM) and Wireshark put on the wire, not a literal reading of §8.
//!
//! # Shape
//!
//! Every packet type has two representations, after smoltcp's `wire` module:
//!
//! - a **view**, `XxxPacket<T: AsRef<[u8]>>`, that reads and writes fields in place over a byte
//!   buffer, without copying. [`Packet`] is the common header; the typed views ([`SpmPacket`],
//!   [`PollPacket`], [`PolrPacket`], [`DataPacket`], [`NakPacket`], [`AckPacket`]) dereference to it;
//! - a **`Repr`**, a plain value ([`Repr`] with a [`Body`] per type) that can be parsed from a
//!   checked view and emitted into a caller's buffer without allocating.
//!
//! Options are a chain of TLVs after an `OPT_LENGTH` (§9.1). [`OptionList`] iterates them as
//! [`PgmOption`] values; unknown options are kept with their OPX bits so that a network element
//! can ignore them, invalidate them (type 0x7F) or discard the packet (§9).
//!
//! # Contract
//!
//! - `new_unchecked` performs no check: accessors on a view built that way may panic if the
//!   buffer is too short. Use it only on buffers this process wrote.
//! - `new_checked` = `new_unchecked` + `check_len`. After `check_len` succeeds, **no accessor
//!   panics**, whatever the bytes: lengths, NLA families and the option chain have been
//!   validated. `new_checked` is required for every buffer that came from the network.
//! - `new_checked` is wrong for a buffer about to be emitted into: its bytes are not yet a
//!   packet. Emit through `Repr::emit`, which takes an unchecked view.
//! - The checksum is not verified by `new_checked`; call [`Packet::verify_checksum`].
//! - Every error is a [`WireError`], a `Copy` reason with a stable label for metrics.

mod ack;
mod checksum;
mod data;
mod error;
mod header;
mod nak;
mod nla;
mod options;
mod poll;
mod repr;
mod spm;
mod sqn;
mod tsi;
mod view;

pub use ack::{AckPacket, AckRepr};
pub use checksum::{checksum, combine as checksum_combine, update as checksum_update};
pub use data::{DataPacket, DataRepr};
pub use error::WireError;
pub use header::{HEADER_LEN, Packet, PacketType, flags};
pub use nak::{NakPacket, NakRepr};
pub use nla::{Afi, Nla};
pub use options::{
    MAX_NAK_LIST, MAX_OPTIONS, OPTION_HEADER_LEN, OptFlags, OptionIter, OptionList, OptionType,
    OptionValue, Opx, PgmOption, SqnList,
};
pub use poll::{PollPacket, PollRepr, PollSubtype, PolrPacket, PolrRepr};
pub use repr::{Body, Repr};
pub use spm::{SpmPacket, SpmRepr};
pub use sqn::Sqn;
pub use tsi::{Gsi, Tsi, TsiParseError};

/// A byte range of a fixed-position field.
pub(crate) type Field = core::ops::Range<usize>;

/// The result type of every fallible wire operation.
pub type Result<T> = core::result::Result<T, WireError>;
