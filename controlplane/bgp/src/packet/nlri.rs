//! Prefixes in NLRI encoding (RFC 4271 4.3, RFC 4760 5.1): a length octet and
//! the fewest octets that hold the prefix. Parsing enforces RFC 7606 5.3 (no
//! length beyond the family's maximum, no overrun of the field).

use crate::route::{Ipv4Prefix, Ipv6Prefix, Prefix};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a run of NLRI prefixes is syntactically incorrect (RFC 7606 5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {len} exceeds {max}")]
    TooLong { len: u8, max: u8 },
    #[error("prefix of length {len} needs {need} octets, {have} left in the field")]
    Overrun { len: u8, need: usize, have: usize },
}

fn parse<const N: usize>(
    mut b: &[u8],
    make: impl Fn([u8; N], u8) -> Prefix,
) -> Result<Vec<Prefix>, PrefixError> {
    let max = (N * 8) as u8;
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
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
        out.push(make(a, len));
        b = &rest[need..];
    }
    Ok(out)
}

/// IPv4 prefixes (host bits cleared).
pub fn parse_v4(b: &[u8]) -> Result<Vec<Prefix>, PrefixError> {
    parse::<4>(b, |a, len| {
        Prefix::V4(Ipv4Prefix::containing(Ipv4Addr::from(a), len))
    })
}

/// IPv6 prefixes (host bits cleared).
pub fn parse_v6(b: &[u8]) -> Result<Vec<Prefix>, PrefixError> {
    parse::<16>(b, |a, len| {
        Prefix::V6(Ipv6Prefix::new(Ipv6Addr::from(a), len))
    })
}

/// Splits a list of prefixes by family, keeping the order within each.
pub fn split(prefixes: &[Prefix]) -> (Vec<Ipv4Prefix>, Vec<Ipv6Prefix>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in prefixes {
        match p {
            Prefix::V4(p) => v4.push(*p),
            Prefix::V6(p) => v6.push(*p),
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_reject_bad_lengths() {
        let got = parse_v4(&[32, 10, 77, 60, 10, 0, 24, 10, 1, 2]).unwrap();
        assert_eq!(
            got,
            vec![
                Prefix::V4("10.77.60.10/32".parse().unwrap()),
                Prefix::V4("0.0.0.0/0".parse().unwrap()),
                Prefix::V4("10.1.2.0/24".parse().unwrap()),
            ]
        );
        assert_eq!(
            parse_v4(&[33, 1, 2, 3, 4, 5]),
            Err(PrefixError::TooLong { len: 33, max: 32 })
        );
        assert_eq!(
            parse_v4(&[24, 10, 1]),
            Err(PrefixError::Overrun {
                len: 24,
                need: 3,
                have: 2
            })
        );
        assert!(parse_v6(&[129]).is_err());
        assert_eq!(
            parse_v6(&[48, 0x20, 0x01, 0x0d, 0xb8, 0, 0x77]).unwrap(),
            vec![Prefix::V6(Ipv6Prefix::new(
                "2001:db8:77::".parse().unwrap(),
                48
            ))]
        );
        assert_eq!(parse_v4(&[]).unwrap(), vec![]);
    }
}
