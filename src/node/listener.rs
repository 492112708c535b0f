//! A node's TCP side: the accept thread, and one thread per connection that
//! challenges the peer, then hands `Store` frames to the node's intake
//! ([`super::Node::take`]) and acknowledges them.
//!
//! Anything that cannot prove it knows the process secret is dropped without
//! harm: a peer must complete the handshake (`Hello`, then the proof, see
//! [`crate::protocol`]) within [`AUTH_TIMEOUT`], in frames of a few bytes at
//! most, so a hostile peer costs almost nothing; at most [`MAX_UNPROVEN`]
//! connections may wait to prove themselves, and a new one closes the oldest,
//! so a flood of them cannot keep a proven peer out for long.
//! Frame buffers grow only as bytes arrive.

use super::{NodeError, ROOM_WAIT, Refusal, Shared};
use crate::keys::{self, Secret};
use crate::protocol::{self, FrameError, Request, Response};
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Most connections that proved themselves served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections waiting to answer the challenge; a new one closes the
/// oldest of them.
pub const MAX_UNPROVEN: usize = 16;
/// How long a peer has to answer the challenge.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(1);
/// A proven connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the accept thread backs off after a failed accept (EMFILE...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// Buffer sizes of a proven connection.
const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

/// A listening socket, its accept thread and the connections it accepted.
pub(super) struct Listener {
    socket: TcpListener,
    accept: JoinHandle<()>,
    connections: Arc<Connections>,
}

/// Open connections, so that a crash or a disconnect can cut them.
#[derive(Default)]
struct Connections {
    state: parking_lot::Mutex<ConnectionsState>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct ConnectionsState {
    open: HashMap<u64, Open>,
    threads: Vec<JoinHandle<()>>,
    closed: bool,
}

struct Open {
    stream: TcpStream,
    proven: bool,
    /// Sent a well-formed `Hello`: at least it speaks the protocol.
    greeted: bool,
    since: Instant,
}

impl Listener {
    /// Starts accepting on `socket` for the node; its address becomes the
    /// node's address.
    pub(super) fn start(shared: &Arc<Shared>, socket: TcpListener) -> Result<Listener, NodeError> {
        let addr = socket.local_addr().map_err(NodeError::Bind)?;
        let accepting = socket.try_clone().map_err(NodeError::Bind)?;
        let connections = Arc::new(Connections::default());
        let (thread_shared, thread_connections) = (shared.clone(), connections.clone());
        let accept = thread::Builder::new()
            .name(format!("node-{}-accept", shared.id.0))
            .spawn(move || accept_loop(&thread_shared, &accepting, &thread_connections))
            .map_err(NodeError::Spawn)?;
        *shared.addr.write() = Some(addr);
        Ok(Listener {
            socket,
            accept,
            connections,
        })
    }

    /// Stops accepting, cuts every connection and joins every thread.
    pub(super) fn close(self) {
        // Shutting a listening socket down wakes a blocked accept() with
        // EINVAL: the accept thread returns.
        // SAFETY: shutdown(2) on a descriptor we own; no memory is involved.
        unsafe {
            libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR);
        }
        let _ = self.accept.join();
        let threads = {
            let mut state = self.connections.state.lock();
            state.closed = true;
            for open in state.open.values() {
                let _ = open.stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, socket: &TcpListener, connections: &Arc<Connections>) {
    loop {
        let stream = match socket.accept() {
            Ok((stream, _peer)) => stream,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(_) => {
                // EMFILE and friends: back off and keep serving.
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if let Err(stream) = connections.admit(shared, stream) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Connections {
    /// Registers a new connection and gives it a thread, closing the oldest
    /// unproven one if too many wait; gives the stream back if refused.
    fn admit(self: &Arc<Self>, shared: &Arc<Shared>, stream: TcpStream) -> Result<(), TcpStream> {
        let Ok(registered) = stream.try_clone() else {
            return Err(stream);
        };
        let mut state = self.state.lock();
        state.threads.retain(|thread| !thread.is_finished());
        if state.closed || state.open.len() >= MAX_CONNECTIONS + MAX_UNPROVEN {
            return Err(stream);
        }
        // Too many wait to prove themselves: the oldest that never even said
        // Hello goes first, then the oldest.
        let unproven: Vec<(u64, bool, Instant)> = state
            .open
            .iter()
            .filter(|(_, open)| !open.proven)
            .map(|(id, open)| (*id, open.greeted, open.since))
            .collect();
        if unproven.len() >= MAX_UNPROVEN
            && let Some((victim, _, _)) = unproven
                .iter()
                .min_by_key(|(_, greeted, since)| (*greeted, *since))
            && let Some(open) = state.open.remove(victim)
        {
            let _ = open.stream.shutdown(Shutdown::Both);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        state.open.insert(
            id,
            Open {
                stream: registered,
                proven: false,
                greeted: false,
                since: Instant::now(),
            },
        );
        let (shared, connections) = (shared.clone(), self.clone());
        let spawned = thread::Builder::new()
            .name(format!("node-{}-conn", shared.id.0))
            .spawn(move || {
                serve_connection(&shared, &connections, id, stream);
                connections.state.lock().open.remove(&id);
            });
        match spawned {
            Ok(thread) => state.threads.push(thread),
            Err(_) => {
                if let Some(open) = state.open.remove(&id) {
                    let _ = open.stream.shutdown(Shutdown::Both);
                }
            }
        }
        Ok(())
    }

    /// Notes that a connection said `Hello`.
    fn note_hello(&self, id: u64) {
        if let Some(open) = self.state.lock().open.get_mut(&id) {
            open.greeted = true;
        }
    }

    /// Marks a connection proven; false if it was closed meanwhile, or too
    /// many are proven already.
    fn prove(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        let proven = state.open.values().filter(|open| open.proven).count();
        match state.open.get_mut(&id) {
            Some(open) if proven < MAX_CONNECTIONS => {
                open.proven = true;
                true
            }
            _ => false,
        }
    }
}

/// Serves one connection until it closes, errs, or sends a bad frame.
fn serve_connection(shared: &Shared, connections: &Connections, id: u64, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if authenticate(&stream, connections, id).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(CONNECTION_BUFFER_BYTES, stream);
    let mut writer = BufWriter::with_capacity(CONNECTION_BUFFER_BYTES, write_half);
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        if protocol::read_frame(&mut reader, &mut payload, protocol::MAX_FRAME_BYTES).is_err() {
            return;
        }
        if !shared.wait_while_stalled() {
            return;
        }
        let Some(response) = handle(shared, &payload) else {
            return;
        };
        protocol::encode_response(&mut out, &response);
        if writer
            .write_all(&out)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Runs the handshake: waits for `Hello`, sends a challenge, checks the
/// proof, welcomes; all within [`AUTH_TIMEOUT`] of the connection's start.
fn authenticate(stream: &TcpStream, connections: &Connections, id: u64) -> Result<(), FrameError> {
    let deadline = Instant::now() + AUTH_TIMEOUT;
    stream.set_write_timeout(Some(AUTH_TIMEOUT))?;
    let mut payload = Vec::with_capacity(protocol::MAX_HANDSHAKE_BYTES);
    if read_handshake(stream, &mut payload, deadline)? != Request::Hello {
        return Err(FrameError::Malformed(
            "the connection did not start with Hello",
        ));
    }
    connections.note_hello(id);
    let nonce = keys::nonce();
    let mut out = Vec::new();
    protocol::encode_response(&mut out, &Response::Challenge { nonce });
    (&*stream).write_all(&out)?;
    match read_handshake(stream, &mut payload, deadline)? {
        Request::Proof { tag } if Secret::of_process().verify(&nonce, &tag) => {}
        _ => return Err(FrameError::Malformed("the challenge was not answered")),
    }
    if !connections.prove(id) {
        return Err(FrameError::Malformed("too many proven connections"));
    }
    protocol::encode_response(&mut out, &Response::Welcome);
    (&*stream).write_all(&out)?;
    Ok(())
}

/// Reads one small handshake frame before `deadline`.
fn read_handshake(
    stream: &TcpStream,
    payload: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Request, FrameError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(FrameError::Io(io::ErrorKind::TimedOut.into()));
    }
    stream.set_read_timeout(Some(left))?;
    protocol::read_frame(&mut &*stream, payload, protocol::MAX_HANDSHAKE_BYTES)?;
    Request::decode(payload)
}

/// Answers one request; `None` drops the connection (bad frame, or no
/// answer can be given truthfully).
fn handle(shared: &Shared, payload: &[u8]) -> Option<Response> {
    let Ok(Request::Store { id, pieces }) = Request::decode(payload) else {
        return None;
    };
    let known_tenants = shared.tenants.len();
    let unknown = pieces
        .iter()
        .flat_map(|piece| &piece.entries)
        .any(|entry| entry.tenant.index() >= known_tenants);
    if unknown {
        return None;
    }
    // The connection waited out any stall before handling the frame; one
    // that began just now refuses it.
    match shared.take(|| pieces, Instant::now() + ROOM_WAIT) {
        Ok(()) => Some(Response::Stored { id }),
        Err(Refusal::Busy | Refusal::Full) => Some(Response::Refused { id }),
        Err(Refusal::Stopped) => None,
    }
}
