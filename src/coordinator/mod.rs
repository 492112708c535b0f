//! The coordinator: the one entry point of writes and reads.
//!
//! ```text
//!   mod.rs     Coordinator: write, count, status, faults
//!   split.rs   how a batch is cut over the live nodes (load balancing)
//!   outbox.rs  pieces bound for one node share a frame and a round trip
//!   pool.rs    authenticated node connections with deadlines
//! ```
//!
//! A write ([`Coordinator::write`]) opens the batch in the replication log
//! (which gives it its versions, see [`crate::version`]), hands its record to
//! the WAL in durable mode, and sends its pieces to the live nodes, each of
//! which puts its piece in the replication log and acknowledges. It
//! succeeds once every piece is acknowledged and the record is on disk; a
//! batch that fails is settled whole in the log, so it never blocks others.
//!
//! A read ([`Coordinator::count`]) is answered by the master (or a replica
//! when the master cannot answer in time) once the node has applied every
//! batch acknowledged before the read, and every batch any earlier read
//! saw: counts are linearizable with batches as single operations.

mod outbox;
pub mod pool;
mod split;

use crate::backend::{Accepted, Backend, BackendError, NodeStatus, Unavailable};
use crate::batch::Item;
use crate::cluster::{Cluster, Fault, FaultError};
use crate::node::{Node, NodeId};
use crate::protocol::{self, Response};
use crate::replication::ReplicationLog;
use crate::store::Entry;
use crate::tenants::{Pinned, Tenants};
use crate::version::{Version, Versions};
use crate::wal::{Pending, Wal, WalError, record};
use outbox::{Flight, Outbox, Outcome, Waiter, Wake};
use parking_lot::Mutex;
use pool::Pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a node has to acknowledge a frame before its pieces go to
/// another node, plus [`ACK_TIME_PER_MIB`] for each MiB in the frame.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(300);
/// When every live node missed [`ACK_TIMEOUT`] for a piece, it is tried once
/// more with this longer deadline (a loaded machine, not a dead cluster).
pub const PATIENT_ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// Extra time a node gets per MiB of frame, so a big frame that is still
/// arriving is not sent to a second node meanwhile.
pub const ACK_TIME_PER_MIB: Duration = Duration::from_millis(25);
/// Frames a request thread sends on behalf of others once its own parcels
/// are answered, before it hands the outbox over: sending at once from a
/// thread that is awake beats waking another, but its own client waits.
pub const MAX_FRAMES_LED_FOR_OTHERS: usize = 8;
/// A node that did not answer in time is left out of new writes this long.
pub const BUSY_BACKOFF: Duration = Duration::from_millis(500);
/// How long one node may take to reach a read's watermark before another
/// node is asked.
pub const COUNT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a read may wait in all: long enough for a write that stalls the
/// watermark to resolve (acknowledged, or settled after its retries).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The coordinator's side of one node: its outbox, its connections, and
/// what it has seen of it.
#[derive(Default)]
struct Lane {
    outbox: Outbox,
    pool: Pool,
    /// Items the node acknowledged directly from the coordinator.
    received: AtomicU64,
    busy_until: Mutex<Option<Instant>>,
}

impl Lane {
    /// The node missed a deadline recently.
    fn is_busy(&self) -> bool {
        self.busy_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    fn mark_busy(&self) {
        *self.busy_until.lock() = Some(Instant::now() + BUSY_BACKOFF);
    }

    fn mark_answering(&self) {
        *self.busy_until.lock() = None;
    }
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
    lanes: Vec<Lane>,
    turn: split::Turn,
    /// The highest version of any acknowledged write.
    acknowledged: AtomicU64,
    /// The highest watermark any read was answered at.
    served: AtomicU64,
    next_request: AtomicU64,
}

impl Coordinator {
    pub fn new(cluster: Arc<Cluster>, wal: Option<Wal>) -> Self {
        let resolved = cluster.log().resolved().get();
        Coordinator {
            lanes: (0..cluster.size()).map(|_| Lane::default()).collect(),
            cluster,
            wal,
            turn: split::Turn::default(),
            acknowledged: AtomicU64::new(resolved),
            served: AtomicU64::new(resolved),
            next_request: AtomicU64::new(1),
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
        let result = self.cluster.inject(id, fault, self.wal.as_ref());
        if let Some(lane) = self.lanes.get(id) {
            // Its connections point at a dead or moved node.
            lane.pool.clear();
            lane.mark_answering();
        }
        result
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
    /// [`split`]); a chunk whose node is dead or misses its deadline goes
    /// to another node.
    fn store(&self, versions: Versions, entries: &Arc<[Entry]>) -> Result<(), Unavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let roster = self.cluster.roster();
        let targets = self.writable(&roster);
        if targets.is_empty() {
            return Err(Unavailable("no node is alive to take the items"));
        }
        let first = self.turn.next(roster.epoch(), targets.len());
        let mut jobs = split::jobs(versions, entries, &targets, first);
        while !jobs.is_empty() {
            let outcomes = self.deliver(&jobs);
            let mut failed = Vec::new();
            for (mut job, outcome) in jobs.into_iter().zip(outcomes) {
                if outcome != Outcome::Stored {
                    job.tried.push(job.node);
                    failed.push(job);
                }
            }
            jobs = failed
                .into_iter()
                .map(|job| self.reassign(job))
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }

    /// Live nodes that answered recently, or every live node if none did.
    fn writable(&self, roster: &crate::cluster::Roster) -> Vec<NodeId> {
        let answering: Vec<NodeId> = roster
            .live()
            .filter(|node| !node.is_stalled() && !self.lanes[node.id().0].is_busy())
            .map(Node::id)
            .collect();
        if answering.is_empty() {
            roster.live().map(Node::id).collect()
        } else {
            answering
        }
    }

    /// Gives a failed job to a live node that has not failed it yet; once
    /// every node failed it, one patient try; then the write fails.
    fn reassign(&self, mut job: split::Job) -> Result<split::Job, Unavailable> {
        let roster = self.cluster.roster();
        let candidates = self.writable(&roster);
        let live: Vec<NodeId> = roster.live().map(Node::id).collect();
        if let Some(&next) = candidates
            .iter()
            .chain(&live)
            .find(|id| !job.tried.contains(id))
        {
            job.node = next;
            return Ok(job);
        }
        match (candidates.first(), job.parcel.patient) {
            (Some(&first), false) => {
                job.parcel.patient = true;
                job.node = first;
                Ok(job)
            }
            _ => Err(Unavailable("no live node acknowledged the items in time")),
        }
    }

    /// Sends every job's parcel through its node's outbox and waits for the
    /// outcomes, leading the outboxes handed to this request meanwhile.
    fn deliver(&self, jobs: &[split::Job]) -> Vec<Outcome> {
        let waiter = Arc::new(Waiter::new(jobs.len()));
        let mut lead: Vec<NodeId> = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            if self.lanes[job.node.0]
                .outbox
                .push(job.parcel.clone(), &waiter, index)
            {
                lead.push(job.node);
            }
        }
        // Frames this request led after its own parcels were answered.
        let mut extra_frames = 0;
        loop {
            let mut flights = Vec::new();
            while let Some(node) = lead.pop() {
                match self.take_off(node, &waiter, true) {
                    Ok(flight) => flights.push(flight),
                    // Each failed take-off used up queued parcels, so
                    // leading again ends.
                    Err(LeadAgain(true)) => lead.push(node),
                    Err(LeadAgain(false)) => {}
                }
            }
            for flight in flights {
                let keep = extra_frames < MAX_FRAMES_LED_FOR_OTHERS;
                if let Some(node) = self.land(flight, &waiter, keep) {
                    if waiter.is_done() {
                        extra_frames += 1;
                    }
                    lead.push(node);
                }
            }
            if !lead.is_empty() {
                continue;
            }
            match waiter.wait() {
                Wake::Done(outcomes) => return outcomes,
                Wake::Lead(nodes) => lead = nodes,
            }
        }
    }

    /// Sends the queued parcels of `node`'s outbox as one frame. If the
    /// frame could not go out, its parcels failed, and the error says
    /// whether this request leads the outbox's next frame.
    fn take_off(&self, node: NodeId, me: &Arc<Waiter>, keep: bool) -> Result<Flight, LeadAgain> {
        let lane = &self.lanes[node.0];
        let group = lane.outbox.take_group();
        let (entries, patient) = outbox::measure(&group);
        let deadline = Instant::now() + ack_timeout(entries, patient);
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(protocol::EMPTY_STORE_BYTES + entries * 20 + 64);
        outbox::encode(&mut frame, request_id, &group);
        let target = self.cluster.roster().node(node).cloned();
        let sent = target
            .ok_or(pool::CallError::NodeGone)
            .and_then(|target| self.send(lane, &target, &frame, deadline));
        match sent {
            Ok(connection) => Ok(Flight::new(node, group, connection, request_id, deadline)),
            Err(error) => {
                self.note_failure(lane, &error);
                outbox::complete(
                    group,
                    Outcome::Failed {
                        timeout: error.is_timeout(),
                    },
                );
                Err(LeadAgain(lane.outbox.hand_over(node, me, keep)))
            }
        }
    }

    /// Writes a frame to the node, retrying once on a fresh connection
    /// when an idle pooled one turns out to be cut.
    fn send(
        &self,
        lane: &Lane,
        target: &Node,
        frame: &[u8],
        deadline: Instant,
    ) -> Result<pool::Connection, pool::CallError> {
        let mut connection = lane.pool.take(target)?;
        match connection.send(frame, deadline) {
            Ok(()) => Ok(connection),
            Err(_) if connection.reused => {
                let mut fresh = pool::Connection::open(target)?;
                fresh.send(frame, deadline)?;
                Ok(fresh)
            }
            Err(error) => Err(error),
        }
    }

    /// Takes the node's answer to a flight and tells its parcels; returns
    /// the node again if this request must lead its next frame.
    fn land(&self, mut flight: Flight, me: &Arc<Waiter>, keep: bool) -> Option<NodeId> {
        let node = flight.node;
        let lane = &self.lanes[node.0];
        let entries = flight.entries() as u64;
        let answer = flight
            .connection
            .receive(flight.request_id, flight.deadline);
        match answer {
            Ok(Response::Stored { .. }) => {
                lane.received.fetch_add(entries, Ordering::Relaxed);
                lane.mark_answering();
                lane.pool.give_back(flight.land(Outcome::Stored));
            }
            Ok(_) => {
                // Refused: the node's replication log is full for now.
                lane.pool.give_back(flight.land(Outcome::Refused));
            }
            Err(error) => {
                self.note_failure(lane, &error);
                drop(flight.land(Outcome::Failed {
                    timeout: error.is_timeout(),
                }));
            }
        }
        lane.outbox.hand_over(node, me, keep).then_some(node)
    }

    fn note_failure(&self, lane: &Lane, error: &pool::CallError) {
        // A timeout means busy; anything else means dead or moved, and the
        // roster already says which. Either way idle connections are suspect.
        if error.is_timeout() {
            lane.mark_busy();
        }
        lane.pool.clear();
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
                self.served.fetch_max(watermark.get(), Ordering::SeqCst);
                return Ok(count);
            }
            if Instant::now() >= deadline {
                return Err(Unavailable("no live node answered the count in time"));
            }
        }
    }

    /// The nodes a read asks, in order: the master first, unless it is
    /// stalled or busy; nodes that fell behind the log last.
    fn readers<'r>(&self, roster: &'r crate::cluster::Roster) -> Vec<&'r Node> {
        let master = roster.master_id();
        let mut readers: Vec<&Node> = roster.live().collect();
        readers.sort_by_key(|node| {
            (
                !node.is_attached(),
                node.is_stalled() || self.lanes[node.id().0].is_busy(),
                Some(node.id()) != master,
            )
        });
        readers
    }

    /// The master, if one serves.
    pub fn master(&self) -> Option<NodeId> {
        self.cluster.roster().master_id()
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
                received: self.lanes[state.id.0].received.load(Ordering::Relaxed),
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

/// After a frame failed to go out: whether the outbox's next frame is the
/// caller's to lead.
struct LeadAgain(bool);

/// The deadline of a frame of `entries` entries.
fn ack_timeout(entries: usize, patient: bool) -> Duration {
    let base = if patient {
        PATIENT_ACK_TIMEOUT
    } else {
        ACK_TIMEOUT
    };
    let mib = (entries * crate::codec::ENTRY_BYTES) as u32 / (1024 * 1024);
    base + ACK_TIME_PER_MIB * mib
}
