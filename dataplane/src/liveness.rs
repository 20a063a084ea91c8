//! The stall guard: a router that was stopped (SIGSTOP, a frozen VM, a host
//! that did not schedule it) for longer than a VRRP takeover resumes with a
//! view of the world that may be wrong: while it was away the other router
//! may have become master and answered for the captured /32s. It must not
//! claim them again until its controller has re-confirmed its role.
//!
//! The manager thread beats every turn (about every 2 ms) with the polling
//! cores' clock. A core that finds the beat older than [`STALL_GUARD_NS`]
//! treats the proxy-ARP gate as closed for that poll: it answers no proxy
//! ARP, sends no queued gratuitous ARP and raises no duplicate-holder alarm
//! (the frames in its rx ring are as old as the stall). It counts the held
//! polls; the manager, seeing that count move or its own wait overrun the
//! guard, closes the gate in the tables (fail closed) before it beats again,
//! and reports the stall to cer-control in its next ack. cer-control opens
//! the gate again once VRRP has settled and keepalived confirms it is master.
//!
//! Lock-free: one relaxed load per poll on the cores, one store per turn on
//! the manager.

use std::sync::atomic::{AtomicU64, Ordering};

/// A gap longer than this (no manager turn, or a manager wait this much
/// longer than asked) is a stall. VRRPv3 with 0.2 s adverts replaces a silent
/// master after about 0.7 s; half a second stays clear of any scheduling delay
/// a live router sees and below that.
pub const STALL_GUARD_NS: u64 = 500_000_000;

/// The manager's heartbeat as the cores see it.
#[derive(Debug, Default)]
pub struct Liveness {
    /// The cores' clock (ns) at the manager's last turn; 0: not started.
    beat_ns: AtomicU64,
    /// Polls in which a core found the beat stale.
    held_polls: AtomicU64,
}

impl Liveness {
    pub fn new() -> Self {
        Self::default()
    }

    /// The manager's turn at `now_ns` (the cores' clock).
    pub fn beat(&self, now_ns: u64) {
        self.beat_ns.store(now_ns.max(1), Ordering::Release);
    }

    /// Whether a core at `now_ns` must hold proxy ARP: the manager has not
    /// turned for longer than the guard. Counts the held poll.
    #[inline]
    pub fn hold(&self, now_ns: u64) -> bool {
        let beat = self.beat_ns.load(Ordering::Acquire);
        let held = beat != 0 && now_ns.saturating_sub(beat) > STALL_GUARD_NS;
        if held {
            self.held_polls.fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// Polls held so far (the manager compares it between turns).
    pub fn held_polls(&self) -> u64 {
        self.held_polls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_beat_does_not_hold_a_stale_one_does() {
        let l = Liveness::new();
        assert!(!l.hold(10_000_000_000), "no beat yet: nothing to judge");
        l.beat(1_000_000_000);
        assert!(!l.hold(1_000_000_000 + STALL_GUARD_NS));
        assert_eq!(l.held_polls(), 0);
        assert!(l.hold(1_000_000_001 + STALL_GUARD_NS));
        assert!(l.hold(9_000_000_000));
        assert_eq!(l.held_polls(), 2);
        l.beat(9_000_000_000);
        assert!(!l.hold(9_000_000_100));
        // A core clock behind the beat (read before the store) never holds.
        assert!(!l.hold(8_999_000_000));
    }
}
