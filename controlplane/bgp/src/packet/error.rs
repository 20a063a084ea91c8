//! Errors of the wire format: a `WireError` is a message we cannot accept,
//! with the NOTIFICATION to send before the session closes.

use super::Notification;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct WireError {
    pub notification: Notification,
    pub reason: String,
}

pub(super) fn wire_err(code: u8, subcode: u8, reason: impl Into<String>) -> WireError {
    WireError {
        notification: Notification::new(code, subcode),
        reason: reason.into(),
    }
}
