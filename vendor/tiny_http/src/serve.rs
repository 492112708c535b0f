//! PATCH: `Server::serve`, a serving mode where handlers run on connection
//! threads.
//!
//! Each accepted connection gets its own thread (`http-conn`, small stack).
//! It reads a complete request, head and whole body, under deadlines, calls
//! the handler on that same thread, waits until the answer is written (under
//! a write deadline), then loops for the next request of the connection.
//! A slow or hostile client therefore only ever holds its own thread, and a
//! request costs no hand-over between threads.
//!
//! One `http-accept` thread admits connections (see `admission`), and one
//! `http-reap` thread joins the connection threads that ended.

use std::convert::TryFrom;
use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::admission::{Refusal, Registry, Slot};
use crate::body::{read_chunked, BodyBudget, BodyError, BufferedBody, Reservation};
use crate::common::{HTTPVersion, Header, Method};
use crate::head::{parse_head, Framing, Head, HeadError, HeadLimits, HeadScanner};
use crate::limits::{plain_error_body, ServerOptions, ACCEPT_ERROR_BACKOFF, READ_BUFFER_BYTES};
use crate::request::new_buffered_request;
use crate::wire::{
    later, AnswerDone, ConnState, Deadline, DeadlineWriter, WireReader, WriteOutcome,
};
use crate::{Request, Response, Server};

/// Stack of the reaper thread, which only joins other threads.
const REAPER_STACK_BYTES: usize = 64 * 1024;

/// How long `stop` tries to connect to its own listener to wake the accept
/// thread.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Statuses of the answers the engine writes itself, counted one by one.
const ERROR_STATUSES: [u16; 9] = [400, 408, 413, 414, 417, 431, 501, 503, 505];

/// Counters of a serving server, readable at any time (for metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) accepted: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) evicted_idle: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) refused_per_ip: AtomicU64,
    pub(crate) refused_spawn: AtomicU64,
    pub(crate) refused_budget: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) body_timeouts: AtomicU64,
    pub(crate) idle_closes: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    /// The body budget's bytes in use (see `BodyBudget`).
    pub(crate) body_bytes_in_flight: Arc<AtomicU64>,
    errors: [AtomicU64; ERROR_STATUSES.len()],
}

/// The counters of [`ServerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted (admitted or not).
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Of those, connections with a request in progress now (the others
    /// wait for a request).
    pub busy: u64,
    /// Idle connections closed to admit a newcomer.
    pub evicted_idle: u64,
    /// Connections refused (503) because `max_connections` were busy.
    pub refused_full: u64,
    /// Connections refused (503) because their address had
    /// `max_connections_per_ip` busy.
    pub refused_per_ip: u64,
    /// Connections refused (503) because no thread could be started.
    pub refused_spawn: u64,
    /// Requests refused (503) because the body budget was spent.
    pub refused_budget: u64,
    /// Requests whose head did not arrive within `header_timeout`.
    pub header_timeouts: u64,
    /// Requests whose body arrived too slowly.
    pub body_timeouts: u64,
    /// Connections closed after waiting too long for a request.
    pub idle_closes: u64,
    /// Answers whose writing passed `write_timeout`.
    pub write_timeouts: u64,
    /// Answers whose writing failed (client gone).
    pub write_failures: u64,
    /// Handlers that panicked (the client got 500).
    pub handler_panics: u64,
    /// Request body bytes held in memory now, all requests together (at
    /// most `max_body_bytes_in_flight`).
    pub body_bytes_in_flight: u64,
    /// Answers written by the engine itself, by status.
    pub error_responses: [(u16, u64); ERROR_STATUSES.len()],
}

impl ServerStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut error_responses = [(0, 0); ERROR_STATUSES.len()];
        for ((slot, &status), counter) in error_responses
            .iter_mut()
            .zip(ERROR_STATUSES.iter())
            .zip(self.errors.iter())
        {
            *slot = (status, get(counter));
        }
        StatsSnapshot {
            accepted: get(&self.accepted),
            open: get(&self.open),
            busy: get(&self.busy),
            evicted_idle: get(&self.evicted_idle),
            refused_full: get(&self.refused_full),
            refused_per_ip: get(&self.refused_per_ip),
            refused_spawn: get(&self.refused_spawn),
            refused_budget: get(&self.refused_budget),
            header_timeouts: get(&self.header_timeouts),
            body_timeouts: get(&self.body_timeouts),
            idle_closes: get(&self.idle_closes),
            write_timeouts: get(&self.write_timeouts),
            write_failures: get(&self.write_failures),
            handler_panics: get(&self.handler_panics),
            body_bytes_in_flight: get(&self.body_bytes_in_flight),
            error_responses,
        }
    }

    /// Answers with `status` the engine wrote itself.
    pub fn error_responses(&self, status: u16) -> u64 {
        self.error_counter(status)
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    fn error_counter(&self, status: u16) -> Option<&AtomicU64> {
        let index = ERROR_STATUSES.iter().position(|&s| s == status)?;
        self.errors.get(index)
    }

    fn count_error(&self, status: u16) {
        if let Some(counter) = self.error_counter(status) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

type Handler = Box<dyn Fn(Request) + Send + Sync>;

/// What the accept thread and every connection thread share.
struct Shared {
    options: ServerOptions,
    head_limits: HeadLimits,
    handler: Handler,
    registry: Registry,
    stats: Arc<ServerStats>,
    budget: Arc<BodyBudget>,
    stopping: AtomicBool,
}

/// A server started by [`Server::serve`]. Dropping it stops it like
/// [`Serving::stop`].
pub struct Serving {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
}

impl Server {
    /// PATCH: serves `listener` with handlers running on connection threads.
    ///
    /// Every accepted connection gets a thread that reads a complete request
    /// (head and whole body, de-chunked) under the deadlines of `options`,
    /// calls `handler` with it on that thread, and goes on with the next
    /// request of the connection once the request is answered (or dropped:
    /// a request dropped unanswered gets 500, as with `recv`). The request's
    /// `as_reader` reads the buffered body; `respond` writes under
    /// `options.write_timeout`. Malformed or refused requests are answered
    /// by the engine (body from `options.error_body`) and never reach the
    /// handler.
    pub fn serve<H>(
        listener: TcpListener,
        options: ServerOptions,
        handler: H,
    ) -> io::Result<Serving>
    where
        H: Fn(Request) + Send + Sync + 'static,
    {
        let options = options.sanitized();
        listener.set_nonblocking(false)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let (reap_tx, reap_rx) = mpsc::channel::<JoinHandle<()>>();
        let reaper = thread::Builder::new()
            .name("http-reap".into())
            .stack_size(REAPER_STACK_BYTES)
            .spawn(move || reap_rx.into_iter().for_each(|h| drop(h.join())))?;
        let shared = Arc::new(Shared {
            head_limits: HeadLimits {
                request_line: options.max_request_line_bytes,
                header_bytes: options.max_header_bytes,
                header_count: options.max_header_count,
            },
            registry: Registry::new(
                options.max_connections,
                options.max_connections_per_ip,
                reap_tx,
                stats.clone(),
            ),
            budget: BodyBudget::counting_in(
                options.max_body_bytes_in_flight,
                stats.body_bytes_in_flight.clone(),
            ),
            options,
            handler: Box::new(handler),
            stats,
            stopping: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let accept = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, accepting));
        let accept = match accept {
            Ok(accept) => accept,
            Err(e) => {
                shared.registry.release_reaper();
                let _ = reaper.join();
                return Err(e);
            }
        };
        Ok(Serving {
            addr,
            shared,
            accept: Some(accept),
            reaper: Some(reaper),
        })
    }
}

impl Serving {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters (shared, so they can be read from a handler).
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.shared.stats
    }

    /// Stops accepting, closes idle connections, lets requests in flight
    /// finish for up to `options.stop_grace`, then shuts every connection
    /// down and joins every thread. A handler still running after a second
    /// `stop_grace` is left to finish on its own (its thread is detached).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::Release);
        shared.registry.close(false);
        if wake(self.addr) {
            let _ = accept.join();
        } else {
            log::error!("could not wake the accept thread; it is left detached");
        }
        let grace = shared.options.stop_grace;
        if !shared.registry.wait_empty(grace) {
            shared.registry.close(true);
            shared.registry.wait_empty(grace);
        }
        let left = shared.registry.release_reaper();
        if left > 0 {
            log::error!("{} connection threads still running; left detached", left);
        }
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Connects to the listener so that its blocked `accept` returns.
fn wake(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, WAKE_CONNECT_TIMEOUT).is_ok()
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                // Nothing below should panic; if it did, this thread (and
                // so the server) must live on.
                let admitted = panic::catch_unwind(AssertUnwindSafe(|| {
                    admit(&shared, stream, peer);
                }));
                if admitted.is_err() {
                    log::error!("admitting a connection panicked");
                }
            }
            Err(e) => {
                // EMFILE, ECONNABORTED...: the next accept may work.
                log::error!("error accepting a connection: {}", e);
                thread::sleep(ACCEPT_ERROR_BACKOFF);
            }
        }
    }
}

/// Registers a new connection and starts its thread, or refuses it.
fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    bump(&shared.stats.accepted);
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let (id, slot) = match shared.registry.admit(peer.ip(), &stream) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let (counter, message) = match refusal {
                Refusal::Full => (&shared.stats.refused_full, "server full; retry later"),
                Refusal::FullForIp => (
                    &shared.stats.refused_per_ip,
                    "too many connections from your address; retry later",
                ),
                Refusal::Stopping => (&shared.stats.refused_full, "server stopping"),
            };
            bump(counter);
            refuse(shared, &stream, message);
            return;
        }
    };
    let connection = Connection {
        id,
        slot,
        no_body: Arc::new(Vec::new()),
        stream: stream.clone(),
        peer,
        accepted: Instant::now(),
        shared: shared.clone(),
    };
    let spawned = thread::Builder::new()
        .name("http-conn".into())
        .stack_size(shared.options.thread_stack_bytes)
        .spawn(move || connection.run());
    match spawned {
        Ok(handle) => shared.registry.attach(id, handle),
        Err(e) => {
            // RLIMIT_NPROC, a pids cgroup limit...: refuse this one only.
            log::error!("cannot start a connection thread: {}", e);
            shared.registry.remove(id);
            bump(&shared.stats.refused_spawn);
            refuse(shared, &stream, "server cannot take more connections now");
        }
    }
}

/// Answers 503 from the accept thread without ever blocking it: what the
/// client already sent is read and dropped (closing with unread bytes would
/// reset the connection and could destroy the answer), the answer is
/// written at once into the empty socket buffer, and the writing side shut.
fn refuse(shared: &Shared, stream: &TcpStream, message: &str) {
    shared.stats.count_error(503);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 1024];
    let mut reader = stream;
    for _ in 0..64 {
        match io::Read::read(&mut reader, &mut scratch) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let answer = render_error(&shared.options, 503, message, false);
    let _ = (&mut &*stream).write_all(&answer);
    let _ = stream.shutdown(Shutdown::Write);
}

/// The bytes of an engine answer: status, the error hook's body, and
/// `Connection: close`.
fn render_error(options: &ServerOptions, status: u16, message: &str, head_only: bool) -> Vec<u8> {
    // The hook is the application's code: a panic in it must not take the
    // accept thread down.
    let hook = &options.error_body;
    let (body, content_type) = panic::catch_unwind(AssertUnwindSafe(|| hook(status, message)))
        .unwrap_or_else(|_| plain_error_body(status, message));
    let mut response = Response::from_data(body).with_status_code(status);
    if let Ok(header) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response.add_header(header);
    }
    let mut out = Vec::new();
    let _ = response.print(&mut out, HTTPVersion(1, 1), &[], head_only, None, true);
    out
}

/// How a request ended for its connection.
enum Next {
    /// Wait for the next request.
    KeepAlive,
    /// Close now, without a word (client gone, idle, evicted, broken).
    Close,
    /// An answer was sent and the connection ends: stop writing, read and
    /// drop what the client still sends for a moment, then close.
    Linger,
}

/// Why a head could not be read.
enum HeadFailure {
    TimedOut,
    Gone,
    Bad(HeadError),
}

/// One connection, served by its own thread.
struct Connection {
    id: u64,
    slot: Arc<Slot>,
    /// The body of every request that has none.
    no_body: Arc<Vec<u8>>,
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    accepted: Instant,
    shared: Arc<Shared>,
}

/// Removes the connection from the registry when its thread ends, even by
/// a panic.
struct Leave<'a>(&'a Connection);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.shared.registry.remove(self.0.id);
    }
}

impl Connection {
    fn run(self) {
        let _leave = Leave(&self);
        let mut wire = WireReader::new(self.stream.clone());
        let state = ConnState::new();
        let mut first = true;
        loop {
            match self.serve_one(&mut wire, &state, first) {
                Next::KeepAlive => {}
                Next::Close => return,
                Next::Linger => return self.linger(&mut wire),
            }
            first = false;
            wire.shrink();
            if !self.shared.registry.set_idle(&self.slot) {
                return;
            }
        }
    }

    fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    /// Reads one request, runs the handler, waits for the answer.
    fn serve_one(&self, wire: &mut WireReader, state: &Arc<ConnState>, first: bool) -> Next {
        let options = self.options();
        let now = Instant::now();
        // A new connection has `header_timeout` from accept for its whole
        // first head; a kept-alive one `idle_timeout` for the first byte.
        let wait_until = if first {
            later(self.accepted, options.header_timeout)
        } else {
            later(now, options.idle_timeout)
        };
        wire.set_deadline(Deadline::At(wait_until));
        match wire.wait_for_data() {
            Ok(true) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                bump(&self.shared.stats.idle_closes);
                return Next::Close;
            }
            Ok(false) | Err(_) => return Next::Close,
        }
        if !self.shared.registry.set_busy(&self.slot) {
            return Next::Close;
        }
        let head_until = if first {
            wait_until
        } else {
            later(Instant::now(), options.header_timeout)
        };
        wire.set_deadline(Deadline::At(head_until));
        let head = match self.read_head(wire) {
            Ok(head) => head,
            Err(HeadFailure::TimedOut) => {
                bump(&self.shared.stats.header_timeouts);
                let message = "the request head did not arrive in time";
                return self.fail(state, 408, message, false);
            }
            Err(HeadFailure::Gone) => return Next::Close,
            Err(HeadFailure::Bad(e)) => return self.fail(state, e.status, &e.message, false),
        };
        self.handle(wire, state, head)
    }

    /// Reads and parses a head, within the limits.
    fn read_head(&self, wire: &mut WireReader) -> Result<Head, HeadFailure> {
        let limits = self.shared.head_limits;
        let mut scanner = HeadScanner::new(limits);
        // Room for skipped empty lines, the request line and the headers;
        // the scanner fails before a head could need more.
        let max_buffer = 2 * limits.request_line + limits.header_bytes + 16;
        loop {
            if let Some(span) = scanner.scan(wire.buffered()).map_err(HeadFailure::Bad)? {
                let bytes = wire.buffered().get(span.start..span.end).unwrap_or(&[]);
                let head = parse_head(bytes).map_err(HeadFailure::Bad);
                wire.consume(span.end);
                return head;
            }
            match wire.fill_more(max_buffer) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => return Err(HeadFailure::TimedOut),
                Err(_) => return Err(HeadFailure::Gone),
            }
        }
    }

    /// Reads the body, runs the handler and waits until it answered.
    fn handle(&self, wire: &mut WireReader, state: &Arc<ConnState>, head: Head) -> Next {
        let declared = match head.framing {
            Framing::None => false,
            Framing::Length(length) => length > 0,
            Framing::Chunked => true,
        };
        // A body on these methods has no meaning here: it is not read (so
        // nothing waits to drain it) and the connection closes after.
        let ignored = declared
            && matches!(
                head.method,
                Method::Get | Method::Head | Method::Delete | Method::Options
            );
        let close_after = !head.keep_alive || head.close_after || ignored;
        let (body, reservation) = if declared && !ignored {
            match self.read_body(wire, state, &head) {
                Ok(read) => read,
                Err(next) => return next,
            }
        } else {
            (Vec::new(), None)
        };
        self.run_handler(state, head, body, reservation, close_after)
    }

    fn run_handler(
        &self,
        state: &Arc<ConnState>,
        head: Head,
        body: Vec<u8>,
        reservation: Option<Reservation>,
        close_after: bool,
    ) -> Next {
        let options = self.options();
        state.expect_answer();
        let done = AnswerDone(state.clone());
        let writer = DeadlineWriter::new(
            self.stream.clone(),
            options.write_timeout,
            state.clone(),
            Some(done),
        );
        // A request without a body shares its connection's empty one.
        let body = if body.is_empty() {
            self.no_body.clone()
        } else {
            Arc::new(body)
        };
        let request = new_buffered_request(
            head.method,
            head.target,
            head.version,
            head.headers,
            Some(self.peer),
            BufferedBody::new(body.clone(), reservation),
            body,
            // Unbuffered: `Response::print` writes a small answer from one
            // buffer of its size, and buffers a large body itself.
            writer,
            close_after,
        );
        let handler = &self.shared.handler;
        let handled = panic::catch_unwind(AssertUnwindSafe(|| handler(request)));
        let panicked = handled.is_err();
        if panicked {
            // The request was dropped while unwinding: the client got 500.
            bump(&self.shared.stats.handler_panics);
            log::error!("a request handler panicked; the connection is closed");
        }
        // The handler may have handed the request to another thread:
        // responses must go out in order, so wait for this one.
        state.wait_answered();
        match state.writes() {
            WriteOutcome::Ok if panicked || close_after => Next::Linger,
            WriteOutcome::Ok => Next::KeepAlive,
            outcome => self.broken(outcome),
        }
    }

    /// Counts a failed write; the connection is closed at once.
    fn broken(&self, outcome: WriteOutcome) -> Next {
        let stats = &self.shared.stats;
        match outcome {
            WriteOutcome::TimedOut => bump(&stats.write_timeouts),
            _ => bump(&stats.write_failures),
        }
        Next::Close
    }

    /// Reads a whole body into memory, within its size, the budget and the
    /// body deadline. On failure gives what the connection does next.
    fn read_body(
        &self,
        wire: &mut WireReader,
        state: &Arc<ConnState>,
        head: &Head,
    ) -> Result<(Vec<u8>, Option<Reservation>), Next> {
        let options = self.options();
        let mut reservation = Reservation::new(&self.shared.budget);
        let head_only = head.method == Method::Head;
        let mut body = Vec::new();
        let read = match head.framing {
            Framing::Length(length) => {
                if length > options.max_body_bytes {
                    let message = too_large(options.max_body_bytes);
                    return Err(self.fail(state, 413, &message, head_only));
                }
                if !reservation.grow(length) {
                    return Err(self.over_budget(state, head_only));
                }
                // Fits in memory: it is at most max_body_bytes.
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                let waiting = wire.buffered().len() < length;
                self.send_continue(state, head, waiting)?;
                body.reserve_exact(length);
                self.start_body(wire);
                wire.read_body(&mut body, length).map_err(BodyError::Io)
            }
            Framing::Chunked => {
                let waiting = wire.buffered().is_empty();
                self.send_continue(state, head, waiting)?;
                self.start_body(wire);
                read_chunked(wire, options.max_body_bytes, &mut reservation, &mut body)
            }
            Framing::None => Ok(()),
        };
        match read {
            Ok(()) => Ok((body, Some(reservation))),
            Err(e) => {
                // PATCH: what was read and its share of the budget go back
                // before the error is written, as a served request's do
                // before its answer: a client that does not read the
                // error must not hold them until the write deadline.
                drop(body);
                drop(reservation);
                Err(self.body_failed(state, e, head_only))
            }
        }
    }

    /// The body deadline starts now.
    fn start_body(&self, wire: &mut WireReader) {
        let options = self.options();
        wire.set_deadline(Deadline::Body {
            start: Instant::now(),
            grace: options.body_grace,
            rate: options.min_body_rate,
            received: 0,
        });
    }

    fn body_failed(&self, state: &Arc<ConnState>, error: BodyError, head_only: bool) -> Next {
        let options = self.options();
        match error {
            BodyError::TooLarge => {
                let message = too_large(options.max_body_bytes);
                self.fail(state, 413, &message, head_only)
            }
            BodyError::OverBudget => self.over_budget(state, head_only),
            BodyError::Malformed(message) => self.fail(state, 400, &message, head_only),
            BodyError::Io(e) if e.kind() == ErrorKind::TimedOut => {
                bump(&self.shared.stats.body_timeouts);
                let message = "the request body arrived too slowly";
                self.fail(state, 408, message, head_only)
            }
            BodyError::Io(_) => Next::Close,
        }
    }

    fn over_budget(&self, state: &Arc<ConnState>, head_only: bool) -> Next {
        bump(&self.shared.stats.refused_budget);
        let message = "too many request bodies in flight; retry later";
        self.fail(state, 503, message, head_only)
    }

    /// `100 Continue` for a client that waits for it before sending a body
    /// not already received.
    fn send_continue(
        &self,
        state: &Arc<ConnState>,
        head: &Head,
        waiting: bool,
    ) -> Result<(), Next> {
        if !(head.expect_continue && waiting) {
            return Ok(());
        }
        let timeout = self.options().write_timeout;
        let mut writer = DeadlineWriter::new(self.stream.clone(), timeout, state.clone(), None);
        match writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n") {
            Ok(()) => Ok(()),
            Err(_) => Err(self.broken(state.writes())),
        }
    }

    /// Answers an error the engine found; the connection then ends.
    fn fail(&self, state: &Arc<ConnState>, status: u16, message: &str, head_only: bool) -> Next {
        self.shared.stats.count_error(status);
        let answer = render_error(self.options(), status, message, head_only);
        let timeout = self.options().write_timeout;
        let mut writer = DeadlineWriter::new(self.stream.clone(), timeout, state.clone(), None);
        match writer.write_all(&answer) {
            Ok(()) => Next::Linger,
            Err(_) => self.broken(state.writes()),
        }
    }

    /// Ends the connection after an answer: shut the writing side (the
    /// client sees the end), then read and drop what it still sends, within
    /// `close_linger` and `close_linger_bytes`, so that closing does not
    /// reset the connection under the answer.
    fn linger(&self, wire: &mut WireReader) {
        let options = self.options();
        let _ = self.stream.shutdown(Shutdown::Write);
        wire.set_deadline(Deadline::At(later(Instant::now(), options.close_linger)));
        let mut dropped = 0u64;
        while dropped < options.close_linger_bytes {
            let pending = wire.buffered().len();
            wire.consume(pending);
            dropped += pending as u64;
            if wire.fill_more(READ_BUFFER_BYTES).is_err() {
                return;
            }
        }
    }
}

fn too_large(limit: u64) -> String {
    format!("request body is larger than the {}-byte limit", limit)
}
