//! libwsclient: a WebSocket client with a C ABI.
//!
//! The crate is split in two layers:
//! - a safe Rust core ([`Client`], [`Config`], the worker thread and its transport) that knows
//!   nothing about C;
//! - a thin `extern "C"` shell in [`ffi`], one module per C object, which checks every pointer,
//!   converts arguments and keeps panics from crossing the boundary.
//!
//! `include/wsclient.h` is generated from the `ffi` module by cbindgen.

#![allow(clippy::missing_safety_doc)]

mod backpressure;
mod client;
mod config;
mod deflate;
mod error;
mod events;
mod frame_reader;
mod handshake;
mod heartbeat;
mod http_extras;
mod idle;
mod log;
mod notify;
mod outbox;
mod output;
mod pool;
mod protocol;
mod proxy;
mod ratelimit;
mod reconnect;
mod recycle;
mod stats;
mod stream;
mod target;
mod threads;
mod tls_options;
mod transport;
mod worker;

pub mod ffi;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`); not part of the API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

pub use client::{Client, EventHandler, State, Stats};
pub use config::Config;
pub use error::{Error, Result};
pub use events::{Event, EventKind};
pub use ffi::status::*;
