//! Packet capture on the polling cores (`cerctl dataplane capture`): a
//! `Session` holds the observation points, the compiled filters and one
//! bounded record ring per core; the `CaptureHub` publishes at most one
//! session to the cores. A core checks the hub once per poll (one relaxed
//! load) and, while a session runs, offers packets at its observation
//! points: filter (classic BPF), copy up to the snap length into a free
//! record, queue it. A full ring is a counted drop, never a wait. The
//! admin side (`stream.rs`) compiles the filter, drains the rings into
//! pcapng (`pcapng.rs`) and streams it to the client.

pub mod bpf;
pub mod libpcap;
pub mod pcapng;
pub mod point;
pub mod stream;

pub use self::point::{Point, PointError};

use self::bpf::Program;
use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One captured packet, as a core queued it.
#[derive(Debug)]
pub struct Record {
    /// The core's clock (monotonic ns) at the poll that saw the packet.
    pub ts_ns: u64,
    /// Index of the observation point in the session (the pcapng interface id).
    pub point: u32,
    /// Length of the whole packet.
    pub orig_len: u32,
    /// Inbound (received, decapsulated) or outbound (sent, encapsulated).
    pub inbound: bool,
    /// The first `snaplen` bytes (capacity reserved when the session is built).
    pub data: Vec<u8>,
}

/// One core's ring: records go from `free` to `full` on the core and back
/// on the writer. Both queues hold every record, so a push never fails.
#[derive(Debug)]
pub struct CoreRing {
    free: ArrayQueue<Box<Record>>,
    full: ArrayQueue<Box<Record>>,
    /// Packets that matched the filter at this core.
    pub matched: AtomicU64,
    /// Matching packets with no free record (the writer fell behind).
    pub ring_drops: AtomicU64,
}

impl CoreRing {
    fn new(slots: usize, snaplen: usize) -> Self {
        let free = ArrayQueue::new(slots);
        for _ in 0..slots {
            let _ = free.push(Box::new(Record {
                ts_ns: 0,
                point: 0,
                orig_len: 0,
                inbound: false,
                data: Vec::with_capacity(snaplen),
            }));
        }
        CoreRing {
            free,
            full: ArrayQueue::new(slots),
            matched: AtomicU64::new(0),
            ring_drops: AtomicU64::new(0),
        }
    }

    /// The writer: the oldest queued record, if any.
    pub fn pop(&self) -> Option<Box<Record>> {
        self.full.pop()
    }

    /// The writer: gives a record back to the core.
    pub fn recycle(&self, r: Box<Record>) {
        let _ = self.free.push(r);
    }
}

/// Memory the rings of one core may take, and their bounds in records.
const RING_BYTES_PER_CORE: usize = 32 << 20;
const MIN_SLOTS: usize = 64;
const MAX_SLOTS: usize = 4096;

/// Ring records per core for a snap length.
pub fn slots_for(snaplen: usize) -> usize {
    (RING_BYTES_PER_CORE / snaplen.max(1)).clamp(MIN_SLOTS, MAX_SLOTS)
}

/// A running capture as the cores see it.
#[derive(Debug)]
pub struct Session {
    /// Non-zero, unique per hub: the generation the hub publishes.
    pub id: u64,
    /// Observation points, by pcapng interface id.
    pub points: Box<[Point]>,
    /// The filter for Ethernet points and for raw IPv4 (tunnel) points.
    ether: Option<Program>,
    raw: Option<Program>,
    pub snaplen: usize,
    pub rings: Box<[CoreRing]>,
}

impl Session {
    /// A session over `points` with the filter compiled for each link type it
    /// needs (`None`: that link type is not observed), one ring per core.
    pub fn new(
        id: u64,
        points: Vec<Point>,
        ether: Option<Program>,
        raw: Option<Program>,
        snaplen: usize,
        cores: usize,
    ) -> Self {
        let slots = slots_for(snaplen);
        Session {
            id,
            points: points.into_boxed_slice(),
            ether,
            raw,
            snaplen,
            rings: (0..cores.max(1))
                .map(|_| CoreRing::new(slots, snaplen))
                .collect(),
        }
    }

    /// Is `point` observed? Its interface id if so.
    #[inline]
    fn point_id(&self, point: Point) -> Option<u32> {
        self.points
            .iter()
            .position(|&p| p == point)
            .map(|i| i as u32)
    }

    /// A core offers a packet seen at `point`: filtered, copied into a free
    /// record of the core's ring, queued. Never blocks, never allocates.
    #[inline]
    pub fn offer(&self, core: usize, point: Point, ts_ns: u64, pkt: &[u8], inbound: bool) {
        let Some(id) = self.point_id(point) else {
            return;
        };
        let prog = match point.link() {
            libpcap::Dlt::Ethernet => &self.ether,
            libpcap::Dlt::Raw => &self.raw,
        };
        let wire_len = pkt.len() as u32;
        if let Some(p) = prog {
            if !p.matches(pkt, wire_len) {
                return;
            }
        }
        let Some(ring) = self.rings.get(core) else {
            return;
        };
        ring.matched.fetch_add(1, Ordering::Relaxed);
        let Some(mut r) = ring.free.pop() else {
            ring.ring_drops.fetch_add(1, Ordering::Relaxed);
            return;
        };
        r.ts_ns = ts_ns;
        r.point = id;
        r.orig_len = wire_len;
        r.inbound = inbound;
        r.data.clear();
        r.data
            .extend_from_slice(&pkt[..pkt.len().min(self.snaplen)]);
        let _ = ring.full.push(r);
    }

    pub fn matched(&self) -> u64 {
        self.rings
            .iter()
            .map(|r| r.matched.load(Ordering::Relaxed))
            .sum()
    }

    pub fn ring_drops(&self) -> u64 {
        self.rings
            .iter()
            .map(|r| r.ring_drops.load(Ordering::Relaxed))
            .sum()
    }
}

/// Publishes at most one session to the cores.
#[derive(Debug, Default)]
pub struct CaptureHub {
    /// The running session's id, 0 when none: the cores' per-poll check.
    generation: AtomicU64,
    session: ArcSwapOption<Session>,
    /// A capture is being set up or runs (one at a time).
    claimed: AtomicBool,
    next_id: AtomicU64,
}

/// The claim on the hub of the one capture that may run; dropping it stops
/// the capture and lets the next one start.
#[derive(Debug)]
pub struct Claim {
    hub: Arc<CaptureHub>,
}

impl CaptureHub {
    /// Claims the hub; `None` while another capture holds it.
    pub fn claim(self: &Arc<Self>) -> Option<Claim> {
        self.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Claim { hub: self.clone() })
    }

    /// A fresh session id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The cores' check, once per poll: the running session's id (0: none).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The running session (after `generation` changed).
    pub fn session(&self) -> Option<Arc<Session>> {
        self.session.load_full()
    }

    /// Is a capture set up or running?
    pub fn busy(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }
}

impl Claim {
    /// Starts delivering packets to `s`.
    pub fn publish(&self, s: Arc<Session>) {
        let id = s.id;
        self.hub.session.store(Some(s));
        self.hub.generation.store(id, Ordering::Release);
    }

    /// Stops the cores offering packets; they drop their reference to the
    /// session (and so its rings) at their next poll.
    pub fn stop(&self) {
        self.hub.generation.store(0, Ordering::Release);
        self.hub.session.store(None);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop();
        self.hub.claimed.store(false, Ordering::Release);
    }
}

/// A core's view of the hub: the session it offers packets to, refreshed
/// when the hub's generation changes.
#[derive(Debug)]
pub struct CoreTap {
    hub: Arc<CaptureHub>,
    core: usize,
    seen: u64,
    session: Option<Arc<Session>>,
}

impl CoreTap {
    pub fn new(hub: Arc<CaptureHub>, core: usize) -> Self {
        CoreTap {
            hub,
            core,
            seen: 0,
            session: None,
        }
    }

    /// Once per poll: one relaxed load and a compare while nothing changes.
    #[inline(always)]
    pub fn refresh(&mut self) {
        let g = self.hub.generation();
        if g != self.seen {
            self.switch(g);
        }
    }

    #[cold]
    fn switch(&mut self, g: u64) {
        self.session = None;
        self.seen = g;
        if g != 0 {
            match self.hub.session() {
                Some(s) if s.id == g => self.session = Some(s),
                // Published in between: look again at the next poll.
                _ => self.seen = 0,
            }
        }
    }

    /// The running session, while there is one.
    #[inline(always)]
    pub fn active(&self) -> Option<&Session> {
        self.session.as_deref()
    }

    pub fn core(&self) -> usize {
        self.core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Vec<u8> {
        vec![n; 100]
    }

    #[test]
    fn ring_full_is_counted_and_recycled_records_are_reused() {
        let hub = Arc::new(CaptureHub::default());
        let claim = hub.claim().unwrap();
        assert!(hub.claim().is_none(), "one capture at a time");
        let s = Arc::new(Session::new(
            hub.next_id(),
            vec![Point::PortRx(0)],
            None,
            None,
            60,
            1,
        ));
        claim.publish(s.clone());
        let mut tap = CoreTap::new(hub.clone(), 0);
        tap.refresh();
        let slots = slots_for(60);
        for i in 0..slots + 5 {
            tap.active()
                .unwrap()
                .offer(0, Point::PortRx(0), i as u64, &frame(i as u8), true);
        }
        // Another point is not observed.
        tap.active()
            .unwrap()
            .offer(0, Point::PortTx(0), 0, &frame(1), false);
        assert_eq!(s.matched(), slots as u64 + 5);
        assert_eq!(s.ring_drops(), 5);
        let r = s.rings[0].pop().unwrap();
        assert_eq!((r.ts_ns, r.orig_len, r.data.len()), (0, 100, 60));
        s.rings[0].recycle(r);
        tap.active()
            .unwrap()
            .offer(0, Point::PortRx(0), 7, &frame(7), true);
        assert_eq!(s.ring_drops(), 5);
        drop(claim);
        tap.refresh();
        assert!(tap.active().is_none());
        assert!(hub.claim().is_some(), "the claim is free again");
    }
}
