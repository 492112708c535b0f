//! PATCH: socket reading and writing under deadlines for `Server::serve`.
//!
//! Every blocking read or write first sets the socket timeout to what is
//! left until its deadline, so no call blocks past the moment the deadline
//! would fail, whatever the client does. There is no poll loop: a thread
//! sleeps in the kernel until bytes move or the deadline comes.

use std::convert::TryFrom;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::limits::READ_BUFFER_BYTES;

/// Shortest socket timeout set: zero would mean "no timeout" to the kernel
/// (std refuses it), and a deadline this close is as good as passed.
const MIN_SOCKET_TIMEOUT: Duration = Duration::from_millis(1);

/// Bytes of the first read of a request, into a buffer on the stack: most
/// requests arrive whole in it, and an idle connection holds no heap buffer.
const FIRST_READ_BYTES: usize = 1024;

/// `at + by`, or a day after `at` if that overflows (absurd options).
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(at)
}

/// When a read must have completed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// A fixed moment (waiting for a request, reading a head, lingering).
    At(Instant),
    /// A body: by `start + grace + t`, at least `t * rate` bytes must have
    /// arrived. `received` counts the body bytes taken so far.
    Body {
        start: Instant,
        grace: Duration,
        rate: u64,
        received: u64,
    },
}

impl Deadline {
    fn instant(&self) -> Instant {
        match *self {
            Deadline::At(at) => at,
            Deadline::Body {
                start,
                grace,
                rate,
                received,
            } => {
                // The rule fails once elapsed > grace + received / rate.
                let nanos = u128::from(received) * 1_000_000_000 / u128::from(rate.max(1));
                let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                later(later(start, grace), earned)
            }
        }
    }

    /// Time left, or `TimedOut` when none is.
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.instant().saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left.max(MIN_SOCKET_TIMEOUT))
        }
    }
}

/// Whether a read that failed with `error` should simply be tried again
/// (a socket timeout ends in `WouldBlock` on Unix; the deadline decides).
fn retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// The reading half of a connection: a small buffer over the socket, and
/// the deadline of what is being read now.
pub(crate) struct WireReader {
    stream: Arc<TcpStream>,
    /// Bytes `start..end` are received and not consumed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    deadline: Deadline,
    /// The read timeout set on the socket, to skip needless syscalls.
    timeout: Option<Duration>,
}

impl WireReader {
    pub(crate) fn new(stream: Arc<TcpStream>) -> Self {
        WireReader {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            deadline: Deadline::At(Instant::now()),
            timeout: None,
        }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = deadline;
    }

    /// Bytes received and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Waits until bytes arrive and takes the first of them; false if the
    /// client closed the connection. Nothing is allocated while waiting: the
    /// first read goes to the stack, and one read usually brings a whole
    /// request (no second syscall to peek first).
    pub(crate) fn wait_for_data(&mut self) -> io::Result<bool> {
        if !self.buffered().is_empty() {
            return Ok(true);
        }
        let mut first = [0u8; FIRST_READ_BYTES];
        loop {
            self.arm_timeout()?;
            match (&*self.stream).read(&mut first) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.take_in(first.get(..n).unwrap_or(&[]));
                    return Ok(true);
                }
                Err(e) if retry(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Puts bytes read elsewhere into an empty buffer. A freed buffer comes
    /// back at the size of those bytes, not at `READ_BUFFER_BYTES`: most
    /// requests are whole in them, and a small block is a cheap allocation
    /// where a 4 KB one made glibc consolidate its free lists on every
    /// request. `fill_more` grows it when more must be read.
    fn take_in(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(..bytes.len()) {
            Some(room) => room.copy_from_slice(bytes),
            None => self.buf = bytes.to_vec(),
        }
        self.start = 0;
        self.end = bytes.len();
    }

    /// Reads more bytes into the buffer, growing it up to `max_buffer`
    /// bytes if it is full. `UnexpectedEof` if the client closed.
    pub(crate) fn fill_more(&mut self, max_buffer: usize) -> io::Result<usize> {
        self.make_room(max_buffer);
        let (stream, buf) = (&self.stream, &mut self.buf);
        let spare = match buf.get_mut(self.end..) {
            Some(spare) if !spare.is_empty() => spare,
            _ => {
                return Err(io::Error::new(
                    ErrorKind::OutOfMemory,
                    "read buffer at its limit",
                ))
            }
        };
        let n = read_before(stream, spare, &self.deadline, &mut self.timeout)?;
        self.end += n;
        Ok(n)
    }

    /// Ensures free space after `end`: compacts, else grows (doubling).
    fn make_room(&mut self, max_buffer: usize) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return;
        }
        let size = (self.buf.len() * 2)
            .max(READ_BUFFER_BYTES)
            .min(max_buffer.max(READ_BUFFER_BYTES));
        self.buf.resize(size, 0);
    }

    /// Drops the first `n` buffered bytes (at most what is buffered). In a
    /// body, they count as received for its deadline.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        if let Deadline::Body { received, .. } = &mut self.deadline {
            *received += n as u64;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads `length` body bytes into `out`: the buffered ones first, then
    /// straight from the socket into `out`, growing it as bytes arrive.
    pub(crate) fn read_body(&mut self, out: &mut Vec<u8>, length: usize) -> io::Result<()> {
        let from_buffer = self.buffered().len().min(length);
        out.extend_from_slice(self.buffered().get(..from_buffer).unwrap_or(&[]));
        self.consume(from_buffer);
        const STEP: usize = 64 * 1024;
        while out.len() < length {
            let filled = out.len();
            out.resize(filled + (length - filled).min(STEP), 0);
            let room = out.get_mut(filled..).unwrap_or(&mut []);
            let n = read_before(&self.stream, room, &self.deadline, &mut self.timeout);
            let n = n.inspect_err(|_| out.truncate(filled))?;
            out.truncate(filled + n);
            if let Deadline::Body { received, .. } = &mut self.deadline {
                *received += n as u64;
            }
        }
        Ok(())
    }

    /// Between requests: a buffer grown for a large head goes back to the
    /// small size (keeping any pipelined bytes). An empty one is freed if
    /// it is larger than one first read; a smaller one stays for the next
    /// request, which is mostly of the same size (PATCH: an allocation per
    /// request less, for at most `FIRST_READ_BYTES` kept per idle
    /// connection).
    pub(crate) fn shrink(&mut self) {
        let pending = self.end - self.start;
        if pending == 0 {
            if self.buf.len() > FIRST_READ_BYTES {
                self.buf = Vec::new();
            }
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() > READ_BUFFER_BYTES && pending <= READ_BUFFER_BYTES {
            let mut small = vec![0; READ_BUFFER_BYTES];
            small
                .get_mut(..pending)
                .unwrap_or(&mut [])
                .copy_from_slice(self.buffered());
            self.buf = small;
            self.start = 0;
            self.end = pending;
        }
    }

    /// Sets the socket timeout to what is left before the deadline.
    fn arm_timeout(&mut self) -> io::Result<()> {
        arm(&self.stream, &self.deadline, &mut self.timeout)
    }
}

/// Sets the read timeout to what is left before `deadline` (skipping the
/// syscall when the one set is not longer and at least half of it: waking
/// early only costs a loop).
fn arm(stream: &TcpStream, deadline: &Deadline, set: &mut Option<Duration>) -> io::Result<()> {
    let left = deadline.remaining()?;
    if let Some(current) = *set {
        if current <= left && current >= left / 2 {
            return Ok(());
        }
    }
    stream.set_read_timeout(Some(left))?;
    *set = Some(left);
    Ok(())
}

/// One read that does not block past the deadline. `UnexpectedEof` if the
/// client closed, `TimedOut` if the deadline passed.
fn read_before(
    mut stream: &TcpStream,
    into: &mut [u8],
    deadline: &Deadline,
    set: &mut Option<Duration>,
) -> io::Result<usize> {
    loop {
        arm(stream, deadline, set)?;
        match stream.read(into) {
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "client closed")),
            Ok(n) => return Ok(n),
            Err(e) if retry(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Lets the chunked decoder read through the buffer, under the deadline.
impl BufRead for WireReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buffered().is_empty() {
            self.fill_more(READ_BUFFER_BYTES)?;
        }
        Ok(self.buffered())
    }

    fn consume(&mut self, amount: usize) {
        WireReader::consume(self, amount);
    }
}

impl Read for WireReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out.get_mut(..n)
            .unwrap_or(&mut [])
            .copy_from_slice(available.get(..n).unwrap_or(&[]));
        WireReader::consume(self, n);
        Ok(n)
    }
}

/// What happened to the writes on a connection.
const WRITES_OK: u8 = 0;
const WRITE_FAILED: u8 = 1;
const WRITE_TIMED_OUT: u8 = 2;

/// State a connection shares with the writer of its current answer.
#[derive(Debug)]
pub(crate) struct ConnState {
    writes: AtomicU8,
    answered: AtomicBool,
    owner: Thread,
    /// The send timeout set on the socket, in microseconds (0: none yet),
    /// so an answer sets it only when it must (most never block).
    send_timeout_micros: AtomicU64,
}

/// How writing went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    Ok,
    Failed,
    TimedOut,
}

impl ConnState {
    /// State owned by the calling (connection) thread.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnState {
            writes: AtomicU8::new(WRITES_OK),
            answered: AtomicBool::new(false),
            owner: thread::current(),
            send_timeout_micros: AtomicU64::new(0),
        })
    }

    pub(crate) fn writes(&self) -> WriteOutcome {
        match self.writes.load(Ordering::Acquire) {
            WRITES_OK => WriteOutcome::Ok,
            WRITE_TIMED_OUT => WriteOutcome::TimedOut,
            _ => WriteOutcome::Failed,
        }
    }

    fn broken(&self, outcome: u8) {
        // The first failure is the one that counts.
        let _ =
            self.writes
                .compare_exchange(WRITES_OK, outcome, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Arms the signal for the next answer.
    pub(crate) fn expect_answer(&self) {
        self.answered.store(false, Ordering::Release);
    }

    /// Blocks the connection thread until the answer's writer is dropped
    /// (the handler may have sent the request to another thread).
    pub(crate) fn wait_answered(&self) {
        while !self.answered.load(Ordering::Acquire) {
            thread::park();
        }
    }
}

/// Signals the connection thread when the answer is done with.
#[derive(Debug)]
pub(crate) struct AnswerDone(pub(crate) Arc<ConnState>);

impl Drop for AnswerDone {
    fn drop(&mut self) {
        self.0.answered.store(true, Ordering::Release);
        self.0.owner.unpark();
    }
}

/// Writes one answer to the client within `timeout` from its first byte.
/// A failed or late write marks the connection broken.
pub(crate) struct DeadlineWriter {
    stream: Arc<TcpStream>,
    timeout: Duration,
    deadline: Option<Instant>,
    conn: Arc<ConnState>,
    _done: Option<AnswerDone>,
}

impl DeadlineWriter {
    /// `done`, if given, is dropped with the writer to signal the answer
    /// is finished.
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        timeout: Duration,
        conn: Arc<ConnState>,
        done: Option<AnswerDone>,
    ) -> Self {
        DeadlineWriter {
            stream,
            timeout,
            deadline: None,
            conn,
            _done: done,
        }
    }

    /// Makes the socket's send timeout at most `left` (skipping the syscall
    /// when the one set is not longer and at least half of it).
    fn arm(&self, left: Duration) -> io::Result<()> {
        let set = &self.conn.send_timeout_micros;
        let current = Duration::from_micros(set.load(Ordering::Relaxed));
        if !current.is_zero() && current <= left && current >= left / 2 {
            return Ok(());
        }
        self.stream.set_write_timeout(Some(left))?;
        let micros = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
        set.store(micros.max(1), Ordering::Relaxed);
        Ok(())
    }

    fn fail(&self, outcome: u8, error: io::Error) -> io::Error {
        self.conn.broken(outcome);
        error
    }
}

impl Write for DeadlineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.conn.writes() != WriteOutcome::Ok {
            return Err(io::Error::new(ErrorKind::BrokenPipe, "connection broken"));
        }
        let timeout = self.timeout;
        // One clock read per attempt: the deadline, set by the first write
        // of the answer, counts from that same moment.
        let mut now = Instant::now();
        let deadline = *self.deadline.get_or_insert_with(|| later(now, timeout));
        loop {
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                let late = io::Error::new(ErrorKind::TimedOut, "write deadline passed");
                return Err(self.fail(WRITE_TIMED_OUT, late));
            }
            if let Err(e) = self.arm(left.max(MIN_SOCKET_TIMEOUT)) {
                return Err(self.fail(WRITE_FAILED, e));
            }
            match (&*self.stream).write(data) {
                Ok(n) => return Ok(n),
                Err(e) if retry(&e) => now = Instant::now(),
                Err(e) => return Err(self.fail(WRITE_FAILED, e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
