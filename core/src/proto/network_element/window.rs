//! A session's transmit window as a network element learns it, to drop NAKs the source could
//! never answer.
//!
//! SPMs advertise the window's edges, SPM_TRAIL and SPM_LEAD (§8.1); ODATA and RDATA carry
//! the trailing edge and their own sequence number (§8.2). A sequence number before the
//! trailing edge is gone from the source's window, and one far past the leading edge has not
//! been sent: a NAK for either only draws an NCF on the LAN and a NAK upstream that the
//! source ignores. So a NAK is let through only for `[trail, lead + slack]`, in the circular
//! sequence space of §3.2 (serial arithmetic, as [`Sqn`] compares).
//!
//! Rules:
//!
//! - Nothing is filtered until an SPM with window information arrives. SPMs without it
//!   (SPM_TRAIL 0 and SPM_LEAD 0x80000000, §8.1) and windows of 2^31 sequence numbers or
//!   more (§3.3 forbids them; serial arithmetic cannot compare their edges) change nothing.
//! - An in-sequence SPM sets both edges: the source knows its window best, and a trail
//!   pushed forward by a bad data packet heals at the next SPM.
//! - Data from upstream only moves the edges forward: the lead to its sequence number, the
//!   trail to its trailing edge (never past the lead + 1).
//! - Data runs ahead of the last SPM, by up to one SPM interval (ambient SPMs keep coming
//!   while data flows, heartbeat SPMs only after it pauses, §5.1.6). So the slack is the
//!   larger of the configured one and twice the lead's advance between the last two SPMs
//!   with window information.
//! - The window plus the slack never covers more than half the sequence space, so numbers
//!   before the trail are never let through.

use crate::wire::Sqn;

/// Half the sequence space: serial arithmetic compares numbers less than this apart.
const HALF: u64 = 1 << 31;

/// The transmit window of a session; see the [module documentation](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TxWindow {
    edges: Option<Edges>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edges {
    trail: Sqn,
    lead: Sqn,
    /// SPM_LEAD of the last SPM with window information.
    spm_lead: Sqn,
    /// How far SPM_LEAD advanced from the SPM before that one.
    step: u32,
}

impl TxWindow {
    /// The number of sequence numbers in `[trail, lead]` (0 for the empty window, trail =
    /// lead + 1), if less than half the sequence space.
    fn span(trail: Sqn, lead: Sqn) -> Option<u32> {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-3.3
        //# The size of the transmit window in sequence numbers (TXW_SQNS) (i.e.,
        //# the difference between the leading and trailing edges plus one) MUST
        //# be no greater than half the PGM sequence number space less one.
        let span = lead.0.wrapping_sub(trail.0).wrapping_add(1);
        (u64::from(span) < HALF).then_some(span)
    }

    /// The edges, (trail, lead), if known.
    pub(super) fn edges(&self) -> Option<(Sqn, Sqn)> {
        self.edges.map(|e| (e.trail, e.lead))
    }

    /// Learns from an in-sequence SPM's SPM_TRAIL and SPM_LEAD.
    pub(super) fn on_spm(&mut self, trail: Sqn, lead: Sqn) {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-8.1
        //# If SPM_TRAIL == 0 and SPM_LEAD == 0x80000000, this indicates that
        //# no window information is present in the packet.
        if Self::span(trail, lead).is_none() {
            return;
        }
        let step = self.edges.and_then(|e| lead.since(e.spm_lead)).unwrap_or(0);
        self.edges = Some(Edges {
            trail,
            lead,
            spm_lead: lead,
            step,
        });
    }

    /// Learns from ODATA or RDATA that came from upstream: sequence number `sqn`, trailing
    /// edge `trail`.
    pub(super) fn on_data(&mut self, sqn: Sqn, trail: Sqn) {
        let Some(e) = &mut self.edges else {
            return;
        };
        if sqn.gt(e.lead) && Self::span(e.trail, sqn).is_some() {
            e.lead = sqn;
        }
        if trail.gt(e.trail) && trail.le(e.lead + 1) {
            e.trail = trail;
        }
    }

    /// Whether a NAK for `sqn` may go on: no window is known, or `sqn` lies in
    /// `[trail, lead + slack]`, the slack being at least `min_slack`.
    pub(super) fn admits(&self, sqn: Sqn, min_slack: u32) -> bool {
        let Some(e) = self.edges else {
            return true;
        };
        let span = u64::from(e.lead.0.wrapping_sub(e.trail.0).wrapping_add(1));
        let slack = u64::from(min_slack).max(2 * u64::from(e.step));
        u64::from(sqn.0.wrapping_sub(e.trail.0)) < (span + slack).min(HALF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(trail: u32, lead: u32) -> TxWindow {
        let mut w = TxWindow::default();
        w.on_spm(Sqn(trail), Sqn(lead));
        w
    }

    #[test]
    fn nothing_is_filtered_without_window_information() {
        let mut w = TxWindow::default();
        assert!(w.admits(Sqn(0x9000_0000), 0));
        w.on_spm(Sqn(0), Sqn(0x8000_0000));
        w.on_data(Sqn(5), Sqn(0));
        assert_eq!(w.edges(), None);
        assert!(w.admits(Sqn(0x9000_0000), 0));
        // A window of 2^31 numbers or more cannot be compared either.
        w.on_spm(Sqn(10), Sqn(10 + 0x8000_0000));
        assert_eq!(w.edges(), None);
    }

    #[test]
    fn edges_are_serial_and_the_slack_extends_the_lead() {
        let w = window(0xFFFF_FFF0, 0x10);
        for (s, ok) in [
            (0xFFFF_FFEF, false),
            (0xFFFF_FFF0, true),
            (0, true),
            (0x10, true),
            (0x15, true),
            (0x16, false),
            (0x8000_0000, false),
        ] {
            assert_eq!(w.admits(Sqn(s), 5), ok, "{s:#x}");
        }
    }

    #[test]
    fn an_empty_window_admits_only_the_slack() {
        let w = window(101, 100);
        assert!(!w.admits(Sqn(100), 3));
        assert!(w.admits(Sqn(101), 3));
        assert!(w.admits(Sqn(103), 3));
        assert!(!w.admits(Sqn(104), 3));
        assert!(!w.admits(Sqn(101), 0));
    }

    #[test]
    fn the_slack_never_reaches_behind_the_trail() {
        let w = window(1000, 2000);
        assert!(w.admits(Sqn(1000 + 0x7FFF_FFFF), u32::MAX));
        assert!(!w.admits(Sqn(999), u32::MAX));
        assert!(!w.admits(Sqn(1000 + 0x8000_0000), u32::MAX));
    }

    #[test]
    fn data_moves_the_edges_forward_only_and_spms_set_them() {
        let mut w = window(100, 200);
        w.on_data(Sqn(150), Sqn(50));
        assert_eq!(w.edges(), Some((Sqn(100), Sqn(200))));
        w.on_data(Sqn(250), Sqn(120));
        assert_eq!(w.edges(), Some((Sqn(120), Sqn(250))));
        // A trail past the lead + 1 is nonsense.
        w.on_data(Sqn(250), Sqn(300));
        assert_eq!(w.edges(), Some((Sqn(120), Sqn(250))));
        w.on_data(Sqn(250), Sqn(251));
        assert_eq!(w.edges(), Some((Sqn(251), Sqn(250))));
        // The next SPM is authoritative.
        w.on_spm(Sqn(130), Sqn(240));
        assert_eq!(w.edges(), Some((Sqn(130), Sqn(240))));
    }

    #[test]
    fn the_slack_follows_the_advance_between_spms() {
        let mut w = window(0, 1000);
        assert!(!w.admits(Sqn(1011), 10));
        w.on_spm(Sqn(0), Sqn(1500));
        // Advanced 500: up to 1000 past the lead.
        assert!(w.admits(Sqn(2500), 10));
        assert!(!w.admits(Sqn(2501), 10));
        // A lead that goes back resets the step.
        w.on_spm(Sqn(0), Sqn(1400));
        assert!(!w.admits(Sqn(1411), 10));
    }
}
