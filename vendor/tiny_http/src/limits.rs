//! PATCH: limits added to tiny_http so that no client can hold a thread, a
//! socket or memory without bound. See PATCHES.md.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A client connection that sends or accepts nothing for this long is closed.
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the accept loop waits after a failed `accept` (for example
/// EMFILE) before it tries again.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// Longest request line or header line accepted, in bytes.
pub const MAX_HEADER_LINE_BYTES: usize = 16 * 1024;

/// Most header lines accepted in one request.
pub const MAX_HEADER_COUNT: usize = 128;

/// An unread request body is drained (so the connection can be reused) only up
/// to this many bytes; past it the connection is given up instead.
pub const MAX_DRAIN_BYTES: usize = 1024 * 1024;

/// Size of the buffer used to drain an unread body.
pub const DRAIN_BUFFER_BYTES: usize = 8 * 1024;

/// Default for [`max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

static MAX_CONNECTIONS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_CONNECTIONS);

/// Most client connections open at once; further ones are closed on accept.
pub fn max_connections() -> usize {
    MAX_CONNECTIONS.load(Ordering::Relaxed)
}

/// Sets [`max_connections`] for every server of this process.
pub fn set_max_connections(limit: usize) {
    MAX_CONNECTIONS.store(limit, Ordering::Relaxed);
}

/// Counts one open connection for as long as it lives.
pub(crate) struct ConnectionGuard(pub(crate) Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
