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

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pgm_config::Config;

/// PGM Router Assist (RFC 3208 network element) for Linux.
#[derive(Debug, Parser)]
#[command(name = "pgm-routerd", version)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, short, default_value = "/etc/pgm/router.toml")]
    config: PathBuf,
    /// Check the configuration (and that its interfaces exist), print every problem and exit.
    #[arg(long)]
    check_config: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
        || pgm_core::net::iface::interfaces()
            .map(|all| all.iter().any(|i| i.name == name))
            .unwrap_or(false)
}

fn load(args: &Args) -> Result<Config, String> {
    let config = Config::from_file(&args.config).map_err(|e| e.to_string())?;
    config
        .check_interfaces(&interface_exists)
        .map_err(|e| e.to_string())?;
    if config.router.is_none() {
        return Err(format!(
            "{}: the configuration has no [router] section",
            args.config.display()
        ));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        let _ = writeln!(
            std::io::stdout(),
            "{}: configuration OK",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pgm-routerd failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let daemon = daemon::Daemon::start(&config, path)?;
    let server = admin::bind(config.admin.listen, daemon.shared(), daemon.changed()).await?;
    tokio::spawn(server);
    daemon.run().await
}
