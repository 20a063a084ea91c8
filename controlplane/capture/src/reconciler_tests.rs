//! Reconciler and fencing against a scripted provider: an in-memory network
//! with per-call latency, asynchronous visibility, scripted failures and a
//! log of every mutating call it actually executed. Time is tokio's paused
//! clock, so the interleavings are exact.

use super::*;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};

const ME: &str = "eni-me";

#[derive(Default)]
struct Net {
    /// Visible holder of each address.
    holders: HashMap<Ipv4Addr, String>,
    /// Accepted changes not yet visible: (visible at, ip, new holder or None).
    pending: Vec<(Instant, Ipv4Addr, Option<String>)>,
    /// Mutating calls executed, in order: "capture IP" / "release IP".
    calls: Vec<String>,
    /// Errors returned by the next calls, in order.
    failures: VecDeque<ErrorKind>,
    /// Steal an address to this holder on the next observe.
    steal: Option<(Ipv4Addr, String)>,
    list_held: bool,
    panic_on_capture: bool,
}

struct Scripted {
    net: Mutex<Net>,
    latency: Duration,
    visible_after: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Scripted {
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
    async fn capture(&self, ip: Ipv4Addr, fence: &Fence<'_>) -> Result<(), CaptureError> {
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
    async fn release(&self, ip: Ipv4Addr, fence: &Fence<'_>) -> Result<(), CaptureError> {
        fence.check("scripted", "unassign")?;
        self.call("unassign").await?;
        let at = Instant::now() + self.visible_after;
        let mut net = self.net();
        net.calls.push(format!("release {ip}"));
        net.pending.push((at, ip, None));
        Ok(())
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
/// (fenced) and the release runs from the new plan.
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
    assert_eq!(s.observed.as_deref(), Some("nobody"));
    assert_eq!(
        p.net().calls,
        vec![format!("capture {}", ip(13)), format!("release {}", ip(13))]
    );
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

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
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
    assert_eq!(p.max_running.load(Ordering::SeqCst), 4);
    assert_eq!(p.net().calls.len(), 40);
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
