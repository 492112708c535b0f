//! The storage seam: what the HTTP API needs from wherever items are kept.
//!
//! Two kinds implement it: the in-process cluster of node threads
//! ([`Coordinator`](crate::coordinator::Coordinator), the default) and, with
//! the `scaleout` feature, a Redis Cluster shared by many instances
//! (`scaleout::RedisBackend`). The HTTP API, validation, errors and status
//! codes are the same for both: only what is behind this trait differs.

use crate::batch::Item;
use crate::cluster::{Fault, FaultError, Role};
use crate::version::Exhausted;
use crate::wal::{LogFailure, WalError};
use serde::Serialize;
use std::fmt;

/// Where items are kept.
pub trait Backend: Send + Sync {
    /// Stores a validated batch; `Ok` only when it is safe (see README,
    /// "Guarantees").
    fn write(&self, items: &[Item<'_>]) -> Result<Accepted, BackendError>;

    /// How many IDs belong to `tenant`, seeing every write acknowledged
    /// before the call.
    fn count(&self, tenant: &str) -> Result<u64, BackendError>;

    /// The master's id while the store can serve (`GET /health`).
    fn health(&self) -> Result<usize, BackendError>;

    /// Every node, in id order (`GET /nodes`).
    fn nodes(&self) -> Vec<NodeStatus>;

    /// The backend's own series for `GET /metrics`.
    fn render_metrics(&self, out: &mut String);

    /// Injects a fault (`--fault-injection`; only the in-process cluster
    /// has faults to inject).
    fn fault(&self, id: usize, fault: Fault) -> Result<(), FaultError>;
}

/// A write that was accepted: safe against the failure the backend
/// promises to survive (one node, or one Redis master).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub items: usize,
}

/// What `/nodes` shows of one node (and `/metrics`, with the skipped fields).
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: usize,
    pub role: Role,
    pub alive: bool,
    pub addr: Option<String>,
    pub items: u64,
    pub received: u64,
    #[serde(skip)]
    pub stalled: bool,
    #[serde(skip)]
    pub lag: u64,
}

/// No node could take a write or answer a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub &'static str);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Why a write or read was refused (always 503: try again). Nothing of a
/// refused write is promised: it may be visible (whole, never in part) or
/// not (README, "Guarantees").
#[derive(Debug)]
pub enum BackendError {
    /// No node took the items or answered in time.
    Unavailable(Unavailable),
    /// The log could not be written.
    Log(WalError),
    /// The log cannot be written at the moment (a full disk): no write can
    /// be acknowledged until it can.
    LogDown(LogFailure),
    /// The version counter is exhausted.
    Versions(Exhausted),
    /// The external store failed (scale-out).
    Remote(Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        503
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable(e) => e.fmt(f),
            BackendError::Log(e) => write!(f, "cannot write the log: {e}"),
            BackendError::LogDown(failure) => failure.fmt(f),
            BackendError::Versions(e) => e.fmt(f),
            BackendError::Remote(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Unavailable(e) => Some(e),
            BackendError::Log(e) => Some(e),
            BackendError::Versions(e) => Some(e),
            BackendError::LogDown(_) => None,
            BackendError::Remote(e) => Some(e.as_ref()),
        }
    }
}

impl From<Unavailable> for BackendError {
    fn from(e: Unavailable) -> Self {
        BackendError::Unavailable(e)
    }
}

impl From<WalError> for BackendError {
    fn from(e: WalError) -> Self {
        BackendError::Log(e)
    }
}

impl From<Exhausted> for BackendError {
    fn from(e: Exhausted) -> Self {
        BackendError::Versions(e)
    }
}
