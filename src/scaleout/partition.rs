//! Which partition an ID lives in, and the Redis keys of each partition.
//!
//! An ID goes to partition `siphash24(key, id) % PARTITIONS`. The hash is
//! keyed so that nobody who does not know the deployment's partition key can
//! pick IDs that all land in one partition (one Redis master). It is
//! SipHash-2-4 written out here, not `std`'s `DefaultHasher`, whose algorithm
//! may change between Rust releases: every instance of a deployment, whatever
//! it was built with, must put an ID in the same partition, forever.

/// Number of partitions. Part of the data layout: changing it (or the
/// partition key) puts IDs in other partitions, so existing data would be
/// counted twice. It also caps useful masters at 32 (one partition per master).
pub const PARTITIONS: usize = 32;

/// The partition key used when the options give none. Every instance of a
/// deployment must use the same key; set a secret one so that IDs cannot be
/// chosen to pile into one partition.
pub const DEFAULT_PARTITION_KEY: &str = "distributed-counter/scaleout/v1";

/// The cluster-wide version counter. Its own hash tag puts it in its own slot,
/// apart from the partitions' keys.
pub const COUNTER_KEY: &str = "{dc}version";

/// The data layout (partition count and key fingerprint) of the deployment
/// that first used the cluster; same slot as the counter.
pub const LAYOUT_KEY: &str = "{dc}layout";

/// Number of hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// Fixed SipHash key used only to turn the configured string into the real key.
const DERIVATION_KEY: (u64, u64) = (0x6463_6f75_6e74_6572, 0x7363_616c_656f_7574);

/// The keys of one partition; they share the hash tag `{p<N>}`, so they sit in
/// one slot and one function call can update them atomically.
#[derive(Clone, Debug)]
pub struct PartitionKeys {
    /// Hash: ID → "version tenant" of the latest write.
    pub ids: String,
    /// Hash: tenant → number of IDs of this partition it holds (no zeros).
    pub cnt: String,
    /// String: highest version applied in this partition.
    pub max: String,
    /// The hash slot of the keys, which says which master serves them.
    pub slot: u16,
}

impl PartitionKeys {
    pub fn new(partition: usize) -> PartitionKeys {
        let tag = format!("p{partition}");
        PartitionKeys {
            ids: format!("{{{tag}}}ids"),
            cnt: format!("{{{tag}}}cnt"),
            max: format!("{{{tag}}}max"),
            slot: slot_of_tag(&tag),
        }
    }
}

/// Maps IDs to partitions with a key derived from the deployment's string.
#[derive(Clone)]
pub struct Partitioner {
    key: (u64, u64),
}

impl Partitioner {
    pub fn new(partition_key: &str) -> Partitioner {
        let derive = |label: u8| {
            let mut input = Vec::with_capacity(partition_key.len() + 1);
            input.push(label);
            input.extend_from_slice(partition_key.as_bytes());
            siphash24(DERIVATION_KEY, &input)
        };
        Partitioner {
            key: (derive(0), derive(1)),
        }
    }

    pub fn partition(&self, id: i64) -> usize {
        // The remainder is below PARTITIONS, so the cast cannot truncate.
        (siphash24(self.key, &id.to_le_bytes()) % PARTITIONS as u64) as usize
    }

    /// Names the layout without revealing the key: instances compare it at
    /// connect, so one started with another key or partition count is refused
    /// instead of silently counting IDs twice.
    pub fn fingerprint(&self) -> String {
        let probe = siphash24(self.key, b"layout fingerprint");
        format!("partitions={PARTITIONS} key={probe:016x}")
    }
}

/// The hash slot of a key whose hash tag is `tag` (CRC16/XMODEM mod 16384).
pub fn slot_of_tag(tag: &str) -> u16 {
    crc16_xmodem(tag.as_bytes()) % SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// SipHash-2-4 of `data` under the 128-bit `key` (the one in `keys.rs`).
fn siphash24(key: (u64, u64), data: &[u8]) -> u64 {
    crate::keys::siphash24(key.0, key.1, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key 00..0f as in the SipHash paper.
    const PAPER_KEY: (u64, u64) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    #[test]
    fn siphash_matches_the_reference_vectors() {
        let message: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(PAPER_KEY, &message), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(PAPER_KEY, b""), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        // Values from `CLUSTER KEYSLOT {p1}max` and `CLUSTER KEYSLOT foo`.
        assert_eq!(slot_of_tag("p1"), 11819);
        assert_eq!(slot_of_tag("foo"), 12182);
    }

    #[test]
    fn partitions_spread_ids_and_depend_on_the_key() {
        let a = Partitioner::new(DEFAULT_PARTITION_KEY);
        let b = Partitioner::new("another deployment");
        let mut used = [0usize; PARTITIONS];
        let mut moved = 0;
        for id in 0..32_000i64 {
            used[a.partition(id)] += 1;
            moved += usize::from(a.partition(id) != b.partition(id));
        }
        assert!(used.iter().all(|&n| (800..1200).contains(&n)), "{used:?}");
        assert!(moved > 28_000, "{moved} IDs moved");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn partition_keys_share_one_slot() {
        let keys = PartitionKeys::new(7);
        assert_eq!(keys.ids, "{p7}ids");
        assert_eq!(keys.cnt, "{p7}cnt");
        assert_eq!(keys.max, "{p7}max");
        assert_eq!(keys.slot, slot_of_tag("p7"));
    }
}
