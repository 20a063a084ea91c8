//! cer-bfd: Bidirectional Forwarding Detection for cer-control's BGP
//! sessions. `packet` is the control packet (RFC 5880 section 4, the
//! reception checks of 6.8.6, keyed SHA1); `session` is one session's
//! asynchronous-mode state machine, sans-IO (packets and instants in,
//! packets to send and state changes out). The sockets (RFC 5881 single
//! hop, RFC 5883 multihop) and the demultiplexing by discriminator belong
//! to the caller.

pub mod packet;
pub mod session;

pub use packet::{ControlPacket, Diag, PacketError, State};
pub use session::{AuthConfig, Config, Output, RxDrop, Session, StateChange, View};
