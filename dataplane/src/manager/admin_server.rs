//! The admin server: one JSON request per line, one answer per line, each
//! answered by the manager (`views.rs`); a capture request turns its
//! connection into a capture stream (`capture::stream`).

use super::{ask, ManagerMsg, ManagerStopped};
use crate::capture::stream::{self as capture, CaptureContext, CaptureParams};
use cer_shared::admin::{AdminRequest, AdminResponse};
use cer_shared::framing::{self, FrameError};
use cer_shared::sockperm::SocketAccess;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Accepts admin connections: one JSON request per line, one answer per
/// line. A client `access` refuses (SO_PEERCRED) gets one error line; the
/// refusals of both sockets are in the `counters` and `state` answers.
pub fn serve_admin(
    listener: UnixListener,
    mgr: SyncSender<ManagerMsg>,
    access: SocketAccess,
    feed_access: SocketAccess,
    capture: CaptureContext,
) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if let Err(why) = access.check(stream.as_raw_fd()) {
            log::warn!("admin socket: {why}");
            let mut line =
                serde_json::to_vec(&AdminResponse::Error { message: why }).unwrap_or_default();
            line.push(b'\n');
            SocketAccess::refuse(stream, &line);
            continue;
        }
        let mgr = mgr.clone();
        let refused = (access.clone(), feed_access.clone());
        let capture = capture.clone();
        let _ = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                let _ = admin_session(stream, &mgr, &refused, &capture);
            });
    }
}

/// How long a capture waits for a client that stopped reading.
const CAPTURE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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

fn admin_session(
    stream: UnixStream,
    mgr: &SyncSender<ManagerMsg>,
    (admin, feed): &(SocketAccess, SocketAccess),
    cap: &CaptureContext,
) -> Result<(), SessionError> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    loop {
        let resp = match framing::read_msg::<_, AdminRequest>(&mut reader, &mut buf) {
            Ok(AdminRequest::Capture {
                points,
                filter,
                count,
                duration_ms,
                snaplen,
            }) => {
                // The connection carries the capture until it ends, then closes.
                let p = CaptureParams {
                    points,
                    filter,
                    count,
                    duration: duration_ms.map(Duration::from_millis),
                    snaplen,
                };
                let conn = reader.get_ref().try_clone()?;
                // A client that stops reading ends the capture instead of holding it.
                conn.set_write_timeout(Some(CAPTURE_WRITE_TIMEOUT))?;
                return Ok(capture::serve(cap, p, &conn, &mut writer)?);
            }
            Ok(req) => {
                let counted = matches!(req, AdminRequest::Counters | AdminRequest::State);
                let mut resp = ask(mgr, |reply| ManagerMsg::Query { req, reply })?;
                if let (true, AdminResponse::Ok { data }) = (counted, &mut resp) {
                    if let Some(o) = data.as_object_mut() {
                        o.insert(
                            "sockets_refused".into(),
                            serde_json::json!({"admin": admin.refused(), "feed": feed.refused()}),
                        );
                    }
                }
                resp
            }
            Err(FrameError::Closed) => return Ok(()),
            Err(e @ FrameError::Malformed { .. }) => AdminResponse::Error {
                message: format!("{e}; expected e.g. {{\"cmd\":\"counters\"}}"),
            },
            Err(e) => return Err(e.into()),
        };
        framing::write_msg(&mut writer, &resp)?;
    }
}
