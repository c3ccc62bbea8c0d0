//! `pgm-routerd`: the PGM network-element daemon (RFC 3208 §7), PGM Router Assist for a Linux
//! router.
//!
//! The kernel forwards ODATA along the multicast routing table (which the daemon owns in
//! `full` mode, or reads beside smcroute/pimd in `assist-only` mode); the packets that need
//! PGM processing (SPM, NCF, RDATA, POLL with Router Alert; the same without Router Alert
//! through an nftables intercept; NAKs, NNAKs and POLRs unicast to the router) reach the
//! sans-IO engine `pgm_core::proto::network_element`, whose transmits leave through raw
//! `IP_HDRINCL` sockets. See `docs` in the admin module for `/metrics` and the JSON API.
//!
//! ```text
//! pgm-routerd --config /etc/pgm/router.toml
//! pgm-routerd --config /etc/pgm/router.toml --check-config
//! ```

mod admin;
mod daemon;
mod dedup;
mod metrics;
mod routes;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use pgm_config::Config;
use pgm_config::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    name: "pgm-routerd",
    about: "PGM Router Assist (RFC 3208 network element) for Linux.",
    default_config: "/etc/pgm/router.toml",
    section: "router",
    has_section: |c| c.router.is_some(),
    interface_exists: pgm_core::net::iface::exists,
};

fn main() -> ExitCode {
    pgm_config::daemon::main(&SPEC, run)
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let daemon = daemon::Daemon::start(&config, path)?;
    let server = admin::bind(config.admin.listen, daemon.shared(), daemon.changed()).await?;
    tokio::spawn(server);
    daemon.run().await
}
