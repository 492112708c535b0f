//! Load balancing: how a batch is cut over the live nodes.
//!
//! A batch of k items over n writable nodes is cut into n contiguous chunks
//! whose sizes differ by at most one, larger chunks first (11 over 4 is 3, 3,
//! 3, 2). The node that takes the first chunk takes turns from batch to
//! batch, so a stream of one-item batches spreads evenly too; the turn
//! starts again at the lowest id when membership changes (so the first batch
//! after a start, a crash or a restart begins at the lowest live id).

use crate::node::NodeId;
use parking_lot::Mutex;
use std::ops::Range;
use std::time::Instant;

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

/// One chunk of a batch, and the node that is to take it.
pub struct Job {
    /// Where the chunk lies in the batch.
    pub range: Range<usize>,
    pub node: NodeId,
    /// Nodes that already refused the chunk.
    pub tried: Vec<NodeId>,
    /// When the chunk stops waiting for a stalled node.
    pub deadline: Instant,
}

/// The chunks of a batch of `len` items: chunk `i` goes to
/// `targets[(first + i) % n]`, waiting for it until `deadline`; empty
/// chunks are left out.
pub fn jobs(len: usize, targets: &[NodeId], first: usize, deadline: Instant) -> Vec<Job> {
    split_evenly(len, targets.len())
        .enumerate()
        .filter(|(_, range)| !range.is_empty())
        .map(|(index, range)| Job {
            range,
            node: targets[(first + index) % targets.len()],
            tried: Vec::new(),
            deadline,
        })
        .collect()
}

/// Cuts `len` items into `parts` contiguous ranges whose sizes differ by at
/// most one, larger ones first: 11 over 4 is 3, 3, 3, 2.
pub fn split_evenly(len: usize, parts: usize) -> impl Iterator<Item = Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    (0..parts).scan(0, move |start, part| {
        let size = base + usize::from(part < extra);
        let range = *start..*start + size;
        *start += size;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(len: usize, parts: usize) -> Vec<usize> {
        split_evenly(len, parts).map(|r| r.len()).collect()
    }

    #[test]
    fn chunks_are_even_larger_first_and_contiguous() {
        assert_eq!(sizes(11, 4), vec![3, 3, 3, 2]);
        assert_eq!(sizes(8, 4), vec![2, 2, 2, 2]);
        assert_eq!(sizes(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(sizes(5, 1), vec![5]);
        let ranges: Vec<_> = split_evenly(100, 7).collect();
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(ranges.last().map(|r| r.end), Some(100));
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
        let turn = Turn::default();
        let nodes: Vec<NodeId> = (0..4)
            .map(|_| {
                let jobs = jobs(1, &targets, turn.next(0, 3), Instant::now());
                assert_eq!(jobs.len(), 1, "empty chunks are left out");
                jobs[0].node
            })
            .collect();
        assert_eq!(nodes, vec![NodeId(0), NodeId(1), NodeId(2), NodeId(0)]);
    }

    #[test]
    fn a_batch_of_ten_over_four_is_three_three_two_two_from_the_turn() {
        let targets = [NodeId(0), NodeId(1), NodeId(2), NodeId(3)];
        let cut: Vec<(NodeId, usize)> = jobs(10, &targets, 2, Instant::now())
            .iter()
            .map(|job| (job.node, job.range.len()))
            .collect();
        assert_eq!(
            cut,
            vec![
                (NodeId(2), 3),
                (NodeId(3), 3),
                (NodeId(0), 2),
                (NodeId(1), 2)
            ]
        );
    }
}
