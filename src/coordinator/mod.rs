//! The coordinator: the one entry point of writes and reads.
//!
//! A write ([`Coordinator::write`]) gives a validated batch its versions (see
//! [`crate::version`]), hands its log record to the WAL in durable mode,
//! spreads it over the live nodes, and succeeds once both are done. A read
//! ([`Coordinator::count`]) asks the master, or a live replica when the
//! master cannot answer in time.

pub mod pool;

use crate::batch::Item;
use crate::cluster::{Cluster, Fault, FaultError, Slot};
use crate::protocol::{self, Response};
use crate::store::Entry;
use crate::version::{Exhausted, Version, VersionClock};
use crate::wal::{Pending, Wal, WalError, record};
use pool::{CallError, Connection};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a node has to acknowledge its chunk before the chunk goes to
/// another node.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(300);
/// When every live node missed [`ACK_TIMEOUT`] for a piece, it is tried once
/// more with this longer deadline (a loaded machine, not a dead cluster).
pub const PATIENT_ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node has to answer a count before another node is asked.
pub const COUNT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// No node could take a write or answer a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub &'static str);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A write that was accepted: every item is stored (and logged, in durable
/// mode), so the crash of any one node cannot lose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub items: usize,
}

/// Why a write was not accepted. Nothing of it is promised: parts may have
/// been stored or logged (README, "Choices").
#[derive(Debug)]
pub enum WriteError {
    /// No live node took the items in time.
    Unavailable(Unavailable),
    /// The log could not be written.
    Log(WalError),
    /// The version counter is exhausted.
    Versions(Exhausted),
}

impl WriteError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        503
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Unavailable(e) => e.fmt(f),
            WriteError::Log(e) => write!(f, "cannot write the log: {e}"),
            WriteError::Versions(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Unavailable(e) => Some(e),
            WriteError::Log(e) => Some(e),
            WriteError::Versions(e) => Some(e),
        }
    }
}

impl From<Unavailable> for WriteError {
    fn from(e: Unavailable) -> Self {
        WriteError::Unavailable(e)
    }
}

impl From<WalError> for WriteError {
    fn from(e: WalError) -> Self {
        WriteError::Log(e)
    }
}

impl From<Exhausted> for WriteError {
    fn from(e: Exhausted) -> Self {
        WriteError::Versions(e)
    }
}

/// Cuts `len` items into `parts` contiguous ranges whose sizes differ by at
/// most one, larger ones first: 11 over 4 is 3, 3, 3, 2.
pub fn split_evenly(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|part| {
            let size = base + usize::from(part < extra);
            let range = start..start + size;
            start += size;
            range
        })
        .collect()
}

/// One piece of a batch on its way to one node.
struct Job {
    range: Range<usize>,
    slot: usize,
    /// Nodes that already failed this piece.
    tried: Vec<usize>,
    /// This is the last try, with [`PATIENT_ACK_TIMEOUT`].
    patient: bool,
}

/// A job whose frame went out, waiting for its acknowledgement.
struct InFlight {
    job: Job,
    connection: Connection,
    request_id: u64,
}

pub struct Coordinator {
    cluster: Arc<Cluster>,
    clock: VersionClock,
    /// The log, in durable mode; the coordinator is its one owner.
    wal: Option<Wal>,
    next_request: AtomicU64,
}

impl Coordinator {
    /// A coordinator whose first batch gets versions after `last_version`
    /// (the highest version recovered from disk, or zero).
    pub fn new(cluster: Arc<Cluster>, wal: Option<Wal>, last_version: Version) -> Self {
        Coordinator {
            cluster,
            clock: VersionClock::after(last_version),
            wal,
            next_request: AtomicU64::new(1),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    /// Injects a fault into node `id` (`--fault-injection`).
    pub fn fault(&self, id: usize, fault: Fault) -> Result<(), FaultError> {
        self.cluster.inject(id, fault, self.wal.as_ref())
    }

    /// Stores a validated batch: orders it, logs it (durable mode) while the
    /// nodes store it, and succeeds once both are done.
    pub fn write(&self, items: &[Item<'_>]) -> Result<Accepted, WriteError> {
        if self.cluster.live().is_empty() {
            return Err(Unavailable("no node is alive to take the items").into());
        }
        let entries = self.order(items)?;
        // The log write and the nodes' stores run at the same time.
        let logged = self.wal.as_ref().map(|wal| self.log(wal, &entries));
        let stored = self.store(&entries);
        if let Some(pending) = logged {
            pending?.wait()?;
        }
        stored?;
        Ok(Accepted {
            items: entries.len(),
        })
    }

    /// Gives a batch its place in the global order.
    fn order(&self, items: &[Item<'_>]) -> Result<Vec<Entry>, Exhausted> {
        let tenants = self
            .cluster
            .tenants()
            .intern_all(items.iter().map(|item| item.tenant.as_ref()));
        let versions = self.clock.reserve(items.len() as u64)?;
        Ok(items
            .iter()
            .zip(tenants)
            .enumerate()
            .map(|(index, (item, tenant))| Entry {
                id: item.id,
                version: versions.nth(index),
                tenant,
            })
            .collect())
    }

    /// Hands the batch's log record to the WAL writer. A huge batch (a
    /// raised --max-body-bytes) becomes several records, each far below
    /// `record::MAX_PAYLOAD_BYTES`; versions keep their order.
    fn log(&self, wal: &Wal, entries: &[Entry]) -> Result<Pending, WalError> {
        let tenants = self.cluster.tenants();
        let mut bytes = Vec::with_capacity(64 + entries.len() * 20);
        for part in entries.chunks(record::MAX_ENTRIES_PER_RECORD) {
            record::encode_batch(&mut bytes, part, |tenant| {
                tenants.name(tenant).unwrap_or_default()
            });
        }
        wal.append(bytes)
    }

    /// Stores a batch: each live node takes one contiguous chunk; a chunk
    /// whose node is dead or misses [`ACK_TIMEOUT`] goes to another node.
    fn store(&self, entries: &[Entry]) -> Result<(), Unavailable> {
        let mut frame = Vec::new();
        let frame = &mut frame;
        let mut targets: Vec<usize> = self.writable_slots();
        if targets.is_empty() {
            return Err(Unavailable("no node is alive to take the items"));
        }
        if entries.is_empty() {
            return Ok(());
        }
        targets.truncate(entries.len());
        let mut jobs: Vec<Job> = split_evenly(entries.len(), targets.len())
            .into_iter()
            .zip(&targets)
            .flat_map(|(range, &slot)| {
                split_by_frame(range).map(move |range| Job {
                    range,
                    slot,
                    tried: Vec::new(),
                    patient: false,
                })
            })
            .collect();
        while !jobs.is_empty() {
            let failed = self.send_round(entries, jobs, frame);
            jobs = failed
                .into_iter()
                .map(|job| self.reassign(job))
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }

    /// Live nodes that answered recently, or every live node if none did.
    fn writable_slots(&self) -> Vec<usize> {
        let live = self.cluster.live();
        let answering: Vec<usize> = live
            .iter()
            .filter(|(slot, node)| !slot.is_busy() && !node.is_stalled())
            .map(|(slot, _)| slot.id)
            .collect();
        if answering.is_empty() {
            live.iter().map(|(slot, _)| slot.id).collect()
        } else {
            answering
        }
    }

    /// Gives a failed job to a live node that has not failed it yet.
    fn reassign(&self, mut job: Job) -> Result<Job, Unavailable> {
        job.tried.push(job.slot);
        let candidates = self.writable_slots();
        let live: Vec<usize> = self
            .cluster
            .live()
            .iter()
            .map(|(slot, _)| slot.id)
            .collect();
        if let Some(next) = candidates
            .iter()
            .chain(&live)
            .find(|id| !job.tried.contains(id))
        {
            job.slot = *next;
            return Ok(job);
        }
        match live.first() {
            Some(&first) if !job.patient => {
                job.patient = true;
                job.slot = candidates.first().copied().unwrap_or(first);
                Ok(job)
            }
            _ => Err(Unavailable("no live node acknowledged the items in time")),
        }
    }

    /// Sends every job, then collects the acknowledgements; returns the jobs
    /// that failed.
    fn send_round(&self, entries: &[Entry], jobs: Vec<Job>, frame: &mut Vec<u8>) -> Vec<Job> {
        let timeout = if jobs.iter().any(|job| job.patient) {
            PATIENT_ACK_TIMEOUT
        } else {
            ACK_TIMEOUT
        };
        let deadline = Instant::now() + timeout;
        let mut failed = Vec::new();
        let mut in_flight = Vec::with_capacity(jobs.len());
        for job in jobs {
            let slot = &self.cluster.slots()[job.slot];
            let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
            protocol::encode_store(frame, request_id, &entries[job.range.clone()]);
            match self.send_to(slot, frame, deadline) {
                Ok(connection) => in_flight.push(InFlight {
                    job,
                    connection,
                    request_id,
                }),
                Err(_) => failed.push(job),
            }
        }
        for sent in in_flight {
            let slot = &self.cluster.slots()[sent.job.slot];
            let mut connection = sent.connection;
            match connection.receive(sent.request_id, deadline) {
                Ok(Response::Stored { .. }) => {
                    slot.received
                        .fetch_add(sent.job.range.len() as u64, Ordering::Relaxed);
                    slot.mark_answering();
                    slot.pool.give_back(connection);
                }
                Err(error) => {
                    self.note_failure(slot, &error);
                    failed.push(sent.job);
                }
            }
        }
        failed
    }

    /// Writes a frame to a slot's current node, retrying once on a fresh
    /// connection when an idle pooled one turns out to be cut.
    fn send_to(
        &self,
        slot: &Slot,
        frame: &[u8],
        deadline: Instant,
    ) -> Result<Connection, CallError> {
        let addr = slot
            .node()
            .and_then(|node| node.addr())
            .ok_or(CallError::NodeGone)?;
        let mut connection = slot.pool.take(addr)?;
        match connection.send(frame, deadline) {
            Ok(()) => Ok(connection),
            Err(_) if connection.reused => {
                let mut fresh = Connection::open(addr)?;
                fresh.send(frame, deadline)?;
                Ok(fresh)
            }
            Err(error) => {
                self.note_failure(slot, &error);
                Err(error)
            }
        }
    }

    fn note_failure(&self, slot: &Slot, error: &CallError) {
        // A timeout means busy; anything else means dead or moved, and the
        // slot already says which. Either way idle connections are suspect.
        if error.is_timeout() {
            slot.mark_busy();
        }
        slot.pool.clear();
    }

    /// Counts a tenant's items on the master, seeing every write that was
    /// acknowledged before this call. The count is read from the master's
    /// memory once it has applied everything queued on it; if it cannot
    /// answer within [`COUNT_TIMEOUT`] (stalled, slow), another live node
    /// answers with the same guarantee.
    pub fn count(&self, tenant: &str) -> Result<u64, Unavailable> {
        let Some(master) = self.cluster.master_id() else {
            return Err(Unavailable("no master is alive to answer"));
        };
        let tenant = self.cluster.tenants().lookup(tenant);
        let mut candidates = self.cluster.live();
        // The master first, unless it is known to be busy: then a replica
        // answers at once instead of after a timeout.
        candidates
            .sort_by_key(|(slot, node)| (node.is_stalled() || slot.is_busy(), slot.id != master));
        for (slot, node) in candidates {
            match node.count_after_queued(tenant, COUNT_TIMEOUT) {
                Some(count) => return Ok(count),
                None => slot.mark_busy(),
            }
        }
        Err(Unavailable("no live node answered the count in time"))
    }
}

/// Cuts a node's chunk into pieces that each fit in one frame.
fn split_by_frame(range: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let step = protocol::MAX_ENTRIES_PER_FRAME;
    range
        .clone()
        .step_by(step)
        .map(move |start| start..(start + step).min(range.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(len: usize, parts: usize) -> Vec<usize> {
        split_evenly(len, parts).iter().map(|r| r.len()).collect()
    }

    #[test]
    fn chunks_are_even_larger_first_and_contiguous() {
        assert_eq!(sizes(11, 4), vec![3, 3, 3, 2]);
        assert_eq!(sizes(8, 4), vec![2, 2, 2, 2]);
        assert_eq!(sizes(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(sizes(5, 1), vec![5]);
        let ranges = split_evenly(100, 7);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(ranges.last().map(|r| r.end), Some(100));
    }

    #[test]
    fn large_chunks_are_cut_to_frame_size() {
        let max = protocol::MAX_ENTRIES_PER_FRAME;
        let pieces: Vec<_> = split_by_frame(5..5 + 2 * max + 1).collect();
        assert_eq!(
            pieces,
            vec![
                5..5 + max,
                5 + max..5 + 2 * max,
                5 + 2 * max..5 + 2 * max + 1
            ]
        );
        assert_eq!(split_by_frame(3..3).count(), 0);
    }
}
