//! Log lines on standard error that never fail the caller.
//!
//! `eprintln!` panics when standard error is gone (a closed pipe, `2>&1 |
//! head` after head exits): a log line must never take down a request, a
//! thread or the shutdown with it. [`log!`](crate::log!) writes one line and
//! ignores a failure.

use std::fmt;
use std::io::{self, Write};

/// Writes one line to standard error; a failure to write is ignored.
pub fn line(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// Logs one line on standard error, like `eprintln!` but never panicking.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
