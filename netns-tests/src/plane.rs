//! The data planes the router scenarios run on.
//!
//! Every router, DLR and ops scenario is written once, as a function of the [`Plane`], and
//! declared with [`on_each_plane!`], which makes one test per plane: `<scenario>::netdev` and
//! `<scenario>::mroute`. A plane that cannot run is `#[ignore]`d with its reason, so that
//! `cargo test` prints it on the test's line and counts it as ignored, never as passed:
//!
//! - `mroute` needs kernel multicast routing (`CONFIG_IP_MROUTE`);
//! - `PGM_DATAPLANE=netdev` or `PGM_DATAPLANE=mroute` forces the whole suite onto one plane
//!   (so the netdev runs can be checked on a kernel that has both).
//!
//! The decision is made by the crate's build script, on the machine that builds the tests (CI
//! builds and runs them on the same one); [`Plane::check_kernel`] fails a test that would run
//! on a kernel lacking what it was built for.

use std::fmt;

/// A data plane of `pgm-routerd` (`router.dataplane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// nftables netdev rules; any kernel with nf_tables.
    Netdev,
    /// The kernel's multicast routing; `CONFIG_IP_MROUTE`.
    Mroute,
}

impl Plane {
    /// The value of `router.dataplane`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Netdev => "netdev",
            Self::Mroute => "mroute",
        }
    }

    /// The plane the lab demo and single-plane tests use: `PGM_DATAPLANE` if set, else
    /// mroute where the kernel has it, else netdev (as `dataplane = "auto"` chooses).
    pub fn default_for_kernel() -> Self {
        match std::env::var("PGM_DATAPLANE").as_deref() {
            Ok("netdev") => Self::Netdev,
            Ok("mroute") => Self::Mroute,
            _ if kernel_has_mroute() => Self::Mroute,
            _ => Self::Netdev,
        }
    }

    /// Panics if this plane needs what the running kernel lacks (the tests were built on
    /// another kernel than they run on: rebuild them).
    pub fn check_kernel(self) {
        assert!(
            self != Self::Mroute || kernel_has_mroute(),
            "this mroute test was built for a kernel with CONFIG_IP_MROUTE and runs on one \
             without: rebuild the tests (cargo clean -p pgm-netns-tests)"
        );
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the running kernel has IPv4 multicast routing (`CONFIG_IP_MROUTE`).
pub fn kernel_has_mroute() -> bool {
    std::path::Path::new("/proc/net/ip_mr_vif").exists()
}

/// Declares a scenario that runs once per data plane:
///
/// ```ignore
/// on_each_plane!(static_routes, |plane| scenario("static", plane));
/// ```
///
/// makes the tests `static_routes::netdev` and `static_routes::mroute`, each skipped (ignored,
/// with the reason) where its plane cannot run. Namespace tests need root: without it each
/// prints one line and returns.
#[macro_export]
macro_rules! on_each_plane {
    ($name:ident, |$plane:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($plane: $crate::plane::Plane) {
                if $crate::lab::skip_without_root(concat!(stringify!($name), " (", "root", ")")) {
                    return;
                }
                $plane.check_kernel();
                $body
            }

            #[test]
            #[cfg_attr(
                not(pgm_netdev),
                ignore = "PGM_DATAPLANE=mroute: the netdev runs are off"
            )]
            fn netdev() {
                run($crate::plane::Plane::Netdev)
            }

            #[test]
            #[cfg_attr(
                not(pgm_mroute),
                ignore = "needs CONFIG_IP_MROUTE (kernel multicast routing), or PGM_DATAPLANE=netdev"
            )]
            fn mroute() {
                run($crate::plane::Plane::Mroute)
            }
        }
    };
}
