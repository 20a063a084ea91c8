//! RFC 2544-style searches over trials: the maximum delivered rate (offered
//! flat out) and the no-drop rate (the highest offered rate with zero loss
//! over a trial, by binary search). Pure logic: the trial is a closure, so
//! the search is tested without a generator.

use super::gen::TrialResult;

/// What one offered rate did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Step {
    pub rate_pps: f64,
    pub lost: u64,
    /// The generator could not hold the rate (it was the bound, not the engine).
    pub behind: bool,
    /// The generator's longest stall behind its schedule (microseconds).
    pub lag_max_us: f64,
    /// The engine's polls over 100 µs during the trial (CER counts them).
    pub engine_stalls: Option<u64>,
}

impl Step {
    pub fn of(rate_pps: f64, r: &TrialResult) -> Step {
        Step {
            rate_pps,
            lost: r.attempted.saturating_sub(r.received),
            behind: r.behind,
            lag_max_us: r.lag_max_us,
            engine_stalls: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.lost == 0 && !self.behind
    }
}

/// The highest rate in `[0, max_offered]` that passes, to within
/// `resolution` (a fraction of the rate), in at most `max_trials` trials.
/// `first_guess` (the delivered maximum) is tried first: the no-drop rate
/// is usually just below it. Returns the rate (0 if nothing passed) and
/// every step taken.
pub fn no_drop_rate(
    max_offered: f64,
    first_guess: f64,
    resolution: f64,
    max_trials: usize,
    mut trial: impl FnMut(f64) -> anyhow::Result<Step>,
) -> anyhow::Result<(f64, Vec<Step>)> {
    let mut steps = Vec::new();
    let mut lo = 0.0f64;
    let mut hi = max_offered;
    let mut rate = first_guess.clamp(max_offered * 0.01, max_offered);
    for i in 0..max_trials {
        let s = trial(rate)?;
        steps.push(s);
        if s.passed() {
            lo = rate;
            if rate >= hi {
                break;
            }
        } else {
            hi = rate;
        }
        if hi - lo <= resolution * hi {
            break;
        }
        // A first guess that passed: the top of the range may pass too.
        rate = if i == 0 && s.passed() {
            hi
        } else {
            (lo + hi) / 2.0
        };
    }
    Ok((lo, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_at(limit: f64) -> impl FnMut(f64) -> anyhow::Result<Step> {
        move |rate| {
            Ok(Step {
                rate_pps: rate,
                lost: if rate > limit { 1 } else { 0 },
                behind: false,
                lag_max_us: 0.0,
                engine_stalls: None,
            })
        }
    }

    #[test]
    fn finds_the_limit_within_resolution() {
        for limit in [1e6, 3.3e6, 7.9e6] {
            let (r, steps) = no_drop_rate(10e6, 8e6, 0.01, 20, step_at(limit)).unwrap();
            assert!(r <= limit, "{r} above {limit}");
            assert!(r >= limit * 0.98, "{r} too far below {limit}: {steps:?}");
            assert!(steps.len() <= 12, "{} steps", steps.len());
        }
    }

    #[test]
    fn generator_bound_is_the_top_when_everything_passes() {
        let (r, steps) = no_drop_rate(9e6, 9e6, 0.01, 20, step_at(f64::MAX)).unwrap();
        assert_eq!(r, 9e6);
        assert_eq!(steps.len(), 1);
        let (r, steps) = no_drop_rate(9e6, 8.5e6, 0.01, 20, step_at(f64::MAX)).unwrap();
        assert_eq!(r, 9e6);
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn a_generator_that_falls_behind_is_not_a_pass() {
        let (r, _) = no_drop_rate(10e6, 10e6, 0.01, 20, |rate| {
            Ok(Step {
                rate_pps: rate,
                lost: 0,
                behind: rate > 5e6,
                lag_max_us: 0.0,
                engine_stalls: None,
            })
        })
        .unwrap();
        assert!(r <= 5e6 && r > 4.9e6, "{r}");
    }

    #[test]
    fn nothing_passes_gives_zero() {
        let (r, steps) = no_drop_rate(10e6, 5e6, 0.01, 8, step_at(0.0)).unwrap();
        assert_eq!(r, 0.0);
        assert_eq!(steps.len(), 8);
    }
}
