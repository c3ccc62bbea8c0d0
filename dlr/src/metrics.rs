//! Prometheus `/metrics` (text format 0.0.4), rendered at scrape time from the engines'
//! counters (minus what `POST /api/v1/clear/counters` cleared) and the daemon's own.

use std::fmt::Write;

use crate::state::{Dir, Shared, Totals};

type TotalFn = fn(&Totals) -> u64;

/// Engine counters: name (after `pgm_dlr_`), help, accessor.
const COUNTERS: &[(&str, &str, TotalFn)] = &[
    (
        "cache_hits_total",
        "requested sequence numbers found in the cache",
        |t| t.cache_hits,
    ),
    (
        "cache_misses_total",
        "requested sequence numbers not in the cache",
        |t| t.cache_misses,
    ),
    (
        "cache_evictions_total",
        "packets evicted from the cache (byte bound or age)",
        |t| t.cache_evictions,
    ),
    ("repairs_served_total", "RDATA sent from the cache", |t| {
        t.repairs_served
    }),
    ("nnaks_sent_total", "NNAKs sent to the parent", |t| {
        t.nnaks_sent
    }),
    ("ncfs_sent_total", "NCFs sent for NAKs directed here", |t| {
        t.ncfs_sent
    }),
    (
        "naks_forwarded_total",
        "NAKs forwarded to the parent (not in the cache)",
        |t| t.naks_forwarded,
    ),
    (
        "redirects_announced_total",
        "redirecting POLRs multicast on parent NCFs (upstream DLR)",
        |t| t.redirects_announced,
    ),
    (
        "polls_answered_total",
        "PGM_POLL_DLR polls answered (off-tree DLR)",
        |t| t.polls_answered,
    ),
    (
        "ignored_total",
        "NAKs and polls of sessions not served",
        |t| t.ignored,
    ),
    (
        "own_naks_sent_total",
        "NAKs the DLR sent for its own losses",
        |t| t.own_naks_sent,
    ),
    (
        "sessions_refused_total",
        "packets of new sessions not cached: an engine's session limit was reached",
        |t| t.sessions_refused,
    ),
    (
        "sessions_evicted_total",
        "idle sessions (nothing cached, expired) forgotten to make room",
        |t| t.sessions_evicted,
    ),
    (
        "naks_outside_window_total",
        "NAKs dropped whole: no sequence number in the session's transmit window (or none known)",
        |t| t.naks_outside_window,
    ),
    (
        "nak_sqns_outside_window_total",
        "sequence numbers dropped from NAKs: outside the session's transmit window",
        |t| t.nak_sqns_outside_window,
    ),
    (
        "wrong_source_total",
        "ODATA, RDATA and SPMs of a session from another address than its source's: not cached",
        |t| t.wrong_source,
    ),
    (
        "polls_ignored_total",
        "PGM_POLL_DLR polls not answered: not from the session's source, or no random match",
        |t| t.polls_ignored,
    ),
];

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP pgm_dlr_{name} {help}");
    let _ = writeln!(out, "# TYPE pgm_dlr_{name} {kind}");
}

/// The whole exposition.
pub(crate) fn render(s: &Shared) -> String {
    let t = s.totals();
    let mut out = String::new();
    header(
        &mut out,
        "cache_bytes",
        "bytes of packets in the cache",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_cache_bytes {}", t.cache_bytes);
    header(&mut out, "cache_entries", "packets in the cache", "gauge");
    let _ = writeln!(out, "pgm_dlr_cache_entries {}", t.cache_entries);
    header(
        &mut out,
        "cache_limit_bytes",
        "the configured cache bound",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_cache_limit_bytes {}", s.cache_limit);
    header(
        &mut out,
        "sessions",
        "sessions known to the engines",
        "gauge",
    );
    let sessions: usize = s
        .engines
        .values()
        .map(|e| e.repairer.receiver().sources())
        .sum();
    let _ = writeln!(out, "pgm_dlr_sessions {sessions}");
    header(
        &mut out,
        "engines",
        "engines (interface, group, port) running",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_engines {}", s.engines.len());
    header(
        &mut out,
        "engines_limit",
        "most engines at once with serve = \"all\"",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_engines_limit {}", s.engine_limit);
    header(
        &mut out,
        "engines_refused_total",
        "multicast of a new group and port not served: the engine limit was reached",
        "counter",
    );
    let _ = writeln!(
        out,
        "pgm_dlr_engines_refused_total {}",
        s.extra.engines_refused
    );
    header(
        &mut out,
        "engines_retired_total",
        "idle engines (no session, nothing cached) removed to make room",
        "counter",
    );
    let _ = writeln!(
        out,
        "pgm_dlr_engines_retired_total {}",
        s.extra.engines_retired
    );
    header(
        &mut out,
        "engine_sessions_limit",
        "most sessions each engine tracks (max_sessions)",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_engine_sessions_limit {}", s.session_limit);
    header(
        &mut out,
        "tsi_routes",
        "(interface, TSI) routes to engines learnt from downstream packets",
        "gauge",
    );
    let _ = writeln!(out, "pgm_dlr_tsi_routes {}", s.routes.len());
    header(
        &mut out,
        "tsi_routes_evicted_total",
        "(interface, TSI) routes of sources no engine tracks, forgotten at the routes' bound",
        "counter",
    );
    let _ = writeln!(
        out,
        "pgm_dlr_tsi_routes_evicted_total {}",
        s.extra.routes_evicted
    );
    header(
        &mut out,
        "tsi_routes_refused_total",
        "(interface, TSI) routes not learnt: the bound was reached with every route live",
        "counter",
    );
    let _ = writeln!(
        out,
        "pgm_dlr_tsi_routes_refused_total {}",
        s.extra.routes_refused
    );
    for (name, help, f) in COUNTERS {
        header(&mut out, name, help, "counter");
        let _ = writeln!(out, "pgm_dlr_{name} {}", f(&t));
    }
    header(
        &mut out,
        "malformed_packets_total",
        "malformed packets by reason",
        "counter",
    );
    for (reason, n) in &t.malformed {
        let _ = writeln!(
            out,
            "pgm_dlr_malformed_packets_total{{reason=\"{reason}\"}} {n}"
        );
    }
    header(
        &mut out,
        "receiver_dropped_packets_total",
        "packets the embedded receivers did not take, by reason",
        "counter",
    );
    for (reason, n) in &t.receiver_dropped {
        let _ = writeln!(
            out,
            "pgm_dlr_receiver_dropped_packets_total{{reason=\"{reason}\"}} {n}"
        );
    }
    header(
        &mut out,
        "unserved_packets_total",
        "packets of sessions not served",
        "counter",
    );
    let _ = writeln!(out, "pgm_dlr_unserved_packets_total {}", s.extra.unserved);
    header(
        &mut out,
        "send_errors_total",
        "transmits the kernel refused",
        "counter",
    );
    let _ = writeln!(out, "pgm_dlr_send_errors_total {}", s.extra.send_errors);
    for (dir, name, help) in [
        (Dir::In, "received_packets_total", "PGM packets received"),
        (Dir::Out, "sent_packets_total", "PGM packets sent"),
    ] {
        header(&mut out, name, help, "counter");
        for ((ifindex, d, ty), n) in &s.extra.packets {
            if *d == dir {
                let _ = writeln!(
                    out,
                    "pgm_dlr_{name}{{interface=\"{}\",type=\"{ty}\"}} {n}",
                    s.name_of(*ifindex)
                );
            }
        }
    }
    out
}
