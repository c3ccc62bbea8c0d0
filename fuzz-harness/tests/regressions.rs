//! Inputs that once made an engine break an invariant, minimised (`cargo fuzz tmin`) and
//! replayed through the same harness as the fuzz targets. Each names the engine bug it found.
//!
//! Follow one with `PGM_FUZZ_TRACE=1 cargo test -p pgm-fuzz-harness --test regressions NAME
//! -- --nocapture`, which prints every operation, transmit and event.
//!
//! The bytes are read by the harness's decoder (`fuzz-harness/src/packets.rs`, the engine
//! configurations): a change to how it decodes input changes what these inputs do. Such a
//! change must keep them failing on the unfixed engines, or replace them with inputs found
//! again by the fuzzer.
//!
//! A test marked `#[ignore]` replays an engine bug that is not fixed yet; the fix removes the
//! mark. Until then `PGM_FUZZ_KNOWN` (see `scripts/test.sh`) lets the fuzz runs go past it.

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn replay(engine: &str, hex: &str) {
    let (_, f) = pgm_fuzz_harness::ENGINES
        .iter()
        .find(|(n, _)| *n == engine)
        .expect("engine");
    f(&unhex(hex));
}

/// A session that expires with data still in its window (received beyond a gap, or given up
/// as lost) leaves that data's bytes in the engine's `buffered_bytes()` for good: expiry
/// drains the window without taking what it drained off the account, then subtracts only
/// what is left. Each such session raises the account until it reaches `max_buffer_bytes`,
/// and from then on the receiver drops every data packet as `buffer_full`.
///
/// ODATA 1-4 (one message in four fragments) delivered, 6-10 held behind the gap at 5;
/// after `peer_expiry` the session ends, and 533 bytes (six slots) stay on the account.
#[test]
fn receiver_expiry_leaks_buffered_bytes() {
    replay(
        "receiver",
        "f5d5f51c4ea728de11932cc0ecc04d4d5bd3ddec4d5bd3dd2cd3ddec4d5bd3ddec4ddd",
    );
}

/// A session's first ODATA (sqn 6, no OPT_SYN) starts its join hold; ODATA 2 then moves the
/// window back to 2, adding four missing slots (88 bytes each) without asking whether
/// `max_buffer_bytes` (here 0) has room: the rewind of the join hold adds up to `rxw_sqns`
/// slots per source outside the bound. With the defaults (1024 sources, 32768 sequence
/// numbers) two packets per made-up session hold about 2.9 MB each, beyond the 256 MiB bound,
/// and once over the bound every source's data is dropped as `buffer_full`.
#[test]
fn receiver_rewind_ignores_max_buffer_bytes() {
    replay(
        "receiver",
        "750000000000039f1d9f1d9d50039f1d9f1d00000050039f1d9f1d9d50039f1d9f1d",
    );
}

/// An SPM with OPT_RST as a session's first packet: the receiver reports SessionEnd(Reset),
/// then a Loss for the same session, after its end. The reset pushes SessionEnd into the
/// events before the window is drained; the drain's Loss (and Data) events come after it.
#[test]
fn receiver_loss_after_reset() {
    replay(
        "receiver",
        "58238b0fcafc3d01aed0fb209fe2746acbd454ccbbebbf6563c082cf1500000000000000a502295c7fd8a05261ed088d",
    );
}

/// At `max_sources` (1), a session that ended with OPT_FIN (SessionEnd(Fin) reported) is
/// evicted to make room for a new one and reported ended a second time, SessionEnd(Evicted):
/// eviction does not look at whether the session had ended. (Found through the repairer's
/// embedded receiver.)
#[test]
fn receiver_evicts_ended_session_and_ends_it_again() {
    replay(
        "repairer",
        "59e18d8410273fce77735887694d2670dc75c7347bf876934fd8e9e3cdd9635a9c63f327babce7cd62bc7113d9a29e82a9396ea124b26971b1b7",
    );
}

/// An SPM carrying unknown options with OPX "invalidate", the second after a 7-byte unknown
/// option and so at an odd offset: the network element rewrote both type bytes to
/// OPT_INVALID but updated the checksum as if each were the high byte of a 16-bit word, so
/// the forwarded copy had a wrong checksum and every PGM host dropped it. Fixed in
/// `network_element/rewrite.rs` (`apply_opx` takes the word the byte is in).
#[test]
fn network_element_invalidated_option_at_odd_offset_keeps_checksum() {
    replay(
        "network_element",
        "66beb698ef3770e3172f322f328326d166beb698ef029f03d460545555555555550570e3172f3266beb698ef029f03d46054555570e3172f3266beb698ef029f03d4605455555555555505",
    );
}

/// A source whose window jumps again and again (ODATA 62 sequence numbers ahead, each with a
/// trail that a second packet confirms), all at one instant: every jump opens up to `rxw_sqns`
/// missing slots, each with a NAK timer entry, then gives them up and delivers past them, but
/// the timer entries stay until they come due (`nak_bo_ivl`): the queue is compacted only on
/// NCFs, NAKs and timeouts, not when packets grow or move the window. Here 567 entries for a
/// window of 64 slots; without bound as such packets keep coming within `nak_bo_ivl` (at
/// the defaults, up to 32768 entries, 786 KB, per pair of packets). (Found through the
/// repairer's embedded receiver.)
#[test]
fn receiver_timer_entries_grow_with_window_jumps() {
    replay(
        "repairer",
        "098a320a505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050500b000000505050505050505050505050505050505050505050505050505050505050505050503250505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050500b0000005050505050505050505050505050505050505050505050505050505050505050505032505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050500b000000505050505050505050505050505050505050feffffffffffff0f50505050505050503250505050ffffffffffffffed7ee9edededed000501ffffffffffff5050505050505050505050505000005050505050505050505050505050505050505050505050505050505050505050503250505050505050505050505050505050505050edffffffffffffffffffffffffffed7ee9edededed000501",
    );
}

/// An ACK (or NAK) whose OPT_PGMCC_FEEDBACK names a receiver of the other address family
/// made that receiver the acker of an IPv4 source: OPT_PGMCC_DATA then carried a 16-byte
/// IPv6 address in every data packet, 12 bytes more than the room kept for it, and ODATA
/// of a full TSDU went out over `max_tpdu` (9004 bytes with 9000). Feedback naming another
/// family, an unspecified or a multicast address is now dropped (`reports_invalid`).
#[test]
fn source_acker_of_the_other_family_overflows_max_tpdu() {
    replay(
        "source",
        "03ab861b350100000000000030bf7dba6917a586a66e7ed0050963cc6d0004000000000000000000006dfcb8c55dfa7511a8f2a109056dcc056d63cc",
    );
}
