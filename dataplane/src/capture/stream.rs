//! One capture, served on its admin connection: checks the request (points
//! that exist, a filter that compiles, a snap length in range, one capture
//! at a time), publishes the session to the cores, then drains the cores'
//! rings into pcapng and streams it to the client as `CaptureFrame` lines
//! until the count, the duration, or the client ends it. Runs on the admin
//! connection's thread, never on a polling core.

use super::libpcap::{self, Dlt};
use super::pcapng::PcapngStream;
use super::{CaptureHub, Point, Session};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use base64::Engine as _;
use cer_shared::admin::{
    AdminResponse, CaptureFrame, CaptureSummary, CAPTURE_SNAPLEN_DEFAULT, CAPTURE_SNAPLEN_MAX,
};
use cer_shared::framing;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Pending pcapng bytes sent as soon as there are this many.
const CHUNK: usize = 48 << 10;
/// Pending bytes are sent at least this often.
const SEND_EVERY: Duration = Duration::from_millis(100);
/// A progress line this often (finds a client that went away).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Sleep when the rings were empty.
const IDLE: Duration = Duration::from_millis(1);

/// What a capture needs of the dataplane.
#[derive(Clone)]
pub struct CaptureContext {
    pub hub: Arc<CaptureHub>,
    /// NIC port names, by config index.
    pub ports: Vec<String>,
    pub cores: usize,
    /// Tunnels come from the current snapshot.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The cores' clock (`PortIo::now_ns`), to date their records.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// A capture request's parameters.
#[derive(Debug, Clone, Default)]
pub struct CaptureParams {
    pub points: Vec<String>,
    pub filter: String,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub snaplen: Option<u32>,
}

/// What the client's side of the connection did.
enum Client {
    Quiet,
    /// Sent a line: stop.
    Stop,
    /// Closed the connection (or it failed).
    Gone,
}

/// Looks at the socket without blocking: a byte from the client asks to
/// stop, end of file means the client went away.
fn client_state(conn: &UnixStream) -> Client {
    let mut b = [0u8; 64];
    // SAFETY: recv into a local buffer of the stated length on a socket fd
    // this connection owns; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            conn.as_raw_fd(),
            b.as_mut_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Client::Gone,
        n if n > 0 => Client::Stop,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Client::Quiet,
            _ => Client::Gone,
        },
    }
}

/// Serves one capture on `conn`: the answer line, then the stream. An
/// error return means the client could not be written to.
pub fn serve<W: Write>(
    ctx: &CaptureContext,
    p: CaptureParams,
    conn: &UnixStream,
    out: &mut W,
) -> std::io::Result<()> {
    let refuse = |out: &mut W, message: String| -> std::io::Result<()> {
        log::info!("capture refused: {message}");
        framing::write_msg(out, &AdminResponse::Error { message })
    };
    let Some(claim) = ctx.hub.claim() else {
        return refuse(
            out,
            "a capture is already running on this dataplane (one at a time); stop it first \
             (Ctrl-C its cerctl)"
                .into(),
        );
    };
    let session = match build(ctx, &p) {
        Ok(s) => Arc::new(s),
        Err(message) => return refuse(out, message),
    };
    let names: Vec<String> = session
        .points
        .iter()
        .map(|pt| pt.name(&ctx.ports))
        .collect();
    let interfaces: Vec<(String, Dlt)> = session
        .points
        .iter()
        .map(|pt| (pt.if_name(&ctx.ports), pt.link()))
        .collect();
    let mut pcap = PcapngStream::new(&interfaces, session.snaplen as u32)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let wall0 = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mono0 = (ctx.clock)();
    claim.publish(session.clone());
    log::info!(
        "capture {}: {} filter {:?} snaplen {}",
        session.id,
        names.join(" "),
        p.filter,
        session.snaplen
    );
    framing::write_msg(
        out,
        &AdminResponse::Ok {
            data: serde_json::json!({
                "points": names,
                "filter": p.filter,
                "snaplen": session.snaplen,
                "ring_slots_per_core": super::slots_for(session.snaplen),
                "cores": session.rings.len(),
            }),
        },
    )?;
    let started = Instant::now();
    let mut last_send = started;
    let mut last_progress = started;
    let limit = p.count.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut sent_err: Option<std::io::Error> = None;
    let drain = |pcap: &mut PcapngStream, written: &mut u64| -> usize {
        let mut n = 0;
        for ring in session.rings.iter() {
            while let Some(r) = ring.pop() {
                n += 1;
                if *written < limit {
                    let ts = wall0 + Duration::from_nanos(r.ts_ns.saturating_sub(mono0));
                    if pcap
                        .packet(r.point, ts, r.orig_len, &r.data, r.inbound)
                        .is_ok()
                    {
                        *written += 1;
                    }
                }
                ring.recycle(r);
            }
        }
        n
    };
    let send = |out: &mut W, pcap: &mut PcapngStream| -> std::io::Result<()> {
        if pcap.pending() == 0 {
            return Ok(());
        }
        let bytes = pcap.take();
        let frame = CaptureFrame::Data {
            pcapng: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        framing::write_msg(out, &frame)
    };
    // The header goes out at once: a client sees a valid (empty) file.
    if let Err(e) = send(out, &mut pcap) {
        sent_err = Some(e);
    }
    let stopped = loop {
        if sent_err.is_some() {
            break "client".to_string();
        }
        let n = drain(&mut pcap, &mut written);
        let now = Instant::now();
        if pcap.pending() >= CHUNK || (pcap.pending() > 0 && now - last_send >= SEND_EVERY) {
            if let Err(e) = send(out, &mut pcap) {
                sent_err = Some(e);
                continue;
            }
            last_send = now;
        }
        if written >= limit {
            break "count".into();
        }
        if p.duration.is_some_and(|d| now - started >= d) {
            break "duration".into();
        }
        match client_state(conn) {
            Client::Quiet => {}
            Client::Stop | Client::Gone => break "client".into(),
        }
        if now - last_progress >= PROGRESS_EVERY {
            last_progress = now;
            let f = CaptureFrame::Progress {
                written,
                matched: session.matched(),
                ring_drops: session.ring_drops(),
            };
            if let Err(e) = framing::write_msg(out, &f) {
                sent_err = Some(e);
                continue;
            }
        }
        if n == 0 {
            std::thread::sleep(IDLE);
        }
    };
    // The cores stop offering; what they queued before is still written.
    claim.stop();
    drain(&mut pcap, &mut written);
    let summary = CaptureSummary {
        written,
        matched: session.matched(),
        ring_drops: session.ring_drops(),
        stopped,
    };
    log::info!(
        "capture {} stopped ({}): {} written, {} matched, {} dropped by the capture ring",
        session.id,
        summary.stopped,
        summary.written,
        summary.matched,
        summary.ring_drops
    );
    drop(claim);
    if let Some(e) = sent_err {
        return Err(e);
    }
    send(out, &mut pcap)?;
    framing::write_msg(out, &CaptureFrame::End(summary))
}

/// The session a request asks for, or why not (a message naming the cause).
fn build(ctx: &CaptureContext, p: &CaptureParams) -> Result<Session, String> {
    let snap = ctx.snapshot.load();
    let tunnels: Vec<u32> = snap.tunnels.iter().map(|t| t.id).collect();
    if p.points.is_empty() {
        let valid: Vec<String> = Point::all(&ctx.ports, &tunnels)
            .iter()
            .map(|pt| pt.name(&ctx.ports))
            .collect();
        return Err(format!(
            "name at least one observation point; valid points: {}",
            valid.join(", ")
        ));
    }
    let mut points = Vec::new();
    for s in &p.points {
        let pt = Point::parse(s, &ctx.ports, &tunnels).map_err(|e| e.to_string())?;
        if !points.contains(&pt) {
            points.push(pt);
        }
    }
    let snaplen = p.snaplen.unwrap_or(CAPTURE_SNAPLEN_DEFAULT);
    if snaplen == 0 || snaplen > CAPTURE_SNAPLEN_MAX {
        return Err(format!(
            "snap length {snaplen}: expected 1 to {CAPTURE_SNAPLEN_MAX} bytes"
        ));
    }
    if p.count == Some(0) {
        return Err("packet count 0: expected at least 1 (or no count)".into());
    }
    let compile = |link: Dlt| -> Result<Option<super::bpf::Program>, String> {
        if !points.iter().any(|pt| pt.link() == link) {
            return Ok(None);
        }
        libpcap::compile(&p.filter, link, snaplen)
            .map(Some)
            .map_err(|e| e.to_string())
    };
    let ether = compile(Dlt::Ethernet)?;
    let raw = compile(Dlt::Raw)?;
    Ok(Session::new(
        ctx.hub.next_id(),
        points,
        ether,
        raw,
        snaplen as usize,
        ctx.cores,
    ))
}
