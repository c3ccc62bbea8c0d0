//! The NAK state machine of one missing sequence number (§6.3) and the waits it uses.

use std::time::Duration;

use rand::Rng;

use super::ReceiverConfig;
use crate::proto::EngineRng;
pub(super) use crate::proto::rtt::RttEstimate;

/// The repair state of one missing sequence number (§6.3):
///
/// ```text
///   detect missing ──> BACK-OFF ──timer: send NAK──> WAIT_NCF ──NCF──> WAIT_DATA
///                        │  ^                          │    ^             │
///                        │  └──timer (ncf retry)───────┘    │             │
///                        │  └──timer (data retry)───────────┼─────────────┘
///                        └──NCF or NAK heard────────────────┴──> WAIT_DATA
///   data in any state: done.   retries exceeded or trail passes: lost.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakState {
    /// Waiting a random NAK_RB_IVL before NAKing.
    BackOff,
    /// NAK sent; waiting NAK_RPT_IVL for an NCF.
    WaitNcf,
    /// NCF heard; waiting NAK_RDATA_IVL for the data.
    WaitData,
}

/// What happens to a [`NakState`] (the transition table of §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakInput {
    /// The state's timer expired.
    Timeout,
    /// A matching NCF was heard.
    Ncf,
    /// A matching NAK from another receiver was heard.
    Nak,
}

/// The result of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakAction {
    /// Enter this state (restarting its timer).
    Enter(NakState),
    /// Send a NAK, then wait for an NCF.
    SendNak,
    /// A retry count is now exceeded: the data is lost.
    GiveUp,
}

impl NakState {
    /// The §6.3 transition for `input`, given the retry counts *after* counting this
    /// timeout. Every (state, input) pair has a defined outcome; none panics.
    pub fn on(self, input: NakInput, ncf_retries_left: bool, data_retries_left: bool) -> NakAction {
        use NakAction::*;
        use NakInput::*;
        match (self, input) {
            (Self::BackOff, Timeout) => SendNak,
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# A receiver MUST suppress NAK generation and wait at least
            //# NAK_RDATA_IVL before recommencing NAK generation if it hears a
            //# matching NCF or NAK during NAK_RB_IVL.
            (Self::BackOff, Ncf | Nak) => Enter(Self::WaitData),
            (Self::WaitNcf, Timeout) if ncf_retries_left => Enter(Self::BackOff),
            (Self::WaitNcf, Timeout) => GiveUp,
            (Self::WaitNcf, Ncf) => Enter(Self::WaitData),
            // A matching NAK restarts NAK_RPT_IVL.
            (Self::WaitNcf, Nak) => Enter(Self::WaitNcf),
            (Self::WaitData, Timeout) if data_retries_left => Enter(Self::BackOff),
            (Self::WaitData, Timeout) => GiveUp,
            // Matching NCFs and NAKs restart NAK_RDATA_IVL.
            (Self::WaitData, Ncf | Nak) => Enter(Self::WaitData),
        }
    }
}

/// The wait after a NAK (for the NCF) and after an NCF (for the repair), for one source.
pub(super) fn nak_waits(
    cfg: &ReceiverConfig,
    ncf_rtt: &RttEstimate,
    rdata_rtt: &RttEstimate,
) -> (Duration, Duration) {
    if !cfg.adaptive_nak_timers {
        return (cfg.nak_rpt_ivl, cfg.nak_rdata_ivl);
    }
    let rpt = ncf_rtt.wait(cfg.nak_ivl_floor, cfg.nak_rpt_ivl);
    let rdata = if rdata_rtt.srtt().is_none() && ncf_rtt.srtt().is_some() {
        // No repair measured yet (a session's first losses, whose repair may itself be
        // lost): the repair follows the NCF over at most the same path again, so twice the
        // NCF wait until the first repair is measured.
        rpt.saturating_mul(2).min(cfg.nak_rdata_ivl)
    } else {
        rdata_rtt.wait(cfg.nak_ivl_floor, cfg.nak_rdata_ivl)
    };
    (rpt, rdata)
}

/// `wait` doubled `retries` times, at most `ceiling` (and `wait` itself if larger).
pub(super) fn backed_off(wait: Duration, retries: u32, ceiling: Duration) -> Duration {
    wait.saturating_mul(1 << retries.min(16))
        .min(ceiling.max(wait))
}

/// A uniformly random wait in `[0, ivl)`.
pub(super) fn random_upto(rng: &mut EngineRng, ivl: Duration) -> Duration {
    let max = ivl.as_nanos().min(u128::from(u64::MAX)) as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..max))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole §6.3 transition table, written out: a change to any transition fails here.
    #[test]
    fn nak_transition_table() {
        use NakAction::*;
        use NakInput::*;
        use NakState::*;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
        //= type=test
        //# The entire generation process can be summarized by the following
        //# state machine:
        let table = [
            (BackOff, Timeout, true, true, SendNak),
            (BackOff, Ncf, true, true, Enter(WaitData)),
            (BackOff, Nak, true, true, Enter(WaitData)),
            (WaitNcf, Timeout, true, true, Enter(BackOff)),
            (WaitNcf, Timeout, false, true, GiveUp),
            (WaitNcf, Ncf, true, true, Enter(WaitData)),
            (WaitNcf, Nak, true, true, Enter(WaitNcf)),
            (WaitData, Timeout, true, true, Enter(BackOff)),
            (WaitData, Timeout, true, false, GiveUp),
            (WaitData, Ncf, true, true, Enter(WaitData)),
            (WaitData, Nak, true, true, Enter(WaitData)),
        ];
        for (state, input, ncf_left, data_left, want) in table {
            assert_eq!(
                state.on(input, ncf_left, data_left),
                want,
                "{state:?} on {input:?}"
            );
        }
    }
}
