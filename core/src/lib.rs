//! # pgm-core
//!
//! The protocol core of a complete PGM (Pragmatic General Multicast, RFC 3208) suite: the end-host
//! stack, the network-element daemon (PGM Router Assist) and the Designated Local Repairer all
//! stand on this crate.
//!
//! Layers, each knowing only the ones below it:
//!
//! - [`wire`]: every RFC 3208 packet type and option as a zero-copy view over bytes plus a plain
//!   `Repr` that emits into a caller's buffer; the checksum of §8; IPv4 and IPv6 NLAs. Parsing
//!   never panics, whatever the input.
//!
//! Later layers (`proto`, the sans-IO engines; `net`, the socket transports; `host`, the tokio
//! API; `sim`, the deterministic simulator) are added by the issues that build them.
//!
//! `wire` builds without the default features (no tokio, no sockets):
//! `cargo check -p pgm-core --no-default-features`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "net")]
pub mod net;
pub mod proto;
pub mod sim;
pub mod wire;

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
