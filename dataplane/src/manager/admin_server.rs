//! The admin server: one JSON request per line, one answer per line, each
//! answered by the manager (`views.rs`).

use super::{ask, ManagerMsg, ManagerStopped};
use cer_shared::admin::{AdminRequest, AdminResponse};
use cer_shared::framing::{self, FrameError};
use std::io::{BufReader, BufWriter};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Accepts admin connections: one JSON request per line, one answer per line.
pub fn serve_admin(listener: UnixListener, mgr: SyncSender<ManagerMsg>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let mgr = mgr.clone();
        let _ = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                let _ = admin_session(stream, &mgr);
            });
    }
}

/// Why an admin session ended early (the client goes away either way).
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Stopped(#[from] ManagerStopped),
}

fn admin_session(stream: UnixStream, mgr: &SyncSender<ManagerMsg>) -> Result<(), SessionError> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    loop {
        let resp = match framing::read_msg::<_, AdminRequest>(&mut reader, &mut buf) {
            Ok(req) => ask(mgr, |reply| ManagerMsg::Query { req, reply })?,
            Err(FrameError::Closed) => return Ok(()),
            Err(e @ FrameError::Malformed { .. }) => AdminResponse::Error {
                message: format!("{e}; expected e.g. {{\"cmd\":\"counters\"}}"),
            },
            Err(e) => return Err(e.into()),
        };
        framing::write_msg(&mut writer, &resp)?;
    }
}
