//! `pgm-routerd`: the PGM network-element daemon (RFC 3208 §7).
//!
//! Not implemented yet: the network-element engine and its daemon are tracked by the
//! "Network element: PGM Router Assist for Linux" issue. This binary says so and exits
//! non-zero rather than pretend to route.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("pgm-routerd is not implemented yet (network-element issue open)")
}
