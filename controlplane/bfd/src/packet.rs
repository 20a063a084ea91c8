//! The BFD control packet (RFC 5880 section 4): decoding with the reception
//! checks of section 6.8.6 that need no session, encoding, and the keyed
//! SHA1 authentication section (4.4; meticulous or not). Every refusal is a
//! [`PacketError`] naming the field, for a counted drop.

use sha1::{Digest, Sha1};

/// The mandatory section's length (no authentication).
pub const HEADER_LEN: usize = 24;
/// Keyed SHA1 / Meticulous Keyed SHA1 authentication section length.
pub const SHA1_AUTH_LEN: usize = 28;
/// UDP destination port of single-hop control packets (RFC 5881).
pub const PORT_SINGLE_HOP: u16 = 3784;
/// UDP destination port of multihop control packets (RFC 5883).
pub const PORT_MULTIHOP: u16 = 4784;

const VERSION: u8 = 1;
const AUTH_KEYED_SHA1: u8 = 4;
const AUTH_METICULOUS_KEYED_SHA1: u8 = 5;

/// Session states as carried in the Sta field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Diagnostic codes (RFC 5880 4.1): why the local system last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    EchoFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// A code this implementation does not name (9-31).
    Other(u8),
}

impl Diag {
    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(c) => c & 0x1f,
        }
    }

    pub fn from_code(c: u8) -> Diag {
        match c & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            c => Diag::Other(c),
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Diag::None => "no diagnostic",
            Diag::ControlDetectionTimeExpired => "control detection time expired",
            Diag::EchoFailed => "echo function failed",
            Diag::NeighborSignaledSessionDown => "neighbor signaled session down",
            Diag::ForwardingPlaneReset => "forwarding plane reset",
            Diag::PathDown => "path down",
            Diag::ConcatenatedPathDown => "concatenated path down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diag::Other(_) => "unassigned diagnostic",
        }
    }
}

/// The keyed SHA1 authentication section (RFC 5880 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sha1Auth {
    /// Meticulous: the sequence number goes up on every packet.
    pub meticulous: bool,
    pub key_id: u8,
    pub sequence: u32,
    /// As received (the digest); on encode it is computed.
    pub digest: [u8; 20],
}

/// One BFD control packet; intervals in microseconds as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent: the sender's BFD shares fate with its
    /// control plane (false: it does; cer-control's BFD lives in cer-control).
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
    pub auth: Option<Sha1Auth>,
}

/// Why a received packet was dropped (RFC 5880 6.8.6, in its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0} bytes: shorter than the 24-byte mandatory section")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("length field {field} with the A bit {auth}: at least {min} expected")]
    LengthTooSmall { field: u8, auth: bool, min: usize },
    #[error("length field {field} exceeds the {got}-byte payload")]
    LengthOverPayload { field: u8, got: usize },
    #[error("detect multiplier 0")]
    DetectMultZero,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    MyDiscriminatorZero,
    #[error("your discriminator 0 in state {}", .0.name())]
    YourDiscriminatorZero(State),
    #[error("authentication type {0} (only keyed SHA1, 4 and 5, is supported)")]
    AuthType(u8),
    #[error("authentication section length {0}, not 28")]
    AuthLength(u8),
}

impl PacketError {
    /// A stable name for counters.
    pub fn name(&self) -> &'static str {
        match self {
            PacketError::Short(_) => "short",
            PacketError::Version(_) => "version",
            PacketError::LengthTooSmall { .. } | PacketError::LengthOverPayload { .. } => "length",
            PacketError::DetectMultZero => "detect_mult_zero",
            PacketError::Multipoint => "multipoint",
            PacketError::MyDiscriminatorZero => "my_disc_zero",
            PacketError::YourDiscriminatorZero(_) => "your_disc_zero",
            PacketError::AuthType(_) | PacketError::AuthLength(_) => "auth_format",
        }
    }
}

impl ControlPacket {
    /// Decodes and applies the session-independent reception checks.
    pub fn decode(b: &[u8]) -> Result<ControlPacket, PacketError> {
        if b.len() < HEADER_LEN {
            return Err(PacketError::Short(b.len()));
        }
        let version = b[0] >> 5;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let flags = b[1];
        let auth_present = flags & 0x04 != 0;
        let length = b[3];
        let min = if auth_present {
            HEADER_LEN + 2
        } else {
            HEADER_LEN
        };
        if (length as usize) < min {
            return Err(PacketError::LengthTooSmall {
                field: length,
                auth: auth_present,
                min,
            });
        }
        if length as usize > b.len() {
            return Err(PacketError::LengthOverPayload {
                field: length,
                got: b.len(),
            });
        }
        let detect_mult = b[2];
        if detect_mult == 0 {
            return Err(PacketError::DetectMultZero);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let my_disc = word(4);
        if my_disc == 0 {
            return Err(PacketError::MyDiscriminatorZero);
        }
        let state = State::from_bits(flags >> 6);
        let your_disc = word(8);
        if your_disc == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(PacketError::YourDiscriminatorZero(state));
        }
        let auth = if auth_present {
            let kind = b[HEADER_LEN];
            let len = b[HEADER_LEN + 1];
            if kind != AUTH_KEYED_SHA1 && kind != AUTH_METICULOUS_KEYED_SHA1 {
                return Err(PacketError::AuthType(kind));
            }
            if len as usize != SHA1_AUTH_LEN || (length as usize) < HEADER_LEN + SHA1_AUTH_LEN {
                return Err(PacketError::AuthLength(len));
            }
            let a = &b[HEADER_LEN..HEADER_LEN + SHA1_AUTH_LEN];
            let mut digest = [0u8; 20];
            digest.copy_from_slice(&a[8..28]);
            Some(Sha1Auth {
                meticulous: kind == AUTH_METICULOUS_KEYED_SHA1,
                key_id: a[2],
                sequence: u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
                digest,
            })
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diag::from_code(b[0]),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_disc,
            your_disc,
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
            auth,
        })
    }

    /// The encoded length.
    pub fn len(&self) -> usize {
        HEADER_LEN
            + if self.auth.is_some() {
                SHA1_AUTH_LEN
            } else {
                0
            }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Encodes into `out` (at least [`len`](Self::len) bytes) and returns the
    /// length. With `auth` set, `key` is the shared secret and the digest
    /// is computed over the packet (RFC 5880 6.7.4).
    pub fn encode(&self, key: Option<&[u8]>, out: &mut [u8]) -> usize {
        let n = self.len();
        let b = &mut out[..n];
        b[0] = (VERSION << 5) | self.diag.code();
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.auth.is_some()) << 2)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = n as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        if let Some(a) = self.auth {
            let s = &mut b[HEADER_LEN..];
            s[0] = if a.meticulous {
                AUTH_METICULOUS_KEYED_SHA1
            } else {
                AUTH_KEYED_SHA1
            };
            s[1] = SHA1_AUTH_LEN as u8;
            s[2] = a.key_id;
            s[3] = 0;
            s[4..8].copy_from_slice(&a.sequence.to_be_bytes());
            let digest = sha1_digest(b, key.unwrap_or_default());
            b[HEADER_LEN + 8..HEADER_LEN + 28].copy_from_slice(&digest);
        }
        n
    }
}

/// The keyed SHA1 digest of an encoded packet (`packet` holds the whole
/// packet; its digest field is replaced by the key, zero padded to 20 bytes,
/// for the computation).
pub fn sha1_digest(packet: &[u8], key: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    let at = HEADER_LEN + 8;
    h.update(&packet[..at]);
    let mut k = [0u8; 20];
    let n = key.len().min(20);
    k[..n].copy_from_slice(&key[..n]);
    h.update(k);
    h.update(&packet[at + 20..]);
    h.finalize().into()
}

/// Whether a received packet's keyed SHA1 digest matches `key` (the raw
/// bytes as received).
pub fn sha1_verifies(raw: &[u8], key: &[u8]) -> bool {
    if raw.len() < HEADER_LEN + SHA1_AUTH_LEN {
        return false;
    }
    let want = sha1_digest(raw, key);
    // Constant time: compare every byte.
    let got = &raw[HEADER_LEN + 8..HEADER_LEN + 28];
    want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Up,
            poll: true,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 0x0102_0304,
            your_disc: 0x0a0b_0c0d,
            desired_min_tx_us: 300_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    #[test]
    fn round_trip_and_wire_layout() {
        let p = sample();
        let mut buf = [0u8; 64];
        let n = p.encode(None, &mut buf);
        assert_eq!(n, 24);
        // Version 1, diag 1; Up (3) with P; mult 3; length 24.
        assert_eq!(&buf[..4], &[0x21, 0xe0, 3, 24]);
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        assert_eq!(&buf[12..16], &300_000u32.to_be_bytes());
        assert_eq!(ControlPacket::decode(&buf[..n]), Ok(p));
        // Trailing bytes beyond the length field are ignored (UDP padding).
        assert_eq!(
            ControlPacket::decode(&buf[..40]).map(|q| q.my_disc),
            Ok(p.my_disc)
        );
    }

    #[test]
    fn reception_checks_in_order() {
        let mut buf = [0u8; 64];
        let n = sample().encode(None, &mut buf);
        let mut bad = buf;
        assert_eq!(
            ControlPacket::decode(&buf[..23]),
            Err(PacketError::Short(23))
        );
        bad[0] = (2 << 5) | 1;
        assert_eq!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::Version(2))
        );
        let mut bad = buf;
        bad[3] = 20;
        assert!(matches!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::LengthTooSmall { .. })
        ));
        let mut bad = buf;
        bad[3] = 30;
        assert!(matches!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::LengthOverPayload { .. })
        ));
        let mut bad = buf;
        bad[2] = 0;
        assert_eq!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::DetectMultZero)
        );
        let mut bad = buf;
        bad[1] |= 1;
        assert_eq!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::Multipoint)
        );
        let mut bad = buf;
        bad[4..8].fill(0);
        assert_eq!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::MyDiscriminatorZero)
        );
        let mut bad = buf;
        bad[8..12].fill(0);
        assert_eq!(
            ControlPacket::decode(&bad[..n]),
            Err(PacketError::YourDiscriminatorZero(State::Up))
        );
        // ...but allowed in Down.
        let mut down = sample();
        down.state = State::Down;
        down.your_disc = 0;
        let n = down.encode(None, &mut bad);
        assert!(ControlPacket::decode(&bad[..n]).is_ok());
        // A bit with a bad authentication section.
        let mut a = buf;
        a[1] |= 0x04;
        a[3] = 26;
        a[24] = 2; // keyed MD5: not supported
        a[25] = 24;
        assert_eq!(
            ControlPacket::decode(&a[..26]),
            Err(PacketError::AuthType(2))
        );
        a[24] = 4;
        a[25] = 24;
        assert_eq!(
            ControlPacket::decode(&a[..26]),
            Err(PacketError::AuthLength(24))
        );
    }

    #[test]
    fn keyed_sha1_signs_and_verifies() {
        let mut p = sample();
        p.auth = Some(Sha1Auth {
            meticulous: true,
            key_id: 7,
            sequence: 42,
            digest: [0; 20],
        });
        let mut buf = [0u8; 64];
        let n = p.encode(Some(b"secret"), &mut buf);
        assert_eq!(n, 52);
        assert!(sha1_verifies(&buf[..n], b"secret"));
        assert!(!sha1_verifies(&buf[..n], b"other"));
        let q = ControlPacket::decode(&buf[..n]).expect("decodes");
        let a = q.auth.expect("auth");
        assert!(a.meticulous && a.key_id == 7 && a.sequence == 42);
        let mut tampered = buf;
        tampered[13] ^= 1;
        assert!(!sha1_verifies(&tampered[..n], b"secret"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            let n = rng.usize(0..=64);
            rng.fill(&mut buf[..n]);
            if rng.bool() && n > 3 {
                buf[0] = 0x20 | (buf[0] & 0x1f);
                buf[3] = n as u8;
            }
            let _ = ControlPacket::decode(&buf[..n]);
            let _ = sha1_verifies(&buf[..n], b"k");
        }
    }
}
