//! The service under test: the release binary as a child process on free
//! ports, killed (`kill -9`) when dropped.

use crate::load::{Connection, Outcome};
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often `until_replicated` looks at the lag.
const REPLICATION_POLL: Duration = Duration::from_millis(2);

pub struct Service {
    child: Child,
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

impl Service {
    /// Starts it and returns once it prints its address (it serves then).
    pub fn start(path: &str, nodes: usize, extra: &[&str]) -> io::Result<Service> {
        let nodes = nodes.to_string();
        let mut child = Command::new(path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--node-port",
                "0",
                "--nodes",
                &nodes,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {path}: {e} (run `cargo build --release`)"),
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .ok_or_else(|| io::Error::other("server exited"))??;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse().map_err(io::Error::other)?;
            }
        };
        thread::spawn(move || for _ in lines {});
        Ok(Service { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_bytes(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:").map_or(0, |kb| kb * 1024)
    }

    pub fn threads(&self) -> u64 {
        proc_status(self.pid(), "Threads:").unwrap_or(0)
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

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number field of /proc/PID/status (e.g. `VmRSS:` in kB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
