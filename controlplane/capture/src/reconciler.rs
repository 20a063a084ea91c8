//! The capture reconciler: desired state (from BGP ownership, pushed by
//! cer-control as an `Intent` per /32) against observed state (asked of the
//! provider), in the background. Idempotent (observe first, act only on a
//! difference, confirm by observing again), exponential backoff with full
//! jitter per /32 plus a global pause when the provider throttles, bounded
//! concurrency. A restart re-derives the desired state from BGP and the
//! observed one from the provider; the one thing neither knows is kept in
//! `origin`: which holder each captured /32 was taken from.
//!
//! Hand-back: a capture records the holder it observed right before its
//! provider call (another NIC, or nobody), persisted before the call. A
//! release of that /32 gives it back to that NIC (`CaptureProvider::
//! hand_back`) and is confirmed once another NIC holds it; only a /32 that
//! nobody held is released to nobody. If the provider says that NIC no
//! longer exists (deleted with its VM), the /32 is released to nobody: that
//! is where the deletion would have left it had it never been captured, and
//! where a replacement workload can take it. The confirmation carries a note
//! naming the gone NIC (`cerctl explain`); nothing is retried forever.
//!
//! Fencing: every action carries the intent (desired state + path
//! signature) it was planned from. The provider re-checks it right before
//! each mutating call; the confirmation loop re-checks it between polls. A
//! stale action is skipped and counted (`Status::fenced_total`,
//! `recent_fenced`), never executed.

use crate::batch::{BatchStats, Batcher};
use crate::budget::BudgetStatus;
use crate::origin::{Origin, Origins};
use crate::provider::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding};
use cer_shared::stall::StallWatch;
use cer_shared::state_file::StateFileError;
use rand::Rng;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
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
    /// Owned by a remote node, but the other CER of this cloud pair is the
    /// active capturer: this router does nothing with it (capturing would
    /// move it away from the active one; releasing is the active one's
    /// call). Observed only, for the operator.
    Standby,
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
    /// /32 actions in flight at once. Their provider calls meet in the
    /// batcher (`batch.rs`), which sends them as the fewest calls the API
    /// accepts, paced by the client's API budget: this bounds memory and
    /// the size of a batch, not the provider's load.
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
    /// Where the origin of each captured /32 persists (None: memory only,
    /// lost with the process).
    pub origins_file: Option<PathBuf>,
    /// The process's stall watch. After a stall no mutating call goes out
    /// for `stall_settle` (BGP and BFD catch up with what happened while this
    /// router was away: intents planned from the old view are fenced, the
    /// transient ones never act), then every managed /32 is observed afresh
    /// before anything is changed.
    pub stall: Option<Arc<StallWatch>>,
    pub stall_settle: Duration,
    /// Cloud pairs: the provider ids of the other CER's NICs. A /32 taken
    /// over from one of them was not taken from a workload: nothing to hand
    /// back to (like this router's own NIC).
    pub pair_nics: Vec<String>,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            concurrency: 512,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            throttle_base: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(30),
            confirm_interval: Duration::from_millis(100),
            call_timeout: Duration::from_secs(20),
            resync: Duration::from_secs(60),
            pool: Vec::new(),
            origins_file: None,
            stall: None,
            stall_settle: Duration::from_secs(3),
            pair_nics: Vec::new(),
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
    /// Cannot be captured: every NIC this router may capture onto is at the
    /// provider's address quota. Alarmed once; tried again when one of this
    /// router's addresses is released, and at the periodic resync.
    OverQuota,
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
    /// The holder this router took the /32 from when it captured it ("nobody"
    /// or a NIC id): a release hands it back there. None: no capture of it
    /// is remembered (a release leaves it on nobody).
    pub captured_from: Option<String>,
    /// Something the operator should know about how the current intent was
    /// confirmed (a release to nobody because the NIC it was captured from is
    /// gone); cleared when the desired state changes.
    pub note: Option<String>,
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
    /// Stalls of this process that paused every provider mutation and
    /// re-observed every /32 (`ReconcilerConfig::stall`).
    pub stall_holds: u64,
    /// Mutations are paused after a stall until this time (unix ms).
    pub stall_hold_until_ms: Option<u64>,
    pub recent_fenced: VecDeque<FencedAction>,
    /// Releases that could not hand a /32 back because the NIC it was
    /// captured from no longer exists, and released it to nobody instead.
    pub released_holder_gone_total: u64,
    /// Where the origins of captured /32s persist (None: memory only).
    pub origins_file: Option<String>,
    /// /32s whose origin is remembered (captured here, not yet released).
    pub origins: usize,
    /// The last failure to persist the origins (the memory still has them).
    pub origins_error: Option<String>,
    /// /32s that cannot be captured because every NIC is at its quota.
    pub over_quota: usize,
    /// The provider's words for the last quota refusal (which quota, which
    /// instance type or NIC), while any /32 is over quota.
    pub quota_alarm: Option<String>,
    /// Provider calls made and the /32s they carried.
    pub batch: BatchStats,
    /// The client-side API budgets (token buckets).
    pub budgets: Vec<BudgetStatus>,
    /// Time from each action's dispatch to its result (confirmed, failed or
    /// fenced), for `/metrics`.
    pub action_seconds: crate::latency::LatencyHistogram,
    pub ips: BTreeMap<Ipv4Addr, IpStatus>,
}

struct Shared {
    intents: Mutex<HashMap<Ipv4Addr, (Intent, Instant)>>,
    status: Mutex<Status>,
    origins: Mutex<Origins>,
    batcher: Mutex<Option<Arc<Batcher>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn current(&self, ip: Ipv4Addr) -> Option<Intent> {
        lock(&self.intents).get(&ip).map(|(i, _)| *i)
    }

    fn origin_text(&self, ip: Ipv4Addr) -> Option<String> {
        lock(&self.origins).get(ip).map(Origin::text)
    }

    /// Mirrors a change of the origin memory into the status.
    fn origins_changed(&self, ip: Ipv4Addr, saved: Result<(), StateFileError>) {
        let (from, count) = {
            let o = lock(&self.origins);
            (o.get(ip).map(Origin::text), o.len())
        };
        let mut st = lock(&self.status);
        st.origins = count;
        match saved {
            Ok(()) => {}
            Err(e) => {
                log::error!("capture: {e}");
                st.origins_error = Some(e.to_string());
            }
        }
        if let Some(e) = st.ips.get_mut(&ip) {
            e.captured_from = from;
        }
    }

    /// Write-ahead for a capture: remembers the holder `ip` is about to be
    /// taken from. Another NIC replaces what was remembered (a re-capture
    /// from a NIC that took the /32 while it was captured, e.g. a workload
    /// re-created with a new NIC: the release gives it to the NIC it was
    /// last taken from); nobody does not replace a NIC (the /32 left that
    /// NIC half-way through an earlier action, e.g. between Azure's steps).
    /// `Some(previous)` when the memory changed, for `restore_origin`.
    ///
    /// A /32 taken over from the other CER of a cloud pair (`pair_nics`) is
    /// recorded like one taken from nobody: it keeps what this router
    /// remembered before, if anything (the workload it once took it from).
    fn remember_origin(
        &self,
        ip: Ipv4Addr,
        before: &Holding,
        provider: &dyn CaptureProvider,
        pair_nics: &[String],
    ) -> Option<Option<Origin>> {
        let holder = match before {
            Holding::Elsewhere(id) if pair_nics.contains(id) => None,
            Holding::Elsewhere(id) if !provider.is_own_nic(id) => Some(id.clone()),
            Holding::Nobody => None,
            Holding::Elsewhere(_) | Holding::Ours | Holding::Detached(_) => return None,
        };
        let (previous, saved) = {
            let mut o = lock(&self.origins);
            let previous = o.get(ip).cloned();
            match (&previous, &holder) {
                (Some(_), None) => return None,
                (Some(p), Some(h)) if p.holder.as_ref() == Some(h) => return None,
                _ => {}
            }
            let saved = o.insert(
                ip,
                Origin {
                    holder,
                    since_unix_ms: unix_ms(),
                },
            );
            (previous, saved)
        };
        self.origins_changed(ip, saved);
        Some(previous)
    }

    /// Puts back what `remember_origin` replaced (the capture never reached
    /// the provider).
    fn restore_origin(&self, ip: Ipv4Addr, previous: Option<Origin>) {
        match previous {
            None => self.forget_origin(ip),
            Some(p) => {
                let saved = lock(&self.origins).insert(ip, p);
                self.origins_changed(ip, saved);
            }
        }
    }

    /// Forgets the origin of `ip` (released).
    fn forget_origin(&self, ip: Ipv4Addr) {
        let saved = lock(&self.origins).remove(ip);
        match saved {
            Ok(false) => {}
            Ok(true) => self.origins_changed(ip, Ok(())),
            Err(e) => self.origins_changed(ip, Err(e)),
        }
    }

    /// The NIC a release of `ip` hands it back to: the remembered holder,
    /// unless nobody held it or it names this router's own NIC (nothing to
    /// hand back to: released to nobody).
    fn hand_back_target(
        &self,
        ip: Ipv4Addr,
        provider: &dyn CaptureProvider,
        pair_nics: &[String],
    ) -> Option<String> {
        let holder = lock(&self.origins).get(ip)?.holder.clone()?;
        if pair_nics.contains(&holder) {
            log::warn!(
                "capture: the holder remembered for {ip} ({holder}) is the other CER of this pair: released to nobody"
            );
            return None;
        }
        if provider.is_own_nic(&holder) {
            log::warn!(
                "capture: the holder remembered for {ip} ({holder}) is this router's own NIC: nothing to hand it back to, released to nobody"
            );
            return None;
        }
        Some(holder)
    }
}

enum Msg {
    Changed(Ipv4Addr),
    Activate,
    Resync,
    Retune(Box<ReconcilerConfig>),
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
    /// A reconciler with the origins remembered in `cfg.origins_file`; a
    /// file that cannot be read is an error naming it (cer-control stops on
    /// it: fix or remove the file). Remembered /32s outside the pool are
    /// forgotten.
    pub fn open(cfg: ReconcilerConfig) -> Result<Reconciler, StateFileError> {
        let origins = Origins::load(cfg.origins_file.as_deref())?;
        Ok(Reconciler::build(cfg, origins, None))
    }

    /// As `open`, but a file that cannot be read is neither used nor
    /// overwritten: the origins are then kept in memory only, and the error
    /// is shown (`Status::origins_error`).
    pub fn new(cfg: ReconcilerConfig) -> Reconciler {
        match Origins::load(cfg.origins_file.as_deref()) {
            Ok(origins) => Reconciler::build(cfg, origins, None),
            Err(e) => {
                log::error!("capture: {e}; origins are kept in memory only");
                Reconciler::build(cfg, Origins::default(), Some(e.to_string()))
            }
        }
    }

    fn build(cfg: ReconcilerConfig, mut origins: Origins, error: Option<String>) -> Reconciler {
        let mut status = Status {
            origins_file: origins.path().map(|p| p.display().to_string()),
            origins_error: error,
            ..Status::default()
        };
        match origins.retain(|ip| cfg.in_pool(ip)) {
            Ok(0) => {}
            Ok(n) => log::info!("capture: forgot the origins of {n} /32(s) outside the pool"),
            Err(e) => status.origins_error = Some(e.to_string()),
        }
        status.origins = origins.len();
        if !origins.is_empty() {
            log::info!(
                "capture: {} captured /32(s) remembered with the holder to hand them back to",
                origins.len()
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Reconciler {
            shared: Arc::new(Shared {
                intents: Mutex::new(HashMap::new()),
                status: Mutex::new(status),
                origins: Mutex::new(origins),
                batcher: Mutex::new(None),
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
        log_intent(ip, intent);
        let from = self.shared.origin_text(ip);
        {
            let mut s = lock(&self.shared.status);
            let active = s.active;
            let e = s.ips.entry(ip).or_insert_with(|| new_ip_status(intent));
            e.captured_from = from;
            if e.desired != intent.desired {
                e.note = None;
            }
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

    /// A reload's new tuning: concurrency, confirm timeout, resync interval,
    /// backoff ceiling, the pool and the pair's NICs. Actions already in
    /// flight finish with the tuning they started with; the call timeout,
    /// the origins file and the stall watch are fixed at start. A narrower
    /// pool stops the sweep from touching what left it; a wider one is
    /// swept at once.
    pub fn retune(&self, cfg: ReconcilerConfig) {
        let _ = self.tx.send(Msg::Retune(Box::new(cfg)));
    }

    /// Shown while the provider client cannot be built (e.g. no credentials).
    pub fn set_provider_error(&self, provider: &str, error: Option<String>) {
        let mut s = lock(&self.shared.status);
        s.provider = provider.to_string();
        s.provider_error = error;
    }

    pub fn status(&self) -> Status {
        let mut st = lock(&self.shared.status).clone();
        if let Some(b) = lock(&self.shared.batcher).as_ref() {
            st.batch = b.stats();
            st.budgets = b.budgets();
        }
        st
    }

    pub fn ip_status(&self, ip: Ipv4Addr) -> Option<IpStatus> {
        lock(&self.shared.status).ips.get(&ip).cloned()
    }

    /// Starts the loop on the current tokio runtime. Only the first call
    /// starts one; later calls return None.
    pub fn start(&self, provider: Arc<dyn CaptureProvider>) -> Option<JoinHandle<()>> {
        let rx = lock(&self.rx).take()?;
        let batcher = Arc::new(Batcher::new(provider, self.cfg.call_timeout));
        *lock(&self.shared.batcher) = Some(batcher.clone());
        let provider: Arc<dyn CaptureProvider> = batcher;
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
            stall_hold: None,
            stall_epoch: self.cfg.stall.as_ref().map_or(0, |w| w.epoch()),
            over_quota: BTreeMap::new(),
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
        captured_from: None,
        note: None,
    }
}

/// The audit trail of fencing: from this instant every action planned from
/// an older intent of `ip` is stale (the lab's chaos soak compares these
/// lines with the provider's journal of executed mutations).
fn log_intent(ip: Ipv4Addr, intent: Intent) {
    log::info!(
        "capture: intent {ip} {:?} signature {:016x} at unix_ms {}",
        intent.desired,
        intent.signature,
        unix_ms()
    );
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
        Holding::Detached(id) => {
            format!("detached: on this router's NIC {id}, which is not attached to its instance")
        }
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
        /// From dispatch to result (None: the task ended abnormally).
        took: Option<Duration>,
    },
    Sweep(Result<Option<Vec<Ipv4Addr>>, CaptureError>),
}

struct Confirmation {
    observed: Holding,
    changed: bool,
    /// Set when a hand-back found the NIC gone and released to nobody: what
    /// to tell the operator.
    holder_gone: Option<String>,
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
    /// No mutation before this instant (after a stall).
    stall_hold: Option<Instant>,
    stall_epoch: u64,
    /// /32s refused for quota, with the intent refused (tried again when
    /// room appears or at the resync; never on a backoff timer).
    over_quota: BTreeMap<Ipv4Addr, Intent>,
}

impl Worker {
    /// Takes the tunable part of `t` (see `Reconciler::retune`).
    fn retune(&mut self, t: ReconcilerConfig) {
        let mut c = (*self.cfg).clone();
        c.concurrency = t.concurrency;
        c.confirm_timeout = t.confirm_timeout;
        c.resync = t.resync;
        c.backoff_max = t.backoff_max;
        c.pool = t.pool;
        c.pair_nics = t.pair_nics;
        log::info!(
            "capture: retuned (concurrency {}, confirm timeout {:?}, resync {:?}, backoff max {:?}, {} pool prefix(es))",
            c.concurrency,
            c.confirm_timeout,
            c.resync,
            c.backoff_max,
            c.pool.len()
        );
        self.cfg = Arc::new(c);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut set: JoinSet<Done> = JoinSet::new();
        let mut resync = tokio::time::interval(self.cfg.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        // While holding after a stall, look for the end of it (and for new
        // stalls) at least this often.
        let mut stall_poll = tokio::time::interval(Duration::from_millis(100));
        stall_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.check_stall(&mut set);
            if self.active {
                self.dispatch(&mut set);
            }
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let wake = [next_timer, self.throttle, self.stall_hold]
                .into_iter()
                .flatten()
                .min();
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
                    Some(Msg::Retune(t)) => {
                        if t.resync != self.cfg.resync {
                            resync = tokio::time::interval_at(
                                tokio::time::Instant::now() + t.resync,
                                t.resync,
                            );
                            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        let wider = t.pool.iter().any(|p| !self.cfg.pool.contains(p));
                        self.retune(*t);
                        if wider && self.active {
                            self.sweep(&mut set);
                        }
                    }
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
                _ = stall_poll.tick(), if self.cfg.stall.is_some() => {}
            }
            self.publish(set.len());
        }
    }

    /// A new stall: pause mutations for the settle time and mark every /32
    /// to be observed afresh; the end of a pause.
    fn check_stall(&mut self, set: &mut JoinSet<Done>) {
        let Some(w) = self.cfg.stall.as_ref() else {
            return;
        };
        let now = Instant::now();
        let e = w.epoch();
        if e != self.stall_epoch || w.stalled_now() {
            self.stall_epoch = e;
            let fresh = self.stall_hold.is_none();
            self.stall_hold = Some(now + self.cfg.stall_settle);
            let mut st = lock(&self.shared.status);
            if fresh {
                st.stall_holds += 1;
                log::warn!(
                    "capture: stalled; no provider change for {} ms, then every /32 is observed afresh",
                    self.cfg.stall_settle.as_millis()
                );
            }
            st.stall_hold_until_ms = Some(unix_ms() + self.cfg.stall_settle.as_millis() as u64);
        } else if self.stall_hold.is_some_and(|t| t <= now) {
            self.stall_hold = None;
            lock(&self.shared.status).stall_hold_until_ms = None;
            log::info!("capture: settled after a stall: observing every /32 afresh");
            if self.active {
                self.resync_all(set);
            }
        }
    }

    fn changed(&mut self, ip: Ipv4Addr) {
        if self.over_quota.remove(&ip).is_some() {
            let mut st = lock(&self.shared.status);
            st.over_quota = self.over_quota.len();
            if self.over_quota.is_empty() {
                st.quota_alarm = None;
            }
        }
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
        if self.throttle.is_some_and(|t| t > Instant::now()) || self.stall_hold.is_some() {
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
                let started = Instant::now();
                let result = execute(&*provider, &shared, &cfg, ip, intent, &mut accepted).await;
                Done::Action {
                    ip,
                    intent,
                    result,
                    accepted,
                    took: Some(started.elapsed()),
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
                            took: None,
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
                took,
            } => {
                if let Some(t) = took {
                    lock(&self.shared.status).action_seconds.observe(t);
                }
                self.acted(ip, intent, result, accepted)
            }
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
                    log::info!(
                        "capture: {ip} is on this NIC but no path names it: releasing it{}",
                        match self.shared.origin_text(ip) {
                            Some(from) if from != "nobody" => format!(" (back to {from})"),
                            _ => String::new(),
                        }
                    );
                    let intent = Intent {
                        desired: Desired::Release,
                        signature: 0,
                    };
                    lock(&self.shared.intents).insert(ip, (intent, Instant::now()));
                    log_intent(ip, intent);
                    let from = self.shared.origin_text(ip);
                    lock(&self.shared.status)
                        .ips
                        .entry(ip)
                        .or_insert_with(|| new_ip_status(intent))
                        .captured_from = from;
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
        let released = self.record(ip, intent, result, accepted);
        if released {
            // The release is final: the episode that began with the capture
            // is over, and so is the memory of where it came from.
            self.shared.forget_origin(ip);
        }
    }

    /// Updates the slot and the status after an action; true when a release
    /// of the current intent is confirmed for good.
    fn record(
        &mut self,
        ip: Ipv4Addr,
        intent: Intent,
        result: Result<Confirmation, CaptureError>,
        accepted: bool,
    ) -> bool {
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
        let mut released = false;
        let mut st = lock(&self.shared.status);
        let st = &mut *st;
        let e = st.ips.entry(ip).or_insert_with(|| new_ip_status(intent));
        let fenced = matches!(&result, Err(err) if err.kind == ErrorKind::Fenced);
        if !matches!(&result, Err(err) if err.kind == ErrorKind::Quota)
            && self.over_quota.remove(&ip).is_some()
        {
            st.over_quota = self.over_quota.len();
            if self.over_quota.is_empty() {
                st.quota_alarm = None;
            }
        }
        match result {
            Ok(c) => {
                if c.changed && intent.desired == Desired::Release {
                    // One of our addresses left: room for one /32 the quota
                    // refused (the next one waiting: a retry per freed slot,
                    // never all of them at once).
                    if let Some(q) = self
                        .over_quota
                        .keys()
                        .copied()
                        .find(|q| !self.queued.contains(q))
                    {
                        self.queued.insert(q);
                        self.ready.push_back(q);
                    }
                }
                slot.done = Some(intent);
                slot.attempts = 0;
                self.throttle_level = 0;
                st.confirmed_total += 1;
                e.observed = Some(holding_text(&c.observed));
                e.attempts = 0;
                e.last_error = None;
                e.last_error_kind = None;
                if let Some(n) = c.holder_gone {
                    // Kept until the intent changes: a later look that
                    // finds nothing to do does not erase why.
                    log::warn!("capture: {ip}: {n}");
                    st.released_holder_gone_total += 1;
                    e.note = Some(n);
                }
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
                    released = intent.desired == Desired::Release;
                    if c.changed {
                        log::info!(
                            "capture: {ip} {} confirmed by {} ({} ms after the ownership change; {})",
                            match intent.desired {
                                Desired::Capture => "capture",
                                Desired::Release => "release",
                                Desired::Standby => "standby",
                            },
                            self.provider.name(),
                            now.duration_since(since).as_millis(),
                            match &c.observed {
                                Holding::Ours => "on this router's NIC".to_string(),
                                Holding::Nobody => "on nobody".to_string(),
                                Holding::Elsewhere(id) => format!("held by {id}"),
                                Holding::Detached(id) => {
                                    format!("on this router's detached NIC {id}")
                                }
                            }
                        );
                    }
                }
            }
            Err(err) if err.kind == ErrorKind::Quota => {
                // An alarm, not a retry loop: no backoff timer. Tried again
                // when one of our addresses is released, or at the resync.
                // Not done, even if this intent was confirmed before (a
                // resync found it changed): the retry must act.
                slot.done = None;
                st.errors_total += 1;
                e.attempts = e.attempts.saturating_add(1);
                e.last_error = Some(err.to_string());
                e.last_error_kind = Some(err.kind);
                e.phase = Phase::OverQuota;
                if self.over_quota.insert(ip, intent).is_none() {
                    log::warn!(
                        "capture: {ip} cannot be captured: {err} (alarmed; tried again when an address of this router is released, or at the resync)"
                    );
                }
                st.over_quota = self.over_quota.len();
                st.quota_alarm = Some(err.to_string());
                if current.is_some_and(|(i, _)| i == intent) {
                    return false;
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
                // Not done, even if this intent was confirmed before (a
                // resync found it changed, e.g. on a detached NIC): the
                // backoff's retry must act, not be skipped as confirmed.
                slot.done = None;
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
                    return false;
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
        released
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
        ErrorKind::Config | ErrorKind::HolderGone | ErrorKind::Quota => cfg.backoff_max,
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
///
/// Capture: remember where the /32 comes from (write-ahead), then take it.
/// Release: hand it back to the remembered holder, or, when nobody held it,
/// remove it from our NIC.
async fn execute(
    provider: &dyn CaptureProvider,
    shared: &Arc<Shared>,
    cfg: &ReconcilerConfig,
    ip: Ipv4Addr,
    intent: Intent,
    accepted: &mut bool,
) -> Result<Confirmation, CaptureError> {
    let name = provider.name();
    // Whether any fence check passed, i.e. a mutating call may have run.
    let passed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Stale when the intent moved on, and while this process is stalled (a
    // call resuming right after a thaw, before the pause above begins).
    // The epoch the action was planned in must still be the current one.
    let stall = cfg.stall.clone();
    let epoch = stall.as_ref().map(|w| w.epoch());
    let still = {
        let shared = shared.clone();
        let passed = passed.clone();
        move || {
            let ok = shared.current(ip) == Some(intent)
                && !stall
                    .as_ref()
                    .is_some_and(|w| w.stalled_now() || Some(w.epoch()) != epoch);
            if ok {
                passed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }
    };
    let fence = Fence::new(still);
    let before = bounded(name, "observe", cfg.call_timeout, provider.observe(ip)).await?;
    // The provider's last answer, shown even when the action then fails (a
    // /32 on a detached NIC of ours, a capture refused).
    if let Some(e) = lock(&shared.status).ips.get_mut(&ip) {
        e.observed = Some(holding_text(&before));
    }
    let as_is = |observed: Holding| {
        Ok(Confirmation {
            observed,
            changed: false,
            holder_gone: None,
        })
    };
    match intent.desired {
        Desired::Capture => {
            if before == Holding::Ours {
                return as_is(before);
            }
            let replaced = shared.remember_origin(ip, &before, provider, &cfg.pair_nics);
            let r = bounded(
                name,
                "capture",
                cfg.call_timeout,
                provider.capture(ip, &fence),
            )
            .await;
            // A mutating call that passed its fence may have been applied,
            // even when it failed or timed out afterwards.
            *accepted = passed.load(std::sync::atomic::Ordering::Relaxed);
            if let (Err(_), false, Some(previous)) = (&r, *accepted, replaced) {
                // Nothing reached the provider: nothing new to remember.
                shared.restore_origin(ip, previous);
            }
            r?;
            confirm(provider, cfg, &fence, ip, |h| *h == Holding::Ours).await
        }
        // The pair's active CER decides: observed, never changed.
        Desired::Standby => as_is(before),
        Desired::Release => match shared.hand_back_target(ip, provider, &cfg.pair_nics) {
            None => {
                // On our NIC, attached or not: ours to remove.
                if !before.on_our_nic() {
                    return as_is(before);
                }
                let r = bounded(
                    name,
                    "release",
                    cfg.call_timeout,
                    provider.release(ip, &fence),
                )
                .await;
                *accepted = passed.load(std::sync::atomic::Ordering::Relaxed);
                r?;
                confirm(provider, cfg, &fence, ip, |h| !h.on_our_nic()).await
            }
            Some(to) => {
                // Held by another NIC (the one it came from, or whoever took
                // it since): not ours to move.
                if matches!(before, Holding::Elsewhere(_)) {
                    return as_is(before);
                }
                let r = bounded(
                    name,
                    "hand back",
                    cfg.call_timeout,
                    provider.hand_back(ip, &to, &fence),
                )
                .await;
                *accepted = passed.load(std::sync::atomic::Ordering::Relaxed);
                match r {
                    Err(e) if e.kind == ErrorKind::HolderGone => {
                        return release_for_a_gone_holder(
                            provider, cfg, &fence, &passed, accepted, ip, &to, e,
                        )
                        .await;
                    }
                    r => r?,
                }
                // Confirmed once another NIC holds it (Azure passes through
                // nobody between its two steps).
                confirm(provider, cfg, &fence, ip, |h| {
                    matches!(h, Holding::Elsewhere(_))
                })
                .await
            }
        },
    }
}

/// The provider refused a hand-back because the NIC the /32 was captured
/// from no longer exists (`ErrorKind::HolderGone`: deleted, e.g. with its
/// VM). Deleting that NIC would have freed the /32 had it never been
/// captured, so that is where it goes: released to nobody (fenced like any
/// release), confirmed, and the confirmation notes the gone NIC for
/// `cerctl explain`. A replacement workload can then take the address; an
/// ownership change back to a remote node captures it from nobody.
#[allow(clippy::too_many_arguments)]
async fn release_for_a_gone_holder(
    provider: &dyn CaptureProvider,
    cfg: &ReconcilerConfig,
    fence: &Fence,
    passed: &std::sync::atomic::AtomicBool,
    accepted: &mut bool,
    ip: Ipv4Addr,
    to: &str,
    gone: CaptureError,
) -> Result<Confirmation, CaptureError> {
    let name = provider.name();
    log::warn!(
        "capture: {ip}: cannot hand it back, {}; releasing it to nobody",
        gone.message
    );
    let note = format!(
        "released to nobody, where deleting the NIC it was captured from ({to}) would have left it ({}: {})",
        gone.step, gone.message
    );
    let now = bounded(name, "observe", cfg.call_timeout, provider.observe(ip)).await?;
    let c = if now.on_our_nic() {
        let r = bounded(
            name,
            "release",
            cfg.call_timeout,
            provider.release(ip, fence),
        )
        .await;
        *accepted = passed.load(std::sync::atomic::Ordering::Relaxed);
        r?;
        confirm(provider, cfg, fence, ip, |h| !h.on_our_nic()).await?
    } else {
        // Already off our NIC: an Azure hand-back whose holder vanished
        // between the two steps, or an operator removed it.
        Confirmation {
            observed: now,
            changed: *accepted,
            holder_gone: None,
        }
    };
    Ok(Confirmation {
        holder_gone: Some(note),
        ..c
    })
}

/// Observes until the provider shows what an accepted change wants.
async fn confirm(
    provider: &dyn CaptureProvider,
    cfg: &ReconcilerConfig,
    fence: &Fence,
    ip: Ipv4Addr,
    wanted: impl Fn(&Holding) -> bool,
) -> Result<Confirmation, CaptureError> {
    let name = provider.name();
    let start = Instant::now();
    let deadline = start + cfg.confirm_timeout;
    // On a detached NIC of ours for this long: not a provider lag but a NIC
    // detached while the action was in flight. Planned again at once (not
    // after the whole confirm timeout): a capture then goes to an attached
    // NIC.
    let detached_for = cfg.confirm_timeout / 4;
    let mut detached_since: Option<Instant> = None;
    loop {
        let h = bounded(name, "confirm", cfg.call_timeout, provider.observe(ip)).await?;
        if wanted(&h) {
            return Ok(Confirmation {
                observed: h,
                changed: true,
                holder_gone: None,
            });
        }
        // Confirming a stale action is pointless: the new intent replans.
        fence.check(name, "confirm")?;
        if let Holding::Detached(nic) = &h {
            let since = *detached_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= detached_for {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    name,
                    "confirm",
                    format!(
                        "{ip} is on this router's NIC {nic}, which is detached from its instance (detached while the change was in flight): planned again"
                    ),
                ));
            }
        } else {
            detached_since = None;
        }
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
