//! Scale-out storage (issue #12): many stateless instances of the service
//! keep their items in one Redis Cluster (7.0, or Valkey).
//!
//! ```text
//!   partition    keyed hash of an ID → one of 32 partitions; key names, slots
//!   batch        a batch with its versions, cut per partition
//!   functions    the Lua library (apply, lift) and the commands calling it
//!   topology     CLUSTER NODES → which master serves which partition
//!   connection   pooled per-node connections; pipelines with a deadline
//!   store        RedisStore: connect, write, count, nodes, health
//!   metrics      counters, Prometheus text
//!   error        ScaleoutError
//!   backend      RedisBackend: the store behind the service's HTTP API
//! ```
//!
//! A write reserves one version per item from a cluster-wide counter, then
//! sends each master one pipeline: a function call per partition (which
//! applies items whose version is newer than the stored one) and a `WAIT` for
//! a replica. It succeeds only when every master it touched confirmed. See
//! docs/scaleout.md for the design and the failure semantics.

mod backend;
mod batch;
mod connection;
mod error;
mod functions;
mod metrics;
mod partition;
mod store;
mod topology;

use std::time::Duration;

pub use backend::RedisBackend;
pub use error::ScaleoutError;
pub use functions::{APPLY as APPLY_FUNCTION, LIBRARY_NAME, LIFT as LIFT_FUNCTION};
pub use partition::{COUNTER_KEY, DEFAULT_PARTITION_KEY, LAYOUT_KEY, PARTITIONS};
pub use store::{RedisNodeStatus, RedisOptions, RedisStore};

/// Longest wait for a TCP connection to a Redis node to open. A node that is
/// down but whose host answers refuses at once; a host that is gone costs
/// this much per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for all the replies of one exchange (one pipeline per node,
/// sent together), `WAIT` included; so it must exceed [`WAIT_TIMEOUT`]. A
/// stalled node costs this much per attempt, not per reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a master waits for [`WAIT_REPLICAS`] replicas to confirm a write
/// before the write is reported as failed. Replication on a LAN takes well
/// under a millisecond, but a replica starved of CPU can lag by hundreds (seen
/// at 500 ms on a loaded 2-core test box); this also bounds how long a write
/// hangs when a master has lost its replicas.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Replicas that must confirm a write before it is acknowledged. One: with it,
/// losing one node (the master) loses no acknowledged write.
pub const WAIT_REPLICAS: u32 = 1;

/// Attempts per operation when the failure is transient (a broken connection,
/// moved slots, a cluster between failure and failover), with a fresh look at
/// the topology between attempts. A failover takes longer than these attempts
/// (about the cluster's node timeout), so writes fail fast during one and the
/// client retries: a quick 503 beats a request that hangs.
pub const ATTEMPTS: u32 = 3;

/// Pause before attempt n+1 is n times this: gives a moving cluster a moment.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Items per function call at most. Redis runs calls one at a time, so this
/// bounds how long one call holds up the master's other clients (about a
/// millisecond for 512 items).
pub const MAX_ITEMS_PER_CALL: usize = 512;

/// Function calls per request to one master at most (so at most this times
/// [`MAX_ITEMS_PER_CALL`] items, about 0.1 s of Redis time): larger batches go
/// in several rounds, so that no request needs more than [`REQUEST_TIMEOUT`].
pub const MAX_CALLS_PER_REQUEST: usize = 64;

/// Idle connections kept per node; more are opened when more callers are at
/// work at once, and closed when returned beyond this.
pub const MAX_IDLE_PER_NODE: usize = 64;

/// Versions must stay below 2^53: the functions compare them as Lua numbers,
/// which are doubles.
pub const VERSION_LIMIT: u64 = 1 << 53;
