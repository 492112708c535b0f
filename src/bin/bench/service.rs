//! The service under test: the release binary as a child process on free
//! ports, killed (`kill -9`) when dropped.

use crate::load::{Connection, Outcome};
use distributed_counter::testkit::Process;
use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// How often `until_replicated` looks at the lag.
const REPLICATION_POLL: Duration = Duration::from_millis(2);
/// How long the service may take to start (recovering a data dir included).
const START_PATIENCE: Duration = Duration::from_secs(60);

pub struct Service {
    process: Process,
    pub addr: SocketAddr,
}

/// A binary next to this one.
pub fn sibling_binary(name: &str) -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Where `make bench` builds the service with `--features scaleout`:
/// `target/scaleout/release/`, beside this binary's `target/release/`.
pub fn scaleout_binary() -> String {
    const BUILT: &str = "scaleout/release/distributed-counter";
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(BUILT)))
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("target/{BUILT}"))
}

impl Service {
    /// Starts it with `nodes` in-process nodes and returns once it prints
    /// its address (it serves then).
    pub fn start(path: &str, nodes: usize, extra: &[&str]) -> io::Result<Service> {
        let nodes = nodes.to_string();
        let mut args = vec!["--node-port", "0", "--nodes", &nodes];
        args.extend_from_slice(extra);
        Service::start_with(path, &args)
    }

    /// Starts it listening on a free port with `args` (a `--store` has no
    /// nodes of its own) and returns once it serves.
    pub fn start_with(path: &str, args: &[&str]) -> io::Result<Service> {
        let mut command = Command::new(path);
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let process = Process::spawn(command, 0, START_PATIENCE).map_err(|log| {
            io::Error::other(format!(
                "{path} did not start (run `cargo build --release`):\n{log}"
            ))
        })?;
        Ok(Service {
            addr: process.addr,
            process,
        })
    }

    pub fn rss_bytes(&self) -> u64 {
        self.process.rss_kib().unwrap_or(0) * 1024
    }

    pub fn threads(&self) -> u64 {
        self.process.threads().unwrap_or(0)
    }

    /// `received` of every node, from `/nodes`.
    pub fn received(&self) -> io::Result<Vec<u64>> {
        let (_, body) = Connection::open(self.addr, None)?.call("GET", "/nodes", b"")?;
        let nodes: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
        Ok(nodes
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| n["received"].as_u64())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The time until every node applied everything acknowledged, added to
    /// `acked` (acknowledgements come before background replication ends).
    pub fn until_replicated(&self, acked: &Outcome) -> io::Result<Outcome> {
        let started = Instant::now();
        let mut http = Connection::open(self.addr, None)?;
        loop {
            let (_, metrics) = http.call("GET", "/metrics", b"")?;
            let lag: u64 = String::from_utf8_lossy(&metrics)
                .lines()
                .filter(|line| line.starts_with("dc_node_replication_lag_items{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if lag == 0 {
                break;
            }
            thread::sleep(REPLICATION_POLL);
        }
        Ok(Outcome {
            units: acked.units,
            unit: acked.unit,
            elapsed: acked.elapsed + started.elapsed(),
            latencies: Vec::new(),
            errors: 0,
        })
    }
}
