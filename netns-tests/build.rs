//! Which data planes the router tests run on, decided where they are built (CI builds and runs
//! on the same machine): `cfg(pgm_netdev)` unless `PGM_DATAPLANE=mroute`, `cfg(pgm_mroute)`
//! where the kernel has multicast routing (`/proc/net/ip_mr_vif`) unless
//! `PGM_DATAPLANE=netdev`. A test of a plane that is off is `#[ignore]`d with the reason, so
//! the summary counts it as skipped (see `pgm_netns_tests::plane`).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pgm_netdev)");
    println!("cargo::rustc-check-cfg=cfg(pgm_mroute)");
    println!("cargo::rerun-if-env-changed=PGM_DATAPLANE");
    // Present only on kernels with CONFIG_IP_MROUTE; a kernel change is seen on the next build.
    println!("cargo::rerun-if-changed=/proc/net/ip_mr_vif");
    let forced = std::env::var("PGM_DATAPLANE").unwrap_or_default();
    let forced = forced.trim();
    match forced {
        "" | "netdev" | "mroute" => {}
        other => println!(
            "cargo::warning=PGM_DATAPLANE={other:?} is neither \"netdev\" nor \"mroute\": ignored"
        ),
    }
    if forced != "mroute" {
        println!("cargo::rustc-cfg=pgm_netdev");
    }
    if forced != "netdev" && Path::new("/proc/net/ip_mr_vif").exists() {
        println!("cargo::rustc-cfg=pgm_mroute");
    }
}
