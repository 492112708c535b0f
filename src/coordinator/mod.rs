//! The coordinator: the one entry point of writes and reads.
//!
//! ```text
//!   mod.rs     Coordinator: write, count, status, faults
//!   split.rs   how a batch is cut over the live nodes (load balancing)
//! ```
//!
//! A write ([`Coordinator::write`]) opens the batch in the replication log
//! (which gives it its versions, see [`crate::version`]), hands its record to
//! the WAL in durable mode, and hands its chunks to the live nodes
//! ([`Node::take`], in memory), each of which puts its chunk in the
//! replication log. It succeeds once every chunk is taken and the record is
//! on disk; a batch that fails is settled whole in the log, so it never
//! blocks others.
//!
//! A read ([`Coordinator::count`]) is answered by the master (or a replica
//! when the master cannot answer in time) once the node has applied every
//! batch acknowledged before the read, and every batch any earlier read
//! saw: counts are linearizable with batches as single operations.

mod split;

use crate::backend::{Accepted, Backend, BackendError, NodeStatus, Unavailable};
use crate::batch::Item;
use crate::cluster::{Cluster, Fault, FaultError, Roster};
use crate::node::{Node, NodeId, ROOM_WAIT, Refusal};
use crate::replication::{Piece, ReplicationLog};
use crate::store::Entry;
use crate::tenants::{Pinned, Tenants};
use crate::version::{Version, Versions};
use crate::wal::{Pending, Wal, WalError, record};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a chunk waits, in all, for stalled nodes (they answer nothing)
/// to take it; then only a live node that takes it at once will do, or the
/// write fails.
pub const TAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// How often a chunk waiting for a stalled node offers itself again.
const STALL_POLL: Duration = Duration::from_millis(5);
/// How long one node may take to reach a read's watermark before another
/// node is asked.
pub const COUNT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a read may wait in all: long enough for a write that stalls the
/// watermark to resolve (acknowledged, or settled after its retries).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/nodes` waits, in all, for the live nodes to apply every
/// acknowledged write before it reports their items. Replicas apply in the
/// background and may linger (`APPLY_LINGER`) between passes; waiting
/// makes `/nodes` show what was acknowledged before it was asked, while a
/// node that cannot catch up in time is reported as it is.
pub const NODES_CATCH_UP: Duration = Duration::from_millis(1_000);

/// A batch on its way to the nodes.
struct Batch<'a> {
    versions: Versions,
    entries: &'a [Entry],
    /// When a full log stops being waited on.
    room_by: Instant,
}

/// Settles a batch in the replication log unless its pieces were all
/// stored, so no failure path (an error, a panic) can leave it blocking
/// later batches, or visible in part.
struct OpenBatch<'a> {
    log: &'a ReplicationLog,
    versions: Versions,
    entries: Arc<[Entry]>,
    stored: bool,
}

impl Drop for OpenBatch<'_> {
    fn drop(&mut self) {
        if !self.stored && self.versions.len > 0 {
            self.log.settle(self.versions.first, &self.entries);
        }
    }
}

pub struct Coordinator {
    cluster: Arc<Cluster>,
    /// The log, in durable mode; the coordinator is its one owner.
    wal: Option<Wal>,
    /// Items each node took directly from the coordinator, by node id.
    received: Vec<AtomicU64>,
    turn: split::Turn,
    /// The highest version of any acknowledged write.
    acknowledged: AtomicU64,
    /// The highest watermark any read was answered at.
    served: AtomicU64,
}

impl Coordinator {
    pub fn new(cluster: Arc<Cluster>, wal: Option<Wal>) -> Self {
        let resolved = cluster.log().resolved().get();
        Coordinator {
            received: (0..cluster.size()).map(|_| AtomicU64::new(0)).collect(),
            cluster,
            wal,
            turn: split::Turn::default(),
            acknowledged: AtomicU64::new(resolved),
            served: AtomicU64::new(resolved),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    fn tenants(&self) -> &Tenants {
        self.cluster.tenants()
    }

    /// Injects a fault into node `id` (`--fault-injection`).
    fn inject(&self, id: usize, fault: Fault) -> Result<(), FaultError> {
        self.cluster.inject(id, fault, self.wal.as_ref())
    }

    /// Stores a validated batch: orders it, logs it (durable mode) while the
    /// nodes store it, and succeeds once both are done.
    fn store_batch(&self, items: &[Item<'_>]) -> Result<Accepted, BackendError> {
        if self.cluster.roster().live().next().is_none() {
            return Err(Unavailable("no node is alive to take the items").into());
        }
        let Pinned { ids, distinct } = self
            .tenants()
            .pin_all(items.iter().map(|item| item.tenant.as_ref()));
        let log = self.cluster.log();
        let versions = log.open(items.len() as u64, distinct)?;
        let entries: Arc<[Entry]> = items
            .iter()
            .zip(ids)
            .enumerate()
            .map(|(index, (item, tenant))| Entry {
                id: item.id,
                version: versions.nth(index),
                tenant,
            })
            .collect();
        let mut batch = OpenBatch {
            log,
            versions,
            entries: entries.clone(),
            stored: false,
        };
        // The log write and the nodes' stores run at the same time.
        let logged = self.wal.as_ref().map(|wal| self.log(wal, &entries));
        let stored = self.store(versions, &entries);
        batch.stored = stored.is_ok();
        if let Some(pending) = logged {
            pending?.wait()?;
        }
        stored?;
        self.acknowledged
            .fetch_max(versions.last().get(), Ordering::SeqCst);
        Ok(Accepted {
            items: entries.len(),
        })
    }

    /// Hands the batch's log record to the WAL writer. A huge batch (a
    /// raised --max-body-bytes) becomes several records, each far below
    /// `record::MAX_PAYLOAD_BYTES`; versions keep their order.
    fn log(&self, wal: &Wal, entries: &[Entry]) -> Result<Pending, WalError> {
        let tenants = self.tenants();
        let mut bytes = Vec::with_capacity(64 + entries.len() * 20);
        for part in entries.chunks(record::MAX_ENTRIES_PER_RECORD) {
            record::encode_batch(&mut bytes, part, |tenant| {
                tenants.name(tenant).unwrap_or_default()
            });
        }
        wal.append(bytes)
    }

    /// Stores a batch: each writable node takes one contiguous chunk (see
    /// [`split`]). Every chunk is offered at once; a chunk whose node is
    /// dead goes to another live node at once. A chunk waits for stalled
    /// nodes [`TAKE_TIMEOUT`] in all, then goes to any other live node that
    /// takes it at once. The batch waits for room in a full log
    /// [`ROOM_WAIT`] in all.
    fn store(&self, versions: Versions, entries: &[Entry]) -> Result<(), Unavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut roster = self.cluster.roster();
        let targets = writable(&roster);
        if targets.is_empty() {
            return Err(Unavailable("no node is alive to take the items"));
        }
        let first = self.turn.next(roster.epoch(), targets.len());
        let started = Instant::now();
        let mut pending = split::jobs(entries.len(), &targets, first, started + TAKE_TIMEOUT);
        let batch = Batch {
            versions,
            entries,
            room_by: started + ROOM_WAIT,
        };
        loop {
            let mut waiting = Vec::new();
            for job in pending {
                waiting.extend(self.place(&mut roster, job, &batch)?);
            }
            let Some(soonest) = waiting.iter().map(|job| job.deadline).min() else {
                return Ok(());
            };
            thread::sleep(STALL_POLL.min(soonest.saturating_duration_since(Instant::now())));
            pending = waiting;
            roster = self.cluster.roster();
        }
    }

    /// Offers a chunk to its node, and to other live nodes while nodes
    /// refuse it for good. Gives the job back if it waits for a stalled
    /// node (until its deadline).
    fn place(
        &self,
        roster: &mut Arc<Roster>,
        mut job: split::Job,
        batch: &Batch<'_>,
    ) -> Result<Option<split::Job>, Unavailable> {
        loop {
            match self.offer(roster, &job, batch) {
                Ok(()) => return Ok(None),
                // One log for all nodes: no other node has room either.
                Err(Refusal::Full) => {
                    return Err(Unavailable(
                        "every node is far behind in replication; try again",
                    ));
                }
                Err(Refusal::Busy) if Instant::now() < job.deadline => return Ok(Some(job)),
                // The deadline stays: with every node stalled, the write
                // fails after one TAKE_TIMEOUT, not one per node.
                Err(Refusal::Stopped | Refusal::Busy) => {
                    job.tried.push(job.node);
                    *roster = self.cluster.roster();
                    job.node = reassign(roster, &job.tried)?;
                }
            }
        }
    }

    /// Hands a job's chunk to its node; counts it as the node's if taken.
    fn offer(&self, roster: &Roster, job: &split::Job, batch: &Batch<'_>) -> Result<(), Refusal> {
        let node = roster.node(job.node).ok_or(Refusal::Stopped)?;
        let chunk = || {
            vec![Piece {
                batch: batch.versions.first,
                offset: job.range.start as u64,
                entries: batch.entries[job.range.clone()].to_vec(),
            }]
        };
        node.take(chunk, batch.room_by)?;
        self.received[job.node.0].fetch_add(job.range.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a tenant's items, seeing every write acknowledged before this
    /// call and whatever any earlier read saw, and never part of a batch.
    fn read_count(&self, tenant: &str) -> Result<u64, Unavailable> {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            let roster = self.cluster.roster();
            if roster.master().is_none() {
                return Err(Unavailable("no master is alive to answer"));
            }
            let tag = self.tenants().lookup(tenant);
            let target = Version::new(
                self.acknowledged
                    .load(Ordering::SeqCst)
                    .max(self.served.load(Ordering::SeqCst)),
            );
            for node in self.readers(&roster) {
                let until = deadline.min(Instant::now() + COUNT_TIMEOUT);
                let Some((count, watermark)) =
                    node.view().count_at(tag.map(|t| t.id), target, until)
                else {
                    continue;
                };
                if tag.is_some_and(|tag| !self.tenants().is_current(tag)) {
                    // The name was forgotten (no items) and its id reused
                    // meanwhile: look it up again.
                    break;
                }
                // Loaded first: most reads see nothing newer, and a write
                // to this shared word is what concurrent reads contend on.
                if watermark.get() > self.served.load(Ordering::SeqCst) {
                    self.served.fetch_max(watermark.get(), Ordering::SeqCst);
                }
                return Ok(count);
            }
            if Instant::now() >= deadline {
                return Err(Unavailable("no live node answered the count in time"));
            }
        }
    }

    /// The nodes a read asks, in order: the master first, unless it is
    /// stalled; nodes that fell behind the log last.
    ///
    /// A master that can answer is all almost every read needs, so the
    /// others are ranked only if it does not answer: each rank takes the
    /// replication log's lock, which every write takes too.
    fn readers<'r>(&self, roster: &'r Roster) -> impl Iterator<Item = &'r Node> {
        let master = roster
            .master()
            .filter(|master| master.is_attached() && !master.is_stalled());
        let skip = master.map(Node::id);
        let others = move || {
            let mut ranked: Vec<_> = roster
                .live()
                .filter(|node| Some(node.id()) != skip)
                .map(|node| {
                    let behind = !node.is_attached();
                    let not_master = Some(node.id()) != roster.master_id();
                    ((behind, node.is_stalled(), not_master), node)
                })
                .collect();
            ranked.sort_by_key(|(rank, _)| *rank);
            ranked.into_iter().map(|(_, node)| node)
        };
        master
            .into_iter()
            .chain(std::iter::once_with(others).flatten())
    }

    /// The master, if one serves.
    pub fn master(&self) -> Option<NodeId> {
        self.cluster.roster().master_id()
    }

    /// Waits (at most [`NODES_CATCH_UP`]) until every live node that reads
    /// the log and is not stalled has applied every acknowledged write.
    fn catch_up(&self) {
        let acknowledged = Version::new(self.acknowledged.load(Ordering::SeqCst));
        let deadline = Instant::now() + NODES_CATCH_UP;
        let roster = self.cluster.roster();
        for node in roster
            .live()
            .filter(|node| node.is_attached() && !node.is_stalled())
        {
            // A node that does not catch up in time is reported as it is.
            let _ = node.view().count_at(None, acknowledged, deadline);
        }
    }

    /// Every node, in id order, for `/nodes` and `/metrics`.
    fn status(&self) -> Vec<NodeStatus> {
        self.cluster
            .status()
            .into_iter()
            .map(|state| NodeStatus {
                id: state.id.0,
                role: state.role,
                alive: state.alive,
                addr: state.addr,
                items: state.items,
                received: self.received[state.id.0].load(Ordering::Relaxed),
                stalled: state.stalled,
                lag: state.lag,
            })
            .collect()
    }
}

impl Backend for Coordinator {
    fn write(&self, items: &[Item<'_>]) -> Result<Accepted, BackendError> {
        self.store_batch(items)
    }

    fn count(&self, tenant: &str) -> Result<u64, BackendError> {
        Ok(self.read_count(tenant)?)
    }

    /// A master serves, and the log (durable mode) can be written: a POST
    /// cannot be answered 200 while it cannot.
    fn health(&self) -> Result<usize, BackendError> {
        if let Some(failure) = self.wal.as_ref().and_then(Wal::failure) {
            return Err(BackendError::LogDown(failure));
        }
        self.master()
            .map(|id| id.0)
            .ok_or(Unavailable("no master is alive").into())
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.catch_up();
        self.status()
    }

    fn render_metrics(&self, out: &mut String) {
        let cluster = &self.cluster;
        let state = crate::metrics::ClusterState {
            nodes: self.status(),
            master_changes: cluster.master_changes(),
            log_retained_bytes: cluster.log().retained_bytes(),
            tenants: cluster.tenants().live(),
            wal: self.wal.as_ref().map(Wal::stats),
        };
        crate::metrics::render_cluster(out, &state);
    }

    fn fault(&self, id: usize, fault: Fault) -> Result<(), FaultError> {
        self.inject(id, fault)
    }
}

/// Live nodes that are not stalled, or every live node if all are.
fn writable(roster: &Roster) -> Vec<NodeId> {
    let answering: Vec<NodeId> = roster
        .live()
        .filter(|node| !node.is_stalled())
        .map(Node::id)
        .collect();
    if answering.is_empty() {
        roster.live().map(Node::id).collect()
    } else {
        answering
    }
}

/// A live node that has not refused the chunk yet, preferring those not
/// stalled; none left, the write fails.
fn reassign(roster: &Roster, tried: &[NodeId]) -> Result<NodeId, Unavailable> {
    writable(roster)
        .into_iter()
        .chain(roster.live().map(Node::id))
        .find(|id| !tried.contains(id))
        .ok_or(Unavailable("no live node took the items in time"))
}
