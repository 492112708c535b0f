//! One node's map `ID → (tenant, version)` with per-tenant counts.
//!
//! Writes are applied last-writer-wins on the coordinator's version, so any
//! order of delivery, and any repetition, converges to the same map. The map
//! is split into shards so that growing it never rehashes everything at once
//! (a stop-the-world pause on a large map), and so that the coordinator's
//! direct writes and background replication rarely wait on each other.

use crate::codec::RawEntry;
use crate::tenants::TenantId;
use crate::version::Version;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hash::{BuildHasherDefault, Hash, Hasher};
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

/// A hasher for i64 keys: the splitmix64 finaliser, much cheaper than SipHash.
/// Keys come from clients, but a shard is small, so a client that aims
/// collisions at one shard slows only that shard.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = mix(self.0 ^ u64::from(byte));
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = mix(id as u64);
    }
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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

/// The shard of an ID: Fibonacci hashing (independent of the map's own
/// hash), reduced to a share unit by multiply-shift.
fn shard_of(id: i64) -> usize {
    let hash = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    SHARD_OF_UNIT[((hash * SHARE_UNITS as u64) >> 32) as usize] as usize
}

type Shard = HashMap<Key, Value, BuildHasherDefault<IdHasher>>;

pub struct Store {
    shards: Vec<Mutex<Shard>>,
    /// Items per tenant id, kept as items move so a count is O(1).
    counts: RwLock<Vec<AtomicU64>>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            counts: RwLock::new(Vec::new()),
            items: AtomicU64::new(0),
        }
    }

    /// Applies writes last-writer-wins. Applying the same entry twice, or
    /// entries in any order, gives the same result.
    pub fn apply(&self, entries: &[Entry]) {
        let Some(max_tenant) = entries.iter().map(|e| e.tenant).max() else {
            return;
        };
        self.grow_counts(max_tenant);
        let counts = self.counts.read();
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
                    counts[entry.tenant.index()].fetch_add(1, Ordering::Relaxed);
                }
                MapEntry::Occupied(mut occupied) => {
                    let old = *occupied.get();
                    if !replaces(entry.version, old.version) {
                        continue;
                    }
                    let old_tenant = old.tenant;
                    if old_tenant != entry.tenant {
                        counts[old_tenant.index()].fetch_sub(1, Ordering::Relaxed);
                        counts[entry.tenant.index()].fetch_add(1, Ordering::Relaxed);
                    }
                    occupied.insert(new);
                }
            }
        }
    }

    fn grow_counts(&self, max_tenant: TenantId) {
        let needed = max_tenant.index() + 1;
        if self.counts.read().len() >= needed {
            return;
        }
        let mut counts = self.counts.write();
        while counts.len() < needed {
            counts.push(AtomicU64::new(0));
        }
    }

    /// How many IDs currently belong to `tenant`.
    pub fn count(&self, tenant: TenantId) -> u64 {
        self.counts
            .read()
            .get(tenant.index())
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// How many distinct IDs the store holds.
    pub fn len(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of this store, one shard locked at a time, so writers go on.
    pub fn copy(&self) -> Store {
        let counts = self
            .counts
            .read()
            .iter()
            .map(|count| AtomicU64::new(count.load(Ordering::Relaxed)))
            .collect();
        Store {
            shards: self
                .shards
                .iter()
                .map(|shard| Mutex::new(shard.lock().clone()))
                .collect(),
            counts: RwLock::new(counts),
            items: AtomicU64::new(self.len()),
        }
    }

    /// Applies every item of `other` to this store (last-writer-wins), a
    /// shard at a time.
    pub fn absorb(&self, other: &Store) {
        other.for_each_shard(|entries| self.apply(entries));
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

    /// Every item as an entry, one shard locked at a time, so writers go on.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(self.len() as usize);
        for shard in &self.shards {
            let shard = shard.lock();
            entries.extend(shard.iter().map(|(key, value)| Entry {
                id: key.0,
                version: value.version,
                tenant: value.tenant,
            }));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, version: u64, tenant: u32) -> Entry {
        Entry {
            id,
            version: Version::new(version),
            tenant: TenantId::new(tenant),
        }
    }

    fn count(store: &Store, tenant: u32) -> u64 {
        store.count(TenantId::new(tenant))
    }

    #[test]
    fn later_versions_win_in_any_order() {
        let writes = [
            entry(1, 5, 0),
            entry(1, 9, 1),
            entry(1, 7, 2),
            entry(2, 1, 0),
        ];
        let forward = Store::new();
        forward.apply(&writes);
        let backward = Store::new();
        for write in writes.iter().rev() {
            backward.apply(std::slice::from_ref(write));
        }
        for store in [&forward, &backward] {
            assert_eq!(
                (count(store, 0), count(store, 1), count(store, 2)),
                (1, 1, 0)
            );
            assert_eq!(store.len(), 2);
        }
    }

    #[test]
    fn repeated_entries_change_nothing() {
        let store = Store::new();
        let writes = [entry(1, 1, 0), entry(2, 2, 0)];
        store.apply(&writes);
        store.apply(&writes);
        assert_eq!((count(&store, 0), store.len()), (2, 2));
    }

    #[test]
    fn counts_follow_moves_and_unknown_tenants_are_zero() {
        let store = Store::new();
        store.apply(&[entry(i64::MIN, 1, 3), entry(i64::MAX, 2, 3)]);
        store.apply(&[entry(i64::MIN, 3, 4)]);
        assert_eq!(
            (count(&store, 3), count(&store, 4), count(&store, 99)),
            (1, 1, 0)
        );
    }

    #[test]
    fn entries_rebuild_the_same_store() {
        let store = Store::new();
        let writes: Vec<Entry> = (0..10_000)
            .map(|i| entry(i * 7919, i as u64, (i % 5) as u32))
            .collect();
        store.apply(&writes);
        let rebuilt = Store::new();
        rebuilt.apply(&store.entries());
        let mut streamed = 0;
        store.for_each_shard(|entries| streamed += entries.len());
        assert_eq!(streamed, 10_000);
        for copy in [rebuilt, store.copy()] {
            assert_eq!(copy.len(), 10_000);
            for tenant in 0..5 {
                assert_eq!(count(&copy, tenant), 2_000);
            }
        }
    }

    #[test]
    fn shards_hold_unequal_shares_so_they_grow_at_different_sizes() {
        let mut sizes = [0usize; SHARDS];
        for id in 0..1_000_000 {
            sizes[shard_of(id)] += 1;
        }
        let (smallest, largest) = (sizes[0] as f64, sizes[SHARDS - 1] as f64);
        assert!((1.8..2.2).contains(&(largest / smallest)), "{sizes:?}");
        assert!(
            sizes.windows(2).filter(|w| w[0] < w[1]).count() > SHARDS * 3 / 4,
            "{sizes:?}"
        );
    }

    #[test]
    fn sequential_ids_spread_over_every_shard() {
        let mut seen = [false; SHARDS];
        for id in 0..10_000 {
            seen[shard_of(id)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
