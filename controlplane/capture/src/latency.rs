//! How long capture actions take: a fixed-bucket histogram of the time from
//! an action's dispatch to its result (provider calls, confirmation polls and
//! budget waits included), kept in the reconciler's status for `/metrics`.

use serde::Serialize;
use std::time::Duration;

/// Upper bounds of the buckets, seconds (a move takes 0.1 s to tens of s).
pub const ACTION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// Observations per bucket (not cumulative), then the sum and the count.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyHistogram {
    /// `counts[i]`: observations above `ACTION_BUCKETS[i - 1]` up to
    /// `ACTION_BUCKETS[i]`; the last entry those above every bound.
    pub counts: [u64; ACTION_BUCKETS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        let i = ACTION_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(ACTION_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_secs += s;
        self.count += 1;
    }

    /// (upper bound, observations in that bucket) for every finite bound.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        ACTION_BUCKETS.iter().copied().zip(self.counts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(51));
        h.observe(Duration::from_secs(500));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[ACTION_BUCKETS.len()], 1);
        assert_eq!(h.count, 3);
        assert!((h.sum_secs - 500.101).abs() < 1e-9);
        assert_eq!(h.buckets().len(), ACTION_BUCKETS.len());
        assert_eq!(h.buckets()[1], (0.1, 1));
    }
}
