//! Session security on the TCP sockets of BGP sessions:
//!
//! - TCP-MD5 (RFC 2385): the kernel signs and checks every segment once a
//!   key for the peer's address is on the socket (`TCP_MD5SIG`): on the
//!   listening socket before the peer's SYN arrives, on an outgoing socket
//!   before `connect`. A segment without a valid signature is dropped by the
//!   kernel without an answer, so a key mismatch shows as connect timeouts
//!   (and the namespace's `TcpExtTCPMD5*` counters, `kernel_drops`).
//! - GTSM (RFC 5082): we send with TTL (hop limit) 255 and the kernel drops
//!   what arrives with less than 254 (`IP_MINTTL`, `IPV6_MINHOPCOUNT`): only
//!   a directly connected peer can reach the session.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

/// The longest key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;
/// The TTL GTSM sends with and the least it accepts (one hop: RFC 5082 3).
pub const GTSM_TTL: u32 = 255;
pub const GTSM_MIN_TTL: u32 = 254;

/// Linux's `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// The address as the socket's family sees it: an IPv4 peer on an IPv6
/// (dual-stack) socket is its IPv4-mapped address.
fn sockaddr(peer: IpAddr, v6_socket: bool) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let peer = match peer {
        IpAddr::V4(a) if v6_socket => IpAddr::V6(a.to_ipv6_mapped()),
        p => p,
    };
    match peer {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        }
        IpAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
    }
    ss
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `fd` is an IPv6 socket.
fn is_v6(fd: RawFd) -> io::Result<bool> {
    // SAFETY: getsockname writes at most `len` bytes into ss.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ss.ss_family as libc::c_int == libc::AF_INET6)
}

/// Puts the TCP-MD5 key for `peer` on the socket (a listening one, or one
/// about to connect); an empty key removes it.
pub fn set_md5_key(fd: RawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TCP-MD5 key is at most {MD5_MAX_KEY_LEN} bytes, not {}",
                key.len()
            ),
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr(peer, is_v6(fd)?),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM on a session socket (before connect, or right after accept): send
/// with TTL 255, take nothing below 254.
pub fn set_gtsm(fd: RawFd) -> io::Result<()> {
    let (ttl, min) = (GTSM_TTL as libc::c_int, GTSM_MIN_TTL as libc::c_int);
    if is_v6(fd)? {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)?;
        // An IPv4 peer on a dual-stack socket is IPv4 on the wire.
        let _ = setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl);
        let _ = setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min);
        Ok(())
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}

/// The security of one neighbor's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSecurity {
    /// TCP-MD5 key (1-80 bytes).
    pub md5_key: Option<Vec<u8>>,
    /// GTSM (directly connected peers only).
    pub ttl_security: bool,
}

impl SessionSecurity {
    /// Applies it to an outgoing socket for `remote`, before connect.
    pub fn apply_outgoing(&self, fd: RawFd, remote: SocketAddr) -> io::Result<()> {
        if let Some(k) = &self.md5_key {
            set_md5_key(fd, remote.ip(), k)
                .map_err(|e| io::Error::new(e.kind(), format!("TCP-MD5 key: {e}")))?;
        }
        if self.ttl_security {
            set_gtsm(fd).map_err(|e| io::Error::new(e.kind(), format!("GTSM: {e}")))?;
        }
        Ok(())
    }

    /// Applies GTSM to an accepted connection (the key is on the listener).
    pub fn apply_accepted(&self, fd: RawFd) -> io::Result<()> {
        if self.ttl_security {
            set_gtsm(fd)?;
        }
        Ok(())
    }
}

/// The kernel's counters of silently dropped TCP segments in this
/// process's network namespace (`/proc/net/netstat`, `TcpExt:`): a wrong
/// TCP-MD5 signature (`TCPMD5Failure`), signed where no key was expected
/// (`TCPMD5Unexpected`), unsigned where a key was (`TCPMD5NotFound`), and
/// below the GTSM minimum TTL (`TCPMinTTLDrop`, 0 on kernels before 5.16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelDrops {
    pub md5_failure: u64,
    pub md5_unexpected: u64,
    pub md5_not_found: u64,
    pub min_ttl_drop: u64,
}

impl KernelDrops {
    /// Segments dropped for their TCP-MD5 signature (or its absence).
    pub fn md5_total(&self) -> u64 {
        self.md5_failure + self.md5_unexpected + self.md5_not_found
    }
}

/// Reads `KernelDrops` from /proc/net/netstat (the namespace of the
/// calling process); None when the file or the counters are missing.
pub fn kernel_drops() -> Option<KernelDrops> {
    parse_kernel_drops(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// Parses the `TcpExt:` header and value lines of /proc/net/netstat.
pub fn parse_kernel_drops(text: &str) -> Option<KernelDrops> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let get = |n: &str| -> Option<u64> {
        let i = names.iter().position(|x| *x == n)?;
        values.get(i)?.parse().ok()
    };
    Some(KernelDrops {
        md5_failure: get("TCPMD5Failure")?,
        md5_unexpected: get("TCPMD5Unexpected")?,
        md5_not_found: get("TCPMD5NotFound")?,
        min_ttl_drop: get("TCPMinTTLDrop").unwrap_or(0),
    })
}

/// What a neighbor without a session should be told about its security
/// settings: with TCP-MD5 or GTSM a mismatch drops segments silently, so
/// the only symptoms are connect timeouts and the kernel's counters
/// (`drops`: this namespace's, not per peer). None when there is nothing
/// to say (established, or no sign of a mismatch).
pub fn diagnose(
    established: bool,
    tcp_md5: bool,
    ttl_security: bool,
    connect_timeouts: u32,
    drops: Option<&KernelDrops>,
) -> Option<String> {
    if established {
        return None;
    }
    let d = drops.copied().unwrap_or_default();
    let timeouts = match connect_timeouts {
        0 => None,
        1 => Some("connect timed out once".to_string()),
        n => Some(format!("connect timed out {n} times in a row")),
    };
    let md5_counts = format!(
        "the kernel here dropped TCPMD5Failure {} (wrong signature), TCPMD5NotFound {} (unsigned), TCPMD5Unexpected {} (signed, no key here)",
        d.md5_failure, d.md5_not_found, d.md5_unexpected
    );
    let mut parts = Vec::new();
    if tcp_md5 && (timeouts.is_some() || d.md5_failure + d.md5_not_found > 0) {
        parts.push(format!(
            "{}TCP-MD5 is configured: a key mismatch (or a key on one side only) makes the kernel drop every segment silently; check `password` here and at the peer; {md5_counts}",
            timeouts.as_ref().map(|t| format!("{t}; ")).unwrap_or_default()
        ));
    } else if !tcp_md5 && d.md5_unexpected > 0 && timeouts.is_some() {
        parts.push(format!(
            "{}; no TCP-MD5 password is configured for this neighbor, but {md5_counts}: the peer may have a password set",
            timeouts.as_deref().unwrap_or_default()
        ));
    }
    // A GTSM mismatch after the handshake (the peer's SYN-ACK had TTL 255,
    // its OPEN not) leaves the session in OpenSent: the drop counter tells.
    if ttl_security && (timeouts.is_some() || d.min_ttl_drop > 0) {
        parts.push(format!(
            "{}GTSM (ttl_security) is configured: segments arriving with TTL below {GTSM_MIN_TTL} are dropped silently (a peer without GTSM, or more than one hop away); TCPMinTTLDrop {}",
            if parts.is_empty() { timeouts.map(|t| format!("{t}; ")).unwrap_or_default() } else { String::new() },
            d.min_ttl_drop
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn netstat_counters_are_found_by_name() {
        let text = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure X\n\
                    TcpExt: 0 3 4 5 9\n\
                    IpExt: InNoRoutes\nIpExt: 1\n";
        assert_eq!(
            parse_kernel_drops(text),
            Some(KernelDrops {
                md5_failure: 5,
                md5_unexpected: 4,
                md5_not_found: 3,
                min_ttl_drop: 0,
            })
        );
        assert_eq!(parse_kernel_drops("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(parse_kernel_drops("TcpExt: A\nTcpExt: 1\n"), None);
        // This kernel's own file parses.
        assert!(kernel_drops().is_some());
    }

    #[test]
    fn diagnosis_names_the_likely_cause() {
        let drops = KernelDrops {
            md5_failure: 7,
            ..Default::default()
        };
        let d = diagnose(false, true, false, 3, Some(&drops)).unwrap();
        assert!(
            d.starts_with(
                "connect timed out 3 times in a row; TCP-MD5 is configured: a key mismatch"
            ),
            "{d}"
        );
        assert!(d.contains("TCPMD5Failure 7"), "{d}");
        // A passive neighbor: no timeouts of ours, the kernel's drops.
        let d = diagnose(false, true, false, 0, Some(&drops)).unwrap();
        assert!(d.starts_with("TCP-MD5 is configured"), "{d}");
        // Established, or no sign of a mismatch: nothing.
        assert_eq!(diagnose(true, true, true, 3, Some(&drops)), None);
        assert_eq!(diagnose(false, true, false, 0, None), None);
        assert_eq!(diagnose(false, false, false, 4, Some(&drops)), None);
        // No key here, signed segments arriving.
        let signed = KernelDrops {
            md5_unexpected: 2,
            ..Default::default()
        };
        let d = diagnose(false, false, false, 1, Some(&signed)).unwrap();
        assert!(
            d.contains("no TCP-MD5 password is configured") && d.contains("TCPMD5Unexpected 2"),
            "{d}"
        );
        let d = diagnose(false, false, true, 2, None).unwrap();
        assert!(
            d.starts_with("connect timed out 2 times in a row; GTSM"),
            "{d}"
        );
        let ttl = KernelDrops {
            min_ttl_drop: 3,
            ..Default::default()
        };
        let d = diagnose(false, false, true, 0, Some(&ttl)).unwrap();
        assert!(
            d.starts_with("GTSM") && d.contains("TCPMinTTLDrop 3"),
            "{d}"
        );
        assert_eq!(diagnose(false, false, false, 0, Some(&ttl)), None);
    }

    #[test]
    fn keys_and_gtsm_go_on_real_sockets() {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_md5_key(l4.as_raw_fd(), "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        // An IPv4 peer on an IPv6 socket takes the mapped address.
        if let Ok(l6) = std::net::TcpListener::bind("[::]:0") {
            set_md5_key(l6.as_raw_fd(), "10.0.0.1".parse().unwrap(), b"secret").unwrap();
            set_md5_key(l6.as_raw_fd(), "2001:db8::1".parse().unwrap(), b"secret").unwrap();
            set_gtsm(l6.as_raw_fd()).unwrap();
        }
        let e = set_md5_key(l4.as_raw_fd(), "127.0.0.2".parse().unwrap(), &[b'k'; 81]).unwrap_err();
        assert!(e.to_string().contains("at most 80"), "{e}");
        set_gtsm(l4.as_raw_fd()).unwrap();
        let ttl: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one int into `ttl`.
        let rc = unsafe {
            libc::getsockopt(
                l4.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MINTTL,
                &ttl as *const _ as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!((rc, ttl), (0, 254));
    }

    #[tokio::test]
    async fn same_key_connects_and_a_wrong_key_is_dropped_silently() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_md5_key(l.as_raw_fd(), "127.0.0.1".parse().unwrap(), b"right").unwrap();
        let addr = l.local_addr().unwrap();
        let dial = |key: &'static [u8]| async move {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            let sec = SessionSecurity {
                md5_key: Some(key.to_vec()),
                ttl_security: false,
            };
            sec.apply_outgoing(s.as_raw_fd(), addr).unwrap();
            tokio::time::timeout(std::time::Duration::from_millis(1500), s.connect(addr)).await
        };
        assert!(matches!(dial(b"right").await, Ok(Ok(_))));
        // The listener's kernel drops the badly signed SYN: no RST, a timeout.
        assert!(dial(b"wrong").await.is_err());
    }
}
