//! Reconciler and fencing against a scripted provider: an in-memory network
//! with per-call latency, asynchronous visibility, scripted failures and a
//! log of every mutating call it actually executed. Time is tokio's paused
//! clock, so the interleavings are exact.

use super::*;
use crate::provider::Item;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};

const ME: &str = "eni-me";

#[derive(Default)]
struct Net {
    /// Visible holder of each address.
    holders: HashMap<Ipv4Addr, String>,
    /// Accepted changes not yet visible: (visible at, ip, new holder or None).
    pending: Vec<(Instant, Ipv4Addr, Option<String>)>,
    /// Mutating calls executed, in order: "capture IP" / "release IP" /
    /// "hand back IP to NIC".
    calls: Vec<String>,
    /// NICs that no longer exist (a hand-back to them is refused).
    gone: HashSet<String>,
    /// Errors returned by the next calls, in order.
    failures: VecDeque<ErrorKind>,
    /// Steal an address to this holder on the next observe.
    steal: Option<(Ipv4Addr, String)>,
    list_held: bool,
    panic_on_capture: bool,
    /// Provider calls made, one per batch: ("observe" | "capture" |
    /// "release" | "hand back", addresses carried).
    batches: Vec<(&'static str, usize)>,
    /// Addresses a batched call refuses while accepting the rest (partial
    /// success), with the error each gets.
    refuse: HashMap<Ipv4Addr, ErrorKind>,
    /// Our NIC's room: captures beyond it are refused for quota.
    quota: Option<usize>,
}

struct Scripted {
    net: Mutex<Net>,
    latency: Duration,
    visible_after: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Scripted {
    /// One batched mutating call: per-address fence and refusal, one
    /// latency and one scripted failure for the whole call.
    async fn batch(
        &self,
        what: &'static str,
        items: &[Item],
        apply: impl Fn(&mut Net, Ipv4Addr) -> Result<Option<String>, ErrorKind>,
    ) -> Vec<Result<(), CaptureError>> {
        let mut out: Vec<Option<Result<(), CaptureError>>> = items
            .iter()
            .map(|it| {
                let step = if what == "capture" {
                    "assign"
                } else {
                    "unassign"
                };
                it.fence.check("scripted", step).err().map(Err)
            })
            .collect();
        if out.iter().all(Option::is_some) {
            return out.into_iter().flatten().collect();
        }
        self.net()
            .batches
            .push((what, out.iter().filter(|o| o.is_none()).count()));
        if let Err(e) = self.call(what).await {
            return out
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Err(e.clone())))
                .collect();
        }
        let at = Instant::now() + self.visible_after;
        let mut net = self.net();
        for (o, it) in out.iter_mut().zip(items) {
            if o.is_some() {
                continue;
            }
            let r = match net.refuse.get(&it.ip).copied() {
                Some(kind) => Err(kind),
                None => apply(&mut net, it.ip),
            };
            *o = Some(match r {
                Ok(h) => {
                    net.pending.push((at, it.ip, h));
                    Ok(())
                }
                Err(kind) => Err(CaptureError::new(kind, "scripted", what, "refused")),
            });
        }
        out.into_iter().flatten().collect()
    }

    fn new(latency_ms: u64, visible_ms: u64) -> Arc<Scripted> {
        Arc::new(Scripted {
            net: Mutex::new(Net::default()),
            latency: Duration::from_millis(latency_ms),
            visible_after: Duration::from_millis(visible_ms),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        })
    }

    fn net(&self) -> MutexGuard<'_, Net> {
        lock(&self.net)
    }

    fn hold(&self, ip: Ipv4Addr, who: &str) {
        self.net().holders.insert(ip, who.to_string());
    }

    fn holder(&self, ip: Ipv4Addr) -> Option<String> {
        self.net().holders.get(&ip).cloned()
    }

    async fn call(&self, what: &str) -> Result<(), CaptureError> {
        let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut net = self.net();
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = net.pending.drain(..).partition(|p| p.0 <= now);
        net.pending = later;
        for (_, ip, h) in due {
            match h {
                Some(h) => net.holders.insert(ip, h),
                None => net.holders.remove(&ip),
            };
        }
        if let Some((ip, who)) = net.steal.take() {
            net.holders.insert(ip, who);
        }
        if what == "list" {
            return Ok(());
        }
        match net.failures.pop_front() {
            Some(kind) => Err(CaptureError::new(
                kind,
                "scripted",
                what,
                "scripted failure",
            )),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl CaptureProvider for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn describe(&self) -> String {
        "scripted test network".into()
    }
    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        self.call("observe").await?;
        Ok(match self.holder(ip) {
            Some(h) if h == ME => Holding::Ours,
            Some(h) => Holding::Elsewhere(h),
            None => Holding::Nobody,
        })
    }
    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        fence.check("scripted", "assign")?;
        if self.net().panic_on_capture {
            panic!("scripted provider bug");
        }
        self.call("assign").await?;
        let at = Instant::now() + self.visible_after;
        let mut net = self.net();
        net.calls.push(format!("capture {ip}"));
        net.pending.push((at, ip, Some(ME.to_string())));
        Ok(())
    }
    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        fence.check("scripted", "unassign")?;
        self.call("unassign").await?;
        let at = Instant::now() + self.visible_after;
        let mut net = self.net();
        net.calls.push(format!("release {ip}"));
        net.pending.push((at, ip, None));
        Ok(())
    }
    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        if to == ME {
            return Err(CaptureError::new(
                ErrorKind::Config,
                "scripted",
                "hand back",
                "our own NIC",
            ));
        }
        if self.holder(ip).is_some_and(|h| h != ME) {
            return Ok(());
        }
        fence.check("scripted", "assign back")?;
        self.call("assign back").await?;
        let mut net = self.net();
        if net.gone.contains(to) {
            return Err(CaptureError::new(
                ErrorKind::HolderGone,
                "scripted",
                "assign back",
                format!("{to} does not exist"),
            ));
        }
        let at = Instant::now() + self.visible_after;
        net.calls.push(format!("hand back {ip} to {to}"));
        net.pending.push((at, ip, Some(to.to_string())));
        Ok(())
    }
    fn is_own_nic(&self, id: &str) -> bool {
        id == ME
    }
    // Native batches, as a client whose API takes several addresses per
    // call: one latency (and one scripted failure) per batch; fences and
    // refusals per address.
    async fn observe_many(&self, ips: &[Ipv4Addr]) -> Vec<Result<Holding, CaptureError>> {
        self.net().batches.push(("observe", ips.len()));
        if let Err(e) = self.call("observe").await {
            return ips.iter().map(|_| Err(e.clone())).collect();
        }
        ips.iter()
            .map(|ip| {
                Ok(match self.holder(*ip) {
                    Some(h) if h == ME => Holding::Ours,
                    Some(h) => Holding::Elsewhere(h),
                    None => Holding::Nobody,
                })
            })
            .collect()
    }
    async fn capture_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        if self.net().panic_on_capture {
            panic!("scripted provider bug");
        }
        self.batch("capture", items, |net, ip| {
            let ours = net.holders.values().filter(|h| *h == ME).count()
                + net
                    .pending
                    .iter()
                    .filter(|p| p.2.as_deref() == Some(ME))
                    .count();
            if net.quota.is_some_and(|q| ours >= q) {
                return Err(ErrorKind::Quota);
            }
            net.calls.push(format!("capture {ip}"));
            Ok(Some(ME.to_string()))
        })
        .await
    }
    async fn release_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        self.batch("release", items, |net, ip| {
            net.calls.push(format!("release {ip}"));
            Ok(None)
        })
        .await
    }
    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        self.call("list").await?;
        let net = self.net();
        Ok(net.list_held.then(|| {
            net.holders
                .iter()
                .filter(|(_, h)| *h == ME)
                .map(|(ip, _)| *ip)
                .collect()
        }))
    }
}

/// The sizes of the batched calls of one kind, in order.
fn sizes(batches: &[(&'static str, usize)], what: &str) -> Vec<usize> {
    batches
        .iter()
        .filter(|b| b.0 == what)
        .map(|b| b.1)
        .collect()
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 60, last)
}

fn cap(sig: u64) -> Intent {
    Intent {
        desired: Desired::Capture,
        signature: sig,
    }
}

fn rel(sig: u64) -> Intent {
    Intent {
        desired: Desired::Release,
        signature: sig,
    }
}

fn reconciler() -> Reconciler {
    Reconciler::new(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        ..ReconcilerConfig::default()
    })
}

/// Waits (in paused time) until `ip` is confirmed with `intent`.
async fn confirmed(r: &Reconciler, ip: Ipv4Addr, intent: Intent) -> IpStatus {
    for _ in 0..10_000 {
        if let Some(s) = r.ip_status(ip) {
            if s.phase == Phase::Confirmed
                && s.desired == intent.desired
                && s.signature == format!("{:016x}", intent.signature)
            {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{ip} never confirmed {intent:?}: {:?}", r.ip_status(ip));
}

#[tokio::test(start_paused = true)]
async fn capture_confirms_after_async_move_and_is_idempotent() {
    let p = Scripted::new(20, 500);
    p.hold(ip(11), "eni-workload");
    let r = reconciler();
    r.set(ip(11), cap(1));
    r.start(p.clone()).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(p.net().calls.is_empty(), "acted before activation");
    assert_eq!(r.ip_status(ip(11)).unwrap().phase, Phase::Waiting);
    r.activate();
    let s = confirmed(&r, ip(11), cap(1)).await;
    assert_eq!(s.observed.as_deref(), Some("ours"));
    assert_eq!(s.changed_provider, Some(true));
    // Counted from the ownership change: 2 s waiting for activation, then
    // observe + assign + confirm polls until the move is visible (500 ms).
    let ms = s.confirm_ms.unwrap();
    assert!((2500..3000).contains(&ms), "confirm_ms {ms}");
    assert_eq!(p.holder(ip(11)).as_deref(), Some(ME));
    // The action itself (dispatch to confirmation, no activation wait):
    // about the 500 ms move, in the (0.5, 1] s bucket.
    let h = r.status().action_seconds;
    assert_eq!(h.count, 1);
    assert!((0.5..1.0).contains(&h.sum_secs), "{h:?}");
    assert_eq!(h.buckets()[4], (1.0, 1), "{h:?}");
    // Resync re-observes and finds nothing to do.
    r.resync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.net().calls, vec![format!("capture {}", ip(11))]);
    assert_eq!(r.status().fenced_total, 0);
}

#[tokio::test(start_paused = true)]
async fn release_touches_only_our_nic() {
    let p = Scripted::new(10, 100);
    p.hold(ip(10), "eni-workload");
    p.hold(ip(12), ME);
    let r = reconciler();
    r.set(ip(10), rel(7));
    r.set(ip(12), rel(8));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(10), rel(7)).await;
    let s = confirmed(&r, ip(12), rel(8)).await;
    assert_eq!(s.observed.as_deref(), Some("nobody"));
    assert_eq!(p.net().calls, vec![format!("release {}", ip(12))]);
    assert_eq!(p.holder(ip(10)).as_deref(), Some("eni-workload"));
}

/// A -> B -> A while the first action is still observing: the stale
/// capture (planned from A's first signature) and the stale release (B) are
/// fenced, never executed; the end state is A's.
#[tokio::test(start_paused = true)]
async fn owner_change_a_b_a_fences_stale_actions() {
    let p = Scripted::new(200, 300);
    p.hold(ip(11), "eni-workload");
    let r = reconciler();
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_millis(1)).await;
    r.set(ip(11), cap(0xa1)); // remote owner A
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.set(ip(11), rel(0xb2)); // now owned here (B)
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.set(ip(11), cap(0xa3)); // A again, a new path
    let s = confirmed(&r, ip(11), cap(0xa3)).await;
    let st = r.status();
    assert_eq!(st.fenced_total, 1, "{st:?}");
    assert_eq!(s.fenced, 1);
    let f = &st.recent_fenced[0];
    assert_eq!(f.planned, Desired::Capture);
    assert_eq!(f.planned_signature, format!("{:016x}", 0xa1));
    assert_eq!(f.current_signature.as_deref(), Some("00000000000000a3"));
    assert_eq!(f.step, "assign");
    // Only the current plan reached the provider.
    assert_eq!(p.net().calls, vec![format!("capture {}", ip(11))]);
    assert_eq!(p.holder(ip(11)).as_deref(), Some(ME));
}

/// The owner changes while a capture is being confirmed: confirmation stops
/// (fenced) and the release runs from the new plan. The release first sees
/// the workload still holding the /32 (the accepted capture is not visible
/// yet), so it settles instead of confirming, and keeps the origin: once the
/// capture lands, the /32 is handed back to the workload NIC.
#[tokio::test(start_paused = true)]
async fn change_during_confirmation_is_fenced_then_replanned() {
    let p = Scripted::new(10, 2000);
    p.hold(ip(13), "eni-workload");
    let r = reconciler();
    r.set(ip(13), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.net().calls.len(), 1, "capture accepted");
    r.set(ip(13), rel(2));
    let s = confirmed(&r, ip(13), rel(2)).await;
    assert_eq!(r.status().recent_fenced[0].step, "confirm");
    assert_eq!(s.observed.as_deref(), Some("elsewhere: eni-workload"));
    assert_eq!(
        p.net().calls,
        vec![
            format!("capture {}", ip(13)),
            format!("hand back {} to eni-workload", ip(13))
        ]
    );
    assert_eq!(p.holder(ip(13)).as_deref(), Some("eni-workload"));
    assert_eq!(s.captured_from, None);
    assert_eq!(r.status().origins, 0);
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_and_capture_is_not_lost() {
    let p = Scripted::new(5, 50);
    p.hold(ip(20), "eni-other");
    p.net().failures = VecDeque::from(vec![
        ErrorKind::Transient,
        ErrorKind::Transient,
        ErrorKind::Throttled,
        ErrorKind::Transient,
    ]);
    let r = reconciler();
    r.set(ip(20), cap(9));
    r.start(p.clone()).unwrap();
    let t0 = Instant::now();
    r.activate();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = r.ip_status(ip(20)).unwrap();
    assert_eq!(s.phase, Phase::Backoff);
    assert!(s
        .last_error
        .as_deref()
        .unwrap()
        .contains("scripted failure"));
    let s = confirmed(&r, ip(20), cap(9)).await;
    let st = r.status();
    assert_eq!(st.errors_total, 4);
    assert_eq!(s.attempts, 0);
    assert!(s.last_error.is_none());
    // 250 ms, 500 ms, >= 1 s throttle pause, 2 s (each jittered down to half).
    assert!(t0.elapsed() >= Duration::from_millis(125 + 250 + 500 + 1000));
    assert_eq!(p.holder(ip(20)).as_deref(), Some(ME));
}

#[tokio::test(start_paused = true)]
async fn throttling_pauses_every_action() {
    let p = Scripted::new(5, 10);
    p.net().failures = VecDeque::from(vec![ErrorKind::Throttled]);
    let r = reconciler();
    r.set(ip(30), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(r.status().throttled_until_ms.is_some());
    // A new intent while throttled waits for the pause too.
    r.set(ip(31), cap(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.net().calls.is_empty(), "{:?}", p.net().calls);
    confirmed(&r, ip(31), cap(2)).await;
    confirmed(&r, ip(30), cap(1)).await;
}

/// Forty /32s change owner at once: the provider sees a handful of calls
/// (one observation, one capture call, a few confirmation rounds), not forty
/// of each; at most one call of a class runs at a time.
#[tokio::test(start_paused = true)]
async fn a_mass_change_is_batched_into_few_provider_calls() {
    let p = Scripted::new(100, 10);
    let r = reconciler();
    for i in 100..140 {
        r.set(ip(i), cap(i as u64));
    }
    r.start(p.clone()).unwrap();
    r.activate();
    for i in 100..140 {
        confirmed(&r, ip(i), cap(i as u64)).await;
    }
    assert_eq!(p.net().calls.len(), 40);
    let batches = p.net().batches.clone();
    assert_eq!(sizes(&batches, "capture"), vec![40], "{batches:?}");
    let observes = batches.iter().filter(|b| b.0 == "observe").count();
    assert!(observes <= 4, "{batches:?}");
    // Observe and capture never overlap themselves.
    assert!(p.max_running.load(Ordering::SeqCst) <= 2);
    let st = r.status();
    assert_eq!(st.batch.capture_calls, 1);
    assert_eq!(st.batch.captured_ips, 40);
    assert_eq!(st.batch.largest_batch, 40);
}

/// Fencing stays per /32 inside a batch: the /32 whose owner changed while
/// the batch waited leaves it, the rest is captured by the same call.
#[tokio::test(start_paused = true)]
async fn a_stale_address_leaves_the_batch_and_the_rest_goes_on() {
    let p = Scripted::new(100, 10);
    let r = reconciler();
    for i in 100..110 {
        r.set(ip(i), cap(1));
    }
    r.start(p.clone()).unwrap();
    r.activate();
    // While the first observation runs, 105's owner comes here: stale.
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.set(ip(105), rel(2));
    for i in (100..110).filter(|&i| i != 105) {
        confirmed(&r, ip(i), cap(1)).await;
    }
    confirmed(&r, ip(105), rel(2)).await;
    let calls = p.net().calls.clone();
    assert_eq!(calls.len(), 9, "{calls:?}");
    assert!(
        !calls.contains(&format!("capture {}", ip(105))),
        "{calls:?}"
    );
    let captures: Vec<usize> = p
        .net()
        .batches
        .iter()
        .filter(|b| b.0 == "capture")
        .map(|b| b.1)
        .collect();
    assert_eq!(captures, vec![9]);
    assert_eq!(p.holder(ip(105)), None);
}

/// Partial success: the provider refuses two addresses of a batch and takes
/// the rest; the two back off and are retried alone, nothing is lost.
#[tokio::test(start_paused = true)]
async fn a_partially_refused_batch_loses_nothing() {
    let p = Scripted::new(20, 10);
    p.net().refuse.insert(ip(121), ErrorKind::Transient);
    p.net().refuse.insert(ip(125), ErrorKind::Transient);
    let r = reconciler();
    for i in 120..130 {
        r.set(ip(i), cap(7));
    }
    r.start(p.clone()).unwrap();
    r.activate();
    for i in (120..130).filter(|&i| i != 121 && i != 125) {
        confirmed(&r, ip(i), cap(7)).await;
    }
    let st = r.ip_status(ip(121)).unwrap();
    assert_eq!(st.phase, Phase::Backoff);
    assert!(st.last_error.unwrap().contains("refused"));
    p.net().refuse.clear();
    confirmed(&r, ip(121), cap(7)).await;
    confirmed(&r, ip(125), cap(7)).await;
    assert_eq!(p.net().calls.len(), 10);
}

/// Past the NIC's quota: what fits is captured, the rest is an alarm once
/// each, not a retry loop; a release makes room and the waiting /32 goes.
#[tokio::test(start_paused = true)]
async fn over_quota_is_an_alarm_not_a_retry_loop() {
    let p = Scripted::new(10, 10);
    p.net().quota = Some(5);
    let r = reconciler();
    for i in 130..138 {
        r.set(ip(i), cap(1));
    }
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = r.status();
    assert_eq!(p.net().calls.len(), 5, "{:?}", p.net().calls);
    assert_eq!(st.over_quota, 3, "{st:?}");
    assert!(st.quota_alarm.is_some());
    let over: Vec<Ipv4Addr> = st
        .ips
        .iter()
        .filter(|(_, s)| s.phase == Phase::OverQuota)
        .map(|(ip, _)| *ip)
        .collect();
    assert_eq!(over.len(), 3);
    // No retry storm: within the next 20 s (before the resync) the
    // provider sees no capture call for them.
    let before = p.net().batches.len();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(p.net().batches.len(), before, "{:?}", p.net().batches);
    // One captured /32 moves here: its release makes room for one more.
    let freed = (130..138).map(ip).find(|a| !over.contains(a)).unwrap();
    r.set(freed, rel(2));
    confirmed(&r, freed, rel(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(r.status().over_quota, 2, "{:?}", r.status());
    assert_eq!(p.net().calls.len(), 7, "{:?}", p.net().calls);
}

/// A restarted cer-control: a pool /32 on our NIC that no path names any
/// more is released; one outside the pool is left alone.
#[tokio::test(start_paused = true)]
async fn restart_sweep_releases_orphans_inside_the_pool_only() {
    let p = Scripted::new(5, 20);
    p.net().list_held = true;
    p.hold(ip(50), ME);
    p.hold(Ipv4Addr::new(10, 1, 1, 1), ME);
    p.hold(ip(51), ME);
    let r = reconciler();
    r.set(ip(51), cap(3));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(50), rel(0)).await;
    let s = confirmed(&r, ip(51), cap(3)).await;
    assert_eq!(s.changed_provider, Some(false));
    assert_eq!(p.net().calls, vec![format!("release {}", ip(50))]);
    assert_eq!(p.holder(Ipv4Addr::new(10, 1, 1, 1)).as_deref(), Some(ME));
}

/// A reload widens the pool: the sweep runs at once and releases the
/// orphan the old pool left alone; the resync interval follows the new one.
#[tokio::test(start_paused = true)]
async fn a_retuned_wider_pool_is_swept_at_once() {
    let p = Scripted::new(5, 20);
    p.net().list_held = true;
    let outside = Ipv4Addr::new(10, 1, 1, 1);
    p.hold(outside, ME);
    let r = reconciler();
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(p.holder(outside).as_deref(), Some(ME), "outside the pool");
    r.retune(ReconcilerConfig {
        pool: vec![
            (Ipv4Addr::new(10, 77, 60, 0), 24),
            (Ipv4Addr::new(10, 1, 1, 0), 24),
        ],
        resync: Duration::from_secs(5),
        ..ReconcilerConfig::default()
    });
    confirmed(&r, outside, rel(0)).await;
    assert!(p.holder(outside).is_none());
    assert!(p.net().calls.contains(&format!("release {outside}")));
}

/// Someone else takes a captured /32 (an unexpected holder): the periodic
/// resync sees it and captures it back.
#[tokio::test(start_paused = true)]
async fn resync_recaptures_after_a_foreign_holder_takes_it() {
    let p = Scripted::new(5, 20);
    let r = reconciler();
    r.set(ip(60), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(60), cap(1)).await;
    p.net().steal = Some((ip(60), "eni-intruder".into()));
    tokio::time::sleep(Duration::from_secs(61)).await;
    confirmed(&r, ip(60), cap(1)).await;
    assert_eq!(p.net().calls.len(), 2);
    assert_eq!(p.holder(ip(60)).as_deref(), Some(ME));
}

/// A resync finds a confirmed /32 taken, and the capture back fails once:
/// the backoff's retry acts (the intent was confirmed before, but no longer
/// holds), well before the next resync.
#[tokio::test(start_paused = true)]
async fn a_failure_after_a_resync_is_retried_not_left_as_confirmed() {
    let p = Scripted::new(5, 20);
    let r = reconciler();
    r.set(ip(61), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(61), cap(1)).await;
    p.hold(ip(61), "eni-intruder");
    // The resync's observation fails once.
    p.net().failures.push_back(ErrorKind::Transient);
    r.resync();
    for _ in 0..1000 {
        if r.status().errors_total >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(r.ip_status(ip(61)).unwrap().phase, Phase::Backoff);
    // Well before the next resync (60 s): retried, captured back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = r.ip_status(ip(61)).unwrap();
    assert_eq!(s.phase, Phase::Confirmed, "{s:?}");
    assert_eq!(s.observed.as_deref(), Some("ours"));
    assert_eq!(p.holder(ip(61)).as_deref(), Some(ME));
    assert!(r.status().errors_total >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_is_an_error_not_a_dead_loop() {
    let p = Scripted::new(5, 20);
    p.net().panic_on_capture = true;
    let r = reconciler();
    r.set(ip(70), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = r.ip_status(ip(70)).unwrap();
    assert_eq!(s.phase, Phase::Backoff);
    assert!(s.last_error.unwrap().contains("abnormally"));
    p.net().panic_on_capture = false;
    confirmed(&r, ip(70), cap(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_provider_call_times_out() {
    let p = Arc::new(Scripted {
        latency: Duration::from_secs(3600),
        ..Arc::try_unwrap(Scripted::new(0, 0)).ok().unwrap()
    });
    let r = reconciler();
    r.set(ip(80), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_secs(21)).await;
    let s = r.ip_status(ip(80)).unwrap();
    assert_eq!(r.status().errors_total, 1);
    assert!(s.last_error.unwrap().contains("no answer within 20000 ms"));
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let cfg = ReconcilerConfig::default();
    for attempt in 1..30 {
        let d = backoff(&cfg, ErrorKind::Transient, attempt);
        let full = cfg
            .backoff_base
            .saturating_mul(1 << attempt.min(16).saturating_sub(1))
            .min(cfg.backoff_max);
        assert!(d <= full && d >= full / 2, "{attempt}: {d:?} vs {full:?}");
    }
    assert!(backoff(&cfg, ErrorKind::Config, 1) >= cfg.backoff_max / 2);
}

/// The flap of issue 16: a remote owner for a moment, then owned here
/// again. The /32 captured from the workload's NIC goes back to that NIC,
/// not to nobody; the origin is shown while captured and forgotten after.
#[tokio::test(start_paused = true)]
async fn release_hands_the_address_back_to_the_nic_it_was_captured_from() {
    let p = Scripted::new(10, 300);
    p.hold(ip(13), "eni-workload");
    let r = reconciler();
    r.set(ip(13), rel(1));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(13), rel(1)).await;
    assert_eq!(s.captured_from, None);
    assert_eq!(s.changed_provider, Some(false));
    r.set(ip(13), cap(2)); // owned by a remote node for a moment
    let s = confirmed(&r, ip(13), cap(2)).await;
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
    assert_eq!(r.status().origins, 1);
    r.set(ip(13), rel(3)); // owned here again
    let s = confirmed(&r, ip(13), rel(3)).await;
    assert_eq!(s.observed.as_deref(), Some("elsewhere: eni-workload"));
    assert_eq!(s.changed_provider, Some(true));
    assert_eq!(s.captured_from, None);
    assert_eq!(r.status().origins, 0);
    assert_eq!(p.holder(ip(13)).as_deref(), Some("eni-workload"));
    assert_eq!(
        p.net().calls,
        vec![
            format!("capture {}", ip(13)),
            format!("hand back {} to eni-workload", ip(13))
        ]
    );
    // Idempotent: a resync finds it where it belongs and does nothing.
    r.resync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.net().calls.len(), 2);
}

/// Only a /32 that nobody held before the capture is released to nobody.
#[tokio::test(start_paused = true)]
async fn a_capture_from_nobody_is_released_to_nobody() {
    let p = Scripted::new(10, 100);
    let r = reconciler();
    r.set(ip(14), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(14), cap(1)).await;
    assert_eq!(s.captured_from.as_deref(), Some("nobody"));
    r.set(ip(14), rel(2));
    let s = confirmed(&r, ip(14), rel(2)).await;
    assert_eq!(s.observed.as_deref(), Some("nobody"));
    assert_eq!(
        p.net().calls,
        vec![format!("capture {}", ip(14)), format!("release {}", ip(14))]
    );
}

/// A NIC that takes the /32 while it is captured (e.g. the workload
/// re-created with a new NIC before ownership came back) is the one the
/// re-capture took it from last: the release gives it to that NIC.
#[tokio::test(start_paused = true)]
async fn a_recapture_remembers_the_nic_it_took_the_address_from_last() {
    let p = Scripted::new(5, 20);
    p.hold(ip(15), "eni-workload");
    let r = reconciler();
    r.set(ip(15), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(15), cap(1)).await;
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
    p.net().steal = Some((ip(15), "eni-workload-new".into()));
    tokio::time::sleep(Duration::from_secs(61)).await;
    let s = confirmed(&r, ip(15), cap(1)).await;
    assert_eq!(p.net().calls.len(), 2, "{:?}", p.net().calls);
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload-new"));
    r.set(ip(15), rel(2));
    confirmed(&r, ip(15), rel(2)).await;
    assert_eq!(p.holder(ip(15)).as_deref(), Some("eni-workload-new"));
}

/// Nobody does not replace a remembered NIC: found on nobody (an earlier
/// action stopped half-way, e.g. after Azure's first step), the re-capture
/// keeps the NIC it came from.
#[tokio::test(start_paused = true)]
async fn a_recapture_from_nobody_keeps_the_remembered_nic() {
    let p = Scripted::new(5, 20);
    p.hold(ip(20), "eni-workload");
    let r = reconciler();
    r.set(ip(20), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(20), cap(1)).await;
    p.net().holders.remove(&ip(20));
    r.resync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = confirmed(&r, ip(20), cap(1)).await;
    assert_eq!(p.net().calls.len(), 2, "{:?}", p.net().calls);
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
}

/// The hand-back is fenced like every action: ownership goes remote again
/// while the release is still observing, so the planned hand-back never
/// reaches the provider and the /32 stays captured.
#[tokio::test(start_paused = true)]
async fn a_stale_hand_back_is_fenced_never_executed() {
    let p = Scripted::new(200, 50);
    p.hold(ip(16), "eni-workload");
    let r = reconciler();
    r.set(ip(16), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(16), cap(1)).await;
    r.set(ip(16), rel(2));
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.set(ip(16), cap(3));
    let s = confirmed(&r, ip(16), cap(3)).await;
    let st = r.status();
    assert_eq!(st.fenced_total, 1, "{st:?}");
    assert_eq!(st.recent_fenced[0].planned, Desired::Release);
    assert_eq!(st.recent_fenced[0].step, "assign back");
    assert_eq!(p.net().calls, vec![format!("capture {}", ip(16))]);
    assert_eq!(p.holder(ip(16)).as_deref(), Some(ME));
    // Still remembered for the next release.
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
}

/// The NIC the /32 came from was deleted while it was captured: the provider
/// refuses the hand-back (nothing moves), and the release gives the /32 to
/// nobody, where deleting that NIC would have left it. Confirmed at once,
/// never retried, the origin forgotten; the status names the gone NIC and
/// keeps naming it until the desired state changes.
#[tokio::test(start_paused = true)]
async fn a_gone_holder_gets_the_address_released_to_nobody() {
    let p = Scripted::new(5, 20);
    p.hold(ip(17), "eni-workload");
    let r = reconciler();
    r.set(ip(17), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(17), cap(1)).await;
    p.net().gone.insert("eni-workload".into());
    r.set(ip(17), rel(2));
    let s = confirmed(&r, ip(17), rel(2)).await;
    assert_eq!(s.observed.as_deref(), Some("nobody"));
    assert_eq!(s.attempts, 0);
    assert_eq!(s.last_error, None);
    let note = s.note.clone().unwrap();
    assert!(
        note.contains("released to nobody")
            && note.contains("eni-workload")
            && note.contains("does not exist"),
        "{note}"
    );
    assert_eq!(s.captured_from, None);
    assert_eq!(p.holder(ip(17)), None);
    assert_eq!(
        p.net().calls,
        vec![format!("capture {}", ip(17)), format!("release {}", ip(17))]
    );
    let st = r.status();
    assert_eq!(
        (st.origins, st.released_holder_gone_total, st.errors_total),
        (0, 1, 0)
    );
    // A resync finds nothing to do and still says why it is on nobody.
    r.resync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = r.ip_status(ip(17)).unwrap();
    assert_eq!(s.phase, Phase::Confirmed);
    assert_eq!(s.note.as_deref(), Some(note.as_str()));
    assert_eq!(p.net().calls.len(), 2);
    // Owned remotely again: captured from nobody, the note is gone.
    r.set(ip(17), cap(3));
    let s = confirmed(&r, ip(17), cap(3)).await;
    assert_eq!(s.note, None);
    assert_eq!(s.captured_from.as_deref(), Some("nobody"));
}

/// The gone holder's release to nobody is a release like any other: fenced
/// when the ownership changes again before its provider call.
#[tokio::test(start_paused = true)]
async fn the_release_for_a_gone_holder_is_fenced() {
    let p = Scripted::new(100, 20);
    p.hold(ip(18), "eni-workload");
    let r = reconciler();
    r.set(ip(18), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(18), cap(1)).await;
    p.net().gone.insert("eni-workload".into());
    r.set(ip(18), rel(2));
    // observe (100 ms), refused hand-back (100), observe (100), then the
    // release's fence check: the owner is remote again before it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    r.set(ip(18), cap(3));
    let s = confirmed(&r, ip(18), cap(3)).await;
    let st = r.status();
    assert_eq!(st.fenced_total, 1, "{st:?}");
    assert_eq!(st.recent_fenced[0].planned, Desired::Release);
    assert_eq!(st.recent_fenced[0].step, "unassign");
    assert_eq!(p.net().calls, vec![format!("capture {}", ip(18))]);
    assert_eq!(p.holder(ip(18)).as_deref(), Some(ME));
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
}

/// A hand-back that stopped half-way (the /32 on nobody, e.g. between
/// Azure's two steps) is finished from nobody at the next attempt.
#[tokio::test(start_paused = true)]
async fn a_half_done_hand_back_is_finished_from_nobody() {
    let p = Scripted::new(5, 20);
    p.hold(ip(19), "eni-workload");
    let r = reconciler();
    r.set(ip(19), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(19), cap(1)).await;
    // Step 1 done (gone from our NIC), step 2 never ran.
    p.net().holders.remove(&ip(19));
    r.set(ip(19), rel(2));
    let s = confirmed(&r, ip(19), rel(2)).await;
    assert_eq!(s.observed.as_deref(), Some("elsewhere: eni-workload"));
    assert_eq!(p.holder(ip(19)).as_deref(), Some("eni-workload"));
    assert_eq!(
        p.net().calls.last().cloned(),
        Some(format!("hand back {} to eni-workload", ip(19)))
    );
}

/// The origin is written before the capture call; a capture fenced before
/// any provider call leaves nothing behind.
#[tokio::test(start_paused = true)]
async fn a_capture_that_never_reached_the_provider_remembers_nothing() {
    let p = Scripted::new(200, 50);
    p.hold(ip(21), "eni-workload");
    let r = reconciler();
    r.start(p.clone()).unwrap();
    r.activate();
    r.set(ip(21), cap(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.set(ip(21), rel(2)); // before the capture's fence check
    let s = confirmed(&r, ip(21), rel(2)).await;
    assert_eq!(r.status().fenced_total, 1);
    assert!(p.net().calls.is_empty(), "{:?}", p.net().calls);
    assert_eq!(s.captured_from, None);
    assert_eq!(r.status().origins, 0);
}

fn origins_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cer-reconciler-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("origins.json")
}

fn reconciler_with(file: &std::path::Path) -> Reconciler {
    Reconciler::open(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        origins_file: Some(file.to_path_buf()),
        ..ReconcilerConfig::default()
    })
    .unwrap()
}

/// cer-control restarts while the /32 is captured, and by the time it is
/// back the /32 is owned here: the origin persisted before the capture call
/// still tells where it goes back.
#[tokio::test(start_paused = true)]
async fn the_origin_survives_a_restart() {
    let file = origins_file("restart");
    let p = Scripted::new(5, 20);
    p.hold(ip(22), "eni-workload");
    {
        let r = reconciler_with(&file);
        r.set(ip(22), cap(1));
        r.start(p.clone()).unwrap();
        r.activate();
        confirmed(&r, ip(22), cap(1)).await;
        assert_eq!(r.status().origins_file.as_deref(), file.to_str());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("eni-workload"), "{text}");
    // The new process: same provider state, the /32 is owned here now.
    let r = reconciler_with(&file);
    assert_eq!(r.status().origins, 1);
    r.set(ip(22), rel(2));
    assert_eq!(
        r.ip_status(ip(22)).unwrap().captured_from.as_deref(),
        Some("eni-workload")
    );
    r.start(p.clone()).unwrap();
    r.activate();
    confirmed(&r, ip(22), rel(2)).await;
    assert_eq!(p.holder(ip(22)).as_deref(), Some("eni-workload"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("10.77.60.22"), "{text}");
    // A third start sees nothing remembered; a release stays a no-op.
    assert_eq!(reconciler_with(&file).status().origins, 0);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// A remembered holder that is this router's own NIC (a memory from another
/// configuration) is not a place to hand back to: released to nobody, never
/// a hand-back to ourselves. Remembered /32s outside the pool are dropped.
#[tokio::test(start_paused = true)]
async fn a_remembered_holder_that_is_our_own_nic_is_released_to_nobody() {
    let file = origins_file("own");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        format!(
            r#"{{"version": 1, "origins": [
                {{"ip": "10.77.60.23", "holder": "{ME}", "since_unix_ms": 1}},
                {{"ip": "10.1.1.1", "holder": "eni-x", "since_unix_ms": 1}}
            ]}}"#
        ),
    )
    .unwrap();
    let p = Scripted::new(5, 20);
    p.hold(ip(23), ME);
    let r = reconciler_with(&file);
    assert_eq!(r.status().origins, 1, "the one outside the pool is dropped");
    r.set(ip(23), rel(1));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(23), rel(1)).await;
    assert_eq!(s.observed.as_deref(), Some("nobody"));
    assert_eq!(p.net().calls, vec![format!("release {}", ip(23))]);
    assert_eq!(r.status().origins, 0);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// A corrupt origin file is an error naming it (`open`, as cer-control
/// starts), never silently emptied: `new` keeps the origins in memory only,
/// shows the error and leaves the file as it was.
#[tokio::test(start_paused = true)]
async fn a_corrupt_origin_file_is_refused_never_overwritten() {
    let file = origins_file("corrupt");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"not json").unwrap();
    let cfg = ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        origins_file: Some(file.clone()),
        ..ReconcilerConfig::default()
    };
    let e = Reconciler::open(cfg.clone()).err().unwrap().to_string();
    assert!(e.contains("origins.json"), "{e}");
    let r = Reconciler::new(cfg);
    assert!(r
        .status()
        .origins_error
        .is_some_and(|e| e.contains("origins.json")));
    let p = Scripted::new(5, 20);
    p.hold(ip(24), "eni-workload");
    r.set(ip(24), cap(1));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(24), cap(1)).await;
    assert_eq!(s.captured_from.as_deref(), Some("eni-workload"));
    assert_eq!(std::fs::read(&file).unwrap(), b"not json");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// The write-ahead rules on their own: another NIC replaces the memory,
/// nobody and our own NIC do not, and a capture that never reached the
/// provider puts back exactly what it replaced.
#[test]
fn remember_and_restore_the_origin() {
    let p = Scripted::new(0, 0);
    let r = reconciler();
    let sh = &r.shared;
    let held = |id: &str| Holding::Elsewhere(id.to_string());
    let from = || sh.origin_text(ip(25));
    assert_eq!(
        sh.remember_origin(ip(25), &Holding::Nobody, &*p, &[]),
        Some(None)
    );
    assert_eq!(from().as_deref(), Some("nobody"));
    let prev = sh
        .remember_origin(ip(25), &held("eni-a"), &*p, &[])
        .unwrap();
    assert_eq!(prev.and_then(|o| o.holder), None);
    assert_eq!(sh.remember_origin(ip(25), &held("eni-a"), &*p, &[]), None);
    assert_eq!(sh.remember_origin(ip(25), &Holding::Nobody, &*p, &[]), None);
    assert_eq!(sh.remember_origin(ip(25), &held(ME), &*p, &[]), None);
    assert_eq!(sh.remember_origin(ip(25), &Holding::Ours, &*p, &[]), None);
    assert_eq!(from().as_deref(), Some("eni-a"));
    let prev = sh
        .remember_origin(ip(25), &held("eni-b"), &*p, &[])
        .unwrap();
    assert_eq!(from().as_deref(), Some("eni-b"));
    sh.restore_origin(ip(25), prev);
    assert_eq!(from().as_deref(), Some("eni-a"));
    assert_eq!(r.status().origins, 1);
    sh.restore_origin(ip(25), None);
    assert_eq!(from(), None);
    assert_eq!(r.status().origins, 0);
}

/// After a restart the sweep finds a pool /32 on our NIC that no route
/// names any more: with its origin remembered it goes back to that NIC, not
/// to nobody.
#[tokio::test(start_paused = true)]
async fn the_restart_sweep_hands_an_orphan_back_to_its_origin() {
    let file = origins_file("sweep");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        r#"{"version": 1, "origins": [{"ip": "10.77.60.52", "holder": "eni-workload", "since_unix_ms": 1}]}"#,
    )
    .unwrap();
    let p = Scripted::new(5, 20);
    p.net().list_held = true;
    p.hold(ip(52), ME);
    let r = reconciler_with(&file);
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(52), rel(0)).await;
    assert_eq!(s.observed.as_deref(), Some("elsewhere: eni-workload"));
    assert_eq!(
        p.net().calls,
        vec![format!("hand back {} to eni-workload", ip(52))]
    );
    assert_eq!(r.status().origins, 0);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// This process was stalled while a capture was observing: the capture
/// planned before the stall is fenced (its view is from before), nothing
/// changes at the provider for the settle time, then the /32 is observed
/// afresh and captured once.
#[tokio::test(start_paused = true)]
async fn a_stall_fences_what_was_planned_before_and_pauses_changes() {
    let p = Scripted::new(200, 100);
    p.hold(ip(11), "eni-workload");
    let w = StallWatch::new();
    let r = Reconciler::new(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        stall: Some(w.clone()),
        stall_settle: Duration::from_secs(3),
        ..ReconcilerConfig::default()
    });
    r.start(p.clone()).unwrap();
    r.activate();
    tokio::time::sleep(Duration::from_millis(1)).await;
    r.set(ip(11), cap(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The stall, seen while the observe is under way (the ticker's report).
    w.report("test");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let st = r.status();
    assert_eq!(st.fenced_total, 1, "{st:?}");
    assert_eq!(st.recent_fenced[0].step, "assign");
    assert_eq!(st.stall_holds, 1);
    assert!(st.stall_hold_until_ms.is_some());
    assert!(
        p.net().calls.is_empty(),
        "changed the provider while holding"
    );
    let s = confirmed(&r, ip(11), cap(1)).await;
    assert_eq!(s.changed_provider, Some(true));
    assert_eq!(p.net().calls, vec![format!("capture {}", ip(11))]);
    assert!(r.status().stall_hold_until_ms.is_none());
    // A stall with nothing in flight: nothing is fenced, the settled /32 is
    // looked at again and left alone.
    w.report("test");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = r.status();
    assert_eq!((st.fenced_total, st.stall_holds), (1, 2));
    assert_eq!(p.net().calls.len(), 1);
}

fn standby(sig: u64) -> Intent {
    Intent {
        desired: Desired::Standby,
        signature: sig,
    }
}

/// A cloud pair's standby never changes a remote /32 (the active CER holds
/// it); when it becomes active it takes the address over from the partner's
/// NIC with one call, and that NIC is not remembered as a workload to hand
/// back to: the release goes to nobody, or to the workload this router
/// itself once took the address from.
#[tokio::test(start_paused = true)]
async fn a_pair_standby_leaves_remote_addresses_to_the_active_one() {
    let p = Scripted::new(5, 20);
    p.hold(ip(30), "eni-partner");
    p.hold(ip(31), "eni-partner");
    let r = Reconciler::new(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        pair_nics: vec!["eni-partner".into()],
        ..ReconcilerConfig::default()
    });
    r.set(ip(30), standby(1));
    r.set(ip(31), standby(2));
    r.start(p.clone()).unwrap();
    r.activate();
    let s = confirmed(&r, ip(30), standby(1)).await;
    assert_eq!(s.observed.as_deref(), Some("elsewhere: eni-partner"));
    confirmed(&r, ip(31), standby(2)).await;
    r.resync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(p.net().calls.is_empty(), "{:?}", p.net().calls);
    // The partner is gone: this one is active, one capture per /32.
    r.set(ip(30), cap(1));
    r.set(ip(31), cap(2));
    let s = confirmed(&r, ip(30), cap(1)).await;
    confirmed(&r, ip(31), cap(2)).await;
    assert_eq!(p.net().calls.len(), 2, "{:?}", p.net().calls);
    assert_eq!(
        s.captured_from.as_deref(),
        Some("nobody"),
        "the partner's NIC is no origin"
    );
    // The partner comes back and preempts: this one stands by, no call.
    p.hold(ip(30), "eni-partner");
    r.set(ip(30), standby(1));
    confirmed(&r, ip(30), standby(1)).await;
    assert_eq!(p.net().calls.len(), 2, "{:?}", p.net().calls);
    // Owned nobody: released to nobody, not handed to the partner.
    r.set(ip(31), rel(3));
    confirmed(&r, ip(31), rel(3)).await;
    assert_eq!(p.holder(ip(31)), None);
    assert_eq!(
        p.net().calls.last().map(String::as_str),
        Some(&*format!("release {}", ip(31)))
    );
}

/// The partner's NIC does not replace what this router remembered: taken
/// from the workload, moved to the partner by a failover, taken back.
#[test]
fn a_partner_nic_is_no_origin() {
    let p = Scripted::new(0, 0);
    let r = reconciler();
    let sh = &r.shared;
    let pair = ["eni-partner".to_string()];
    let held = |id: &str| Holding::Elsewhere(id.to_string());
    sh.remember_origin(ip(26), &held("eni-workload"), &*p, &pair);
    assert_eq!(
        sh.remember_origin(ip(26), &held("eni-partner"), &*p, &pair),
        None
    );
    assert_eq!(sh.origin_text(ip(26)).as_deref(), Some("eni-workload"));
    // Nothing remembered yet: taken from the partner counts as from nobody.
    assert_eq!(
        sh.remember_origin(ip(27), &held("eni-partner"), &*p, &pair),
        Some(None)
    );
    assert_eq!(sh.origin_text(ip(27)).as_deref(), Some("nobody"));
    assert_eq!(
        sh.hand_back_target(ip(26), &*p, &pair).as_deref(),
        Some("eni-workload")
    );
    sh.remember_origin(ip(28), &held("eni-partner"), &*p, &[]);
    assert_eq!(sh.hand_back_target(ip(28), &*p, &pair), None);
}

/// A cloud pair's takeover: the standby's remote /32s all become captures in
/// one burst of intent changes (the state machine sets them one after another
/// while the reconciler runs on a multi-threaded runtime, as in cer-control).
/// They leave as one capture call, not the first alone and the rest after it
/// (on Azure a call is two PUTs with the first one's operation polled in
/// between: each extra call adds about 2 s to the outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_takeover_is_one_capture_call() {
    for round in 0..5u64 {
        let p = Scripted::new(30, 20);
        let ips: Vec<Ipv4Addr> = (40..43).map(ip).collect();
        for a in &ips {
            p.hold(*a, "eni-partner");
        }
        let r = Reconciler::new(ReconcilerConfig {
            pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
            pair_nics: vec!["eni-partner".into()],
            ..ReconcilerConfig::default()
        });
        for (i, a) in ips.iter().enumerate() {
            r.set(*a, standby(100 * round + i as u64));
        }
        r.start(p.clone()).unwrap();
        r.activate();
        for (i, a) in ips.iter().enumerate() {
            confirmed(&r, *a, standby(100 * round + i as u64)).await;
        }
        p.net().batches.clear();
        for (i, a) in ips.iter().enumerate() {
            r.set(*a, cap(100 * round + 10 + i as u64));
        }
        for (i, a) in ips.iter().enumerate() {
            confirmed(&r, *a, cap(100 * round + 10 + i as u64)).await;
        }
        let batches = p.net().batches.clone();
        assert_eq!(
            sizes(&batches, "capture"),
            vec![3],
            "round {round}: {batches:?}"
        );
    }
}
