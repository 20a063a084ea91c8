//! The WAN health keepalived tracks: an on-prem CER whose WAN is cut still
//! hears its VRRP peer on the LAN and stays master, answering proxy ARP for
//! /32s it can no longer reach (a black hole). With `capture.vrrp_track_file`
//! cer-control writes its WAN health to a file keepalived tracks
//! (`vrrp_track_file ... { file ...; weight 0 }` and `track_file` in the
//! instance): `0` while at least one BGP session is established, `1` when
//! none is. A non-zero value with weight 0 puts the instance in FAULT, so the
//! other router (if its WAN is up) becomes master, and this one's gate closes
//! through the notify FIFO like any other transition.
//!
//! The file is replaced atomically (written beside it, renamed over it) and
//! only when the health changes. Both routers losing every session at once
//! (one reflector, restarting) puts both in FAULT: run two reflectors.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes the WAN health to keepalived's track file when it changes.
#[derive(Debug)]
pub struct TrackFile {
    path: PathBuf,
    written: Option<bool>,
    /// Times the health flipped (shown in the VRRP status).
    pub changes: u64,
    pub last_error: Option<String>,
}

impl TrackFile {
    pub fn new(path: PathBuf) -> TrackFile {
        TrackFile {
            path,
            written: None,
            changes: 0,
            last_error: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The health last written (None: not yet).
    pub fn healthy(&self) -> Option<bool> {
        self.written
    }

    /// Records `healthy`; writes the file when it differs from what was
    /// written (a failed write is retried at the next call).
    pub fn update(&mut self, healthy: bool) {
        if self.written == Some(healthy) {
            return;
        }
        match write_atomic(&self.path, if healthy { "0\n" } else { "1\n" }) {
            Ok(()) => {
                if self.written.is_some() {
                    self.changes += 1;
                }
                log::info!(
                    "vrrp track file {}: WAN {} ({})",
                    self.path.display(),
                    if healthy { "up" } else { "down" },
                    if healthy {
                        "a BGP session is established"
                    } else {
                        "no BGP session established: keepalived goes to FAULT"
                    }
                );
                self.written = Some(healthy);
                self.last_error = None;
            }
            Err(e) => {
                let msg = format!("writing {}: {e}", self.path.display());
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log::error!("vrrp track file: {msg}");
                }
                self.last_error = Some(msg);
            }
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_and_reports_failures() {
        let dir = std::env::temp_dir().join(format!("cer-track-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("wan");
        let mut t = TrackFile::new(p.clone());
        t.update(false);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n");
        t.update(true);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0\n");
        // Unchanged health: the file is left alone.
        std::fs::write(&p, "7\n").unwrap();
        t.update(true);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "7\n");
        assert_eq!((t.changes, t.healthy()), (1, Some(true)));
        let mut bad = TrackFile::new(dir.join("missing-dir").join("wan"));
        bad.update(true);
        assert!(bad.last_error.as_deref().unwrap().contains("missing-dir"));
        assert_eq!(bad.healthy(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
