//! Namespace topologies for real-kernel integration tests of the PGM suite.
//!
//! The [`lab`] module builds throw-away networks out of Linux network namespaces, veth pairs and
//! bridges, injects loss with nftables, captures with tcpdump and runs `smcroute` as a baseline
//! multicast router. Everything a [`lab::Lab`] creates is removed when it is dropped.

pub mod bins;
pub mod lab;
