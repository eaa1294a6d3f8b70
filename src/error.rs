//! The core's error type: a status code plus a human-readable detail.

use crate::ffi::status::*;
use std::fmt;

/// A failure with its `wsc_status` code and a message for `wsc_last_error` or an `ERROR` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: wsc_status,
    pub message: String,
    /// A refused upgrade: the server's HTTP status; else 0.
    pub http_status: u16,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: wsc_status, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            http_status: 0,
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(WSC_ERR_INVALID_ARGUMENT, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(WSC_ERR_INVALID_STATE, message)
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
