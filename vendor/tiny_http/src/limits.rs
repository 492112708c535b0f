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

// PATCH: limits of `Server::serve` (handlers run on connection threads).
// Each default below is a field of `ServerOptions`, where it can be changed.

/// Default of [`ServerOptions::max_connections`].
pub const DEFAULT_SERVE_MAX_CONNECTIONS: usize = 4096;

/// Default of [`ServerOptions::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;

/// Default of [`ServerOptions::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`ServerOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default of [`ServerOptions::body_grace`].
pub const DEFAULT_BODY_GRACE: Duration = Duration::from_secs(10);

/// Default of [`ServerOptions::min_body_rate`], in bytes per second.
pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;

/// Default of [`ServerOptions::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`ServerOptions::max_body_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Default of [`ServerOptions::max_body_bytes_in_flight`]: 128 MiB.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: u64 = 128 * 1024 * 1024;

/// Default of [`ServerOptions::max_request_line_bytes`]: 8 KiB.
pub const DEFAULT_MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;

/// Default of [`ServerOptions::max_header_bytes`]: 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// Default of [`ServerOptions::max_header_count`].
pub const DEFAULT_MAX_HEADER_FIELDS: usize = 100;

/// Default of [`ServerOptions::thread_stack_bytes`]: 256 KiB (only the pages
/// a thread touches cost memory).
pub const DEFAULT_THREAD_STACK_BYTES: usize = 256 * 1024;

/// Default of [`ServerOptions::close_linger`].
pub const DEFAULT_CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Default of [`ServerOptions::close_linger_bytes`]: 256 KiB.
pub const DEFAULT_CLOSE_LINGER_BYTES: u64 = 256 * 1024;

/// Default of [`ServerOptions::stop_grace`].
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Capacity of a connection's read buffer between requests. It grows only
/// while a larger head is read and shrinks back afterwards; it is freed
/// altogether while the connection waits for its next request.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// An answer whose head and body fit in half of this is written from one
/// buffer of its own size; a larger body goes out through a buffer of this
/// size (see `Response::print`).
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// Longest chunk-size line (size and extensions) of a chunked body.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

/// Largest trailer section of a chunked body; trailers are read and dropped.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Longest piece of client input quoted in an error message.
pub const MAX_QUOTED_BYTES: usize = 64;

/// Builds the body of an answer the engine writes itself (400, 408, 413,
/// 503...): from the status and a message naming what is wrong, gives the
/// body and its content type.
pub type ErrorBody = Arc<dyn Fn(u16, &str) -> (Vec<u8>, &'static str) + Send + Sync>;

/// The default [`ErrorBody`]: the message as `text/plain`.
pub fn plain_error_body(_status: u16, message: &str) -> (Vec<u8>, &'static str) {
    let mut body = message.as_bytes().to_vec();
    body.push(b'\n');
    (body, "text/plain; charset=utf-8")
}

/// How `Server::serve` treats clients: every limit and deadline.
///
/// `ServerOptions::default()` gives the `DEFAULT_*` constants of this module.
#[derive(Clone)]
pub struct ServerOptions {
    /// Most client connections open at once. At the limit, the connection
    /// idle for longest is closed to admit a new one; when none is idle the
    /// newcomer gets 503.
    pub max_connections: usize,
    /// Most connections open at once from one IP address, enforced the same
    /// way among that address's connections.
    pub max_connections_per_ip: usize,
    /// A new connection must deliver its first complete request head within
    /// this time from accept; on a kept-alive connection, the rest of a head
    /// must arrive within it from the head's first byte. Else 408 and close.
    pub header_timeout: Duration,
    /// A kept-alive connection waiting this long for the first byte of its
    /// next request is closed without an answer.
    pub idle_timeout: Duration,
    /// A body may arrive at any pace during this time after its head ended;
    /// see `min_body_rate`.
    pub body_grace: Duration,
    /// At any moment `t` after the head ended, at least
    /// `(t - body_grace) * min_body_rate` bytes of body must have arrived,
    /// else 408 and close. In bytes per second; at least 1.
    pub min_body_rate: u64,
    /// Longest time to write one response, from its first byte. A write that
    /// fails or times out closes the connection after the handler returns.
    pub write_timeout: Duration,
    /// Largest request body. A larger Content-Length gets 413 without the
    /// body being read; a chunked body growing past it gets 413.
    pub max_body_bytes: u64,
    /// Most body bytes buffered at once by all requests together (never less
    /// than `max_body_bytes`). A body that does not fit in what is left gets
    /// 503. A request holds its share until it is dropped.
    pub max_body_bytes_in_flight: u64,
    /// Longest request line (method, target, version), else 414.
    pub max_request_line_bytes: usize,
    /// Largest header section, else 431.
    pub max_header_bytes: usize,
    /// Most header fields, else 431.
    pub max_header_count: usize,
    /// Stack size of a connection thread, where the handler runs.
    pub thread_stack_bytes: usize,
    /// After an error answer, the server stops writing and reads (and drops)
    /// what the client still sends for at most this long before it closes,
    /// so that closing does not reset the connection before the client read
    /// the answer.
    pub close_linger: Duration,
    /// Most bytes read and dropped during `close_linger`.
    pub close_linger_bytes: u64,
    /// `Serving::stop` lets requests in flight finish for this long, then
    /// shuts every connection down.
    pub stop_grace: Duration,
    /// Body and content type of the answers the engine writes itself.
    pub error_body: ErrorBody,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: DEFAULT_SERVE_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_grace: DEFAULT_BODY_GRACE,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            max_request_line_bytes: DEFAULT_MAX_REQUEST_LINE_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_header_count: DEFAULT_MAX_HEADER_FIELDS,
            thread_stack_bytes: DEFAULT_THREAD_STACK_BYTES,
            close_linger: DEFAULT_CLOSE_LINGER,
            close_linger_bytes: DEFAULT_CLOSE_LINGER_BYTES,
            stop_grace: DEFAULT_STOP_GRACE,
            error_body: Arc::new(plain_error_body),
        }
    }
}

impl ServerOptions {
    /// The options with values that cannot work raised to the least that
    /// can: no limit below 1, a body budget no smaller than one body.
    pub(crate) fn sanitized(mut self) -> Self {
        self.max_connections = self.max_connections.max(1);
        self.max_connections_per_ip = self.max_connections_per_ip.max(1);
        self.min_body_rate = self.min_body_rate.max(1);
        self.max_body_bytes_in_flight = self.max_body_bytes_in_flight.max(self.max_body_bytes);
        self.max_request_line_bytes = self.max_request_line_bytes.max(16);
        self.max_header_count = self.max_header_count.max(1);
        self
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_grace", &self.body_grace)
            .field("min_body_rate", &self.min_body_rate)
            .field("write_timeout", &self.write_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_body_bytes_in_flight", &self.max_body_bytes_in_flight)
            .field("max_request_line_bytes", &self.max_request_line_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_header_count", &self.max_header_count)
            .field("thread_stack_bytes", &self.thread_stack_bytes)
            .field("close_linger", &self.close_linger)
            .field("close_linger_bytes", &self.close_linger_bytes)
            .field("stop_grace", &self.stop_grace)
            .finish_non_exhaustive()
    }
}
