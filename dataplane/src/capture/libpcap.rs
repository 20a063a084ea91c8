//! Capture filters compiled by libpcap: `pcap_compile` on a dead handle
//! (`pcap_open_dead`) for the observation point's link type turns the
//! filter text (tcpdump syntax) into classic BPF instructions, which the
//! polling cores run with `bpf::Program`. Only the admin side calls this.
//! `offline_filter` (libpcap's own interpreter) is the reference the
//! interpreter is tested against.

use super::bpf::{BpfError, Insn, Program};
use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::sync::Mutex;

/// Link types of `pcap_open_dead` (DLT_*, as on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dlt {
    /// Ethernet frames (port observation points).
    Ethernet,
    /// Raw IPv4 packets, no link-layer header (tunnel observation points).
    Raw,
}

impl Dlt {
    fn dlt(self) -> c_int {
        match self {
            Dlt::Ethernet => 1, // DLT_EN10MB
            Dlt::Raw => 12,     // DLT_RAW on Linux
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dlt::Ethernet => "Ethernet",
            Dlt::Raw => "raw IPv4",
        }
    }
}

#[repr(C)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut BpfInsn,
}

#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

#[link(name = "pcap")]
extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut PcapT;
    fn pcap_compile(
        p: *mut PcapT,
        fp: *mut BpfProgram,
        s: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut PcapT) -> *const c_char;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_close(p: *mut PcapT);
    fn pcap_offline_filter(fp: *const BpfProgram, h: *const PcapPkthdr, pkt: *const u8) -> c_int;
}

/// `PCAP_NETMASK_UNKNOWN`: broadcast tests in filters are refused.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

/// libpcap releases before 1.8 were not thread-safe in `pcap_compile`;
/// compiles are rare (one per capture), so they take turns.
static COMPILE: Mutex<()> = Mutex::new(());

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter {filter:?} does not compile for {link} packets: {message}")]
    Compile {
        filter: String,
        link: &'static str,
        message: String,
    },
    #[error("filter {filter:?} contains a NUL byte")]
    Nul { filter: String },
    #[error("filter {filter:?}: libpcap could not open a dead handle")]
    NoHandle { filter: String },
    #[error("filter {filter:?}: {source}")]
    Program {
        filter: String,
        #[source]
        source: BpfError,
    },
}

/// A compiled program owned by libpcap, freed on drop.
struct Compiled {
    handle: *mut PcapT,
    prog: BpfProgram,
}

impl Compiled {
    fn new(filter: &str, link: Dlt, snaplen: u32) -> Result<Self, FilterError> {
        let text = CString::new(filter).map_err(|_| FilterError::Nul {
            filter: filter.into(),
        })?;
        let _turn = COMPILE.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: plain libpcap call; a null return is handled below.
        let handle = unsafe { pcap_open_dead(link.dlt(), snaplen.min(262_144) as c_int) };
        if handle.is_null() {
            return Err(FilterError::NoHandle {
                filter: filter.into(),
            });
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: `handle` is a live pcap_t, `prog` a writable bpf_program and
        // `text` a NUL-terminated string that outlives the call.
        let rc = unsafe { pcap_compile(handle, &mut prog, text.as_ptr(), 1, NETMASK_UNKNOWN) };
        if rc != 0 {
            // SAFETY: pcap_geterr returns the handle's NUL-terminated error
            // buffer, valid until the handle is closed (below, after the copy).
            let message = unsafe { CStr::from_ptr(pcap_geterr(handle)) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: `handle` came from pcap_open_dead and is closed once.
            unsafe { pcap_close(handle) };
            return Err(FilterError::Compile {
                filter: filter.into(),
                link: link.name(),
                message,
            });
        }
        Ok(Compiled { handle, prog })
    }

    fn insns(&self) -> Vec<Insn> {
        if self.prog.bf_insns.is_null() {
            return Vec::new();
        }
        // SAFETY: after a successful pcap_compile, bf_insns points to bf_len
        // instructions owned by `self.prog` until pcap_freecode (in drop).
        let raw =
            unsafe { std::slice::from_raw_parts(self.prog.bf_insns, self.prog.bf_len as usize) };
        raw.iter()
            .map(|i| Insn {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect()
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        // SAFETY: the program and handle were produced by pcap_compile and
        // pcap_open_dead and are released exactly once, here.
        unsafe {
            pcap_freecode(&mut self.prog);
            pcap_close(self.handle);
        }
    }
}

/// Compiles `filter` for packets of link type `link`. An empty filter
/// matches every packet.
pub fn compile(filter: &str, link: Dlt, snaplen: u32) -> Result<Program, FilterError> {
    let insns = Compiled::new(filter, link, snaplen)?.insns();
    Program::new(insns).map_err(|source| FilterError::Program {
        filter: filter.into(),
        source,
    })
}

/// libpcap's own verdict on a packet (`pcap_offline_filter`): the reference
/// the interpreter is checked against in tests.
pub fn offline_filter(
    filter: &str,
    link: Dlt,
    pkt: &[u8],
    wire_len: u32,
) -> Result<bool, FilterError> {
    let c = Compiled::new(filter, link, 65535)?;
    let hdr = PcapPkthdr {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: pkt.len() as u32,
        len: wire_len,
    };
    // SAFETY: the program is live for the call, `hdr.caplen` bytes are
    // readable at `pkt`.
    Ok(unsafe { pcap_offline_filter(&c.prog, &hdr, pkt.as_ptr()) } != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 packet (no link-layer header): `proto` with ports at the
    /// start of the payload, `flags_frag` as the header's word 6.
    fn ipv4(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        ports: (u16, u16),
        flags_frag: u16,
        payload: usize,
    ) -> Vec<u8> {
        let total = 20 + 20 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&ports.0.to_be_bytes());
        p[22..24].copy_from_slice(&ports.1.to_be_bytes());
        if proto == 6 {
            p[32] = 0x50;
            p[33] = 0x02; // SYN
        }
        p
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn packets() -> Vec<Vec<u8>> {
        let w = [10, 77, 60, 10];
        let x = [10, 77, 60, 11];
        let t1 = [100, 64, 10, 1];
        let t2 = [100, 64, 11, 1];
        let mut raw = vec![
            ipv4(w, x, 6, (40000, 80), 0x4000, 0),
            ipv4(x, w, 6, (80, 40000), 0x4000, 100),
            ipv4(w, x, 17, (5353, 53), 0, 10),
            ipv4(t1, t2, 17, (41000, 51820), 0, 148),
            ipv4(t1, t2, 47, (0, 0x0800), 0, 64),
            ipv4(t1, t2, 4, (0, 0), 0, 40),
            ipv4(w, x, 1, (0x0800, 0), 0, 56),
            ipv4(w, x, 17, (1500, 1999), 0x2000, 300), // first fragment
            ipv4(w, x, 17, (1500, 1999), 0x00b9, 300), // later fragment
            ipv4([192, 168, 1, 1], [255, 255, 255, 255], 17, (68, 67), 0, 200),
        ];
        let mut frames: Vec<Vec<u8>> = raw.iter().map(|p| eth(0x0800, p)).collect();
        frames.push(eth(
            0x0806,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 10, 77, 60, 1, 0, 0, 0, 0, 0, 0, 10, 77,
                60, 10,
            ],
        ));
        frames.push(eth(0x86dd, &[0x60; 40]));
        let mut vlan = vec![0, 100, 0x08, 0x00];
        vlan.extend_from_slice(&raw[0]);
        frames.push(eth(0x8100, &vlan));
        // Truncated: the loads past the end reject.
        frames.push(eth(0x0800, &raw[0][..10]));
        raw.push(raw[2][..12].to_vec());
        let mut all = frames;
        all.extend(raw);
        all
    }

    const FILTERS: &[&str] = &[
        "",
        "host 10.77.60.10",
        "src host 10.77.60.11 and dst host 10.77.60.10",
        "tcp port 80",
        "tcp[tcpflags] & tcp-syn != 0",
        "udp and dst port 51820",
        "udp portrange 1000-2000",
        "icmp",
        "arp",
        "ip6",
        "vlan",
        "proto gre or proto 4",
        "net 100.64.0.0/10 and not udp",
        "ip[6:2] & 0x1fff != 0",
        "greater 200",
        "less 80",
        "ether host 02:00:00:00:00:01",
        "ip[8] = 64 and len > 60",
        "ip broadcast or dst host 255.255.255.255",
        "udp[8:2] = 0 or tcp[13] = 2",
    ];

    /// The interpreter agrees with libpcap's `pcap_offline_filter` on every
    /// filter x packet, for Ethernet and raw IPv4 link types.
    #[test]
    fn interpreter_agrees_with_libpcap() {
        let pkts = packets();
        let mut compared = 0;
        for link in [Dlt::Ethernet, Dlt::Raw] {
            for f in FILTERS {
                let prog = match compile(f, link, 65535) {
                    Ok(p) => p,
                    // Some filters mean nothing on one link type (`arp`,
                    // `vlan`, `ether host` on raw IPv4): libpcap refuses both.
                    Err(FilterError::Compile { .. }) => {
                        assert!(offline_filter(f, link, &[], 0).is_err());
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                };
                for (i, p) in pkts.iter().enumerate() {
                    for caplen in [p.len(), p.len().min(34)] {
                        let ours = prog.matches(&p[..caplen], p.len() as u32);
                        let theirs = offline_filter(f, link, &p[..caplen], p.len() as u32).unwrap();
                        assert_eq!(
                            ours, theirs,
                            "filter {f:?} {link:?} packet {i} caplen {caplen}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 600, "{compared}");
    }

    #[test]
    fn a_bad_filter_names_itself_and_libpcaps_reason() {
        let e = compile("host 10.77.60.999", Dlt::Ethernet, 2048).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"host 10.77.60.999\""), "{text}");
        assert!(
            text.contains("does not compile for Ethernet packets"),
            "{text}"
        );
        let e = compile("tcp port http and", Dlt::Raw, 2048).unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
        assert!(matches!(
            compile("a\0b", Dlt::Raw, 2048),
            Err(FilterError::Nul { .. })
        ));
    }
}
