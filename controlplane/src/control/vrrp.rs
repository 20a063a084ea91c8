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
//! (see [`FollowOptions`]), the reader reads keepalived's state from its
//! read-only JSON dump instead: when the FIFO is open, our state is still
//! Unknown and no line for our instance has arrived within [`RELOAD_GRACE`],
//! it sends keepalived's JSON signal (`keepalived --signum=JSON`, asked once
//! when the reader starts) once to the pid in that file. keepalived then
//! writes `$TMPDIR/keepalived.json` (its own TMPDIR, `/tmp` by default; see
//! `keepalived_json_file`) without reloading anything and without a VRRP
//! transition; this works with keepalived 2.2 (checked against 2.2.7 in
//! tests/tests/vrrp.rs). The reader waits up to [`JSON_WAIT`] for the file's
//! mtime to change, takes our instance's `data.state` (2 MASTER, 1 BACKUP,
//! 3 FAULT) and applies it only if no FIFO line for our instance came in the
//! meantime: FIFO lines always win. At most one request per FIFO (re)open, no
//! retries. A missing or stale pid file, a file that does not change, garbage
//! or a dump without our instance (sync groups are not in it) are logged
//! warnings: the state stays Unknown and the gate closed.

use cer_shared::stall::StallWatch;
use serde::Serialize;
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the reader waits, after opening the FIFO with no known state,
/// for keepalived to report on its own (it does right after it starts)
/// before it asks for the JSON state dump.
pub const RELOAD_GRACE: Duration = Duration::from_secs(1);

/// How long the reader waits, after sending the JSON signal, for keepalived
/// to write its JSON file.
pub const JSON_WAIT: Duration = Duration::from_secs(3);

/// Where keepalived writes its JSON dump when its TMPDIR is unset.
pub const DEFAULT_JSON_FILE: &str = "/tmp/keepalived.json";

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
    /// JSON signals sent to keepalived to read its state from its JSON dump
    /// (`keepalived_pid_file`, `keepalived_json_file`).
    pub json_dump_requests: u64,
    /// What the last such request did: signalled pid and what the dump said
    /// (applied, or ignored because a FIFO line came first), or why not.
    pub last_json_dump: Option<String>,
    /// Times a stall of this process (or of the dataplane) closed the gate
    /// until VRRP settled and keepalived confirmed the state again.
    pub stall_holds: u64,
    /// The gate is held closed after a stall right now.
    pub stall_hold: bool,
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
        json_dump_requests: 0,
        last_json_dump: None,
        stall_holds: 0,
        stall_hold: false,
    }))
}

/// Options of [`follow_with`].
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// keepalived's pid file (`keepalived -p FILE`, e.g. `/run/keepalived.pid`):
    /// when the state is unknown after opening the FIFO, send keepalived's
    /// JSON signal to that pid once and read the state from its JSON dump.
    pub keepalived_pid_file: Option<PathBuf>,
    /// Where keepalived writes its JSON dump: `$TMPDIR/keepalived.json` of
    /// the keepalived process; `None` is [`DEFAULT_JSON_FILE`].
    pub keepalived_json_file: Option<PathBuf>,
    /// When set, [`follow_with`] returns (within about 200 ms while the FIFO
    /// is open; opening it waits for a writer).
    pub stop: Option<Arc<AtomicBool>>,
    /// The process's stall watch: after a stall the gate closes for
    /// `stall_settle`, then keepalived's state is confirmed (its JSON dump
    /// with `keepalived_pid_file`, else the last FIFO state) before it opens.
    pub stall: Option<Arc<StallWatch>>,
    /// How long VRRP gets to settle after a stall: at least three advert
    /// intervals plus skew, so that a master which is no longer one has
    /// heard the other's adverts and said so ([`DEFAULT_STALL_SETTLE`]).
    pub stall_settle: Duration,
}

/// Settle time after a stall for keepalived's default 1 s adverts.
pub const DEFAULT_STALL_SETTLE: Duration = Duration::from_millis(3500);

/// keepalived's JSON signal number as `keepalived --signum=JSON` prints it
/// (36 with glibc). When that fails: a warning, and keepalived's definition
/// (`SIGRTMIN + 2`).
pub fn json_signal() -> (libc::c_int, Option<String>) {
    let asked = std::process::Command::new("keepalived")
        .arg("--signum=JSON")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running keepalived --signum=JSON: {e}"))
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            text.parse::<libc::c_int>()
                .ok()
                .filter(|n| (1..=64).contains(n) && o.status.success())
                .ok_or_else(|| format!("keepalived --signum=JSON said {text:?} ({})", o.status))
        });
    match asked {
        Ok(n) => (n, None),
        Err(e) => {
            let n = libc::SIGRTMIN() + 2;
            (n, Some(format!("{e}; using SIGRTMIN+2 = {n}")))
        }
    }
}

/// What went wrong following keepalived: its pid file, its JSON dump, the
/// notify FIFO. The text names the file and what to check.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("keepalived pid file {}: {source}", path.display())]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keepalived pid file {}: {text:?} is not a process id", path.display())]
    NotAPid { path: PathBuf, text: String },
    #[error("signal {signum} to keepalived pid {pid} (from {}): {source} (stale pid file?)", path.display())]
    Signal {
        signum: libc::c_int,
        pid: libc::pid_t,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not keepalived JSON: {0}")]
    NotJson(String),
    #[error("no vrrp_instance {0:?} in it (sync groups are not in keepalived's JSON dump)")]
    NoInstance(String),
    #[error("instance {0:?} has no numeric data.state")]
    NoState(String),
    #[error("{}: {source}", path.display())]
    Dump {
        path: PathBuf,
        source: Box<VrrpError>,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} did not change within {JSON_WAIT:?} (keepalived's TMPDIR elsewhere? set keepalived_json_file)", path.display())]
    DumpUnchanged { path: PathBuf },
    #[error("{} exists and is not a FIFO (keepalived notify_fifo)", .0.display())]
    NotAFifo(PathBuf),
    #[error("directory {} of the notify FIFO does not exist", .0.display())]
    NoFifoDirectory(PathBuf),
    #[error("{}: NUL in path", .0.display())]
    NulInPath(PathBuf),
    #[error("mkfifo {}: {source}", path.display())]
    Mkfifo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads a pid file and sends `signum` to exactly that pid. Returns the pid,
/// or why nothing was sent (missing file, garbage, no such process).
pub fn signal_pid_file(pid_file: &Path, signum: libc::c_int) -> Result<libc::pid_t, VrrpError> {
    let text = std::fs::read_to_string(pid_file).map_err(|source| VrrpError::PidFile {
        path: pid_file.to_path_buf(),
        source,
    })?;
    let pid: libc::pid_t =
        text.trim()
            .parse()
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| VrrpError::NotAPid {
                path: pid_file.to_path_buf(),
                text: text.trim().to_string(),
            })?;
    // SAFETY: kill(2) with one positive pid read from keepalived's pid file.
    if unsafe { libc::kill(pid, signum) } != 0 {
        return Err(VrrpError::Signal {
            signum,
            pid,
            path: pid_file.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(pid)
}

/// Our instance's state in keepalived's JSON dump (an array of
/// `{"data": {"iname": NAME, "state": N, ...}, ...}`): 2 MASTER, 1 BACKUP,
/// 3 FAULT; anything else is Unknown.
pub fn parse_json_state(text: &str, instance: &str) -> Result<VrrpState, VrrpError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| VrrpError::NotJson(e.to_string()))?;
    let list = v
        .as_array()
        .ok_or_else(|| VrrpError::NotJson("not an array".into()))?;
    let data = list
        .iter()
        .filter_map(|e| e.get("data"))
        .find(|d| d.get("iname").and_then(|n| n.as_str()) == Some(instance))
        .ok_or_else(|| VrrpError::NoInstance(instance.to_string()))?;
    let n = data
        .get("state")
        .and_then(|s| s.as_i64())
        .ok_or_else(|| VrrpError::NoState(instance.to_string()))?;
    Ok(match n {
        2 => VrrpState::Master,
        1 => VrrpState::Backup,
        3 => VrrpState::Fault,
        _ => VrrpState::Unknown,
    })
}

/// A JSON dump asked for and not yet read.
struct PendingDump {
    pid: libc::pid_t,
    sent: Instant,
    /// The file's mtime just before the signal (`None`: no file yet).
    before: Option<SystemTime>,
    last_problem: Option<VrrpError>,
}

/// What [`PendingDump::check`] found.
enum DumpCheck {
    NotYet,
    Done(Result<VrrpState, VrrpError>),
}

impl PendingDump {
    /// Sends keepalived (the pid in `pid_file`) its JSON signal; the dump
    /// counts once `json_file` changes from what it is now.
    fn ask(
        pid_file: &Path,
        signum: libc::c_int,
        json_file: &Path,
    ) -> Result<PendingDump, VrrpError> {
        let before = std::fs::metadata(json_file).and_then(|m| m.modified()).ok();
        let pid = signal_pid_file(pid_file, signum)?;
        Ok(PendingDump {
            pid,
            sent: Instant::now(),
            before,
            last_problem: None,
        })
    }

    fn check(&mut self, json_file: &Path, instance: &str) -> DumpCheck {
        let mtime = std::fs::metadata(json_file).and_then(|m| m.modified()).ok();
        let timeout = self.sent.elapsed() >= JSON_WAIT;
        if mtime.is_some() && mtime != self.before {
            // keepalived may still be writing: retry garbage until the deadline.
            let in_dump = |e: VrrpError| VrrpError::Dump {
                path: json_file.to_path_buf(),
                source: Box::new(e),
            };
            match std::fs::read_to_string(json_file)
                .map_err(|source| VrrpError::Read {
                    path: json_file.to_path_buf(),
                    source,
                })
                .and_then(|t| parse_json_state(&t, instance))
            {
                Ok(state) => return DumpCheck::Done(Ok(state)),
                Err(e) if timeout => return DumpCheck::Done(Err(in_dump(e))),
                Err(e) => self.last_problem = Some(in_dump(e)),
            }
        }
        if timeout {
            return DumpCheck::Done(Err(self.last_problem.take().unwrap_or_else(|| {
                VrrpError::DumpUnchanged {
                    path: json_file.to_path_buf(),
                }
            })));
        }
        DumpCheck::NotYet
    }
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
pub fn ensure_fifo(path: &Path) -> Result<(), VrrpError> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(VrrpError::NotAFifo(path.to_path_buf())),
        Err(_) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(VrrpError::NoFifoDirectory(dir.to_path_buf()));
                }
            }
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| VrrpError::NulInPath(path.to_path_buf()))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(VrrpError::Mkfifo {
                        path: path.to_path_buf(),
                        source: e,
                    });
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

/// [`follow`] with options: read keepalived's JSON state dump when the state
/// is unknown (`keepalived_pid_file`), and a stop flag.
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
    let json_file = opts
        .keepalived_json_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_JSON_FILE));
    // keepalived's JSON signal, asked once (only needed with a pid file).
    let signum = opts.keepalived_pid_file.as_ref().map(|_| {
        let (n, warning) = json_signal();
        if let Some(w) = warning {
            log::warn!("vrrp gate: {w}");
        }
        n
    });
    let mut gate = false;
    // After a stall: closed until this instant, then until keepalived's
    // state is confirmed (`confirming`).
    let hold: Cell<Option<Instant>> = Cell::new(None);
    let confirming = Cell::new(false);
    let mut apply = |state: VrrpState, why: &str| {
        let open = state.gate_open() && hold.get().is_none() && !confirming.get();
        set(&mut |s| {
            if s.state != state {
                s.since_unix = unix_now();
            }
            s.state = state;
            s.gate_open = open;
            s.stall_hold = hold.get().is_some() || confirming.get();
        });
        if open != gate {
            gate = open;
            on_change(gate, why);
        }
    };
    let known = || status.lock().map(|s| s.state).unwrap_or(VrrpState::Unknown);
    let mut seen_epoch = opts.stall.as_ref().map_or(0, |w| w.epoch());
    let note = |msg: String, warn: bool, count: bool| {
        if warn {
            log::warn!("vrrp gate: {msg}");
        } else {
            log::info!("vrrp gate: {msg}");
        }
        set(&mut |s| {
            s.json_dump_requests += u64::from(count);
            s.last_json_dump = Some(msg.clone());
        });
    };
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
                .map_err(|source| VrrpError::Open {
                    path: fifo.clone(),
                    source,
                })
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                let e = e.to_string();
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
        // Per (re)open: a line for our instance heard, the one JSON request made.
        let mut heard = false;
        let mut asked = false;
        let mut pending: Option<PendingDump> = None;
        loop {
            if stopped() {
                return;
            }
            if let Some(w) = &opts.stall {
                let e = w.epoch();
                if e != seen_epoch || w.stalled_now() {
                    seen_epoch = e;
                    if hold.get().is_none() && !confirming.get() {
                        set(&mut |s| s.stall_holds += 1);
                        log::warn!(
                            "vrrp gate: stalled; gate held closed for {} ms while VRRP settles, \
                             then keepalived's state is confirmed",
                            opts.stall_settle.as_millis()
                        );
                    }
                    // A dump asked for before the stall says nothing now.
                    pending = None;
                    confirming.set(false);
                    hold.set(Some(Instant::now() + opts.stall_settle));
                    apply(known(), "stalled: held closed until VRRP settles");
                }
            }
            if hold.get().is_some_and(|t| Instant::now() >= t) {
                hold.set(None);
                match (signum, opts.keepalived_pid_file.as_deref()) {
                    (Some(signum), Some(pid_file)) => {
                        match PendingDump::ask(pid_file, signum, &json_file) {
                            Ok(p) => {
                                confirming.set(true);
                                note(
                                    format!(
                                        "after a stall: confirming the state of {instance} from keepalived pid {}'s JSON dump",
                                        p.pid
                                    ),
                                    false,
                                    true,
                                );
                                pending = Some(p);
                            }
                            Err(e) => {
                                note(
                                    format!("after a stall: cannot ask keepalived ({e}); going by its last FIFO state"),
                                    true,
                                    false,
                                );
                                apply(known(), "VRRP settled after a stall (last FIFO state)");
                            }
                        }
                    }
                    _ => apply(known(), "VRRP settled after a stall (last FIFO state)"),
                }
            }
            if reader.buffer().is_empty() {
                let unknown = status
                    .lock()
                    .map(|s| s.state == VrrpState::Unknown)
                    .unwrap_or(false);
                let ask = !asked && !heard && unknown && signum.is_some();
                let wait = if pending.is_some() {
                    Duration::from_millis(50)
                } else if ask {
                    RELOAD_GRACE.saturating_sub(opened_at.elapsed())
                } else if let Some(t) = hold.get() {
                    t.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(200))
                } else {
                    Duration::from_millis(200)
                };
                if !readable(fd, wait.min(Duration::from_millis(200))) {
                    // Nothing waiting in the FIFO: a dump may be applied now.
                    if let Some(p) = pending.as_mut() {
                        if let DumpCheck::Done(r) = p.check(&json_file, &instance) {
                            let pid = p.pid;
                            pending = None;
                            let after_stall = confirming.replace(false);
                            match r {
                                Ok(state) => {
                                    let msg = format!(
                                        "keepalived pid {pid} JSON dump {}: {instance} {state:?}",
                                        json_file.display()
                                    );
                                    note(format!("{msg} (applied)"), false, false);
                                    apply(state, &msg);
                                }
                                Err(e) if after_stall => {
                                    note(
                                        format!("keepalived pid {pid} JSON dump after a stall: {e}; going by its last FIFO state"),
                                        true,
                                        false,
                                    );
                                    apply(known(), "VRRP settled after a stall (last FIFO state)");
                                }
                                Err(e) => note(
                                    format!("keepalived pid {pid} JSON dump: {e}; state of {instance} stays unknown (gate closed)"),
                                    true,
                                    false,
                                ),
                            }
                        }
                    } else if ask && opened_at.elapsed() >= RELOAD_GRACE {
                        asked = true;
                        let signum = signum.unwrap_or(0);
                        let pid_file = opts.keepalived_pid_file.as_deref().unwrap_or(Path::new(""));
                        match PendingDump::ask(pid_file, signum, &json_file) {
                            Ok(p) => {
                                note(
                                    format!(
                                        "state of {instance} unknown: sent JSON signal {signum} to keepalived pid {} (from {}), reading {}",
                                        p.pid,
                                        pid_file.display(),
                                        json_file.display()
                                    ),
                                    false,
                                    true,
                                );
                                pending = Some(p);
                            }
                            Err(e) => note(
                                format!("state of {instance} unknown; cannot ask keepalived: {e}"),
                                true,
                                false,
                            ),
                        }
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
                        heard = true;
                        let text = line.trim().to_string();
                        log::info!("vrrp gate: {text}");
                        if let Some(p) = pending.take() {
                            note(
                                format!(
                                    "keepalived pid {} JSON dump ignored: the FIFO said {text:?} first",
                                    p.pid
                                ),
                                false,
                                false,
                            );
                        }
                        // A line after the settle time is news: it confirms.
                        confirming.set(false);
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
        if let Some(p) = pending.take() {
            note(
                format!(
                    "keepalived pid {} JSON dump dropped: the notify FIFO closed",
                    p.pid
                ),
                true,
                false,
            );
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
        assert!(ensure_fifo(&f)
            .unwrap_err()
            .to_string()
            .contains("not a FIFO"));
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
    fn signal_pid_file_warns_on_missing_or_stale_pid_files() {
        let dir = std::env::temp_dir().join(format!("cer-vrrp-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("none.pid");
        let sig = libc::SIGRTMIN() + 2;
        assert!(signal_pid_file(&missing, sig)
            .unwrap_err()
            .to_string()
            .contains("none.pid"));
        let junk = dir.join("junk.pid");
        std::fs::write(&junk, "keepalived\n").unwrap();
        assert!(signal_pid_file(&junk, sig)
            .unwrap_err()
            .to_string()
            .contains("not a process id"));
        std::fs::write(&junk, "1\n").unwrap();
        assert!(signal_pid_file(&junk, sig)
            .unwrap_err()
            .to_string()
            .contains("not a process id"));
        // A pid that has exited (and been reaped): ESRCH, a warning, no crash.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let gone = c.id();
        c.wait().unwrap();
        std::fs::write(&junk, format!("{gone}\n")).unwrap();
        let e = signal_pid_file(&junk, sig).unwrap_err().to_string();
        assert!(e.contains("stale"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_keepalived_json_dumps() {
        let dump = |name: &str, state: i64| {
            format!(
                r#"[{{"data":{{"iname":"OTHER","state":2}},"stats":{{}}}},{{"data":{{"iname":"{name}","ifp_ifname":"eth0","state":{state},"wantstate":{state}}},"stats":{{"become_master":1}}}}]"#
            )
        };
        assert_eq!(
            parse_json_state(&dump("VI_1", 2), "VI_1").ok(),
            Some(VrrpState::Master)
        );
        assert_eq!(
            parse_json_state(&dump("VI_1", 1), "VI_1").ok(),
            Some(VrrpState::Backup)
        );
        assert_eq!(
            parse_json_state(&dump("VI_1", 3), "VI_1").ok(),
            Some(VrrpState::Fault)
        );
        // INIT and anything else: unknown (closed).
        assert_eq!(
            parse_json_state(&dump("VI_1", 0), "VI_1").ok(),
            Some(VrrpState::Unknown)
        );
        assert!(parse_json_state(&dump("VI_10", 2), "VI_1")
            .unwrap_err()
            .to_string()
            .contains("no vrrp_instance"));
        assert!(parse_json_state(&dump("VI_1", 2), "OTHER_G").is_err());
        for junk in ["", "[", "{}", "garbage", r#"[{"data":{"iname":"VI_1"}}]"#] {
            assert!(parse_json_state(junk, "VI_1").is_err(), "{junk:?}");
        }
        assert!(
            parse_json_state(r#"[{"data":{"iname":"VI_1","state":"MASTER"}}]"#, "VI_1").is_err()
        );
    }

    /// A stand-in for keepalived: a shell that keeps the FIFO open and, on
    /// keepalived's JSON signal, counts it, waits `delay` seconds and writes
    /// `json` to the JSON file.
    struct StandIn {
        dir: PathBuf,
        fifo: PathBuf,
        child: std::process::Child,
        _writer: std::fs::File,
    }

    impl StandIn {
        fn start(name: &str, json: &str, delay: &str) -> StandIn {
            let dir = std::env::temp_dir().join(format!(
                "cer-vrrp-{name}-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let fifo = dir.join("notify.fifo");
            ensure_fifo(&fifo).unwrap();
            std::fs::write(dir.join("src.json"), json).unwrap();
            let script = format!(
                r#"trap 'echo x >> {d}/signals; sleep {delay}; cat {d}/src.json > {d}/keepalived.json' {sig}; echo $$ > {d}/k.pid; while :; do sleep 0.05; done"#,
                d = dir.display(),
                sig = json_signal().0,
            );
            let child = std::process::Command::new("sh")
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
            StandIn {
                dir,
                fifo,
                child,
                _writer,
            }
        }

        fn follow(&self) -> (SharedVrrp, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
            self.follow_stalls(None)
        }

        fn follow_stalls(
            &self,
            stall: Option<Arc<StallWatch>>,
        ) -> (SharedVrrp, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
            let status = new_status(&self.fifo, "VI_1");
            let stop = Arc::new(AtomicBool::new(false));
            let opts = FollowOptions {
                keepalived_pid_file: Some(self.dir.join("k.pid")),
                keepalived_json_file: Some(self.dir.join("keepalived.json")),
                stop: Some(stop.clone()),
                stall,
                stall_settle: Duration::from_millis(400),
            };
            let (f, st) = (self.fifo.clone(), status.clone());
            let th = std::thread::spawn(move || follow_with(f, "VI_1".into(), st, opts, |_, _| {}));
            (status, stop, th)
        }

        fn signals(&self) -> usize {
            std::fs::read_to_string(self.dir.join("signals"))
                .unwrap_or_default()
                .lines()
                .count()
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const MASTER_JSON: &str = r#"[{"data":{"iname":"VI_1","state":2,"wantstate":2},"stats":{}}]"#;
    const BACKUP_JSON: &str = r#"[{"data":{"iname":"VI_1","state":1,"wantstate":1},"stats":{}}]"#;

    /// After a stall the gate closes at once, stays closed while VRRP
    /// settles (a MASTER line then does not open it), and opens only on what
    /// keepalived says after the settle time: here its dump says BACKUP (the
    /// other router took over while this one was stopped), so it stays shut
    /// until keepalived reports MASTER anew.
    #[test]
    fn a_stall_holds_the_gate_until_keepalived_confirms() {
        let k = StandIn::start("stall", BACKUP_JSON, "0");
        let w = StallWatch::new();
        let (status, stop, th) = k.follow_stalls(Some(w.clone()));
        let line = |text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&k.fifo)
                .unwrap();
            writeln!(f, "{text}").unwrap();
        };
        let wait_for = |what: &str, f: &dyn Fn(&VrrpStatus) -> bool| {
            let t0 = Instant::now();
            loop {
                let s = status.lock().unwrap().clone();
                if f(&s) {
                    return t0.elapsed();
                }
                assert!(t0.elapsed() < Duration::from_secs(5), "{what}: {s:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        line("INSTANCE \"VI_1\" MASTER 150");
        wait_for("open on MASTER", &|s| s.gate_open);
        w.report("test");
        wait_for("closed by the stall", &|s| !s.gate_open && s.stall_hold);
        // keepalived, stopped too, resumes as master: not yet believed.
        line("INSTANCE \"VI_1\" MASTER 150");
        std::thread::sleep(Duration::from_millis(150));
        assert!(!status.lock().unwrap().gate_open, "opened while settling");
        let took = wait_for("the dump asked and applied", &|s| {
            !s.stall_hold && s.state == VrrpState::Backup
        });
        assert!(took >= Duration::from_millis(150), "{took:?}");
        let s = status.lock().unwrap().clone();
        assert!(!s.gate_open && s.stall_holds == 1, "{s:?}");
        assert_eq!(k.signals(), 1, "one dump asked, after the settle time");
        // News after the settle time counts: keepalived reports MASTER.
        line("INSTANCE \"VI_1\" MASTER 150");
        wait_for("open on a new MASTER", &|s| s.gate_open);
        stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
    }

    /// Exactly one JSON signal, only after the grace period without a line,
    /// and the dump's MASTER opens the gate.
    #[test]
    fn reads_the_json_dump_once_when_nothing_is_heard() {
        let k = StandIn::start("ask", MASTER_JSON, "0");
        // A stale dump from before: only a newer one counts.
        std::fs::write(k.dir.join("keepalived.json"), "stale").unwrap();
        let t0 = Instant::now();
        let (status, stop, th) = k.follow();
        while !status.lock().unwrap().gate_open && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_millis(1500));
        let s = status.lock().unwrap().clone();
        stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
        assert!(s.gate_open && s.state == VrrpState::Master, "{s:?}");
        assert!(
            took >= RELOAD_GRACE,
            "asked before the grace period: {took:?}"
        );
        assert_eq!(s.json_dump_requests, 1, "{s:?}");
        assert!(
            s.last_json_dump.as_deref().unwrap().contains("applied"),
            "{s:?}"
        );
        assert_eq!(k.signals(), 1);
    }

    /// A FIFO line that comes while the dump is awaited wins over the dump.
    #[test]
    fn a_fifo_line_wins_over_the_json_dump() {
        let k = StandIn::start("race", MASTER_JSON, "0.7");
        let t0 = Instant::now();
        let (status, stop, th) = k.follow();
        while status.lock().unwrap().json_dump_requests == 0
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&k.fifo)
            .unwrap();
        writeln!(w, "INSTANCE \"VI_1\" BACKUP 100").unwrap();
        // Past the stand-in's delay: the dump (MASTER) was written meanwhile.
        std::thread::sleep(Duration::from_millis(2000));
        let s = status.lock().unwrap().clone();
        stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
        assert!(k.dir.join("keepalived.json").exists());
        assert_eq!((s.state, s.gate_open), (VrrpState::Backup, false), "{s:?}");
        assert_eq!(s.json_dump_requests, 1, "{s:?}");
        assert!(
            s.last_json_dump.as_deref().unwrap().contains("ignored"),
            "{s:?}"
        );
        assert_eq!(k.signals(), 1);
    }

    /// Garbage, a dump without our instance, a file that never changes: a
    /// warning, the gate stays closed, and no second signal.
    #[test]
    fn bad_json_dumps_keep_the_gate_closed_without_retries() {
        for (name, json, needle) in [
            ("garbage", "{not json", "not keepalived JSON"),
            (
                "other",
                r#"[{"data":{"iname":"VI_2","state":2}}]"#,
                "no vrrp_instance",
            ),
        ] {
            let k = StandIn::start(name, json, "0");
            let (status, stop, th) = k.follow();
            std::thread::sleep(RELOAD_GRACE + JSON_WAIT + Duration::from_millis(1500));
            let s = status.lock().unwrap().clone();
            stop.store(true, Ordering::Relaxed);
            th.join().unwrap();
            assert_eq!((s.state, s.gate_open), (VrrpState::Unknown, false), "{s:?}");
            assert_eq!(s.json_dump_requests, 1, "{s:?}");
            let last = s.last_json_dump.clone().unwrap();
            assert!(
                last.contains(needle) && last.contains("stays unknown"),
                "{last}"
            );
            assert_eq!(k.signals(), 1, "{name}");
        }
    }
}
