//! JSON-lines framing with a hard size limit, used by the FIB feed and the
//! admin sockets: one message per line, a line over the limit or a line that
//! is not the expected JSON is an error naming what was wrong, never a panic
//! or an unbounded buffer.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, BufRead, Write};

/// Largest accepted message line (a full-sync chunk of ~100k entries fits).
pub const MAX_LINE: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("message longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("malformed message: {error} (starts with {preview:?})")]
    Malformed { error: String, preview: String },
}

/// Reads one line (without the newline) of at most `limit` bytes into `buf`.
pub fn read_line_limited<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), FrameError> {
    buf.clear();
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if available.is_empty() {
            return if buf.is_empty() {
                Err(FrameError::Closed)
            } else {
                Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a message",
                )))
            };
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > limit {
            return Err(FrameError::TooLong { limit });
        }
        buf.extend_from_slice(chunk);
        match done {
            Some(n) => {
                r.consume(n);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(());
            }
            None => {
                let n = available.len();
                r.consume(n);
            }
        }
    }
}

/// Reads and decodes one message; empty lines are skipped.
pub fn read_msg<R: BufRead, T: DeserializeOwned>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<T, FrameError> {
    loop {
        read_line_limited(r, buf, MAX_LINE)?;
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        return decode(buf);
    }
}

pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(line).map_err(|e| FrameError::Malformed {
        error: e.to_string(),
        preview: String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
    })
}

/// Encodes one message as a line and flushes it.
pub fn write_msg<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_lines_and_rejects_garbage() {
        let mut r = Cursor::new(b"{\"a\":1}\n\nnot json\n".to_vec());
        let mut buf = Vec::new();
        let v: serde_json::Value = read_msg(&mut r, &mut buf).unwrap();
        assert_eq!(v["a"], 1);
        let e = read_msg::<_, serde_json::Value>(&mut r, &mut buf).unwrap_err();
        assert!(matches!(e, FrameError::Malformed { .. }), "{e}");
        let e = read_msg::<_, serde_json::Value>(&mut r, &mut buf).unwrap_err();
        assert!(matches!(e, FrameError::Closed));
    }

    #[test]
    fn long_line_is_bounded() {
        let data = vec![b'x'; 1000];
        let mut r = io::BufReader::with_capacity(16, Cursor::new(data));
        let mut buf = Vec::new();
        let e = read_line_limited(&mut r, &mut buf, 100).unwrap_err();
        assert!(matches!(e, FrameError::TooLong { limit: 100 }));
        assert!(buf.len() <= 100);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let mut r = Cursor::new(b"{\"a\":".to_vec());
        let mut buf = Vec::new();
        let e = read_msg::<_, serde_json::Value>(&mut r, &mut buf).unwrap_err();
        assert!(matches!(e, FrameError::Io(_)), "{e}");
    }
}
