//! Frames the kernel drops in front of `net_af_packet` ports: when the PMD's
//! receive ring is full, the kernel discards the frame and counts it only in
//! the packet socket's `PACKET_STATISTICS` (DPDK 22.11's PMD does not read
//! it, so `imissed` stays 0 and the loss was invisible). Read off the polling
//! path, by the link-watch thread, and summed per port.
//!
//! `PACKET_STATISTICS` resets the socket's counters when read: this module
//! is their only reader in the process, and it accumulates.

use std::os::fd::RawFd;

/// The af_packet sockets of one port (all its queues), found by interface.
#[derive(Debug, Default)]
pub struct PacketRing {
    fds: Vec<RawFd>,
    /// Frames dropped since start (all queues).
    pub drops: u64,
}

impl PacketRing {
    /// The sockets on `iface` among `socks` (`wake::bound_sockets`, read
    /// once by the caller after the ports started: the PMD opens them at
    /// probe). None found: the port's ring drops cannot be read (logged).
    pub fn new(iface: &str, socks: &[(RawFd, i32, u32, u32)]) -> Self {
        let ifi = crate::wake::ifindex(iface);
        let fds: Vec<RawFd> = socks
            .iter()
            .filter(|&&(_, family, i, _)| family == libc::AF_PACKET && i == ifi && ifi != 0)
            .map(|&(fd, ..)| fd)
            .collect();
        if fds.is_empty() {
            log::warn!("af_packet port on {iface}: no packet socket found; its kernel ring drops are not counted");
        }
        PacketRing { fds, drops: 0 }
    }

    /// Reads and accumulates the sockets' counters.
    pub fn poll(&mut self) {
        for &fd in &self.fds {
            if let Some(drops) = read_drops(fd) {
                self.drops += drops;
            }
        }
    }
}

/// `getsockopt(SOL_PACKET, PACKET_STATISTICS)`: frames dropped since the
/// last read. TPACKET_V2 sockets fill a `struct tpacket_stats`.
fn read_drops(fd: RawFd) -> Option<u64> {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: st/len describe a live buffer of the size the kernel fills for
    // TPACKET_V2; a closed or non-packet fd makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(u64::from(st.tp_drops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_without_sockets_reads_nothing() {
        let mut r = PacketRing::new("no-such-iface0", &crate::wake::bound_sockets());
        r.poll();
        assert_eq!(r.drops, 0);
        assert!(read_drops(-1).is_none());
    }
}
