//! Load balancing: how a batch is cut over the live nodes.
//!
//! A batch of k items over n writable nodes is cut into n contiguous chunks
//! whose sizes differ by at most one, larger chunks first (11 over 4 is 3, 3,
//! 3, 2). The node that takes the first chunk takes turns from batch to
//! batch, so a stream of one-item batches spreads evenly too; the turn
//! starts again at the lowest id when membership changes (so the first batch
//! after a start, a crash or a restart begins at the lowest live id). A
//! chunk larger than a frame is sent as several pieces.

use super::outbox::Parcel;
use crate::node::NodeId;
use crate::protocol;
use crate::store::Entry;
use crate::version::Versions;
use parking_lot::Mutex;
use std::ops::Range;
use std::sync::Arc;

/// Whose turn it is to take a batch's first chunk.
#[derive(Default)]
pub struct Turn {
    /// The roster epoch the turn counts in, and the next turn.
    state: Mutex<(u64, usize)>,
}

impl Turn {
    /// The index, among `nodes` targets, of the one that takes the first
    /// chunk of the next batch.
    pub fn next(&self, epoch: u64, nodes: usize) -> usize {
        let mut state = self.state.lock();
        if state.0 != epoch {
            *state = (epoch, 0);
        }
        let first = state.1 % nodes.max(1);
        state.1 = state.1.wrapping_add(1);
        first
    }
}

/// One piece of a batch on its way to one node.
pub struct Job {
    pub parcel: Parcel,
    pub node: NodeId,
    /// Nodes that already failed this piece.
    pub tried: Vec<NodeId>,
}

/// The pieces of a batch: chunk `i` goes to `targets[(first + i) % n]`.
pub fn jobs(
    versions: Versions,
    entries: &Arc<[Entry]>,
    targets: &[NodeId],
    first: usize,
) -> Vec<Job> {
    let chunks = split_evenly(entries.len(), targets.len());
    let mut jobs = Vec::new();
    for (index, chunk) in chunks.into_iter().enumerate() {
        let node = targets[(first + index) % targets.len()];
        for range in split_by_frame(chunk) {
            jobs.push(Job {
                parcel: Parcel {
                    batch: versions.first,
                    offset: range.start as u64,
                    entries: entries.clone(),
                    range,
                    patient: false,
                },
                node,
                tried: Vec::new(),
            });
        }
    }
    jobs
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
    use crate::tenants::TenantId;
    use crate::version::Version;

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

    #[test]
    fn the_first_chunk_takes_turns_and_restarts_with_membership() {
        let turn = Turn::default();
        assert_eq!(
            (0..6).map(|_| turn.next(0, 4)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 0, 1]
        );
        assert_eq!(turn.next(1, 3), 0, "a new roster starts at the lowest id");
        assert_eq!(turn.next(1, 3), 1);
    }

    #[test]
    fn single_items_rotate_over_the_nodes() {
        let targets = [NodeId(0), NodeId(1), NodeId(2)];
        let entries: Arc<[Entry]> = Arc::from(vec![Entry {
            id: 1,
            version: Version::new(1),
            tenant: TenantId::new(0),
        }]);
        let versions = Versions {
            first: Version::new(1),
            len: 1,
        };
        let turn = Turn::default();
        let nodes: Vec<NodeId> = (0..4)
            .map(|_| {
                let jobs = jobs(versions, &entries, &targets, turn.next(0, 3));
                assert_eq!(jobs.len(), 1, "empty chunks are not sent");
                jobs[0].node
            })
            .collect();
        assert_eq!(nodes, vec![NodeId(0), NodeId(1), NodeId(2), NodeId(0)]);
    }
}
