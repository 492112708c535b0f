//! Membership: which nodes live, where they listen, which one is master, and
//! the fault operations (crash, restart, disconnect, stall).
//!
//! The coordinator finds a node through its [`Slot`]: the slot always holds
//! the node's current incarnation and address, so a node that moved to
//! another port is found there without any manual step.

use crate::coordinator::pool::Pool;
use crate::node::{self, Node, NodeError, Peers, PortChoice, Seed};
use crate::store::Store;
use crate::tenants::Tenants;
use crate::wal::{Wal, WalError};
use parking_lot::{Mutex, RwLock};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A node that did not answer in time is left out of new writes this long.
pub const BUSY_BACKOFF: Duration = Duration::from_millis(500);

/// One node id: its current incarnation (none while dead) and the
/// coordinator's view of it.
pub struct Slot {
    pub id: usize,
    node: RwLock<Option<Arc<Node>>>,
    /// Items this node acknowledged directly from the coordinator since the
    /// process started.
    pub received: AtomicU64,
    pub pool: Pool,
    busy_until: Mutex<Option<Instant>>,
}

impl Slot {
    pub fn node(&self) -> Option<Arc<Node>> {
        self.node.read().clone()
    }

    /// The coordinator saw this node miss a deadline recently.
    pub fn is_busy(&self) -> bool {
        self.busy_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn mark_busy(&self) {
        *self.busy_until.lock() = Some(Instant::now() + BUSY_BACKOFF);
    }

    pub fn mark_answering(&self) {
        *self.busy_until.lock() = None;
    }
}

/// What `/nodes` shows of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub id: usize,
    pub role: &'static str,
    pub alive: bool,
    pub addr: Option<String>,
    pub items: u64,
    pub received: u64,
    #[serde(skip)]
    pub lag: u64,
}

/// A fault to inject into one node (`POST /nodes/{id}/{fault}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node dies at once: listener closed, threads ended, memory dropped.
    Crash,
    /// A dead node starts again, copies the data of a live node, then serves.
    Restart,
    /// Simulated network failure: the node listens again on another port.
    Disconnect,
    /// The node answers nothing for this long.
    Stall(Duration),
}

/// Why a fault operation was refused.
#[derive(Debug)]
pub enum FaultError {
    UnknownNode(usize),
    WrongState {
        id: usize,
        why: &'static str,
    },
    Node(NodeError),
    /// Restarting from the data dir failed.
    Disk(WalError),
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::UnknownNode(id) => write!(f, "no node {id}"),
            FaultError::WrongState { id, why } => write!(f, "node {id} {why}"),
            FaultError::Node(e) => write!(f, "{e}"),
            FaultError::Disk(e) => write!(f, "cannot recover from the data dir: {e}"),
        }
    }
}

impl FaultError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            FaultError::UnknownNode(_) => 404,
            FaultError::WrongState { .. } => 409,
            FaultError::Node(_) | FaultError::Disk(_) => 503,
        }
    }
}

impl std::error::Error for FaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FaultError::Node(e) => Some(e),
            FaultError::Disk(e) => Some(e),
            FaultError::UnknownNode(_) | FaultError::WrongState { .. } => None,
        }
    }
}

impl From<NodeError> for FaultError {
    fn from(e: NodeError) -> Self {
        FaultError::Node(e)
    }
}

impl From<WalError> for FaultError {
    fn from(e: WalError) -> Self {
        FaultError::Disk(e)
    }
}

pub struct Cluster {
    slots: Vec<Slot>,
    master: Mutex<Option<usize>>,
    tenants: Arc<Tenants>,
    peers: Arc<Peers>,
    node_port: u16,
    /// One fault operation at a time.
    changes: Mutex<()>,
}

impl Cluster {
    /// Starts `count` nodes on ports from `node_port` (0: any), each holding
    /// `initial`; node 0 is master.
    pub fn start(
        count: usize,
        node_port: u16,
        tenants: Arc<Tenants>,
        initial: &Store,
    ) -> Result<Cluster, NodeError> {
        let peers = Arc::new(Peers::default());
        let mut slots = Vec::with_capacity(count);
        let mut next_port = node_port;
        for id in 0..count {
            let choice = if node_port == 0 {
                PortChoice::Any
            } else {
                PortChoice::From(next_port)
            };
            let listener = node::bind(choice, None)?;
            let port = listener.local_addr().map_err(NodeError::Bind)?.port();
            next_port = port.saturating_add(1);
            let node = Node::start(
                id,
                listener,
                tenants.clone(),
                peers.clone(),
                Seed::Recovered(initial),
            )?;
            slots.push(Slot {
                id,
                node: RwLock::new(Some(Arc::new(node))),
                received: AtomicU64::new(0),
                pool: Pool::default(),
                busy_until: Mutex::new(None),
            });
        }
        Ok(Cluster {
            slots,
            master: Mutex::new(Some(0)),
            tenants,
            peers,
            node_port,
            changes: Mutex::new(()),
        })
    }

    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn master_id(&self) -> Option<usize> {
        *self.master.lock()
    }

    /// The master and its slot, if a master serves.
    pub fn master(&self) -> Option<(&Slot, Arc<Node>)> {
        let id = self.master_id()?;
        let slot = &self.slots[id];
        Some((slot, slot.node()?))
    }

    /// Every live node, in id order.
    pub fn live(&self) -> Vec<(&Slot, Arc<Node>)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.node().map(|node| (slot, node)))
            .collect()
    }

    pub fn status(&self) -> Vec<NodeStatus> {
        let master = self.master_id();
        self.slots
            .iter()
            .map(|slot| {
                let node = slot.node();
                NodeStatus {
                    id: slot.id,
                    role: if master == Some(slot.id) {
                        "master"
                    } else {
                        "replica"
                    },
                    alive: node.is_some(),
                    addr: node.as_ref().and_then(|n| n.addr()).map(|a| a.to_string()),
                    items: node.as_ref().map_or(0, |n| n.store().len()),
                    received: slot.received.load(Ordering::Relaxed),
                    lag: node.as_ref().map_or(0, |n| n.progress().lag()),
                }
            })
            .collect()
    }

    fn slot(&self, id: usize) -> Result<&Slot, FaultError> {
        self.slots.get(id).ok_or(FaultError::UnknownNode(id))
    }

    fn live_node(&self, id: usize, action: &'static str) -> Result<(&Slot, Arc<Node>), FaultError> {
        let slot = self.slot(id)?;
        let node = slot
            .node()
            .ok_or(FaultError::WrongState { id, why: action })?;
        Ok((slot, node))
    }

    /// The node dies at once: listener closed, threads ended, memory dropped.
    fn crash(&self, id: usize) -> Result<(), FaultError> {
        let _change = self.changes.lock();
        let slot = self.slot(id)?;
        let node = slot.node.write().take().ok_or(FaultError::WrongState {
            id,
            why: "is already dead",
        })?;
        node.stop();
        slot.pool.clear();
        drop(node);
        let mut master = self.master.lock();
        if *master == Some(id) {
            *master = self.most_applied_live_node();
            match *master {
                Some(new) => eprintln!("master changed: node {id} died, node {new} is master"),
                None => eprintln!("master changed: node {id} died, no node is alive"),
            }
        }
        eprintln!("node {id} crashed");
        Ok(())
    }

    /// The live node that has applied the most; it has lost the least time
    /// catching up, so it serves reads soonest.
    fn most_applied_live_node(&self) -> Option<usize> {
        self.live()
            .into_iter()
            .max_by_key(|(slot, node)| (node.progress().applied(), std::cmp::Reverse(slot.id)))
            .map(|(slot, _)| slot.id)
    }

    /// Injects `fault` into node `id`. `wal` is the log in durable mode: a
    /// node restarted while no other lives recovers from it.
    pub fn inject(&self, id: usize, fault: Fault, wal: Option<&Wal>) -> Result<(), FaultError> {
        match fault {
            Fault::Crash => self.crash(id),
            Fault::Restart => self.restart(id, wal),
            Fault::Disconnect => self.disconnect(id).map(|_| ()),
            Fault::Stall(duration) => self.stall(id, duration),
        }
    }

    /// A dead node starts empty, copies the data of a live node, then serves.
    fn restart(&self, id: usize, wal: Option<&Wal>) -> Result<(), FaultError> {
        let _change = self.changes.lock();
        let slot = self.slot(id)?;
        if slot.node().is_some() {
            return Err(FaultError::WrongState {
                id,
                why: "is alive",
            });
        }
        // Copy from the master if it can, else from another live node; a
        // stalled node cannot catch up, so it comes last.
        let mut sources: Vec<Arc<Node>> = self.live().into_iter().map(|(_, node)| node).collect();
        let master = self.master_id();
        sources.sort_by_key(|node| (node.is_stalled(), Some(node.id) != master));
        let recovered = match (wal, sources.is_empty()) {
            (Some(wal), true) => Some(wal.load(&self.tenants)?),
            _ => None,
        };
        let seed = match &recovered {
            Some(recovered) => Seed::Recovered(&recovered.store),
            None if sources.is_empty() => Seed::Empty,
            None => Seed::CopyFrom(&sources),
        };
        let listener = node::bind(self.port_choice(), None)?;
        let node = Node::start(id, listener, self.tenants.clone(), self.peers.clone(), seed)?;
        let addr = node.addr();
        *slot.node.write() = Some(Arc::new(node));
        slot.mark_answering();
        let mut master = self.master.lock();
        if master.is_none() {
            *master = Some(id);
            eprintln!("master changed: node {id} is master");
        }
        match addr {
            Some(addr) => eprintln!(
                "node {id} restarted on {addr}, {} items copied",
                self.items_of(id)
            ),
            None => eprintln!("node {id} restarted"),
        }
        Ok(())
    }

    fn items_of(&self, id: usize) -> u64 {
        self.slots[id].node().map_or(0, |node| node.store().len())
    }

    /// Simulated network failure: the node listens again on another port.
    fn disconnect(&self, id: usize) -> Result<SocketAddr, FaultError> {
        let _change = self.changes.lock();
        let (slot, node) = self.live_node(id, "is dead")?;
        let old_port = node.addr().map(|addr| addr.port());
        let choice = match (self.port_choice(), old_port) {
            (PortChoice::From(_), Some(port)) => PortChoice::From(port.saturating_add(1)),
            (choice, _) => choice,
        };
        let listener =
            node::bind(choice, old_port).or_else(|_| node::bind(PortChoice::Any, old_port))?;
        node.move_to(listener)?;
        slot.pool.clear();
        let addr = node.addr().ok_or(FaultError::WrongState {
            id,
            why: "has no listener",
        })?;
        eprintln!("node {id} disconnected, listening again on {addr}");
        Ok(addr)
    }

    /// The node stops answering for `duration`.
    fn stall(&self, id: usize, duration: Duration) -> Result<(), FaultError> {
        let _change = self.changes.lock();
        let (_, node) = self.live_node(id, "is dead")?;
        node.stall_until(Instant::now() + duration);
        eprintln!("node {id} stalled for {} ms", duration.as_millis());
        Ok(())
    }

    fn port_choice(&self) -> PortChoice {
        match self.node_port {
            0 => PortChoice::Any,
            port => PortChoice::From(port),
        }
    }

    /// Stops every node (shutdown).
    pub fn stop(&self) {
        let _change = self.changes.lock();
        for slot in &self.slots {
            if let Some(node) = slot.node.write().take() {
                node.stop();
            }
        }
        *self.master.lock() = None;
    }
}
