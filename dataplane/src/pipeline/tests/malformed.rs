//! Malformed input: every broken frame has a named drop reason, chained
//! buffers are dropped, and random garbage never panics.

use super::*;

#[test]
fn every_malformed_input_has_a_named_drop() {
    let mut r = Rig::new(false);
    let good = ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 16);
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..10].to_vec(), DropReason::EthTruncated),
        (
            ping([2, 9, 9, 9, 9, 9], "10.1.0.10", "10.1.0.1", 64, 16),
            DropReason::L2OtherHost,
        ),
        (
            ping([1, 0, 0x5e, 0, 0, 1], "10.1.0.10", "10.1.0.1", 64, 16),
            DropReason::L2Multicast,
        ),
        (good[..30].to_vec(), DropReason::Ipv4Truncated),
    ];
    let mut other = good.clone();
    other[12] = 0x88;
    other[13] = 0xcc;
    cases.push((other, DropReason::UnsupportedEthertype));
    let mut v6 = good.clone();
    v6[12] = 0x86;
    v6[13] = 0xdd;
    cases.push((v6, DropReason::Ipv6Malformed));
    let mut bad_arp = arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1");
    bad_arp[14 + 4] = 8;
    cases.push((bad_arp, DropReason::ArpMalformed));
    cases.push((
        arp_request(HOST_MAC, "10.1.0.10", "10.1.0.1")[..30].to_vec(),
        DropReason::ArpMalformed,
    ));
    let mut bc_arp = arp_request([0xff; 6], "10.1.0.10", "10.1.0.1");
    bc_arp[6..12].copy_from_slice(&HOST_MAC);
    cases.push((bc_arp, DropReason::ArpMalformed));
    let mut ver = good.clone();
    ver[14] = 0x65;
    cases.push((ver, DropReason::Ipv4BadVersion));
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    cases.push((ihl, DropReason::Ipv4BadIhl));
    let mut len = good.clone();
    len[16] = 0;
    len[17] = 10;
    cases.push((len, DropReason::Ipv4BadLength));
    let mut long = good.clone();
    long[16] = 0x05;
    long[17] = 0xdc;
    cases.push((long, DropReason::Ipv4Truncated));
    let mut csum = good.clone();
    csum[14 + 10] ^= 0xff;
    cases.push((csum, DropReason::Ipv4BadChecksum));
    cases.push((
        ping(LAN_MAC, "127.0.0.1", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "224.0.0.1", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "0.0.0.0", "10.1.0.1", 64, 8),
        DropReason::Ipv4MartianSource,
    ));
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "10.1.0.255", 64, 8),
        DropReason::Ipv4NotRoutable,
    ));
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "239.1.1.1", 64, 8),
        DropReason::Ipv4NotRoutable,
    ));
    // A giant over the LAN MTU (9000) is not forwarded, whatever it carries.
    cases.push((
        ping(LAN_MAC, "10.1.0.10", "10.2.0.20", 64, 9100),
        DropReason::Oversized,
    ));
    for (frame, reason) in cases {
        let before = r.drops(reason);
        r.run(LAN, &frame);
        assert_eq!(
            r.drops(reason),
            before + 1,
            "{}: {:02x?}",
            reason.name(),
            &frame[..frame.len().min(40)]
        );
        assert!(r.nothing_sent(), "{} sent something", reason.name());
    }
}

#[test]
fn chained_buffers_are_dropped() {
    let mut r = Rig::new(false);
    let mut b = MemBuf::from_frame(&ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 64, 8));
    b.chained = true;
    r.io.rx[LAN].push_back(b);
    r.worker.poll(&mut r.io);
    assert_eq!(r.drops(DropReason::MultiSegment), 1);
    assert!(r.nothing_sent());
}

#[test]
fn random_garbage_never_panics() {
    let mut r = Rig::new(true);
    r.neighbor("lan", "10.1.0.10", HOST_MAC);
    r.change(FibChange::ProxyArpSet {
        ip: "10.1.0.77".parse().unwrap(),
    });
    r.change(FibChange::ProxyArpActive { active: true });
    let seeds = [
        ping(LAN_MAC, "10.1.0.10", "192.0.2.1", 64, 64),
        ping(LAN_MAC, "10.1.0.10", "10.1.0.1", 2, 64),
        arp_request(HOST_MAC, "10.1.0.10", "10.1.0.77"),
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..30_000 {
        let mut f = seeds[i % seeds.len()].clone();
        for _ in 0..(rnd() % 6) {
            let at = (rnd() as usize) % f.len();
            f[at] = rnd() as u8;
        }
        let cut = (rnd() as usize) % (f.len() + 1);
        f.truncate(cut.max(f.len() * 3 / 4));
        r.io.inject((rnd() % 3) as usize, &f);
        if i % 32 == 0 {
            r.worker.poll(&mut r.io);
            for p in 0..3 {
                r.io.tx[p].clear();
            }
            r.publish();
            while r.io.pool.len() < 16 {
                r.io.pool.push(MemBuf::new());
            }
        }
    }
    r.worker.poll(&mut r.io);
    assert!(r.stats.total_drops() > 0);
}
