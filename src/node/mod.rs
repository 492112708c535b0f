//! A node: its own TCP listener on 127.0.0.1, its own [`Store`], and the
//! threads that serve them.
//!
//! ```text
//!   coordinator ──frames──▶ node-N-accept ──spawns──▶ node-N-conn (one per connection)
//!                                                      │ applies its chunk, then queues it
//!                                                      ▼ on every other node's inbox
//!   peers' node-M-conn ──Arc<[Entry]>──▶ inbox ──▶ node-N-apply (background replication)
//! ```
//!
//! A `Store` request is acknowledged only after the chunk is applied here and
//! queued on every other live node, so the crash of any one node cannot lose
//! it. Read-your-writes: [`Progress`] counts what was queued on this node and
//! what it has applied, in the inbox's FIFO order; a count
//! ([`Node::count_after_queued`]) first waits until `applied` reaches what was
//! `enqueued` when the GET came in.

use crate::protocol::{self, Request, Response};
use crate::store::{Entry, Store};
use crate::tenants::{TenantId, Tenants};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Chunks a node's replication inbox holds before writers wait for it
/// (back-pressure on ingest when one node falls far behind).
pub const INBOX_CAPACITY: usize = 16_384;
/// Most connections a node serves at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a restarting node waits for its source to apply what was queued
/// on it before copying.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);
/// How often blocked node threads look at their stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Buffer sizes of a node connection.
const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

/// What the inbox carries: one chunk stored directly on another node.
pub type Chunk = Arc<[Entry]>;

/// A node's replication queue counters, for read-your-writes.
#[derive(Default)]
pub struct Progress {
    enqueued: AtomicU64,
    applied: Mutex<u64>,
    applied_changed: Condvar,
}

impl Progress {
    /// Chunks ever queued on this node's inbox.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::SeqCst)
    }

    /// Chunks of the inbox this node has applied, in queue order.
    pub fn applied(&self) -> u64 {
        *self.applied.lock()
    }

    /// Chunks queued but not applied yet.
    pub fn lag(&self) -> u64 {
        self.enqueued().saturating_sub(self.applied())
    }

    fn mark_applied(&self) {
        *self.applied.lock() += 1;
        self.applied_changed.notify_all();
    }

    /// Waits until `target` chunks are applied; false on timeout or stop.
    fn wait_applied(&self, target: u64, limit: Duration, stopped: &AtomicBool) -> bool {
        let deadline = Instant::now() + limit;
        let mut applied = self.applied.lock();
        while *applied < target {
            if stopped.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return false;
            }
            self.applied_changed.wait_for(&mut applied, STOP_POLL);
        }
        true
    }
}

/// A live node as its peers see it: where to queue replication.
pub struct Peer {
    pub id: usize,
    inbox: Sender<Chunk>,
    progress: Arc<Progress>,
}

/// The live nodes' inboxes. A fan-out holds the read lock while it queues a
/// chunk, so a node that joins (write lock) either gets the chunk queued or
/// finds it in the node it copies from; never neither.
#[derive(Default)]
pub struct Peers {
    list: RwLock<Vec<Peer>>,
}

impl Peers {
    fn join(&self, peer: Peer) {
        self.list.write().push(peer);
    }

    fn leave(&self, id: usize) {
        self.list.write().retain(|peer| peer.id != id);
    }
}

/// How a node picks its port.
#[derive(Debug, Clone, Copy)]
pub enum PortChoice {
    /// The OS picks a free port.
    Any,
    /// The first free port from this one up.
    From(u16),
}

/// Why a node could not start or move.
#[derive(Debug)]
pub enum NodeError {
    NoFreePort {
        from: u16,
    },
    /// No live node caught up in time to copy its data from.
    NoCaughtUpSource,
    Bind(io::Error),
    Spawn(io::Error),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::NoFreePort { from } => write!(f, "no free port on 127.0.0.1 from {from} up"),
            NodeError::NoCaughtUpSource => {
                write!(
                    f,
                    "no live node caught up in time to copy the data from; try again"
                )
            }
            NodeError::Bind(e) => write!(f, "cannot listen on 127.0.0.1: {e}"),
            NodeError::Spawn(e) => write!(f, "cannot start a node thread: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Binds 127.0.0.1 on the first free port the choice allows, skipping `avoid`.
pub fn bind(choice: PortChoice, avoid: Option<u16>) -> Result<TcpListener, NodeError> {
    match choice {
        PortChoice::Any => loop {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(NodeError::Bind)?;
            if Some(listener.local_addr().map_err(NodeError::Bind)?.port()) != avoid {
                return Ok(listener);
            }
        },
        PortChoice::From(first) => (first..=u16::MAX)
            .filter(|port| Some(*port) != avoid)
            .find_map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
            .ok_or(NodeError::NoFreePort { from: first }),
    }
}

/// What every thread of one node incarnation shares.
struct Shared {
    id: usize,
    store: Store,
    progress: Arc<Progress>,
    tenants: Arc<Tenants>,
    peers: Arc<Peers>,
    stopped: AtomicBool,
    /// Never sent on: dropping the sender wakes every `select!` on it.
    stop_signal: Receiver<()>,
    stalled_until: Mutex<Option<Instant>>,
    connections: Mutex<Connections>,
    /// Numbers listeners, so a disconnect cuts only the old one's connections.
    next_generation: AtomicU64,
}

/// Open connections, so that a crash or a disconnect can cut them.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, (u64, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

/// The listening socket of one address, and its accept thread.
struct Listening {
    addr: SocketAddr,
    generation: u64,
    closing: Arc<AtomicBool>,
    accept_thread: JoinHandle<()>,
}

/// What a starting node begins with.
pub enum Seed<'a> {
    Empty,
    /// Items recovered from the data dir.
    Recovered(&'a Store),
    /// A copy of the first of these live nodes that catches up in time.
    CopyFrom(&'a [Arc<Node>]),
}

/// One incarnation of a node, from start (or restart) to crash.
pub struct Node {
    pub id: usize,
    shared: Arc<Shared>,
    stop_sender: Mutex<Option<Sender<()>>>,
    listening: Mutex<Option<Listening>>,
    apply_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Starts a node: joins the peers (so replication reaches it from now on),
    /// takes in its seed, then listens.
    pub fn start(
        id: usize,
        listener: TcpListener,
        tenants: Arc<Tenants>,
        peers: Arc<Peers>,
        seed: Seed<'_>,
    ) -> Result<Node, NodeError> {
        let (stop_sender, stop_signal) = bounded(0);
        let (inbox_sender, inbox) = bounded(INBOX_CAPACITY);
        let shared = Arc::new(Shared {
            id,
            store: Store::new(),
            progress: Arc::new(Progress::default()),
            tenants,
            peers,
            stopped: AtomicBool::new(false),
            stop_signal,
            stalled_until: Mutex::new(None),
            connections: Mutex::new(Connections::default()),
            next_generation: AtomicU64::new(0),
        });
        let node = Node {
            id,
            shared: shared.clone(),
            stop_sender: Mutex::new(Some(stop_sender)),
            listening: Mutex::new(None),
            apply_thread: Mutex::new(None),
        };
        let apply_thread = thread::Builder::new()
            .name(format!("node-{id}-apply"))
            .spawn(move || apply_loop(&shared, &inbox))
            .map_err(NodeError::Spawn)?;
        *node.apply_thread.lock() = Some(apply_thread);
        node.shared.peers.join(Peer {
            id,
            inbox: inbox_sender,
            progress: node.shared.progress.clone(),
        });
        match seed {
            Seed::Empty => {}
            Seed::Recovered(store) => node.shared.store.absorb(store),
            Seed::CopyFrom(sources) => {
                if !sources
                    .iter()
                    .any(|source| source.copy_into(&node.shared.store))
                {
                    return Err(NodeError::NoCaughtUpSource);
                }
            }
        }
        node.listen_on(listener)?;
        Ok(node)
    }

    /// Copies everything this node holds into `target`, once it has applied
    /// all that was queued on it before the call (see [`Peers`]); false, and
    /// nothing copied, if it cannot within [`CATCH_UP_LIMIT`].
    fn copy_into(&self, target: &Store) -> bool {
        let queued = self.shared.progress.enqueued();
        let caught_up =
            self.shared
                .progress
                .wait_applied(queued, CATCH_UP_LIMIT, &self.shared.stopped);
        if caught_up {
            target.absorb(&self.shared.store);
        }
        caught_up
    }

    fn listen_on(&self, listener: TcpListener) -> Result<(), NodeError> {
        let addr = listener.local_addr().map_err(NodeError::Bind)?;
        let mut listening = self.listening.lock();
        let generation = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
        let closing = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let accept_closing = closing.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("node-{}-accept", self.id))
            .spawn(move || accept_loop(&shared, &listener, generation, &accept_closing))
            .map_err(NodeError::Spawn)?;
        *listening = Some(Listening {
            addr,
            generation,
            closing,
            accept_thread,
        });
        Ok(())
    }

    /// Where the node listens now.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listening.lock().as_ref().map(|l| l.addr)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn progress(&self) -> &Progress {
        &self.shared.progress
    }

    /// Simulated network failure: the listener and its connections go away,
    /// and the node listens on `listener` instead.
    pub fn move_to(&self, listener: TcpListener) -> Result<(), NodeError> {
        self.close_listener();
        self.listen_on(listener)
    }

    /// The node answers nothing until `until`.
    pub fn stall_until(&self, until: Instant) {
        *self.shared.stalled_until.lock() = Some(until);
    }

    /// The count of `tenant` (`None`: a tenant nobody wrote) once this node
    /// has applied everything queued on it before the call: every write
    /// acknowledged before then (read-your-writes). A stalled node answers
    /// nothing until its stall ends; `None` if no answer is possible within
    /// `limit`.
    pub fn count_after_queued(&self, tenant: Option<TenantId>, limit: Duration) -> Option<u64> {
        let queued = self.shared.progress.enqueued();
        let deadline = Instant::now() + limit;
        while self.is_stalled() {
            let now = Instant::now();
            if now >= deadline || self.shared.stopped.load(Ordering::SeqCst) {
                return None;
            }
            thread::sleep((deadline - now).min(STOP_POLL));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !self
            .shared
            .progress
            .wait_applied(queued, left, &self.shared.stopped)
        {
            return None;
        }
        Some(tenant.map_or(0, |tenant| self.shared.store.count(tenant)))
    }

    pub fn is_stalled(&self) -> bool {
        self.shared
            .stalled_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Ends the node: stops accepting, cuts every connection, stops its
    /// threads and waits for them. Its memory goes when the last `Arc` does.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.stop_sender.lock().take();
        self.close_listener();
        self.shared.peers.leave(self.id);
        let threads = {
            let mut connections = self.shared.connections.lock();
            for (_, stream) in connections.open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut connections.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
        if let Some(thread) = self.apply_thread.lock().take() {
            let _ = thread.join();
        }
    }

    fn close_listener(&self) {
        let Some(listening) = self.listening.lock().take() else {
            return;
        };
        listening.closing.store(true, Ordering::SeqCst);
        // A connection wakes the blocked accept() so it sees `closing`.
        let _ = TcpStream::connect_timeout(&listening.addr, Duration::from_secs(1));
        let _ = listening.accept_thread.join();
        let connections = self.shared.connections.lock();
        for (generation, stream) in connections.open.values() {
            if *generation == listening.generation {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn apply_loop(shared: &Shared, inbox: &Receiver<Chunk>) {
    loop {
        select! {
            recv(inbox) -> chunk => {
                let Ok(chunk) = chunk else { return };
                wait_while_stalled(shared);
                shared.store.apply(&chunk);
                shared.progress.mark_applied();
            }
            recv(shared.stop_signal) -> _ => return,
        }
    }
}

fn wait_while_stalled(shared: &Shared) {
    loop {
        let Some(until) = *shared.stalled_until.lock() else {
            return;
        };
        let now = Instant::now();
        if now >= until || shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep((until - now).min(STOP_POLL));
    }
}

fn accept_loop(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    generation: u64,
    closing: &AtomicBool,
) {
    for stream in listener.incoming() {
        if closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // EMFILE and friends: back off and keep serving.
            thread::sleep(STOP_POLL);
            continue;
        };
        let mut connections = shared.connections.lock();
        connections.threads.retain(|thread| !thread.is_finished());
        if connections.open.len() >= MAX_CONNECTIONS {
            continue;
        }
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        let connection_id = connections.next_id;
        connections.next_id += 1;
        connections
            .open
            .insert(connection_id, (generation, registered));
        let thread_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("node-{}-conn", shared.id))
            .spawn(move || {
                serve_connection(&thread_shared, stream);
                thread_shared.connections.lock().open.remove(&connection_id);
            });
        match spawned {
            Ok(thread) => connections.threads.push(thread),
            Err(_) => {
                connections.open.remove(&connection_id);
            }
        }
    }
}

/// Serves one connection until it closes, errs or sends a bad frame.
fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(CONNECTION_BUFFER_BYTES, stream);
    let mut writer = BufWriter::with_capacity(CONNECTION_BUFFER_BYTES, write_half);
    let mut payload = Vec::new();
    let mut out = Vec::new();
    while !shared.stopped.load(Ordering::SeqCst) {
        if protocol::read_frame(&mut reader, &mut payload).is_err() {
            return;
        }
        wait_while_stalled(shared);
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

/// Answers one request; `None` drops the connection (bad frame, or no answer
/// can be given truthfully).
fn handle(shared: &Shared, payload: &[u8]) -> Option<Response> {
    let Ok(Request::Store { id, entries }) = Request::decode(payload) else {
        return None;
    };
    let known_tenants = shared.tenants.len() as u64;
    if entries
        .iter()
        .any(|e| e.tenant.index() as u64 >= known_tenants)
    {
        return None;
    }
    shared.store.apply(&entries);
    replicate(shared, entries.into()).ok()?;
    Some(Response::Stored { id })
}

/// The node stopped while it was replicating; the chunk is not acknowledged.
struct Stopped;

/// Queues a chunk on every other live node's inbox.
fn replicate(shared: &Shared, chunk: Chunk) -> Result<(), Stopped> {
    let peers = shared.peers.list.read();
    for peer in peers.iter().filter(|peer| peer.id != shared.id) {
        peer.progress.enqueued.fetch_add(1, Ordering::SeqCst);
        select! {
            send(peer.inbox, chunk.clone()) -> sent => {
                if sent.is_err() {
                    // That peer is gone; nothing of it will be read again.
                    peer.progress.enqueued.fetch_sub(1, Ordering::SeqCst);
                }
            }
            recv(shared.stop_signal) -> _ => {
                peer.progress.enqueued.fetch_sub(1, Ordering::SeqCst);
                return Err(Stopped);
            }
        }
    }
    Ok(())
}
