//! What can go wrong talking to the Redis Cluster, said so that an operator
//! knows which node and what to do.

use super::functions;
use super::{WAIT_REPLICAS, WAIT_TIMEOUT};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::fmt;

/// Why an operation of the Redis store failed. For `write`, an error means the
/// batch is not acknowledged: some of its items may be stored, and a retry
/// (which takes new versions) stores all of them.
#[derive(Debug)]
pub enum ScaleoutError {
    /// The seeds or options cannot work.
    Config(String),
    /// A request to a node failed: `node` is its `host:port` (or the seeds
    /// when no node could be reached), `action` what was asked of it.
    Redis {
        node: String,
        action: &'static str,
        source: RedisError,
    },
    /// The master ran the request but no replica confirmed it in time, so a
    /// failover could lose it: not acknowledged.
    NotReplicated { node: String, action: &'static str },
    /// The version counter passed 2^53, the largest integer Lua keeps exact.
    VersionsExhausted { last: i64 },
    /// Some keys (partitions, or the version counter) have no usable master.
    NoMaster { keys: String, reason: String },
    /// The cluster already holds data laid out with another partition key or
    /// partition count; counting with this one would count IDs twice.
    LayoutMismatch { ours: String, cluster: String },
    /// A node answered something this module does not understand.
    Protocol {
        node: String,
        action: &'static str,
        detail: String,
    },
}

impl ScaleoutError {
    pub(crate) fn redis(node: &str, action: &'static str, source: RedisError) -> ScaleoutError {
        ScaleoutError::Redis {
            node: node.to_string(),
            action,
            source,
        }
    }

    pub(crate) fn protocol(node: &str, action: &'static str, detail: String) -> ScaleoutError {
        ScaleoutError::Protocol {
            node: node.to_string(),
            action,
            detail,
        }
    }

    /// Worth trying again after a fresh look at the topology: connections
    /// that broke or were refused, slots that moved, a cluster in the middle
    /// of a failover. Not a timeout, nor a missing replica (`NotReplicated`):
    /// trying again would most likely wait as long again.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ScaleoutError::Redis { source, .. } => is_transient(source),
            ScaleoutError::NoMaster { .. } => true,
            _ => false,
        }
    }

    /// The node does not have the functions (a master added later).
    pub(crate) fn is_missing_function(&self) -> bool {
        matches!(self, ScaleoutError::Redis { source, .. } if functions::is_missing(source))
    }
}

fn is_transient(error: &RedisError) -> bool {
    if functions::is_missing(error) {
        return true;
    }
    // A node that did not answer in time is stalled or gone: another attempt
    // would most likely wait as long again, and the caller has waited enough.
    if error.is_timeout() {
        return false;
    }
    match error.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound | ErrorKind::Parse => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
        ),
        _ => false,
    }
}

impl fmt::Display for ScaleoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleoutError::Config(why) => write!(f, "redis store configuration: {why}"),
            ScaleoutError::Redis {
                node,
                action,
                source,
            } if source.is_timeout() => write!(
                f,
                "redis node {node}: {action} timed out ({source}); the node is stalled, \
                 overloaded or unreachable"
            ),
            ScaleoutError::Redis {
                node,
                action,
                source,
            } => write!(f, "redis node {node}: {action} failed: {source}"),
            ScaleoutError::NotReplicated { node, action } => write!(
                f,
                "redis master {node}: {action} not confirmed by {WAIT_REPLICAS} replica \
                 within {WAIT_TIMEOUT:?}, so not acknowledged; check that a replica of \
                 {node} is up and in sync"
            ),
            ScaleoutError::VersionsExhausted { last } => write!(
                f,
                "the version counter reached {last}, past 2^53 (the largest integer \
                 the Redis functions compare exactly); no more writes can be ordered. \
                 Copy the data to a fresh cluster, or reset the counter and every \
                 partition's versions"
            ),
            ScaleoutError::NoMaster { keys, reason } => {
                write!(f, "no usable redis master for {keys}: {reason}")
            }
            ScaleoutError::LayoutMismatch { ours, cluster } => write!(
                f,
                "this instance's layout ({ours}) differs from the one the cluster's data \
                 uses ({cluster}): every instance must use the same partition key"
            ),
            ScaleoutError::Protocol {
                node,
                action,
                detail,
            } => write!(
                f,
                "redis node {node}: unexpected answer to {action}: {detail}"
            ),
        }
    }
}

impl std::error::Error for ScaleoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScaleoutError::Redis { source, .. } => Some(source),
            _ => None,
        }
    }
}
