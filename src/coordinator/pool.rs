//! The coordinator's side of a node connection: authenticated, kept for
//! reuse, and always used with a deadline, so a dead or busy node costs a
//! bounded wait.

use crate::keys::Secret;
use crate::node::Node;
use crate::protocol::{self, FrameError, Response};
use parking_lot::Mutex;
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for a TCP connection to a node and its handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Handshakes tried before a node counts as unreachable: under a flood of
/// hostile connections, a node may close ours mid-handshake to admit them.
pub const CONNECT_ATTEMPTS: usize = 3;
/// Idle connections kept per node for reuse.
pub const POOL_SIZE: usize = 4;
/// Largest answer frame a node sends.
const MAX_ANSWER_BYTES: usize = 64;
/// Shortest read timeout: an answer already in the socket is read even when
/// its deadline passed while an earlier answer was awaited.
const MIN_READ_WAIT: Duration = Duration::from_millis(1);

/// Why a call to a node failed.
#[derive(Debug)]
pub enum CallError {
    Connect(io::Error),
    Send(io::Error),
    Receive(FrameError),
    /// The answer was not for the request (the connection is out of step).
    Mismatch,
    /// The node died or has no listener at the moment.
    NodeGone,
}

impl CallError {
    /// The node did not answer in time: alive but busy, most likely.
    pub fn is_timeout(&self) -> bool {
        let kind = match self {
            CallError::Connect(e) | CallError::Send(e) | CallError::Receive(FrameError::Io(e)) => {
                e.kind()
            }
            _ => return false,
        };
        matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "cannot connect: {e}"),
            CallError::Send(e) => write!(f, "cannot send: {e}"),
            CallError::Receive(e) => write!(f, "no answer: {e}"),
            CallError::Mismatch => write!(f, "answer does not match the request"),
            CallError::NodeGone => write!(f, "the node is not listening"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Connect(e) | CallError::Send(e) => Some(e),
            CallError::Receive(e) => Some(e),
            CallError::Mismatch | CallError::NodeGone => None,
        }
    }
}

/// One open, authenticated connection to one node address.
pub struct Connection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    payload: Vec<u8>,
    /// The socket timeouts set now, to skip needless syscalls.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// True once it served a call; a reused connection may have been cut
    /// while idle, which is not a sign that the node is down.
    pub reused: bool,
}

impl Connection {
    /// Connects to `node` and proves it knows the process secret (the
    /// handshake of [`crate::protocol`]), trying again when the node closed
    /// the connection mid-handshake.
    pub fn open(node: &Node) -> Result<Connection, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = node.addr().ok_or(CallError::NodeGone)?;
            match Connection::open_once(node, addr) {
                Err(CallError::Receive(_) | CallError::Send(_)) if attempt < CONNECT_ATTEMPTS => {
                    continue;
                }
                result => return result,
            }
        }
    }

    fn open_once(node: &Node, addr: SocketAddr) -> Result<Connection, CallError> {
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(CallError::Connect)?;
        // Hostile connections flooding the node must not get this one
        // closed before it proves itself.
        let _announced = stream.local_addr().map(|from| node.announce(from));
        stream.set_nodelay(true).map_err(CallError::Connect)?;
        let writer = stream.try_clone().map_err(CallError::Connect)?;
        let mut connection = Connection {
            addr,
            reader: BufReader::new(stream),
            writer,
            payload: Vec::new(),
            read_timeout: None,
            write_timeout: None,
            reused: false,
        };
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut frame = Vec::new();
        protocol::encode_hello(&mut frame);
        connection.send(&frame, deadline)?;
        let Response::Challenge { nonce } = connection.read_answer(deadline)? else {
            return Err(CallError::Mismatch);
        };
        protocol::encode_proof(&mut frame, &Secret::of_process().tag(&nonce));
        connection.send(&frame, deadline)?;
        match connection.read_answer(deadline)? {
            Response::Welcome => Ok(connection),
            _ => Err(CallError::Mismatch),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes one request frame, giving up at `deadline`.
    pub fn send(&mut self, frame: &[u8], deadline: Instant) -> Result<(), CallError> {
        let left = time_left(deadline).map_err(CallError::Send)?;
        if needs_update(self.write_timeout, left) {
            self.writer
                .set_write_timeout(Some(left))
                .map_err(CallError::Send)?;
            self.write_timeout = Some(left);
        }
        self.writer.write_all(frame).map_err(CallError::Send)
    }

    /// Reads the answer to request `id`, giving up at `deadline`.
    pub fn receive(&mut self, id: u64, deadline: Instant) -> Result<Response, CallError> {
        let response = self.read_answer(deadline)?;
        match response {
            Response::Stored { id: answered } | Response::Refused { id: answered }
                if answered == id =>
            {
                Ok(response)
            }
            _ => Err(CallError::Mismatch),
        }
    }

    fn read_answer(&mut self, deadline: Instant) -> Result<Response, CallError> {
        let receive = |e| CallError::Receive(FrameError::Io(e));
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_READ_WAIT);
        if needs_update(self.read_timeout, left) {
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(receive)?;
            self.read_timeout = Some(left);
        }
        protocol::read_frame(&mut self.reader, &mut self.payload, MAX_ANSWER_BYTES)
            .map_err(CallError::Receive)?;
        Response::decode(&self.payload).map_err(CallError::Receive)
    }
}

/// Whether a socket timeout set to `current` must change for a call that
/// may take `left`: it must not be longer (the call would outlive its
/// deadline); a shorter one is kept while it is at least half (waking early
/// costs less than a syscall per call).
fn needs_update(current: Option<Duration>, left: Duration) -> bool {
    current.is_none_or(|current| current > left || current < left / 2)
}

fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// Idle connections to one node.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// A connection to `node` where it listens now: an idle one if there
    /// is one, else a new one.
    pub fn take(&self, node: &Node) -> Result<Connection, CallError> {
        let addr = node.addr().ok_or(CallError::NodeGone)?;
        let mut idle = self.idle.lock();
        idle.retain(|connection| connection.addr == addr);
        match idle.pop() {
            Some(connection) => Ok(connection),
            None => {
                drop(idle);
                Connection::open(node)
            }
        }
    }

    /// Returns a connection that completed its call cleanly.
    pub fn give_back(&self, mut connection: Connection) {
        connection.reused = true;
        let mut idle = self.idle.lock();
        if idle.len() < POOL_SIZE {
            idle.push(connection);
        }
    }

    /// Forgets every idle connection (the node died or moved).
    pub fn clear(&self) {
        self.idle.lock().clear();
    }
}
