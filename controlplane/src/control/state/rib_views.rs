//! The per-neighbor RIB views of the admin API (`cerctl show bgp neighbor
//! PEER received-routes|advertised-routes`): the speaker's views
//! (`cer_bgp::adj_in`) as JSON, every attribute spelled out, with each
//! path's signature (the hash the RIB trap gives an ownership decision,
//! `sam::signature`) and the import outcome.

use super::ControlState;
use crate::control::admin::RibSide;
use crate::control::sam;
use cer_bgp::route::{
    AsSegmentKind, Community, Ipv4Prefix, Nlri, Path, PathAttrs, PathSource, PeerId, Prefix,
};
use serde_json::{json, Value};
use std::sync::Arc;

/// Path attribute type codes shown from their raw value (RFC 4360, RFC 8092).
const EXTENDED_COMMUNITIES: u8 = 16;
const LARGE_COMMUNITIES: u8 = 32;

impl ControlState {
    /// `received-routes` or `advertised-routes` of the neighbor `name`
    /// (address or interface), for every prefix or the one given.
    pub(super) fn neighbor_routes_json(
        &self,
        name: &str,
        side: RibSide,
        prefix: Option<&str>,
    ) -> Result<Value, String> {
        let filter = prefix.map(parse_prefix).transpose()?;
        let peer = self.peer_by_name(name)?;
        let address = self
            .speaker
            .peer_address(peer)
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        Ok(match side {
            RibSide::Received => {
                let r = self
                    .speaker
                    .received_routes(peer, filter.as_ref())
                    .ok_or_else(|| format!("neighbor {name} is gone"))?;
                let rib = self.speaker.rib();
                let routes: Vec<Value> = r
                    .routes
                    .iter()
                    .map(|x| {
                        let best = rib.best(&x.nlri.prefix).is_some_and(|b| {
                            b.source.peer == peer && b.rx_id == x.nlri.path_id
                        });
                        let shown = x.post_policy.as_ref().or(x.pre_policy.as_ref());
                        json!({
                            "prefix": x.nlri.prefix.to_string(),
                            "path_id": x.nlri.path_id,
                            "import": x.outcome.map(|o| o.name()).unwrap_or("accepted"),
                            "reason": x.outcome.and_then(|o| o.reason()),
                            "best": best,
                            "stale": x.stale,
                            "pre_policy": x.pre_policy.as_deref().map(attrs_json),
                            "post_policy": x.post_policy.as_deref().map(attrs_json),
                            "signature": shown.and_then(|a| self.signature_json(x.nlri, a, r.source.as_ref())),
                        })
                    })
                    .collect();
                json!({
                    "neighbor": name,
                    "address": address,
                    "side": "received",
                    "keep_received": r.keep_received,
                    "note": (!r.keep_received).then_some("keep_received = false for this neighbor: post-policy routes only"),
                    "routes": routes,
                })
            }
            RibSide::Advertised => {
                let a = self
                    .speaker
                    .advertised_routes(peer, filter.as_ref())
                    .ok_or_else(|| format!("neighbor {name} is gone"))?;
                let from = |id: PeerId| -> String {
                    if id == PeerId::LOCAL {
                        "local".into()
                    } else {
                        self.speaker
                            .peer_address(id)
                            .map(|a| a.ip().to_string())
                            .unwrap_or_else(|| format!("peer {}", id.0))
                    }
                };
                let routes: Vec<Value> = a
                    .routes
                    .iter()
                    .map(|x| {
                        json!({
                            "prefix": x.nlri.prefix.to_string(),
                            "path_id": x.nlri.path_id,
                            "from": from(x.from),
                            "pending": x.pending,
                            "attrs": attrs_json(&x.attrs),
                            "signature": self.signature_json(x.nlri, &x.attrs, None),
                        })
                    })
                    .collect();
                json!({
                    "neighbor": name,
                    "address": address,
                    "side": "advertised",
                    "update_group": a.group_members.iter().map(|m| from(*m)).collect::<Vec<_>>(),
                    "withheld_own_paths": a.withheld_own,
                    "routes": routes,
                })
            }
        })
    }

    /// The neighbor an operator names, or an error naming it and the
    /// configured ones.
    fn peer_by_name(&self, name: &str) -> Result<PeerId, String> {
        if let Some(id) = self.speaker.find_peer(name) {
            return Ok(id);
        }
        let configured: Vec<String> = self.cfg.bgp.neighbors.iter().map(|n| n.name()).collect();
        if self
            .cfg
            .bgp
            .neighbors
            .iter()
            .any(|n| n.interface.as_deref() == Some(name))
        {
            return Err(format!(
                "neighbor {name} (unnumbered) has no session yet: its peer has not been learned on the interface"
            ));
        }
        Err(format!(
            "no neighbor {name}: give a neighbor address or an unnumbered neighbor's interface (configured: {})",
            if configured.is_empty() { "none".into() } else { configured.join(", ") }
        ))
    }

    /// The path signature of `attrs` for `nlri` (IPv4 only), as the RIB
    /// trap would compute it for an ownership decision on this path.
    fn signature_json(
        &self,
        nlri: Nlri,
        attrs: &Arc<PathAttrs>,
        source: Option<&Arc<PathSource>>,
    ) -> Option<String> {
        let Prefix::V4(p4) = nlri.prefix else {
            return None;
        };
        let source = source.cloned().unwrap_or_else(|| {
            Arc::new(PathSource::local(
                self.cfg.node.router_id,
                self.cfg.node.asn,
            ))
        });
        let path = Path {
            attrs: attrs.clone(),
            source,
            rx_id: nlri.path_id,
            id: 0,
        };
        let identity = self.sam.identity_of(&path);
        let marker = identity.is_some_and(|c| self.sam.marker_present(c));
        Some(sam::signature(&p4, identity.unwrap_or(Community(0)), &path, marker).to_string())
    }
}

/// An IPv4 prefix or address (a /32), or an error naming it.
fn parse_prefix(s: &str) -> Result<Prefix, String> {
    match s.parse::<Ipv4Prefix>() {
        Ok(p) => Ok(Prefix::V4(p)),
        Err(_) => s
            .parse()
            .map(|ip| Prefix::V4(Ipv4Prefix::host(ip)))
            .map_err(|_| format!("'{s}' is not an IPv4 prefix or address (e.g. 10.77.60.10/32)")),
    }
}

/// Every attribute of a path, by name.
pub(super) fn attrs_json(a: &PathAttrs) -> Value {
    let as_path: Vec<String> = a
        .as_path
        .iter()
        .map(|s| {
            let asns: Vec<String> = s.asns.iter().map(|x| x.to_string()).collect();
            match s.kind {
                AsSegmentKind::Sequence => asns.join(" "),
                AsSegmentKind::Set => format!("{{{}}}", asns.join(",")),
            }
        })
        .collect();
    let raw = |code: u8| a.unknown.iter().filter(move |r| r.code == code);
    let large: Vec<String> = raw(LARGE_COMMUNITIES)
        .flat_map(|r| r.value.chunks_exact(12))
        .map(|c| {
            let n = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            format!("{}:{}:{}", n(0), n(4), n(8))
        })
        .collect();
    let extended: Vec<String> = raw(EXTENDED_COMMUNITIES)
        .flat_map(|r| r.value.chunks_exact(8))
        .map(extended_community)
        .collect();
    let other: Vec<Value> = a
        .unknown
        .iter()
        .filter(|r| r.code != LARGE_COMMUNITIES && r.code != EXTENDED_COMMUNITIES)
        .map(|r| json!({"code": r.code, "flags": r.flags, "length": r.value.len()}))
        .collect();
    json!({
        "origin": format!("{:?}", a.origin).to_lowercase(),
        "as_path": as_path.join(" "),
        "next_hop": a.next_hop.to_string(),
        "med": a.med,
        "local_pref": a.local_pref,
        "atomic_aggregate": a.atomic_aggregate,
        "aggregator": a.aggregator.map(|(asn, id)| format!("{asn} {id}")),
        "communities": a.communities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "large_communities": large,
        "extended_communities": extended,
        "originator_id": a.originator_id,
        "cluster_list": a.cluster_list,
        "other_attributes": other,
    })
}

/// An extended community (RFC 4360) as FRR spells the common ones:
/// `rt ASN:N`, `soo ASN:N`, else the eight octets in hex.
fn extended_community(c: &[u8]) -> String {
    let (kind, sub) = (c[0] & 0x3f, c[1]);
    let name = match sub {
        0x02 => "rt",
        0x03 => "soo",
        _ => "",
    };
    let u16_at = |i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
    match (kind, name.is_empty()) {
        // Two-octet AS specific.
        (0x00, false) => format!("{name} {}:{}", u16_at(2), u32_at(4)),
        // IPv4 address specific.
        (0x01, false) => format!("{name} {}.{}.{}.{}:{}", c[2], c[3], c[4], c[5], u16_at(6)),
        // Four-octet AS specific.
        (0x02, false) => format!("{name} {}:{}", u32_at(2), u16_at(6)),
        _ => c.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cer_bgp::route::{NextHop, RawAttr};

    #[test]
    fn large_and_extended_communities_are_spelled_out() {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: "192.0.2.1".parse().unwrap(),
        });
        let mut large = Vec::new();
        for n in [65000u32, 1, 2] {
            large.extend_from_slice(&n.to_be_bytes());
        }
        a.unknown = vec![
            RawAttr {
                flags: 0xc0,
                code: LARGE_COMMUNITIES,
                value: large,
            },
            RawAttr {
                flags: 0xc0,
                code: EXTENDED_COMMUNITIES,
                value: vec![0x00, 0x02, 0xfd, 0xe8, 0, 0, 0, 7],
            },
            RawAttr {
                flags: 0xc0,
                code: 99,
                value: vec![1, 2, 3],
            },
        ];
        let v = attrs_json(&a);
        assert_eq!(v["large_communities"], json!(["65000:1:2"]));
        assert_eq!(v["extended_communities"], json!(["rt 65000:7"]));
        assert_eq!(v["other_attributes"][0]["code"], 99);
        assert_eq!(v["origin"], "igp");
    }

    #[test]
    fn a_malformed_prefix_is_named() {
        let e = parse_prefix("10.0.0.300/8").unwrap_err();
        assert!(e.contains("'10.0.0.300/8'"), "{e}");
        assert_eq!(parse_prefix("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
    }
}
