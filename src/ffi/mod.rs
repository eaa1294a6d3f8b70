//! The C ABI: thin `extern "C"` functions over the Rust core, one module per C object.
//!
//! Every function body runs inside [`boundary`], so no panic unwinds into C, and every pointer
//! is checked before use (a `(NULL, 0)` buffer is an empty one).

#![allow(non_camel_case_types)]

pub mod client;
pub mod config;
pub mod event;
pub mod flow;
pub mod handshake_extras;
pub mod log;
pub mod route;
pub mod status;
pub mod tls_options;
pub mod workers;

use crate::error::{Error, Result};
use status::*;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`, turning a failure into its status code plus the thread-local detail, and a
/// panic into `WSC_ERR_INTERNAL`.
pub(crate) fn boundary(body: impl FnOnce() -> Result<()>) -> wsc_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => WSC_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(_) => {
            set_last_error("internal error: a panic was caught at the C boundary");
            WSC_ERR_INTERNAL
        }
    }
}

/// Like [`boundary`] for functions that return a value instead of a status.
pub(crate) fn boundary_or<T>(default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        set_last_error("internal error: a panic was caught at the C boundary");
        default
    })
}

/// Borrows a C object, refusing NULL.
pub(crate) unsafe fn object<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a non-NULL `ptr` points to a live object of the right type.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid_argument(format!("{what} is NULL")))
}

/// Same as [`object`], mutably.
pub(crate) unsafe fn object_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: as for `object`, and the caller does not use it from another thread meanwhile.
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::invalid_argument(format!("{what} is NULL")))
}

/// Borrows a NUL-terminated UTF-8 string, refusing NULL and invalid UTF-8.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| Error::invalid_argument(format!("{what} is not valid UTF-8: {e}")))
}

/// Borrows `len` bytes at `ptr`; `(NULL, 0)` is empty, `(NULL, n > 0)` is refused.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid_argument(format!(
            "length of {what} is out of range"
        )));
    }
    // SAFETY: non-NULL, length in range, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}
