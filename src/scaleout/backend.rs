//! The Redis Cluster as a [`Backend`]: the HTTP API of the service over a
//! [`RedisStore`], identical to the in-process mode from the outside.

use super::{RedisOptions, RedisStore, ScaleoutError};
use crate::backend::{Accepted, Backend, BackendError, NodeStatus};
use crate::batch::Item;
use crate::cluster::{Fault, FaultError, Role};

/// The service's storage when it runs with `--store redis-cluster://...`.
pub struct RedisBackend {
    store: RedisStore,
}

impl RedisBackend {
    pub fn connect(seeds: &[String], options: RedisOptions) -> Result<RedisBackend, ScaleoutError> {
        Ok(RedisBackend {
            store: RedisStore::connect(seeds, options)?,
        })
    }
}

impl Backend for RedisBackend {
    fn write(&self, items: &[Item<'_>]) -> Result<Accepted, BackendError> {
        let pairs: Vec<(i64, &str)> = items
            .iter()
            .map(|item| (item.id, item.tenant.as_ref()))
            .collect();
        self.store
            .write(&pairs)
            .map_err(|e| BackendError::Remote(Box::new(e)))?;
        Ok(Accepted { items: items.len() })
    }

    fn count(&self, tenant: &str) -> Result<u64, BackendError> {
        self.store
            .count(tenant)
            .map_err(|e| BackendError::Remote(Box::new(e)))
    }

    /// The lowest id among the masters (ids follow the nodes' addresses),
    /// once every partition has a master that answers.
    fn health(&self) -> Result<usize, BackendError> {
        self.store
            .health()
            .map_err(|e| BackendError::Remote(Box::new(e)))?;
        self.store
            .nodes()
            .iter()
            .find(|node| node.role == "master" && node.alive)
            .map(|node| node.id)
            .ok_or_else(|| BackendError::Remote("no Redis master is alive".into()))
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.store
            .nodes()
            .into_iter()
            .map(|node| NodeStatus {
                id: node.id,
                role: if node.role == "master" {
                    Role::Master
                } else {
                    Role::Replica
                },
                alive: node.alive,
                addr: Some(node.addr),
                items: node.items.unwrap_or(0),
                received: node.received,
                stalled: false,
                lag: 0,
            })
            .collect()
    }

    fn render_metrics(&self, out: &mut String) {
        self.store.render_metrics(out);
    }

    /// There are no faults to inject into Redis nodes from here (the flag
    /// is refused with `--store redis-cluster://`).
    fn fault(&self, id: usize, _fault: Fault) -> Result<(), FaultError> {
        Err(FaultError::UnknownNode(id))
    }
}
