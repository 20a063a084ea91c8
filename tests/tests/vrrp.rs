//! The on-prem capture gate against real keepalived: two routers in two
//! namespaces run VRRP over a veth; cer-control's gate follows each one's
//! `notify_fifo`. Exactly the master's gate is open; when the master is
//! SIGKILLed its gate closes at once (the FIFO reaches EOF: fail closed) and
//! the backup's opens after VRRP's master-down interval. Sampled every 10 ms,
//! the two gates are never open together. A restarted router (nopreempt)
//! comes back as backup and keeps its gate closed.
//!
//! A cer-control restart under a running master: a fresh follower hears
//! nothing (keepalived reports transitions only) and stays closed; with
//! `keepalived_pid_file` (and `keepalived_json_file`) it sends keepalived's
//! JSON signal once, reads the read-only JSON state dump and the gate opens
//! again, with no VRRP transition and no keepalived reload.

use anyhow::{bail, Context, Result};
use cer_controlplane::control::vrrp::{self, SharedVrrp, VrrpState};
use cer_e2e::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Router {
    ns: Netns,
    dir: PathBuf,
    iface: String,
    fifo: PathBuf,
    instance: String,
    priority: u8,
    keepalived: Option<Proc>,
}

impl Router {
    fn config(&self) -> String {
        format!(
            r#"global_defs {{
    router_id {name}
    notify_fifo {fifo}
    vrrp_garp_master_delay 0
}}
vrrp_instance {inst} {{
    state BACKUP
    nopreempt
    interface {iface}
    virtual_router_id 77
    priority {prio}
    advert_int 1
    virtual_ipaddress {{
        192.168.77.100/32
    }}
}}
"#,
            name = self.ns.name,
            fifo = self.fifo.display(),
            inst = self.instance,
            iface = self.iface,
            prio = self.priority,
        )
    }

    fn start(&mut self, n: u32) -> Result<()> {
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(&conf, self.config())?;
        let pid = self.dir.join(format!("k{n}.pid"));
        let vpid = self.dir.join(format!("vrrp{n}.pid"));
        // keepalived writes its JSON dump to $TMPDIR/keepalived.json: keep it private.
        let tmpdir = format!("TMPDIR={}", self.dir.display());
        let p = self.ns.spawn(
            &[
                "env",
                &tmpdir,
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
                conf.to_str().unwrap(),
                "-p",
                pid.to_str().unwrap(),
                "-r",
                vpid.to_str().unwrap(),
            ],
            &self.dir.join(format!("keepalived{n}.log")),
        )?;
        self.keepalived = Some(p);
        Ok(())
    }

    /// SIGKILL keepalived and its VRRP child (both ours), as a crash would.
    fn kill(&mut self, n: u32) {
        let vpid = std::fs::read_to_string(self.dir.join(format!("vrrp{n}.pid")))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(p) = &self.keepalived {
            // SAFETY: kill(2) on processes this test started.
            unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) };
        }
        if let Some(v) = vpid {
            // SAFETY: as above; the VRRP child of our keepalived.
            unsafe { libc::kill(v, libc::SIGKILL) };
        }
        drop(self.keepalived.take());
    }

    fn log(&self) -> String {
        self.keepalived
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default()
    }
}

fn follow(r: &Router) -> SharedVrrp {
    let st = vrrp::new_status(&r.fifo, &r.instance);
    let (fifo, inst, s) = (r.fifo.clone(), r.instance.clone(), st.clone());
    std::thread::spawn(move || vrrp::follow(fifo, inst, s, |_, _| {}));
    st
}

fn state(s: &SharedVrrp) -> (VrrpState, bool) {
    let v = s.lock().unwrap();
    (v.state, v.gate_open)
}

fn wait(what: &str, timeout: Duration, f: impl Fn() -> bool) -> Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn router(name: &str, scratch: &Path, iface: &str, prio: u8, t: &str) -> Result<Router> {
    let ns = Netns::new(name)?;
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(Router {
        fifo: dir.join("notify.fifo"),
        ns,
        dir,
        iface: iface.to_string(),
        instance: format!("VI_{t}"),
        priority: prio,
        keepalived: None,
    })
}

#[test]
fn vrrp_gate_follows_keepalived_and_fails_closed() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("vrrp")?;
    let t = tag();
    let (ia, ib) = (format!("va{t}"), format!("vb{t}"));
    let mut a = router("vra", &scratch.path, &ia, 150, &t)?;
    let mut b = router("vrb", &scratch.path, &ib, 100, &t)?;
    veth(&ia, &a.ns, &ib, &b.ns)?;
    a.ns.addr(&ia, "192.168.77.1/24")?;
    b.ns.addr(&ib, "192.168.77.2/24")?;
    let (ga, gb) = (follow(&a), follow(&b));

    // Sample both gates every 10 ms for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let both_open = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (ga, gb, stop, both) = (ga.clone(), gb.clone(), stop.clone(), both_open.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if state(&ga).1 && state(&gb).1 {
                    both.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Both closed before keepalived says anything.
    assert!(!state(&ga).1 && !state(&gb).1);
    a.start(1)?;
    b.start(1)?;
    let took = wait("A master, B backup", Duration::from_secs(15), || {
        state(&ga) == (VrrpState::Master, true) && state(&gb) == (VrrpState::Backup, false)
    })
    .with_context(|| {
        format!(
            "A: {:?} {}\nB: {:?} {}",
            state(&ga),
            a.log(),
            state(&gb),
            b.log()
        )
    })?;
    eprintln!("election: A master after {took:?}");

    // Crash the master: A's FIFO reaches EOF, its gate closes at once; B takes over.
    let t0 = Instant::now();
    a.kill(1);
    wait("A's gate closed", Duration::from_secs(2), || !state(&ga).1)?;
    let closed = t0.elapsed();
    wait("B master", Duration::from_secs(10), || {
        state(&gb) == (VrrpState::Master, true)
    })
    .with_context(|| format!("B: {:?} {}", state(&gb), b.log()))?;
    let opened = t0.elapsed();
    eprintln!("master killed: A closed after {closed:?}, B open after {opened:?}");
    assert!(closed < opened);
    {
        let s = ga.lock().unwrap();
        assert_eq!(s.state, VrrpState::Unknown, "A after the crash: {s:?}");
        assert!(s.fifo_closed >= 1);
    }

    // A comes back; with nopreempt it stays backup and its gate stays closed.
    a.start(2)?;
    wait("A reports backup", Duration::from_secs(10), || {
        state(&ga).0 == VrrpState::Backup
    })
    .with_context(|| format!("A: {:?} {}", state(&ga), a.log()))?;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state(&ga), (VrrpState::Backup, false));
    assert_eq!(state(&gb), (VrrpState::Master, true));

    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(
        both_open.load(Ordering::Relaxed),
        0,
        "both gates were open at the same time"
    );
    a.kill(2);
    b.kill(1);
    Ok(())
}

/// A gate follower that can be stopped, as cer-control's would end when the
/// process exits.
struct Follower {
    status: SharedVrrp,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    fn start(r: &Router, pid_file: Option<PathBuf>, json_file: Option<PathBuf>) -> Follower {
        let status = vrrp::new_status(&r.fifo, &r.instance);
        let stop = Arc::new(AtomicBool::new(false));
        let opts = vrrp::FollowOptions {
            keepalived_pid_file: pid_file,
            keepalived_json_file: json_file,
            stop: Some(stop.clone()),
            ..Default::default()
        };
        let (fifo, inst, s) = (r.fifo.clone(), r.instance.clone(), status.clone());
        let thread = std::thread::spawn(move || vrrp::follow_with(fifo, inst, s, opts, |_, _| {}));
        Follower {
            status,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops reading the FIFO (the FIFO stays open on keepalived's side).
    fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if t0.elapsed() > Duration::from_secs(3) {
                bail!("gate follower did not stop");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often keepalived's log says the instance entered each state.
fn entered(log: &str, inst: &str) -> (usize, usize) {
    let m = log
        .matches(&format!("({inst}) Entering MASTER STATE"))
        .count();
    let other = log
        .lines()
        .filter(|l| {
            l.contains(&format!("({inst}) Entering"))
                && (l.contains("BACKUP") || l.contains("FAULT"))
        })
        .count();
    (m, other)
}

/// A router that is MASTER on its own (nobody else speaks VRRP), followed
/// by cer-control's first life, which is then stopped (a cer-control restart
/// leaves keepalived running).
fn lone_master(scratch: &Scratch) -> Result<Router> {
    let t = tag();
    let (ia, ib) = (format!("vr{t}"), format!("vp{t}"));
    let mut a = router("vrr", &scratch.path, &ia, 150, &t)?;
    // The VRRP interface: one end of a veth pair in the same namespace.
    veth(&ia, &a.ns, &ib, &a.ns)?;
    a.ns.addr(&ia, "192.168.78.1/24")?;
    a.ns.run(&["ip", "link", "set", &ib, "up"])?;
    let mut f1 = Follower::start(&a, None, None);
    a.start(1)?;
    let took = wait("A master", Duration::from_secs(15), || {
        state(&f1.status) == (VrrpState::Master, true)
    })
    .with_context(|| format!("A: {:?} {}", state(&f1.status), a.log()))?;
    eprintln!("A master after {took:?}");
    f1.stop()?;
    Ok(a)
}

/// keepalived stayed MASTER all along (one BACKUP at init, one MASTER) and
/// was never reloaded; it printed its JSON dump `dumps` times.
fn check_keepalived_untouched(a: &Router, dumps: usize) {
    let log = a.log();
    assert_eq!(log.matches("Reloading").count(), 0, "{log}");
    assert_eq!(
        entered(&log, &a.instance),
        (1, 1),
        "one BACKUP (init), one MASTER, no transition after:\n{log}"
    );
    assert_eq!(log.matches("Printing VRRP as json").count(), dumps, "{log}");
}

/// cer-control restarts (a fresh follower) while keepalived stays MASTER.
/// Without the option nothing is heard and the gate stays closed; with a
/// JSON file keepalived does not write to (its TMPDIR is elsewhere), one
/// signal, a warning, the gate stays closed and there is no retry loop.
#[test]
fn vrrp_restart_asks_keepalived_once_without_a_transition() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("vrrp-restart")?;
    let mut a = lone_master(&scratch)?;
    let pid_file = a.dir.join("k1.pid");

    // Restart without the option: nothing is heard, the gate stays closed.
    let mut f2 = Follower::start(&a, None, None);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        state(&f2.status),
        (VrrpState::Unknown, false),
        "without keepalived_pid_file"
    );
    assert_eq!(f2.status.lock().unwrap().json_dump_requests, 0);
    f2.stop()?;

    // The wrong JSON file: one signal, keepalived dumps elsewhere, the gate stays closed.
    let wrong = scratch.path.join("elsewhere.json");
    let mut f3 = Follower::start(&a, Some(pid_file.clone()), Some(wrong));
    wait("one state request", Duration::from_secs(5), || {
        f3.status.lock().unwrap().json_dump_requests == 1
    })?;
    std::thread::sleep(vrrp::JSON_WAIT + Duration::from_secs(2));
    let s = f3.status.lock().unwrap().clone();
    eprintln!("wrong keepalived_json_file: {:?}", s.last_json_dump);
    assert_eq!((s.state, s.gate_open), (VrrpState::Unknown, false), "{s:?}");
    assert_eq!(s.json_dump_requests, 1, "{s:?}");
    assert!(
        s.last_json_dump
            .as_deref()
            .is_some_and(|m| m.contains("did not change")),
        "{s:?}"
    );
    f3.stop()?;
    check_keepalived_untouched(&a, 1);
    a.kill(1);
    Ok(())
}

/// The goal of `keepalived_pid_file`: the gate opens again on the master
/// after a cer-control restart, from keepalived's JSON dump (keepalived
/// 2.2.7 here), within a few seconds, with one request, no VRRP transition
/// and no keepalived reload.
#[test]
fn vrrp_gate_reopens_on_the_master_after_a_restart() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("vrrp-reopen")?;
    let mut a = lone_master(&scratch)?;
    let pid_file = a.dir.join("k1.pid");
    let json_file = a.dir.join("keepalived.json");
    let f = Follower::start(&a, Some(pid_file), Some(json_file.clone()));
    let opened = wait("gate open again", Duration::from_secs(5), || {
        state(&f.status) == (VrrpState::Master, true)
    })
    .with_context(|| {
        format!(
            "status {:?}\nkeepalived log:\n{}",
            f.status.lock().unwrap(),
            a.log()
        )
    })?;
    eprintln!(
        "restart with keepalived_pid_file: gate open after {opened:?}: {:?}",
        f.status.lock().unwrap().last_json_dump
    );
    assert!(opened >= vrrp::RELOAD_GRACE, "{opened:?}");
    assert!(json_file.exists());
    // A while later: still open, still one request.
    std::thread::sleep(Duration::from_secs(3));
    let s = f.status.lock().unwrap().clone();
    assert_eq!((s.state, s.gate_open), (VrrpState::Master, true), "{s:?}");
    assert_eq!(s.json_dump_requests, 1, "{s:?}");
    assert_eq!(s.last_line, None, "{s:?}");
    check_keepalived_untouched(&a, 1);
    drop(f);
    a.kill(1);
    Ok(())
}
