//! Client side of the FIB feed protocol (used by cer-control and by
//! `cerctl dataplane feed`): handshake, sequence numbers, chunked full sync.

use crate::feed::{
    ControlMsg, DataplaneMsg, DuplicateHolder, FeedCommand, FibChange, FEED_PROTOCOL_VERSION,
    SYNC_CHUNK,
};
use crate::framing::{self, FrameError};
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot connect to the dataplane feed socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("feed connection: {0}")]
    Frame(#[from] FrameError),
    #[error("feed connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the dataplane refused seq {seq:?}: {message}")]
    Refused { seq: Option<u64>, message: String },
    #[error("unexpected answer from the dataplane: {0:?}")]
    Unexpected(Box<DataplaneMsg>),
}

/// An open feed session.
pub struct FeedClient {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    buf: Vec<u8>,
    next_seq: u64,
    /// From the dataplane's welcome: changes when the dataplane restarts.
    pub boot_id: u64,
    pub node: String,
    pub snapshot_version: u64,
    /// From the last ack: the dataplane's duplicate proxy-ARP holder alarms.
    pub duplicate_holder_alarms: u64,
    pub duplicate_holders: Vec<DuplicateHolder>,
    /// From the last ack: stalls the dataplane noticed since it started.
    pub stalls: u64,
}

impl FeedClient {
    /// A session that does not own the capture gate (one-shot commands).
    pub fn connect(path: &Path, client: &str) -> Result<FeedClient, FeedError> {
        Self::connect_with(path, client, false)
    }

    /// `capture_gate`: this session owns the proxy-ARP gate; the dataplane
    /// closes the gate when the session ends (see `feed`).
    pub fn connect_with(
        path: &Path,
        client: &str,
        capture_gate: bool,
    ) -> Result<FeedClient, FeedError> {
        let stream = UnixStream::connect(path).map_err(|source| FeedError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = FeedClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
            buf: Vec::new(),
            next_seq: 1,
            boot_id: 0,
            node: String::new(),
            snapshot_version: 0,
            duplicate_holder_alarms: 0,
            duplicate_holders: Vec::new(),
            stalls: 0,
        };
        framing::write_msg(
            &mut c.writer,
            &ControlMsg::Hello {
                version: FEED_PROTOCOL_VERSION,
                client: client.to_string(),
                capture_gate,
            },
        )?;
        match framing::read_msg::<_, DataplaneMsg>(&mut c.reader, &mut c.buf)? {
            DataplaneMsg::Welcome {
                boot_id,
                node,
                snapshot_version,
                ..
            } => {
                c.boot_id = boot_id;
                c.node = node;
                c.snapshot_version = snapshot_version;
                Ok(c)
            }
            DataplaneMsg::Error { seq, message } => Err(FeedError::Refused { seq, message }),
            other => Err(FeedError::Unexpected(Box::new(other))),
        }
    }

    fn request(&mut self, make: impl FnOnce(u64) -> ControlMsg) -> Result<u64, FeedError> {
        let seq = self.next_seq;
        framing::write_msg(&mut self.writer, &make(seq))?;
        match framing::read_msg::<_, DataplaneMsg>(&mut self.reader, &mut self.buf)? {
            DataplaneMsg::Ack {
                seq: s,
                snapshot_version,
                duplicate_holder_alarms,
                duplicate_holders,
                stalls,
            } if s == seq => {
                self.next_seq += 1;
                self.snapshot_version = snapshot_version;
                self.duplicate_holder_alarms = duplicate_holder_alarms;
                self.duplicate_holders = duplicate_holders;
                self.stalls = stalls;
                Ok(snapshot_version)
            }
            DataplaneMsg::Error { seq, message } => Err(FeedError::Refused { seq, message }),
            other => Err(FeedError::Unexpected(Box::new(other))),
        }
    }

    /// Applies changes as one delta; returns the snapshot version now published.
    pub fn changes(&mut self, changes: Vec<FibChange>) -> Result<u64, FeedError> {
        self.request(|seq| ControlMsg::Changes { seq, changes })
    }

    /// Replaces everything the feed installed with `changes`, atomically.
    pub fn full_sync(&mut self, changes: Vec<FibChange>) -> Result<u64, FeedError> {
        self.request(|seq| ControlMsg::SyncBegin { seq })?;
        let mut it = changes.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<FibChange> = it.by_ref().take(SYNC_CHUNK).collect();
            self.request(|seq| ControlMsg::Changes {
                seq,
                changes: chunk,
            })?;
        }
        self.request(|seq| ControlMsg::SyncEnd { seq })
    }

    pub fn command(&mut self, command: FeedCommand) -> Result<u64, FeedError> {
        self.request(|seq| ControlMsg::Command { seq, command })
    }

    /// Changes nothing: refreshes the alarm fields and proves the session alive.
    pub fn ping(&mut self) -> Result<u64, FeedError> {
        self.request(|seq| ControlMsg::Ping { seq })
    }
}
