//! An in-process harness for unit tests of the concurrent core: a cluster of
//! real node threads and a coordinator, without HTTP or a child process.

use crate::backend::Backend;
use crate::batch::Item;
use crate::cluster::Cluster;
use crate::coordinator::Coordinator;
use crate::replication::ReplicationLog;
use crate::store::Store;
use crate::tenants::Tenants;
use crate::version::Version;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a test waits for a condition.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running cluster and its coordinator; stopped when dropped.
pub struct InProcess {
    pub coordinator: Coordinator,
}

impl InProcess {
    pub fn start(nodes: usize) -> InProcess {
        let tenants = Arc::new(Tenants::new());
        let (log, detached) = ReplicationLog::new(Version::ZERO, tenants.clone());
        let cluster = Cluster::start(nodes, 0, Arc::new(log), detached, tenants, Store::new())
            .unwrap_or_else(|e| panic!("the cluster starts: {e}"));
        InProcess {
            coordinator: Coordinator::new(cluster, None),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        self.coordinator.cluster()
    }

    /// Writes `(id, tenant)` pairs as one batch; true on success.
    pub fn write(&self, pairs: &[(i64, &str)]) -> bool {
        let items: Vec<Item<'_>> = pairs
            .iter()
            .map(|&(id, tenant)| Item {
                id,
                tenant: Cow::Borrowed(tenant),
            })
            .collect();
        self.coordinator.write(&items).is_ok()
    }

    pub fn count(&self, tenant: &str) -> u64 {
        self.coordinator
            .count(tenant)
            .unwrap_or_else(|e| panic!("count of {tenant}: {e}"))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.cluster().stop();
    }
}

/// Waits until `condition` holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
