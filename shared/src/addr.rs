//! Address types with strict parsing and string serde forms (`10.0.0.0/24`,
//! `02:00:00:00:00:01`), so config files and the feed protocol read naturally.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

/// Why a prefix or MAC string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("'{0}' is not an IPv4 prefix (expected A.B.C.D/LEN)")]
    BadPrefix(String),
    #[error("'{0}': prefix length must be 0..=32")]
    BadPrefixLen(String),
    #[error("'{0}' has host bits set; did you mean {1}?")]
    HostBitsSet(String, String),
    #[error("'{0}' is not a MAC address (expected xx:xx:xx:xx:xx:xx)")]
    BadMac(String),
}

impl Ipv4Prefix {
    /// Builds a prefix; host bits must be zero.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, AddrError> {
        if len > 32 {
            return Err(AddrError::BadPrefixLen(format!("{addr}/{len}")));
        }
        let masked = Ipv4Addr::from(u32::from(addr) & mask(len));
        if masked != addr {
            return Err(AddrError::HostBitsSet(
                format!("{addr}/{len}"),
                format!("{masked}/{len}"),
            ));
        }
        Ok(Self { addr, len })
    }

    /// The prefix that contains `addr` with length `len`, host bits cleared.
    pub fn containing(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    pub fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    #[allow(clippy::len_without_is_empty)] // the prefix length, not a collection size
    pub fn len(&self) -> u8 {
        self.len
    }

    /// A /0 prefix (the default route) is "empty" of network bits.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    pub fn mask(&self) -> u32 {
        mask(self.len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

/// Network mask of a prefix length (0..=32).
#[inline]
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Splits `A.B.C.D/LEN` with LEN in 0..=32.
fn parse_addr_len(s: &str) -> Result<(Ipv4Addr, u8), AddrError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| AddrError::BadPrefix(s.to_string()))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| AddrError::BadPrefix(s.into()))?;
    let len: u8 = l.parse().map_err(|_| AddrError::BadPrefixLen(s.into()))?;
    if len > 32 {
        return Err(AddrError::BadPrefixLen(s.into()));
    }
    Ok((addr, len))
}

impl FromStr for Ipv4Prefix {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (addr, len) = parse_addr_len(s)?;
        Ipv4Prefix::new(addr, len)
    }
}

/// An interface address with its subnet length, e.g. `10.1.0.1/24` (host bits allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Interface {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Interface {
    pub fn subnet(&self) -> Ipv4Prefix {
        Ipv4Prefix::containing(self.addr, self.len)
    }
}

impl fmt::Display for Ipv4Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Interface {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (addr, len) = parse_addr_len(s)?;
        Ok(Self { addr, len })
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(|| AddrError::BadMac(s.into()))?;
            if p.len() != 2 {
                return Err(AddrError::BadMac(s.into()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| AddrError::BadMac(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(AddrError::BadMac(s.into()));
        }
        Ok(MacAddr(out))
    }
}

/// Serde as the Display / FromStr string form (`"10.0.0.0/24"`, `"02:00:..."`).
macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_serde!(Ipv4Prefix, Ipv4Interface, MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_parse_and_contains() {
        let p: Ipv4Prefix = "10.77.60.0/24".parse().unwrap();
        assert!(p.contains("10.77.60.10".parse().unwrap()));
        assert!(!p.contains("10.77.61.10".parse().unwrap()));
        assert_eq!(p.to_string(), "10.77.60.0/24");
        let d: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains("1.2.3.4".parse().unwrap()));
        assert_eq!(d.mask(), 0);
    }

    #[test]
    fn prefix_rejects_bad_input() {
        assert!(matches!(
            "10.0.0.1/24".parse::<Ipv4Prefix>(),
            Err(AddrError::HostBitsSet(_, s)) if s == "10.0.0.0/24"
        ));
        assert!("10.0.0.0/33".parse::<Ipv4Prefix>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Prefix>().is_err());
        assert!("x/8".parse::<Ipv4Prefix>().is_err());
    }

    #[test]
    fn mac_roundtrip() {
        let m: MacAddr = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert!(m.is_unicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        assert!("02:00:0a:ff:00".parse::<MacAddr>().is_err());
        assert!("02:00:0a:ff:00:01:02".parse::<MacAddr>().is_err());
        assert!("zz:00:0a:ff:00:01".parse::<MacAddr>().is_err());
    }

    #[test]
    fn interface_subnet() {
        let i: Ipv4Interface = "10.1.0.1/24".parse().unwrap();
        assert_eq!(i.subnet().to_string(), "10.1.0.0/24");
    }
}
