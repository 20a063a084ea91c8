//! RFC 1812 hygiene: the address classes a router must not accept or route
//! (5.3.7, 4.2.2.11; RFC 3927 for link-local), the router's own addresses
//! and its ports' broadcast addresses precomputed per worker for a cheap
//! test on the fast path, the IPv4 option scan (source routes, RFC 7126),
//! the node's policies (source routes, strict uRPF per port, RFC 3704) and
//! the reverse-path check itself.

use super::{PipelineConfig, Worker};
use crate::packet::PacketBuf;
use crate::snapshot::{EndpointAction, Snapshot};
use cer_shared::config::{SourceRoutePolicy, UrpfMode};

/// Martian by address class alone: this network (0/8), loopback (127/8),
/// IPv4 link-local (169.254/16), multicast (224/4), reserved (240/4) and the
/// limited broadcast. No packet from outside may carry one as its source;
/// as a destination, multicast and the limited broadcast are for the
/// router's kernel side, the others are never routed.
#[inline(always)]
pub(super) fn martian_class(ip: u32) -> bool {
    let first = ip >> 24;
    first == 0 || first == 127 || first >= 224 || ip >> 16 == 0xa9fe
}

/// First octets under which `martian_class` may hold: 0, 127, 169 (for
/// 169.254/16) and 224-255.
const SUSPECT_FIRST_OCTET: [bool; 256] = {
    let mut t = [false; 256];
    t[0] = true;
    t[127] = true;
    t[169] = true;
    let mut i = 224;
    while i < 256 {
        t[i] = true;
        i += 1;
    }
    t
};

/// The fast-path screen for `martian_class` on a packet's two addresses: a
/// table load each and one branch for the common case (neither address
/// under a suspect first octet); the exact test runs only behind it.
#[inline(always)]
pub(super) fn martian_pair(src: u32, dst: u32) -> bool {
    (SUSPECT_FIRST_OCTET[(src >> 24) as usize] | SUSPECT_FIRST_OCTET[(dst >> 24) as usize])
        && (martian_class(src) || martian_class(dst))
}

/// Multicast (224/4) or the limited broadcast: addressed to every host of a
/// group or link, never one.
#[inline(always)]
pub(super) fn group_destination(ip: u32) -> bool {
    ip >> 28 == 14 || ip == u32::MAX
}

/// A small set of IPv4 addresses with a one-word Bloom filter in front, so
/// the common miss costs a multiply, a shift and a test.
#[derive(Debug, Clone, Default)]
pub(super) struct AddrSet {
    filter: u64,
    addrs: Vec<u32>,
}

impl AddrSet {
    #[inline(always)]
    fn bit(ip: u32) -> u64 {
        1u64 << (ip.wrapping_mul(0x9E37_79B1) >> 26)
    }

    pub(super) fn insert(&mut self, ip: u32) {
        self.filter |= Self::bit(ip);
        if !self.addrs.contains(&ip) {
            self.addrs.push(ip);
        }
    }

    /// The filter alone: false means `ip` is not in the set.
    #[inline(always)]
    pub(super) fn may_contain(&self, ip: u32) -> bool {
        self.filter & Self::bit(ip) != 0
    }

    #[inline(always)]
    pub(super) fn contains(&self, ip: u32) -> bool {
        self.may_contain(ip) && self.addrs.contains(&ip)
    }
}

/// Address facts of the node, computed once per worker.
#[derive(Debug, Clone, Default)]
pub(super) struct AddrFacts {
    /// The router's own addresses: `router_address` and every port address.
    pub local: AddrSet,
    /// Every port's subnet broadcast address (prefixes up to /30: a /31
    /// (RFC 3021) or /32 has none).
    pub broadcast: AddrSet,
    /// Both: no packet from outside may carry one of these as its source;
    /// as a destination, its filter screens `local` and `broadcast` on the
    /// fast path (an address in neither is transit).
    pub not_source: AddrSet,
}

impl AddrFacts {
    pub(super) fn of(cfg: &PipelineConfig) -> AddrFacts {
        let mut f = AddrFacts::default();
        f.local.insert(cfg.router_addr);
        for p in &cfg.ports {
            f.local.insert(p.addr);
            if let Some(b) = p.subnet_broadcast() {
                f.broadcast.insert(b);
            }
        }
        for &ip in f.local.addrs.iter().chain(&f.broadcast.addrs) {
            f.not_source.insert(ip);
        }
        f
    }

    /// The fast-path screen: false when `src` may be a source from outside
    /// and `dst` is neither a broadcast nor one of ours (transit), with two
    /// filter words and one branch; true means "ask the exact sets".
    #[inline(always)]
    pub(super) fn screen(&self, src: u32, dst: u32) -> bool {
        self.not_source.may_contain(src) | self.not_source.may_contain(dst)
    }
}

/// What the options of an IPv4 header hold, as far as forwarding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Options {
    /// None that changes where the packet goes (NOP, EOOL, record route,
    /// timestamp, ...: carried untouched, as RFC 7126 recommends).
    Plain,
    /// A loose (131) or strict (137) source route option.
    SourceRoute,
    /// An option whose length runs past the header or is below 2.
    Malformed,
}

pub(super) const OPT_END: u8 = 0;
pub(super) const OPT_NOP: u8 = 1;
pub(super) const OPT_LSRR: u8 = 0x83;
pub(super) const OPT_SSRR: u8 = 0x89;

/// Scans the options of an IPv4 header (the bytes after its first 20).
pub(super) fn scan_options(opts: &[u8]) -> Options {
    let mut i = 0;
    let mut found = Options::Plain;
    while i < opts.len() {
        match opts[i] {
            OPT_END => break,
            OPT_NOP => i += 1,
            t => {
                let Some(&len) = opts.get(i + 1) else {
                    return Options::Malformed;
                };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return Options::Malformed;
                }
                if t == OPT_LSRR || t == OPT_SSRR {
                    found = Options::SourceRoute;
                }
                i += len;
            }
        }
    }
    found
}

/// The node's hygiene policies (config: `dataplane.source_route`, each
/// port's `urpf`).
#[derive(Debug, Clone, Default)]
pub struct Hygiene {
    pub source_route: SourceRoutePolicy,
    /// Strict uRPF on NIC port i (missing: off).
    pub urpf: Vec<UrpfMode>,
}

impl<B: PacketBuf> Worker<B> {
    /// Applies the node's hygiene policies (the default drops source routes
    /// and checks no reverse path).
    pub fn set_hygiene(&mut self, h: &Hygiene) {
        self.source_route = h.source_route;
        self.urpf = (0..self.cfg.ports.len())
            .map(|p| h.urpf.get(p) == Some(&UrpfMode::Strict))
            .collect();
    }

    pub fn with_hygiene(mut self, h: &Hygiene) -> Self {
        self.set_hygiene(h);
        self
    }

    /// Does NIC port `port` check the reverse path strictly?
    #[inline(always)]
    pub(super) fn urpf_on(&self, port: usize) -> bool {
        self.urpf.get(port).copied().unwrap_or(false)
    }

    /// Strict reverse path (RFC 3704 2.2): the route back to `src` leaves by
    /// `port`. The /32 table decides first (a local endpoint on this port
    /// passes; one behind a tunnel, elsewhere, or dropped fails), then the
    /// underlay route, any of whose ECMP members may use the port; no route
    /// fails.
    #[inline]
    pub(super) fn urpf_ok(&self, snap: &Snapshot, src: u32, port: usize) -> bool {
        match snap.endpoints.get(src) {
            Some(EndpointAction::Local { port: p }) => usize::from(p) == port,
            Some(_) => false,
            None => snap
                .routes
                .lookup(src)
                .is_some_and(|r| r.group.hops.iter().any(|h| usize::from(h.port) == port)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn martian_classes() {
        for m in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.1.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(martian_class(ip(m)), "{m}");
        }
        for ok in [
            "1.0.0.0",
            "10.1.0.10",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.1.1",
            "169.255.0.1",
            "223.255.255.255",
        ] {
            assert!(!martian_class(ip(ok)), "{ok}");
        }
        // The screened pair agrees with the exact test on every first octet
        // (and either side of 169.254/16).
        for first in 0..=255u32 {
            for rest in [
                0,
                0x00fe_0101,
                0x00fe_ffff,
                0x00ff_0000,
                0x00fd_ffff,
                0x0001_0203,
            ] {
                let a = first << 24 | rest;
                let b = ip("10.1.0.10");
                assert_eq!(martian_pair(a, b), martian_class(a), "{a:#x}");
                assert_eq!(martian_pair(b, a), martian_class(a), "{a:#x}");
            }
        }
        assert!(group_destination(ip("224.0.0.5")) && group_destination(ip("255.255.255.255")));
        assert!(!group_destination(ip("240.0.0.1")) && !group_destination(ip("10.1.0.255")));
    }

    #[test]
    fn addr_set_finds_members_only() {
        let mut s = AddrSet::default();
        for i in 0..40u32 {
            s.insert(0x0a00_0001 + i * 256);
        }
        for i in 0..40u32 {
            assert!(s.contains(0x0a00_0001 + i * 256));
        }
        assert!((0..100_000u32).all(|x| !s.contains(0xc000_0000 + x)));
    }

    #[test]
    fn option_scan_finds_source_routes_and_bad_lengths() {
        assert_eq!(scan_options(&[]), Options::Plain);
        assert_eq!(scan_options(&[1, 1, 1, 0]), Options::Plain);
        // Record route (7), length 7, pointer 4, one empty slot; then EOOL.
        assert_eq!(scan_options(&[7, 7, 4, 0, 0, 0, 0, 0]), Options::Plain);
        // Timestamp (68), length 4.
        assert_eq!(scan_options(&[68, 4, 5, 0]), Options::Plain);
        assert_eq!(
            scan_options(&[1, 0x83, 7, 4, 10, 2, 0, 20]),
            Options::SourceRoute
        );
        assert_eq!(
            scan_options(&[0x89, 7, 4, 10, 2, 0, 20, 0]),
            Options::SourceRoute
        );
        assert_eq!(scan_options(&[7, 1, 0, 0]), Options::Malformed);
        assert_eq!(scan_options(&[7, 9, 4, 0]), Options::Malformed);
        assert_eq!(scan_options(&[1, 1, 1, 7]), Options::Malformed);
        // Anything after EOOL is padding.
        assert_eq!(scan_options(&[0, 0x83, 0xff, 0]), Options::Plain);
    }
}
