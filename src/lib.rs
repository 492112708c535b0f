//! distributed-counter: counts items per tenant, over replicated node threads.
//!
//! The layers, from the outside in:
//!
//! ```text
//!   config       flags and DC_* variables → Config
//!   service      starts the pieces below in order, stops them in reverse
//!   http/        tiny_http workers, routes, JSON answers        (uses batch, metrics)
//!   batch        validates a POST body, borrowing tenants
//!   backend      the storage seam: the in-process cluster or a Redis Cluster
//!   coordinator/ the one entry point of writes and reads: ordering, WAL, load
//!                balancing, chunks handed to nodes in memory, reads at a watermark
//!   cluster/     membership (the roster), master election, fault injection,
//!                the keeper thread (re-copies lagging nodes, forgets tenants)
//!   replication  the replication log: pieces of batches → whole commits in
//!                version order, bounded in bytes
//!   node/        one node: listener + connection threads, apply thread, view
//!   protocol     the framed binary protocol of the node ports
//!   codec        the 20-byte entry both the protocol and the WAL use
//!   keys         per-process secret (node handshake) and hash keys
//!   store        a node's sharded map, last-writer-wins on versions
//!   tenants      tenant names interned to u32, forgotten when unused
//!   version      versions and the order they give
//!   wal/         durable mode: write-ahead log, group commit, snapshots
//!   scaleout/    (feature `scaleout`) the same API over a Redis Cluster
//!   metrics      Prometheus text for /metrics
//!   log          stderr lines that never fail the caller
//!   testkit      what the tests and the benchmark share (not used by the service)
//!   rlimit       raises the open-files limit to what --max-connections needs
//!   allocator    glibc settings so freed memory goes back to the system
//! ```

pub mod allocator;
pub mod backend;
pub mod batch;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod coordinator;
pub mod http;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod replication;
pub mod rlimit;
#[cfg(feature = "scaleout")]
pub mod scaleout;
pub mod service;
pub mod store;
pub mod tenants;
#[cfg(test)]
mod testing;
pub mod testkit;
pub mod version;
pub mod wal;

pub use service::{Service, StartError, run};
