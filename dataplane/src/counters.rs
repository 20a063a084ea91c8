//! Per-core counters: every drop has a named reason, every notable event a
//! name. Each polling core owns one `CoreStats` and is its only writer, so an
//! increment is a plain load + store (no locked instruction); the admin thread
//! reads them with relaxed loads.
//!
//! The last duplicate proxy-ARP holder a core saw (IP, MAC, port) sits beside
//! the counters in three atomics under a sequence lock: the core (the only
//! writer) never waits and never allocates; the manager retries a read that
//! raced with a write.

use std::sync::atomic::{fence, AtomicU64, Ordering, Ordering::Relaxed};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name { $($variant,)* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }
    };
}

named_enum! {
    /// Why a packet was dropped.
    DropReason {
        MultiSegment => "multi_segment",
        EthTruncated => "eth_truncated",
        Oversized => "rx_oversized",
        L2OtherHost => "l2_other_host",
        L2Multicast => "l2_multicast",
        UnsupportedEthertype => "unsupported_ethertype",
        ArpMalformed => "arp_malformed",
        ArpNotForUs => "arp_not_for_us",
        ArpBadSender => "arp_bad_sender",
        Ipv4Truncated => "ipv4_truncated",
        Ipv4BadVersion => "ipv4_bad_version",
        Ipv4BadIhl => "ipv4_bad_ihl",
        Ipv4BadLength => "ipv4_bad_total_length",
        Ipv4BadChecksum => "ipv4_bad_checksum",
        Ipv4MartianSource => "ipv4_martian_source",
        Ipv4SourceIsRouter => "ipv4_source_is_router",
        Ipv4MartianDestination => "ipv4_martian_destination",
        Ipv4DirectedBroadcast => "ipv4_directed_broadcast",
        Ipv4UnicastInL2Broadcast => "ipv4_unicast_in_l2_broadcast",
        Ipv4SourceRoute => "ipv4_source_route",
        Ipv4BadOptions => "ipv4_bad_options",
        Ipv4UrpfFailed => "ipv4_urpf_strict_failed",
        Ipv4NotRoutable => "ipv4_broadcast_or_multicast",
        TtlExpired => "ttl_expired",
        NoRoute => "no_route",
        EndpointDrop => "endpoint_drop",
        NoTunnel => "tunnel_not_configured",
        TunnelUnknownPeer => "tunnel_unknown_peer",
        TunnelMalformed => "tunnel_malformed_outer",
        GreUnsupported => "gre_unsupported_flags_version_or_protocol",
        GueUnsupported => "gue_unsupported_version_hlen_or_proto",
        TunnelNested => "tunnel_nested",
        TunnelUdpBadLength => "tunnel_udp_bad_length",
        TunnelHairpin => "tunnel_hairpin",
        TunnelNoUnderlay => "tunnel_no_underlay_route",
        ReassemblyOverlap => "reassembly_overlap",
        ReassemblyOversized => "reassembly_oversized",
        ReassemblyTimeout => "reassembly_timeout",
        ReassemblyEvicted => "reassembly_evicted",
        ReassemblySourceLimit => "reassembly_per_source_limit",
        Wireguard => "wireguard_not_owned_queue_full",
        NeighborUnresolved => "neighbor_unresolved",
        Neighbor6Unresolved => "neighbor6_unresolved",
        Ipv6Malformed => "ipv6_malformed",
        Ipv6BadSource => "ipv6_bad_source",
        Ipv6NotForUs => "ipv6_not_for_us",
        Icmpv6Malformed => "icmpv6_malformed",
        Icmpv6BadChecksum => "icmpv6_bad_checksum",
        NdBadHopLimit => "nd_hop_limit_not_255",
        NdMalformed => "nd_malformed",
        FragNeeded => "fragmentation_needed",
        FragFailed => "fragmentation_failed",
        NoExceptionPath => "no_exception_path",
        ExceptionPathTooBig => "exception_path_too_big",
        TxFull => "tx_queue_full",
        PortLinkDown => "port_link_down",
        NoMbuf => "no_mbuf",
    }
}

named_enum! {
    /// Things that happened that are not drops.
    Event {
        ArpReplySent => "arp_reply_sent",
        ProxyArpReplySent => "proxy_arp_reply_sent",
        ProxyArpSilent => "proxy_arp_inactive_silent",
        ProxyArpHeld => "proxy_arp_held_after_stall",
        ArpRequestSent => "arp_request_sent",
        ArpRequestSuppressed => "arp_request_rate_limited",
        ArpLearned => "arp_learned",
        ArpLearnQueueFull => "arp_learn_queue_full",
        ArpNotLearnedOffSubnet => "arp_not_learned_off_subnet",
        GratuitousArpSent => "gratuitous_arp_sent",
        GratuitousArpHeld => "gratuitous_arp_held_after_stall",
        DuplicateHolder => "duplicate_holder_alarm",
        IcmpSent => "icmp_error_sent",
        IcmpRateLimited => "icmp_error_rate_limited",
        IcmpSuppressed => "icmp_error_suppressed_bad_address",
        IcmpEchoReplied => "icmp_echo_replied",
        Forwarded => "forwarded",
        SourceRouteForwarded => "ipv4_source_route_forwarded",
        Fragmented => "fragmented",
        FragmentsSent => "fragments_sent",
        PuntedToTap => "punted_to_tap",
        FromTap => "from_tap",
        StaleProbe => "neighbor_stale_probe",
        ArpReplyConsumed => "arp_reply_consumed",
        Encapsulated => "encapsulated",
        Decapsulated => "decapsulated",
        MssClamped => "tcp_mss_clamped",
        Reassembled => "outer_reassembled",
        WgControlSent => "wireguard_control_sent",
        WgHandedOff => "wireguard_handed_off",
        RouterAdvertSent => "nd_router_advert_sent",
        RouterAdvertSuppressed => "nd_solicited_router_advert_rate_limited",
        NeighborAdvertSent => "nd_neighbor_advert_sent",
        NeighborSolicitSent => "nd_neighbor_solicit_sent",
        NeighborSolicitSuppressed => "nd_neighbor_solicit_rate_limited",
        NdLearned => "nd_learned",
        NdLearnQueueFull => "nd_learn_queue_full",
        NdConsumed => "nd_consumed_no_tap",
    }
}

pub const MAX_PORTS: usize = 32;

/// A poll that takes longer than this (without sleeping) counts as a stall.
pub const STALL_NS: u64 = 100_000;

/// Counters of one polling core (one writer: that core).
#[repr(align(64))]
pub struct CoreStats {
    pub lcore: u32,
    pub bursts: AtomicU64,
    /// TSC cycles spent in polls that received packets, and how many such
    /// polls (OVS's "processing cycles"): busy cycles / packets received is
    /// the forwarding cost per packet on this core.
    pub busy_cycles: AtomicU64,
    pub busy_polls: AtomicU64,
    /// TSC cycles spent in polls that received nothing (and in adaptive
    /// sleeps between them), and how many such polls.
    pub idle_cycles: AtomicU64,
    pub idle_polls: AtomicU64,
    /// Polls that took longer than `STALL_NS` of wall time without sleeping:
    /// the core was taken away (preempted, a hypervisor pause) or stuck.
    /// Each can overflow the receive rings at line rate: the first thing to
    /// check when packets are missed on an otherwise idle core.
    pub stalls: AtomicU64,
    /// Idle sleeps (poll modes adaptive/shared), and how they ended: a port
    /// or the manager signalled, or the timer (back-off bound, timer duty).
    pub sleeps: AtomicU64,
    pub wake_events: AtomicU64,
    pub wake_timeouts: AtomicU64,
    pub snapshot_version: AtomicU64,
    pub rx: [AtomicU64; MAX_PORTS],
    pub tx: [AtomicU64; MAX_PORTS],
    pub drops: [AtomicU64; DropReason::COUNT],
    pub events: [AtomicU64; Event::COUNT],
    /// WireGuard drops by `WgDrop` reason (indexed by its position in `WgDrop::ALL`).
    pub wg_drops: [AtomicU64; MAX_WG_DROPS],
    /// Sequence lock over `dup_what` and `dup_mac`: odd while being written,
    /// +2 per duplicate-holder alarm.
    pub dup_seq: AtomicU64,
    /// The last offender: IPv4 address (low 32 bits) and port (bits 32..48).
    pub dup_what: AtomicU64,
    /// The last offender's MAC (low 48 bits, big-endian byte order).
    pub dup_mac: AtomicU64,
}

/// The last duplicate proxy-ARP holder one core saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastDuplicate {
    /// Changes (by 2) with every alarm on that core.
    pub seq: u64,
    pub port: u16,
    pub ip: u32,
    pub mac: [u8; 6],
}

/// Room for every `tunnel::wireguard::WgDrop` reason.
pub const MAX_WG_DROPS: usize = 32;

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a relaxed load + store is exact and avoids a locked RMW.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl CoreStats {
    pub fn new(lcore: u32) -> Self {
        CoreStats {
            lcore,
            bursts: AtomicU64::new(0),
            busy_cycles: AtomicU64::new(0),
            busy_polls: AtomicU64::new(0),
            idle_cycles: AtomicU64::new(0),
            idle_polls: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            wake_events: AtomicU64::new(0),
            wake_timeouts: AtomicU64::new(0),
            snapshot_version: AtomicU64::new(0),
            rx: std::array::from_fn(|_| AtomicU64::new(0)),
            tx: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            wg_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            dup_seq: AtomicU64::new(0),
            dup_what: AtomicU64::new(0),
            dup_mac: AtomicU64::new(0),
        }
    }

    /// A foreign ARP sender claims `ip`, which this core answers proxy ARP
    /// for: counts `duplicate_holder_alarm` and records the offender. Only
    /// the owning core calls this (single writer); no lock, no allocation.
    #[inline]
    pub fn duplicate_holder(&self, port: u16, ip: u32, mac: [u8; 6]) {
        self.event(Event::DuplicateHolder);
        let s = self.dup_seq.load(Relaxed);
        self.dup_seq.store(s.wrapping_add(1), Relaxed);
        fence(Ordering::Release);
        let mut m = [0u8; 8];
        m[2..].copy_from_slice(&mac);
        self.dup_what
            .store(u64::from(ip) | u64::from(port) << 32, Relaxed);
        self.dup_mac.store(u64::from_be_bytes(m), Relaxed);
        self.dup_seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The last offender this core recorded, `None` if none yet (or the
    /// writer kept racing the read).
    pub fn last_duplicate(&self) -> Option<LastDuplicate> {
        for _ in 0..16 {
            let s1 = self.dup_seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let what = self.dup_what.load(Relaxed);
            let mac = self.dup_mac.load(Relaxed);
            fence(Ordering::Acquire);
            if self.dup_seq.load(Relaxed) != s1 {
                continue;
            }
            let b = mac.to_be_bytes();
            let mut out = [0u8; 6];
            out.copy_from_slice(&b[2..]);
            return Some(LastDuplicate {
                seq: s1,
                port: (what >> 32) as u16,
                ip: what as u32,
                mac: out,
            });
        }
        None
    }

    #[inline(always)]
    pub fn dropped(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    #[inline(always)]
    pub fn dropped_n(&self, reason: DropReason, n: u64) {
        bump(&self.drops[reason as usize], n);
    }

    #[inline(always)]
    pub fn event(&self, e: Event) {
        bump(&self.events[e as usize], 1);
    }

    #[inline(always)]
    pub fn event_n(&self, e: Event, n: u64) {
        bump(&self.events[e as usize], n);
    }

    #[inline(always)]
    pub fn rx(&self, port: usize, n: u64) {
        bump(&self.rx[port], n);
    }

    #[inline(always)]
    pub fn tx(&self, port: usize, n: u64) {
        bump(&self.tx[port], n);
    }

    /// Accounts one poll of `cycles` TSC cycles: busy if it received packets.
    #[inline(always)]
    pub fn poll_cycles(&self, cycles: u64, busy: bool) {
        if busy {
            bump(&self.busy_cycles, cycles);
            bump(&self.busy_polls, 1);
        } else {
            bump(&self.idle_cycles, cycles);
            bump(&self.idle_polls, 1);
        }
    }

    /// Accounts one stalled poll (see `stalls`).
    #[inline]
    pub fn stalled(&self) {
        bump(&self.stalls, 1);
    }

    /// Accounts one idle sleep and how it ended.
    pub fn slept(&self, by_event: bool) {
        bump(&self.sleeps, 1);
        bump(
            if by_event {
                &self.wake_events
            } else {
                &self.wake_timeouts
            },
            1,
        );
    }

    #[inline(always)]
    pub fn burst(&self) {
        bump(&self.bursts, 1);
    }

    #[inline]
    pub fn wg_dropped(&self, index: usize) {
        if let Some(c) = self.wg_drops.get(index) {
            bump(c, 1);
        }
    }

    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }

    pub fn events_of(&self, e: Event) -> u64 {
        self.events[e as usize].load(Relaxed)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_duplicate_round_trips_and_counts() {
        let s = CoreStats::new(1);
        assert_eq!(s.last_duplicate(), None);
        s.duplicate_holder(3, 0x0a4d_3c14, [2, 0, 0, 0, 0, 9]);
        s.duplicate_holder(1, 0x0a4d_3c15, [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        let d = s.last_duplicate().unwrap();
        assert_eq!(d.port, 1);
        assert_eq!(d.ip, 0x0a4d_3c15);
        assert_eq!(d.mac, [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(d.seq, 4);
        assert_eq!(s.events_of(Event::DuplicateHolder), 2);
    }

    #[test]
    fn concurrent_reader_never_sees_a_torn_record() {
        let s = std::sync::Arc::new(CoreStats::new(1));
        let w = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..200_000u32 {
                    let b = (i as u8).wrapping_mul(7);
                    s.duplicate_holder(i as u16, i, [2, b, b, b, b, b]);
                }
            })
        };
        while !w.is_finished() {
            if let Some(d) = s.last_duplicate() {
                let b = (d.ip as u8).wrapping_mul(7);
                assert_eq!(d.port, d.ip as u16);
                assert_eq!(d.mac, [2, b, b, b, b, b]);
            }
        }
        w.join().unwrap();
    }
}
