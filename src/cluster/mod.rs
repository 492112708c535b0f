//! Membership: which nodes live, where they listen, which one is master.
//!
//! ```text
//!   mod.rs       the Cluster and its Roster (who lives, who is master, at one instant)
//!   election.rs  which live node becomes master
//!   faults.rs    crash, restart, disconnect, stall
//!   keeper.rs    a background thread: re-copies detached nodes, forgets unused tenants
//! ```
//!
//! Every change of membership builds a new [`Roster`] and publishes it at
//! once, with the master already elected: at every instant a reader sees
//! either a live master or no live node at all.

mod election;
mod faults;
mod keeper;

pub use faults::{Fault, FaultError};

use crate::node::{self, Node, NodeError, NodeId, NodeThreads, PortChoice};
use crate::replication::ReplicationLog;
use crate::store::Store;
use crate::tenants::Tenants;
use keeper::Keeper;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::sync::Arc;
use std::time::SystemTime;

/// A node's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Replica,
}

/// Who lives and who is master, at one instant.
pub struct Roster {
    nodes: Vec<Option<Node>>,
    master: Option<NodeId>,
    /// Bumped at every change of membership.
    epoch: u64,
}

impl Roster {
    pub fn master(&self) -> Option<&Node> {
        self.node(self.master?)
    }

    pub fn master_id(&self) -> Option<NodeId> {
        self.master
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0)?.as_ref()
    }

    /// Every live node, in id order.
    pub fn live(&self) -> impl Iterator<Item = &Node> + Clone {
        self.nodes.iter().flatten()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// What the cluster knows of one node, for `/nodes` and `/metrics`.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub id: NodeId,
    pub role: Role,
    pub alive: bool,
    pub stalled: bool,
    pub addr: Option<String>,
    pub items: u64,
    /// Versions resolved in the replication log that the node has not
    /// applied yet (about that many items).
    pub lag: u64,
}

/// When the master last changed, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MasterChanges {
    pub count: u64,
    pub last: Option<SystemTime>,
}

pub struct Cluster {
    /// The threads of each live node, by id.
    threads: Vec<Mutex<Option<NodeThreads>>>,
    roster: RwLock<Arc<Roster>>,
    log: Arc<ReplicationLog>,
    tenants: Arc<Tenants>,
    node_port: u16,
    /// One change of membership at a time.
    changes: Mutex<()>,
    master_changes: Mutex<MasterChanges>,
    keeper: Mutex<Option<Keeper>>,
}

impl Cluster {
    /// Starts `count` nodes on ports from `node_port` (0: any), each holding
    /// a copy of `initial` (everything up to the log's resolved version);
    /// node 0 is master.
    pub fn start(
        count: usize,
        node_port: u16,
        log: Arc<ReplicationLog>,
        detached: crossbeam_channel::Receiver<NodeId>,
        tenants: Arc<Tenants>,
        initial: Store,
    ) -> Result<Arc<Cluster>, NodeError> {
        let watermark = log.resolved();
        let mut nodes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut next_port = node_port;
        let mut initial = Some(initial);
        for index in 0..count {
            let id = NodeId(index);
            let choice = if node_port == 0 {
                PortChoice::Any
            } else {
                PortChoice::From(next_port)
            };
            let listener = node::bind(choice, None)?;
            let port = listener.local_addr().map_err(NodeError::Bind)?.port();
            next_port = port.saturating_add(1);
            // The last node takes the recovered store itself; the others copy it.
            let store = match initial.as_ref() {
                Some(store) if index + 1 < count => store.copy(),
                _ => initial.take().unwrap_or_default(),
            };
            let node = Node::new(id, store, watermark, log.clone(), tenants.clone());
            log.join_at_head(id);
            threads.push(Mutex::new(Some(node.start(listener)?)));
            nodes.push(Some(node));
        }
        let cluster = Arc::new(Cluster {
            threads,
            roster: RwLock::new(Arc::new(Roster {
                master: (count > 0).then_some(NodeId(0)),
                nodes,
                epoch: 0,
            })),
            log,
            tenants,
            node_port,
            changes: Mutex::new(()),
            master_changes: Mutex::new(MasterChanges::default()),
            keeper: Mutex::new(None),
        });
        let keeper = Keeper::start(&cluster, detached).map_err(NodeError::Spawn)?;
        *cluster.keeper.lock() = Some(keeper);
        Ok(cluster)
    }

    /// Who lives and who is master, now.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster.read().clone()
    }

    pub fn log(&self) -> &Arc<ReplicationLog> {
        &self.log
    }

    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// How many node ids there are (live or not).
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    pub fn master_changes(&self) -> MasterChanges {
        *self.master_changes.lock()
    }

    /// Every node, in id order.
    pub fn status(&self) -> Vec<NodeState> {
        let roster = self.roster();
        let resolved = self.log.resolved();
        (0..self.size())
            .map(|index| {
                let id = NodeId(index);
                let node = roster.node(id);
                NodeState {
                    id,
                    role: if roster.master == Some(id) {
                        Role::Master
                    } else {
                        Role::Replica
                    },
                    alive: node.is_some(),
                    stalled: node.is_some_and(Node::is_stalled),
                    addr: node.and_then(Node::addr).map(|addr| addr.to_string()),
                    items: node.map_or(0, |node| node.store().len()),
                    lag: node.map_or(0, |node| {
                        resolved.get().saturating_sub(node.view().watermark().get())
                    }),
                }
            })
            .collect()
    }

    /// Publishes a new roster: `nodes` (by id) with the master elected
    /// among them, keeping the current master if it still lives.
    fn publish(&self, nodes: Vec<Option<Node>>, died: Option<NodeId>) {
        let mut roster = self.roster.write();
        let current = roster
            .master
            .filter(|id| nodes.get(id.0).is_some_and(Option::is_some));
        let master = current.or_else(|| election::choose(&nodes));
        if master != roster.master {
            self.note_master_change(roster.master, master, died);
        }
        *roster = Arc::new(Roster {
            nodes,
            master,
            epoch: roster.epoch + 1,
        });
    }

    /// Elects again among the live nodes (the master fell behind).
    fn reelect(&self) {
        let mut roster = self.roster.write();
        let master = election::choose(&roster.nodes);
        if master != roster.master {
            self.note_master_change(roster.master, master, None);
            *roster = Arc::new(Roster {
                nodes: roster.nodes.clone(),
                master,
                epoch: roster.epoch + 1,
            });
        }
    }

    fn note_master_change(&self, old: Option<NodeId>, new: Option<NodeId>, died: Option<NodeId>) {
        {
            let mut changes = self.master_changes.lock();
            changes.count += 1;
            changes.last = Some(SystemTime::now());
        }
        match (old, new, died) {
            (_, Some(new), Some(dead)) => {
                crate::log!("master changed: {dead} died, {new} is master")
            }
            (_, None, Some(dead)) => crate::log!("master changed: {dead} died, no node is alive"),
            (Some(old), Some(new), None) => {
                crate::log!("master changed: {old} fell behind, {new} is master")
            }
            (_, Some(new), None) => crate::log!("master changed: {new} is master"),
            (_, None, None) => crate::log!("master changed: no node is alive"),
        }
    }

    fn port_choice(&self) -> PortChoice {
        match self.node_port {
            0 => PortChoice::Any,
            port => PortChoice::From(port),
        }
    }

    /// Stops every node (shutdown), after the keeper.
    pub fn stop(&self) {
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.stop();
        }
        let _change = self.changes.lock();
        let roster = self.roster();
        *self.roster.write() = Arc::new(Roster {
            nodes: vec![None; self.size()],
            master: None,
            epoch: roster.epoch + 1,
        });
        for (node, threads) in roster.nodes.iter().zip(&self.threads) {
            if let (Some(node), Some(threads)) = (node, threads.lock().take()) {
                threads.stop(node);
            }
        }
    }
}
