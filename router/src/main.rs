//! `pgm-routerd`: the PGM network-element daemon (RFC 3208 §7), PGM Router Assist for a Linux
//! router.
//!
//! The kernel forwards ODATA, through one of two data planes ([`dataplane`]): nftables
//! netdev ingress chains (`netdev`, any kernel with nf_tables) or the kernel's multicast
//! routing (`mroute`, `CONFIG_IP_MROUTE`). The packets that need PGM processing (SPM, NCF,
//! RDATA, POLL; NAKs, NNAKs and POLRs unicast to the router) reach the sans-IO engine
//! `pgm_core::proto::network_element`, whose transmits leave through raw `IP_HDRINCL`
//! sockets. Routes and memberships are decided by the sans-IO [`control`]ler. See the admin
//! module for `/metrics` and the JSON API.
//!
//! ```text
//! pgm-routerd --config /etc/pgm/router.toml
//! pgm-routerd --config /etc/pgm/router.toml --check-config
//! ```

mod admin;
mod control;
mod daemon;
mod dataplane;
mod dedup;
mod metrics;
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
    describe,
};

/// `--check-config`: the data plane this kernel would run, or why the configured one cannot.
fn describe(config: &Config) -> Result<Vec<String>, String> {
    let Some(r) = &config.router else {
        return Ok(Vec::new());
    };
    let c = dataplane::choose(r)?;
    Ok(vec![format!("data plane: {} ({})", c.kind.name(), c.why)])
}

fn main() -> ExitCode {
    pgm_config::daemon::main(&SPEC, run)
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let daemon = daemon::Daemon::start(&config, path)?;
    let server = admin::bind(config.admin.listen, daemon.shared(), daemon.changed()).await?;
    tokio::spawn(server);
    daemon.run().await
}
