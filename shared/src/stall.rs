//! Stall detection for cer-control: a router process that was stopped (SIGSTOP,
//! a frozen VM, a host that did not schedule it) for longer than a failover
//! takes resumes with a view that may be wrong. While it was away, VRRP may
//! have made the other router master and the cloud provider may have moved a
//! /32; the timers that would have told it fire all at once. Whatever it was
//! about to say (a proxy-ARP answer, a gratuitous ARP, a provider call) must
//! wait until it has looked again.
//!
//! A ticker thread notes the monotonic clock every [`TICK`]. A tick that comes
//! more than [`STALL_GUARD`] late is a stall: the epoch goes up, and the
//! consumers (the VRRP gate, the capture reconciler) hold and re-confirm when
//! they see it change. Between the thaw and the ticker's next turn,
//! [`StallWatch::stalled_now`] already says so: a consumer that runs first
//! (a provider call resuming) checks it before acting. The dataplane's own
//! stalls, reported in its feed acks, raise the same epoch ([`StallWatch::report`]).
//!
//! Lock-free: atomics only; the consumers poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the ticker notes the clock.
pub const TICK: Duration = Duration::from_millis(100);

/// A tick this late is a stall (half a second: well above any scheduling
/// delay a live process sees, below a VRRPv3 takeover of 0.7 s).
pub const STALL_GUARD: Duration = Duration::from_millis(500);

/// See the module documentation.
#[derive(Debug)]
pub struct StallWatch {
    origin: Instant,
    /// Milliseconds since `origin` at the last tick.
    last_tick_ms: AtomicU64,
    epoch: AtomicU64,
}

impl Default for StallWatch {
    fn default() -> Self {
        StallWatch {
            origin: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        }
    }
}

impl StallWatch {
    pub fn new() -> Arc<StallWatch> {
        Arc::new(StallWatch::default())
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Starts the ticker thread (it runs for the life of the process).
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let w = self.clone();
        w.tick();
        std::thread::Builder::new()
            .name("stall-watch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                w.tick();
            })
            .map(|_| ())
    }

    /// One tick: a stall when the last one is more than the guard behind
    /// (the epoch goes up before the tick is noted, so nobody sees the watch
    /// calm without the new epoch). True when this tick found a stall.
    pub fn tick(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_tick_ms.load(Ordering::SeqCst);
        let late = now
            .saturating_sub(last)
            .saturating_sub(TICK.as_millis() as u64);
        let stalled = last != 0 && late > STALL_GUARD.as_millis() as u64;
        if stalled {
            let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            log::warn!(
                "stalled: this process did not run for about {late} ms (stall {e}); \
                 the VRRP gate and cloud capture re-confirm before acting"
            );
        }
        self.last_tick_ms.store(now.max(1), Ordering::SeqCst);
        stalled
    }

    /// A stall seen elsewhere (the dataplane reported one).
    pub fn report(&self, what: &str) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        log::warn!("stalled: {what} (stall {e}); the VRRP gate re-confirms before opening");
    }

    /// Stalls so far; a change means: hold and look again.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// True between a thaw and the ticker's next turn (the tick is late by
    /// more than the guard right now).
    pub fn stalled_now(&self) -> bool {
        let last = self.last_tick_ms.load(Ordering::SeqCst);
        last != 0 && self.now_ms().saturating_sub(last) > (TICK + STALL_GUARD).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch whose last tick is `ago` in the past (a thaw just now).
    fn with_last_tick_ago(ago: Duration) -> StallWatch {
        StallWatch {
            origin: Instant::now()
                .checked_sub(ago + Duration::from_millis(1))
                .unwrap_or_else(Instant::now),
            last_tick_ms: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_late_tick_is_a_stall_and_raises_the_epoch() {
        let w = StallWatch::new();
        assert!(!w.tick(), "the first tick has nothing to compare");
        assert!(!w.stalled_now());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!w.tick());
        assert_eq!(w.epoch(), 0);
        let late = with_last_tick_ago(Duration::from_secs(2));
        assert!(late.stalled_now(), "between the thaw and the next tick");
        assert!(late.tick());
        assert_eq!(late.epoch(), 1);
        assert!(!late.stalled_now());
        late.report("the dataplane stalled");
        assert_eq!(late.epoch(), 2);
    }
}
