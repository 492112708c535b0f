//! Tenant names interned to small numbers, shared by the coordinator and nodes.
//!
//! Nodes store a [`TenantId`] (4 bytes) per item instead of a string, and the
//! node protocol carries ids, not names. Memory follows live data: a name no
//! item uses any more is forgotten by [`Tenants::sweep`] and its id reused.
//! Tables keyed by id hold live names only (maps, not arrays as long as the
//! highest id): after a churn of names, the one still in use may have any id.
//!
//! A name must not be forgotten while a write naming it is on its way to the
//! nodes, so a write pins its tenants ([`Tenants::pin_all`]) until every node
//! has applied it (the replication log unpins). A read does not pin: it
//! looks a name up as a [`Tag`] (id and generation) and checks afterwards
//! that the id still means that name ([`Tenants::is_current`]).

use parking_lot::RwLock;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A tenant's number; freed numbers are reused lowest first, so they stay
/// small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(u32);

impl TenantId {
    pub const fn new(raw: u32) -> TenantId {
        TenantId(raw)
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The id as an index into per-tenant arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A looked-up name: its id, and which use of that id it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub id: TenantId,
    generation: u64,
}

#[derive(Default)]
pub struct Tenants {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<Arc<str>, TenantId>,
    /// The live names, by id.
    slots: HashMap<TenantId, Slot>,
    /// Every id in use is below it.
    end: u32,
    /// Ids below `end` of forgotten names, used again before new ones,
    /// lowest first so ids stay small.
    free: BinaryHeap<Reverse<TenantId>>,
    /// Names given an id since start.
    added: u64,
    /// Every name that gets an id gets the next generation: a tag names one
    /// use of an id, never repeated.
    next_generation: u64,
}

struct Slot {
    name: Arc<str>,
    /// Which use of the id this is (see `Inner::next_generation`).
    generation: u64,
    /// Writes on their way to the nodes that name this tenant.
    pins: AtomicU32,
}

impl Tenants {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of a known tenant, to read with.
    pub fn lookup(&self, name: &str) -> Option<Tag> {
        let inner = self.inner.read();
        let id = *inner.ids.get(name)?;
        let generation = inner.slots.get(&id)?.generation;
        Some(Tag { id, generation })
    }

    /// Whether `tag`'s id still means the name it was looked up by.
    pub fn is_current(&self, tag: Tag) -> bool {
        self.inner
            .read()
            .slots
            .get(&tag.id)
            .is_some_and(|slot| slot.generation == tag.generation)
    }

    /// The id of each name, adding new ones, and pins each distinct tenant
    /// once: it will not be forgotten until [`Tenants::unpin`] is called
    /// with the returned `distinct` list.
    pub fn pin_all<'a, I>(&self, names: I) -> Pinned
    where
        I: IntoIterator<Item = &'a str> + Clone,
    {
        // Names are looked up (or added) and pinned under one lock: a sweep
        // between the two could forget a name with no items yet.
        self.with_ids(names, |inner, ids| inner.pin(ids))
    }

    /// Releases pins taken by [`Tenants::pin_all`].
    pub fn unpin(&self, distinct: &[TenantId]) {
        let inner = self.inner.read();
        for id in distinct {
            if let Some(slot) = inner.slots.get(id) {
                // Saturating: a bug elsewhere must not make a name immortal
                // by wrapping to u32::MAX.
                let _ = slot
                    .pins
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |pins| {
                        Some(pins.saturating_sub(1))
                    });
            }
        }
    }

    /// The id of each name, adding the new ones; one lock per call, not per
    /// name. Unpinned: for names already held by items (recovery).
    pub fn intern_all<'a, I>(&self, names: I) -> Vec<TenantId>
    where
        I: IntoIterator<Item = &'a str> + Clone,
    {
        self.with_ids(names, |_, ids| ids)
    }

    /// The id of each name, adding the new ones, handed to `then` under the
    /// same lock; one lock per call, not per name (a read lock when every
    /// name is known).
    fn with_ids<'a, I, T>(&self, names: I, then: impl FnOnce(&Inner, Vec<TenantId>) -> T) -> T
    where
        I: IntoIterator<Item = &'a str> + Clone,
    {
        {
            let inner = self.inner.read();
            let known: Option<Vec<TenantId>> = names
                .clone()
                .into_iter()
                .map(|name| inner.ids.get(name).copied())
                .collect();
            if let Some(ids) = known {
                return then(&inner, ids);
            }
        }
        let mut inner = self.inner.write();
        let ids = names.into_iter().map(|name| inner.intern(name)).collect();
        then(&inner, ids)
    }

    /// Every id in use is below it.
    pub fn len(&self) -> usize {
        self.inner.read().end as usize
    }

    pub fn is_empty(&self) -> bool {
        self.live() == 0
    }

    /// Names known now.
    pub fn live(&self) -> usize {
        self.inner.read().ids.len()
    }

    /// Names given an id since start (new names, including reuses of ids).
    pub fn added(&self) -> u64 {
        self.inner.read().added
    }

    /// The name of an id.
    pub fn name(&self, id: TenantId) -> Option<Arc<str>> {
        Some(self.inner.read().slots.get(&id)?.name.clone())
    }

    /// Forgets names no item holds, so their memory goes and their ids are
    /// reused. `keep_unused` gets ids and keeps those no item holds: every
    /// name's, so that pinned names no item holds yet are counted as
    /// undecided. Then `trimmed` learns how many ids remain (every id from
    /// there up is free). Both run while no write can pin, unpin or intern,
    /// so what they read of the nodes and the pins cannot change under them.
    pub fn sweep(
        &self,
        keep_unused: impl FnOnce(&mut Vec<TenantId>),
        trimmed: impl FnOnce(usize),
    ) -> Swept {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        // Few names are pinned at any moment (those of writes in flight).
        let pinned: HashSet<TenantId> = inner
            .slots
            .iter()
            .filter(|(_, slot)| slot.pins.load(Ordering::SeqCst) > 0)
            .map(|(&id, _)| id)
            .collect();
        let mut unused: Vec<TenantId> = inner.slots.keys().copied().collect();
        keep_unused(&mut unused);
        let (undecided, forgettable): (Vec<TenantId>, Vec<TenantId>) =
            unused.into_iter().partition(|id| pinned.contains(id));
        for id in &forgettable {
            if let Some(slot) = inner.slots.remove(id) {
                inner.ids.remove(&slot.name);
                inner.free.push(Reverse(*id));
            }
        }
        inner.shrink();
        trimmed(inner.end as usize);
        Swept {
            forgotten: forgettable.len(),
            undecided: undecided.len() as u64,
        }
    }
}

/// What a [`Tenants::sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Names forgotten.
    pub forgotten: usize,
    /// Names kept only because a write naming them was still on its way: no
    /// item holds them (yet), so once the write is applied they may be
    /// unused. The next sweep should look at them again even if no name is
    /// added meanwhile.
    pub undecided: u64,
}

/// Ids of a write's tenants, pinned until the write reached every node.
#[derive(Debug)]
pub struct Pinned {
    /// One id per name given, in order.
    pub ids: Vec<TenantId>,
    /// Each pinned id once.
    pub distinct: Vec<TenantId>,
}

impl Inner {
    /// Pins each distinct tenant of `ids` once.
    fn pin(&self, ids: Vec<TenantId>) -> Pinned {
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for id in &distinct {
            if let Some(slot) = self.slots.get(id) {
                slot.pins.fetch_add(1, Ordering::SeqCst);
            }
        }
        Pinned { ids, distinct }
    }

    fn intern(&mut self, name: &str) -> TenantId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        self.added += 1;
        let id = match self.free.pop() {
            Some(Reverse(id)) => id,
            None => {
                // Ids are u32; more than 4 billion live tenants would need
                // far more memory than the boxes this runs on have.
                let id = TenantId(self.end);
                self.end = self.end.saturating_add(1);
                id
            }
        };
        self.next_generation += 1;
        let slot = Slot {
            name: name.clone(),
            generation: self.next_generation,
            pins: AtomicU32::new(0),
        };
        self.slots.insert(id, slot);
        self.ids.insert(name, id);
        id
    }

    /// Gives back memory of tables that emptied out; free ids past the
    /// highest one in use go too.
    fn shrink(&mut self) {
        self.end = self.slots.keys().map(|id| id.0 + 1).max().unwrap_or(0);
        let end = self.end;
        self.free.retain(|Reverse(id)| id.0 < end);
        shrink_if_sparse(
            &mut self.ids,
            HashMap::len,
            HashMap::capacity,
            HashMap::shrink_to_fit,
        );
        shrink_if_sparse(
            &mut self.slots,
            HashMap::len,
            HashMap::capacity,
            HashMap::shrink_to_fit,
        );
        shrink_if_sparse(
            &mut self.free,
            BinaryHeap::len,
            BinaryHeap::capacity,
            BinaryHeap::shrink_to_fit,
        );
    }
}

/// Shrinks a table whose capacity is over four times what it holds.
fn shrink_if_sparse<T>(
    table: &mut T,
    len: impl Fn(&T) -> usize,
    capacity: impl Fn(&T) -> usize,
    shrink: impl Fn(&mut T),
) {
    if capacity(table) > 64 && len(table) < capacity(table) / 4 {
        shrink(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_dense_stable_ids() {
        let tenants = Tenants::new();
        let id = TenantId::new;
        assert_eq!(
            tenants.intern_all(["a", "b", "a"]),
            vec![id(0), id(1), id(0)]
        );
        assert_eq!(tenants.intern_all(["b", "c"]), vec![id(1), id(2)]);
        assert_eq!(tenants.lookup("c").map(|tag| tag.id), Some(id(2)));
        assert_eq!(tenants.lookup("d"), None);
        assert_eq!(tenants.len(), 3);
        assert_eq!(tenants.name(id(2)).as_deref(), Some("c"));
    }

    #[test]
    fn unused_unpinned_names_are_forgotten_and_their_ids_reused() {
        let tenants = Tenants::new();
        let pinned = tenants.pin_all(["a", "b", "a"]);
        assert_eq!(pinned.distinct.len(), 2);
        let a = tenants.lookup("a").unwrap();
        assert_eq!(
            tenants.sweep(|_| {}, |_| {}).forgotten,
            0,
            "pinned names stay"
        );
        tenants.unpin(&pinned.distinct);
        // "b" still has items somewhere; "a" has none.
        assert_eq!(
            tenants
                .sweep(|unused| unused.retain(|&id| id == a.id), |_| {})
                .forgotten,
            1
        );
        assert!(tenants.lookup("a").is_none());
        assert!(!tenants.is_current(a), "a stale tag is noticed");
        let reused = tenants.intern_all(["z"])[0];
        assert_eq!(reused, a.id, "the freed id is given to the next name");
        assert!(!tenants.is_current(a));
        assert!(tenants.is_current(tenants.lookup("z").unwrap()));
        assert_eq!(tenants.live(), 2);
    }

    #[test]
    fn pinned_names_no_item_holds_are_undecided_until_a_sweep_finds_them_unpinned() {
        let tenants = Tenants::new();
        let held = tenants.pin_all(["held"]);
        let new = tenants.pin_all(["a", "b"]);
        let held_id = tenants.lookup("held").map(|tag| tag.id);
        // An item holds "held" already; "a" and "b" none yet.
        let keep = |unused: &mut Vec<TenantId>| unused.retain(|&id| Some(id) != held_id);
        assert_eq!(
            tenants.sweep(keep, |_| {}),
            Swept {
                forgotten: 0,
                undecided: 2
            }
        );
        assert_eq!(tenants.sweep(keep, |_| {}).undecided, 2, "still in flight");
        tenants.unpin(&new.distinct);
        assert_eq!(
            tenants.sweep(keep, |_| {}),
            Swept {
                forgotten: 2,
                undecided: 0
            },
            "applied, and no item holds them"
        );
        // A pinned name an item holds is not undecided, however long it
        // stays pinned (a tenant written to all the time).
        assert_eq!(tenants.sweep(keep, |_| {}).undecided, 0);
        tenants.unpin(&held.distinct);
        assert_eq!(tenants.live(), 1);
    }

    #[test]
    fn churning_through_many_names_keeps_the_table_small() {
        let tenants = Tenants::new();
        for round in 0..20 {
            let names: Vec<String> = (0..1_000).map(|i| format!("r{round}-{i}")).collect();
            let pinned = tenants.pin_all(names.iter().map(String::as_str));
            tenants.unpin(&pinned.distinct);
            tenants.sweep(|_| {}, |_| {});
        }
        assert_eq!(tenants.live(), 0);
        assert_eq!(tenants.len(), 0, "trailing free slots are dropped");
        assert!(tenants.inner.read().ids.capacity() <= 2_048);
    }

    #[test]
    fn one_name_left_with_a_high_id_keeps_nothing_else() {
        let tenants = Tenants::new();
        let names: Vec<String> = (0..10_000).map(|i| format!("n{i}")).collect();
        let pinned = tenants.pin_all(names.iter().map(String::as_str));
        tenants.unpin(&pinned.distinct);
        let last = tenants.lookup("n9999").unwrap();
        // Only the last name still has items.
        tenants.sweep(|unused| unused.retain(|&id| id != last.id), |_| {});
        assert_eq!(tenants.live(), 1);
        assert_eq!(tenants.len(), 10_000, "ids stay valid up to the live one");
        let inner = tenants.inner.read();
        assert!(inner.slots.capacity() <= 64, "{}", inner.slots.capacity());
        assert!(inner.ids.capacity() <= 64, "{}", inner.ids.capacity());
        drop(inner);
        assert_eq!(tenants.intern_all(["new"]), vec![TenantId::new(0)]);
    }
}
