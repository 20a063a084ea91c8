//! Client-side API budgets: a token bucket per provider call class that
//! matches the provider's own (AWS EC2 mutating and describe buckets, Azure
//! ARM writes and reads per subscription, OCI per tenancy). Every provider
//! call takes a token first and waits for one when the bucket is empty, so
//! the steady state never meets the provider's throttle. A throttle reply
//! anyway (another client of the same account spent the budget) empties the
//! bucket and pauses it for the provider's `Retry-After`, bounded: an absurd
//! value cannot park the capture plane for hours.
//!
//! The client keeps a tenth of the provider's bucket in reserve ([`reserve`]).
//! Our bucket only sees our calls; the provider's is the account's. Other
//! clients of the same account (an operator's script, a console) and a
//! restarted router (its fresh bucket is full while the provider's is still
//! partly spent) draw on the provider's without ours knowing: the reserve
//! absorbs that much before a throttle reply has to teach us.

use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// The longest pause a throttle reply can impose, whatever its Retry-After
/// says (the reconciler's own throttle backoff caps at 30 s as well).
pub const MAX_PAUSE: Duration = Duration::from_secs(30);
/// The pause after a throttle reply that names no Retry-After.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The part of a provider bucket of `capacity` tokens the client never
/// spends: a tenth, rounded down (none below 10 tokens).
pub const fn reserve(capacity: u32) -> u32 {
    capacity / 10
}

/// A bucket as configured: `capacity` tokens, `refill_per_s` added per second.
/// `capacity = 0` turns the bucket off (no client-side limit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub capacity: u32,
    pub refill_per_s: f64,
}

impl BucketConfig {
    pub const fn new(capacity: u32, refill_per_s: f64) -> BucketConfig {
        BucketConfig {
            capacity,
            refill_per_s,
        }
    }

    /// Checks the values; the error names `field`.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        if self.capacity > 0 && !(self.refill_per_s.is_finite() && self.refill_per_s > 0.0) {
            return Err(format!(
                "{field}.refill_per_s = {}: expected a positive number of tokens per second",
                self.refill_per_s
            ));
        }
        Ok(())
    }
}

/// What `cerctl` and the metrics show of one bucket.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BudgetStatus {
    pub name: String,
    /// The provider's bucket.
    pub capacity: u32,
    pub refill_per_s: f64,
    /// Of the capacity, what the client never spends ([`reserve`]).
    pub reserve: u32,
    /// Tokens now (fractional while refilling; at most capacity - reserve).
    pub tokens: f64,
    /// Calls that had to wait for a token.
    pub waited: u64,
    /// Throttle replies the provider sent anyway.
    pub throttled: u64,
    /// Calls that took a token.
    pub calls: u64,
    /// Paused after a throttle reply for this much longer.
    pub paused_ms: Option<u64>,
}

struct State {
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
    waited: u64,
    throttled: u64,
    calls: u64,
}

/// One token bucket.
pub struct Budget {
    name: String,
    cfg: BucketConfig,
    /// What the client may hold: the capacity less the reserve.
    usable: f64,
    state: Mutex<State>,
}

impl Budget {
    pub fn new(name: impl Into<String>, cfg: BucketConfig) -> Budget {
        let usable = f64::from(cfg.capacity - reserve(cfg.capacity));
        Budget {
            name: name.into(),
            cfg,
            usable,
            state: Mutex::new(State {
                tokens: usable,
                at: Instant::now(),
                paused_until: None,
                waited: 0,
                throttled: 0,
                calls: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, s: &mut State, now: Instant) {
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + dt * self.cfg.refill_per_s).min(self.usable);
        s.at = now;
    }

    /// Takes a token, waiting for one (and for the end of a throttle pause).
    pub async fn take(&self) {
        if self.cfg.capacity == 0 {
            self.lock().calls += 1;
            return;
        }
        let mut counted = false;
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.paused_until {
                    Some(t) if t > now => Some(t - now),
                    _ => {
                        s.paused_until = None;
                        self.refill(&mut s, now);
                        if s.tokens >= 1.0 {
                            s.tokens -= 1.0;
                            s.calls += 1;
                            None
                        } else {
                            let need = (1.0 - s.tokens) / self.cfg.refill_per_s;
                            Some(Duration::from_secs_f64(need.max(0.001)))
                        }
                    }
                }
            };
            match wait {
                None => return,
                Some(w) => {
                    if !counted {
                        counted = true;
                        self.lock().waited += 1;
                    }
                    tokio::time::sleep(w).await;
                }
            }
        }
    }

    /// A call that went out without [`Budget::take`] (a retry attempt the
    /// provider's SDK made on its own): its token is spent now, into debt
    /// when the bucket is empty, which the next `take` waits off.
    pub fn charge(&self) {
        let mut s = self.lock();
        s.calls += 1;
        if self.cfg.capacity == 0 {
            return;
        }
        let now = Instant::now();
        if s.paused_until.is_none_or(|t| t <= now) {
            self.refill(&mut s, now);
        }
        s.tokens -= 1.0;
    }

    /// The provider throttled a call anyway: empty the bucket and pause it
    /// for `retry_after` (bounded by [`MAX_PAUSE`]; none: [`DEFAULT_PAUSE`]).
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
        let mut s = self.lock();
        let now = Instant::now();
        s.throttled += 1;
        s.tokens = 0.0;
        s.at = now;
        let until = now + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |t| t.max(until)));
    }

    pub fn status(&self) -> BudgetStatus {
        let mut s = self.lock();
        let now = Instant::now();
        if self.cfg.capacity > 0 && s.paused_until.is_none_or(|t| t <= now) {
            self.refill(&mut s, now);
        }
        BudgetStatus {
            name: self.name.clone(),
            capacity: self.cfg.capacity,
            refill_per_s: self.cfg.refill_per_s,
            reserve: reserve(self.cfg.capacity),
            tokens: s.tokens,
            waited: s.waited,
            throttled: s.throttled,
            calls: s.calls,
            paused_ms: s
                .paused_until
                .filter(|t| *t > now)
                .map(|t| (t - now).as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_paced_at_the_refill_rate() {
        let b = Budget::new("t", BucketConfig::new(100, 5.0));
        let t0 = Instant::now();
        for _ in 0..90 {
            b.take().await;
        }
        assert_eq!(
            Instant::now(),
            t0,
            "the capacity less the reserve goes at once"
        );
        for _ in 0..10 {
            b.take().await;
        }
        let dt = Instant::now() - t0;
        // Ten more tokens at 5/s: two seconds.
        assert!(
            dt >= Duration::from_millis(1990) && dt <= Duration::from_millis(2100),
            "{dt:?}"
        );
        let st = b.status();
        assert_eq!(st.calls, 100);
        assert_eq!(st.waited, 10);
        assert_eq!(st.reserve, 10);
        // Refilled, it stops at the capacity less the reserve.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(b.status().tokens, 90.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_leaves_room_for_another_client_of_the_account() {
        // The provider's bucket, drawn on by us (paced by our budget) and by
        // another client of the same account (an operator's five calls while
        // we run flat out). Without the reserve the provider would refuse as
        // many of our calls as the other client made.
        let cfg = BucketConfig::new(100, 20.0);
        let ours = Budget::new("t", cfg);
        let mut theirs = f64::from(cfg.capacity);
        let mut last = Instant::now();
        let mut refused = 0;
        for i in 0..400 {
            ours.take().await;
            let now = Instant::now();
            theirs = (theirs + (now - last).as_secs_f64() * cfg.refill_per_s).min(100.0);
            last = now;
            if i % 50 == 0 && i < 250 {
                theirs -= 1.0; // the other client's call
            }
            if theirs >= 1.0 {
                theirs -= 1.0;
            } else {
                refused += 1;
            }
        }
        assert_eq!(refused, 0);
        assert_eq!(reserve(100), 10);
        assert_eq!(reserve(9), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_reply_drains_and_pauses_bounded() {
        let b = Budget::new("t", BucketConfig::new(100, 10.0));
        b.throttled(Some(Duration::from_secs(2)));
        let t0 = Instant::now();
        b.take().await;
        let dt = Instant::now() - t0;
        // The pause, then one token's refill.
        assert!(
            dt >= Duration::from_secs(2) && dt <= Duration::from_millis(2200),
            "{dt:?}"
        );
        // An absurd Retry-After is bounded.
        b.throttled(Some(Duration::from_secs(86_400 * 365)));
        let t0 = Instant::now();
        b.take().await;
        assert!(Instant::now() - t0 <= MAX_PAUSE + Duration::from_millis(200));
        assert_eq!(b.status().throttled, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unmetered_attempt_is_charged_into_debt() {
        let b = Budget::new("t", BucketConfig::new(10, 2.0));
        for _ in 0..9 {
            b.take().await;
        }
        // The usable nine are spent; an attempt the SDK retried on its own
        // leaves one token of debt.
        b.charge();
        assert_eq!(b.status().calls, 10);
        assert_eq!(b.status().tokens, -1.0);
        let t0 = Instant::now();
        b.take().await;
        // From -1 to one token at 2/s: a second.
        let dt = Instant::now() - t0;
        assert!(
            dt >= Duration::from_millis(990) && dt <= Duration::from_millis(1100),
            "{dt:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_zero_is_no_limit() {
        let b = Budget::new("t", BucketConfig::new(0, 0.0));
        let t0 = Instant::now();
        for _ in 0..1000 {
            b.take().await;
        }
        assert_eq!(Instant::now(), t0);
        assert!(BucketConfig::new(0, 0.0).validate("x").is_ok());
        assert!(BucketConfig::new(5, 0.0).validate("x").is_err());
        assert!(BucketConfig::new(5, f64::NAN).validate("x").is_err());
    }
}
