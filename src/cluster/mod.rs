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
        // `--nodes` checks this too; the log's attached mask needs it.
        if count > crate::config::MAX_NODES {
            return Err(NodeError::TooMany { asked: count });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Fault;
    use crate::testing::{InProcess, wait_until};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    fn live_ids(cluster: &Cluster) -> Vec<usize> {
        cluster.roster().live().map(|n| n.id().0).collect()
    }

    #[test]
    fn more_nodes_than_the_log_has_bits_for_are_refused() {
        let tenants = Arc::new(Tenants::new());
        let (log, detached) = ReplicationLog::new(crate::version::Version::ZERO, tenants.clone());
        let asked = crate::config::MAX_NODES + 1;
        let started = Cluster::start(asked, 0, Arc::new(log), detached, tenants, Store::new());
        assert!(matches!(started, Err(NodeError::TooMany { asked: a }) if a == asked));
    }

    #[test]
    fn a_crash_publishes_the_new_master_with_the_death() {
        let service = InProcess::start(3);
        assert!(service.write(&[(1, "a"), (2, "a")]));
        let cluster = service.cluster().clone();
        // Watch the roster from another thread while the master dies: at no
        // instant may it show live nodes without a live master.
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicU64::new(0));
        let watcher = {
            let (cluster, stop, bad) = (cluster.clone(), stop.clone(), bad.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let roster = cluster.roster();
                    if roster.live().next().is_some() && roster.master().is_none() {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        for _ in 0..5 {
            let master = cluster.roster().master_id().map(|id| id.0);
            let master = master.unwrap_or_else(|| panic!("a master serves"));
            cluster.inject(master, Fault::Crash, None).unwrap();
            cluster.inject(master, Fault::Restart, None).unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        watcher.join().unwrap();
        assert_eq!(bad.load(Ordering::SeqCst), 0);
        assert_eq!(live_ids(&cluster), vec![0, 1, 2]);
        assert_eq!(service.count("a"), 2);
        assert_eq!(cluster.master_changes().count, 5);
    }

    #[test]
    fn the_master_elected_is_a_node_that_applied_the_most() {
        let service = InProcess::start(3);
        let cluster = service.cluster().clone();
        // Node 1 stalls: it applies nothing while writes go on. Long
        // enough to outlast the test on a busy machine (a stall that ended
        // would let node 1 catch up and win the tie); ended below.
        cluster
            .inject(1, Fault::Stall(Duration::from_secs(30)), None)
            .unwrap();
        for id in 0..50 {
            assert!(service.write(&[(id, "m")]));
        }
        wait_until("node 2 applied every write", || {
            cluster
                .roster()
                .node(NodeId(2))
                .is_some_and(|n| n.view().watermark() >= cluster.log().resolved())
        });
        cluster.inject(0, Fault::Crash, None).unwrap();
        assert_eq!(cluster.roster().master_id(), Some(NodeId(2)));
        assert_eq!(service.count("m"), 50);
        cluster
            .inject(1, Fault::Stall(Duration::ZERO), None)
            .unwrap();
    }

    #[test]
    fn a_stalled_node_is_not_elected_even_when_no_other_applied_more() {
        let service = InProcess::start(3);
        let cluster = service.cluster().clone();
        for id in 0..10 {
            assert!(service.write(&[(id, "m")]));
        }
        wait_until("nodes 1 and 2 applied every write", || {
            [1, 2].iter().all(|&id| {
                cluster
                    .roster()
                    .node(NodeId(id))
                    .is_some_and(|n| n.view().watermark() >= cluster.log().resolved())
            })
        });
        // Nodes 1 and 2 have applied the same; node 1 stalls, node 0 dies.
        cluster
            .inject(1, Fault::Stall(Duration::from_secs(3)), None)
            .unwrap();
        cluster.inject(0, Fault::Crash, None).unwrap();
        assert_eq!(cluster.roster().master_id(), Some(NodeId(2)));
        assert_eq!(service.count("m"), 10);
    }

    #[test]
    fn a_restarted_node_holds_everything_and_with_every_node_dead_nothing_serves() {
        let service = InProcess::start(2);
        let cluster = service.cluster().clone();
        let pairs: Vec<(i64, &str)> = (0..1000).map(|id| (id, "r")).collect();
        assert!(service.write(&pairs));
        // An acknowledged write may not be applied yet; the copy is what
        // node 0 has applied.
        wait_until("node 0 applied every write", || {
            cluster
                .roster()
                .node(NodeId(0))
                .is_some_and(|n| n.store().len() == 1000)
        });
        cluster.inject(1, Fault::Crash, None).unwrap();
        cluster.inject(1, Fault::Restart, None).unwrap();
        let node = cluster.roster().node(NodeId(1)).cloned().unwrap();
        assert_eq!(node.store().len(), 1000, "copied before it serves");
        for id in [0, 1] {
            cluster.inject(id, Fault::Crash, None).unwrap();
        }
        assert!(cluster.roster().master().is_none());
        assert!(crate::backend::Backend::count(&service.coordinator, "r").is_err());
        assert!(!service.write(&[(1, "r")]));
        cluster.inject(0, Fault::Restart, None).unwrap();
        assert_eq!(service.count("r"), 0, "memory only: the data died");
        assert!(service.write(&[(1, "r")]));
        assert_eq!(service.count("r"), 1);
    }

    #[test]
    fn faults_check_ids_and_states() {
        let service = InProcess::start(2);
        let cluster = service.cluster();
        assert_eq!(
            cluster.inject(2, Fault::Crash, None).unwrap_err().status(),
            404
        );
        assert_eq!(
            cluster
                .inject(0, Fault::Restart, None)
                .unwrap_err()
                .status(),
            409
        );
        cluster.inject(0, Fault::Crash, None).unwrap();
        for fault in [
            Fault::Crash,
            Fault::Disconnect,
            Fault::Stall(Duration::from_millis(1)),
        ] {
            assert_eq!(cluster.inject(0, fault, None).unwrap_err().status(), 409);
        }
    }

    #[test]
    fn a_disconnected_node_moves_and_still_takes_writes() {
        let service = InProcess::start(2);
        let cluster = service.cluster().clone();
        let before = cluster.roster().node(NodeId(0)).and_then(Node::addr);
        cluster.inject(0, Fault::Disconnect, None).unwrap();
        let after = cluster.roster().node(NodeId(0)).and_then(Node::addr);
        assert!(after.is_some() && after != before);
        for id in 0..10 {
            assert!(service.write(&[(id, "d"), (id + 100, "d")]));
        }
        assert_eq!(service.count("d"), 20);
    }

    #[test]
    fn unused_tenant_names_are_forgotten() {
        let service = InProcess::start(2);
        let cluster = service.cluster().clone();
        for round in 0..200 {
            let tenant = format!("t{round}");
            assert!(service.write(&[(7, tenant.as_str())]));
        }
        assert_eq!(service.count("t199"), 1);
        // A write's names stay pinned until every node has applied it, a
        // moment after its count shows.
        wait_until("a sweep leaves only the tenant of item 7", || {
            cluster.sweep_tenants();
            cluster.tenants().live() == 1
        });
        assert_eq!(service.count("t199"), 1);
        assert_eq!(service.count("t3"), 0);
    }
}
