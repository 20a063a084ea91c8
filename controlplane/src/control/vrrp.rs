//! The VRRP gate of on-prem capture: proxy ARP for captured /32s is allowed
//! only while this router is VRRP master, as keepalived reports it through
//! its `notify_fifo`.
//!
//! keepalived writes one line per transition, `TYPE "NAME" STATE PRIORITY`,
//! for example `INSTANCE "VI_1" MASTER 150`. We follow one instance (or
//! sync group, `GROUP "NAME" ...`) by name.
//!
//! Fail closed: the gate is open only in MASTER. BACKUP, FAULT, STOP, a line
//! we do not understand for our instance, and "no news" all close it. "No
//! news" means the FIFO reached EOF (keepalived exited or was killed: the
//! other router may be master now) or could not be opened; the reader then
//! reopens the FIFO and waits for keepalived to report again, which it does
//! for every instance when it starts.
//!
//! keepalived reports transitions only. After cer-control restarts while
//! keepalived keeps running, no line comes until the next transition, and the
//! gate would stay closed on a master. With `keepalived_pid_file` configured
//! (see [`FollowOptions`]), the reader asks keepalived to write its states
//! again: when the FIFO is open, our state is still Unknown and no line for
//! our instance has arrived within [`RELOAD_GRACE`], it sends SIGHUP once to
//! the pid in that file. keepalived reloads and, with
//! `fifo_write_vrrp_states_on_reload` in its `global_defs`, writes the state
//! of every instance to the FIFO. A reload closes and reopens keepalived's end
//! of the FIFO, so the reader sees EOF and reopens; it does not signal again
//! until keepalived has reported a state for our instance (no reload loops).
//! A missing or stale pid file is a logged warning: the gate stays closed.
//! keepalived 2.2.7 (Debian 12) rewrites BACKUP and FAULT states on reload
//! but not MASTER (checked against the real daemon in tests/tests/vrrp.rs), so
//! there the master's gate stays closed until the next transition.

use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the reader waits, after opening the FIFO with no known state,
/// for keepalived to report on its own (it does right after it starts)
/// before it asks for the states with SIGHUP.
pub const RELOAD_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
    Stop,
    /// Nothing known: not started, FIFO closed, or an unrecognised state.
    Unknown,
}

impl VrrpState {
    /// Whether proxy ARP may answer for captured /32s.
    pub fn gate_open(self) -> bool {
        self == VrrpState::Master
    }
}

/// Parses one notify_fifo line; `None` when the line is about another
/// instance or group (or is not a state line at all).
pub fn parse_line(line: &str, instance: &str) -> Option<VrrpState> {
    let line = line.trim();
    let rest = line
        .strip_prefix("INSTANCE ")
        .or_else(|| line.strip_prefix("GROUP "))?;
    let rest = rest.strip_prefix('"')?;
    let (name, rest) = rest.split_once('"')?;
    if name != instance {
        return None;
    }
    let state = rest.split_whitespace().next().unwrap_or("");
    Some(match state {
        "MASTER" => VrrpState::Master,
        // keepalived's note that a master heard a lower-priority advert: still master.
        "MASTER_RX_LOWER_PRI" => VrrpState::Master,
        "BACKUP" => VrrpState::Backup,
        "FAULT" => VrrpState::Fault,
        "STOP" => VrrpState::Stop,
        _ => VrrpState::Unknown,
    })
}

/// What `cerctl` and `explain` show about the gate.
#[derive(Debug, Clone, Serialize)]
pub struct VrrpStatus {
    pub fifo: String,
    pub instance: String,
    pub state: VrrpState,
    pub gate_open: bool,
    /// Unix seconds of the last state change.
    pub since_unix: u64,
    pub last_line: Option<String>,
    /// Times the FIFO reached EOF or failed (keepalived gone: gate closed).
    pub fifo_closed: u64,
    pub last_error: Option<String>,
    /// SIGHUPs sent to keepalived to have it rewrite its states (`keepalived_pid_file`).
    pub state_requests: u64,
    /// What the last such request did (signalled pid, or why it could not).
    pub last_state_request: Option<String>,
}

pub type SharedVrrp = Arc<Mutex<VrrpStatus>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn new_status(fifo: &Path, instance: &str) -> SharedVrrp {
    Arc::new(Mutex::new(VrrpStatus {
        fifo: fifo.display().to_string(),
        instance: instance.to_string(),
        state: VrrpState::Unknown,
        gate_open: false,
        since_unix: unix_now(),
        last_line: None,
        fifo_closed: 0,
        last_error: None,
        state_requests: 0,
        last_state_request: None,
    }))
}

/// Options of [`follow_with`].
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// keepalived's pid file (`keepalived -p FILE`, e.g. `/run/keepalived.pid`):
    /// when the state is unknown after opening the FIFO, SIGHUP that pid once
    /// so keepalived rewrites its states (needs `fifo_write_vrrp_states_on_reload`).
    pub keepalived_pid_file: Option<PathBuf>,
    /// When set, [`follow_with`] returns (within about 200 ms while the FIFO
    /// is open; opening it waits for a writer).
    pub stop: Option<Arc<AtomicBool>>,
}

/// Reads a pid file and sends SIGHUP to exactly that pid. Returns what was
/// done, or why nothing was sent (missing file, garbage, no such process).
pub fn request_states(pid_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("keepalived pid file {}: {e}", pid_file.display()))?;
    let pid: libc::pid_t = text.trim().parse().ok().filter(|p| *p > 1).ok_or_else(|| {
        format!(
            "keepalived pid file {}: {:?} is not a process id",
            pid_file.display(),
            text.trim()
        )
    })?;
    // SAFETY: kill(2) with one positive pid read from keepalived's pid file.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "SIGHUP to keepalived pid {pid} (from {}): {e} (stale pid file?)",
            pid_file.display()
        ));
    }
    Ok(format!(
        "sent SIGHUP to keepalived pid {pid} (from {}) to have it rewrite its VRRP states",
        pid_file.display()
    ))
}

/// Waits up to `timeout` for `fd` to be readable (or hung up). `true` when it is.
fn readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0
}

/// Creates the FIFO (mode 0600) unless a FIFO is already there; a regular
/// file at the path is an error (keepalived would write into it and we would
/// read stale states).
pub fn ensure_fifo(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(format!(
            "{} exists and is not a FIFO (keepalived notify_fifo)",
            path.display()
        )),
        Err(_) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(format!(
                        "directory {} of the notify FIFO does not exist",
                        dir.display()
                    ));
                }
            }
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("{}: NUL in path", path.display()))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(format!("mkfifo {}: {e}", path.display()));
                }
            }
            Ok(())
        }
    }
}

/// Follows `instance` in keepalived's notify FIFO forever, calling
/// `on_change(open)` whenever the gate opens or closes (and once, closed, at
/// start). Blocks: run it on its own thread.
pub fn follow(
    fifo: PathBuf,
    instance: String,
    status: SharedVrrp,
    on_change: impl FnMut(bool, &str),
) {
    follow_with(fifo, instance, status, FollowOptions::default(), on_change)
}

/// [`follow`] with options: ask keepalived for its states when they are
/// unknown (`keepalived_pid_file`), and a stop flag.
pub fn follow_with(
    fifo: PathBuf,
    instance: String,
    status: SharedVrrp,
    opts: FollowOptions,
    mut on_change: impl FnMut(bool, &str),
) {
    let stopped = || {
        opts.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    };
    let set = |f: &mut dyn FnMut(&mut VrrpStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s);
        }
    };
    on_change(false, "starting: no VRRP state yet (fail closed)");
    let mut gate = false;
    let mut apply = |state: VrrpState, why: &str| {
        set(&mut |s| {
            if s.state != state {
                s.since_unix = unix_now();
            }
            s.state = state;
            s.gate_open = state.gate_open();
        });
        if state.gate_open() != gate {
            gate = state.gate_open();
            on_change(gate, why);
        }
    };
    // Armed: a SIGHUP may be sent. Disarmed after sending, re-armed by the
    // next line keepalived writes for our instance.
    let mut armed = true;
    loop {
        if stopped() {
            return;
        }
        // Opening blocks until keepalived opens the FIFO for writing.
        let opened = ensure_fifo(&fifo).and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&fifo)
                .map_err(|e| format!("opening {}: {e}", fifo.display()))
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                log::error!("vrrp gate: {e}");
                set(&mut |s| s.last_error = Some(e.clone()));
                apply(VrrpState::Unknown, &e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let fd = file.as_raw_fd();
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        let opened_at = Instant::now();
        loop {
            if stopped() {
                return;
            }
            if reader.buffer().is_empty() {
                let unknown = status
                    .lock()
                    .map(|s| s.state == VrrpState::Unknown)
                    .unwrap_or(false);
                let ask = armed && unknown && opts.keepalived_pid_file.is_some();
                let wait = if ask {
                    RELOAD_GRACE.saturating_sub(opened_at.elapsed())
                } else {
                    Duration::from_millis(200)
                };
                if !readable(fd, wait.min(Duration::from_millis(200))) {
                    if ask && opened_at.elapsed() >= RELOAD_GRACE {
                        armed = false;
                        let pid_file = opts.keepalived_pid_file.as_deref().unwrap_or(Path::new(""));
                        let done = request_states(pid_file);
                        match &done {
                            Ok(m) => log::info!("vrrp gate: state of {instance} unknown: {m}"),
                            Err(e) => log::warn!(
                                "vrrp gate: state of {instance} unknown; cannot ask keepalived: {e}"
                            ),
                        }
                        set(&mut |s| {
                            s.state_requests += u64::from(done.is_ok());
                            s.last_state_request = Some(match &done {
                                Ok(m) | Err(m) => m.clone(),
                            });
                        });
                    }
                    continue;
                }
            }
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.len() > 4096 {
                        continue;
                    }
                    if let Some(state) = parse_line(&line, &instance) {
                        armed = true;
                        let text = line.trim().to_string();
                        log::info!("vrrp gate: {text}");
                        set(&mut |s| s.last_line = Some(text.clone()));
                        apply(state, &text);
                    }
                }
                Err(e) => {
                    let msg = format!("reading {}: {e}", fifo.display());
                    set(&mut |s| s.last_error = Some(msg.clone()));
                    break;
                }
            }
        }
        // EOF: every writer is gone. keepalived is not telling us anything:
        // the other router may be master. Close the gate until it reports.
        set(&mut |s| s.fifo_closed += 1);
        log::warn!(
            "vrrp gate: {} closed by keepalived; gate closed until it reports again",
            fifo.display()
        );
        apply(VrrpState::Unknown, "notify FIFO closed (keepalived exited)");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    #[test]
    fn parses_keepalived_lines_for_our_instance_only() {
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" MASTER 150\n", "VI_1"),
            Some(VrrpState::Master)
        );
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" BACKUP 100", "VI_1"),
            Some(VrrpState::Backup)
        );
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" FAULT 0", "VI_1"),
            Some(VrrpState::Fault)
        );
        assert_eq!(parse_line("GROUP \"G\" STOP 0", "G"), Some(VrrpState::Stop));
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 150", "VI_1"),
            Some(VrrpState::Master)
        );
        assert_eq!(parse_line("INSTANCE \"VI_2\" MASTER 150", "VI_1"), None);
        assert_eq!(parse_line("INSTANCE \"VI_10\" MASTER 150", "VI_1"), None);
        // Unknown states for our instance close the gate; garbage is ignored.
        assert_eq!(
            parse_line("INSTANCE \"VI_1\" WEIRD 1", "VI_1"),
            Some(VrrpState::Unknown)
        );
        assert_eq!(
            parse_line("INSTANCE \"VI_1\"", "VI_1"),
            Some(VrrpState::Unknown)
        );
        for junk in [
            "",
            "MASTER",
            "INSTANCE VI_1 MASTER",
            "INSTANCE \"VI_1",
            "\u{0}\u{ff}",
        ] {
            assert_eq!(parse_line(junk, "VI_1"), None, "{junk:?}");
        }
        assert!(VrrpState::Master.gate_open());
        for s in [
            VrrpState::Backup,
            VrrpState::Fault,
            VrrpState::Stop,
            VrrpState::Unknown,
        ] {
            assert!(!s.gate_open());
        }
    }

    #[test]
    fn refuses_a_regular_file_as_fifo() {
        let dir = std::env::temp_dir().join(format!("cer-vrrp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plain");
        std::fs::write(&f, "x").unwrap();
        assert!(ensure_fifo(&f).unwrap_err().contains("not a FIFO"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A real FIFO: master opens the gate, backup closes it, the writer
    /// going away (keepalived killed) closes it, a new writer is followed.
    #[test]
    fn follows_a_real_fifo_and_fails_closed_on_eof() {
        let dir = std::env::temp_dir().join(format!(
            "cer-vrrp-fifo-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("notify.fifo");
        let status = new_status(&fifo, "VI_1");
        let (tx, rx) = mpsc::channel();
        {
            let (fifo, status) = (fifo.clone(), status.clone());
            std::thread::spawn(move || {
                follow(fifo, "VI_1".into(), status, move |open, why| {
                    let _ = tx.send((open, why.to_string()));
                })
            });
        }
        let next = || {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("gate change")
        };
        assert!(!next().0, "closed at start");
        // Wait for the reader to create the FIFO, then play keepalived.
        for _ in 0..100 {
            if fifo.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writeln!(w, "INSTANCE \"OTHER\" MASTER 200").unwrap();
        writeln!(w, "INSTANCE \"VI_1\" MASTER 150").unwrap();
        let (open, why) = next();
        assert!(open && why.contains("MASTER"), "{why}");
        writeln!(w, "INSTANCE \"VI_1\" BACKUP 150").unwrap();
        assert!(!next().0);
        writeln!(w, "INSTANCE \"VI_1\" MASTER 150").unwrap();
        assert!(next().0);
        drop(w); // keepalived killed
        let (open, why) = next();
        assert!(!open && why.contains("closed"), "{why}");
        let s = status.lock().unwrap().clone();
        assert_eq!(s.state, VrrpState::Unknown);
        assert_eq!(s.fifo_closed, 1);
        // keepalived restarts and reports master again.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writeln!(w, "INSTANCE \"VI_1\" MASTER 150").unwrap();
        assert!(next().0);
        drop(w);
        assert!(!next().0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn request_states_warns_on_missing_or_stale_pid_files() {
        let dir = std::env::temp_dir().join(format!("cer-vrrp-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("none.pid");
        assert!(request_states(&missing).unwrap_err().contains("none.pid"));
        let junk = dir.join("junk.pid");
        std::fs::write(&junk, "keepalived\n").unwrap();
        assert!(request_states(&junk)
            .unwrap_err()
            .contains("not a process id"));
        std::fs::write(&junk, "1\n").unwrap();
        assert!(request_states(&junk)
            .unwrap_err()
            .contains("not a process id"));
        // A pid that has exited (and been reaped): ESRCH, a warning, no crash.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let gone = c.id();
        c.wait().unwrap();
        std::fs::write(&junk, format!("{gone}\n")).unwrap();
        let e = request_states(&junk).unwrap_err();
        assert!(e.contains("stale"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The reader's question with a stand-in for keepalived: a shell that
    /// writes its state line to the FIFO on SIGHUP. Exactly one SIGHUP, and
    /// only after the grace period without a line.
    #[test]
    fn asks_once_for_the_state_when_nothing_is_heard() {
        let dir = std::env::temp_dir().join(format!(
            "cer-vrrp-ask-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("notify.fifo");
        ensure_fifo(&fifo).unwrap();
        let count = dir.join("hups");
        let line = dir.join("line");
        std::fs::write(&line, "INSTANCE \"VI_1\" MASTER 150\n").unwrap();
        let script = format!(
            r#"trap 'echo x >> {c}; cat {l} > {f}' HUP; echo $$ > {p}; while :; do sleep 0.05; done"#,
            c = count.display(),
            l = line.display(),
            f = fifo.display(),
            p = dir.join("k.pid").display()
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if dir.join("k.pid").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // keepalived keeps its end of the FIFO open (O_RDWR) all the time.
        let _writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let status = new_status(&fifo, "VI_1");
        let stop = Arc::new(AtomicBool::new(false));
        let opts = FollowOptions {
            keepalived_pid_file: Some(dir.join("k.pid")),
            stop: Some(stop.clone()),
        };
        let (f, st) = (fifo.clone(), status.clone());
        let t0 = std::time::Instant::now();
        let th = std::thread::spawn(move || follow_with(f, "VI_1".into(), st, opts, |_, _| {}));
        while !status.lock().unwrap().gate_open && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_millis(1500));
        let s = status.lock().unwrap().clone();
        stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(s.gate_open && s.state == VrrpState::Master, "{s:?}");
        assert!(
            took >= RELOAD_GRACE,
            "asked before the grace period: {took:?}"
        );
        assert_eq!(s.state_requests, 1, "{s:?}");
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
