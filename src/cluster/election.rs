//! Which live node is master.
//!
//! Reads go to the master, and a read must see every write acknowledged
//! before it, so the master must be a node that keeps up with the
//! replication log: among the live nodes that read it (not detached for
//! lagging), one that is not stalled (a stalled node answers nothing until
//! its stall ends, a node that is merely behind catches up in
//! milliseconds), then the one that has applied the most, so it answers
//! soonest; ties go to the lowest id. Only if no live node reads the log
//! does the lowest live id become master (it is re-copied, and then
//! answers).

use crate::node::{Node, NodeId};

/// The node that should be master among `nodes` (indexed by id).
pub(super) fn choose(nodes: &[Option<Node>]) -> Option<NodeId> {
    let live = nodes.iter().flatten();
    live.clone()
        .filter(|node| node.is_attached())
        .max_by_key(|node| {
            (
                !node.is_stalled(),
                node.view().watermark(),
                std::cmp::Reverse(node.id()),
            )
        })
        .or_else(|| live.min_by_key(|node| node.id()))
        .map(Node::id)
}
