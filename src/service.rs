//! The running service: wires the data dir, the nodes, the coordinator and
//! the HTTP API together, and stops them in order.

use crate::cluster::{Cluster, Role};
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::http::{Api, HttpServer};
use crate::metrics::Metrics;
use crate::node::NodeError;
use crate::replication::ReplicationLog;
use crate::tenants::Tenants;
use crate::wal::{Recovered, Wal, WalError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};

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

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Listen(_, e) | StartError::Http(e) | StartError::Signals(e) => Some(e),
            StartError::Nodes(e) => Some(e),
            StartError::Disk(e) => Some(e),
        }
    }
}

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
        let (wal, initial) = match &config.data_dir {
            Some(dir) => {
                let (wal, recovered) =
                    Wal::open(dir, config.fsync, &tenants).map_err(StartError::Disk)?;
                (Some(wal), recovered)
            }
            None => (None, Recovered::default()),
        };
        let (log, detached) = ReplicationLog::new(initial.max_version, tenants.clone());
        let cluster = Cluster::start(
            config.nodes,
            config.node_port,
            Arc::new(log),
            detached,
            tenants,
            initial.store,
        )
        .map_err(StartError::Nodes)?;
        let api = Arc::new(Api {
            coordinator: Coordinator::new(cluster.clone(), wal),
            metrics: Metrics::default(),
            fault_injection: config.fault_injection,
            status_page: crate::http::status_page::StatusPage::new(config.fault_injection),
            http_stats: OnceLock::new(),
        });
        let http = HttpServer::start(listener, api, config).map_err(StartError::Http)?;
        Ok(Service { http, cluster })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The startup lines: the HTTP address, then one line per node.
    pub fn announce(&self) {
        crate::log!("listening on http://{}", self.addr());
        for node in self.cluster.status() {
            let addr = node.addr.as_deref().unwrap_or("-");
            let role = match node.role {
                Role::Master => "master",
                Role::Replica => "replica",
            };
            crate::log!("{} listening on {addr} ({role})", node.id);
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
    let open_files = crate::rlimit::raise_open_files(config.clients.max_connections);
    let service = Service::start(config)?;
    service.announce();
    if let Err(short) = open_files {
        crate::log!("{short}");
    }
    for warning in &config.warnings {
        crate::log!("{warning}");
    }
    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        crate::log!("{name} received, stopping");
    }
    service.stop();
    crate::log!("stopped");
    Ok(())
}
