//! The core's error type: a status code plus a human-readable detail.

use crate::ffi::status::*;
use std::fmt;

/// A failure with its `wsc_status` code and a message for `wsc_last_error` or an `ERROR` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: wsc_status,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: wsc_status, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(WSC_ERR_INVALID_ARGUMENT, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(WSC_ERR_INVALID_STATE, message)
    }

    /// Maps a tungstenite error seen after the handshake to a status and message.
    pub(crate) fn from_ws(err: &tungstenite::Error) -> Self {
        use tungstenite::error::{CapacityError, Error as E};
        match err {
            E::Io(e) => Self::new(WSC_ERR_IO, format!("I/O: {e}")),
            E::Tls(e) => Self::new(WSC_ERR_TLS, format!("TLS: {e}")),
            E::Capacity(CapacityError::MessageTooLong { size, max_size }) => Self::new(
                WSC_ERR_MESSAGE_TOO_LARGE,
                format!("received message of {size} bytes exceeds the limit of {max_size}"),
            ),
            E::Capacity(e) => Self::new(WSC_ERR_MESSAGE_TOO_LARGE, format!("received {e}")),
            E::Utf8(e) => Self::new(
                WSC_ERR_INVALID_UTF8,
                format!("received text is not valid UTF-8: {e}"),
            ),
            E::Protocol(e) => Self::new(
                WSC_ERR_PROTOCOL,
                format!("protocol violation by the server: {e}"),
            ),
            E::ConnectionClosed | E::AlreadyClosed => {
                Self::new(WSC_ERR_NOT_CONNECTED, "connection closed")
            }
            other => Self::new(WSC_ERR_PROTOCOL, other.to_string()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            status_name(self.status).trim_end_matches('\0'),
            self.message
        )
    }
}

impl std::error::Error for Error {}
