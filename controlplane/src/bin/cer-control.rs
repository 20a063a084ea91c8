//! `cer-control --config FILE`: the BGP control process of a CER node.

use anyhow::{Context, Result};
use cer_controlplane::cli::control::Args;
use cer_controlplane::control::admin::{ControlRequest, ControlResponse};
use cer_controlplane::control::config::{CaptureMode, ControlConfig};
use cer_controlplane::control::fibfeed::{self, FeedOp, FeedStatus};
use cer_controlplane::control::state::{
    metrics_render, AdminMsg, BfdClient, ControlState, MetricsAsk,
};
use cer_controlplane::control::{bfd, capture, unnumbered, vrrp};
use cer_shared::framing;
use clap::Parser;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};

/// Session events handled as one burst before exporting (bounds the wait
/// of the first event's export while peers keep sending).
const SESSION_BURST: usize = 512;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("cer-control: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let cfg = ControlConfig::load(&args.config)?;
    if args.check {
        println!("config {} is valid", args.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, args.config))
}

async fn serve(cfg: ControlConfig, config_path: std::path::PathBuf) -> Result<()> {
    // Stalls (this process stopped past half a second): the VRRP gate and
    // cloud capture hold and re-confirm (cer_shared::stall).
    let stall = cer_shared::stall::StallWatch::new();
    stall.start().context("starting the stall watch thread")?;
    let feed_status = Arc::new(Mutex::new(FeedStatus::default()));
    let feed_tx = match &cfg.dataplane.feed_socket {
        Some(sock) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let (sock, st, w) = (sock.clone(), feed_status.clone(), stall.clone());
            let garp = fibfeed::GarpOptions {
                port: cfg.dataplane.lan_port.clone(),
                count: cfg.capture.garp_count,
            };
            std::thread::Builder::new()
                .name("fib-feed".into())
                .spawn(move || fibfeed::run(sock, rx, st, garp, Some(w)))?;
            Some(tx)
        }
        None => None,
    };
    let (ev_tx, mut ev_rx) = mpsc::channel(65536);
    // The on-prem capture gate: VRRP master only (fail closed), or explicit single_router.
    let mut vrrp_status = None;
    if cfg.capture.mode == CaptureMode::Onprem {
        match (&cfg.capture.vrrp_notify_fifo, &feed_tx) {
            (Some(fifo), tx) => {
                let instance = cfg.capture.vrrp_instance.clone().unwrap_or_default();
                let st = vrrp::new_status(fifo, &instance);
                vrrp_status = Some(st.clone());
                let (fifo, tx) = (fifo.clone(), tx.clone());
                let opts = vrrp::FollowOptions {
                    keepalived_pid_file: cfg.capture.keepalived_pid_file.clone(),
                    keepalived_json_file: cfg.capture.keepalived_json_file.clone(),
                    stop: None,
                    stall: Some(stall.clone()),
                    stall_settle: Duration::from_millis(cfg.capture.vrrp_stall_settle_ms),
                };
                std::thread::Builder::new()
                    .name("vrrp-gate".into())
                    .spawn(move || {
                        vrrp::follow_with(fifo, instance, st, opts, move |open, why| {
                            log::info!(
                                "proxy-ARP gate {}: {why}",
                                if open { "open" } else { "closed" }
                            );
                            if let Some(tx) = &tx {
                                let _ = tx.send(FeedOp::Gate(open));
                            }
                        })
                    })?;
            }
            (None, Some(tx)) => {
                log::info!("proxy-ARP gate open: single_router = true (no VRRP)");
                let _ = tx.send(FeedOp::Gate(true));
            }
            (None, None) => {}
        }
    }
    let mut state =
        ControlState::new(cfg.clone(), ev_tx, feed_tx, feed_status).map_err(anyhow::Error::msg)?;
    state.config_path =
        Some(std::fs::canonicalize(&config_path).unwrap_or_else(|_| config_path.clone()));
    let (link_tx, mut link_rx) = mpsc::channel(1024);
    let watchers_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    state.vrrp = vrrp_status;
    // Cloud capture: the reconciler exists from the start (the state feeds it
    // intents); its provider client is built, and retried, in the background.
    if cfg.capture.mode.is_cloud() {
        let mut rc = capture::reconciler_config(&cfg);
        rc.stall = Some(stall.clone());
        let r = cer_capture::Reconciler::open(rc).map_err(anyhow::Error::msg)?;
        capture::spawn(r.clone(), cfg.capture.clone());
        state.reconciler = Some(r);
    }

    // BFD: one task for every neighbor with `bfd = true`; its state changes
    // come back to the event loop.
    let (bfd_ev_tx, mut bfd_ev_rx) = mpsc::channel(256);
    let bfd_task = if cfg.bgp.neighbors.iter().any(|n| n.bfd) {
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let shared = bfd::SharedBfd::default();
        let task = bfd::spawn(bfd::Ports::default(), cmd_rx, bfd_ev_tx, shared.clone());
        state.bfd = Some(BfdClient::new(cmd_tx, shared));
        Some(task)
    } else {
        drop(bfd_ev_tx);
        None
    };

    let (in_tx, mut in_rx) = mpsc::channel(64);
    let mut listeners = Vec::new();
    for addr in cfg.listen_addrs() {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bgp.listen: cannot listen on {addr}"))?;
        log::info!("BGP listening on {addr}");
        listeners.push(l);
    }
    // TCP-MD5: the key of every neighbor with a password goes on each
    // listener of its address family (an IPv4 peer also on a dual-stack
    // IPv6 wildcard), so its SYN is checked before we accept it.
    for l in &listeners {
        set_listener_keys(&cfg, l)?;
    }
    let unnumbered = cfg.bgp.neighbors.iter().any(|n| n.interface.is_some());
    let v6_any = cfg
        .listen_addrs()
        .iter()
        .any(|a| a.ip() == std::net::Ipv6Addr::UNSPECIFIED);
    if unnumbered && !v6_any {
        // Unnumbered peers connect to our link-local address: listen on
        // [::]:179, IPv6 only, next to any IPv4 listener.
        listeners.push(bind_v6_only(179).context(
            "BGP unnumbered: cannot listen on [::]:179 (IPv6 only) for link-local peers",
        )?);
        log::info!("BGP listening on [::]:179 for unnumbered peers");
    }
    for l in listeners {
        let tx = in_tx.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    let _ = tx.send(s).await;
                }
            }
        });
    }

    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminMsg>(64);
    let sock = cfg.admin.socket.clone();
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("admin.socket directory {}", dir.display()))?;
    }
    if sock.exists() {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            anyhow::bail!(
                "admin.socket {} is in use by a running cer-control",
                sock.display()
            );
        }
        std::fs::remove_file(&sock)?;
    }
    let admin =
        UnixListener::bind(&sock).with_context(|| format!("admin.socket {}", sock.display()))?;
    // Mode and group on the file, and every connection's credentials checked.
    let access = cer_shared::sockperm::SocketAccess::new(
        cfg.admin
            .gid()
            .map_err(|e| anyhow::anyhow!("admin.group: {e}"))?,
    );
    access.apply(&sock, cfg.admin.mode).with_context(|| {
        format!(
            "admin.socket {}: setting mode {:#o} and group {}",
            sock.display(),
            cfg.admin.mode,
            cfg.admin.group
        )
    })?;
    state.admin_access = Some(access.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = admin.accept().await else {
                continue;
            };
            if let Err(why) = access.check(std::os::fd::AsRawFd::as_raw_fd(&s)) {
                log::warn!("admin socket: {why}");
                // Its request is read (a client that wrote it would see
                // a broken pipe, not the answer), then refused.
                tokio::spawn(async move {
                    let mut line = serde_json::to_vec(&ControlResponse::Error { message: why })
                        .unwrap_or_default();
                    line.push(b'\n');
                    let (rd, mut wr) = s.split();
                    let mut first = Vec::new();
                    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(rd, 64 * 1024));
                    let read = reader.read_until(b'\n', &mut first);
                    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
                    let _ = wr.write_all(&line).await;
                });
                continue;
            }
            let tx = admin_tx.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.len() > 1 << 20 {
                        break;
                    }
                    let resp = match framing::decode::<ControlRequest>(line.as_bytes()) {
                        Ok(req) => {
                            let (otx, orx) = oneshot::channel();
                            if tx.send((req, otx)).await.is_err() {
                                break;
                            }
                            orx.await.unwrap_or(ControlResponse::Error {
                                message: "cer-control is stopping".into(),
                            })
                        }
                        Err(e) => ControlResponse::Error {
                            message: format!("{e}; expected e.g. {{\"cmd\":\"bgp_summary\"}}"),
                        },
                    };
                    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
                    out.push(b'\n');
                    if wr.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    // Prometheus: the server thread asks the event loop, as the admin socket does.
    let (metrics_tx, mut metrics_rx) = mpsc::channel::<MetricsAsk>(8);
    if let Some(addr) = cfg
        .metrics
        .addr()
        .map_err(|m| anyhow::anyhow!("metrics.listen: {m}"))?
    {
        let at = cer_shared::metrics::spawn(addr, metrics_render(metrics_tx.clone()))?;
        log::info!("metrics: serving /metrics on http://{at}");
    }

    state.start().map_err(anyhow::Error::msg)?;
    for (k, i) in state.unnumbered.ifaces.iter().enumerate() {
        unnumbered::spawn_watcher(k, i.name.clone(), link_tx.clone(), watchers_stop.clone())
            .with_context(|| format!("starting the unnumbered watcher of {}", i.name))?;
        log::info!(
            "unnumbered neighbor on {}: learning the peer from Router Advertisements",
            i.name
        );
    }
    log::info!(
        "cer-control {} up: AS {}, router id {}",
        cfg.node.name,
        cfg.node.asn,
        cfg.node.router_id
    );
    println!("cer-control: ready");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SIGHUP: the same reload as `cerctl reload`, its result in the log.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            Some(ev) = ev_rx.recv() => {
                // A burst: what is queued (up to SESSION_BURST events) is
                // imported first, then exported once per prefix.
                state.speaker.defer_exports();
                state.on_session(ev);
                for _ in 1..SESSION_BURST {
                    let Ok(ev) = ev_rx.try_recv() else { break };
                    state.on_session(ev);
                }
                state.speaker.release_exports();
            }
            Some(ev) = link_rx.recv() => state.on_link(ev),
            Some(ev) = bfd_ev_rx.recv() => state.on_bfd(ev),
            Some(s) = in_rx.recv() => {
                if !state.inbound(s) {
                    log::warn!("refused a BGP connection from an unconfigured address");
                }
            }
            Some((req, reply)) = admin_rx.recv() => { let _ = reply.send(state.admin(req)); }
            Some(reply) = metrics_rx.recv() => { let _ = reply.send(state.metrics()); }
            _ = tick.tick() => state.tick(),
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading {}", config_path.display());
                if let ControlResponse::Error { message } = state.admin(ControlRequest::Reload) {
                    log::error!("SIGHUP: {message}");
                }
            }
        }
        // The IO the speaker asked for while handling that input.
        state.flush();
    }
    watchers_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    log::info!("shutting down: BFD AdminDown and Cease to every peer");
    state.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(t) = bfd_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// Puts each configured TCP-MD5 key on listener `l`.
fn set_listener_keys(cfg: &ControlConfig, l: &TcpListener) -> Result<()> {
    use std::os::fd::AsRawFd;
    let local = l.local_addr()?;
    for n in &cfg.bgp.neighbors {
        let (Some(addr), Some(key)) = (n.address, &n.password) else {
            continue;
        };
        let mapped = addr.is_ipv4() && local.is_ipv6();
        if addr.is_ipv6() && local.is_ipv4() {
            continue;
        }
        match cer_bgp::sockopt::set_md5_key(l.as_raw_fd(), addr, key.as_bytes()) {
            Ok(()) => log::info!("TCP-MD5 key for neighbor {addr} on the listener {local}"),
            // A dual-stack listener also takes IPv4 peers; one set IPv6-only may refuse it.
            Err(e) if mapped => log::debug!("TCP-MD5 key for {addr} on {local}: {e}"),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("TCP-MD5 key for neighbor {addr} on the BGP listener {local}")
                })
            }
        }
    }
    Ok(())
}

/// A listener on [::]:PORT that takes IPv6 only, so it coexists with an
/// IPv4 wildcard listener on the same port.
fn bind_v6_only(port: u16) -> Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    let addr = std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(TcpListener::from_std(s.into())?)
}
