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

use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    }))
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
    mut on_change: impl FnMut(bool, &str),
) {
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
    loop {
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
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.len() > 4096 {
                        continue;
                    }
                    if let Some(state) = parse_line(&line, &instance) {
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
}
