//! Reassembly of outer IPv4 fragments addressed to us (a peer, or the
//! underlay, fragmented a tunnel packet). One table per polling core, fixed
//! size: a bounded number of datagrams in flight, a bounded number of
//! fragments each, a per-source limit, a timeout; evictions, overlaps and
//! oversized datagrams are counted drops. Buffers come from the port I/O's
//! pool, never the heap.

use crate::counters::DropReason;
use crate::packet::{PacketBuf, PortIo};
use crate::wire::{self, be16, be32, ip, put16};
use arrayvec::ArrayVec;

pub const SLOTS: usize = 64;
pub const MAX_FRAGS: usize = 16;
pub const PER_SOURCE: usize = 8;
pub const TIMEOUT_NS: u64 = 2_000_000_000;
const MAX_DATAGRAM: usize = 65_535;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key {
    src: u32,
    dst: u32,
    ident: u16,
    proto: u8,
}

struct Frag<B> {
    offset: usize,
    len: usize,
    last: bool,
    buf: B,
}

struct Slot<B> {
    key: Key,
    first_ns: u64,
    frags: ArrayVec<Frag<B>, MAX_FRAGS>,
}

pub enum Outcome<B> {
    /// Kept; the datagram is not complete yet.
    Pending,
    /// The whole datagram, in one buffer, Ethernet header space in front.
    Complete(B),
    /// Dropped (the fragment, and with it the datagram, for this reason).
    Dropped(DropReason),
}

pub struct Reassembly<B: PacketBuf> {
    slots: Vec<Option<Slot<B>>>,
    /// Drops found while sweeping, for the caller to count.
    pub timed_out: u64,
}

impl<B: PacketBuf> Default for Reassembly<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: PacketBuf> Reassembly<B> {
    pub fn new() -> Self {
        Reassembly {
            slots: (0..SLOTS).map(|_| None).collect(),
            timed_out: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Frees datagrams older than the timeout; returns how many.
    pub fn sweep(&mut self, now_ns: u64) -> u64 {
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.as_ref()
                .is_some_and(|x| now_ns.saturating_sub(x.first_ns) > TIMEOUT_NS)
            {
                *s = None;
                n += 1;
            }
        }
        self.timed_out += n;
        n
    }

    /// Adds one validated IPv4 fragment (`buf` starts with the Ethernet header).
    pub fn insert<I: PortIo<Buf = B>>(&mut self, io: &mut I, buf: B, now_ns: u64) -> Outcome<B> {
        self.sweep(now_ns);
        let d = buf.data();
        let h = &d[wire::ETH_LEN..];
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let flags = be16(h, ip::FLAGS_FRAG);
        let key = Key {
            src: be32(h, ip::SRC),
            dst: be32(h, ip::DST),
            ident: be16(h, ip::IDENT),
            proto: h[ip::PROTO],
        };
        let offset = usize::from(flags & ip::OFFSET_MASK) * 8;
        let len = h.len() - ihl;
        let last = flags & ip::MF == 0;
        if (!last && !len.is_multiple_of(8)) || len == 0 {
            return Outcome::Dropped(DropReason::Ipv4BadLength);
        }
        if offset + len + ihl > MAX_DATAGRAM {
            self.remove(key);
            return Outcome::Dropped(DropReason::ReassemblyOversized);
        }
        let idx = match self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|x| x.key == key))
        {
            Some(i) => i,
            None => {
                let from_src = self
                    .slots
                    .iter()
                    .filter(|s| s.as_ref().is_some_and(|x| x.key.src == key.src))
                    .count();
                if from_src >= PER_SOURCE {
                    return Outcome::Dropped(DropReason::ReassemblySourceLimit);
                }
                let i = match self.slots.iter().position(|s| s.is_none()) {
                    Some(i) => i,
                    None => {
                        // Full: evict the oldest datagram (its buffers go back to the pool).
                        let oldest = (0..SLOTS)
                            .min_by_key(|i| {
                                self.slots[*i].as_ref().map(|x| x.first_ns).unwrap_or(0)
                            })
                            .unwrap_or(0);
                        self.slots[oldest] = None;
                        return self.insert_evicting(io, buf, now_ns, oldest, key);
                    }
                };
                self.slots[i] = Some(Slot {
                    key,
                    first_ns: now_ns,
                    frags: ArrayVec::new(),
                });
                i
            }
        };
        self.add(io, idx, buf, offset, len, last)
    }

    fn insert_evicting<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        buf: B,
        now_ns: u64,
        i: usize,
        key: Key,
    ) -> Outcome<B> {
        self.slots[i] = Some(Slot {
            key,
            first_ns: now_ns,
            frags: ArrayVec::new(),
        });
        let d = buf.data();
        let h = &d[wire::ETH_LEN..];
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let flags = be16(h, ip::FLAGS_FRAG);
        let offset = usize::from(flags & ip::OFFSET_MASK) * 8;
        let len = h.len() - ihl;
        let last = flags & ip::MF == 0;
        match self.add(io, i, buf, offset, len, last) {
            Outcome::Pending => Outcome::Dropped(DropReason::ReassemblyEvicted),
            other => other,
        }
    }

    fn remove(&mut self, key: Key) {
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(|x| x.key == key) {
                *s = None;
            }
        }
    }

    fn add<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        i: usize,
        buf: B,
        offset: usize,
        len: usize,
        last: bool,
    ) -> Outcome<B> {
        let slot = self.slots[i].as_mut().expect("slot in use");
        let end = offset + len;
        let overlaps = slot
            .frags
            .iter()
            .any(|f| offset < f.offset + f.len && f.offset < end);
        let after_last = slot
            .frags
            .iter()
            .any(|f| (f.last && end > f.offset + f.len) || (last && f.offset + f.len > end));
        if overlaps || after_last || (last && slot.frags.iter().any(|f| f.last)) {
            self.slots[i] = None;
            return Outcome::Dropped(DropReason::ReassemblyOverlap);
        }
        if slot
            .frags
            .try_push(Frag {
                offset,
                len,
                last,
                buf,
            })
            .is_err()
        {
            self.slots[i] = None;
            return Outcome::Dropped(DropReason::ReassemblyOversized);
        }
        // Complete when a last fragment exists and the pieces cover 0..end without gaps.
        let Some(total) = slot.frags.iter().find(|f| f.last).map(|f| f.offset + f.len) else {
            return Outcome::Pending;
        };
        let covered: usize = slot.frags.iter().map(|f| f.len).sum();
        if covered != total || !slot.frags.iter().any(|f| f.offset == 0) {
            return Outcome::Pending;
        }
        let Some(mut slot) = self.slots[i].take() else {
            return Outcome::Pending;
        };
        slot.frags.sort_by_key(|f| f.offset);
        let first = &slot.frags[0];
        let fd = first.buf.data();
        let ihl = usize::from(fd[wire::ETH_LEN] & 0x0f) * 4;
        let Some(mut out) = io.alloc() else {
            return Outcome::Dropped(DropReason::NoMbuf);
        };
        let head = wire::ETH_LEN + ihl;
        if !out.append(head + total) {
            return Outcome::Dropped(DropReason::ReassemblyOversized);
        }
        let od = out.data_mut();
        od[..head].copy_from_slice(&fd[..head]);
        for f in &slot.frags {
            let d = f.buf.data();
            let fihl = usize::from(d[wire::ETH_LEN] & 0x0f) * 4;
            let src = &d[wire::ETH_LEN + fihl..wire::ETH_LEN + fihl + f.len];
            od[head + f.offset..head + f.offset + f.len].copy_from_slice(src);
        }
        let h = &mut od[wire::ETH_LEN..];
        put16(h, ip::TOTAL_LEN, (ihl + total) as u16);
        let flags = be16(h, ip::FLAGS_FRAG) & ip::DF;
        put16(h, ip::FLAGS_FRAG, flags);
        wire::fill_ip_checksum(h, ihl);
        Outcome::Complete(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{MemBuf, MemPorts};

    /// Fragments of one datagram: (offset bytes, payload, more fragments).
    fn frag(ident: u16, src: u8, offset: usize, payload: &[u8], mf: bool) -> MemBuf {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let total = 20 + payload.len();
        let mut h = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            (ident >> 8) as u8,
            ident as u8,
            0,
            0,
            64,
            47,
            0,
            0,
            10,
            0,
            0,
            src,
            10,
            0,
            0,
            1,
        ];
        let ff = ((offset / 8) as u16) | if mf { ip::MF } else { 0 };
        h[6..8].copy_from_slice(&ff.to_be_bytes());
        wire::fill_ip_checksum(&mut h, 20);
        f.extend_from_slice(&h);
        f.extend_from_slice(payload);
        MemBuf::from_frame(&f)
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7) as u8).collect()
    }

    #[test]
    fn reassembles_in_any_order() {
        let data = payload(3000);
        for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut io = MemPorts::new(1, 4);
            let mut r = Reassembly::new();
            let pieces = [
                (0, &data[..1480], true),
                (1480, &data[1480..2960], true),
                (2960, &data[2960..], false),
            ];
            let mut result = None;
            for (k, &i) in order.iter().enumerate() {
                let (off, p, mf) = pieces[i];
                match r.insert(&mut io, frag(7, 2, off, p, mf), 1_000) {
                    Outcome::Complete(b) => {
                        assert_eq!(k, 2);
                        result = Some(b);
                    }
                    Outcome::Pending => assert!(k < 2),
                    Outcome::Dropped(d) => panic!("{}", d.name()),
                }
            }
            let b = result.unwrap();
            let h = &b.data()[14..];
            assert_eq!(usize::from(be16(h, ip::TOTAL_LEN)), 3020);
            assert_eq!(be16(h, ip::FLAGS_FRAG) & (ip::MF | ip::OFFSET_MASK), 0);
            assert_eq!(wire::checksum(&h[..20]), 0);
            assert_eq!(&h[20..], &data[..]);
            assert_eq!(r.in_flight(), 0);
        }
    }

    #[test]
    fn overlap_timeout_limits_and_eviction() {
        let mut io = MemPorts::new(1, 8);
        let mut r = Reassembly::new();
        let d = payload(16);
        assert!(matches!(
            r.insert(&mut io, frag(1, 2, 0, &d, true), 0),
            Outcome::Pending
        ));
        assert!(matches!(
            r.insert(&mut io, frag(1, 2, 8, &d, false), 0),
            Outcome::Dropped(DropReason::ReassemblyOverlap)
        ));
        assert_eq!(r.in_flight(), 0);
        // Timeout.
        assert!(matches!(
            r.insert(&mut io, frag(2, 2, 0, &d, true), 0),
            Outcome::Pending
        ));
        assert_eq!(r.sweep(TIMEOUT_NS + 1), 1);
        // Per-source limit.
        for i in 0..PER_SOURCE as u16 {
            assert!(matches!(
                r.insert(&mut io, frag(100 + i, 3, 0, &d, true), 5),
                Outcome::Pending
            ));
        }
        assert!(matches!(
            r.insert(&mut io, frag(200, 3, 0, &d, true), 5),
            Outcome::Dropped(DropReason::ReassemblySourceLimit)
        ));
        // Fill the table from many sources: the oldest is evicted.
        r = Reassembly::new();
        for i in 0..SLOTS as u16 {
            assert!(matches!(
                r.insert(
                    &mut io,
                    frag(i, (i % 200) as u8 + 20, 0, &d, true),
                    u64::from(i)
                ),
                Outcome::Pending
            ));
        }
        assert!(matches!(
            r.insert(&mut io, frag(999, 250, 0, &d, true), 100),
            Outcome::Dropped(DropReason::ReassemblyEvicted)
        ));
        assert_eq!(r.in_flight(), SLOTS);
        // Oversized and malformed.
        assert!(matches!(
            r.insert(&mut io, frag(5, 9, 65_520, &d, false), 100),
            Outcome::Dropped(DropReason::ReassemblyOversized)
        ));
        assert!(matches!(
            r.insert(&mut io, frag(6, 9, 0, &d[..5], true), 100),
            Outcome::Dropped(DropReason::Ipv4BadLength)
        ));
    }

    #[test]
    fn fragment_flood_stays_bounded() {
        let mut io = MemPorts::new(1, 64);
        let mut r = Reassembly::new();
        let d = payload(64);
        for i in 0..20_000u32 {
            let _ = r.insert(
                &mut io,
                frag(
                    i as u16,
                    (i % 251) as u8,
                    (i as usize % 10) * 64,
                    &d,
                    i % 3 != 0,
                ),
                u64::from(i) * 1000,
            );
            assert!(r.in_flight() <= SLOTS);
        }
    }
}
