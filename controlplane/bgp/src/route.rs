//! What the RIB stores: prefixes (IPv4 and IPv6 unicast), path attributes
//! (shared between prefixes through `Arc`), and paths (attributes + where
//! they came from).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use cer_shared::Ipv4Prefix;

pub type Asn = u32;

/// Hash maps keyed by prefixes and peers: ahash (randomly keyed, so still
/// resistant to crafted keys) instead of SipHash, which dominated the RIB's
/// cost when learning full tables.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, ahash::RandomState>;

/// An IPv6 prefix with host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ipv6Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Prefix {
    pub fn new(addr: Ipv6Addr, len: u8) -> Self {
        let len = len.min(128);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        Ipv6Prefix {
            addr: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        }
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A unicast prefix of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    V4(Ipv4Prefix),
    V6(Ipv6Prefix),
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4(p) => p.fmt(f),
            Prefix::V6(p) => p.fmt(f),
        }
    }
}

/// A path identifier (RFC 7911 ADD-PATH). 0 where a session carries none.
pub type PathId = u32;

/// A prefix as NLRI carries it: with the path identifier an ADD-PATH session
/// puts in front of it (RFC 7911 3), 0 on sessions without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: Prefix,
    pub path_id: PathId,
}

impl From<Prefix> for Nlri {
    fn from(prefix: Prefix) -> Self {
        Nlri { prefix, path_id: 0 }
    }
}

/// An NLRI is the bare prefix when it carries no path identifier.
impl PartialEq<Prefix> for Nlri {
    fn eq(&self, other: &Prefix) -> bool {
        self.path_id == 0 && self.prefix == *other
    }
}

impl fmt::Display for Nlri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path_id {
            0 => self.prefix.fmt(f),
            id => write!(f, "{} path-id {id}", self.prefix),
        }
    }
}

impl From<Ipv4Prefix> for Prefix {
    fn from(p: Ipv4Prefix) -> Self {
        Prefix::V4(p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AsSegmentKind {
    Set,
    Sequence,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AsSegment {
    pub kind: AsSegmentKind,
    pub asns: Vec<Asn>,
}

/// The next hop of a path. IPv4 NLRI may carry an IPv6 next hop (RFC 8950).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum NextHop {
    V4 {
        addr: Ipv4Addr,
    },
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    pub fn ip(&self) -> IpAddr {
        match self {
            NextHop::V4 { addr } => IpAddr::V4(*addr),
            NextHop::V6 { global, .. } => IpAddr::V6(*global),
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::V4 { addr } => addr.fmt(f),
            NextHop::V6 {
                global,
                link_local: Some(ll),
            } => write!(f, "{global} ({ll})"),
            NextHop::V6 {
                global,
                link_local: None,
            } => global.fmt(f),
        }
    }
}

/// A standard community (RFC 1997) as `asn << 16 | value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Community(pub u32);

impl Community {
    pub fn new(asn: u16, value: u16) -> Self {
        Community(u32::from(asn) << 16 | u32::from(value))
    }
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl std::str::FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, v) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}' is not a community (ASN:VALUE)"))?;
        let a: u16 = a
            .parse()
            .map_err(|_| format!("'{s}': ASN part must be 0..=65535"))?;
        let v: u16 = v
            .parse()
            .map_err(|_| format!("'{s}': value part must be 0..=65535"))?;
        Ok(Community::new(a, v))
    }
}

/// An attribute we do not interpret but must pass on if it is transitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawAttr {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

/// Path attributes of one UPDATE (shared by all its prefixes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PathAttrs {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    pub next_hop: NextHop,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(Asn, Ipv4Addr)>,
    pub communities: Vec<Community>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub unknown: Vec<RawAttr>,
}

impl PathAttrs {
    /// Minimal attributes for a locally originated route.
    pub fn local(next_hop: NextHop) -> Self {
        PathAttrs {
            origin: Origin::Igp,
            as_path: Vec::new(),
            next_hop,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// AS_PATH length for the decision process: a SEQUENCE counts each ASN,
    /// a SET counts 1 (RFC 4271 9.1.2.2 a).
    pub fn as_path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s.kind {
                AsSegmentKind::Sequence => s.asns.len(),
                AsSegmentKind::Set => 1,
            })
            .sum()
    }

    /// The neighbor AS: the first ASN of the path (None for a local/iBGP-empty path).
    pub fn neighbor_as(&self) -> Option<Asn> {
        self.as_path.first().and_then(|s| s.asns.first().copied())
    }

    pub fn has_community(&self, c: Community) -> bool {
        self.communities.contains(&c)
    }
}

/// Identifies a peer inside the speaker; `PeerId::LOCAL` is this router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u32);

impl PeerId {
    pub const LOCAL: PeerId = PeerId(0);
    /// No peer: the export context of a whole update group (no path is
    /// learned from it, so none is held back from it).
    pub const NONE: PeerId = PeerId(u32::MAX);
}

/// Facts about the peer a path came from, as the decision process needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSource {
    pub peer: PeerId,
    /// The peer's session address (lowest wins the last tie-break).
    pub peer_addr: IpAddr,
    /// The peer's BGP identifier from its OPEN.
    pub router_id: Ipv4Addr,
    pub peer_as: Asn,
    /// Learned over iBGP (peer AS == local AS).
    pub ibgp: bool,
    /// The peer is one of our route-reflector clients.
    pub rr_client: bool,
}

/// One candidate path for a prefix.
#[derive(Clone, Debug, Eq)]
pub struct Path {
    pub attrs: Arc<PathAttrs>,
    pub source: Arc<PathSource>,
    /// The path identifier the source sent it with (ADD-PATH receive; 0
    /// without). A peer's paths for one prefix differ by it.
    pub rx_id: PathId,
    /// Our identifier for this path, the one ADD-PATH sessions get it with:
    /// one per (source peer, `rx_id`) for as long as any prefix holds such a
    /// path, so it is stable while the path lives and unique per prefix
    /// (`Rib` allocates it; 0 until then).
    pub id: PathId,
}

impl PartialEq for Path {
    /// Attributes are shared by `Arc`; the same pointer needs no deep compare.
    fn eq(&self, other: &Self) -> bool {
        self.rx_id == other.rx_id
            && (Arc::ptr_eq(&self.attrs, &other.attrs) || self.attrs == other.attrs)
            && (Arc::ptr_eq(&self.source, &other.source) || self.source == other.source)
    }
}

impl Path {
    /// A path without path identifiers (a session without ADD-PATH, a local route).
    pub fn new(attrs: Arc<PathAttrs>, source: Arc<PathSource>) -> Self {
        Path {
            attrs,
            source,
            rx_id: 0,
            id: 0,
        }
    }

    /// The originator for tie-breaking: ORIGINATOR_ID when present (RFC 4456), else the peer's router id.
    pub fn originator(&self) -> Ipv4Addr {
        self.attrs.originator_id.unwrap_or(self.source.router_id)
    }

    /// LOCAL_PREF with the default applied (100).
    pub fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }
}

pub const DEFAULT_LOCAL_PREF: u32 = 100;

impl PathSource {
    /// The source of locally originated paths: `PeerId::LOCAL`, our router id,
    /// an unspecified session address, not iBGP, not a client.
    pub fn local(router_id: Ipv4Addr, local_as: Asn) -> Self {
        PathSource {
            peer: PeerId::LOCAL,
            peer_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            router_id,
            peer_as: local_as,
            ibgp: false,
            rr_client: false,
        }
    }
}

impl PathAttrs {
    /// Prepends `asn` `times` times to AS_PATH, merging into a leading
    /// AS_SEQUENCE and starting a new segment when one would exceed 255 ASNs.
    pub fn prepend_as(&mut self, asn: Asn, times: usize) {
        const MAX_SEGMENT: usize = 255;
        let mut left = times;
        while left > 0 {
            let room = match self.as_path.first() {
                Some(s) if s.kind == AsSegmentKind::Sequence => {
                    MAX_SEGMENT.saturating_sub(s.asns.len())
                }
                _ => 0,
            };
            if room == 0 {
                self.as_path.insert(
                    0,
                    AsSegment {
                        kind: AsSegmentKind::Sequence,
                        asns: Vec::new(),
                    },
                );
                continue;
            }
            let n = room.min(left);
            if let Some(seg) = self.as_path.first_mut() {
                seg.asns.splice(0..0, (0..n).map(|_| asn));
            }
            left -= n;
        }
    }
}

impl Community {
    /// RFC 1997 NO_EXPORT_SUBCONFED; without confederations it acts as NO_EXPORT.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
}
