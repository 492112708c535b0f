//! One node's map `ID → (tenant, version)`.
//!
//! Writes are applied last-writer-wins on the coordinator's version
//! ([`replaces`]), so any order of delivery, and any repetition, converges to
//! the same map. The map is split into shards so that growing it never
//! rehashes everything at once (a stop-the-world pause on a large map).
//!
//! IDs come from clients, so the hash is keyed per process
//! ([`HashKeys`]): nobody outside the process can pick IDs that collide in
//! one bucket or one shard.
//!
//! Per-tenant counts are not kept here: the node's view (see
//! `node::replication`) keeps them, from the changes [`Store::apply`] reports.

use crate::codec::RawEntry;
use crate::keys::HashKeys;
use crate::tenants::TenantId;
use crate::version::Version;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Shards per store (at most 256: a shard number is a u8). Each rehash
/// touches about 1/SHARDS of the items.
pub const SHARDS: usize = 64;

/// One write of one item, as the coordinator ordered it: a higher version wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub version: Version,
    pub tenant: TenantId,
}

impl Entry {
    /// The entry as the codec writes it, with its interned tenant id.
    pub fn raw(self) -> RawEntry {
        RawEntry {
            id: self.id,
            version: self.version,
            tenant: self.tenant.get(),
        }
    }

    /// An entry read by the codec whose tenant number is an interned id.
    pub fn from_raw(raw: RawEntry) -> Entry {
        Entry {
            id: raw.id,
            version: raw.version,
            tenant: TenantId::new(raw.tenant),
        }
    }
}

/// Last-writer-wins, the one rule every copy of the data applies: a write
/// replaces what is stored only if its version is higher. Versions are
/// unique per write, so an equal version is the same write seen again and
/// changes nothing.
pub fn replaces(new: Version, stored: Version) -> bool {
    new > stored
}

/// An ID as a map key, aligned to 4 bytes so a key and its [`Value`] take 20
/// bytes in the table instead of 24.
#[repr(C, packed(4))]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(i64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let id = self.0;
        state.write_i64(id);
    }
}

#[repr(C, packed(4))]
#[derive(Clone, Copy)]
struct Value {
    version: Version,
    tenant: TenantId,
}

/// The high and low halves of a 128-bit product, folded: a cheap keyed mix
/// (as in foldhash); without the keys its output cannot be steered.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Builds the keyed ID hasher of a shard's table.
#[derive(Clone, Copy)]
struct KeyedIds {
    keys: (u64, u64),
}

impl BuildHasher for KeyedIds {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            keys: self.keys,
            hash: 0,
        }
    }
}

/// Hashes an `i64` key with the process's keys.
pub struct IdHasher {
    keys: (u64, u64),
    hash: u64,
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash = folded_multiply(self.hash ^ self.keys.0 ^ u64::from(byte), self.keys.1);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.hash = folded_multiply(id as u64 ^ self.keys.0, self.keys.1);
    }
}

/// Shard `i` takes a share of the IDs proportional to `SHARDS + i`, so the
/// largest shard holds about twice as many items as the smallest. Shards of
/// one store therefore cross their growth thresholds (tables double) at
/// different sizes; with equal shares every shard of a uniformly filled store
/// would rehash at the same moment, and the writes of that moment would wait
/// for all of them.
const SHARE_UNITS: usize = SHARDS * SHARDS + SHARDS * (SHARDS - 1) / 2;

/// Which shard each share unit belongs to.
static SHARD_OF_UNIT: [u8; SHARE_UNITS] = {
    let mut table = [0u8; SHARE_UNITS];
    let (mut shard, mut unit) = (0, 0);
    while shard < SHARDS {
        let mut taken = 0;
        while taken < SHARDS + shard {
            table[unit] = shard as u8;
            unit += 1;
            taken += 1;
        }
        shard += 1;
    }
    table
};

/// Mixes a keyed hash once more before its high bits pick a shard.
const SHARD_MIX: u64 = 0x5851_F42D_4C95_7F2D;

/// The shard of an ID: a keyed hash independent of the tables' own,
/// reduced to a share unit by multiply-shift.
///
/// One keyed multiply alone spreads consecutive IDs almost perfectly for
/// most keys, but for about one key in a thousand (a multiplier close to
/// a fraction with a small denominator) it sent them to a few shards, one
/// shard getting up to 2.7 times its share. Folded once more with a fixed
/// odd constant, the spread is that of a random one for every key: within
/// 4.4% of each share over 3,000 keys and a million consecutive IDs.
fn shard_of(id: i64) -> usize {
    shard_under(HashKeys::of_process().shard, id)
}

/// [`shard_of`] under the hash key `(k0, k1)`.
fn shard_under((k0, k1): (u64, u64), id: i64) -> usize {
    let hash = folded_multiply(folded_multiply(id as u64 ^ k0, k1), SHARD_MIX) >> 32;
    SHARD_OF_UNIT[((hash * SHARE_UNITS as u64) >> 32) as usize] as usize
}

type Shard = HashMap<Key, Value, KeyedIds>;

fn empty_shard() -> Shard {
    HashMap::with_hasher(KeyedIds {
        keys: HashKeys::of_process().table,
    })
}

pub struct Store {
    shards: Vec<Mutex<Shard>>,
    items: AtomicU64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(empty_shard())).collect(),
            items: AtomicU64::new(0),
        }
    }

    /// Applies writes last-writer-wins, calling `moved(from, to)` for every
    /// item that changes tenant (`from` is `None` for an item new here).
    /// Applying the same entry twice, or entries in any order, gives the
    /// same map.
    pub fn apply(&self, entries: &[Entry], mut moved: impl FnMut(Option<TenantId>, TenantId)) {
        for entry in entries {
            let mut shard = self.shards[shard_of(entry.id)].lock();
            let new = Value {
                version: entry.version,
                tenant: entry.tenant,
            };
            match shard.entry(Key(entry.id)) {
                MapEntry::Vacant(vacant) => {
                    vacant.insert(new);
                    self.items.fetch_add(1, Ordering::Relaxed);
                    moved(None, entry.tenant);
                }
                MapEntry::Occupied(mut occupied) => {
                    let old = *occupied.get();
                    if !replaces(entry.version, old.version) {
                        continue;
                    }
                    occupied.insert(new);
                    let old_tenant = old.tenant;
                    if old_tenant != entry.tenant {
                        moved(Some(old_tenant), entry.tenant);
                    }
                }
            }
        }
    }

    /// How many distinct IDs the store holds.
    pub fn len(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items per tenant, counted item by item (for a store filled without
    /// watching its changes, e.g. from the data dir).
    pub fn tenant_counts(&self) -> Vec<u64> {
        let mut counts: Vec<u64> = Vec::new();
        for shard in &self.shards {
            for value in shard.lock().values() {
                let index = value.tenant.index();
                if counts.len() <= index {
                    counts.resize(index + 1, 0);
                }
                counts[index] += 1;
            }
        }
        counts
    }

    /// A copy of this store, one shard locked at a time.
    pub fn copy(&self) -> Store {
        let store = Store::new();
        store.replace_with(self);
        store
    }

    /// Makes this store a copy of `other`, one shard at a time. The caller
    /// keeps both stores from changing meanwhile.
    pub fn replace_with(&self, other: &Store) {
        for (mine, theirs) in self.shards.iter().zip(&other.shards) {
            let copy = theirs.lock().clone();
            *mine.lock() = copy;
        }
        self.items.store(other.len(), Ordering::Relaxed);
    }

    /// Calls `visit` with every item, a shard's worth of entries at a time,
    /// so a caller can stream the store without a copy of all of it.
    pub fn for_each_shard(&self, mut visit: impl FnMut(&[Entry])) {
        let mut entries = Vec::new();
        for shard in &self.shards {
            entries.clear();
            entries.extend(shard.lock().iter().map(|(key, value)| Entry {
                id: key.0,
                version: value.version,
                tenant: value.tenant,
            }));
            visit(&entries);
        }
    }

    /// Every item as an entry.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(self.len() as usize);
        self.for_each_shard(|shard| entries.extend_from_slice(shard));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{colliding_ids, splitmix};
    use std::time::Instant;

    fn entry(id: i64, version: u64, tenant: u32) -> Entry {
        Entry {
            id,
            version: Version::new(version),
            tenant: TenantId::new(tenant),
        }
    }

    /// Applies `entries` to `store` and returns the per-tenant counts.
    fn counted(store: &Store, entries: &[Entry], counts: &mut [i64; 8]) {
        store.apply(entries, |from, to| {
            if let Some(from) = from {
                counts[from.index()] -= 1;
            }
            counts[to.index()] += 1;
        });
    }

    #[test]
    fn later_versions_win_in_any_order() {
        let writes = [
            entry(1, 5, 0),
            entry(1, 9, 1),
            entry(1, 7, 2),
            entry(2, 1, 0),
        ];
        let (forward, backward) = (Store::new(), Store::new());
        let (mut ahead, mut behind) = ([0; 8], [0; 8]);
        counted(&forward, &writes, &mut ahead);
        for write in writes.iter().rev() {
            counted(&backward, std::slice::from_ref(write), &mut behind);
        }
        assert_eq!(&ahead[..3], &[1, 1, 0]);
        assert_eq!(ahead, behind);
        assert_eq!((forward.len(), backward.len()), (2, 2));
    }

    #[test]
    fn repeated_entries_change_nothing() {
        let store = Store::new();
        let writes = [entry(1, 1, 0), entry(2, 2, 0)];
        let mut counts = [0; 8];
        counted(&store, &writes, &mut counts);
        counted(&store, &writes, &mut counts);
        assert_eq!((counts[0], store.len()), (2, 2));
    }

    #[test]
    fn moves_are_reported_with_their_old_tenant() {
        let store = Store::new();
        let mut counts = [0; 8];
        counted(
            &store,
            &[entry(i64::MIN, 1, 3), entry(i64::MAX, 2, 3)],
            &mut counts,
        );
        counted(&store, &[entry(i64::MIN, 3, 4)], &mut counts);
        assert_eq!((counts[3], counts[4]), (1, 1));
        assert_eq!(store.tenant_counts(), vec![0, 0, 0, 1, 1]);
    }

    #[test]
    fn copies_and_streams_hold_the_same_items() {
        let store = Store::new();
        let writes: Vec<Entry> = (0..10_000)
            .map(|i| entry(i * 7919, i as u64 + 1, (i % 5) as u32))
            .collect();
        store.apply(&writes, |_, _| {});
        let rebuilt = Store::new();
        rebuilt.apply(&store.entries(), |_, _| {});
        let mut streamed = 0;
        store.for_each_shard(|entries| streamed += entries.len());
        assert_eq!(streamed, 10_000);
        let replaced = Store::new();
        replaced.apply(&[entry(1, 1, 7)], |_, _| {});
        replaced.replace_with(&store);
        for copy in [rebuilt, store.copy(), replaced] {
            assert_eq!(copy.len(), 10_000);
            assert_eq!(copy.tenant_counts(), vec![2_000; 5]);
        }
    }

    #[test]
    fn shards_hold_unequal_shares_so_they_grow_at_different_sizes() {
        // The shares themselves: shard i owns SHARDS + i units, so the
        // largest owns twice what the smallest does, and no two are equal.
        let mut units = [0usize; SHARDS];
        for &shard in SHARD_OF_UNIT.iter() {
            units[usize::from(shard)] += 1;
        }
        let expected_units: Vec<usize> = (0..SHARDS).map(|i| SHARDS + i).collect();
        assert_eq!(units.to_vec(), expected_units);

        // Consecutive IDs follow the shares whatever the hash key (see
        // `shard_of`): this process's, and the worst of 3,000 random keys
        // under a single keyed multiply (2.7 times its share in one
        // shard). A shard holds 10-21 k of the million IDs, so 10% is seven
        // standard deviations or more of a random spread.
        const SINGLE_MULTIPLY_WORST: (u64, u64) =
            (6_312_429_472_896_593_469, 3_180_473_059_162_745_633);
        const IDS: i64 = 1_000_000;
        for keys in [HashKeys::of_process().shard, SINGLE_MULTIPLY_WORST] {
            let mut sizes = [0usize; SHARDS];
            for id in 0..IDS {
                sizes[shard_under(keys, id)] += 1;
            }
            let (smallest, largest) = (sizes[0] as f64, sizes[SHARDS - 1] as f64);
            assert!(
                (1.8..2.2).contains(&(largest / smallest)),
                "keys {keys:?}: {sizes:?}"
            );
            for (shard, &size) in sizes.iter().enumerate() {
                let expected = IDS as f64 * units[shard] as f64 / SHARE_UNITS as f64;
                let off = (size as f64 - expected).abs() / expected;
                assert!(
                    off < 0.10,
                    "keys {keys:?}, shard {shard}: {size} IDs, {expected:.0} expected; {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn ids_built_to_collide_under_an_unkeyed_hash_apply_as_fast_as_random_ones() {
        const COUNT: u64 = 60_000;
        let crafted = colliding_ids(COUNT);
        assert!(
            crafted
                .iter()
                .all(|&id| splitmix(id as u64) & 0xff_ffff_ffff == 0),
            "the crafted IDs do collide under the old hash"
        );
        // Under the keyed hash they spread like random IDs: no bucket of a
        // 2^16-slot table gets more than a handful.
        let build = KeyedIds {
            keys: HashKeys::of_process().table,
        };
        let mut buckets = vec![0u32; 1 << 16];
        for &id in &crafted {
            buckets[(build.hash_one(Key(id)) & 0xffff) as usize] += 1;
        }
        let fullest = buckets.iter().max().copied().unwrap_or(0);
        assert!(fullest < 16, "{fullest} crafted IDs share one bucket");

        // And applying them takes about as long as random IDs (a generous
        // bound: before the hash was keyed this ratio was in the hundreds).
        let random: Vec<i64> = (0..COUNT).map(|i| splitmix(i ^ 0x5555) as i64).collect();
        let time = |ids: &[i64]| {
            let entries: Vec<Entry> = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| entry(id, i as u64 + 1, 0))
                .collect();
            let started = Instant::now();
            Store::new().apply(&entries, |_, _| {});
            started.elapsed()
        };
        let (crafted_time, random_time) = (time(&crafted), time(&random));
        assert!(
            crafted_time < random_time * 8,
            "crafted {crafted_time:?} vs random {random_time:?}"
        );
    }
}
