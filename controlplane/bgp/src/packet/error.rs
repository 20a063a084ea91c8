//! Errors of the wire format and what RFC 7606 says to do about them: an
//! `UpdateError` names the malformed part of an UPDATE, the kind of error, the
//! rule that applies and the action taken; a `WireError` ends the session.

use super::attribute;
use super::{notify, Notification};
use std::fmt;

/// What the receiver of a malformed UPDATE does (RFC 7606 2, and RFC 4271
/// 6.3 for a single prefix), mildest first.
/// When one UPDATE has several errors the most severe action applies
/// (RFC 7606 3).
///
/// CER never uses RFC 7606's fourth action, "AFI/SAFI disable": where the RFC
/// allows it instead of a session reset (MP_REACH_NLRI / MP_UNREACH_NLRI
/// errors, 5.3, 7.11, 7.12; RFC 4760 7) we reset. A CER session carries IPv4
/// unicast (the /32 ownership routes and markers) and at most IPv6 unicast;
/// disabling a family would leave an Established session that silently carries
/// nothing for it, and the peer would not be told. A reset is visible at both
/// ends (NOTIFICATION, `last_error`, flaps), drops the peer's routes at once
/// and brings them back with the next session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorAction {
    /// Not one of RFC 7606's: RFC 4271 6.3 for a semantically incorrect
    /// prefix ("an unexpected multicast IP address"): "an error SHOULD be
    /// logged locally, and the prefix SHOULD be ignored". The rest of the
    /// UPDATE, its other prefixes included, is processed.
    PrefixIgnore,
    /// "attribute discard": the attribute is dropped, the UPDATE is processed.
    AttributeDiscard,
    /// "treat-as-withdraw": the UPDATE's announcements become withdrawals.
    TreatAsWithdraw,
    /// "session reset": send this NOTIFICATION and close the session.
    SessionReset(Notification),
}

impl ErrorAction {
    /// Orders actions: a higher value is more severe.
    pub fn severity(&self) -> u8 {
        match self {
            ErrorAction::PrefixIgnore => 0,
            ErrorAction::AttributeDiscard => 1,
            ErrorAction::TreatAsWithdraw => 2,
            ErrorAction::SessionReset(_) => 3,
        }
    }

    /// The RFC's name for the action (used in logs and counter names).
    pub fn name(&self) -> &'static str {
        match self {
            ErrorAction::PrefixIgnore => "prefix-ignore",
            ErrorAction::AttributeDiscard => "attribute-discard",
            ErrorAction::TreatAsWithdraw => "treat-as-withdraw",
            ErrorAction::SessionReset(_) => "session-reset",
        }
    }
}

/// Which part of an UPDATE is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A path attribute, by type code.
    Attribute(u8),
    /// The Withdrawn Routes field.
    WithdrawnRoutes,
    /// The NLRI field.
    Nlri,
    /// The Path Attributes field as a whole (its framing).
    PathAttributes,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Attribute(code) => match attribute::name(*code) {
                Some(n) => f.write_str(n),
                None => write!(f, "attribute {code}"),
            },
            Subject::WithdrawnRoutes => f.write_str("withdrawn routes"),
            Subject::Nlri => f.write_str("NLRI"),
            Subject::PathAttributes => f.write_str("path attributes"),
        }
    }
}

/// The kind of error, as RFC 7606 sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The length is wrong for the attribute or field.
    Length,
    /// Optional/Transitive flags conflict with the attribute (RFC 7606 3(c)).
    Flags,
    /// The length is right, the value is not (undefined, martian, reserved).
    Value,
    /// The attribute appears more than once (RFC 7606 3(g)).
    Duplicate,
    /// A well-known mandatory attribute is absent (RFC 7606 3(d)).
    Missing,
    /// Not recognized although flagged well-known (RFC 4271 6.3).
    Unrecognized,
    /// Valid, but not allowed from this peer (from eBGP, or between 4-octet-AS speakers).
    NotAllowed,
    /// The lengths inside the field do not add up (RFC 7606 4).
    Framing,
}

impl ErrorKind {
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Length => "length",
            ErrorKind::Flags => "flags",
            ErrorKind::Value => "value",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Missing => "missing",
            ErrorKind::Unrecognized => "unrecognized",
            ErrorKind::NotAllowed => "not allowed",
            ErrorKind::Framing => "framing",
        }
    }
}

/// One error found in a received UPDATE and the action taken for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {} {}: {} ({})", .action.name(), .subject, .kind.name(), .reason, .rule)]
pub struct UpdateError {
    pub action: ErrorAction,
    pub subject: Subject,
    pub kind: ErrorKind,
    /// The rule applied, e.g. "RFC 7606 7.3".
    pub rule: &'static str,
    /// What was wrong, with the offending value.
    pub reason: String,
}

impl UpdateError {
    pub fn new(
        action: ErrorAction,
        subject: Subject,
        kind: ErrorKind,
        rule: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        UpdateError {
            action,
            subject,
            kind,
            rule,
            reason: reason.into(),
        }
    }

    /// A session reset with an UPDATE Message Error NOTIFICATION.
    pub fn reset(
        subcode: u8,
        data: Vec<u8>,
        subject: Subject,
        kind: ErrorKind,
        rule: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        let mut n = Notification::new(notify::UPDATE, subcode);
        n.data = data;
        UpdateError::new(ErrorAction::SessionReset(n), subject, kind, rule, reason)
    }

    /// The counter key: action, subject and kind, e.g.
    /// "treat-as-withdraw: NEXT_HOP value".
    pub fn cause(&self) -> String {
        format!(
            "{}: {} {}",
            self.action.name(),
            self.subject,
            self.kind.name()
        )
    }
}

/// A message that could not be accepted: what to send before closing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct WireError {
    pub notification: Notification,
    pub reason: String,
    /// For an UPDATE, the error that made RFC 7606 reset the session.
    pub update: Option<Box<UpdateError>>,
}

pub(super) fn wire_err(code: u8, subcode: u8, reason: impl Into<String>) -> WireError {
    WireError {
        notification: Notification::new(code, subcode),
        reason: reason.into(),
        update: None,
    }
}

impl From<UpdateError> for WireError {
    fn from(e: UpdateError) -> Self {
        let notification = match &e.action {
            ErrorAction::SessionReset(n) => n.clone(),
            // Only resets become WireErrors; anything else is a bug we still report as 3/1.
            _ => Notification::new(notify::UPDATE, notify::UPDATE_MALFORMED_ATTR_LIST),
        };
        WireError {
            notification,
            reason: format!("UPDATE error: {e}"),
            update: Some(Box::new(e)),
        }
    }
}
