//! A node: its own TCP listener on 127.0.0.1, its own [`Store`], and the
//! threads that serve them.
//!
//! ```text
//!   mod.rs          Node (the handle everyone shares) and NodeThreads (owned, stopped by value)
//!   listener.rs     the accept thread and one thread per connection: challenge, frames, acks
//!   replication.rs  the apply thread (replication log → store) and the View reads use
//! ```
//!
//! ```text
//!   coordinator ──Node::take (in memory)──▶ pieces → replication log
//!   a peer that proved the secret ──Store frames──▶ node-N-conn ──▶ Node::take, ack
//!   replication log ──commits──▶ node-N-apply ──▶ store + view (counts at a watermark)
//! ```
//!
//! [`Node::take`] is the node's one intake. The coordinator of this process
//! hands pieces to it in memory: a write that crossed the node's TCP port
//! and back cost three context switches where the work itself costs one,
//! which halved small requests (issue #11). The port keeps the framed,
//! authenticated protocol of SPEC.md ("Node ports"), and a `Store` frame on
//! it goes through the same intake with the same answers. A node that is
//! stopped or stalled refuses to take, as it would not answer on its port.
//!
//! A node's life is one [`Node`] (cheap to clone: every thread and the
//! cluster share it) and one [`NodeThreads`], owned by the cluster and
//! stopped by value: [`NodeThreads::stop`] marks the node stopped, retires it
//! from the replication log (its apply thread returns), closes its listener
//! and connections (their threads return), and joins them all.

mod listener;
pub mod replication;

use crate::replication::{Full, NotAttached, Piece, ReplicationLog};
use crate::store::Store;
use crate::tenants::Tenants;
use crate::version::Version;
use listener::Listener;
use parking_lot::{Mutex, RwLock};
use replication::View;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a stalled node's threads look at the clock and the stop flag.
const STALL_POLL: Duration = Duration::from_millis(10);
/// How long a write may wait for room in the replication log, when even the
/// fastest node is [`crate::replication::MAX_RETAINED_BYTES`] behind (the
/// box is overloaded), before it is refused: writers slow down to what the
/// nodes apply rather than fail at once.
pub const ROOM_WAIT: Duration = Duration::from_secs(3);

/// A node's number, 0 to N-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
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
    /// No live node is caught up in replication to copy the data from.
    NoCaughtUpSource,
    Bind(io::Error),
    Spawn(io::Error),
    /// More nodes than [`crate::config::MAX_NODES`]: the replication log
    /// keeps one bit per node.
    TooMany {
        asked: usize,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::NoFreePort { from } => write!(f, "no free port on 127.0.0.1 from {from} up"),
            NodeError::NoCaughtUpSource => write!(
                f,
                "no live node caught up in time to copy the data from; try again"
            ),
            NodeError::Bind(e) => write!(f, "cannot listen on 127.0.0.1: {e}"),
            NodeError::Spawn(e) => write!(f, "cannot start a node thread: {e}"),
            NodeError::TooMany { asked } => write!(
                f,
                "{asked} nodes asked for; at most {} are supported",
                crate::config::MAX_NODES
            ),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Bind(e) | NodeError::Spawn(e) => Some(e),
            NodeError::NoFreePort { .. }
            | NodeError::NoCaughtUpSource
            | NodeError::TooMany { .. } => None,
        }
    }
}

/// Why a node did not take a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node crashed or is stopping.
    Stopped,
    /// The node is stalled.
    Busy,
    /// The replication log had no room in time: every node is far behind.
    Full,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Stopped => write!(f, "the node stopped"),
            Refusal::Busy => write!(f, "the node is stalled"),
            Refusal::Full => Full.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<NotAttached> for NodeError {
    fn from(_: NotAttached) -> Self {
        NodeError::NoCaughtUpSource
    }
}

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

/// One incarnation of a node, from start (or restart) to crash. Clones share it.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

/// What every thread of one node incarnation shares.
struct Shared {
    id: NodeId,
    store: Store,
    view: View,
    /// Held while the node applies commits or is copied from or into, so a
    /// copy sees the store, the view and the log position of one moment.
    applying: Mutex<()>,
    /// Bumped when the node's data is replaced by a copy: commits read
    /// before that are stale and must not be applied.
    epoch: AtomicU64,
    stalled_until: Mutex<Option<Instant>>,
    /// Whether `stalled_until` may be set: every write checks every node,
    /// and a node that was never stalled then costs one atomic load, not a
    /// lock and a clock read.
    maybe_stalled: AtomicBool,
    addr: RwLock<Option<SocketAddr>>,
    log: Arc<ReplicationLog>,
    tenants: Arc<Tenants>,
    stopped: AtomicBool,
}

/// The threads of a running node: owned by the cluster, stopped by value.
pub struct NodeThreads {
    apply: JoinHandle<()>,
    listener: Listener,
}

impl Node {
    /// A node holding `store`, whose writes up to `watermark` it reflects.
    /// It joins the replication log only when started.
    pub fn new(
        id: NodeId,
        store: Store,
        watermark: Version,
        log: Arc<ReplicationLog>,
        tenants: Arc<Tenants>,
    ) -> Node {
        let view = View::new(watermark, store.tenant_counts());
        Node {
            shared: Arc::new(Shared {
                id,
                store,
                view,
                applying: Mutex::new(()),
                epoch: AtomicU64::new(0),
                stalled_until: Mutex::new(None),
                maybe_stalled: AtomicBool::new(false),
                addr: RwLock::new(None),
                log,
                tenants,
                stopped: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// Takes `pieces` into the replication log: once this returns `Ok`,
    /// every node will apply them, and no crash of one node can lose them.
    /// A stalled node refuses (it would not answer on its port either); a
    /// full log is waited on until `room_by`. `pieces` is called only once
    /// the node takes them, so a refusal costs no copy.
    pub fn take(
        &self,
        pieces: impl FnOnce() -> Vec<Piece>,
        room_by: Instant,
    ) -> Result<(), Refusal> {
        self.shared.take(pieces, room_by)
    }

    /// Starts the apply thread and listens. The node must have joined the
    /// replication log first ([`ReplicationLog::join_at_head`] or
    /// [`Node::copy_from`]).
    pub fn start(&self, listener: TcpListener) -> Result<NodeThreads, NodeError> {
        let shared = self.shared.clone();
        let apply = thread::Builder::new()
            .name(format!("node-{}-apply", self.shared.id.0))
            .spawn(move || replication::apply_loop(&shared))
            .map_err(NodeError::Spawn)?;
        let listener = match Listener::start(&self.shared, listener) {
            Ok(listener) => listener,
            Err(e) => {
                self.shared.stopped.store(true, Ordering::SeqCst);
                self.shared.log.retire(self.shared.id);
                let _ = apply.join();
                return Err(e);
            }
        };
        Ok(NodeThreads { apply, listener })
    }

    /// Makes this node a copy of `source` and joins the replication log
    /// where `source` reads, so it applies exactly what `source` has not.
    pub fn copy_from(&self, source: &Node) -> Result<(), NotAttached> {
        let _mine = self.shared.applying.lock();
        let _theirs = source.shared.applying.lock();
        self.shared.log.join_like(self.id(), source.id())?;
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        self.shared.store.replace_with(&source.shared.store);
        self.shared.view.replace_with(&source.shared.view);
        Ok(())
    }

    /// Where the node listens now.
    pub fn addr(&self) -> Option<SocketAddr> {
        *self.shared.addr.read()
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn view(&self) -> &View {
        &self.shared.view
    }

    /// Whether the node reads the replication log (not detached for lagging).
    pub fn is_attached(&self) -> bool {
        self.shared.log.is_attached(self.id())
    }

    /// The node answers nothing until `until`.
    pub fn stall_until(&self, until: Instant) {
        let mut stalled_until = self.shared.stalled_until.lock();
        *stalled_until = Some(until);
        self.shared.maybe_stalled.store(true, Ordering::SeqCst);
    }

    pub fn is_stalled(&self) -> bool {
        self.shared.is_stalled()
    }
}

impl Shared {
    fn take(&self, pieces: impl FnOnce() -> Vec<Piece>, room_by: Instant) -> Result<(), Refusal> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Refusal::Stopped);
        }
        if self.is_stalled() {
            return Err(Refusal::Busy);
        }
        self.log
            .append(pieces(), room_by)
            .map_err(|Full| Refusal::Full)
    }

    fn is_stalled(&self) -> bool {
        if !self.maybe_stalled.load(Ordering::SeqCst) {
            return false;
        }
        let mut stalled_until = self.stalled_until.lock();
        if stalled_until.is_some_and(|until| Instant::now() < until) {
            return true;
        }
        // Over: later checks need no lock again.
        *stalled_until = None;
        self.maybe_stalled.store(false, Ordering::SeqCst);
        false
    }

    /// Waits while the node is stalled; false if it stopped meanwhile.
    fn wait_while_stalled(&self) -> bool {
        while self.is_stalled() {
            if self.stopped.load(Ordering::SeqCst) {
                return false;
            }
            thread::sleep(STALL_POLL);
        }
        !self.stopped.load(Ordering::SeqCst)
    }
}

impl NodeThreads {
    /// Simulated network failure: the listener and its connections go away,
    /// and the node listens on `listener` instead.
    pub fn move_to(&mut self, node: &Node, listener: TcpListener) -> Result<(), NodeError> {
        let fresh = Listener::start(&node.shared, listener)?;
        let old = std::mem::replace(&mut self.listener, fresh);
        old.close();
        Ok(())
    }

    /// Ends the node: no more frames taken, no more commits applied, every
    /// connection cut, every thread joined. Its memory goes with the last
    /// clone of the [`Node`].
    pub fn stop(self, node: &Node) {
        node.shared.stopped.store(true, Ordering::SeqCst);
        node.shared.log.retire(node.id());
        self.listener.close();
        *node.shared.addr.write() = None;
        let _ = self.apply.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Secret, TAG_BYTES};
    use crate::protocol::{self, OutgoingPiece, Response};
    use crate::replication::Read;
    use crate::store::Entry;
    use crate::tenants::TenantId;
    use std::io::{Read as _, Write};
    use std::net::TcpStream;

    /// A started node on a fresh log, and the log.
    fn node() -> (Node, NodeThreads, Arc<ReplicationLog>) {
        let tenants = Arc::new(Tenants::new());
        tenants.intern_all(["t"]);
        let (log, _detached) = ReplicationLog::new(Version::ZERO, tenants.clone());
        let log = Arc::new(log);
        let node = Node::new(NodeId(0), Store::new(), Version::ZERO, log.clone(), tenants);
        log.join_at_head(node.id());
        let threads = node.start(bind(PortChoice::Any, None).unwrap()).unwrap();
        (node, threads, log)
    }

    #[test]
    fn a_stall_ends_on_its_own_and_a_new_one_is_seen() {
        let tenants = Arc::new(Tenants::new());
        let (log, _detached) = ReplicationLog::new(Version::ZERO, tenants.clone());
        let node = Node::new(
            NodeId(0),
            Store::new(),
            Version::ZERO,
            Arc::new(log),
            tenants,
        );
        assert!(!node.is_stalled());
        node.stall_until(Instant::now() + Duration::from_millis(300));
        assert!(node.is_stalled());
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.is_stalled() {
            assert!(Instant::now() < deadline, "the stall never ended");
            thread::sleep(Duration::from_millis(1));
        }
        // The check that saw the end cleared the flag; a new stall sets it.
        node.stall_until(Instant::now() + Duration::from_secs(60));
        assert!(node.is_stalled());
    }

    /// Whether the node closes `stream` without a word.
    fn closed_silently(mut stream: TcpStream) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        matches!(stream.read(&mut [0u8; 64]), Ok(0) | Err(_))
    }

    /// A connection to the node that proved it knows the process secret.
    fn proven(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut frame = Vec::new();
        protocol::encode_hello(&mut frame);
        stream.write_all(&frame).unwrap();
        let Response::Challenge { nonce } = read_response(&mut stream) else {
            panic!("a challenge");
        };
        protocol::encode_proof(&mut frame, &Secret::of_process().tag(&nonce));
        stream.write_all(&frame).unwrap();
        assert_eq!(read_response(&mut stream), Response::Welcome);
        stream
    }

    fn read_response(stream: &mut TcpStream) -> Response {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut payload = Vec::new();
        protocol::read_frame(stream, &mut payload, 64).unwrap();
        Response::decode(&payload).unwrap()
    }

    /// The IDs of the commits `observer` has not read yet.
    fn committed_ids(log: &ReplicationLog, observer: NodeId) -> Vec<i64> {
        let Read::Commits(commits) = log.read(observer) else {
            panic!("the observer reads the log");
        };
        commits
            .iter()
            .flat_map(|c| &c.pieces)
            .flatten()
            .map(|e| e.id)
            .collect()
    }

    /// A piece of one new batch of one item.
    fn piece(log: &ReplicationLog, id: i64) -> Piece {
        let versions = log.open(1, Vec::new()).unwrap();
        Piece {
            batch: versions.first,
            offset: 0,
            entries: vec![Entry {
                id,
                version: versions.first,
                tenant: TenantId::new(0),
            }],
        }
    }

    /// A `Store` frame (request id 1) carrying [`piece`].
    fn store_frame(log: &ReplicationLog, id: i64) -> Vec<u8> {
        let piece = piece(log, id);
        let mut frame = Vec::new();
        protocol::encode_store(
            &mut frame,
            1,
            &[OutgoingPiece {
                batch: piece.batch,
                offset: piece.offset,
                entries: &piece.entries,
            }],
        );
        frame
    }

    #[test]
    fn only_a_peer_that_knows_the_secret_can_store() {
        let (node, threads, log) = node();
        let addr = node.addr().unwrap();
        // The test reads the log as a node of its own (the node's apply
        // thread reads it too).
        let observer = NodeId(99);
        log.join_at_head(observer);
        // A forged frame without the handshake: dropped silently.
        let mut forged = TcpStream::connect(addr).unwrap();
        forged.write_all(&store_frame(&log, 7)).unwrap();
        assert!(closed_silently(forged));
        // Hello, then a guessed proof: dropped after the challenge.
        let mut guesser = TcpStream::connect(addr).unwrap();
        let mut frame = Vec::new();
        protocol::encode_hello(&mut frame);
        guesser.write_all(&frame).unwrap();
        let mut challenge = Vec::new();
        protocol::read_frame(&mut guesser, &mut challenge, 64).unwrap();
        assert!(matches!(
            Response::decode(&challenge),
            Ok(Response::Challenge { .. })
        ));
        protocol::encode_proof(&mut frame, &[0; TAG_BYTES]);
        guesser.write_all(&frame).unwrap();
        guesser.write_all(&store_frame(&log, 8)).unwrap();
        assert!(closed_silently(guesser));
        // A connection that proves itself stores.
        let mut real = proven(addr);
        real.write_all(&store_frame(&log, 9)).unwrap();
        assert_eq!(read_response(&mut real), Response::Stored { id: 1 });
        // Nothing of the forged frames reached the log: their two batches
        // are open still (settled here with nothing), and only the real one
        // has its piece.
        log.settle(Version::new(1), &[]);
        log.settle(Version::new(2), &[]);
        assert_eq!(committed_ids(&log, observer), vec![9]);
        threads.stop(&node);
    }

    #[test]
    fn a_stalled_or_stopped_node_refuses_to_take() {
        let (node, threads, log) = node();
        let observer = NodeId(99);
        log.join_at_head(observer);
        assert_eq!(node.take(|| vec![piece(&log, 1)], Instant::now()), Ok(()));
        node.stall_until(Instant::now() + Duration::from_secs(60));
        let refused = piece(&log, 2);
        let batch = refused.batch;
        assert_eq!(
            node.take(|| vec![refused], Instant::now()),
            Err(Refusal::Busy)
        );
        log.settle(batch, &[]);
        node.stall_until(Instant::now());
        assert_eq!(
            node.take(|| vec![piece(&log, 3)], Instant::now()),
            Ok(()),
            "the stall is over"
        );
        assert_eq!(committed_ids(&log, observer), vec![1, 3]);
        threads.stop(&node);
        assert_eq!(
            node.take(|| vec![piece(&log, 4)], Instant::now()),
            Err(Refusal::Stopped)
        );
    }

    #[test]
    fn stopping_closes_the_port_and_joins_every_thread() {
        let (node, threads, _log) = node();
        let addr = node.addr().unwrap();
        let _idle = TcpStream::connect(addr).unwrap();
        let _proven = proven(addr);
        threads.stop(&node);
        assert!(node.addr().is_none());
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_moved_node_cuts_connections_to_the_old_port() {
        let (node, mut threads, _log) = node();
        let old = node.addr().unwrap();
        let open = TcpStream::connect(old).unwrap();
        threads
            .move_to(&node, bind(PortChoice::Any, Some(old.port())).unwrap())
            .unwrap();
        assert_ne!(node.addr(), Some(old));
        assert!(closed_silently(open));
        assert!(TcpStream::connect(old).is_err());
        proven(node.addr().unwrap());
        threads.stop(&node);
    }
}
