//! A smoothed round-trip estimate (RFC 6298), shared by the receiver's NAK timers and
//! PGMCC's acker timeout.

use std::time::Duration;

/// A smoothed round-trip estimate (RFC 6298's SRTT and RTTVAR), in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RttEstimate {
    srtt: Option<(u64, u64)>,
}

impl RttEstimate {
    pub(crate) fn sample(&mut self, d: Duration) {
        let r = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.srtt = Some(match self.srtt {
            None => (r, r / 2),
            Some((srtt, var)) => {
                let var = (3 * (var / 4)).saturating_add(srtt.abs_diff(r) / 4);
                let srtt = (7 * (srtt / 8)).saturating_add(r / 8);
                (srtt, var)
            }
        });
    }

    /// SRTT, once a sample was taken.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt.map(|(s, _)| Duration::from_nanos(s))
    }

    /// The wait: SRTT + 4·RTTVAR within `[floor, ceiling]`, or `ceiling` before any sample.
    pub(crate) fn wait(&self, floor: Duration, ceiling: Duration) -> Duration {
        match self.srtt {
            None => ceiling,
            Some((srtt, var)) => Duration::from_nanos(srtt.saturating_add(var.saturating_mul(4)))
                .max(floor)
                .min(ceiling),
        }
    }
}
