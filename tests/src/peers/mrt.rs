//! MRT TABLE_DUMP_V2 (RFC 6396) encoding of routes, the input of
//! `gobgp mrt inject global` ([`GoBgp::add_routes`](super::GoBgp::add_routes)).

use anyhow::{anyhow, bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;

/// One route for [`GoBgp::add_routes`](super::GoBgp::add_routes).
#[derive(Debug, Clone)]
pub struct BulkRoute {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub next_hop: Ipv4Addr,
    pub as_path: Vec<u32>,
    pub local_pref: Option<u32>,
    /// `ASN:VALUE`.
    pub communities: Vec<String>,
}

/// Writes `routes` as an MRT TABLE_DUMP_V2 file (see [`GoBgp::add_routes`](super::GoBgp::add_routes)
/// for the record layout); for inspection or for `gobgp mrt inject` by hand.
pub fn write_mrt(path: &Path, routes: &[BulkRoute]) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    mrt_encode(routes, |rec| Ok(w.write_all(rec)?))?;
    w.flush()?;
    Ok(())
}

/// Encodes `routes` as MRT TABLE_DUMP_V2 records (RFC 6396), handing each
/// whole record (header + body, < 512 bytes) to `emit`: one
/// PEER_INDEX_TABLE with a single peer of AS 0 (gobgpd then treats the
/// paths as its own), then one RIB_IPV4_UNICAST record per route with
/// ORIGIN IGP, AS_PATH (4-octet ASNs; empty for iBGP origination),
/// NEXT_HOP, optional LOCAL_PREF and COMMUNITIES.
pub(super) fn mrt_encode(
    routes: &[BulkRoute],
    mut emit: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    const TABLE_DUMP_V2: u16 = 13;
    const PEER_INDEX_TABLE: u16 = 1;
    const RIB_IPV4_UNICAST: u16 = 2;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let mut rec = Vec::with_capacity(512);
    let mut record = |sub: u16, body: &[u8]| {
        rec.clear();
        rec.extend_from_slice(&now.to_be_bytes());
        rec.extend_from_slice(&TABLE_DUMP_V2.to_be_bytes());
        rec.extend_from_slice(&sub.to_be_bytes());
        rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
        rec.extend_from_slice(body);
        emit(&rec)
    };
    // PEER_INDEX_TABLE: collector id, empty view name, 1 peer
    // (type 0b10 = IPv4 address, 4-octet AS; id 0.0.0.0; address 0.0.0.0; AS 0).
    let mut pit = Vec::new();
    pit.extend_from_slice(&[0, 0, 0, 0]);
    pit.extend_from_slice(&0u16.to_be_bytes());
    pit.extend_from_slice(&1u16.to_be_bytes());
    pit.push(0b10);
    pit.extend_from_slice(&[0; 4]);
    pit.extend_from_slice(&[0; 4]);
    pit.extend_from_slice(&0u32.to_be_bytes());
    record(PEER_INDEX_TABLE, &pit)?;

    let mut body = Vec::with_capacity(256);
    let mut attrs = Vec::with_capacity(192);
    for (seq, r) in routes.iter().enumerate() {
        if r.len > 32 {
            bail!("MRT: bad prefix length {}/{}", r.prefix, r.len);
        }
        if r.as_path.len() > 32 || r.communities.len() > 32 {
            bail!("MRT: at most 32 ASNs and 32 communities per route");
        }
        attrs.clear();
        // ORIGIN (well-known transitive) IGP.
        attrs.extend_from_slice(&[0x40, 1, 1, 0]);
        // AS_PATH: one AS_SEQUENCE of 4-octet ASNs, or empty.
        if r.as_path.is_empty() {
            attrs.extend_from_slice(&[0x40, 2, 0]);
        } else {
            let len = 2 + 4 * r.as_path.len();
            attrs.extend_from_slice(&[0x40, 2, len as u8, 2, r.as_path.len() as u8]);
            for a in &r.as_path {
                attrs.extend_from_slice(&a.to_be_bytes());
            }
        }
        attrs.extend_from_slice(&[0x40, 3, 4]);
        attrs.extend_from_slice(&r.next_hop.octets());
        if let Some(lp) = r.local_pref {
            attrs.extend_from_slice(&[0x40, 5, 4]);
            attrs.extend_from_slice(&lp.to_be_bytes());
        }
        if !r.communities.is_empty() {
            // COMMUNITIES: optional transitive.
            attrs.extend_from_slice(&[0xc0, 8, 4 * r.communities.len() as u8]);
            for c in &r.communities {
                attrs.extend_from_slice(&parse_community(c)?.to_be_bytes());
            }
        }
        body.clear();
        body.extend_from_slice(&(seq as u32).to_be_bytes());
        body.push(r.len);
        body.extend_from_slice(&r.prefix.octets()[..(r.len as usize).div_ceil(8)]);
        body.extend_from_slice(&1u16.to_be_bytes()); // one RIB entry
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index 0
        body.extend_from_slice(&now.to_be_bytes()); // originated time
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        record(RIB_IPV4_UNICAST, &body)?;
    }
    Ok(())
}

fn parse_community(c: &str) -> Result<u32> {
    let (a, b) = c
        .split_once(':')
        .ok_or_else(|| anyhow!("community {c:?} is not ASN:VALUE"))?;
    let a: u16 = a.parse().with_context(|| format!("community {c:?}"))?;
    let b: u16 = b.parse().with_context(|| format!("community {c:?}"))?;
    Ok(((a as u32) << 16) | b as u32)
}
