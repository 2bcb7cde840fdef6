//! What a call can fail with.

use cairn_wire::api::ApiError;

/// Why a call failed. Every variant says what happened; [`Error::is_ambiguous`] says whether a
/// write may have been applied anyway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A node answered with an error (not found, assertion failed, no quorum, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A write reached (or may have reached) a node, and then the connection or the stream broke
    /// or the deadline passed before the answer came. It may or may not have been applied; read
    /// it back to find out. The client never retries such a write.
    #[error("outcome unknown: {reason}; the write may or may not have been applied")]
    Ambiguous {
        /// What broke.
        reason: String,
    },
    /// No node could serve the call before its deadline.
    #[error("unavailable: {reason} (last error: {last_error})")]
    Unavailable {
        /// Why the call gave up.
        reason: String,
        /// The last thing that went wrong before it did.
        last_error: String,
    },
    /// The certificates could not be loaded or the QUIC endpoint could not be created.
    #[error("TLS: {0}")]
    Tls(String),
    /// The client configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A node sent an answer this client cannot read (another protocol version, a bad frame, or
    /// an answer of the wrong kind).
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether a write that failed with this error may have been applied: true for
    /// [`Error::Ambiguous`] and for node errors that do not guarantee that nothing was done
    /// (`NoQuorum { proposed: true }`, `Internal`).
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Ambiguous { .. } => true,
            Self::Api(e) => !e.nothing_done(),
            Self::Unavailable { .. } | Self::Tls(_) | Self::Config(_) | Self::Protocol(_) => false,
        }
    }

    /// The node's error, when the call failed with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}
