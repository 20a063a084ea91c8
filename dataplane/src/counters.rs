//! Per-core counters: every drop has a named reason, every notable event a
//! name. Each polling core owns one `CoreStats` and is its only writer, so an
//! increment is a plain load + store (no locked instruction); the admin thread
//! reads them with relaxed loads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
        Ipv4Truncated => "ipv4_truncated",
        Ipv4BadVersion => "ipv4_bad_version",
        Ipv4BadIhl => "ipv4_bad_ihl",
        Ipv4BadLength => "ipv4_bad_total_length",
        Ipv4BadChecksum => "ipv4_bad_checksum",
        Ipv4MartianSource => "ipv4_martian_source",
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
        TunnelNoUnderlay => "tunnel_no_underlay_route",
        ReassemblyOverlap => "reassembly_overlap",
        ReassemblyOversized => "reassembly_oversized",
        ReassemblyTimeout => "reassembly_timeout",
        ReassemblyEvicted => "reassembly_evicted",
        ReassemblySourceLimit => "reassembly_per_source_limit",
        Wireguard => "wireguard_not_owned_queue_full",
        NeighborUnresolved => "neighbor_unresolved",
        FragNeeded => "fragmentation_needed",
        FragFailed => "fragmentation_failed",
        NoExceptionPath => "no_exception_path",
        TxFull => "tx_queue_full",
        NoMbuf => "no_mbuf",
    }
}

named_enum! {
    /// Things that happened that are not drops.
    Event {
        ArpReplySent => "arp_reply_sent",
        ProxyArpReplySent => "proxy_arp_reply_sent",
        ProxyArpSilent => "proxy_arp_inactive_silent",
        ArpRequestSent => "arp_request_sent",
        ArpRequestSuppressed => "arp_request_rate_limited",
        ArpLearned => "arp_learned",
        ArpLearnQueueFull => "arp_learn_queue_full",
        GratuitousArpSent => "gratuitous_arp_sent",
        DuplicateHolder => "duplicate_holder_alarm",
        IcmpSent => "icmp_error_sent",
        IcmpRateLimited => "icmp_error_rate_limited",
        IcmpEchoReplied => "icmp_echo_replied",
        Forwarded => "forwarded",
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
    }
}

pub const MAX_PORTS: usize = 32;

/// Counters of one polling core (one writer: that core).
#[repr(align(64))]
pub struct CoreStats {
    pub lcore: u32,
    pub bursts: AtomicU64,
    pub snapshot_version: AtomicU64,
    pub rx: [AtomicU64; MAX_PORTS],
    pub tx: [AtomicU64; MAX_PORTS],
    pub drops: [AtomicU64; DropReason::COUNT],
    pub events: [AtomicU64; Event::COUNT],
    /// WireGuard drops by `WgDrop` reason (indexed by its position in `WgDrop::ALL`).
    pub wg_drops: [AtomicU64; MAX_WG_DROPS],
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
            snapshot_version: AtomicU64::new(0),
            rx: std::array::from_fn(|_| AtomicU64::new(0)),
            tx: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            wg_drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline(always)]
    pub fn dropped(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
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
