//! The admin server: one JSON request per line, one answer per line, each
//! answered by the manager (`views.rs`).

use super::{ask, ManagerMsg};
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

fn admin_session(stream: UnixStream, mgr: &SyncSender<ManagerMsg>) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    loop {
        let resp = match framing::read_msg::<_, AdminRequest>(&mut reader, &mut buf) {
            Ok(req) => ask(mgr, |reply| ManagerMsg::Query { req, reply })?,
            Err(FrameError::Closed) => return Ok(()),
            Err(e @ FrameError::Malformed { .. }) => AdminResponse::Error {
                message: format!("{e}; expected e.g. {{\"cmd\":\"counters\"}}"),
            },
            Err(e) => return Err(e.to_string()),
        };
        framing::write_msg(&mut writer, &resp).map_err(|e| e.to_string())?;
    }
}
