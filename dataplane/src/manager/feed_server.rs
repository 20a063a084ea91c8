//! The FIB feed server: accepts feed connections (cer-control, `cerctl feed`),
//! one thread each, the newest session feeds. Each frame goes to the manager
//! and its answer comes back on the same connection.

use super::{ask, ManagerMsg};
use cer_shared::feed::{ControlMsg, DataplaneMsg, FEED_PROTOCOL_VERSION};
use cer_shared::framing::{self, FrameError};
use cer_shared::sockperm::SocketAccess;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Accepts feed connections; each runs in its own thread; the newest wins.
/// A client `access` refuses (SO_PEERCRED) gets one error frame and is
/// closed before it can say anything.
pub fn serve_feed(listener: UnixListener, mgr: SyncSender<ManagerMsg>, access: SocketAccess) {
    let next = AtomicU64::new(1);
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if let Err(why) = access.check(stream.as_raw_fd()) {
            log::warn!("feed socket: {why}");
            let mut line = serde_json::to_vec(&DataplaneMsg::Error {
                seq: None,
                message: why,
            })
            .unwrap_or_default();
            line.push(b'\n');
            SocketAccess::refuse(stream, &line);
            continue;
        }
        let session = next.fetch_add(1, Ordering::Relaxed);
        let mgr = mgr.clone();
        let _ = std::thread::Builder::new()
            .name(format!("feed-{session}"))
            .spawn(move || {
                let (error, counted) = match feed_session(stream, session, &mgr) {
                    Ok(()) => (None, false),
                    Err(e) => (Some(e.message), e.counted),
                };
                if let Some(e) = &error {
                    log::warn!("feed session {session} ended: {e}");
                } else {
                    log::info!("feed session {session} closed");
                }
                let _ = mgr.send(ManagerMsg::FeedClosed {
                    session,
                    error,
                    counted,
                });
            });
    }
}

/// Why a feed session ended badly.
struct FeedEnd {
    message: String,
    /// The manager already counted it (refusal or answered error).
    counted: bool,
}

impl From<super::ManagerStopped> for FeedEnd {
    fn from(e: super::ManagerStopped) -> Self {
        e.to_string().into()
    }
}

impl From<String> for FeedEnd {
    fn from(message: String) -> Self {
        FeedEnd {
            message,
            counted: false,
        }
    }
}

fn feed_session(
    stream: UnixStream,
    session: u64,
    mgr: &SyncSender<ManagerMsg>,
) -> Result<(), FeedEnd> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    // Counted first, answered second: whoever reads the refusal and then
    // asks the admin socket finds it in `errors`.
    let refuse = |w: &mut BufWriter<UnixStream>, seq: Option<u64>, message: String| {
        let counted = ask(mgr, |reply| ManagerMsg::FeedRefused {
            session,
            message: message.clone(),
            reply,
        })
        .is_ok();
        let _ = framing::write_msg(
            w,
            &DataplaneMsg::Error {
                seq,
                message: message.clone(),
            },
        );
        Err(FeedEnd { message, counted })
    };
    let hello: ControlMsg = match framing::read_msg(&mut reader, &mut buf) {
        Ok(m) => m,
        Err(FrameError::Closed) => return Ok(()),
        Err(e) => return refuse(&mut writer, None, format!("bad hello: {e}")),
    };
    let ControlMsg::Hello {
        version,
        client,
        capture_gate,
    } = hello
    else {
        return refuse(
            &mut writer,
            hello.seq(),
            "the first message must be hello".into(),
        );
    };
    if version != FEED_PROTOCOL_VERSION {
        return refuse(
            &mut writer,
            None,
            format!("feed protocol version {version} is not supported (this dataplane speaks {FEED_PROTOCOL_VERSION})"),
        );
    }
    let welcome = ask(mgr, |reply| ManagerMsg::FeedHello {
        session,
        client,
        capture_gate,
        reply,
    })?;
    framing::write_msg(&mut writer, &welcome).map_err(|e| e.to_string())?;
    // After the handshake the controller may stay idle for long: no read timeout.
    writer
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;
    loop {
        let msg: ControlMsg = match framing::read_msg(&mut reader, &mut buf) {
            Ok(m) => m,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return refuse(&mut writer, None, e.to_string()),
        };
        let answer = ask(mgr, |reply| ManagerMsg::Feed {
            session,
            msg,
            reply,
        })?;
        framing::write_msg(&mut writer, &answer).map_err(|e| e.to_string())?;
        if let DataplaneMsg::Error { message, .. } = answer {
            // Counted by the manager when it answered.
            return Err(FeedEnd {
                message,
                counted: true,
            });
        }
    }
}
