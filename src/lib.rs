//! distributed-counter: counts items per tenant, over replicated node threads.
//!
//! The layers, from the outside in:
//!
//! ```text
//!   config       flags and DC_* variables → Config
//!   http         tiny_http workers, routes, JSON answers   (uses batch, metrics)
//!   batch        validates a POST body, borrowing tenants
//!   coordinator  orders batches, splits them over nodes, reads from the master
//!   client       pooled node connections with deadlines
//!   cluster      membership, master election, fault injection
//!   node         a node's listener, connection threads and replication inbox
//!   protocol     the framed binary protocol between coordinator and nodes
//!   store        a node's sharded map with per-tenant counts
//!   tenants      tenant names interned to u32
//!   wal          durable mode: write-ahead log, group commit, snapshots
//! ```

pub mod batch;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod coordinator;
pub mod http;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod service;
pub mod store;
pub mod tenants;
pub mod version;
pub mod wal;

pub use service::{Service, StartError, run};
