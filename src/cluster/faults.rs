//! Fault injection (`--fault-injection`): crash, restart, disconnect, stall.

use super::Cluster;
use crate::node::{self, Node, NodeError, NodeId, PortChoice};
use crate::store::Store;
use crate::version::Version;
use crate::wal::{Wal, WalError};
use std::fmt;
use std::time::{Duration, Instant};

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
        id: NodeId,
        why: &'static str,
    },
    Node(NodeError),
    /// Restarting from the data dir failed.
    Disk(WalError),
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

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::UnknownNode(id) => write!(f, "no node {id}"),
            FaultError::WrongState { id, why } => write!(f, "{id} {why}"),
            FaultError::Node(e) => write!(f, "{e}"),
            FaultError::Disk(e) => write!(f, "cannot recover from the data dir: {e}"),
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

impl Cluster {
    /// Injects `fault` into node `id`. `wal` is the log in durable mode: a
    /// node restarted while no other lives recovers from it.
    pub fn inject(&self, id: usize, fault: Fault, wal: Option<&Wal>) -> Result<(), FaultError> {
        if id >= self.size() {
            return Err(FaultError::UnknownNode(id));
        }
        let id = NodeId(id);
        let _change = self.changes.lock();
        match fault {
            Fault::Crash => self.crash(id),
            Fault::Restart => self.restart(id, wal),
            Fault::Disconnect => self.disconnect(id),
            Fault::Stall(duration) => self.stall(id, duration),
        }
    }

    fn live_node(&self, id: NodeId) -> Result<Node, FaultError> {
        self.roster()
            .node(id)
            .cloned()
            .ok_or(FaultError::WrongState { id, why: "is dead" })
    }

    /// The node leaves the roster (a new master elected at the same
    /// instant if it was master), then its threads stop.
    fn crash(&self, id: NodeId) -> Result<(), FaultError> {
        let node = self
            .roster()
            .node(id)
            .cloned()
            .ok_or(FaultError::WrongState {
                id,
                why: "is already dead",
            })?;
        let mut nodes = self.roster().nodes.clone();
        nodes[id.0] = None;
        self.publish(nodes, Some(id));
        if let Some(threads) = self.threads[id.0].lock().take() {
            threads.stop(&node);
        }
        crate::log!("{id} crashed");
        Ok(())
    }

    /// A dead node starts again: a copy of a live node caught up in the
    /// replication log, or (no node lives) the data dir or nothing.
    fn restart(&self, id: NodeId, wal: Option<&Wal>) -> Result<(), FaultError> {
        let roster = self.roster();
        if roster.node(id).is_some() {
            return Err(FaultError::WrongState {
                id,
                why: "is alive",
            });
        }
        let node = if roster.live().next().is_some() {
            self.copy_of_live_node(id)?
        } else {
            let store = match wal {
                Some(wal) => wal.load(&self.tenants)?.store,
                None => Store::new(),
            };
            let watermark = self.log.join_at_head(id);
            Node::new(id, store, watermark, self.log.clone(), self.tenants.clone())
        };
        let listener = match node::bind(self.port_choice(), None) {
            Ok(listener) => listener,
            Err(e) => {
                self.log.retire(id);
                return Err(e.into());
            }
        };
        let threads = node.start(listener)?;
        *self.threads[id.0].lock() = Some(threads);
        let mut nodes = roster.nodes.clone();
        nodes[id.0] = Some(node.clone());
        self.publish(nodes, None);
        let addr = node.addr().map_or("-".to_string(), |a| a.to_string());
        crate::log!(
            "{id} restarted on {addr}, {} items copied",
            node.store().len()
        );
        Ok(())
    }

    /// A new incarnation of node `id` holding a copy of the live node most
    /// caught up (the master first; a stalled node last).
    pub(super) fn copy_of_live_node(&self, id: NodeId) -> Result<Node, NodeError> {
        let node = Node::new(
            id,
            Store::new(),
            Version::ZERO,
            self.log.clone(),
            self.tenants.clone(),
        );
        let roster = self.roster();
        let mut sources: Vec<&Node> = roster.live().filter(|n| n.is_attached()).collect();
        sources.sort_by_key(|n| (n.is_stalled(), Some(n.id()) != roster.master_id()));
        for source in sources {
            if node.copy_from(source).is_ok() {
                return Ok(node);
            }
        }
        Err(NodeError::NoCaughtUpSource)
    }

    /// Simulated network failure: the node listens again on another port;
    /// connections to the old one are cut.
    fn disconnect(&self, id: NodeId) -> Result<(), FaultError> {
        let node = self.live_node(id)?;
        let old_port = node.addr().map(|addr| addr.port());
        let choice = match (self.port_choice(), old_port) {
            (PortChoice::From(_), Some(port)) => PortChoice::From(port.saturating_add(1)),
            (choice, _) => choice,
        };
        let listener =
            node::bind(choice, old_port).or_else(|_| node::bind(PortChoice::Any, old_port))?;
        let mut threads = self.threads[id.0].lock();
        let threads = threads.as_mut().ok_or(FaultError::WrongState {
            id,
            why: "has no threads",
        })?;
        threads.move_to(&node, listener)?;
        let addr = node.addr().map_or("-".to_string(), |a| a.to_string());
        crate::log!("{id} disconnected, listening again on {addr}");
        Ok(())
    }

    /// The node answers nothing for `duration`.
    fn stall(&self, id: NodeId, duration: Duration) -> Result<(), FaultError> {
        self.live_node(id)?.stall_until(Instant::now() + duration);
        crate::log!("{id} stalled for {} ms", duration.as_millis());
        Ok(())
    }
}
