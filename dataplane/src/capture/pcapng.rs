//! The pcapng byte stream of a capture (on `pcap-file`'s writer): a section
//! header, one interface description per observation point (if_name like
//! `port lan rx`, Ethernet or raw IPv4, nanosecond timestamps), then one
//! enhanced packet block per packet with its direction. Bytes accumulate in
//! memory and are taken in whole blocks, so every prefix sent is a valid file.

use super::libpcap::Dlt;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::time::Duration;

/// epb_flags direction bits (pcapng: 01 inbound, 10 outbound).
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

/// A pcapng stream being built.
pub struct PcapngStream {
    w: PcapNgWriter<Vec<u8>>,
}

impl PcapngStream {
    /// The section header and one interface per `(if_name, link type)`.
    pub fn new(interfaces: &[(String, Dlt)], snaplen: u32) -> Result<Self, pcap_file::PcapError> {
        let mut w = PcapNgWriter::new(Vec::with_capacity(64 << 10))?;
        for (name, link) in interfaces {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: match link {
                    Dlt::Ethernet => DataLink::ETHERNET,
                    Dlt::Raw => DataLink::RAW,
                },
                snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })?;
        }
        Ok(PcapngStream { w })
    }

    /// One packet on interface `if_id` at wall-clock time `ts` (since the epoch).
    pub fn packet(
        &mut self,
        if_id: u32,
        ts: Duration,
        orig_len: u32,
        data: &[u8],
        inbound: bool,
    ) -> Result<(), pcap_file::PcapError> {
        self.w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: if_id,
            timestamp: ts,
            original_len: orig_len,
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Flags(if inbound {
                EPB_INBOUND
            } else {
                EPB_OUTBOUND
            })],
        })?;
        Ok(())
    }

    /// Bytes written so far and not yet taken.
    pub fn pending(&self) -> usize {
        self.w.get_ref().len()
    }

    /// Takes the bytes written so far (whole blocks).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.w.get_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn blocks_read_back() {
        let mut s = PcapngStream::new(
            &[
                ("port lan rx".into(), Dlt::Ethernet),
                ("tunnel 3 inner".into(), Dlt::Raw),
            ],
            128,
        )
        .unwrap();
        let head = s.take();
        s.packet(
            1,
            Duration::new(1_700_000_000, 123_456_789),
            84,
            &[0x45; 20],
            true,
        )
        .unwrap();
        s.packet(0, Duration::new(1_700_000_001, 5), 60, &[0xaa; 60], false)
            .unwrap();
        let mut all = head;
        all.extend(s.take());
        let mut r = PcapNgReader::new(&all[..]).unwrap();
        let mut ifs = vec![];
        let mut pkts = vec![];
        while let Some(b) = r.next_block() {
            match b.unwrap().into_owned() {
                Block::InterfaceDescription(i) => ifs.push((i.linktype, i.options.clone())),
                Block::EnhancedPacket(p) => pkts.push((
                    p.interface_id,
                    p.timestamp,
                    p.original_len,
                    p.data.len(),
                    p.options.clone(),
                )),
                _ => {}
            }
        }
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[0].0, DataLink::ETHERNET);
        assert_eq!(ifs[1].0, DataLink::RAW);
        assert!(ifs[0]
            .1
            .iter()
            .any(|o| matches!(o, InterfaceDescriptionOption::IfName(n) if n == "port lan rx")));
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].0, 1);
        assert_eq!(pkts[0].1, Duration::new(1_700_000_000, 123_456_789));
        assert_eq!((pkts[0].2, pkts[0].3), (84, 20));
        assert_eq!(pkts[0].4, vec![EnhancedPacketOption::Flags(EPB_INBOUND)]);
        assert_eq!(pkts[1].4, vec![EnhancedPacketOption::Flags(EPB_OUTBOUND)]);
    }
}
