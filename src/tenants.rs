//! Tenant names interned to small numbers, shared by the coordinator and nodes.
//!
//! Nodes store a `TenantId` (4 bytes) per item instead of a string, and the
//! node protocol carries ids, not names. Names are never removed: a tenant
//! with no items left still counts 0.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// A tenant's number; numbers are dense, from 0, so they index arrays.
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

#[derive(Default)]
pub struct Tenants {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<Arc<str>, TenantId>,
    names: Vec<Arc<str>>,
}

impl Tenants {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of a known tenant.
    pub fn lookup(&self, name: &str) -> Option<TenantId> {
        self.inner.read().ids.get(name).copied()
    }

    /// The id of each name, adding the new ones; one lock per call, not per name.
    pub fn intern_all<'a, I>(&self, names: I) -> Vec<TenantId>
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
                return ids;
            }
        }
        let mut inner = self.inner.write();
        names.into_iter().map(|name| inner.intern(name)).collect()
    }

    /// The id of one name, added if new.
    pub fn intern(&self, name: &str) -> TenantId {
        if let Some(id) = self.lookup(name) {
            return id;
        }
        self.inner.write().intern(name)
    }

    /// How many tenants are known; every valid id is below this.
    pub fn len(&self) -> usize {
        self.inner.read().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of an id.
    pub fn name(&self, id: TenantId) -> Option<Arc<str>> {
        self.inner.read().names.get(id.index()).cloned()
    }
}

impl Inner {
    fn intern(&mut self, name: &str) -> TenantId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // Ids are u32; more than 4 billion distinct tenants would need more
        // memory than the boxes this runs on have, so this cannot overflow in
        // practice, and saturating keeps it from panicking if it did.
        let id = TenantId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
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
        assert_eq!(tenants.intern("b"), id(1));
        assert_eq!(tenants.intern_all(["b", "c"]), vec![id(1), id(2)]);
        assert_eq!(tenants.lookup("c"), Some(id(2)));
        assert_eq!(tenants.lookup("d"), None);
        assert_eq!(tenants.len(), 3);
        assert_eq!(tenants.name(id(2)).as_deref(), Some("c"));
    }
}
