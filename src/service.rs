//! The running service: wires the data dir, the nodes, the coordinator and
//! the HTTP API together, and stops them in order.

use crate::backend::Backend;
use crate::cluster::{Cluster, Role};
use crate::config::{Config, StoreChoice};
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
    /// The external store (scale-out) cannot be used.
    Store(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Nodes(e) => write!(f, "cannot start the nodes: {e}"),
            StartError::Disk(e) => write!(f, "cannot use the data dir: {e}"),
            StartError::Http(e) => write!(f, "cannot start the HTTP server: {e}"),
            StartError::Signals(e) => write!(f, "cannot handle signals: {e}"),
            StartError::Store(why) => write!(f, "cannot use the store: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Listen(_, e) | StartError::Http(e) | StartError::Signals(e) => Some(e),
            StartError::Nodes(e) => Some(e),
            StartError::Disk(e) => Some(e),
            StartError::Store(_) => None,
        }
    }
}

/// A running service: the HTTP API over its backend.
pub struct Service {
    http: HttpServer,
    api: Arc<Api>,
    /// The in-process cluster (none with a Redis Cluster backend).
    cluster: Option<Arc<Cluster>>,
}

impl Service {
    pub fn start(config: &Config) -> Result<Service, StartError> {
        let listener =
            TcpListener::bind(config.listen).map_err(|e| StartError::Listen(config.listen, e))?;
        deepen_backlog(&listener, config.clients.max_connections);
        let (backend, cluster) = match &config.store {
            StoreChoice::Memory => {
                let (coordinator, cluster) = start_cluster(config)?;
                (Box::new(coordinator) as Box<dyn Backend>, Some(cluster))
            }
            StoreChoice::RedisCluster { .. } => (connect_redis(config)?, None),
        };
        let api = Arc::new(Api {
            backend,
            metrics: Metrics::default(),
            fault_injection: config.fault_injection,
            status_page: crate::http::status_page::StatusPage::new(config.fault_injection),
            http_stats: OnceLock::new(),
        });
        let http = HttpServer::start(listener, api.clone(), config).map_err(StartError::Http)?;
        Ok(Service { http, api, cluster })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The startup lines: the HTTP address, then one line per node.
    pub fn announce(&self) {
        crate::log!("listening on http://{}", self.addr());
        let kind = if self.cluster.is_some() { "" } else { "redis " };
        for node in self.api.backend.nodes() {
            let addr = node.addr.as_deref().unwrap_or("-");
            let role = match node.role {
                Role::Master => "master",
                Role::Replica => "replica",
            };
            crate::log!("{kind}node {} listening on {addr} ({role})", node.id);
        }
    }

    /// Stops serving: requests in flight finish, then the nodes stop.
    pub fn stop(self) {
        self.http.stop();
        if let Some(cluster) = self.cluster {
            cluster.stop();
        }
    }
}

/// Most connections the kernel queues for accept (it caps this at
/// net.core.somaxconn).
pub const MAX_ACCEPT_BACKLOG: usize = 4096;

/// std listens with a backlog of 128: a burst of new clients overflows it
/// and their SYNs are dropped (a client then waits a second to retry).
/// Listening again on the bound socket raises it, up to what
/// `--max-connections` can take.
fn deepen_backlog(listener: &TcpListener, max_connections: usize) {
    use std::os::fd::AsRawFd;
    let backlog = max_connections.clamp(128, MAX_ACCEPT_BACKLOG) as i32;
    // SAFETY: listen(2) on a socket we own; it only changes its queue size.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        crate::log!(
            "warning: cannot raise the accept backlog: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The in-process cluster: recovers the data dir, starts the nodes.
fn start_cluster(config: &Config) -> Result<(Coordinator, Arc<Cluster>), StartError> {
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
    Ok((Coordinator::new(cluster.clone(), wal), cluster))
}

/// The Redis Cluster backend (feature `scaleout`).
#[cfg(feature = "scaleout")]
fn connect_redis(config: &Config) -> Result<Box<dyn Backend>, StartError> {
    use crate::scaleout::{RedisBackend, RedisOptions};
    let StoreChoice::RedisCluster {
        seeds,
        username,
        password,
    } = &config.store
    else {
        return Err(StartError::Store("not a Redis Cluster".to_string()));
    };
    let mut options = RedisOptions {
        username: username.clone(),
        password: password.clone(),
        ..RedisOptions::default()
    };
    if let Some(key) = &config.partition_key {
        options.partition_key = key.clone();
    }
    let backend =
        RedisBackend::connect(seeds, options).map_err(|e| StartError::Store(e.to_string()))?;
    Ok(Box::new(backend))
}

/// Without the feature, config refuses `redis-cluster://` before this.
#[cfg(not(feature = "scaleout"))]
fn connect_redis(_: &Config) -> Result<Box<dyn Backend>, StartError> {
    Err(StartError::Store(
        "redis-cluster:// needs a build with the scaleout feature".to_string(),
    ))
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(config: &Config) -> Result<(), StartError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(StartError::Signals)?;
    crate::allocator::tune();
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
