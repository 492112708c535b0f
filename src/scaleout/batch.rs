//! A batch with its versions, cut into one list of items per partition.

use super::MAX_ITEMS_PER_CALL;
use super::functions;
use super::partition::{PARTITIONS, PartitionKeys, Partitioner};
use redis::Cmd;

/// One function call: (partition, chunk of that partition's items).
pub type Call = (usize, usize);

/// Item `i` of the batch has version `first + i`, so a later item with the
/// same ID wins; items keep batch order within their partition.
pub struct Batch<'a> {
    per_partition: Vec<Vec<(u64, i64, &'a str)>>,
}

impl<'a> Batch<'a> {
    pub fn new(partitioner: &Partitioner, first: u64, items: &[(i64, &'a str)]) -> Batch<'a> {
        let mut per_partition = vec![Vec::new(); PARTITIONS];
        for (version, &(id, tenant)) in (first..).zip(items) {
            per_partition[partitioner.partition(id)].push((version, id, tenant));
        }
        Batch { per_partition }
    }

    /// Every function call of the batch: (partition, chunk), in order. Long
    /// lists are cut into chunks of [`MAX_ITEMS_PER_CALL`]: Redis runs one
    /// call at a time, so a call of 100,000 items would hold up every other
    /// client of that master while it runs. Calls may run in any order: an
    /// item only replaces a smaller version.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = Vec::new();
        for (partition, items) in self.per_partition.iter().enumerate() {
            let chunks = items.len().div_ceil(MAX_ITEMS_PER_CALL);
            calls.extend((0..chunks).map(|chunk| (partition, chunk)));
        }
        calls
    }

    fn chunk(&self, (partition, chunk): Call) -> &[(u64, i64, &'a str)] {
        let items = &self.per_partition[partition];
        let start = chunk * MAX_ITEMS_PER_CALL;
        &items[start..items.len().min(start + MAX_ITEMS_PER_CALL)]
    }

    pub fn items_in(&self, call: Call) -> usize {
        self.chunk(call).len()
    }

    /// The `FCALL` of one call; `keys` are the call's partition's keys.
    pub fn command(&self, call: Call, keys: &PartitionKeys) -> Cmd {
        functions::apply(keys, self.chunk(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaleout::partition::DEFAULT_PARTITION_KEY;

    #[test]
    fn versions_follow_batch_order_within_each_partition() {
        let partitioner = Partitioner::new(DEFAULT_PARTITION_KEY);
        let items: Vec<(i64, &str)> = (0..100).map(|i| (i % 40, "t")).collect();
        let batch = Batch::new(&partitioner, 1000, &items);
        let calls = batch.calls();
        assert_eq!(calls.iter().map(|&c| batch.items_in(c)).sum::<usize>(), 100);
        for call in calls {
            let versions: Vec<u64> = batch.chunk(call).iter().map(|i| i.0).collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]));
            for &(version, id, _) in batch.chunk(call) {
                assert_eq!(items[(version - 1000) as usize].0, id);
                assert_eq!(partitioner.partition(id), call.0);
            }
        }
    }

    #[test]
    fn long_lists_are_cut_into_several_calls() {
        let partitioner = Partitioner::new(DEFAULT_PARTITION_KEY);
        let id = 42;
        let items = vec![(id, "t"); MAX_ITEMS_PER_CALL * 2 + 1];
        let batch = Batch::new(&partitioner, 1, &items);
        let partition = partitioner.partition(id);
        let calls = batch.calls();
        assert_eq!(calls, [(partition, 0), (partition, 1), (partition, 2)]);
        let sizes: Vec<usize> = calls.iter().map(|&c| batch.items_in(c)).collect();
        assert_eq!(sizes, [MAX_ITEMS_PER_CALL, MAX_ITEMS_PER_CALL, 1]);
    }
}
