//! The replication log: how a batch reaches every node, and when it becomes
//! visible to reads.
//!
//! ```text
//!   coordinator ─open(n)──▶ versions reserved, batch opened (in version order)
//!   node N ─append(piece)──▶ the batch's pieces gather here, in shared memory
//!            (Node::take: the coordinator's chunk, or a Store frame)
//!   batch complete (or abandoned) and every earlier one too
//!        ──▶ Commit #s: whole batches, in version order, up to a watermark
//!   each node's apply thread reads commits #s, #s+1, ... into its own map
//! ```
//!
//! A node acknowledges its piece of a batch once the piece is appended here:
//! from then on every node will apply it, and the crash of any one node
//! (which only ends that node's threads and drops its map) cannot lose it.
//!
//! Reads are linearizable with batches as single operations: a batch is
//! committed only whole, and only after every batch with lower versions was
//! committed or abandoned, so a node that has applied commits up to watermark
//! `W` holds exactly the writes with versions up to `W`. A batch whose write
//! failed (answered 503) is settled by the coordinator at once (see
//! [`ReplicationLog::settle`]): it is committed whole from the coordinator's
//! copy, the same for every node, so it never blocks later batches and no
//! read ever sees part of it.
//!
//! Memory is bounded: committed bytes that some node has not applied yet are
//! at most [`MAX_RETAINED_BYTES`]. When a node falls that far behind (a long
//! stall), it is detached: the log stops keeping commits for it, and the
//! cluster re-copies it from an up-to-date node once it can catch up. Writes
//! never wait for a lagging node; they wait only when even the fastest node
//! is that far behind (the whole box is overloaded).

use crate::node::NodeId;
use crate::store::Entry;
use crate::tenants::{TenantId, Tenants};
use crate::version::{Exhausted, Version, Versions};
use crossbeam_channel::{Receiver, Sender, unbounded};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Most bytes of commits kept for nodes that have not applied them yet.
pub const MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;
/// Bytes one entry costs in the log.
const ENTRY_COST: usize = std::mem::size_of::<Entry>();
/// Most commits one [`ReplicationLog::read`] hands out.
const MAX_COMMITS_PER_READ: usize = 256;

/// Part of a batch as one node received it: entries `offset..` of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The first version of the batch the piece belongs to.
    pub batch: Version,
    /// Where the piece starts in its batch.
    pub offset: u64,
    pub entries: Vec<Entry>,
}

/// Whole batches, in version order, that every node applies as one step.
#[derive(Clone)]
pub struct Commit {
    pub seq: u64,
    /// Every version up to this one is resolved once this commit is applied.
    pub watermark: Version,
    /// The pieces of the committed batches (the order inside does not
    /// matter: last-writer-wins on versions).
    pub pieces: Vec<Vec<Entry>>,
    /// Tenants pinned by the committed batches, unpinned once every node
    /// has applied them.
    tenants: Vec<TenantId>,
    bytes: usize,
}

impl Commit {
    /// An empty commit with room for `pieces` pieces, allocated before the
    /// log's lock is taken and filled in under it: every write takes that
    /// lock, and a writer that waits for it spins and yields its core
    /// (`parking_lot`), so `malloc` under the lock made others wait.
    fn allocate(pieces: usize) -> Arc<Commit> {
        Arc::new(Commit {
            seq: 0,
            watermark: Version::ZERO,
            pieces: Vec::with_capacity(pieces),
            tenants: Vec::new(),
            bytes: 0,
        })
    }
}

/// What a node's apply thread gets from [`ReplicationLog::read`].
pub enum Read {
    Commits(Vec<Arc<Commit>>),
    /// The node was retired (it stops).
    Retired,
}

/// Even the fastest node is [`MAX_RETAINED_BYTES`] behind: the piece was
/// not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "every node is more than {MAX_RETAINED_BYTES} bytes behind; writes wait"
        )
    }
}

impl std::error::Error for Full {}

/// A node cannot join like another that is not attached itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAttached(pub NodeId);

impl fmt::Display for NotAttached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not caught up in the replication log", self.0)
    }
}

impl std::error::Error for NotAttached {}

pub struct ReplicationLog {
    state: Mutex<LogState>,
    /// Wakes apply threads waiting for commits (or to be joined again).
    committed: Condvar,
    /// Wakes appends waiting for room.
    room: Condvar,
    tenants: Arc<Tenants>,
    /// Tells the cluster which nodes were detached.
    detached_events: Sender<NodeId>,
    /// Bit `n` is set while node `n` reads commits (see [`Self::is_attached`]).
    /// Shared with `state`, which rewrites it under the lock whenever the
    /// consumers change; read without the lock, because every count asks
    /// it of the master and the lock is the one every write takes.
    attached: Arc<AtomicU64>,
}

struct LogState {
    /// The next version to hand out.
    next_version: Version,
    /// Every version up to this one is committed or abandoned.
    resolved: Version,
    /// Batches not resolved yet, in version order.
    open: VecDeque<OpenBatch>,
    /// Commits some attached node has not applied; `commits[0]` has
    /// sequence number `first_seq`.
    commits: VecDeque<Arc<Commit>>,
    first_seq: u64,
    /// Bytes in `commits`.
    retained: usize,
    /// Changed only by `set_consumer` and `remove_consumer`, which keep
    /// `attached` in step.
    consumers: Vec<Consumer>,
    /// Which consumers read commits, for lock-free reads (the log's
    /// `attached`).
    attached: Arc<AtomicU64>,
}

struct OpenBatch {
    versions: Versions,
    tenants: Vec<TenantId>,
    pieces: Vec<(u64, Vec<Entry>)>,
    received: u64,
}

impl OpenBatch {
    fn is_resolved(&self) -> bool {
        self.received >= self.versions.len
    }
}

/// Node `node`'s bit in [`ReplicationLog::attached`]: node ids are below
/// `config::MAX_NODES` (64; `Cluster::start` refuses more); a larger one
/// would have no bit and read as detached.
fn node_bit(node: NodeId) -> u64 {
    u32::try_from(node.0)
        .ok()
        .and_then(|shift| 1u64.checked_shl(shift))
        .unwrap_or(0)
}

struct Consumer {
    node: NodeId,
    /// The next commit to read; `None` while detached.
    next: Option<u64>,
}

impl ReplicationLog {
    /// A log whose first batch gets versions after `last` (the highest
    /// version recovered from disk, or zero); everything up to `last` counts
    /// as committed. Also returns the channel on which detached nodes are
    /// announced.
    pub fn new(last: Version, tenants: Arc<Tenants>) -> (ReplicationLog, Receiver<NodeId>) {
        let (detached_events, detached) = unbounded();
        // `last` is at most Version::MAX (recovery refuses more), so this
        // cannot overflow; past MAX, `open` refuses to hand versions out.
        let next_version = Version::new(last.get() + 1);
        let attached = Arc::new(AtomicU64::new(0));
        let log = ReplicationLog {
            state: Mutex::new(LogState {
                next_version,
                resolved: last,
                open: VecDeque::new(),
                commits: VecDeque::new(),
                first_seq: 0,
                retained: 0,
                consumers: Vec::new(),
                attached: attached.clone(),
            }),
            committed: Condvar::new(),
            room: Condvar::new(),
            tenants,
            detached_events,
            attached,
        };
        (log, detached)
    }

    /// Reserves `len` versions for a batch whose tenants are pinned in
    /// `tenants`, and opens it. Until its pieces all arrive or it is
    /// abandoned, no later batch becomes visible: the caller must do one or
    /// the other (see `coordinator::OpenBatch`).
    pub fn open(&self, len: u64, tenants: Vec<TenantId>) -> Result<Versions, Exhausted> {
        // Allocated before the lock (see `Commit::allocate`).
        let pieces = Vec::with_capacity(1);
        let mut state = self.state.lock();
        let first = state.next_version;
        if len == 0 {
            drop(state);
            self.tenants.unpin(&tenants);
            return Ok(Versions { first, len });
        }
        // The last version of the batch must be one we may hand out.
        first.checked_add(len - 1).ok_or(Exhausted)?;
        state.next_version = Version::new(first.get() + len);
        let versions = Versions { first, len };
        state.open.push_back(OpenBatch {
            versions,
            tenants,
            pieces,
            received: 0,
        });
        Ok(versions)
    }

    /// Takes pieces a node received. A piece of a batch that is resolved
    /// already, or that was taken before (a retry sent to two nodes), is
    /// dropped. Waits until `deadline` while every node is too far behind.
    pub fn append(&self, pieces: Vec<Piece>, deadline: Instant) -> Result<(), Full> {
        // Unused (the batch still misses pieces), it is freed after the lock.
        let mut next_commit = Some(Commit::allocate(pieces.len()));
        let mut state = self.state.lock();
        while state.retained > MAX_RETAINED_BYTES && !state.consumers_caught_up_enough() {
            if self.room.wait_until(&mut state, deadline).timed_out() {
                return Err(Full);
            }
        }
        for piece in pieces {
            state.take(piece);
        }
        let unpin = self.commit_resolved(&mut state, &mut next_commit);
        drop(state);
        self.tenants.unpin(&unpin);
        Ok(())
    }

    /// Settles the batch that starts at `first`, whose write failed: it is
    /// committed whole, from `entries` (the whole batch), whatever pieces
    /// arrived; pieces that arrive later are dropped. Every node sees the
    /// same outcome, and a batch already resolved is left alone.
    pub fn settle(&self, first: Version, entries: &[Entry]) {
        let mut state = self.state.lock();
        if let Some(batch) = state.open_batch(first) {
            batch.pieces = vec![(0, entries.to_vec())];
            batch.received = batch.versions.len;
        }
        let unpin = self.commit_resolved(&mut state, &mut None);
        drop(state);
        self.tenants.unpin(&unpin);
    }

    /// Every version up to this one is committed or abandoned.
    pub fn resolved(&self) -> Version {
        self.state.lock().resolved
    }

    /// The highest version handed out.
    pub fn last_version(&self) -> Version {
        self.state.lock().next_version.previous()
    }

    /// Bytes of commits kept for nodes that have not applied them.
    pub fn retained_bytes(&self) -> usize {
        self.state.lock().retained
    }

    /// Node `node` will read every commit from now on (it holds everything
    /// committed before). Returns the watermark it starts from.
    pub fn join_at_head(&self, node: NodeId) -> Version {
        let mut state = self.state.lock();
        let head = state.first_seq + state.commits.len() as u64;
        state.set_consumer(node, Some(head));
        state.resolved
    }

    /// Node `node` will read the commits that `source` has not applied yet:
    /// call it while `source` cannot apply (it then holds exactly what
    /// `node` is given a copy of).
    pub fn join_like(&self, node: NodeId, source: NodeId) -> Result<(), NotAttached> {
        let mut state = self.state.lock();
        let next = state
            .consumers
            .iter()
            .find(|c| c.node == source)
            .and_then(|c| c.next)
            .ok_or(NotAttached(source))?;
        state.set_consumer(node, Some(next));
        drop(state);
        self.committed.notify_all();
        Ok(())
    }

    /// Whether `node` reads commits now (not detached, not retired).
    pub fn is_attached(&self, node: NodeId) -> bool {
        self.attached.load(Ordering::SeqCst) & node_bit(node) != 0
    }

    /// The node stops: it reads nothing more and holds no commit back.
    pub fn retire(&self, node: NodeId) {
        let mut state = self.state.lock();
        state.remove_consumer(node);
        let unpin = state.collect_garbage();
        drop(state);
        self.committed.notify_all();
        self.room.notify_all();
        self.tenants.unpin(&unpin);
    }

    /// Waits for commits `node` has not read, and returns them (without
    /// marking them applied: see [`ReplicationLog::applied`]). While the
    /// node is detached it waits to be joined again.
    pub fn read(&self, node: NodeId) -> Read {
        let mut state = self.state.lock();
        loop {
            let Some(consumer) = state.consumers.iter().find(|c| c.node == node) else {
                return Read::Retired;
            };
            if let Some(next) = consumer.next {
                let start = (next - state.first_seq) as usize;
                if start < state.commits.len() {
                    let commits = state
                        .commits
                        .range(start..)
                        .take(MAX_COMMITS_PER_READ)
                        .cloned()
                        .collect();
                    return Read::Commits(commits);
                }
            }
            self.committed.wait(&mut state);
        }
    }

    /// `node` applied every commit before `next`.
    pub fn applied(&self, node: NodeId, next: u64) {
        let mut state = self.state.lock();
        if let Some(consumer) = state.consumers.iter_mut().find(|c| c.node == node)
            && let Some(current) = consumer.next
        {
            consumer.next = Some(current.max(next));
        }
        let unpin = state.collect_garbage();
        drop(state);
        // Appends may be waiting for room (only other apply threads wait
        // on `committed`, and this frees nothing for them).
        self.room.notify_all();
        self.tenants.unpin(&unpin);
    }

    /// Moves every resolved batch at the front into one commit (into
    /// `allocated` if given, see [`Commit::allocate`]), then keeps memory
    /// bounded. Returns tenants to unpin (after the lock is gone).
    fn commit_resolved(
        &self,
        state: &mut LogState,
        allocated: &mut Option<Arc<Commit>>,
    ) -> Vec<TenantId> {
        if !state.open.front().is_some_and(OpenBatch::is_resolved) {
            return Vec::new();
        }
        let mut next = allocated.take().unwrap_or_else(|| Commit::allocate(1));
        // Nobody else holds it yet: this never clones.
        let commit = Arc::make_mut(&mut next);
        while state.open.front().is_some_and(OpenBatch::is_resolved) {
            let Some(batch) = state.open.pop_front() else {
                break;
            };
            state.resolved = batch.versions.last();
            if commit.tenants.is_empty() {
                // Mostly one batch per commit: its list is taken as it is.
                commit.tenants = batch.tenants;
            } else {
                commit.tenants.extend(batch.tenants);
            }
            for (_, entries) in batch.pieces {
                commit.bytes += entries.len() * ENTRY_COST;
                commit.pieces.push(entries);
            }
        }
        commit.seq = state.first_seq + state.commits.len() as u64;
        commit.watermark = state.resolved;
        state.retained += commit.bytes;
        state.commits.push_back(next);
        let mut unpin = Vec::new();
        let detached = state.detach_laggards(&mut unpin);
        self.committed.notify_all();
        self.room.notify_all();
        for node in detached {
            // The receiver lives as long as the cluster; if it is gone the
            // process is stopping and nobody will re-copy the node anyway.
            let _ = self.detached_events.send(node);
        }
        unpin.extend(state.collect_garbage());
        unpin
    }
}

impl LogState {
    fn open_batch(&mut self, first: Version) -> Option<&mut OpenBatch> {
        let index = self
            .open
            .binary_search_by_key(&first, |batch| batch.versions.first)
            .ok()?;
        self.open.get_mut(index)
    }

    /// Adds a piece to its open batch, unless it is late or a duplicate.
    fn take(&mut self, piece: Piece) {
        let Some(batch) = self.open_batch(piece.batch) else {
            return;
        };
        let end = piece.offset.saturating_add(piece.entries.len() as u64);
        if end > batch.versions.len
            || batch
                .pieces
                .iter()
                .any(|(offset, _)| *offset == piece.offset)
        {
            return;
        }
        batch.received += piece.entries.len() as u64;
        batch.pieces.push((piece.offset, piece.entries));
    }

    fn set_consumer(&mut self, node: NodeId, next: Option<u64>) {
        match self.consumers.iter_mut().find(|c| c.node == node) {
            Some(consumer) => consumer.next = next,
            None => self.consumers.push(Consumer { node, next }),
        }
        self.publish_attached();
    }

    fn remove_consumer(&mut self, node: NodeId) {
        self.consumers.retain(|c| c.node != node);
        self.publish_attached();
    }

    /// Rewrites `attached` from the consumers.
    fn publish_attached(&self) {
        let attached = self
            .consumers
            .iter()
            .filter(|c| c.next.is_some())
            .fold(0, |mask, c| mask | node_bit(c.node));
        self.attached.store(attached, Ordering::SeqCst);
    }

    /// Whether the most advanced attached node is within the bound (so
    /// detaching the laggards can free memory) or no node is attached.
    fn consumers_caught_up_enough(&self) -> bool {
        let Some(leader) = self.consumers.iter().filter_map(|c| c.next).max() else {
            return true;
        };
        let behind: usize = self
            .commits
            .iter()
            .skip((leader - self.first_seq) as usize)
            .map(|commit| commit.bytes)
            .sum();
        behind <= MAX_RETAINED_BYTES
    }

    /// While more than the bound is kept, detaches the node furthest
    /// behind, unless it is the most advanced one. Returns who was detached;
    /// the tenants of commits dropped on the way go to `unpin`.
    fn detach_laggards(&mut self, unpin: &mut Vec<TenantId>) -> Vec<NodeId> {
        let mut detached = Vec::new();
        while self.retained > MAX_RETAINED_BYTES {
            let attached = self.consumers.iter().filter(|c| c.next.is_some());
            let (Some(slowest), Some(fastest)) = (
                attached.clone().min_by_key(|c| c.next),
                attached.max_by_key(|c| c.next),
            ) else {
                break;
            };
            if slowest.next == fastest.next {
                break;
            }
            let node = slowest.node;
            self.set_consumer(node, None);
            detached.push(node);
            unpin.extend(self.drop_applied_commits());
        }
        detached
    }

    /// Drops commits every attached node has applied; returns their
    /// tenants to unpin.
    fn collect_garbage(&mut self) -> Vec<TenantId> {
        self.drop_applied_commits()
    }

    fn drop_applied_commits(&mut self) -> Vec<TenantId> {
        let head = self.first_seq + self.commits.len() as u64;
        let keep_from = self
            .consumers
            .iter()
            .filter_map(|c| c.next)
            .min()
            .unwrap_or(head);
        let mut unpin = Vec::new();
        while self.first_seq < keep_from {
            let Some(commit) = self.commits.pop_front() else {
                break;
            };
            self.first_seq += 1;
            self.retained -= commit.bytes;
            unpin.extend_from_slice(&commit.tenants);
        }
        unpin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn log() -> (ReplicationLog, Receiver<NodeId>, Arc<Tenants>) {
        let tenants = Arc::new(Tenants::new());
        let (log, detached) = ReplicationLog::new(Version::ZERO, tenants.clone());
        (log, detached, tenants)
    }

    fn piece(versions: Versions, offset: u64, len: u64) -> Piece {
        Piece {
            batch: versions.first,
            offset,
            entries: (offset..offset + len)
                .map(|i| Entry {
                    id: i as i64,
                    version: versions.nth(i as usize),
                    tenant: TenantId::new(0),
                })
                .collect(),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(1)
    }

    fn commits(log: &ReplicationLog, node: NodeId) -> Vec<Arc<Commit>> {
        match log.read(node) {
            Read::Commits(commits) => commits,
            Read::Retired => panic!("{node} is retired"),
        }
    }

    #[test]
    fn a_batch_is_committed_whole_and_in_version_order() {
        let (log, _, _) = log();
        let node = NodeId(0);
        log.join_at_head(node);
        let a = log.open(4, Vec::new()).unwrap();
        let b = log.open(2, Vec::new()).unwrap();
        log.append(vec![piece(b, 0, 2), piece(a, 0, 2)], soon())
            .unwrap();
        assert_eq!(log.resolved(), Version::ZERO, "a is not whole yet");
        // A retry of a piece already taken changes nothing.
        log.append(vec![piece(a, 0, 2)], soon()).unwrap();
        assert_eq!(log.resolved(), Version::ZERO);
        log.append(vec![piece(a, 2, 2)], soon()).unwrap();
        assert_eq!(log.resolved(), b.last(), "a and b commit together");
        let read = commits(&log, node);
        assert_eq!(read.len(), 1);
        let entries: usize = read[0].pieces.iter().map(Vec::len).sum();
        assert_eq!((entries, read[0].watermark), (6, b.last()));
    }

    #[test]
    fn a_failed_batch_is_settled_whole_and_unblocks_later_ones() {
        let (log, _, tenants) = log();
        let node = NodeId(1);
        log.join_at_head(node);
        let pinned = tenants.pin_all(["t"]);
        let a = log.open(3, pinned.distinct.clone()).unwrap();
        let b = log.open(1, Vec::new()).unwrap();
        log.append(vec![piece(a, 0, 1), piece(b, 0, 1)], soon())
            .unwrap();
        assert_eq!(log.resolved(), Version::ZERO);
        log.settle(a.first, &piece(a, 0, 3).entries);
        assert_eq!(log.resolved(), b.last());
        // A late piece of the settled batch is dropped.
        log.append(vec![piece(a, 1, 2)], soon()).unwrap();
        let read = commits(&log, node);
        let entries: usize = read.iter().flat_map(|c| &c.pieces).map(Vec::len).sum();
        assert_eq!(entries, 4, "all of a (from the settlement), all of b");
        assert_eq!(
            tenants.sweep(|_| {}, |_| {}).forgotten,
            0,
            "pinned until applied"
        );
        log.applied(node, read[read.len() - 1].seq + 1);
        assert_eq!(
            tenants.sweep(|_| {}, |_| {}).forgotten,
            1,
            "applied everywhere: unpinned"
        );
    }

    #[test]
    fn attachment_is_published_as_nodes_join_and_retire() {
        let (log, _, _) = log();
        let (first, last) = (NodeId(0), NodeId(crate::config::MAX_NODES - 1));
        assert!(!log.is_attached(first) && !log.is_attached(last));
        log.join_at_head(first);
        assert!(log.is_attached(first) && !log.is_attached(last));
        log.join_like(last, first).unwrap();
        assert!(log.is_attached(first) && log.is_attached(last));
        log.retire(first);
        assert!(!log.is_attached(first) && log.is_attached(last));
        // No id has a bit past the limit: it reads as detached, no panic.
        let beyond = NodeId(crate::config::MAX_NODES);
        log.join_at_head(beyond);
        assert!(!log.is_attached(beyond) && log.is_attached(last));
    }

    #[test]
    fn a_node_far_behind_is_detached_and_writes_go_on() {
        let (log, detached, _) = log();
        let (fast, slow) = (NodeId(0), NodeId(1));
        log.join_at_head(fast);
        log.join_at_head(slow);
        let per_batch = 100_000u64;
        let batches = MAX_RETAINED_BYTES as u64 / (per_batch * ENTRY_COST as u64) + 2;
        for _ in 0..batches {
            let versions = log.open(per_batch, Vec::new()).unwrap();
            log.append(vec![piece(versions, 0, per_batch)], soon())
                .expect("a lagging node never makes writes wait");
            let read = commits(&log, fast);
            log.applied(fast, read[read.len() - 1].seq + 1);
        }
        assert_eq!(detached.try_recv(), Ok(slow));
        assert!(!log.is_attached(slow) && log.is_attached(fast));
        assert!(log.retained_bytes() <= MAX_RETAINED_BYTES);
        // Joined again like the fast node, it reads from there.
        log.join_like(slow, fast).unwrap();
        assert!(log.is_attached(slow));
    }

    #[test]
    fn writes_wait_only_when_every_node_is_far_behind() {
        let (log, _, _) = log();
        log.join_at_head(NodeId(0));
        let per_batch = 1_000_000u64;
        let mut refused = false;
        for _ in 0..8 {
            let versions = log.open(per_batch, Vec::new()).unwrap();
            let deadline = Instant::now() + Duration::from_millis(20);
            if log.append(vec![piece(versions, 0, per_batch)], deadline) == Err(Full) {
                refused = true;
                break;
            }
        }
        assert!(refused, "the only node never reads: appends must stop");
    }

    #[test]
    fn a_retired_node_reads_nothing_and_holds_nothing_back() {
        let (log, _, _) = log();
        log.join_at_head(NodeId(0));
        let versions = log.open(1, Vec::new()).unwrap();
        log.append(vec![piece(versions, 0, 1)], soon()).unwrap();
        log.retire(NodeId(0));
        assert!(matches!(log.read(NodeId(0)), Read::Retired));
        assert_eq!(log.retained_bytes(), 0);
    }

    #[test]
    fn versions_run_out_cleanly() {
        let tenants = Arc::new(Tenants::new());
        let (log, _) = ReplicationLog::new(Version::MAX.previous(), tenants);
        assert!(log.open(1, Vec::new()).is_ok());
        assert_eq!(log.open(1, Vec::new()), Err(Exhausted));
    }
}
