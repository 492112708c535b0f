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
pub mod client;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod http;
pub mod metrics;
pub mod node;
pub mod protocol;
#[cfg(feature = "scaleout")]
pub mod scaleout;
pub mod store;
pub mod tenants;
pub mod wal;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::http::{Api, HttpServer};
use crate::metrics::Metrics;
use crate::node::NodeError;
use crate::tenants::Tenants;
use crate::wal::{Wal, WalError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Why the service could not start.
#[derive(Debug)]
pub enum StartError {
    /// The HTTP address cannot be bound (taken, not local, no permission).
    Listen(SocketAddr, io::Error),
    Nodes(NodeError),
    Disk(WalError),
    Http(io::Error),
    Signals(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Nodes(e) => write!(f, "cannot start the nodes: {e}"),
            StartError::Disk(e) => write!(f, "cannot use the data dir: {e}"),
            StartError::Http(e) => write!(f, "cannot start the HTTP server: {e}"),
            StartError::Signals(e) => write!(f, "cannot handle signals: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running service: the HTTP API over the cluster of nodes.
pub struct Service {
    http: HttpServer,
    cluster: Arc<Cluster>,
}

impl Service {
    pub fn start(config: &Config) -> Result<Service, StartError> {
        let listener =
            TcpListener::bind(config.listen).map_err(|e| StartError::Listen(config.listen, e))?;
        let tenants = Arc::new(Tenants::new());
        let (wal, initial, last_version) = match &config.data_dir {
            Some(dir) => {
                let (wal, recovered) =
                    Wal::open(dir, config.fsync, &tenants).map_err(StartError::Disk)?;
                (
                    Some(Arc::new(wal)),
                    recovered.entries,
                    recovered.max_version,
                )
            }
            None => (None, Vec::new(), 0),
        };
        let cluster = Cluster::start(
            config.nodes,
            config.node_port,
            tenants,
            &initial,
            wal.clone(),
        )
        .map_err(StartError::Nodes)?;
        drop(initial);
        let cluster = Arc::new(cluster);
        let api = Arc::new(Api {
            coordinator: Coordinator::new(cluster.clone(), last_version),
            wal,
            metrics: Metrics::default(),
            max_body_bytes: config.max_body_bytes,
            fault_injection: config.fault_injection,
        });
        let http = HttpServer::start(listener, api).map_err(StartError::Http)?;
        Ok(Service { http, cluster })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The startup lines: the HTTP address, then one line per node.
    pub fn announce(&self) {
        eprintln!("listening on http://{}", self.addr());
        for node in self.cluster.status() {
            let addr = node.addr.as_deref().unwrap_or("-");
            eprintln!("node {} listening on {addr} ({})", node.id, node.role);
        }
    }

    /// Stops serving: HTTP workers finish their request, then nodes stop.
    pub fn stop(self) {
        self.http.stop();
        self.cluster.stop();
    }
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(config: &Config) -> Result<(), StartError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(StartError::Signals)?;
    let service = Service::start(config)?;
    service.announce();
    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        eprintln!("{name} received, stopping");
    }
    service.stop();
    eprintln!("stopped");
    Ok(())
}
