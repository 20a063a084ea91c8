//! The capture reconciler: desired state (from BGP ownership, pushed by
//! cer-control as an `Intent` per /32) against observed state (asked of the
//! provider), in the background. Idempotent (observe first, act only on a
//! difference, confirm by observing again), exponential backoff with full
//! jitter per /32 plus a global pause when the provider throttles, bounded
//! concurrency, and no state of its own beyond memory: a restart re-derives
//! everything from BGP and the provider.
//!
//! Fencing: every action carries the intent (desired state + path
//! signature) it was planned from. The provider re-checks it right before
//! each mutating call; the confirmation loop re-checks it between polls. A
//! stale action is skipped and counted (`Status::fenced_total`,
//! `recent_fenced`), never executed.

use crate::provider::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding};
use rand::Rng;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What this router's NIC should do with a /32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Owned by a remote node: this NIC must hold it.
    Capture,
    /// Owned here, or owned by nobody: this NIC must not hold it.
    Release,
}

/// Desired state plus the path signature it was derived from (0: no owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Intent {
    pub desired: Desired,
    pub signature: u64,
}

/// Reconciler tuning; the defaults suit the three clouds' APIs.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Provider actions in flight at once.
    pub concurrency: usize,
    /// First retry delay after an error (doubles per attempt, full jitter).
    pub backoff_base: Duration,
    /// Retry delay ceiling; configuration errors retry at this pace.
    pub backoff_max: Duration,
    /// First global pause after a throttling answer (doubles while throttled).
    pub throttle_base: Duration,
    /// Longest wait for the provider to report an accepted change.
    pub confirm_timeout: Duration,
    /// Observation interval while confirming.
    pub confirm_interval: Duration,
    /// Bound on any single provider call.
    pub call_timeout: Duration,
    /// Re-observe every managed /32 this often (drift, foreign holders).
    pub resync: Duration,
    /// The endpoint pool: swept addresses outside it are never touched.
    pub pool: Vec<(Ipv4Addr, u8)>,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            concurrency: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            throttle_base: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(30),
            confirm_interval: Duration::from_millis(100),
            call_timeout: Duration::from_secs(20),
            resync: Duration::from_secs(60),
            pool: Vec::new(),
        }
    }
}

impl ReconcilerConfig {
    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        self.pool.iter().any(|&(net, len)| {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(ip) & mask == u32::from(net) & mask
        })
    }
}

/// Where one /32 stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the reconciler to start (provider not ready or BGP not converged).
    Waiting,
    /// Queued for an action.
    Pending,
    /// An action is running against the provider.
    InFlight,
    /// The last action failed; retried after the backoff.
    Backoff,
    /// The provider reports the desired state, but an earlier change it
    /// accepted may still land: re-observed until it settles.
    Settling,
    /// The provider reports the desired state.
    Confirmed,
}

/// One /32 as the operator sees it (`cerctl explain`, admin API).
#[derive(Debug, Clone, Serialize)]
pub struct IpStatus {
    pub desired: Desired,
    pub signature: String,
    pub phase: Phase,
    /// The provider's last answer: "ours", "nobody" or "elsewhere: ID".
    pub observed: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_error_kind: Option<ErrorKind>,
    /// Actions for this /32 skipped because their path signature went stale.
    pub fenced: u64,
    /// Ownership change -> provider confirmed, for the last confirmation.
    pub confirm_ms: Option<u64>,
    /// Mutating provider calls the last confirmation needed (0: already so).
    pub changed_provider: Option<bool>,
    pub confirmed_unix_ms: Option<u64>,
}

/// One stale action that was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct FencedAction {
    pub ip: Ipv4Addr,
    pub planned: Desired,
    pub planned_signature: String,
    pub current: Option<Desired>,
    pub current_signature: Option<String>,
    /// The provider step it was stopped before.
    pub step: String,
    pub at_unix_ms: u64,
}

const RECENT_FENCED: usize = 64;

/// The reconciler as a whole.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    pub provider: String,
    pub provider_detail: String,
    /// Why the provider client is not running yet (construction failed).
    pub provider_error: Option<String>,
    pub running: bool,
    pub active: bool,
    pub in_flight: usize,
    pub actions_total: u64,
    pub confirmed_total: u64,
    pub errors_total: u64,
    pub fenced_total: u64,
    pub throttled_until_ms: Option<u64>,
    pub recent_fenced: VecDeque<FencedAction>,
    pub ips: BTreeMap<Ipv4Addr, IpStatus>,
}

struct Shared {
    intents: Mutex<HashMap<Ipv4Addr, (Intent, Instant)>>,
    status: Mutex<Status>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn current(&self, ip: Ipv4Addr) -> Option<Intent> {
        lock(&self.intents).get(&ip).map(|(i, _)| *i)
    }
}

enum Msg {
    Changed(Ipv4Addr),
    Activate,
    Resync,
}

/// The handle cer-control holds: set intents (synchronously visible to the
/// fences), read status, start the background loop.
#[derive(Clone)]
pub struct Reconciler {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Msg>>>>,
    cfg: Arc<ReconcilerConfig>,
}

impl Reconciler {
    pub fn new(cfg: ReconcilerConfig) -> Reconciler {
        let (tx, rx) = mpsc::unbounded_channel();
        Reconciler {
            shared: Arc::new(Shared {
                intents: Mutex::new(HashMap::new()),
                status: Mutex::new(Status::default()),
            }),
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            cfg: Arc::new(cfg),
        }
    }

    /// Records the desired state of `ip`. Any action planned from an older
    /// intent is fenced from this moment on.
    pub fn set(&self, ip: Ipv4Addr, intent: Intent) {
        {
            let mut m = lock(&self.shared.intents);
            if m.get(&ip).is_some_and(|(i, _)| *i == intent) {
                return;
            }
            m.insert(ip, (intent, Instant::now()));
        }
        {
            let mut s = lock(&self.shared.status);
            let active = s.active;
            let e = s.ips.entry(ip).or_insert_with(|| new_ip_status(intent));
            e.desired = intent.desired;
            e.signature = format!("{:016x}", intent.signature);
            if e.phase != Phase::InFlight {
                e.phase = if active {
                    Phase::Pending
                } else {
                    Phase::Waiting
                };
            }
        }
        let _ = self.tx.send(Msg::Changed(ip));
    }

    /// The current intent of `ip`.
    pub fn intent(&self, ip: Ipv4Addr) -> Option<Intent> {
        self.shared.current(ip)
    }

    /// Lets the loop act (cer-control calls it once BGP has converged, so a
    /// restart never releases captures before the routes are back).
    pub fn activate(&self) {
        let _ = self.tx.send(Msg::Activate);
    }

    /// Re-observes every managed /32 now.
    pub fn resync(&self) {
        let _ = self.tx.send(Msg::Resync);
    }

    /// Shown while the provider client cannot be built (e.g. no credentials).
    pub fn set_provider_error(&self, provider: &str, error: Option<String>) {
        let mut s = lock(&self.shared.status);
        s.provider = provider.to_string();
        s.provider_error = error;
    }

    pub fn status(&self) -> Status {
        lock(&self.shared.status).clone()
    }

    pub fn ip_status(&self, ip: Ipv4Addr) -> Option<IpStatus> {
        lock(&self.shared.status).ips.get(&ip).cloned()
    }

    /// Starts the loop on the current tokio runtime. Only the first call
    /// starts one; later calls return None.
    pub fn start(&self, provider: Arc<dyn CaptureProvider>) -> Option<JoinHandle<()>> {
        let rx = lock(&self.rx).take()?;
        {
            let mut s = lock(&self.shared.status);
            s.provider = provider.name().to_string();
            s.provider_detail = provider.describe();
            s.provider_error = None;
            s.running = true;
        }
        let worker = Worker {
            provider,
            shared: self.shared.clone(),
            cfg: self.cfg.clone(),
            slots: HashMap::new(),
            ready: VecDeque::new(),
            queued: HashSet::new(),
            timers: BinaryHeap::new(),
            tasks: HashMap::new(),
            active: false,
            sweeping: false,
            throttle: None,
            throttle_level: 0,
        };
        Some(tokio::spawn(worker.run(rx)))
    }
}

fn new_ip_status(intent: Intent) -> IpStatus {
    IpStatus {
        desired: intent.desired,
        signature: format!("{:016x}", intent.signature),
        phase: Phase::Waiting,
        observed: None,
        attempts: 0,
        last_error: None,
        last_error_kind: None,
        fenced: 0,
        confirm_ms: None,
        changed_provider: None,
        confirmed_unix_ms: None,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn holding_text(h: &Holding) -> String {
    match h {
        Holding::Ours => "ours".to_string(),
        Holding::Nobody => "nobody".to_string(),
        Holding::Elsewhere(id) => format!("elsewhere: {id}"),
    }
}

#[derive(Default)]
struct Slot {
    in_flight: bool,
    /// The intent last confirmed with the provider.
    done: Option<Intent>,
    /// Re-observe even though `done` matches (resync).
    force: bool,
    attempts: u32,
    due: Option<Instant>,
    /// A change the provider accepted was never confirmed (fenced or timed
    /// out while confirming): it may still become visible until then.
    unsettled_until: Option<Instant>,
}

/// What a finished task reports.
enum Done {
    Action {
        ip: Ipv4Addr,
        intent: Intent,
        result: Result<Confirmation, CaptureError>,
        /// A mutating call was accepted by the provider.
        accepted: bool,
    },
    Sweep(Result<Option<Vec<Ipv4Addr>>, CaptureError>),
}

struct Confirmation {
    observed: Holding,
    changed: bool,
}

struct Worker {
    provider: Arc<dyn CaptureProvider>,
    shared: Arc<Shared>,
    cfg: Arc<ReconcilerConfig>,
    slots: HashMap<Ipv4Addr, Slot>,
    ready: VecDeque<Ipv4Addr>,
    queued: HashSet<Ipv4Addr>,
    timers: BinaryHeap<Reverse<(Instant, Ipv4Addr)>>,
    /// Task id -> the /32 it works on (None: the sweep), for panics.
    tasks: HashMap<tokio::task::Id, Option<Ipv4Addr>>,
    active: bool,
    sweeping: bool,
    throttle: Option<Instant>,
    throttle_level: u32,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut set: JoinSet<Done> = JoinSet::new();
        let mut resync = tokio::time::interval(self.cfg.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            if self.active {
                self.dispatch(&mut set);
            }
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let wake = match (next_timer, self.throttle) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Changed(ip)) => self.changed(ip),
                    Some(Msg::Activate) => {
                        if !self.active {
                            self.active = true;
                            lock(&self.shared.status).active = true;
                            let ips: Vec<Ipv4Addr> = lock(&self.shared.intents).keys().copied().collect();
                            for ip in ips {
                                self.changed(ip);
                            }
                            self.sweep(&mut set);
                        }
                    }
                    Some(Msg::Resync) => self.resync_all(&mut set),
                    None => {
                        // cer-control dropped every handle: finish what runs, stop.
                        while let Some(r) = set.join_next_with_id().await {
                            self.finished(r);
                        }
                        lock(&self.shared.status).running = false;
                        return;
                    }
                },
                Some(r) = set.join_next_with_id(), if !set.is_empty() => self.finished(r),
                _ = sleep_opt(wake) => self.timers_due(),
                _ = resync.tick() => {
                    if self.active {
                        self.resync_all(&mut set);
                    }
                }
            }
            self.publish(set.len());
        }
    }

    fn changed(&mut self, ip: Ipv4Addr) {
        let slot = self.slots.entry(ip).or_default();
        // A new intent acts at once: its backoff starts afresh.
        slot.attempts = 0;
        slot.due = None;
        self.enqueue(ip);
    }

    fn enqueue(&mut self, ip: Ipv4Addr) {
        if self.queued.insert(ip) {
            self.ready.push_back(ip);
        }
    }

    fn resync_all(&mut self, set: &mut JoinSet<Done>) {
        let ips: Vec<Ipv4Addr> = self.slots.keys().copied().collect();
        for ip in ips {
            if let Some(s) = self.slots.get_mut(&ip) {
                if s.due.is_none() {
                    s.force = true;
                }
            }
            self.enqueue(ip);
        }
        self.sweep(set);
    }

    fn sweep(&mut self, set: &mut JoinSet<Done>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let provider = self.provider.clone();
        let timeout = self.cfg.call_timeout;
        let h = set.spawn(async move {
            Done::Sweep(
                bounded(
                    provider.name(),
                    "list held addresses",
                    timeout,
                    provider.held(),
                )
                .await,
            )
        });
        self.tasks.insert(h.id(), None);
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
        if self.throttle.is_some_and(|t| t <= now) {
            self.throttle = None;
            lock(&self.shared.status).throttled_until_ms = None;
        }
        while let Some(Reverse((t, ip))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(s) = self.slots.get_mut(&ip) {
                if s.due == Some(t) {
                    s.due = None;
                    self.enqueue(ip);
                }
            }
        }
    }

    fn dispatch(&mut self, set: &mut JoinSet<Done>) {
        if self.throttle.is_some_and(|t| t > Instant::now()) {
            return;
        }
        while set.len() < self.cfg.concurrency.max(1) {
            let Some(ip) = self.ready.pop_front() else {
                break;
            };
            self.queued.remove(&ip);
            let Some(intent) = self.shared.current(ip) else {
                continue;
            };
            let slot = self.slots.entry(ip).or_default();
            if slot.in_flight {
                // Re-examined when the running action finishes.
                continue;
            }
            if slot.due.is_some() {
                continue;
            }
            if slot.done == Some(intent) && !slot.force {
                continue;
            }
            slot.force = false;
            slot.in_flight = true;
            let provider = self.provider.clone();
            let shared = self.shared.clone();
            let cfg = self.cfg.clone();
            let h = set.spawn(async move {
                let mut accepted = false;
                let result = execute(&*provider, &shared, &cfg, ip, intent, &mut accepted).await;
                Done::Action {
                    ip,
                    intent,
                    result,
                    accepted,
                }
            });
            self.tasks.insert(h.id(), Some(ip));
            let mut st = lock(&self.shared.status);
            st.actions_total += 1;
            if let Some(e) = st.ips.get_mut(&ip) {
                e.phase = Phase::InFlight;
            }
        }
    }

    fn finished(&mut self, r: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        let done = match r {
            Ok((id, d)) => {
                self.tasks.remove(&id);
                d
            }
            Err(e) => {
                let what = self.tasks.remove(&e.id()).flatten();
                let err = CaptureError::new(
                    ErrorKind::Transient,
                    self.provider.name(),
                    "action",
                    format!("provider task ended abnormally: {e}"),
                );
                match what {
                    None => Done::Sweep(Err(err)),
                    Some(ip) => match self.shared.current(ip) {
                        Some(intent) => Done::Action {
                            ip,
                            intent,
                            result: Err(err),
                            accepted: true,
                        },
                        None => return,
                    },
                }
            }
        };
        match done {
            Done::Sweep(r) => self.swept(r),
            Done::Action {
                ip,
                intent,
                result,
                accepted,
            } => self.acted(ip, intent, result, accepted),
        }
    }

    fn swept(&mut self, r: Result<Option<Vec<Ipv4Addr>>, CaptureError>) {
        self.sweeping = false;
        match r {
            Ok(Some(held)) => {
                for ip in held {
                    if !self.cfg.in_pool(ip) || self.shared.current(ip).is_some() {
                        continue;
                    }
                    // Held from an earlier life, named by no route now.
                    log::info!("capture: {ip} is on this NIC but no path names it: releasing");
                    let intent = Intent {
                        desired: Desired::Release,
                        signature: 0,
                    };
                    lock(&self.shared.intents).insert(ip, (intent, Instant::now()));
                    lock(&self.shared.status)
                        .ips
                        .entry(ip)
                        .or_insert_with(|| new_ip_status(intent));
                    self.changed(ip);
                }
            }
            Ok(None) => {}
            Err(e) => log::warn!("capture: sweep of held addresses failed: {e}"),
        }
    }

    fn acted(
        &mut self,
        ip: Ipv4Addr,
        intent: Intent,
        result: Result<Confirmation, CaptureError>,
        accepted: bool,
    ) {
        let now = Instant::now();
        let current = lock(&self.shared.intents).get(&ip).copied();
        let slot = self.slots.entry(ip).or_default();
        slot.in_flight = false;
        if slot.unsettled_until.is_some_and(|t| t <= now) {
            slot.unsettled_until = None;
        }
        if accepted && result.is_err() {
            slot.unsettled_until = Some(now + self.cfg.confirm_timeout);
        } else if accepted {
            // Confirmed by observation: anything older has landed or lost.
            slot.unsettled_until = None;
        }
        let mut st = lock(&self.shared.status);
        let st = &mut *st;
        let e = st.ips.entry(ip).or_insert_with(|| new_ip_status(intent));
        let fenced = matches!(&result, Err(err) if err.kind == ErrorKind::Fenced);
        match result {
            Ok(c) => {
                slot.done = Some(intent);
                slot.attempts = 0;
                self.throttle_level = 0;
                st.confirmed_total += 1;
                e.observed = Some(holding_text(&c.observed));
                e.attempts = 0;
                e.last_error = None;
                e.last_error_kind = None;
                if current.is_some_and(|(i, _)| i == intent) && slot.unsettled_until.is_some() {
                    // Looks right, but an accepted change of an older plan
                    // may still land: look again shortly.
                    e.phase = Phase::Settling;
                    slot.done = None;
                    let due = now + self.cfg.confirm_interval.saturating_mul(10);
                    slot.due = Some(due);
                    self.timers.push(Reverse((due, ip)));
                } else if current.is_some_and(|(i, _)| i == intent) {
                    let since = current.map(|(_, t)| t).unwrap_or(now);
                    e.phase = Phase::Confirmed;
                    e.confirm_ms = Some(now.duration_since(since).as_millis() as u64);
                    e.changed_provider = Some(c.changed);
                    e.confirmed_unix_ms = Some(unix_ms());
                    if c.changed {
                        log::info!(
                            "capture: {ip} {} confirmed by {} ({} ms after the ownership change)",
                            match intent.desired {
                                Desired::Capture => "capture",
                                Desired::Release => "release",
                            },
                            self.provider.name(),
                            now.duration_since(since).as_millis()
                        );
                    }
                }
            }
            Err(err) if err.kind == ErrorKind::Fenced => {
                st.fenced_total += 1;
                e.fenced += 1;
                let cur = current.map(|(i, _)| i);
                log::info!(
                    "capture: fenced stale {:?} of {ip} (planned from {:016x}, now {}) before {}",
                    intent.desired,
                    intent.signature,
                    cur.map(|c| format!("{:?} {:016x}", c.desired, c.signature))
                        .unwrap_or_else(|| "none".into()),
                    err.step
                );
                if st.recent_fenced.len() == RECENT_FENCED {
                    st.recent_fenced.pop_front();
                }
                st.recent_fenced.push_back(FencedAction {
                    ip,
                    planned: intent.desired,
                    planned_signature: format!("{:016x}", intent.signature),
                    current: cur.map(|c| c.desired),
                    current_signature: cur.map(|c| format!("{:016x}", c.signature)),
                    step: err.step.clone(),
                    at_unix_ms: unix_ms(),
                });
            }
            Err(err) => {
                st.errors_total += 1;
                slot.attempts = slot.attempts.saturating_add(1);
                e.attempts = slot.attempts;
                e.last_error = Some(err.to_string());
                e.last_error_kind = Some(err.kind);
                e.phase = Phase::Backoff;
                let delay = backoff(&self.cfg, err.kind, slot.attempts);
                log::warn!(
                    "capture: {ip} {:?} failed (attempt {}): {err}; retry in {} ms",
                    intent.desired,
                    slot.attempts,
                    delay.as_millis()
                );
                if err.kind == ErrorKind::Throttled {
                    self.throttle_level = self.throttle_level.saturating_add(1);
                    let pause = jitter(
                        self.cfg
                            .throttle_base
                            .saturating_mul(1 << self.throttle_level.min(5).saturating_sub(1))
                            .min(self.cfg.backoff_max),
                    );
                    let until = now + pause;
                    self.throttle = Some(self.throttle.map_or(until, |t| t.max(until)));
                    st.throttled_until_ms = Some(unix_ms() + pause.as_millis() as u64);
                }
                if current.is_some_and(|(i, _)| i == intent) {
                    let due = now + delay;
                    slot.due = Some(due);
                    self.timers.push(Reverse((due, ip)));
                    return;
                }
            }
        }
        // The intent moved on while this action ran, or it was fenced (the
        // intent may since have come back to the planned one): plan anew.
        if fenced || current.is_some_and(|(i, _)| i != intent) {
            if let Some(e) = st.ips.get_mut(&ip) {
                e.phase = Phase::Pending;
            }
            // Even when the intent is back to the one last confirmed, look
            // again: the provider may have moved meanwhile.
            slot.force = true;
            if self.queued.insert(ip) {
                self.ready.push_back(ip);
            }
        }
    }

    fn publish(&self, in_flight: usize) {
        lock(&self.shared.status).in_flight = in_flight;
    }
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Full jitter: uniform in [d/2, d].
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

fn backoff(cfg: &ReconcilerConfig, kind: ErrorKind, attempts: u32) -> Duration {
    let d = match kind {
        ErrorKind::Config => cfg.backoff_max,
        ErrorKind::Throttled => cfg
            .throttle_base
            .saturating_mul(1 << attempts.min(16).saturating_sub(1)),
        _ => cfg
            .backoff_base
            .saturating_mul(1 << attempts.min(16).saturating_sub(1)),
    };
    jitter(d.min(cfg.backoff_max))
}

/// One provider call, bounded in time.
async fn bounded<T>(
    provider: &'static str,
    step: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, CaptureError>>,
) -> Result<T, CaptureError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(CaptureError::new(
            ErrorKind::Transient,
            provider,
            step,
            format!("no answer within {} ms", limit.as_millis()),
        )),
    }
}

/// Plans and runs one action: observe, act if needed (fenced), confirm.
async fn execute(
    provider: &dyn CaptureProvider,
    shared: &Shared,
    cfg: &ReconcilerConfig,
    ip: Ipv4Addr,
    intent: Intent,
    accepted: &mut bool,
) -> Result<Confirmation, CaptureError> {
    let name = provider.name();
    // Whether any fence check passed, i.e. a mutating call may have run.
    let passed = std::sync::atomic::AtomicBool::new(false);
    let still = || {
        let ok = shared.current(ip) == Some(intent);
        if ok {
            passed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    };
    let fence = Fence::new(&still);
    let want_ours = intent.desired == Desired::Capture;
    let before = bounded(name, "observe", cfg.call_timeout, provider.observe(ip)).await?;
    if (before == Holding::Ours) == want_ours {
        return Ok(Confirmation {
            observed: before,
            changed: false,
        });
    }
    let r = match intent.desired {
        Desired::Capture => {
            bounded(
                name,
                "capture",
                cfg.call_timeout,
                provider.capture(ip, &fence),
            )
            .await
        }
        Desired::Release => {
            bounded(
                name,
                "release",
                cfg.call_timeout,
                provider.release(ip, &fence),
            )
            .await
        }
    };
    // A mutating call that passed its fence may have been applied, even
    // when it failed or timed out afterwards.
    *accepted = passed.load(std::sync::atomic::Ordering::Relaxed);
    r?;
    let deadline = Instant::now() + cfg.confirm_timeout;
    loop {
        let h = bounded(name, "confirm", cfg.call_timeout, provider.observe(ip)).await?;
        if (h == Holding::Ours) == want_ours {
            return Ok(Confirmation {
                observed: h,
                changed: true,
            });
        }
        // Confirming a stale action is pointless: the new intent replans.
        fence.check(name, "confirm")?;
        if Instant::now() >= deadline {
            return Err(CaptureError::new(
                ErrorKind::Transient,
                name,
                "confirm",
                format!(
                    "the provider accepted the change but still reports {} after {} ms",
                    holding_text(&h),
                    cfg.confirm_timeout.as_millis()
                ),
            ));
        }
        tokio::time::sleep(cfg.confirm_interval).await;
    }
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
