//! Acceptance suite of issue 7 on the four-site lab (`scripts/lab`): across
//! site pairs so that every transport is covered - ping; no NAT proven by
//! captures at the inner (workload) and outer (WAN) observation points; FTP
//! active and passive; NFS v3; RPC (rpcinfo); 100 MB bulk with sha256; DF and
//! no-DF PMTU probes around each tunnel MTU; the TCP MSS the far end sees.
//! `protocol_peers_on_a_veth_pair` checks the peers themselves without the lab.

use anyhow::Result;
use cer_e2e::apps::*;
use cer_e2e::*;
use std::time::{Duration, Instant};

/// The protocol peers work between two plain namespaces (no CER): a failure
/// here is the harness, not the product.
#[test]
fn protocol_peers_on_a_veth_pair() -> Result<()> {
    require_root();
    let t0 = Instant::now();
    let scratch = Scratch::new("apps")?;
    let dir = &scratch.path;
    let a = Netns::new("pa")?;
    let b = Netns::new("pb")?;
    veth("eth0", &a, "eth0", &b)?;
    a.addr("eth0", "10.9.0.1/24")?;
    b.addr("eth0", "10.9.0.2/24")?;
    let (ca, cb) = ("10.9.0.1", "10.9.0.2");

    // FTP both modes; the server log shows the client address it saw.
    let ftp = Ftp::start(&b.name, dir, cb)?;
    let src = ftp.root.join("f.bin");
    random_file(&src, 300_000)?;
    for mode in [FtpMode::Passive, FtpMode::Active] {
        let got = scratch.file(&format!("ftp-{mode:?}.bin"));
        ftp_get(&a.name, ca, cb, "f.bin", mode, &got)?;
        assert_eq!(sha256_file(&got)?, sha256_file(&src)?, "ftp {mode:?}");
    }
    let log = ftp.log_text();
    assert!(log.contains(&format!("CONNECT: Client \"{ca}\"")), "{log}");
    assert!(
        log.contains("PORT 10,9,0,1,"),
        "active mode used PORT: {log}"
    );
    assert!(
        log.contains("227 Entering Passive Mode (10,9,0,2,"),
        "{log}"
    );

    // NFS v3 both ways, RPC registrations.
    let nfs = Nfs::start(&b.name, dir, cb)?;
    let progs = rpcinfo(&a.name, cb)?;
    for (p, svc) in [(100000, "portmapper"), (100003, "nfs"), (100005, "mountd")] {
        assert!(
            progs.iter().any(|r| r.program == p && r.proto == "tcp"),
            "rpcinfo -p {cb}: no {svc}: {progs:?}"
        );
    }
    let up = scratch.file("up.bin");
    random_file(&up, 200_000)?;
    nfs_cp(&a.name, up.to_str().unwrap(), &nfs.url("up.bin"))?;
    assert_eq!(sha256_file(&nfs.export.join("up.bin"))?, sha256_file(&up)?);
    let down = scratch.file("down.bin");
    nfs_cp(&a.name, &nfs.url("up.bin"), down.to_str().unwrap())?;
    assert_eq!(sha256_file(&down)?, sha256_file(&up)?);
    drop(nfs);

    // Bulk: iperf3, the sha256 TCP transfer and an nc file copy; SYN MSS captured.
    let mut cap = Capture::start(&b.name, "eth0", "tcp", dir, "syn")?;
    let ip = iperf3(&a.name, ca, &b.name, cb, 5 << 20, dir)?;
    assert!(
        ip.bytes_sent >= 5 << 20 && ip.bytes_received > 4 << 20,
        "{ip:?}"
    );
    let bulk = bulk_sha256(&a.name, &b.name, cb, 7001, 5 << 20, dir)?;
    assert!(
        bulk.receiver_mss > 0 && bulk.receiver_mss <= 1460,
        "{bulk:?}"
    );
    let f = scratch.file("nc.bin");
    random_file(&f, 1 << 20)?;
    let got = scratch.file("nc-got.bin");
    nc_file(&a.name, ca, 7002, &f, &b.name, &got, dir)?;
    assert_eq!(sha256_file(&got)?, sha256_file(&f)?);
    let pcap = cap.stop();
    let syns = syn_mss(&pcap)?;
    assert!(
        syns.iter()
            .any(|(s, d, ack, mss)| s == ca && d == cb && !ack && *mss == 1460),
        "SYN MSS at the far end: {syns:?}"
    );

    // The probe sees a cut link as an outage.
    let probe = Probe::start(&a.name, cb, Duration::from_millis(50), dir)?;
    probe.wait_replies(5, Duration::from_secs(5))?;
    b.run(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])?;
    std::thread::sleep(Duration::from_millis(500));
    b.run(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"])?;
    probe.wait_replies(25, Duration::from_secs(10))?;
    let o = probe.stop();
    eprintln!("probe across 500 ms of unanswered echoes: {o}");
    assert!(
        o.recovered && o.longest_gap_ms >= 300 && o.longest_gap_ms < 3000,
        "{o}"
    );
    eprintln!(
        "protocol peers self-test: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
