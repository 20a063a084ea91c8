//! Immutable forwarding snapshots read by the polling cores.
//!
//! A `Snapshot` is built by the manager thread and published with one atomic
//! pointer swap (`arc_swap`). It is never mutated afterwards, so a core that
//! loaded it once per burst needs no lock. Tables that did not change are
//! shared between consecutive snapshots through `Arc`, so learning one ARP
//! entry does not copy a million /32s.

use crate::packet::prefetch_read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Where traffic to an exact-match /32 goes (dataplane form of
/// `cer_shared::feed::EndpointAction`, with the port resolved to an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointAction {
    /// Deliver on this port, resolving the destination itself by ARP.
    Local { port: u16 },
    /// Encapsulate into this tunnel (tunnel ids index the snapshot's tunnel set).
    Tunnel { tunnel: u32 },
    /// Known, not forwarded.
    #[default]
    Drop,
}

#[inline]
fn hash32(key: u32) -> u32 {
    // Multiplicative (Fibonacci) hashing; the table uses the high bits.
    key.wrapping_mul(0x9E37_79B1)
}

/// One table slot: the key and its value on the same cache line (16-byte
/// aligned, four slots per line), so a lookup costs one miss, not two.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Slot<V: Copy> {
    key: u32,
    val: V,
}

/// Where a table's slots live: the heap, or 2 MiB pages for big tables
/// (a random lookup then costs a cache miss but no TLB miss).
#[derive(Debug, Clone)]
enum SlotMem<T: Copy> {
    Heap(Box<[T]>),
    Huge(cer_hugepages::HugeSlice<T>),
}

/// Tables of at least this many bytes go on huge pages.
const HUGE_TABLE_BYTES: usize = 4 << 20;

impl<T: Copy> SlotMem<T> {
    fn filled(len: usize, value: T) -> Self {
        if len * std::mem::size_of::<T>() >= HUGE_TABLE_BYTES {
            if let Some(h) = cer_hugepages::HugeSlice::filled(len, value) {
                return SlotMem::Huge(h);
            }
        }
        SlotMem::Heap(vec![value; len].into_boxed_slice())
    }
}

impl<T: Copy> std::ops::Deref for SlotMem<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            SlotMem::Heap(b) => b,
            SlotMem::Huge(h) => h,
        }
    }
}

impl<T: Copy> std::ops::DerefMut for SlotMem<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            SlotMem::Heap(b) => b,
            SlotMem::Huge(h) => h,
        }
    }
}

/// Open-addressing (linear probing) exact-match table keyed by a non-zero u32.
/// Load factor stays at or under 1/2, so probes are short and bounded.
#[derive(Debug, Clone)]
pub struct ExactTable<V: Copy> {
    slots: SlotMem<Slot<V>>,
    shift: u32,
    len: usize,
}

impl<V: Copy + Default> ExactTable<V> {
    /// Builds a table from `(key, value)` pairs; key 0 is reserved (ignored).
    /// Later duplicates overwrite earlier ones.
    pub fn build<I: IntoIterator<Item = (u32, V)>>(items: I, count_hint: usize) -> Self {
        let mut t = Self::with_capacity((count_hint.max(4) * 2).next_power_of_two());
        for (k, v) in items {
            if k == 0 {
                continue;
            }
            if (t.len + 1) * 2 > t.slots.len() {
                t = t.grown();
            }
            t.insert(k, v);
        }
        t
    }

    fn with_capacity(cap: usize) -> Self {
        ExactTable {
            slots: SlotMem::filled(
                cap,
                Slot {
                    key: 0,
                    val: V::default(),
                },
            ),
            shift: 32 - cap.trailing_zeros(),
            len: 0,
        }
    }

    fn grown(&self) -> Self {
        let mut t = Self::with_capacity(self.slots.len() * 2);
        for (k, v) in self.iter() {
            t.insert(k, v);
        }
        t
    }

    fn insert(&mut self, key: u32, val: V) {
        let mask = self.slots.len() - 1;
        let mut i = (hash32(key) >> self.shift) as usize;
        loop {
            let s = &mut self.slots[i];
            if s.key == 0 {
                *s = Slot { key, val };
                self.len += 1;
                return;
            }
            if s.key == key {
                s.val = val;
                return;
            }
            i = (i + 1) & mask;
        }
    }
}

impl<V: Copy> ExactTable<V> {
    #[inline]
    pub fn get(&self, key: u32) -> Option<V> {
        if key == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = (hash32(key) >> self.shift) as usize;
        loop {
            let s = &self.slots[i];
            if s.key == key {
                return Some(s.val);
            }
            if s.key == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the slot `key` hashes to, so a later `get` hits cache.
    #[inline(always)]
    pub fn prefetch(&self, key: u32) {
        let i = (hash32(key) >> self.shift) as usize;
        prefetch_read(&self.slots[i & (self.slots.len() - 1)]);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != 0)
            .map(|s| (s.key, s.val))
    }
}

/// One next hop: leave on `port`; `gateway == 0` means the destination is on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hop {
    pub port: u16,
    pub gateway: u32,
}

pub const MAX_ECMP: usize = 8;

/// An ECMP group of up to `MAX_ECMP` next hops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HopGroup {
    pub hops: arrayvec::ArrayVec<Hop, MAX_ECMP>,
}

impl HopGroup {
    /// Picks a member by flow hash (stable per flow).
    #[inline]
    pub fn select(&self, flow_hash: u32) -> Option<Hop> {
        match self.hops.len() {
            0 => None,
            1 => Some(self.hops[0]),
            n => Some(self.hops[((u64::from(flow_hash) * n as u64) >> 32) as usize]),
        }
    }
}

/// One underlay route as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub addr: u32,
    pub len: u8,
    pub group: HopGroup,
}

/// Longest-prefix match over a few prefix lengths: one exact table per length
/// present, probed from the longest; a /0 route is a fixed slot.
#[derive(Debug, Clone, Default)]
pub struct Lpm {
    /// (length, mask, table of masked prefix -> index into `routes`), longest first.
    levels: Vec<(u8, u32, ExactTable<u32>)>,
    default: Option<u32>,
    routes: Vec<Route>,
}

impl Lpm {
    pub fn build(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| b.len.cmp(&a.len).then(a.addr.cmp(&b.addr)));
        routes.dedup_by(|a, b| a.len == b.len && a.addr == b.addr);
        let mut levels: Vec<(u8, u32, ExactTable<u32>)> = Vec::new();
        let mut default = None;
        let mut i = 0;
        while i < routes.len() {
            let len = routes[i].len;
            let mut j = i;
            while j < routes.len() && routes[j].len == len {
                j += 1;
            }
            if len == 0 {
                default = Some(i as u32);
            } else {
                let m = cer_shared::addr::mask(len);
                // Key 0 is reserved in ExactTable: store prefix addr + 1 is not
                // order-preserving, so keep prefix 0.0.0.0/len (len>0) via the
                // low bit trick: masked prefixes of len<32 have a zero low bit.
                let items = (i..j).map(|r| (key_of(routes[r].addr, len), r as u32));
                levels.push((len, m, ExactTable::build(items, j - i)));
            }
            i = j;
        }
        Lpm {
            levels,
            default,
            routes,
        }
    }

    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<&Route> {
        for (len, mask, table) in &self.levels {
            if let Some(r) = table.get(key_of(dst & mask, *len)) {
                return Some(&self.routes[r as usize]);
            }
        }
        self.default.map(|r| &self.routes[r as usize])
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Table key for a masked prefix: non-zero for every prefix with len > 0.
#[inline]
fn key_of(masked: u32, len: u8) -> u32 {
    if len == 32 {
        // /32 keys are the address itself; 0.0.0.0/32 is not routable anyway.
        masked
    } else {
        // len < 32: the lowest bit of a masked prefix is always 0.
        masked | 1
    }
}

/// Neighbor reachability as published to cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NeighborStatus {
    #[default]
    Reachable,
    /// Usable, but the core should send a (rate-limited) ARP probe on use.
    Stale,
    /// Configured through the feed; never aged.
    Static,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Neighbor {
    pub mac: [u8; 6],
    pub status: NeighborStatus,
}

/// Neighbors keyed by (port, IPv4) folded into one u32 key per port table.
#[derive(Debug, Clone)]
pub struct NeighborTable {
    per_port: Vec<ExactTable<Neighbor>>,
}

impl NeighborTable {
    pub fn empty(ports: usize) -> Self {
        NeighborTable {
            per_port: (0..ports)
                .map(|_| ExactTable::build(std::iter::empty(), 0))
                .collect(),
        }
    }

    pub fn build(ports: usize, entries: &[(u16, u32, Neighbor)]) -> Self {
        let per_port = (0..ports)
            .map(|p| {
                let items = entries
                    .iter()
                    .filter(|(port, _, _)| *port as usize == p)
                    .map(|(_, ip, n)| (*ip, *n));
                ExactTable::build(items, entries.len() / ports.max(1))
            })
            .collect();
        NeighborTable { per_port }
    }

    #[inline]
    pub fn get(&self, port: u16, ip: u32) -> Option<Neighbor> {
        self.per_port.get(port as usize)?.get(ip)
    }

    #[inline(always)]
    pub fn prefetch(&self, port: u16, ip: u32) {
        if let Some(t) = self.per_port.get(port as usize) {
            t.prefetch(ip);
        }
    }

    pub fn len(&self) -> usize {
        self.per_port.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// IPv6 neighbors (link-local peers learned from RA/NS/NA), per port: a few
/// entries each, kept sorted for a binary search.
#[derive(Debug, Clone, Default)]
pub struct Neighbor6Table {
    per_port: Vec<Box<[Neighbor6Entry]>>,
}

/// An IPv6 address (as bytes, the sort key) and its neighbor.
type Neighbor6Entry = ([u8; 16], Neighbor);

impl Neighbor6Table {
    pub fn build(ports: usize, entries: &[(u16, Ipv6Addr, Neighbor)]) -> Self {
        let per_port = (0..ports)
            .map(|p| {
                let mut v: Vec<Neighbor6Entry> = entries
                    .iter()
                    .filter(|(port, _, _)| *port as usize == p)
                    .map(|(_, ip, n)| (ip.octets(), *n))
                    .collect();
                v.sort_by_key(|e| e.0);
                v.dedup_by(|a, b| a.0 == b.0);
                v.into_boxed_slice()
            })
            .collect();
        Neighbor6Table { per_port }
    }

    #[inline]
    pub fn get(&self, port: u16, ip: &Ipv6Addr) -> Option<Neighbor> {
        let t = self.per_port.get(port as usize)?;
        let key = ip.octets();
        t.binary_search_by(|(k, _)| k.cmp(&key))
            .ok()
            .map(|i| t[i].1)
    }

    pub fn len(&self) -> usize {
        self.per_port.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// IPv6 link-local gateways of IPv4 routes (RFC 5549/8950). A hop whose
/// `gateway` is `GATEWAY6_BASE + i` (inside 0.0.0.0/8, never a valid IPv4
/// next hop) goes via gateway `i` of this list; the manager publishes its
/// resolved MAC in the IPv4 neighbor table under that same key, so the
/// forwarding path is the IPv4 one unchanged (the userspace form of the
/// kernel's 169.254.0.1 onlink next hop). Only a miss looks here, to send a
/// Neighbor Solicitation.
#[derive(Debug, Clone, Default)]
pub struct Gateways6 {
    pub list: Vec<(u16, Ipv6Addr)>,
}

/// First synthetic IPv4 next-hop key of an IPv6 gateway (0.0.0.1).
pub const GATEWAY6_BASE: u32 = 1;
/// Keys stay inside 0.0.0.0/8.
pub const MAX_GATEWAYS6: usize = (1 << 24) - 2;

/// Is this next-hop key an IPv6 gateway's (0.0.0.0/8)?
#[inline(always)]
pub fn is_gateway6_key(nh: u32) -> bool {
    nh >> 24 == 0 && nh >= GATEWAY6_BASE
}

impl Gateways6 {
    #[inline]
    pub fn get(&self, key: u32) -> Option<(u16, Ipv6Addr)> {
        if !is_gateway6_key(key) {
            return None;
        }
        self.list.get((key - GATEWAY6_BASE) as usize).copied()
    }
}

/// The proxy-ARP set and its gate.
#[derive(Debug, Clone)]
pub struct ProxyArp {
    pub active: bool,
    /// Ports (bit i: port i) where proxy ARP is on (`proxy_arp`).
    pub ports: u64,
    pub set: ExactTable<()>,
}

impl ProxyArp {
    /// Whether proxy ARP is on for port `port` (gate open or not).
    #[inline]
    pub fn on_port(&self, port: usize) -> bool {
        port < 64 && self.ports & (1 << port) != 0
    }

    #[inline]
    pub fn answers(&self, ip: u32) -> bool {
        self.active && self.set.get(ip).is_some()
    }

    #[inline]
    pub fn holds(&self, ip: u32) -> bool {
        self.set.get(ip).is_some()
    }
}

/// Everything a polling core needs to forward, immutable once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub endpoints: Arc<ExactTable<EndpointAction>>,
    pub routes: Arc<Lpm>,
    pub neighbors: Arc<NeighborTable>,
    pub proxy_arp: Arc<ProxyArp>,
    pub tunnels: Arc<crate::tunnel::TunnelTable>,
    /// IPv6 neighbors (link-local -> MAC per port).
    pub neighbors6: Arc<Neighbor6Table>,
    /// IPv6 link-local gateways of IPv4 routes, by synthetic next-hop key.
    pub gateways6: Arc<Gateways6>,
}

impl Snapshot {
    pub fn empty(ports: usize) -> Self {
        Snapshot {
            version: 0,
            endpoints: Arc::new(ExactTable::build(std::iter::empty(), 0)),
            routes: Arc::new(Lpm::default()),
            neighbors: Arc::new(NeighborTable::empty(ports)),
            proxy_arp: Arc::new(ProxyArp {
                active: false,
                ports: 0,
                set: ExactTable::build(std::iter::empty(), 0),
            }),
            tunnels: Arc::new(crate::tunnel::TunnelTable::default()),
            neighbors6: Arc::new(Neighbor6Table::build(ports, &[])),
            gateways6: Arc::new(Gateways6::default()),
        }
    }
}

pub fn ip_u32(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_table_many_keys() {
        let n = 100_000u32;
        let t = ExactTable::build(
            (1..=n).map(|k| (k.wrapping_mul(2654435761) | 1, k)),
            n as usize,
        );
        assert_eq!(t.len(), n as usize);
        for k in 1..=n {
            assert_eq!(t.get(k.wrapping_mul(2654435761) | 1), Some(k));
        }
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(2), None);
    }

    #[test]
    fn exact_table_grows_past_hint() {
        let t = ExactTable::build((1..=1000u32).map(|k| (k, k)), 1);
        assert_eq!(t.len(), 1000);
        assert!((1..=1000).all(|k| t.get(k) == Some(k)));
        let dup = ExactTable::build([(5u32, 1u32), (5, 2)], 2);
        assert_eq!(dup.len(), 1);
        assert_eq!(dup.get(5), Some(2));
    }

    fn route(p: &str, port: u16) -> Route {
        let p: cer_shared::Ipv4Prefix = p.parse().unwrap();
        let mut g = HopGroup::default();
        g.hops.push(Hop { port, gateway: 0 });
        Route {
            addr: u32::from(p.addr()),
            len: p.len(),
            group: g,
        }
    }

    #[test]
    fn lpm_longest_wins_and_default() {
        let lpm = Lpm::build(vec![
            route("0.0.0.0/0", 9),
            route("10.0.0.0/8", 1),
            route("10.1.0.0/16", 2),
            route("10.1.2.3/32", 3),
            route("0.0.0.0/8", 4),
        ]);
        let l = |s: &str| {
            lpm.lookup(u32::from(s.parse::<Ipv4Addr>().unwrap()))
                .map(|r| r.group.hops[0].port)
        };
        assert_eq!(l("10.1.2.3"), Some(3));
        assert_eq!(l("10.1.2.4"), Some(2));
        assert_eq!(l("10.2.0.1"), Some(1));
        assert_eq!(l("0.1.2.3"), Some(4));
        assert_eq!(l("192.0.2.1"), Some(9));
        let no_default = Lpm::build(vec![route("10.0.0.0/8", 1)]);
        assert!(no_default
            .lookup(u32::from(Ipv4Addr::new(11, 0, 0, 1)))
            .is_none());
    }

    #[test]
    fn ecmp_select_spreads_and_is_stable() {
        let mut g = HopGroup::default();
        for p in 0..4 {
            g.hops.push(Hop {
                port: p,
                gateway: 0,
            });
        }
        let mut seen = [0u32; 4];
        for h in 0..10_000u32 {
            let hash = h.wrapping_mul(0x9E37_79B1);
            let a = g.select(hash).unwrap();
            assert_eq!(a, g.select(hash).unwrap());
            seen[a.port as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 2000), "{seen:?}");
    }
}
