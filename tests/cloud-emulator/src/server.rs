//! HTTP plumbing: the shared emulator, listeners, routing and small helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::faults::{FaultKind, FaultSpec, Faults};
use crate::limits::{Admission, Class, Limits, RateLimiter};
use crate::state::{fnv1a, Seed, State};
use crate::stats::{CallResult, CallStats};

/// Largest request body accepted (bigger ones get a provider error).
pub const MAX_BODY: usize = 1 << 20;

pub type Body = Full<Bytes>;

/// What a handler decided: a response, or drop the connection (timeout fault).
pub enum Outcome {
    Reply(Response<Body>),
    Drop,
}

/// A request with its body read.
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// The body was larger than [`MAX_BODY`] (then `body` is empty).
    pub too_large: bool,
    /// The client's address (IMDS answers per caller).
    pub peer: Option<SocketAddr>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Which API a listener serves.
#[derive(Clone, Debug)]
pub enum Role {
    /// Cloud APIs, the control API and IMDS (for the caller's instance, see
    /// `State::imds_instance_for`).
    Main,
    /// IMDS only, for one instance (a separate metadata endpoint per emulated VM).
    Imds { instance: String },
}

/// The emulator shared by all listeners.
pub struct Emulator {
    seed: Mutex<Seed>,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    limits: Mutex<RateLimiter>,
    stats: Mutex<CallStats>,
    pub(crate) imds_tokens: Mutex<HashMap<String, Instant>>,
    /// Azure long-running operations: id -> completion time.
    pub(crate) azure_ops: Mutex<HashMap<String, Instant>>,
    /// OCI security tokens issued by the federation endpoint: token -> (session public key PEM,
    /// expiry).
    pub(crate) oci_tokens: Mutex<HashMap<String, (String, SystemTime)>>,
    counter: AtomicU64,
    /// Seconds the emulator's clock is ahead of the host's (negative: behind).
    clock_offset: AtomicI64,
    salt: u64,
    pub(crate) started: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    pub fn new(seed: Seed) -> anyhow::Result<Arc<Emulator>> {
        let state = State::from_seed(&seed)?;
        let salt = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        let limits = RateLimiter::new(seed.limits.clone());
        let clock_offset = AtomicI64::new(seed.clock_offset_secs);
        Ok(Arc::new(Emulator {
            seed: Mutex::new(seed),
            state: Mutex::new(state),
            faults: Mutex::new(Faults::default()),
            limits: Mutex::new(limits),
            stats: Mutex::new(CallStats::default()),
            imds_tokens: Mutex::new(HashMap::new()),
            azure_ops: Mutex::new(HashMap::new()),
            oci_tokens: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(1),
            clock_offset,
            salt,
            started: SystemTime::now(),
        }))
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Restores the seed state (a new seed if given) and the seed's limits (full buckets),
    /// clears faults, IMDS tokens and call statistics.
    pub fn reset(&self, new_seed: Option<Seed>) -> anyhow::Result<()> {
        let mut seed = lock(&self.seed);
        let next = new_seed.unwrap_or_else(|| seed.clone());
        let state = State::from_seed(&next)?;
        lock(&self.limits).set(next.limits.clone());
        self.set_clock_offset(next.clock_offset_secs);
        *seed = next;
        *lock(&self.state) = state;
        self.faults().clear();
        lock(&self.stats).clear();
        lock(&self.imds_tokens).clear();
        lock(&self.azure_ops).clear();
        lock(&self.oci_tokens).clear();
        Ok(())
    }

    /// The emulator's clock: the host's plus the configured offset (`clock_offset_secs`). The
    /// signature date checks and the `Date` header of every reply use it.
    pub fn now(&self) -> SystemTime {
        let offset = self.clock_offset();
        let now = SystemTime::now();
        let d = std::time::Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 {
            now.checked_add(d)
        } else {
            now.checked_sub(d)
        }
        .unwrap_or(now)
    }

    /// Seconds the emulator's clock is ahead of the host's (negative: behind).
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset.load(Ordering::Relaxed)
    }

    /// Sets the clock offset (callers bound it, see [`crate::state::MAX_CLOCK_OFFSET_SECS`]).
    pub fn set_clock_offset(&self, secs: i64) {
        self.clock_offset.store(secs, Ordering::Relaxed);
    }

    /// The rate limits in force.
    pub fn limits(&self) -> Limits {
        lock(&self.limits).limits().clone()
    }

    /// Replaces the rate limits (every bucket starts full).
    pub fn set_limits(&self, limits: Limits) {
        lock(&self.limits).set(limits);
    }

    /// Takes a token for one call of `class` in `scope` (see [`RateLimiter::take`]).
    pub fn admit(&self, class: Class, scope: &str) -> Admission {
        lock(&self.limits).take(class, scope, Instant::now())
    }

    /// Counts one provider API call.
    pub fn record(&self, provider: &'static str, action: &'static str, result: CallResult) {
        lock(&self.stats).record(provider, action, result);
    }

    pub fn stats(&self) -> MutexGuard<'_, CallStats> {
        lock(&self.stats)
    }

    /// 128 unpredictable-enough bits (request ids, tokens); not cryptographic.
    pub fn random128(&self) -> u128 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let a = fnv1a(&[self.salt.to_le_bytes(), n.to_le_bytes(), t.to_le_bytes()].concat());
        let b = fnv1a(&[a.to_le_bytes(), self.salt.rotate_left(17).to_le_bytes()].concat());
        (u128::from(a) << 64) | u128::from(b)
    }

    /// A UUID-shaped request id.
    pub fn request_id(&self) -> String {
        let r = self.random128().to_be_bytes();
        let h: String = r.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    /// Consults the fault rules for this call. A `delay` rule sleeps here and proceeds.
    pub async fn fault_gate(&self, provider: &str, action: &str) -> Gate {
        let rule: Option<FaultSpec> = self.faults().take(provider, action);
        let Some(rule) = rule else {
            return Gate::Proceed;
        };
        log::info!("fault {:?} on {provider} {action}", rule.kind);
        match rule.kind {
            FaultKind::Error | FaultKind::Throttle | FaultKind::Denied => {
                tokio::time::sleep(rule.delay()).await;
                Gate::Fail(rule.kind)
            }
            FaultKind::Delay => {
                tokio::time::sleep(rule.delay()).await;
                Gate::Proceed
            }
            FaultKind::Timeout => Gate::Timeout {
                apply: rule.apply,
                hold: rule.delay(),
            },
        }
    }
}

/// What the fault rules decided for a call.
pub enum Gate {
    Proceed,
    /// Answer with the provider's error for this kind (`error` or `throttle`).
    Fail(FaultKind),
    /// Execute the call if `apply`, hold the connection for `hold`, then drop it.
    Timeout {
        apply: bool,
        hold: std::time::Duration,
    },
}

/// The emulator running on its listeners (dropping it does not stop the servers; call `stop`).
pub struct Running {
    pub emulator: Arc<Emulator>,
    pub addr: SocketAddr,
    pub imds_addrs: Vec<(String, SocketAddr)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds the main listener on `addr` and one IMDS listener per `(addr, instance)`.
pub async fn start(
    seed: Seed,
    addr: SocketAddr,
    imds: &[(SocketAddr, String)],
) -> anyhow::Result<Running> {
    let emulator = Emulator::new(seed)?;
    let main = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let main_addr = main.local_addr()?;
    let mut tasks = vec![tokio::spawn(serve(main, emulator.clone(), Role::Main))];
    let mut imds_addrs = Vec::new();
    for (a, instance) in imds {
        let l = TcpListener::bind(a)
            .await
            .map_err(|e| anyhow::anyhow!("binding {a}: {e}"))?;
        imds_addrs.push((instance.clone(), l.local_addr()?));
        tasks.push(tokio::spawn(serve(
            l,
            emulator.clone(),
            Role::Imds {
                instance: instance.clone(),
            },
        )));
    }
    Ok(Running {
        emulator,
        addr: main_addr,
        imds_addrs,
        tasks,
    })
}

/// Accept loop of one listener.
pub async fn serve(listener: TcpListener, emulator: Arc<Emulator>, role: Role) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let emulator = emulator.clone();
        let role = role.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let emulator = emulator.clone();
                let role = role.clone();
                // Every change this request causes is journaled with who asked for it.
                let info = crate::state::RequestInfo {
                    client: peer.to_string(),
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    received_unix_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                };
                crate::state::REQUEST.scope(info, handle(emulator, role, peer, req))
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected timeout")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    emulator: Arc<Emulator>,
    role: Role,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => (c.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        too_large,
        peer: Some(peer),
    };
    log::debug!("{:?} {} {}", role, req.method, req.path);
    let outcome = match &role {
        Role::Imds { instance } => crate::imds::handle(&emulator, Some(instance), &req).await,
        Role::Main => {
            if req.path.starts_with("/_emulator/") || req.path == "/_emulator" {
                Outcome::Reply(crate::control::handle(&emulator, &req).await)
            } else if req.path.starts_with("/subscriptions/") || req.path.starts_with("/metadata/")
            {
                crate::azure::handle(&emulator, &req).await
            } else if req.path.starts_with("/20160918/")
                || req.path.starts_with("/opc/")
                || req.path == "/v1/x509"
            {
                crate::oci::handle(&emulator, &req).await
            } else if req.path.starts_with("/latest") {
                crate::imds::handle(&emulator, None, &req).await
            } else {
                crate::aws::handle(&emulator, &req).await
            }
        }
    };
    match outcome {
        Outcome::Reply(mut r) => {
            // Every reply says what time the emulator thinks it is, as real servers do (clients
            // measure their clock skew from it).
            if !r.headers().contains_key(hyper::header::DATE) {
                if let Ok(v) = httpdate::fmt_http_date(emulator.now()).parse() {
                    r.headers_mut().insert(hyper::header::DATE, v);
                }
            }
            Ok(r)
        }
        Outcome::Drop => Err(Dropped),
    }
}

/// A response with a body and content type.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON response.
pub fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    reply(status, "application/json", v.to_string())
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` for a system time.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199);
        assert_eq!(iso8601(t), "2024-02-29T23:59:59.000Z");
    }
}
