//! A throwaway Redis Cluster for the scale-out tests and the benchmark: 3
//! masters and 3 replicas on free loopback ports, each server in its own
//! temporary directory, without persistence. Every server runs under a guard
//! that kills it and removes its directory when its owner lets go of it, or
//! dies, however it dies: no server outlives the process that started it.
//!
//! It talks to the servers with a minimal RESP client over `std` ([`query`])
//! and forms the cluster with `redis-cli --cluster create`, so it needs no
//! Redis crate: the default build can use it. The tests add typed queries
//! through the `redis` crate (`tests/common/redis_cluster.rs`).

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// `cluster-node-timeout`: a master silent this long is suspected failed. Low
/// so that failover tests are quick; 1 s still keeps a busy 2-core box from
/// seeing failures that are not there.
pub const NODE_TIMEOUT_MS: u64 = 1000;

pub const MASTERS: usize = 3;
pub const NODES: usize = 6;

/// Pause between two looks at a condition that is being waited for.
const POLL: Duration = Duration::from_millis(20);

/// Times to try a node's start on fresh ports when another process took one.
const PORT_ATTEMPTS: usize = 5;

/// Opening a connection to a node, and waiting for one reply, in [`query`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `redis-server` (arguments after the node's directory) in the
/// background, prints its pid, and waits for its own stdin to close: then it
/// kills the server and removes the directory, unless the line it read was
/// `keep` (a node killed to be restarted). The owning process holds the other
/// end of that stdin, so the server goes when the process goes.
const GUARD: &str = r#"dir=$1; shift
redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
read what
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$what" = keep ] || rm -rf "$dir""#;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Why a cluster cannot be started here (`redis-server` or `redis-cli`
/// missing), or None when both run.
pub fn missing() -> Option<String> {
    ["redis-server", "redis-cli"]
        .into_iter()
        .find_map(|program| {
            let runs = Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|out| out.status.success());
            (!runs).then(|| format!("{program} is not installed"))
        })
}

/// Polls `condition` until it holds; a `TimedOut` error naming `what` once
/// `patience` has passed.
pub fn wait_until(
    what: &str,
    patience: Duration,
    mut condition: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    while !condition() {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("gave up waiting after {patience:?}: {what}"),
            ));
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// Appends one command, in RESP, to `out`.
pub fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", parts.len());
    for part in parts {
        let _ = write!(out, "${}\r\n", part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Runs one command on the server at 127.0.0.1:`port` and returns its reply
/// as text: a status, an integer or a string (nil is empty). An error reply,
/// or an array, is an error.
pub fn query(port: u16, args: &[&str]) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut out = Vec::new();
    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    resp_command(&mut out, &parts);
    (&stream).write_all(&out)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let unexpected = || io::Error::other(format!("{args:?} on port {port}: reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(unexpected)?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Err(io::Error::other(format!("{args:?} on port {port}: {rest}"))),
        "$" if rest == "-1" => Ok(String::new()),
        "$" => {
            let length: usize = rest.parse().map_err(|_| unexpected())?;
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body)?;
            body.truncate(length);
            String::from_utf8(body).map_err(io::Error::other)
        }
        _ => Err(unexpected()),
    }
}

/// A running `redis-server` under its guard.
struct Server {
    guard: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Server {
    /// Starts a server and waits until it answers as itself (not another
    /// process that took the port); Err with its log if it exits first.
    fn start(port: u16, bus_port: u16, dir: &Path, patience: Duration) -> io::Result<Server> {
        let mut guard = Command::new("sh")
            .args(["-c", GUARD, "sh"])
            .arg(dir)
            .args(server_args(port, bus_port))
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run sh: {e}")))?;
        let stdin = guard.stdin.take();
        let mut line = String::new();
        if let Some(out) = guard.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let pid = line.trim().parse().unwrap_or(0);
        let mut server = Server { guard, stdin, pid };
        let deadline = Instant::now() + patience;
        while !answers_as(port, pid) {
            if !running(pid) || Instant::now() > deadline {
                server.stop(true);
                return Err(io::Error::other(format!(
                    "redis-server gave no answer on port {port}:\n{}",
                    log_tail(dir)
                )));
            }
            thread::sleep(POLL);
        }
        Ok(server)
    }

    /// Has the guard kill the server (and remove its directory unless
    /// `keep`), and waits until it is gone.
    fn stop(&mut self, keep: bool) {
        // Dropping stdin closes it: the guard's `read` returns.
        if let Some(mut stdin) = self.stdin.take()
            && keep
        {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.guard.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(false);
    }
}

struct Node {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    server: Option<Server>,
}

impl Drop for Node {
    /// Stops the server, and removes the directory a killed node kept.
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 3 masters and 3 replicas; every server is stopped and its directory
/// removed when this is dropped.
pub struct RedisCluster {
    nodes: Mutex<Vec<Node>>,
    /// How long a start, a restart or a wait may take.
    patience: Duration,
}

impl RedisCluster {
    /// Starts the servers, forms the cluster and waits until it is healthy
    /// (see [`RedisCluster::wait_until_healthy`]), each step within
    /// `patience`. Whatever was started is stopped again on error.
    pub fn start(patience: Duration) -> io::Result<RedisCluster> {
        if let Some(why) = missing() {
            return Err(io::Error::new(io::ErrorKind::NotFound, why));
        }
        let cluster = RedisCluster {
            nodes: Mutex::new(Vec::new()),
            patience,
        };
        for _ in 0..NODES {
            let node = spawn_on_free_ports(patience)?;
            cluster.lock().push(node);
        }
        cluster.create()?;
        cluster.wait_until_healthy()?;
        Ok(cluster)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn ports(&self) -> Vec<u16> {
        self.lock().iter().map(|n| n.port).collect()
    }

    /// Every node's `host:port`, as seeds for a store.
    pub fn seeds(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The service's `--store` value for this cluster.
    pub fn store_arg(&self) -> String {
        format!("redis-cluster://{}", self.seeds().join(","))
    }

    /// The ports of the nodes that are not killed.
    pub fn alive_ports(&self) -> Vec<u16> {
        self.lock()
            .iter()
            .filter(|n| n.server.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub fn master_port_for(&self, key: &str) -> io::Result<u16> {
        let port = *self
            .alive_ports()
            .first()
            .ok_or_else(|| io::Error::other("no live node"))?;
        let slot: i64 = query(port, &["CLUSTER", "KEYSLOT", key])?
            .parse()
            .map_err(io::Error::other)?;
        let nodes = query(port, &["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                lo.parse::<i64>().is_ok_and(|lo| lo <= slot)
                    && hi.parse::<i64>().is_ok_and(|hi| slot <= hi)
            });
            let master = fields.get(2).is_some_and(|flags| flags.contains("master"));
            let port = fields
                .get(1)
                .and_then(|addr| addr.split('@').next()?.rsplit(':').next()?.parse().ok());
            if let (true, true, Some(port)) = (serves, master, port) {
                return Ok(port);
            }
        }
        Err(io::Error::other(format!(
            "no master serves slot {slot}:\n{nodes}"
        )))
    }

    /// `kill -9` of one node; its directory stays for a restart.
    pub fn kill(&self, port: u16) -> io::Result<()> {
        let mut nodes = self.lock();
        let node = find(&mut nodes, port)?;
        if let Some(mut server) = node.server.take() {
            server.stop(true);
        }
        Ok(())
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to one node's server: with
    /// `-STOP`, a stalled server whose connections stay open but which
    /// answers nothing.
    pub fn signal(&self, port: u16, signal: &str) -> io::Result<()> {
        let mut nodes = self.lock();
        let node = find(&mut nodes, port)?;
        let pid = node
            .server
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("node {port} is not running")))?
            .pid;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("kill {signal} {pid}: {status}")));
        }
        Ok(())
    }

    /// Starts a killed node again on its ports, with its cluster config: it
    /// rejoins (as a replica, if its master failed over) and resyncs.
    pub fn restart(&self, port: u16) -> io::Result<()> {
        let mut nodes = self.lock();
        let node = find(&mut nodes, port)?;
        if node.server.is_some() {
            return Err(io::Error::other(format!("node {port} is running")));
        }
        node.server = Some(Server::start(
            port,
            node.bus_port,
            &node.dir,
            self.patience,
        )?);
        Ok(())
    }

    /// Waits until a node other than `dead` serves every slot `dead` served,
    /// and the live nodes see the cluster as ok.
    pub fn wait_for_failover(&self, dead: u16, key: &str) -> io::Result<()> {
        wait_until(&format!("failover away from {dead}"), self.patience, || {
            self.master_port_for(key).is_ok_and(|port| port != dead)
                && self.all_report("cluster_state:ok")
        })
    }

    /// Waits until every live node reports the cluster ok, every replica's
    /// link to its master is up, and every live node's view has 3 masters,
    /// 3 replicas and no failure flag (roles spread by gossip: a node can
    /// see a replica as a master for a while after it became one).
    pub fn wait_until_healthy(&self) -> io::Result<()> {
        wait_until("a healthy Redis Cluster", self.patience, || {
            self.all_report("cluster_state:ok") && self.replicas_linked() && self.views_agree()
        })
    }

    /// The sum of `used_memory` over the live nodes, in bytes.
    pub fn used_memory(&self) -> io::Result<u64> {
        let mut total = 0;
        for port in self.alive_ports() {
            let info = query(port, &["INFO", "memory"])?;
            total += info
                .lines()
                .find_map(|line| {
                    line.strip_prefix("used_memory:")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .ok_or_else(|| io::Error::other(format!("no used_memory from port {port}")))?;
        }
        Ok(total)
    }

    fn all_report(&self, line: &str) -> bool {
        self.alive_ports()
            .iter()
            .all(|&port| query(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains(line)))
    }

    fn replicas_linked(&self) -> bool {
        let alive = self.alive_ports();
        let mut replicas = 0;
        for &port in &alive {
            let Ok(info) = query(port, &["INFO", "replication"]) else {
                return false;
            };
            if info.contains("role:slave") {
                replicas += 1;
                if !info.contains("master_link_status:up") {
                    return false;
                }
            }
        }
        replicas + MASTERS == alive.len()
    }

    fn views_agree(&self) -> bool {
        self.alive_ports().iter().all(|&port| {
            let Ok(view) = query(port, &["CLUSTER", "NODES"]) else {
                return false;
            };
            let flags: Vec<&str> = view
                .lines()
                .filter_map(|line| line.split_whitespace().nth(2))
                .collect();
            let with = |role: &str| flags.iter().filter(|f| f.contains(role)).count();
            !view.contains("fail") && with("master") == MASTERS && with("slave") == NODES - MASTERS
        })
    }

    /// `redis-cli --cluster create`: the first three nodes become masters.
    fn create(&self) -> io::Result<()> {
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(self.seeds())
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

fn find(nodes: &mut [Node], port: u16) -> io::Result<&mut Node> {
    nodes
        .iter_mut()
        .find(|n| n.port == port)
        .ok_or_else(|| io::Error::other(format!("no node on port {port}")))
}

fn spawn_on_free_ports(patience: Duration) -> io::Result<Node> {
    let dir = std::env::temp_dir().join(format!(
        "dc-redis-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    let mut last = io::Error::other("no attempt");
    for _ in 0..PORT_ATTEMPTS {
        let started = free_port_pair().and_then(|(port, bus_port)| {
            Server::start(port, bus_port, &dir, patience).map(|server| (port, bus_port, server))
        });
        match started {
            Ok((port, bus_port, server)) => {
                return Ok(Node {
                    port,
                    bus_port,
                    dir,
                    server: Some(server),
                });
            }
            Err(why) => last = why,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(io::Error::other(format!(
        "redis-server did not start in {PORT_ATTEMPTS} attempts: {last}"
    )))
}

/// Two ports free right now (the node's and its cluster bus's). Another
/// process may take one before the server binds it: the caller retries.
fn free_port_pair() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn server_args(port: u16, bus_port: u16) -> Vec<String> {
    let node_timeout = NODE_TIMEOUT_MS.to_string();
    let args = [
        ["--port", &port.to_string()],
        ["--cluster-port", &bus_port.to_string()],
        ["--bind", "127.0.0.1"],
        ["--daemonize", "no"],
        ["--cluster-enabled", "yes"],
        ["--cluster-config-file", "nodes.conf"],
        ["--cluster-node-timeout", &node_timeout],
        ["--appendonly", "no"],
        ["--save", ""],
        ["--repl-diskless-sync-delay", "0"],
        ["--logfile", "redis.log"],
    ];
    args.iter().flatten().map(|s| s.to_string()).collect()
}

/// False once the process is gone or a zombie (exited, not yet reaped by its
/// guard).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.trim().chars().next());
    state.is_some_and(|state| state != 'Z' && state != 'X')
}

fn answers_as(port: u16, pid: u32) -> bool {
    query(port, &["INFO", "server"]).is_ok_and(|info| info.contains(&format!("process_id:{pid}\r")))
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(20).collect();
    let mut tail = String::new();
    for line in lines.into_iter().rev() {
        let _ = writeln!(tail, "{line}");
    }
    tail
}
