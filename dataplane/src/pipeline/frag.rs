//! IPv4 fragmentation (DF clear) to a port's or a tunnel's MTU: every
//! fragment is a fresh buffer; non-first fragments carry only the options
//! with the copied flag (RFC 791).

use super::{Meta, Worker};
use crate::counters::{DropReason, Event};
use crate::packet::{PacketBuf, PortIo};
use crate::snapshot::Snapshot;
use crate::tunnel::TunnelInfo;
use crate::wire::ipv4::{self, Packet as Ipv4Packet};
use crate::wire::{self, ethernet::Frame as EthernetFrame};

/// Where fragments go.
#[derive(Clone, Copy)]
pub(super) enum FragSink {
    Port {
        out: usize,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    },
    Tunnel(TunnelInfo),
}

impl<B: PacketBuf> Worker<B> {
    /// Fragments an IPv4 packet (DF clear, `m.ihl`-byte header) to `mtu`
    /// and sends every fragment.
    pub(super) fn fragment<I: PortIo<Buf = B>>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        m: Meta,
        sink: FragSink,
        buf: B,
        mtu: usize,
    ) {
        let ihl = m.ihl();
        let h = &buf.data()[wire::ETH_LEN..];
        let ip = Ipv4Packet::new_unchecked(h);
        let payload = &h[ihl..];
        let base_off = ip.frag_offset();
        let orig_mf = ip.more_frags();
        // Options for non-first fragments: only those with the copied bit.
        let mut later_opts = [0u8; 40];
        let later_len = copied_options(&h[wire::IPV4_MIN..ihl], &mut later_opts);
        let mut sent = 0u64;
        let mut off = 0usize;
        let mut first = true;
        while off < payload.len() {
            let hlen = if first {
                ihl
            } else {
                wire::IPV4_MIN + later_len
            };
            let room = (mtu - hlen) & !7;
            if room == 0 {
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            }
            let chunk = room.min(payload.len() - off);
            let last = off + chunk == payload.len();
            let Some(mut f) = io.alloc() else {
                self.links.stats.dropped(DropReason::NoMbuf);
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            };
            let flen = wire::ETH_LEN + hlen + chunk;
            if !f.append(flen) {
                self.links.stats.dropped(DropReason::FragFailed);
                return;
            }
            let mut frame = EthernetFrame::new_unchecked(f.data_mut());
            if let FragSink::Port {
                dst_mac, src_mac, ..
            } = &sink
            {
                frame.set_dst_addr(dst_mac);
                frame.set_src_addr(src_mac);
                frame.set_ethertype(wire::ETHERTYPE_IPV4);
            }
            let fh = frame.payload_mut();
            fh[..wire::IPV4_MIN].copy_from_slice(&h[..wire::IPV4_MIN]);
            if first {
                fh[wire::IPV4_MIN..ihl].copy_from_slice(&h[wire::IPV4_MIN..ihl]);
            } else {
                fh[wire::IPV4_MIN..hlen].copy_from_slice(&later_opts[..later_len]);
            }
            let mut frag = Ipv4Packet::new_unchecked(fh);
            frag.set_header_len(hlen);
            frag.set_total_len((hlen + chunk) as u16);
            let mf = if last && !orig_mf { 0 } else { ipv4::MF };
            // DF is clear on fragments (set only when a tunnel forces fragmentation).
            frag.set_flags_frag(mf | (((base_off + off) / 8) as u16 & ipv4::OFFSET_MASK));
            if m.forwarded {
                frag.set_ttl(frag.ttl() - 1);
            }
            frag.fill_checksum();
            frag.payload_mut()[..chunk].copy_from_slice(&payload[off..off + chunk]);
            match sink {
                FragSink::Port { out, .. } => self.enqueue(io, out, f),
                FragSink::Tunnel(t) => self.encap_send(io, snap, m, &t, f),
            }
            sent += 1;
            off += chunk;
            first = false;
        }
        self.links.stats.event(Event::Fragmented);
        self.links.stats.event_n(Event::FragmentsSent, sent);
        drop(buf);
    }
}

/// Copies the IPv4 options that must appear in every fragment (copied flag
/// set, RFC 791) into `out`, padded to a multiple of 4; returns the length.
fn copied_options(opts: &[u8], out: &mut [u8; 40]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        let t = opts[i];
        match t {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&l) = opts.get(i + 1) else { break };
                let l = usize::from(l);
                if l < 2 || i + l > opts.len() {
                    break;
                }
                if t & 0x80 != 0 && n + l <= out.len() {
                    out[n..n + l].copy_from_slice(&opts[i..i + l]);
                    n += l;
                }
                i += l;
            }
        }
    }
    while n % 4 != 0 {
        out[n] = 0;
        n += 1;
    }
    n
}
