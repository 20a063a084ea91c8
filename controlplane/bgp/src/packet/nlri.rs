//! Prefixes in NLRI encoding (RFC 4271 4.3, RFC 4760 5.1): a length octet and
//! the fewest octets that hold the prefix, after a 4-octet path identifier on
//! sessions that negotiated ADD-PATH receive for the family (RFC 7911 3).
//! Parsing enforces RFC 7606 5.3 (no length beyond the family's maximum, no
//! overrun of the field); `semantic_error` says which well-formed prefixes
//! RFC 4271 6.3 ignores.

use crate::route::{Ipv4Prefix, Ipv6Prefix, Nlri, PathId, Prefix};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a run of NLRI prefixes is syntactically incorrect (RFC 7606 5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {len} exceeds {max}")]
    TooLong { len: u8, max: u8 },
    #[error("prefix of length {len} needs {need} octets, {have} left in the field")]
    Overrun { len: u8, need: usize, have: usize },
    #[error("{have} octets left in the field, too few for a path identifier and a prefix length (ADD-PATH)")]
    PathIdOverrun { have: usize },
}

fn parse<const N: usize>(
    mut b: &[u8],
    add_path: bool,
    make: impl Fn([u8; N], u8) -> Prefix,
) -> Result<Vec<Nlri>, PrefixError> {
    let max = (N * 8) as u8;
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut path_id = 0;
        if add_path {
            let Some((id, rest)) = b.split_first_chunk::<4>().filter(|(_, r)| !r.is_empty()) else {
                return Err(PrefixError::PathIdOverrun { have: b.len() });
            };
            path_id = u32::from_be_bytes(*id);
            b = rest;
        }
        let Some((&len, rest)) = b.split_first() else {
            break;
        };
        if len > max {
            return Err(PrefixError::TooLong { len, max });
        }
        let need = usize::from(len).div_ceil(8);
        let Some(bytes) = rest.get(..need) else {
            return Err(PrefixError::Overrun {
                len,
                need,
                have: rest.len(),
            });
        };
        let mut a = [0u8; N];
        a[..need].copy_from_slice(bytes);
        out.push(Nlri {
            prefix: make(a, len),
            path_id,
        });
        b = &rest[need..];
    }
    Ok(out)
}

/// IPv4 NLRI (host bits cleared), each after a path identifier when `add_path`.
pub fn parse_v4_nlri(b: &[u8], add_path: bool) -> Result<Vec<Nlri>, PrefixError> {
    parse::<4>(b, add_path, |a, len| {
        Prefix::V4(Ipv4Prefix::containing(Ipv4Addr::from(a), len))
    })
}

/// IPv6 NLRI (host bits cleared), each after a path identifier when `add_path`.
pub fn parse_v6_nlri(b: &[u8], add_path: bool) -> Result<Vec<Nlri>, PrefixError> {
    parse::<16>(b, add_path, |a, len| {
        Prefix::V6(Ipv6Prefix::new(Ipv6Addr::from(a), len))
    })
}

/// What makes a prefix semantically incorrect as unicast NLRI, or None.
/// RFC 4271 6.3: "If a prefix in the NLRI field is semantically incorrect
/// (e.g., an unexpected multicast IP address), an error SHOULD be logged
/// locally, and the prefix SHOULD be ignored."
///
/// Incorrect is a prefix inside the multicast block of its family, 224.0.0.0/4
/// or ff00::/8: a unicast route cannot lead to a group address. A prefix that
/// only covers part of the block (0.0.0.0/0, 224.0.0.0/3) is not one: it holds
/// unicast addresses too, and the default route must never be dropped.
///
/// The reserved class E block, 240.0.0.0/4, is accepted on purpose: RFC 4271
/// names only multicast, the block is unicast-shaped, and it is routed as
/// extra private space in practice (cloud and Kubernetes pod ranges among
/// others), so ignoring it would drop routes someone relies on. Only its
/// limited broadcast address is never a next hop (`attribute::bad_v4_next_hop`).
pub fn semantic_error(p: &Prefix) -> Option<&'static str> {
    match p {
        Prefix::V4(p) if p.len() >= 4 && p.addr().is_multicast() => {
            Some("is multicast (in 224.0.0.0/4)")
        }
        Prefix::V6(p) if p.len >= 8 && p.addr.is_multicast() => Some("is multicast (in ff00::/8)"),
        _ => None,
    }
}

/// Prefixes of one family with their path identifiers.
pub type WithIds<P> = Vec<(P, PathId)>;

/// Splits NLRI by family, keeping the order within each.
pub fn split(nlri: &[Nlri]) -> (WithIds<Ipv4Prefix>, WithIds<Ipv6Prefix>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nlri {
        match n.prefix {
            Prefix::V4(p) => v4.push((p, n.path_id)),
            Prefix::V6(p) => v6.push((p, n.path_id)),
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_reject_bad_lengths() {
        let got = parse_v4_nlri(&[32, 10, 77, 60, 10, 0, 24, 10, 1, 2], false).unwrap();
        assert_eq!(
            got,
            vec![
                Prefix::V4("10.77.60.10/32".parse().unwrap()),
                Prefix::V4("0.0.0.0/0".parse().unwrap()),
                Prefix::V4("10.1.2.0/24".parse().unwrap()),
            ]
        );
        assert_eq!(
            parse_v4_nlri(&[33, 1, 2, 3, 4, 5], false),
            Err(PrefixError::TooLong { len: 33, max: 32 })
        );
        assert_eq!(
            parse_v4_nlri(&[24, 10, 1], false),
            Err(PrefixError::Overrun {
                len: 24,
                need: 3,
                have: 2
            })
        );
        assert!(parse_v6_nlri(&[129], false).is_err());
        assert_eq!(
            parse_v6_nlri(&[48, 0x20, 0x01, 0x0d, 0xb8, 0, 0x77], false).unwrap(),
            vec![Prefix::V6(Ipv6Prefix::new(
                "2001:db8:77::".parse().unwrap(),
                48
            ))]
        );
        assert!(parse_v4_nlri(&[], false).unwrap().is_empty());
    }

    #[test]
    fn path_identifiers_come_before_each_prefix() {
        let nlri = |p: &str, path_id| Nlri {
            prefix: Prefix::V4(p.parse().unwrap()),
            path_id,
        };
        let b = [0, 0, 0, 7, 32, 10, 77, 60, 10, 0, 1, 0, 0, 24, 10, 1, 2];
        assert_eq!(
            parse_v4_nlri(&b, true).unwrap(),
            vec![nlri("10.77.60.10/32", 7), nlri("10.1.2.0/24", 0x10000)]
        );
        // The same octets without ADD-PATH are not the same routes: a /0,
        // a /0, a /0, then a /7 whose octet is taken, then garbage.
        assert_ne!(parse_v4_nlri(&b, false).ok(), parse_v4_nlri(&b, true).ok());
        // A path id with nothing after it, or cut short.
        for bad in [
            &[0u8, 0, 0, 1][..],
            &[0, 0, 1],
            &[0, 0, 0, 1, 24, 10, 1, 2, 0, 0],
        ] {
            assert!(
                matches!(
                    parse_v4_nlri(bad, true),
                    Err(PrefixError::PathIdOverrun { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_v4_nlri(&[0, 0, 0, 1, 33, 1, 2, 3, 4, 5], true),
            Err(PrefixError::TooLong { len: 33, .. })
        ));
        assert_eq!(
            parse_v6_nlri(&[0, 0, 0, 2, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 0x77], true).unwrap(),
            vec![Nlri {
                prefix: Prefix::V6(Ipv6Prefix::new("2001:db8:77::".parse().unwrap(), 48)),
                path_id: 2
            }]
        );
    }

    #[test]
    fn multicast_prefixes_are_semantically_incorrect() {
        let v4 = |s: &str| Prefix::V4(s.parse().unwrap());
        let v6 = |s: &str, len| Prefix::V6(Ipv6Prefix::new(s.parse().unwrap(), len));
        for bad in [v4("224.0.0.1/32"), v4("239.255.0.0/16"), v4("224.0.0.0/4")] {
            assert!(semantic_error(&bad).is_some(), "{bad}");
        }
        assert!(semantic_error(&v6("ff02::1", 128)).is_some());
        assert!(semantic_error(&v6("ff00::", 8)).is_some());
        // Unicast, covering prefixes, and class E (see `semantic_error`).
        for ok in [
            v4("10.77.60.1/32"),
            v4("0.0.0.0/0"),
            v4("224.0.0.0/3"),
            v4("223.255.255.0/24"),
            v4("240.0.0.1/32"),
            v4("255.255.255.255/32"),
            v6("2001:db8::", 32),
            v6("::", 0),
            v6("fe00::", 7),
        ] {
            assert_eq!(semantic_error(&ok), None, "{ok}");
        }
    }
}
