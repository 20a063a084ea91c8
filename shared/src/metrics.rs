//! Prometheus metrics, the part both processes share: the `[metrics]` config
//! section, a minimal HTTP/1.1 server for `GET /metrics` on a plain thread
//! (`serve`), and helpers that write metric families with `prometheus-client`'s
//! text encoder (`Families`). What each process exports is its own
//! (`cer_dataplane::metrics`, `cer_controlplane::control::metrics`).
//!
//! The server never runs on a polling core and never blocks a scrape behind
//! another client: every connection gets its own short-lived thread (at most
//! `MAX_CLIENTS` at once; more get 503 at once), a deadline for its request
//! head and a write timeout, so a client that connects and sends nothing, or
//! sends garbage, costs one thread for `REQUEST_TIMEOUT` and nothing else.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[metrics]` in either process's config file. No `listen`, no server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `GET /metrics` is served, `"ADDRESS:PORT"` (e.g.
    /// `"127.0.0.1:9461"` for the dataplane, `"127.0.0.1:9462"` for
    /// cer-control). Absent: no metrics server (the default).
    pub listen: Option<String>,
}

impl MetricsSection {
    /// The listen address, or why `metrics.listen` is not one (the caller
    /// names the file and the field).
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        match &self.listen {
            None => Ok(None),
            Some(s) => s.parse::<SocketAddr>().map(Some).map_err(|_| {
                format!(
                    "\"{s}\" is not an IP address and port (e.g. \"127.0.0.1:9461\" or \"[::1]:9461\")"
                )
            }),
        }
    }
}

/// The `Content-Type` of the answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CLIENTS: usize = 16;
/// The request head must arrive within this time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the answer must not take longer than this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// Produces the exposition text for one scrape, or why it cannot (503).
pub type Render = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Binds `addr` (the error names `metrics.listen`) and serves `GET /metrics`
/// from `render` on a thread named `metrics`.
pub fn spawn(addr: SocketAddr, render: Render) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("metrics.listen: cannot listen on {addr}: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(listener, render))?;
    Ok(local)
}

/// Accepts scrapers forever, one thread per connection.
pub fn serve(listener: TcpListener, render: Render) {
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            busy.fetch_sub(1, Ordering::AcqRel);
            // Read what the client sent so far (at most 100 ms), so that
            // closing does not reset the connection before it reads the 503.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = respond(
                &mut stream,
                503,
                "text/plain",
                b"too many scrapers at once\n",
            );
            close(stream);
            continue;
        }
        let (render, guard) = (render.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                handle(stream, &render);
                guard.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics { head: bool },
    NotFound,
    MethodNotAllowed,
}

/// Why a request head is refused with 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("the request is not UTF-8 text")]
    NotText,
    #[error("the request line is not \"METHOD TARGET HTTP/1.x\"")]
    RequestLine,
    #[error("header line {0} has no ':'")]
    Header(usize),
}

/// Parses a complete request head (up to, not including, the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| BadRequest::NotText)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::RequestLine);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method)
        || !target.starts_with('/')
        || !token(target)
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(BadRequest::RequestLine);
    }
    for (i, l) in lines.enumerate() {
        if !l.contains(':') {
            return Err(BadRequest::Header(i + 1));
        }
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(match (method, path) {
        ("GET", "/metrics") => Request::Metrics { head: false },
        ("HEAD", "/metrics") => Request::Metrics { head: true },
        (_, "/metrics") => Request::MethodNotAllowed,
        _ => Request::NotFound,
    })
}

/// Reads the request head until the blank line, within `REQUEST_TIMEOUT`
/// and `MAX_HEAD` bytes. `Ok(None)`: the client closed or timed out first.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Result<Vec<u8>, u16>>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&buf) {
            buf.truncate(end);
            return Ok(Some(Ok(buf)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(Err(431)));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where the head ends: before "\r\n\r\n" or "\n\n".
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn handle(mut stream: TcpStream, render: &Render) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = match read_head(&mut stream) {
        Ok(Some(h)) => h,
        // Silent, closed or timed out: nothing to answer.
        Ok(None) | Err(_) => return,
    };
    let _ = match head.map(|h| parse_head(&h)) {
        Err(code) => respond(&mut stream, code, "text/plain", b"request head too large\n"),
        Ok(Err(e)) => respond(
            &mut stream,
            400,
            "text/plain",
            format!("bad request: {e}\n").as_bytes(),
        ),
        Ok(Ok(Request::NotFound)) => respond(
            &mut stream,
            404,
            "text/plain",
            b"not found: metrics are at /metrics\n",
        ),
        Ok(Ok(Request::MethodNotAllowed)) => respond(
            &mut stream,
            405,
            "text/plain",
            b"only GET and HEAD /metrics\n",
        ),
        Ok(Ok(Request::Metrics { head })) => match render() {
            Ok(text) if head => respond_head(&mut stream, text.len()),
            Ok(text) => respond(&mut stream, 200, CONTENT_TYPE, text.as_bytes()),
            Err(why) => respond(
                &mut stream,
                503,
                "text/plain",
                format!("metrics unavailable: {why}\n").as_bytes(),
            ),
        },
    };
    close(stream);
}

/// Ends the answer, then reads and drops what the client still sends (a
/// second of it at most): closing with unread input would reset the
/// connection and could destroy the answer before the client read it.
fn close(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn respond_head(stream: &mut TcpStream, len: usize) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())
}

/// Labels of one series: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A metric family built at scrape time from a sample of the process's
/// state: constant counters, gauges and histograms (prometheus-client's
/// `Collector` path, no registry-held metric objects).
#[derive(Debug)]
pub enum Family {
    Counter {
        name: &'static str,
        help: &'static str,
        series: Vec<(Labels, u64)>,
    },
    Gauge {
        name: &'static str,
        help: &'static str,
        series: Vec<(Labels, f64)>,
    },
    Histogram {
        name: &'static str,
        help: &'static str,
        series: Vec<(Labels, Histogram)>,
    },
}

/// A histogram's state: upper bounds with the observations in each bucket
/// (not cumulative: the encoder sums them; `+Inf` is added from `count`),
/// the sum and the count of observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Family {
    /// The exported name (counters get `_total` from the encoder).
    pub fn exported_name(&self) -> String {
        match self {
            Family::Counter { name, .. } => format!("{name}_total"),
            Family::Gauge { name, .. } | Family::Histogram { name, .. } => name.to_string(),
        }
    }
}

/// Families of one scrape, encodable as a prometheus-client collector.
#[derive(Debug, Default)]
pub struct Families(pub Vec<Family>);

impl Families {
    pub fn counter(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, u64)>) {
        self.0.push(Family::Counter { name, help, series });
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, f64)>) {
        self.0.push(Family::Gauge { name, help, series });
    }

    /// One unlabelled gauge.
    pub fn gauge1(&mut self, name: &'static str, help: &'static str, v: f64) {
        self.gauge(name, help, vec![(vec![], v)]);
    }

    /// One unlabelled counter.
    pub fn counter1(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.counter(name, help, vec![(vec![], v)]);
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        series: Vec<(Labels, Histogram)>,
    ) {
        self.0.push(Family::Histogram { name, help, series });
    }

    /// The Prometheus text exposition of every family.
    pub fn render(self) -> Result<String, String> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .map_err(|e| format!("encoding the metrics failed: {e}"))?;
        Ok(out)
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            match f {
                Family::Counter { name, help, series } => {
                    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                    for (labels, v) in series {
                        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
                    }
                }
                Family::Gauge { name, help, series } => {
                    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                    for (labels, v) in series {
                        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
                    }
                }
                Family::Histogram { name, help, series } => {
                    let mut m =
                        encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
                    for (labels, h) in series {
                        m.encode_family(labels)?
                            .encode_histogram::<Labels>(h.sum, h.count, &h.buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
