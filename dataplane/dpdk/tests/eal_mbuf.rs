//! In-process EAL test of the parts that need no network: EAL once-only
//! init, lcore launch/wait (including panics), mempool accounting, mbuf
//! edits checked against DPDK's own inline helpers, and the burst API on
//! `net_ring` / `net_null` virtual ports. One test function: the EAL can be
//! initialized once per process. Needs root (DPDK memory setup).

use arrayvec::ArrayVec;
use cer_dpdk::sys;
use cer_dpdk::{
    free_bulk, launch, lcore_count, lcore_id, lcore_is_idle, main_lcore, tsc, tsc_hz, wait_lcore,
    worker_lcores, Burst, DpdkError, Eal, Mbuf, Mempool, Port, PortSetup, DEFAULT_DATA_ROOM,
    LCORE_PANICKED, PKTMBUF_HEADROOM, SOCKET_ANY,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: set is a valid, zeroed cpu_set_t of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[test]
fn eal_lcores_mempool_mbuf_and_burst_api() {
    if !is_root() {
        eprintln!("SKIPPED eal_lcores_mempool_mbuf_and_burst_api: DPDK EAL init needs root");
        return;
    }
    let cpus = allowed_cpus();
    let lcores = cpus
        .iter()
        .take(2)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<String> = [
        "eal_mbuf_test",
        "-l",
        &lcores,
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "--log-level=lib.eal:warning",
        &format!("--file-prefix=cermbuf{}", std::process::id()),
        "--vdev=net_ring0",
        "--vdev=net_null0",
        "--",
        "app-arg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    assert!(matches!(
        Mempool::new_pktmbuf("before_init", 63, 0, DEFAULT_DATA_ROOM, SOCKET_ANY),
        Err(DpdkError::EalNotRunning { .. })
    ));

    let eal = Eal::init(&args).expect("EAL init");
    assert_eq!(eal.app_args(), ["app-arg".to_string()]);
    assert!(matches!(
        Eal::init(&args),
        Err(DpdkError::AlreadyInitialized)
    ));

    check_lcores(cpus.len() >= 2);
    check_mempool_and_mbuf();
    check_ring_port();
    check_null_port();

    // A pool still used by a port is kept until teardown closes the port.
    let pool = Mempool::new_pktmbuf("late_pool", 511, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap();
    let null = Port::by_name("net_null0").unwrap();
    null.configure(&PortSetup::default(), &pool).unwrap();
    null.start().unwrap();
    drop(pool);

    let runtime_dir = cer_dpdk::runtime_dir().expect("runtime dir");
    assert!(
        runtime_dir.ends_with(format!("cermbuf{}", std::process::id())),
        "{}",
        runtime_dir.display()
    );
    eal.shutdown()
        .expect("EAL cleanup after every pool and mbuf is gone");
    assert!(
        !runtime_dir.exists(),
        "{} left behind",
        runtime_dir.display()
    );
    assert_eq!(cer_dpdk::runtime_dir(), None);
    assert!(matches!(
        Mempool::new_pktmbuf("after_cleanup", 63, 0, DEFAULT_DATA_ROOM, SOCKET_ANY),
        Err(DpdkError::EalNotRunning { .. })
    ));
    assert!(matches!(
        Eal::init(&args),
        Err(DpdkError::AlreadyInitialized)
    ));
}

fn check_lcores(two_cpus: bool) {
    assert_eq!(
        lcore_id(),
        main_lcore(),
        "the init thread is the main lcore"
    );
    assert_eq!(std::thread::spawn(lcore_id).join().unwrap(), u32::MAX);
    assert!(tsc_hz() > 1_000_000, "tsc_hz {}", tsc_hz());
    let t0 = tsc();
    assert!(tsc() >= t0);
    if !two_cpus {
        eprintln!("only one CPU allowed: skipping worker lcore checks");
        assert_eq!(lcore_count(), 1);
        return;
    }
    assert_eq!(lcore_count(), 2);
    let workers = worker_lcores();
    assert_eq!(workers.len(), 1, "{workers:?}");
    let w = workers[0];
    assert!(lcore_is_idle(w));

    // Return value and lcore id of the worker.
    launch(w, Box::new(move || lcore_id() as i32)).unwrap();
    assert_eq!(wait_lcore(w), w as i32);

    // A panic is contained and reported.
    launch(w, Box::new(|| panic!("deliberate panic on a worker lcore"))).unwrap();
    assert_eq!(wait_lcore(w), LCORE_PANICKED);

    // A busy lcore refuses a second launch, and the refused closure is dropped.
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    launch(
        w,
        Box::new(move || {
            while !r.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            7
        }),
    )
    .unwrap();
    let dropped = Arc::new(());
    let d = dropped.clone();
    let err = launch(w, Box::new(move || Arc::strong_count(&d) as i32)).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
    assert_eq!(
        Arc::strong_count(&dropped),
        1,
        "refused closure must be dropped"
    );
    release.store(true, Ordering::Release);
    assert_eq!(wait_lcore(w), 7);

    // Not a worker, and not from the main lcore.
    assert!(matches!(
        launch(main_lcore(), Box::new(|| 0)),
        Err(DpdkError::NotAWorker { .. })
    ));
    let from_other_thread = std::thread::spawn(move || launch(w, Box::new(|| 0)))
        .join()
        .unwrap();
    assert!(
        matches!(from_other_thread, Err(DpdkError::InvalidArgument { .. })),
        "{from_other_thread:?}"
    );
}

/// Compares the Rust accessors with DPDK's inline helpers (via the shim).
fn assert_matches_dpdk(m: &Mbuf) {
    let p = m.as_ptr();
    // SAFETY: p is a live mbuf owned by m for the duration of these reads.
    unsafe {
        assert_eq!(m.data().as_ptr(), sys::cer_pktmbuf_mtod(p) as *const u8);
        assert_eq!(m.len(), usize::from(sys::cer_pktmbuf_data_len(p)));
        assert_eq!(m.pkt_len(), sys::cer_pktmbuf_pkt_len(p) as usize);
        assert_eq!(m.headroom(), usize::from(sys::cer_pktmbuf_headroom(p)));
        assert_eq!(m.tailroom(), usize::from(sys::cer_pktmbuf_tailroom(p)));
        assert_eq!(m.nb_segs(), sys::cer_pktmbuf_nb_segs(p));
        assert_eq!(m.port(), sys::cer_pktmbuf_port(p));
        assert_eq!(m.ol_flags(), sys::cer_pktmbuf_ol_flags(p));
        assert_eq!(m.is_contiguous(), sys::cer_pktmbuf_is_contiguous(p) != 0);
        assert_eq!(sys::cer_pktmbuf_refcnt(p), 1);
    }
}

fn check_mempool_and_mbuf() {
    let too_long = "a_mempool_name_longer_than_dpdk_allows";
    let err = Mempool::new_pktmbuf(too_long, 63, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap_err();
    assert!(
        err.to_string().starts_with("rte_pktmbuf_pool_create(name"),
        "{err}"
    );
    assert!(err.errno().is_some(), "{err}");

    let pool = Mempool::new_pktmbuf("mbuf_test", 255, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap();
    let dup = Mempool::new_pktmbuf("mbuf_test", 255, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap_err();
    assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");
    assert_eq!(
        (pool.size(), pool.available(), pool.in_use()),
        (255, 255, 0)
    );

    let mut m = pool.alloc().unwrap();
    assert_eq!(pool.in_use(), 1);
    assert_eq!((m.len(), m.pkt_len(), m.nb_segs()), (0, 0, 1));
    assert!(m.is_empty() && m.is_contiguous());
    assert_eq!(m.headroom(), usize::from(PKTMBUF_HEADROOM));
    assert_eq!(
        m.tailroom(),
        usize::from(DEFAULT_DATA_ROOM - PKTMBUF_HEADROOM)
    );
    assert_eq!(m.rss_hash(), None);
    assert_matches_dpdk(&m);

    // Build "payload", push a 4-byte header, strip it, grow and shrink the tail.
    assert!(m.extend_from_slice(b"payload"));
    assert_eq!(m.data(), b"payload");
    assert!(m.prepend(4));
    m.data_mut()[..4].copy_from_slice(b"HDR:");
    assert_eq!(m.data(), b"HDR:payload");
    assert_eq!(m.headroom(), usize::from(PKTMBUF_HEADROOM) - 4);
    assert_matches_dpdk(&m);
    assert!(m.adj(4));
    assert_eq!(m.data(), b"payload");
    assert!(m.append(3));
    m.data_mut()[7..].copy_from_slice(b"xyz");
    assert_eq!(m.data(), b"payloadxyz");
    assert!(m.trim(3));
    assert_eq!(m.data(), b"payload");
    assert_eq!(m.pkt_len(), 7);
    assert_matches_dpdk(&m);

    // Refusals leave the mbuf unchanged.
    let headroom = m.headroom();
    assert!(!m.prepend(headroom + 1));
    assert!(!m.adj(8));
    assert!(!m.trim(8));
    assert!(!m.append(m.tailroom() + 1));
    assert!(!m.prepend(usize::from(u16::MAX) + 1));
    assert_eq!(m.data(), b"payload");
    assert_eq!(m.headroom(), headroom);
    m.prefetch_data();

    // Deep copy is independent.
    let mut c = m.deep_copy(&pool).unwrap();
    c.data_mut()[0] = b'P';
    assert_eq!(c.data(), b"Payload");
    assert_eq!(m.data(), b"payload");
    assert_eq!(pool.in_use(), 2);
    drop(c);

    // Raw round trip keeps ownership exactly once.
    let raw = m.into_raw();
    assert_eq!(pool.in_use(), 1);
    // SAFETY: raw came from into_raw just above and is used only here.
    let m = unsafe { Mbuf::from_raw(raw) };
    drop(m);
    assert_eq!(pool.in_use(), 0);

    // Bulk allocation is all-or-nothing and respects the spare capacity.
    let mut burst = Burst::new();
    assert!(pool.alloc_bulk(&mut burst, 32));
    assert_eq!((burst.len(), pool.in_use()), (32, 32));
    assert!(!pool.alloc_bulk(&mut burst, 1));
    free_bulk(&mut burst);
    assert_eq!((burst.len(), pool.in_use()), (0, 0));

    // Exhaustion.
    let mut all = Vec::new();
    while let Some(m) = pool.alloc() {
        all.push(m);
    }
    assert_eq!(all.len(), 255);
    assert_eq!(pool.available(), 0);
    let mut small: ArrayVec<Mbuf, 4> = ArrayVec::new();
    assert!(!pool.alloc_bulk(&mut small, 4));
    drop(all);
    assert_eq!(pool.available(), 255);
}

fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, tag]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, tag);
    f
}

fn check_ring_port() {
    let err = Port::by_name("net_missing9").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("net_ring0") && text.contains("net_null0"),
        "{text}"
    );
    assert_eq!(Port::count(), 2);
    assert_eq!(Port::all().len(), 2);

    let port = Port::by_name("net_ring0").unwrap();
    assert_eq!(Port::from_id(port.id()).unwrap(), port);
    assert_eq!(port.name(), "net_ring0");
    assert_eq!(port.driver_name(), "net_ring");
    assert!(port.max_rx_queues() >= 1);

    let pool = Mempool::new_pktmbuf("ring_pool", 1023, 32, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap();
    let too_many = PortSetup {
        rx_queues: port.max_rx_queues() + 1,
        ..PortSetup::default()
    };
    let err = port.configure(&too_many, &pool).unwrap_err();
    assert!(matches!(err, DpdkError::TooManyQueues { .. }), "{err}");

    let setup = PortSetup {
        rx_desc: 256,
        tx_desc: 256,
        ..PortSetup::default()
    };
    port.configure(&setup, &pool).unwrap();
    port.start().unwrap();
    assert!(port.is_started());
    assert!(port.link().up);
    let busy = port.configure(&setup, &pool).unwrap_err();
    assert_eq!(busy.errno(), Some(libc::EBUSY), "{busy}");

    // Unconfigured queues are refused without touching the driver.
    let mut burst = Burst::new();
    assert_eq!(port.rx_burst(5, &mut burst), 0);
    for i in 0..5u8 {
        let mut m = pool.alloc().unwrap();
        assert!(m.extend_from_slice(&frame(i, 60)));
        burst.push(m);
    }
    assert_eq!(port.tx_burst(5, &mut burst), 0);
    assert_eq!(burst.len(), 5);

    // net_ring loops its tx ring back to rx.
    assert_eq!(port.tx_burst(0, &mut burst), 5);
    assert!(burst.is_empty());
    let got = poll_rx(port, 0, 5);
    assert_eq!(got.len(), 5);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.data(), frame(i as u8, 60).as_slice());
    }
    drop(got);
    let stats = port.stats().unwrap();
    assert_eq!((stats.opackets, stats.ipackets), (5, 5), "{stats:?}");
    port.reset_stats().unwrap();
    assert_eq!(port.stats().unwrap().opackets, 0);

    // Stopped: bursts do nothing (and never reach the driver).
    port.stop().unwrap();
    assert!(!port.is_started());
    let mut m = pool.alloc().unwrap();
    assert!(m.extend_from_slice(&frame(9, 60)));
    burst.push(m);
    assert_eq!(port.tx_burst(0, &mut burst), 0);
    assert_eq!(burst.len(), 1);
    drop(burst);
    port.close();
    assert!(Port::by_name("net_ring0").is_err());
    assert_eq!(pool.in_use(), 0);
}

fn poll_rx(port: Port, queue: u16, want: usize) -> Vec<Mbuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        let mut burst = Burst::new();
        if port.rx_burst(queue, &mut burst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        out.extend(burst);
    }
    out
}

fn check_null_port() {
    let port = Port::by_name("net_null0").unwrap();
    assert_eq!(port.driver_name(), "net_null");
    let pool = Mempool::new_pktmbuf("null_pool", 1023, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).unwrap();

    // Several queues with RSS and an MTU the driver cannot apply itself.
    let multi = PortSetup {
        rx_queues: 2,
        tx_queues: 2,
        rss: true,
        mtu: Some(1400),
        ..PortSetup::default()
    };
    port.configure(&multi, &pool).unwrap();
    port.start().unwrap();
    let mut burst = Burst::new();
    assert_eq!(port.rx_burst(1, &mut burst), 32);
    assert_eq!(port.tx_burst(1, &mut burst), 32);
    assert_eq!(port.rx_burst(2, &mut burst), 0);
    port.stop().unwrap();
    let bad_mtu = PortSetup {
        mtu: Some(10),
        ..PortSetup::default()
    };
    let err = port.configure(&bad_mtu, &pool).unwrap_err();
    assert!(err.to_string().contains("MTU 10"), "{err}");
    port.configure(&PortSetup::default(), &pool).unwrap();
    port.set_mac([0x02, 0, 0, 0, 0xaa, 0x01]).unwrap();
    assert_eq!(port.mac(), [0x02, 0, 0, 0, 0xaa, 0x01]);
    port.start().unwrap();

    // rx fills exactly the spare capacity (net_null always has packets).
    let mut burst = Burst::new();
    for _ in 0..30 {
        burst.push(pool.alloc().unwrap());
    }
    assert_eq!(port.rx_burst(0, &mut burst), 2);
    assert_eq!(burst.len(), 32);
    assert_eq!(port.rx_burst(0, &mut burst), 0);
    assert_eq!(burst[31].port(), port.id());
    assert_eq!(pool.in_use(), 32);

    // tx takes everything (and frees it).
    assert_eq!(port.tx_burst(0, &mut burst), 32);
    assert!(burst.is_empty());
    let deadline = Instant::now() + Duration::from_secs(1);
    while pool.in_use() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.in_use(), 0);

    // Hot-plug a second null device after init.
    let attached = Port::attach("net_null1").unwrap();
    assert_eq!(attached.name(), "net_null1");
    assert_ne!(attached, port);
    attached.close();
    port.stop().unwrap();
}
