//! The batcher: the reconciler runs one action per /32 (observe, act if
//! needed, confirm), and every provider call those actions make meets here
//! and leaves as the fewest calls the provider's API accepts. It sits
//! between the reconciler and the provider client and is a
//! `CaptureProvider` itself, so the per-/32 logic (fencing, origins,
//! confirmation) stays as it is.
//!
//! Group commit: each call class (observe, capture, release, hand back) has
//! at most one provider call in flight. Whatever arrives while it runs
//! waits, and the next call carries all of it. An idle class that receives a
//! request waits `GATHER` (5 ms) before it calls, so a burst whose requests
//! reach it over a few scheduler ticks (the reconciler's per-/32 tasks run on
//! several threads) leaves as one call: without it, the first /32 of a cloud
//! pair's takeover went alone, its capture call went alone, and the rest
//! followed one provider call later (on Azure about 2 s later: a move is two
//! PUTs with the first one's operation polled in between). 5 ms is nothing
//! next to a provider call (tens of ms to seconds); a class that was busy
//! calls again at once. One /32 alone is one call; two hundred /32s that
//! change owner at once are one `observe_many` and one `capture_many` (which
//! the AWS client sends as one `AssignPrivateIpAddresses` per ENI, the Azure
//! client as one PUT per NIC), and each confirmation round is one
//! observation for all of them.
//! Fencing stays per /32: each item carries its action's fence, checked by
//! the client right before the call that carries it, so a stale /32 leaves
//! the batch and the rest goes on.

use crate::budget::BudgetStatus;
use crate::provider::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding, Item};
use async_trait::async_trait;
use futures_util::FutureExt;
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Most /32s one provider call carries (the rest goes in the next one).
pub const MAX_BATCH: usize = 1000;

/// How long an idle class gathers requests before it calls (see the module
/// documentation).
pub const GATHER: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Observe,
    Capture,
    Release,
    HandBack,
}

const CLASSES: [Class; 4] = [
    Class::Observe,
    Class::Capture,
    Class::Release,
    Class::HandBack,
];

enum Reply {
    Observed(oneshot::Sender<Result<Holding, CaptureError>>),
    Done(oneshot::Sender<Result<(), CaptureError>>),
}

impl Reply {
    fn is_closed(&self) -> bool {
        match self {
            Reply::Observed(s) => s.is_closed(),
            Reply::Done(s) => s.is_closed(),
        }
    }
}

struct Request {
    class: Class,
    ip: Ipv4Addr,
    fence: Option<Fence>,
    to: String,
    reply: Reply,
}

/// What `cerctl` shows of the batching: provider calls and the /32s they
/// carried, per class.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BatchStats {
    pub observe_calls: u64,
    pub observed_ips: u64,
    pub capture_calls: u64,
    pub captured_ips: u64,
    pub release_calls: u64,
    pub released_ips: u64,
    pub hand_back_calls: u64,
    pub handed_back_ips: u64,
    /// The most /32s one call carried.
    pub largest_batch: usize,
}

impl BatchStats {
    fn count(&mut self, class: Class, n: usize) {
        let n64 = n as u64;
        let (calls, ips) = match class {
            Class::Observe => (&mut self.observe_calls, &mut self.observed_ips),
            Class::Capture => (&mut self.capture_calls, &mut self.captured_ips),
            Class::Release => (&mut self.release_calls, &mut self.released_ips),
            Class::HandBack => (&mut self.hand_back_calls, &mut self.handed_back_ips),
        };
        *calls += 1;
        *ips += n64;
        self.largest_batch = self.largest_batch.max(n);
    }
}

/// A provider that batches what it is asked into calls of the provider it
/// wraps. Dropping it ends its driver once the calls in flight return.
pub struct Batcher {
    inner: Arc<dyn CaptureProvider>,
    tx: mpsc::UnboundedSender<Request>,
    stats: Arc<Mutex<BatchStats>>,
}

impl Batcher {
    /// Wraps `inner`; every batched call is bounded by `call_timeout`
    /// (a hung call must not hold its class forever). Needs a tokio runtime.
    pub fn new(inner: Arc<dyn CaptureProvider>, call_timeout: Duration) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(BatchStats::default()));
        tokio::spawn(drive(inner.clone(), rx, stats.clone(), call_timeout));
        Batcher { inner, tx, stats }
    }

    pub fn stats(&self) -> BatchStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn gone(&self, step: &str) -> CaptureError {
        CaptureError::new(
            ErrorKind::Transient,
            self.inner.name(),
            step,
            "provider task ended abnormally (the batched call did not answer)",
        )
    }

    async fn done(
        &self,
        class: Class,
        ip: Ipv4Addr,
        fence: &Fence,
        to: &str,
        step: &str,
    ) -> Result<(), CaptureError> {
        let (tx, rx) = oneshot::channel();
        let req = Request {
            class,
            ip,
            fence: Some(fence.clone()),
            to: to.to_string(),
            reply: Reply::Done(tx),
        };
        if self.tx.send(req).is_err() {
            return Err(self.gone(step));
        }
        rx.await.unwrap_or_else(|_| Err(self.gone(step)))
    }
}

#[async_trait]
impl CaptureProvider for Batcher {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        let (tx, rx) = oneshot::channel();
        let req = Request {
            class: Class::Observe,
            ip,
            fence: None,
            to: String::new(),
            reply: Reply::Observed(tx),
        };
        if self.tx.send(req).is_err() {
            return Err(self.gone("observe"));
        }
        rx.await.unwrap_or_else(|_| Err(self.gone("observe")))
    }

    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        self.done(Class::Capture, ip, fence, "", "capture").await
    }

    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        self.done(Class::Release, ip, fence, "", "release").await
    }

    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        self.done(Class::HandBack, ip, fence, to, "hand back").await
    }

    fn is_own_nic(&self, id: &str) -> bool {
        self.inner.is_own_nic(id)
    }

    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        self.inner.held().await
    }

    fn budgets(&self) -> Vec<BudgetStatus> {
        self.inner.budgets()
    }
}

async fn drive(
    inner: Arc<dyn CaptureProvider>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stats: Arc<Mutex<BatchStats>>,
    call_timeout: Duration,
) {
    let mut queues: HashMap<Class, Vec<Request>> = HashMap::new();
    let mut busy: HashMap<Class, bool> = HashMap::new();
    // An idle class's gathering deadline, set by the first request it
    // receives while idle.
    let mut gather: HashMap<Class, tokio::time::Instant> = HashMap::new();
    let mut set: JoinSet<Class> = JoinSet::new();
    let mut open = true;
    loop {
        let now = tokio::time::Instant::now();
        for class in CLASSES {
            if busy.get(&class).copied().unwrap_or(false) {
                continue;
            }
            let q = queues.entry(class).or_default();
            // A caller that gave up (its own bound ran out) is not acted for.
            q.retain(|r| !r.reply.is_closed());
            if q.is_empty() {
                gather.remove(&class);
                continue;
            }
            if gather.get(&class).is_some_and(|t| *t > now) && q.len() < MAX_BATCH {
                continue;
            }
            gather.remove(&class);
            let take = q.len().min(MAX_BATCH);
            let batch: Vec<Request> = q.drain(..take).collect();
            stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .count(class, batch.len());
            busy.insert(class, true);
            let inner = inner.clone();
            set.spawn(async move {
                // A panicking client drops the batch's reply channels: each
                // caller gets an error, and the class is free again.
                let call = std::panic::AssertUnwindSafe(run(&*inner, class, batch, call_timeout));
                if call.catch_unwind().await.is_err() {
                    log::warn!("capture: a batched provider call panicked");
                }
                class
            });
        }
        if !open && set.is_empty() {
            return;
        }
        let gathered = gather.values().min().copied();
        tokio::select! {
            r = rx.recv(), if open => match r {
                Some(req) => {
                    arrive(req, &busy, &mut gather, &mut queues);
                    while let Ok(req) = rx.try_recv() {
                        arrive(req, &busy, &mut gather, &mut queues);
                    }
                }
                None => open = false,
            },
            _ = sleep_until(gathered) => {}
            Some(r) = set.join_next(), if !set.is_empty() => {
                if let Ok(class) = r {
                    busy.insert(class, false);
                }
            }
        }
    }
}

/// Queues a request; the first one an idle class receives starts its
/// gathering time.
fn arrive(
    req: Request,
    busy: &HashMap<Class, bool>,
    gather: &mut HashMap<Class, tokio::time::Instant>,
    queues: &mut HashMap<Class, Vec<Request>>,
) {
    if !busy.get(&req.class).copied().unwrap_or(false) {
        gather
            .entry(req.class)
            .or_insert_with(|| tokio::time::Instant::now() + GATHER);
    }
    queues.entry(req.class).or_default().push(req);
}

/// Sleeps until `t`, or forever.
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One batched provider call: answers every request of the batch.
async fn run(inner: &dyn CaptureProvider, class: Class, batch: Vec<Request>, limit: Duration) {
    let name = inner.name();
    let timed_out = |step: &str| {
        CaptureError::new(
            ErrorKind::Transient,
            name,
            step,
            format!("no answer within {} ms", limit.as_millis()),
        )
    };
    match class {
        Class::Observe => {
            let mut ips: Vec<Ipv4Addr> = batch.iter().map(|r| r.ip).collect();
            ips.sort_unstable();
            ips.dedup();
            let answers = match tokio::time::timeout(limit, inner.observe_many(&ips)).await {
                Ok(a) if a.len() == ips.len() => a,
                Ok(a) => {
                    let e = CaptureError::new(
                        ErrorKind::Transient,
                        name,
                        "observe",
                        format!("{} answers for {} addresses", a.len(), ips.len()),
                    );
                    ips.iter().map(|_| Err(e.clone())).collect()
                }
                Err(_) => ips.iter().map(|_| Err(timed_out("observe"))).collect(),
            };
            let by_ip: HashMap<Ipv4Addr, Result<Holding, CaptureError>> =
                ips.into_iter().zip(answers).collect();
            for r in batch {
                if let Reply::Observed(tx) = r.reply {
                    let a = by_ip.get(&r.ip).cloned().unwrap_or_else(|| {
                        Err(CaptureError::new(
                            ErrorKind::Transient,
                            name,
                            "observe",
                            "no answer for this address",
                        ))
                    });
                    let _ = tx.send(a);
                }
            }
        }
        Class::Capture | Class::Release | Class::HandBack => {
            let step = match class {
                Class::Capture => "capture",
                Class::Release => "release",
                _ => "hand back",
            };
            let items: Vec<Item> = batch
                .iter()
                .map(|r| Item {
                    ip: r.ip,
                    fence: r.fence.clone().unwrap_or_else(Fence::open),
                })
                .collect();
            let to: Vec<String> = batch.iter().map(|r| r.to.clone()).collect();
            let call = async {
                match class {
                    Class::Capture => inner.capture_many(&items).await,
                    Class::Release => inner.release_many(&items).await,
                    _ => inner.hand_back_many(&items, &to).await,
                }
            };
            let answers = match tokio::time::timeout(limit, call).await {
                Ok(a) if a.len() == items.len() => a,
                Ok(a) => {
                    let e = CaptureError::new(
                        ErrorKind::Transient,
                        name,
                        step,
                        format!("{} answers for {} addresses", a.len(), items.len()),
                    );
                    items.iter().map(|_| Err(e.clone())).collect()
                }
                Err(_) => items.iter().map(|_| Err(timed_out(step))).collect(),
            };
            for (r, a) in batch.into_iter().zip(answers) {
                if let Reply::Done(tx) = r.reply {
                    let _ = tx.send(a);
                }
            }
        }
    }
}
