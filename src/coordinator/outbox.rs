//! Writes bound for one node travel together: the pieces of concurrent
//! batches queued for a node go in one frame and one round trip, as the
//! WAL's group commit shares one fsync.
//!
//! There is no sender thread. A request thread that queues a piece on an
//! idle outbox becomes its leader: it takes everything queued, sends one
//! frame, reads the node's answer, and tells every piece's request the
//! outcome. Pieces queued meanwhile wait for the next frame, whose leader is
//! the owner of the oldest of them (handed over, so no thread leads for
//! long on behalf of others).

use super::pool::Connection;
use crate::node::NodeId;
use crate::protocol::{self, OutgoingPiece};
use crate::store::Entry;
use crate::version::Version;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// A piece of a batch on its way to one node: `entries[range]`, which
/// start at `offset` in the batch whose first version is `batch`.
#[derive(Clone)]
pub struct Parcel {
    pub batch: Version,
    pub offset: u64,
    pub entries: Arc<[Entry]>,
    pub range: Range<usize>,
    /// The last try, with the patient deadline.
    pub patient: bool,
}

impl Parcel {
    pub fn len(&self) -> usize {
        self.range.len()
    }

    fn outgoing(&self) -> OutgoingPiece<'_> {
        OutgoingPiece {
            batch: self.batch,
            offset: self.offset,
            entries: &self.entries[self.range.clone()],
        }
    }
}

/// What became of one parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In the replication log.
    Stored,
    /// The node answered that its log is full.
    Refused,
    /// No answer; `timeout` if the node is alive but did not answer in time.
    Failed { timeout: bool },
}

/// Where a parcel's outcome goes.
struct Ticket {
    waiter: Arc<Waiter>,
    index: usize,
}

pub struct Queued {
    parcel: Parcel,
    ticket: Ticket,
}

/// A group of parcels sent as one frame, waiting for its answer.
pub struct Flight {
    pub node: NodeId,
    group: Vec<Queued>,
    pub connection: Connection,
    pub request_id: u64,
    pub deadline: Instant,
}

/// The queue of one node.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
}

#[derive(Default)]
struct OutboxState {
    queue: VecDeque<Queued>,
    /// A frame is on its way, or a leader was handed the queue.
    leading: bool,
}

impl Outbox {
    /// Queues a parcel; true if the caller must lead (the outbox was idle).
    pub fn push(&self, parcel: Parcel, waiter: &Arc<Waiter>, index: usize) -> bool {
        let mut state = self.state.lock();
        state.queue.push_back(Queued {
            parcel,
            ticket: Ticket {
                waiter: waiter.clone(),
                index,
            },
        });
        !std::mem::replace(&mut state.leading, true)
    }

    /// Takes what the leader sends in one frame: queued parcels up to the
    /// frame size (each parcel fits one frame on its own).
    pub fn take_group(&self) -> Vec<Queued> {
        let mut state = self.state.lock();
        let mut bytes = protocol::EMPTY_STORE_BYTES;
        let mut group = Vec::new();
        while let Some(next) = state.queue.front() {
            let cost = protocol::piece_bytes(next.parcel.len());
            if !group.is_empty() && bytes + cost > protocol::MAX_FRAME_BYTES {
                break;
            }
            bytes += cost;
            group.extend(state.queue.pop_front());
        }
        group
    }

    /// The leader is done with a frame. If parcels are queued it leads the
    /// next frame itself when `keep` (a thread already awake sends at once)
    /// or when the oldest is its own; else it hands the outbox to the owner
    /// of the oldest. With nothing queued the outbox goes idle. Returns
    /// true if the caller leads the next frame.
    pub fn hand_over(&self, node: NodeId, me: &Arc<Waiter>, keep: bool) -> bool {
        let mut state = self.state.lock();
        let Some(next) = state.queue.front() else {
            state.leading = false;
            return false;
        };
        if keep || Arc::ptr_eq(&next.ticket.waiter, me) {
            return true;
        }
        next.ticket.waiter.lead(node);
        false
    }
}

/// Encodes a group as one `Store` frame.
pub fn encode(out: &mut Vec<u8>, request_id: u64, group: &[Queued]) {
    let pieces: Vec<OutgoingPiece<'_>> = group.iter().map(|q| q.parcel.outgoing()).collect();
    protocol::encode_store(out, request_id, &pieces);
}

/// Entries in a group, and whether any of them is on its last try.
pub fn measure(group: &[Queued]) -> (usize, bool) {
    (
        group.iter().map(|q| q.parcel.len()).sum(),
        group.iter().any(|q| q.parcel.patient),
    )
}

/// Tells every parcel's request its outcome.
pub fn complete(group: Vec<Queued>, outcome: Outcome) {
    for queued in group {
        queued.ticket.waiter.complete(queued.ticket.index, outcome);
    }
}

impl Flight {
    pub fn new(
        node: NodeId,
        group: Vec<Queued>,
        connection: Connection,
        request_id: u64,
        deadline: Instant,
    ) -> Flight {
        Flight {
            node,
            group,
            connection,
            request_id,
            deadline,
        }
    }

    /// Entries in the flight.
    pub fn entries(&self) -> usize {
        measure(&self.group).0
    }

    /// Completes the flight's parcels; gives the connection back.
    pub fn land(self, outcome: Outcome) -> Connection {
        complete(self.group, outcome);
        self.connection
    }
}

/// One request's parcels: their outcomes, and the outboxes handed to it.
pub struct Waiter {
    state: Mutex<WaiterState>,
    wake: Condvar,
}

struct WaiterState {
    outcomes: Vec<Option<Outcome>>,
    left: usize,
    lead: Vec<NodeId>,
}

/// What a waiting request is woken for.
pub enum Wake {
    /// Every parcel has an outcome.
    Done(Vec<Outcome>),
    /// These outboxes were handed to it: it leads their next frames.
    Lead(Vec<NodeId>),
}

impl Waiter {
    pub fn new(parcels: usize) -> Waiter {
        Waiter {
            state: Mutex::new(WaiterState {
                outcomes: vec![None; parcels],
                left: parcels,
                lead: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    fn complete(&self, index: usize, outcome: Outcome) {
        let mut state = self.state.lock();
        if let Some(slot @ None) = state.outcomes.get_mut(index) {
            *slot = Some(outcome);
            state.left -= 1;
            if state.left == 0 {
                self.wake.notify_one();
            }
        }
    }

    fn lead(&self, node: NodeId) {
        self.state.lock().lead.push(node);
        self.wake.notify_one();
    }

    /// Whether every parcel has an outcome.
    pub fn is_done(&self) -> bool {
        self.state.lock().left == 0
    }

    /// Waits until every parcel has an outcome or an outbox is handed over.
    pub fn wait(&self) -> Wake {
        let mut state = self.state.lock();
        loop {
            if !state.lead.is_empty() {
                return Wake::Lead(std::mem::take(&mut state.lead));
            }
            if state.left == 0 {
                let outcomes = state
                    .outcomes
                    .iter()
                    .map(|o| o.unwrap_or(Outcome::Failed { timeout: false }))
                    .collect();
                return Wake::Done(outcomes);
            }
            self.wake.wait(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parcel(len: usize) -> Parcel {
        Parcel {
            batch: Version::new(1),
            offset: 0,
            entries: Arc::from(vec![
                Entry {
                    id: 0,
                    version: Version::new(1),
                    tenant: crate::tenants::TenantId::new(0),
                };
                len
            ]),
            range: 0..len,
            patient: false,
        }
    }

    #[test]
    fn the_first_to_queue_leads_and_hands_over_to_the_oldest_waiting() {
        let outbox = Outbox::default();
        let (a, b) = (Arc::new(Waiter::new(1)), Arc::new(Waiter::new(1)));
        assert!(outbox.push(parcel(1), &a, 0), "an idle outbox: a leads");
        let group = outbox.take_group();
        assert!(!outbox.push(parcel(2), &b, 0), "a frame is out: b waits");
        complete(group, Outcome::Stored);
        assert!(matches!(a.wait(), Wake::Done(o) if o == vec![Outcome::Stored]));
        assert!(
            !outbox.hand_over(NodeId(3), &a, false),
            "b's parcel is next: b leads"
        );
        assert!(matches!(b.wait(), Wake::Lead(nodes) if nodes == vec![NodeId(3)]));
        let group = outbox.take_group();
        assert_eq!(measure(&group), (2, false));
        assert!(!outbox.push(parcel(1), &a, 0), "a frame is out: a waits");
        assert!(
            outbox.hand_over(NodeId(3), &b, true),
            "b is awake and may keep leading"
        );
        complete(group, Outcome::Failed { timeout: true });
        complete(outbox.take_group(), Outcome::Stored);
        assert!(
            !outbox.hand_over(NodeId(3), &b, true),
            "nothing queued: idle"
        );
        assert!(matches!(b.wait(), Wake::Done(o) if o == vec![Outcome::Failed { timeout: true }]));
        assert!(
            outbox.push(parcel(1), &a, 0),
            "idle again: the next one leads"
        );
    }

    #[test]
    fn a_group_never_exceeds_one_frame() {
        let outbox = Outbox::default();
        let waiter = Arc::new(Waiter::new(3));
        let big = protocol::MAX_ENTRIES_PER_FRAME / 2 + 1;
        for index in 0..3 {
            outbox.push(parcel(big), &waiter, index);
        }
        assert_eq!(outbox.take_group().len(), 1);
        assert_eq!(outbox.take_group().len(), 1);
    }
}
